"""QingCloud's API as ksha calls it, through qingcloud-sdk: the key (from the pillar's settings or
``credentials_file``), the connection, one call with the busy retries, waiting on a job, finding
ksha's load balancers by name. Used on the Salt master by the state module ``ksha_qingcloud``
(the orchestration's LB phase) and the runner ``ksha.status``; what to call is decided by
``ksha.qingcloud`` (pure).

Every error is a ``QingCloudError`` whose message names the action, QingCloud's code and message
and the pillar key to look at; the key never shows: an SDK error's or QingCloud's text is
scrubbed of the key and of the request's signature (``_scrubbed``).
"""

from __future__ import annotations

import logging
import random
import re
import time

import yaml

try:
    from qingcloud.iaas.connection import APIConnection
except ImportError:  # the state module's __virtual__ says so
    APIConnection = None

log = logging.getLogger(__name__)

# QingCloud's "retry later" answers: 5100 server busy (the call was not carried out) is retried
# for every action; 5000 internal error only for a read: a write it answers may have been done
# (a CreateLoadBalancer retried could make two load balancers of one name)
BUSY = 5100
INTERNAL = 5000
ATTEMPTS = 5
RUNNING = ("pending", "working")  # a job's other statuses mean it ended
# qingcloud-sdk's method -> QingCloud's action (what messages and test=True name)
ACTIONS = {
    "describe_loadbalancers": "DescribeLoadBalancers",
    "create_loadbalancer": "CreateLoadBalancer",
    "update_loadbalancers": "UpdateLoadBalancers",
    "describe_loadbalancer_listeners": "DescribeLoadBalancerListeners",
    "add_listeners_to_loadbalancer": "AddLoadBalancerListeners",
    "modify_loadbalancer_listener_attributes": "ModifyLoadBalancerListenerAttributes",
    "delete_loadbalancer_listeners": "DeleteLoadBalancerListeners",
    "add_backends_to_listener": "AddLoadBalancerBackends",
    "delete_loadbalancer_backends": "DeleteLoadBalancerBackends",
    "delete_loadbalancers": "DeleteLoadBalancers",
    "describe_jobs": "DescribeJobs",
    "describe_instances": "DescribeInstances",
    "describe_security_groups": "DescribeSecurityGroups",
    "describe_security_group_rules": "DescribeSecurityGroupRules",
    "add_security_group_rules": "AddSecurityGroupRules",
    "delete_security_group_rules": "DeleteSecurityGroupRules",
    "apply_security_group": "ApplySecurityGroup",
}


class QingCloudError(Exception):
    """A call QingCloud refused, or a job that failed: its message names the action and says
    QingCloud's code and message (never a parameter, so never a key)."""


