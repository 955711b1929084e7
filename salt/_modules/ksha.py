"""ksha execution module: the cluster model as this minion's pillar has it.

The master's external pillar ``ksha_model`` publishes the model (``ksha/model.py``)
to every cluster minion; the other ksha modules read their settings through
``ksha.model`` here, never from defaults of their own. The inventory is validated
on the master (``salt-run ksha.validate``), not here.

Salt 3008 masks pillar values at the output boundary and ``pillar.get`` called from
a job returns the masked form; this module reads ``__pillar__`` (plain values) and
returns what holds no secret exposed.
"""

import calendar
import os
import time

import salt.exceptions
import salt.utils.args
import salt.utils.secret

__virtualname__ = "ksha"


def __virtual__():
    return __virtualname__


def model():
    """The cluster model from this minion's pillar (``ksha_model``, including ``me``). It holds
    no secret: the VRRP password is ``***`` in its settings (``ksha.model.without_secrets``).

    Raises an error saying what is missing when the pillar has no usable model.

    CLI Example:

    .. code-block:: bash

        salt master1 ksha.model
    """
    found = __pillar__.get("ksha_model")
    if not found:
        raise salt.exceptions.CommandExecutionError(
            "no 'ksha_model' pillar: the master needs ext_pillar [{ksha_model: {}}] and the minion the 'ksha' "
            "pillar (then salt-run saltutil.sync_all; salt '*' saltutil.refresh_pillar)"
        )
    if found.get("errors"):
        raise salt.exceptions.CommandExecutionError(
            "the 'ksha' pillar is invalid (salt-run ksha.validate): " + "; ".join(found["errors"])
        )
    return found


def host(minion_id=None):
    """This minion's (or ``minion_id``'s) host entry of the model: name, ip, groups, roles,
    states, certificates; ``{}`` when it is not a cluster host.

    CLI Example:

    .. code-block:: bash

        salt '*' ksha.host
    """
    name = minion_id or __grains__["id"]
    found = next((h for h in model()["hosts"] if h["name"] == name), {})
    return salt.utils.secret.expose(found)


def roles(minion_id=None):
    """The ``ksha:groups`` naming this minion (or ``minion_id``), in the model's order.

    CLI Example:

    .. code-block:: bash

        salt '*' ksha.roles
    """
    return list(host(minion_id).get("groups", []))


# the __context__ of the runners ksha.runner calls, in this module's own (one orchestration's),
# and the key in it under which ksha_runner._fleet keeps the pillars it compiled
RUNNER_CONTEXT = "ksha.runner.context"
FLEET_SHARED = "ksha_runner.fleet"


def runner(name, **kwargs):
    """The result of the master's runner function ``name`` called with ``kwargs``, for the
    orchestrations (``orch/ksha.sls``) and the ``ksha`` states, which render and run on the master.

    It loads the runners and calls the function in this process, as ``saltutil.runner`` does
    through a ``RunnerClient``. Salt 3008.4 leaves that client and the ``MasterMinion`` it makes
    to the garbage collector, which logs ``[WARNING ] unclosed RunnerClient …`` and
    ``unclosed MasterMinion …`` lines on every ``salt-run state.orchestrate``; this makes
    neither. An error in the runner is raised here (``saltutil.runner`` returns its traceback
    as a string). The runners called from one orchestration share a ``__context__``
    (``RUNNER_CONTEXT`` in this module's): the pillars the plan was built from are the ones its
    preflight validates, compiled once (``ksha_runner._fleet``).

    Example (an orchestration SLS):

    .. code-block:: jinja

        {%- set plan = salt['ksha.runner']('ksha.plan', until='lb', output='data') %}
    """
    import salt.loader  # pylint: disable=import-outside-toplevel

    if "master_job_cache" not in __opts__:
        raise salt.exceptions.CommandExecutionError(
            f"ksha.runner runs on the master (orch/ksha.sls, the ksha states); use salt-run {name}"
        )
    runners = salt.loader.runner(__opts__, context=__context__.setdefault(RUNNER_CONTEXT, {FLEET_SHARED: {}}))
    try:
        if name not in runners:
            raise salt.exceptions.CommandExecutionError(
                f"no runner {name} on the master: install ksha there and run salt-run saltutil.sync_all"
            )
        return runners[name](**salt.utils.args.clean_kwargs(**kwargs))
    finally:
        runners.destroy()


PUBLIC_KEY_PEM = "-----BEGIN PUBLIC KEY-----"


