"""QingCloud load balancers kept by ksha (ksha:loadbalancer:mode qingcloud), through qingcloud-sdk.

``loadbalancers_present`` describes first, then calls only what is missing or different, as
``ksha.qingcloud.plan`` and ``rules_plan`` (pure, table-tested) decide: the load balancer
(created, then waited for until active), its listeners, its backends (the missing added, the
stale removed), the security group's rules for the LB ports; then ``UpdateLoadBalancers`` /
``ApplySecurityGroup`` when something changed or was never applied, waiting on the job.
``test=True`` lists the API actions it would call and calls none of them. A call QingCloud
answers busy (ret_code 5100: "retry later"; 5000, internal error, for a read) is retried, a few
times, backing off; any other error, or a job that fails, fails the state with QingCloud's code
and message and the job's ID.

Where it runs: in the orchestration on the Salt master (docs/ARCHITECTURE.md, "QingCloud load
balancers"), so the API key is read in one place: the master's pillar
(``ksha:loadbalancer:qingcloud:access_key_id``/``secret_access_key``) or the file
``credentials_file`` names, on the master. The key is never in the state's arguments, its
output, its comments or the log.
"""

import logging
import random
import time

import yaml

try:
    from qingcloud.iaas.connection import APIConnection

    HAS_SDK = True
except ImportError:  # pragma: no cover - __virtual__ says so
    HAS_SDK = False

try:
    from ksha import qingcloud

    HAS_KSHA = True
except ImportError:  # pragma: no cover
    HAS_KSHA = False

log = logging.getLogger(__name__)

__virtualname__ = "ksha_qingcloud"

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


def __virtual__():
    if not HAS_SDK:
        return (
            False,
            "ksha_qingcloud: qingcloud-sdk is not installed in the Salt master's Python (pip install qingcloud-sdk)",
        )
    if not HAS_KSHA:
        return False, "ksha_qingcloud: the 'ksha' Python package is not importable"
    return __virtualname__


class QingCloudError(Exception):
    """A call QingCloud refused, or a job that failed: its message names the action and says
    QingCloud's code and message (never a parameter, so never a key)."""


def _settings():
    return ((__pillar__.get("ksha") or {}).get("loadbalancer") or {}).get("qingcloud") or {}


def _credentials(qc):
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


def _connect(qc):
    key, secret = _credentials(qc)
    api = qc.get("api") or {}
    # one attempt per call: the retries of busy answers are ours (_call), counted and logged
    return APIConnection(
        key, secret, qc["zone"], host=api.get("host", "api.qingcloud.com"), port=api.get("port", 443),
        protocol=api.get("protocol", "https"), retry_time=1,
    )  # fmt: skip


def _call(conn, method, *args, **kwargs):
    """One SDK call; its answer, retrying (backing off) while QingCloud answers busy."""
    action = ACTIONS[method]
    for attempt in range(1, ATTEMPTS + 1):
        try:
            answer = getattr(conn, method)(*args, **kwargs)
        except OSError as err:  # the endpoint unreachable, a timeout, TLS (ksha:loadbalancer:qingcloud:api)
            raise QingCloudError(
                f"{action}: cannot reach the QingCloud API at {conn.host}:{conn.port} ({type(err).__name__}: "
                f"{err}); check ksha:loadbalancer:qingcloud:api"
            ) from None
        except Exception as err:  # noqa: BLE001 - the SDK's own refusals, a broken answer: named, no traceback
            raise QingCloudError(f"{action}: qingcloud-sdk failed: {type(err).__name__}: {err}") from None
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
        hint = " (check ksha:loadbalancer:qingcloud's access_key_id and secret_access_key)" if code == 1200 else ""
        raise QingCloudError(f"{action}: QingCloud answered ret_code {code}: {answer.get('message')}{hint}")
    raise AssertionError("unreachable")