def credentials(qc):
    """(access key ID, secret key) from the pillar, or from ``credentials_file`` (YAML)."""
    if qc.get("credentials_file"):
        try:
            with open(qc["credentials_file"], encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as err:
            raise QingCloudError(
                f"ksha:loadbalancer:qingcloud:credentials_file: cannot read {qc['credentials_file']}: "
                f"{type(err).__name__}"
            ) from None
        if not isinstance(data, dict) or not data.get("access_key_id") or not data.get("secret_access_key"):
            raise QingCloudError(
                f"ksha:loadbalancer:qingcloud:credentials_file: {qc['credentials_file']} must be YAML with "
                "access_key_id and secret_access_key"
            )
        return str(data["access_key_id"]), str(data["secret_access_key"])
    if not qc.get("access_key_id") or not qc.get("secret_access_key"):
        raise QingCloudError(
            "ksha:loadbalancer:qingcloud: no API key: set access_key_id and secret_access_key, or credentials_file"
        )
    return str(qc["access_key_id"]), str(qc["secret_access_key"])


def connect(qc, timeout=None):
    """A connection of qingcloud-sdk with the key of ``qc`` (ksha:loadbalancer:qingcloud's
    settings); ``timeout``: the socket timeout in seconds (the SDK's default: 60)."""
    if APIConnection is None:
        raise QingCloudError("qingcloud-sdk is not installed in the Salt master's Python (pip install qingcloud-sdk)")
    key, secret = credentials(qc)
    api = qc.get("api") or {}
    # one attempt per call: the retries of busy answers are ours (call), counted and logged
    extra = {"http_socket_timeout": timeout} if timeout else {}
    conn = APIConnection(
        key, secret, qc["zone"], host=api.get("host", "api.qingcloud.com"), port=api.get("port", 443),
        protocol=api.get("protocol", "https"), retry_time=1, **extra,
    )  # fmt: skip
    # what a wrong key's answer (1200) names: where the key came from
    conn.ksha_key_source = (
        f"ksha:loadbalancer:qingcloud:credentials_file ({qc['credentials_file']})"
        if qc.get("credentials_file")
        else "ksha:loadbalancer:qingcloud's access_key_id and secret_access_key"
    )
    return conn


def _scrubbed(conn, text):
    """`text` without the key (an SDK error may carry the request: its URL has the key's ID and
    the signature)."""
    for secret in (getattr(conn, "qy_access_key_id", None), getattr(conn, "qy_secret_access_key", None)):
        if secret:
            text = text.replace(str(secret), "***")
    return re.sub(r"signature=[^&\s]*", "signature=***", text)


def call(conn, method, *args, **kwargs):
    """One SDK call; its answer, retrying (backing off) while QingCloud answers busy."""
    action = ACTIONS[method]
    for attempt in range(1, ATTEMPTS + 1):
        try:
            answer = getattr(conn, method)(*args, **kwargs)
        except OSError as err:  # the endpoint unreachable, a timeout, TLS (ksha:loadbalancer:qingcloud:api)
            raise QingCloudError(
                f"{action}: cannot reach the QingCloud API at {conn.host}:{conn.port} ({type(err).__name__}: "
                f"{_scrubbed(conn, str(err))}); check ksha:loadbalancer:qingcloud:api"
            ) from None
        except Exception as err:  # noqa: BLE001 - the SDK's own refusals, a broken answer: named, no traceback
            raise QingCloudError(
                f"{action}: qingcloud-sdk failed: {type(err).__name__}: {_scrubbed(conn, str(err))}"
            ) from None
        if answer is None:
            raise QingCloudError(f"{action}: no answer from the QingCloud API (HTTP error or a refused parameter)")
        code = answer.get("ret_code")
        if code == 0:
            return answer
        retry = code == BUSY or (code == INTERNAL and method.startswith("describe_"))
        if retry and attempt < ATTEMPTS:
            delay = min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            log.info("ksha_qingcloud: %s answered %s (busy), attempt %d of %d, again in %.1f s",
                     action, code, attempt, ATTEMPTS, delay)  # fmt: skip
            time.sleep(delay)
            continue
        source = getattr(conn, "ksha_key_source", "ksha:loadbalancer:qingcloud's access_key_id and secret_access_key")
        hint = f" (check {source})" if code == 1200 else ""
        message = _scrubbed(conn, str(answer.get("message")))
        raise QingCloudError(f"{action}: QingCloud answered ret_code {code}: {message}{hint}")
    raise AssertionError("unreachable")


def wait(conn, job_id, action, timeout):
    """Until QingCloud's job `job_id` ends; raise unless it succeeded."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        (job,) = call(conn, "describe_jobs", jobs=[job_id])["job_set"]
        if job["status"] == "successful":
            return
        if job["status"] not in RUNNING:  # failed, or "done with failure" (QingCloud's SDKs know both)
            raise QingCloudError(
                f"{action}: QingCloud's job {job_id} ended {job['status']} "
                f"(error code {job.get('error_codes') or 'none given'})"
            )
        if time.monotonic() > deadline:
            raise QingCloudError(
                f"{action}: QingCloud's job {job_id} is still {job['status']} after {timeout} s "
                "(ksha:loadbalancer:qingcloud:job_timeout_s)"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 3.0)


def security_group(conn, group_id):
    """DescribeSecurityGroups' item of `group_id`; a group QingCloud does not know is named."""
    groups = call(conn, "describe_security_groups", security_groups=[group_id])["security_group_set"]
    if len(groups) != 1:
        raise QingCloudError(
            f"DescribeSecurityGroups: QingCloud has no security group {group_id} in this zone; check "
            "ksha:loadbalancer:qingcloud:security_group"
        )
    return groups[0]


def found(conn, name):
    """The load balancer named `name` (not deleted), or None."""
    lbs = call(conn, "describe_loadbalancers", search_word=name,
               status=["pending", "active", "stopped", "suspended"], verbose=0, limit=100)["loadbalancer_set"]  # fmt: skip
    exact = [lb for lb in lbs if lb["loadbalancer_name"] == name]
    if any(lb["status"] == "suspended" for lb in exact):
        raise QingCloudError(
            f"{name} ({', '.join(lb['loadbalancer_id'] for lb in exact)}) is suspended (QingCloud suspends the "
            "resources of an account in arrears): resume it in QingCloud, then run again"
        )
    if len(exact) > 1:
        raise QingCloudError(
            f"{len(exact)} load balancers are named {name} ({', '.join(lb['loadbalancer_id'] for lb in exact)}): "
            "delete all but one in QingCloud, or set ksha:loadbalancer:qingcloud:name_prefix"
        )
    return exact[0] if exact else None


def listeners(conn, lb_id):
    return call(conn, "describe_loadbalancer_listeners", loadbalancer=lb_id, verbose=1, limit=100)[
        "loadbalancer_listener_set"
    ]