def public_key_bundle(minions, published):
    """The public keys `minions` published (``{minion: PEM}``, a ``mine.get`` result), as one
    PEM text in `minions`' order, each minion's key, and the minions whose key is not there (or
    is not a PEM public key): ``{"pem": str, "keys": {minion: PEM}, "missing": [minion]}``.
    Pure: no mine, no files."""
    keys, missing = {}, []
    for minion in minions:
        key = published.get(minion)
        if isinstance(key, str) and key.strip().startswith(PUBLIC_KEY_PEM):
            keys[minion] = key.strip() + "\n"
        else:
            missing.append(minion)
    return {"pem": "".join(keys.values()), "keys": keys, "missing": missing}


def service_account_keys():
    """The service account public keys every apiserver trusts: each master's, as the masters
    published them to the Salt mine (``ksha_model:kubernetes:service_account:mine``), in master
    order; ``missing`` names the masters whose key the mine does not hold (one ``orch.ksha``, or
    ``ksha.publish_service_account_key`` on them, publishes it).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha.service_account_keys
    """
    k8s = model()["kubernetes"]
    masters = list(k8s["masters"])
    published = (
        __salt__["mine.get"](",".join(masters), k8s["service_account"]["mine"], tgt_type="list") if masters else {}
    )
    return public_key_bundle(masters, published or {})


def publish_service_account_key(timeout=60):
    """Publish this master's service account public key to the Salt mine and wait until the
    master's mine holds it (``mine.send`` only hands it to the minion's own process, which sends
    it on later): orch.ksha's step before ``ksha.kubernetes.service_account``, so that no master
    writes ``sa.pub`` with a key published before this run. True once the mine holds it;
    raises after ``timeout`` seconds (the step fails, naming this master).

    CLI Example:

    .. code-block:: bash

        salt -L master1,master2,master3 ksha.publish_service_account_key
    """
    sa = model()["kubernetes"]["service_account"]
    me = __grains__["id"]
    try:
        mine = __salt__["x509.get_public_key"](sa["key"])
    except Exception as exc:  # noqa: BLE001 - no key yet: ksha.kubernetes.pki makes it
        raise salt.exceptions.CommandExecutionError(
            f"{me} has no service account key {sa['key']} to publish (ksha.kubernetes.pki makes it): {exc}"
        ) from exc
    __salt__["mine.send"](sa["mine"], sa["key"], mine_function="x509.get_public_key")
    deadline = time.monotonic() + timeout
    while True:
        stored = (__salt__["mine.get"](me, sa["mine"], tgt_type="list") or {}).get(me)
        if isinstance(stored, str) and stored.strip() == mine.strip():
            return True
        if time.monotonic() >= deadline:
            raise salt.exceptions.CommandExecutionError(
                f"the Salt mine did not store {me}'s service account public key ({sa['mine']}) within {timeout} s "
                "(does the master keep minion data? minion_data_cache must not be False)"
            )
        time.sleep(0.5)


def apiserver_ready(master=None, timeout=2):
    """Whether ``master``'s (default: this master's) kube-apiserver answers ``/readyz`` with 200,
    over TLS verified with the cluster CA under the master's name, from this host: ``ksha_lb.probe``'s
    return (``ok``, ``status``, ``error``), or None when it is not a master. ``ksha.status`` and
    the apiservers' rolling restart ask it.

    CLI Example:

    .. code-block:: bash

        salt -L master1,master2,master3 ksha.apiserver_ready
    """
    found = model()
    name = master or __grains__["id"]
    # every master's apiserver: the LB's backends (whatever the LB mode)
    endpoint = next((b for b in found["loadbalancer"]["backends"] if b["name"] == name), None)
    if not endpoint:
        return None
    return __salt__["ksha_lb.probe"](
        address=endpoint["ip"], port=endpoint["port"], domain=name,
        cafile=found["kubernetes"]["cas"]["kubernetes"]["installed"], timeout=timeout,
    )  # fmt: skip


# the Leases the controller-manager and scheduler elect their leader with (kube-system)
LEADER_LEASES = ("kube-controller-manager", "kube-scheduler")


def _micro_time(text):
    """Seconds since the epoch of a Kubernetes MicroTime (``2026-12-04T18:50:01.123456Z``)."""
    stamp, _, fraction = text.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{fraction or 0}")