def _wait(conn, job_id, action, timeout):
    """Until QingCloud's job `job_id` ends; raise unless it succeeded."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        (job,) = _call(conn, "describe_jobs", jobs=[job_id])["job_set"]
        if job["status"] == "successful":
            return
        if job["status"] not in RUNNING:  # failed, or "done with failure" (QingCloud's SDKs know both)
            raise QingCloudError(
                f"{action}: QingCloud's job {job_id} ended {job['status']} "
                f"(error code {job.get('error_codes') or 'none given'})"
            )
        if time.monotonic() > deadline:
            raise QingCloudError(f"{action}: QingCloud's job {job_id} is still {job['status']} after {timeout} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 3.0)


def _found(conn, name):
    """The load balancer named `name` (not deleted), or None."""
    lbs = _call(conn, "describe_loadbalancers", search_word=name, status=["pending", "active", "stopped"],
                verbose=0, limit=100)["loadbalancer_set"]  # fmt: skip
    exact = [lb for lb in lbs if lb["loadbalancer_name"] == name]
    if len(exact) > 1:
        raise QingCloudError(
            f"{len(exact)} load balancers are named {name} ({', '.join(lb['loadbalancer_id'] for lb in exact)}): "
            "delete all but one in QingCloud, or set ksha:loadbalancer:qingcloud:name_prefix"
        )
    return exact[0] if exact else None


def _listeners(conn, lb_id):
    return _call(conn, "describe_loadbalancer_listeners", loadbalancer=lb_id, verbose=1, limit=100)[
        "loadbalancer_listener_set"
    ]


def _carry_out(conn, lb_id, plan, timeout, done):
    """The listener and backend calls of `plan`, then the update; each action called is appended
    to `done` as it is made (a failure later leaves what was done in the state's changes)."""
    if plan["delete_listeners"]:
        _call(conn, "delete_loadbalancer_listeners", plan["delete_listeners"])
        done.append("DeleteLoadBalancerListeners")
    for listener_id, changes in plan["modify_listeners"]:
        _call(conn, "modify_loadbalancer_listener_attributes", listener_id, **changes)
        done.append("ModifyLoadBalancerListenerAttributes")
    if plan["add_listeners"]:
        _call(conn, "add_listeners_to_loadbalancer", lb_id, plan["add_listeners"])
        done.append("AddLoadBalancerListeners")
    if plan["delete_backends"]:
        _call(conn, "delete_loadbalancer_backends", plan["delete_backends"])
        done.append("DeleteLoadBalancerBackends")
    if plan["add_backends"]:
        by_port = {x["listener_port"]: x["loadbalancer_listener_id"] for x in _listeners(conn, lb_id)}
        for port, backends in plan["add_backends"]:
            _call(conn, "add_backends_to_listener", by_port[port], backends)
            done.append("AddLoadBalancerBackends")
    if plan["update"]:
        job = _call(conn, "update_loadbalancers", [lb_id])["job_id"]
        done.append("UpdateLoadBalancers")
        _wait(conn, job, "UpdateLoadBalancers", timeout)


def _instances(conn, lbs):
    """The load balancers with every backend's instance (found by the host's IP in the hosts'
    VxNet where the pillar names none); a host without one, or with two, fails, naming it."""
    if all(b["resource_id"] for lb in lbs for x in lb["listeners"] for b in x["backends"]):
        return lbs
    described = []
    while True:  # every page: QingCloud answers at most 100 a call
        page = _call(conn, "describe_instances", status=["pending", "running", "stopped"], verbose=0,
                     offset=len(described), limit=100)  # fmt: skip
        described += page["instance_set"]
        if not page["instance_set"] or len(described) >= page.get("total_count", 0):
            break
    vxnet = next(lb["vxnet"] for lb in lbs if lb["vxnet"])
    by_ip, ambiguous = qingcloud.instances_by_ip(described, vxnet)
    twice = sorted({b["host"] for lb in lbs for x in lb["listeners"] for b in x["backends"]
                    if not b["resource_id"] and b["ip"] in ambiguous})  # fmt: skip
    if twice:
        raise QingCloudError(
            f"more than one instance in {vxnet} has the ip of {', '.join(twice)}: set "
            "ksha:hosts[].qingcloud_instance_id for each"
        )
    filled, missing = qingcloud.with_instances(lbs, by_ip)
    if missing:
        raise QingCloudError(
            f"no QingCloud instance in {vxnet} has the ip of {', '.join(missing)}: set "
            "ksha:hosts[].qingcloud_instance_id for each, or check the hosts' ip against their instances' private IPs"
        )
    return filled


def loadbalancers_present(name, loadbalancers, rules=None, security_group=None, rule_names=(), job_timeout_s=600):
    """The QingCloud load balancers ``loadbalancers`` (``ksha.qingcloud.wanted``, from the cluster
    model) exist as described, applied, and the security group ``security_group`` lets ``rules``
    (``ksha.qingcloud.wanted_rules``) in.

    name
        A label (the orchestration step's).
    loadbalancers
        The wanted load balancers: name, vxnet, private_ip, eips, listeners and their backends.
    rules
        The security group rules the LB ports need (none without a security group of ksha's).
    rule_names
        The names ksha gives its rules (``ksha.qingcloud.rule_names``): only rules of these names
        are ever removed from the group.
    job_timeout_s
        How long to wait for each QingCloud job.
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    test = __opts__["test"]
    qc = _settings()
    try:
        conn = _connect(qc)
        lbs = _instances(conn, loadbalancers)
        would, comments = {}, []
        for want in lbs:
            found = _found(conn, want["name"])
            plan = qingcloud.plan(want, found, _listeners(conn, found["loadbalancer_id"]) if found else [])
            if plan["refuse"]:
                raise QingCloudError(plan["refuse"])
            if test:
                calls = qingcloud.calls(plan)
                if plan["create"]:  # then its listeners, backends and the update, once it is active
                    calls += ["AddLoadBalancerListeners", "AddLoadBalancerBackends", "UpdateLoadBalancers"]
                if calls:
                    would[want["name"]] = calls
                continue
            done = []
            if plan["create"]:
                made = _call(conn, "create_loadbalancer", **plan["create"])
                ret["changes"][want["name"]] = {"id": made["loadbalancer_id"], "calls": done}
                done.append("CreateLoadBalancer")
                _wait(conn, made["job_id"], "CreateLoadBalancer", job_timeout_s)
                found = _found(conn, want["name"])
                plan = qingcloud.plan(want, found, [])
            ret["changes"][want["name"]] = {"id": found["loadbalancer_id"], "calls": done}
            _carry_out(conn, found["loadbalancer_id"], plan, job_timeout_s, done)
            if done:
                comments.append(f"{want['name']} ({found['loadbalancer_id']}): {', '.join(done)}")
            else:
                del ret["changes"][want["name"]]
        if security_group and rules:
            (group,) = _call(conn, "describe_security_groups", security_groups=[security_group])["security_group_set"]
            found_rules = _call(conn, "describe_security_group_rules", security_group, limit=100)[
                "security_group_rule_set"
            ]
            plan = qingcloud.rules_plan(rules, found_rules, group.get("is_applied", 1), list(rule_names))
            calls = (["DeleteSecurityGroupRules"] * bool(plan["delete"]) + ["AddSecurityGroupRules"] * bool(plan["add"])
                     + ["ApplySecurityGroup"] * plan["apply"])  # fmt: skip
            if test and calls:
                would[security_group] = calls
            elif calls:
                done = []
                ret["changes"][security_group] = {"calls": done}
                if plan["delete"]:
                    _call(conn, "delete_security_group_rules", plan["delete"])
                    done.append("DeleteSecurityGroupRules")
                if plan["add"]:
                    _call(conn, "add_security_group_rules", security_group, plan["add"])
                    done.append("AddSecurityGroupRules")
                job = _call(conn, "apply_security_group", security_group)["job_id"]
                done.append("ApplySecurityGroup")
                _wait(conn, job, "ApplySecurityGroup", job_timeout_s)
                comments.append(f"{security_group}: {', '.join(done)}")
    except QingCloudError as err:
        # what was called before the failure stays in the changes (they happened)
        ret.update(result=False, comment=str(err))
        if test:
            ret["changes"] = {}
        return ret
    if test:
        ret["result"] = None if would else True
        ret["changes"] = {k: {"would call": v} for k, v in would.items()}
        ret["comment"] = (
            "; ".join(f"{k}: would call {', '.join(v)}" for k, v in would.items())
            or "the load balancers are as wanted and applied"
        )
        return ret
    ret["comment"] = "; ".join(comments) or "the load balancers are as wanted and applied"
    return ret


def loadbalancers_absent(name, names, security_group=None, rule_names=(), address=None, job_timeout_s=600):
    """ksha's load balancers ``names`` do not exist, and no rule named one of ``rule_names`` is
    left in ``security_group`` (a switch away from qingcloud mode; the console's load balancer
    once ``eip`` is unset). The arguments are ``ksha.qingcloud.absent``'s, from the model.

    A load balancer at ``address`` (ksha:loadbalancer:address), or with a listener ksha did not
    make, is refused, naming it (``ksha.qingcloud.deletion_refusal``), and nothing is deleted.
    ``test=True`` lists the calls.
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    test = __opts__["test"]
    try:
        conn = _connect(_settings())
        doomed = {}
        for lb_name in names:
            found = _found(conn, lb_name)
            if found is None:
                continue
            why = qingcloud.deletion_refusal(found, _listeners(conn, found["loadbalancer_id"]), list(names), address)
            if why:
                raise QingCloudError(why)
            doomed[lb_name] = found["loadbalancer_id"]
        rules_plan = None
        if security_group and rule_names:
            (group,) = _call(conn, "describe_security_groups", security_groups=[security_group])["security_group_set"]
            found_rules = _call(conn, "describe_security_group_rules", security_group, limit=100)[
                "security_group_rule_set"
            ]
            rules_plan = qingcloud.rules_plan([], found_rules, group.get("is_applied", 1), list(rule_names))
            if not rules_plan["delete"]:
                rules_plan = None  # ksha's rules are gone: the group's own state is the operator's
        if test:
            would = {lb_name: {"would call": ["DeleteLoadBalancers"], "id": lb_id} for lb_name, lb_id in doomed.items()}
            if rules_plan:
                would[security_group] = {"would call": ["DeleteSecurityGroupRules", "ApplySecurityGroup"]}
            ret["changes"] = would
            ret["result"] = None if would else True
            ret["comment"] = (
                "; ".join(f"{k}: would call {', '.join(v['would call'])}" for k, v in would.items())
                or "none of ksha's load balancers to delete"
            )
            return ret
        if doomed:
            job = _call(conn, "delete_loadbalancers", list(doomed.values()))["job_id"]
            ret["changes"]["deleted"] = dict(doomed)
            _wait(conn, job, "DeleteLoadBalancers", job_timeout_s)
        if rules_plan:
            _call(conn, "delete_security_group_rules", rules_plan["delete"])
            ret["changes"][security_group] = {"calls": ["DeleteSecurityGroupRules"]}
            job = _call(conn, "apply_security_group", security_group)["job_id"]
            ret["changes"][security_group]["calls"].append("ApplySecurityGroup")
            _wait(conn, job, "ApplySecurityGroup", job_timeout_s)
    except QingCloudError as err:
        ret.update(result=False, comment=str(err))
        if test:
            ret["changes"] = {}
        return ret
    deleted = ", ".join(f"{k} ({v})" for k, v in (ret["changes"].get("deleted") or {}).items())
    ret["comment"] = (
        "; ".join(
            x for x in (f"deleted {deleted}" if deleted else "", "ksha's rules removed" if rules_plan else "") if x
        )
        or "none of ksha's load balancers to delete"
    )
    return ret