def parse_leases(text, masters, now):
    """The leader Leases of ``kubectl get leases -n kube-system -o json`` (pure): {lease: {holder,
    master, renewed_s_ago, duration_s, transitions, expired}} for each of ``LEADER_LEASES``, None
    for one not found. ``holder`` is client-go's identity (``<hostname>_<uuid>``); ``master`` its
    hostname when that is one of `masters`, else None; ``expired``: not renewed within its
    lease duration (no leader: a standby takes it over)."""
    import json  # pylint: disable=import-outside-toplevel

    found = {item["metadata"]["name"]: item.get("spec") or {} for item in json.loads(text).get("items", [])}
    out = {}
    for name in LEADER_LEASES:
        spec = found.get(name)
        if spec is None:
            out[name] = None
            continue
        holder = spec.get("holderIdentity") or None
        age = round(now - _micro_time(spec["renewTime"]), 1) if spec.get("renewTime") else None
        duration = spec.get("leaseDurationSeconds")
        hostname = holder.rsplit("_", 1)[0] if holder else None
        out[name] = {
            "holder": holder,
            "master": hostname if hostname in masters else None,
            "renewed_s_ago": age,
            "duration_s": duration,
            "transitions": spec.get("leaseTransitions", 0),
            "expired": holder is None or age is None or (duration is not None and age > duration),
        }
    return out


def leader_leases(timeout=5):
    """Who holds the controller-manager's and the scheduler's leader Leases, as the real kubectl
    with this master's ``admin.conf`` reads them (through the LB domain): ``parse_leases``'s
    return, or ``{"error": ...}`` when kubectl fails, None on a host that is not a master.

    CLI Example:

    .. code-block:: bash

        salt master1 ksha.leader_leases
    """
    found = model()
    return _admin_read(
        found, timeout, [["leases", "-n", "kube-system"]],
        lambda texts: parse_leases(texts[0], found["kubernetes"]["masters"], time.time()),
    )  # fmt: skip


def _admin_read(found, timeout, reads, parse):
    """``kubectl get <read> -o json`` for each of `reads` with this master's admin.conf (the real
    kubectl, through the LB domain), then `parse` of their outputs; ``{"error": ...}`` when kubectl
    fails or its answer cannot be read, None on a host that is not a master."""
    admin = ((found.get("me") or {}).get("kubeconfigs") or {}).get("admin")
    if not admin:
        return None
    kubectl = found["kubernetes"]["release_links"]["kubectl"]["link"]
    texts = []
    for read in reads:
        run = __salt__["cmd.run_all"](
            [kubectl, "--kubeconfig", admin["path"], f"--request-timeout={int(timeout)}s", "get", *read, "-o", "json"],
            python_shell=False, timeout=int(timeout) + 5, output_loglevel="quiet",
        )  # fmt: skip
        if run["retcode"] != 0:
            return {
                "error": (run.get("stderr") or run.get("stdout") or "").strip() or f"kubectl exited {run['retcode']}"
            }
        texts.append(run["stdout"])
    try:
        return parse(texts)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        return {"error": f"kubectl's answer could not be read ({type(err).__name__}: {err})"}


def parse_nodes(nodes_text, leases_text, now):
    """The nodes of ``kubectl get nodes -o json`` with their Leases in kube-node-lease (pure):
    {node: {ready ("True", "False", "Unknown"; None without a Ready condition), reason, roles
    (the ``node-role.kubernetes.io/`` labels), kubelet (its version), heartbeat_s_ago (the newer
    of its Lease's renewal and its Ready condition's heartbeat; None when neither says)}}."""
    import json  # pylint: disable=import-outside-toplevel

    renewed = {
        item["metadata"]["name"]: (item.get("spec") or {}).get("renewTime")
        for item in json.loads(leases_text).get("items", [])
    }
    out = {}
    for item in json.loads(nodes_text).get("items", []):
        name = item["metadata"]["name"]
        status = item.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        beats = [t for t in (renewed.get(name), ready.get("lastHeartbeatTime")) if t]
        heard = max((_micro_time(t) for t in beats), default=None)
        prefix = "node-role.kubernetes.io/"
        out[name] = {
            "ready": ready.get("status"),
            "reason": ready.get("reason"),
            "roles": sorted(k[len(prefix) :] for k in (item["metadata"].get("labels") or {}) if k.startswith(prefix)),
            "kubelet": (status.get("nodeInfo") or {}).get("kubeletVersion"),
            "heartbeat_s_ago": round(now - heard, 1) if heard is not None else None,
        }
    return out


def api_nodes(timeout=5):
    """The nodes as the API sees them (``parse_nodes``), read by the real kubectl with this
    master's ``admin.conf`` (through the LB domain), or ``{"error": ...}`` when kubectl fails,
    None on a host that is not a master.

    CLI Example:

    .. code-block:: bash

        salt master1 ksha.api_nodes
    """
    return _admin_read(
        model(), timeout, [["nodes"], ["leases", "-n", "kube-node-lease"]],
        lambda texts: parse_nodes(texts[0], texts[1], time.time()),
    )  # fmt: skip


def days_left(not_after, now):
    """Whole days from `now` (seconds since the epoch) until `not_after`, x509's
    ``"%Y-%m-%d %H:%M:%S"`` in UTC. Pure."""
    end = calendar.timegm(time.strptime(not_after, "%Y-%m-%d %H:%M:%S"))
    return int((end - now) // 86400)


def cert_days_left(path):
    """Days until the certificate at ``path`` expires (None if it cannot be read).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha.cert_days_left /etc/kubernetes/pki/apiserver.crt
    """
    try:
        cert = __salt__["x509.read_certificate"](path)
    except Exception:  # noqa: BLE001 - missing or unreadable: reported as unknown
        return None
    return days_left(cert["not_after"], time.time())


def certificates_days_left():
    """Days left of every certificate the model gives this minion, by the CA that signs it:
    ``{"etcd": {id: days}, "kubernetes": {id: days}}`` (None: missing or unreadable).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha.certificates_days_left
    """
    return {
        ca: {cert["id"]: cert_days_left(cert["path"] + ".crt") for cert in certs}
        for ca, certs in (host().get("certificates") or {}).items()
    }


def journal_tail(unit, lines=10):
    """The last `lines` lines of systemd ``unit``'s journal, as text (for the comments of failed
    restarts).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha.journal_tail kube-apiserver
    """
    out = __salt__["cmd.run_all"](
        ["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o", "cat"], python_shell=False
    )
    return (out.get("stdout") or "").strip()


def _main_process(unit):
    """(pid, wall-clock start time) of the unit's main process, or (None, None) when it is not running."""
    pid = __salt__["cmd.run"](["systemctl", "show", "-p", "MainPID", "--value", unit], python_shell=False).strip()
    if not pid.isdigit() or pid == "0":
        return None, None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None, None
    # From the uptime (1/100 s), not /proc/stat's btime (whole seconds, truncated): a file
    # written just before the process started must not look newer than the process.
    return pid, time.time() - (uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))


def _is_script(path):
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return False


def _stale_binary(pid, binary, started):
    """Why the process does not run `binary` as it is on disk now (another file, or one since
    replaced: an upgrade), or None. A `binary` that is a script (the process's exe is then its
    interpreter) is stale when it, or the link at `binary`, changed since the process started
    (`started`; their ctime): a link made to point elsewhere (a new release) is written anew."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    if exe.endswith(" (deleted)"):
        return f"{exe[: -len(' (deleted)')]} was replaced"
    if not os.path.exists(binary):
        return None
    target = os.path.realpath(binary)
    if exe == target:
        return None
    if not _is_script(target):
        return f"runs {exe}, not {target}"
    # ctime: what tar or touch cannot set back (an archive extracted anew keeps its files' mtimes)
    if os.path.islink(binary) and os.lstat(binary).st_ctime > started:
        return f"{binary} now points to {target}"
    if os.stat(target).st_ctime > started:
        return f"{target} was replaced"
    return None


def changed_since_start(unit, watched, binary=None):
    """What the running process of systemd ``unit`` does not run with yet: the files of
    ``watched`` changed since it started, and ``binary`` when the process runs another file or
    one since replaced (an upgrade; a binary that is a script, by the script the interpreter runs):
    ``{"running": bool, "changed": [what], "comment": why nothing is to restart, or None}``.
    The rolling restarts of etcd and kube-apiserver (``ksha_etcd``, ``ksha_kube`` states) read it.

    CLI Example:

    .. code-block:: bash

        salt master1 ksha.changed_since_start kube-apiserver '["/etc/systemd/system/kube-apiserver.service"]'
    """
    pid, started = _main_process(unit)
    if started is None:
        return {"running": False, "changed": [], "comment": f"{unit} is not running; nothing to restart"}
    changed = [p for p in watched if os.path.exists(p) and os.path.getmtime(p) > started]
    stale = _stale_binary(pid, binary, started) if binary else None
    changed += [stale] if stale else []
    comment = None if changed else f"{unit} runs with its current configuration"
    return {"running": True, "changed": changed, "comment": comment}
