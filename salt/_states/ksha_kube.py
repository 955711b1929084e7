"""ksha's Kubernetes control-plane states that plain states cannot express.

``running_with_current_config`` restarts a control-plane component when its unit, a file it
reads or its binary changed since it started. kube-apiserver (``rolling``): one master at a time
(an etcd lock), never while another apiserver is not ready, and done only once this one is ready
again and, on an LB host, UP in its haproxy; its decision is ``_restart_decision`` (pure). The
controller-manager and scheduler restart in place, with no lock: the API does not depend on
them, and their leader election moves the Lease (a restarted holder's expires: up to a lease
duration and a few retry periods without a leader); done once the unit stays active.

``node_roles`` gives every node the role labels and taints of the cluster model through the API
(admin.conf on a master): ``_node_patch`` (pure) decides the merge patch.

``objects_applied`` keeps a set of ksha's objects (the pod network's) in the API as rendered:
``_apply_plan`` (pure) decides what is created, replaced and deleted.

``service_account_keys_trusted`` writes a master's ``sa.pub`` from the public keys the masters
published to the Salt mine, read when the state runs (not when the SLS renders), so that
``test=True`` on hosts whose keys are not made yet shows the plan instead of a failure, and
refuses while this master's own published key is not the one its ``sa.key`` has.
"""

import hashlib
import json
import os
import re
import select
import signal
import subprocess
import tempfile
import time

__virtualname__ = "ksha_kube"


def __virtual__():
    return __virtualname__


def service_account_keys_trusted(name, user="root", mode="0644"):
    """``name`` (``sa.pub``) holds every master's service account public key, in master order
    (``ksha.service_account_keys``). Fails, changing nothing, while the Salt mine lacks a
    master's key, naming the master and how to publish it; with ``test=True`` that is the plan
    (``result: None``), as orch.ksha's step before this one publishes the keys
    (``ksha.publish_service_account_key``). Refuses, the same way, on a master whose ``sa.key``
    is not the key the mine holds for it.

    name
        The bundle file, ``ksha_model:kubernetes:service_account:pub``.
    """
    keys = __salt__["ksha.service_account_keys"]()
    me = __grains__["id"]
    sa = __salt__["ksha.model"]()["kubernetes"]["service_account"]
    # This master's own key as it is now: one made anew since it was published (a highstate
    # replacing a lost sa.key) would leave the mine, and every sa.pub, with the old one.
    try:
        own = __salt__["x509.get_public_key"](sa["key"]).strip() + "\n"
    except Exception:  # noqa: BLE001 - no key (ksha.kubernetes.pki makes it, before this)
        own = None
    if me in keys["keys"] and keys["keys"][me] != own:
        comment = (
            f"{me}'s service account key ({sa['key']}) is not the one the Salt mine holds for it: "
            f"run orch.ksha, or salt {me} ksha.publish_service_account_key, then this again"
        )
        if __opts__["test"]:
            return {"name": name, "result": None, "changes": {}, "comment": comment}
        return {"name": name, "result": False, "changes": {}, "comment": comment}
    if keys["missing"]:
        who = ", ".join(keys["missing"])
        if __opts__["test"]:
            return {
                "name": name,
                "result": None,
                "changes": {},
                "comment": f"{name} would trust every master's service account key once the Salt mine holds "
                f"{who}'s (orch.ksha publishes them in the step before this one)",
            }
        return {
            "name": name,
            "result": False,
            "changes": {},
            "comment": f"the Salt mine holds no service account public key ({sa['mine']}) of {who}: run orch.ksha, "
            f"which publishes them, or salt -L {','.join(keys['missing'])} ksha.publish_service_account_key",
        }
    return __states__["file.managed"](name, contents=keys["pem"], user=user, mode=mode)


def _restart_decision(changed, others_ready, waited_out=False):
    """Whether an apiserver restarts now (pure): ``(action, comment)``, action one of ``none``,
    ``restart``, ``wait``, ``refuse``.

    changed
        what it does not run with yet (``ksha.changed_since_start``); empty: nothing to do.
    others_ready
        ``{master: ready}``, every other master's apiserver ``/readyz`` as probed now.
    waited_out
        the wait for the others is over (``wait_ready_s``): a ``wait`` becomes a refusal.

    It restarts only while every other apiserver is ready, so no restart ever takes a second one
    down (with the rolling lock, one restart at a time); while one is not ready it waits, and
    refuses when the wait is over, naming them.
    """
    if not changed:
        return "none", "runs with its current configuration"
    unready = sorted(m for m, ready in others_ready.items() if not ready)
    if not unready:
        ready = ", ".join(sorted(others_ready)) or "none: the only master"
        return "restart", f"every other apiserver is ready ({ready})"
    serving = len(others_ready) - len(unready)
    if not waited_out:
        return "wait", f"waiting for the apiservers of {', '.join(unready)} to be ready"
    return "refuse", (
        f"not restarted: the apiservers of {', '.join(unready)} are not ready (/readyz), and restarting this one "
        f"would leave {serving} of {len(others_ready) + 1} serving. Make them ready (journalctl -u kube-apiserver "
        f"on {', '.join(unready)}), then run this again; changed: {', '.join(changed)}"
    )


def _restart_budget(masters, timeout, unit_restart_s):
    """Seconds a master may queue for the rolling lock: each of the `masters` may restart before
    this one, each waiting at most `timeout` for the others, for itself and for haproxy, plus its
    unit's own stop and start (`unit_restart_s`)."""
    return max(1, int(masters)) * (3 * int(timeout) + int(unit_restart_s) + 10)


def _ready(masters):
    """{master: whether its apiserver answers /readyz} (``ksha.apiserver_ready``)."""
    return {m: bool((__salt__["ksha.apiserver_ready"](m) or {}).get("ok")) for m in masters}


def _until(predicate, timeout, step=0.5):
    """The predicate's first truthy value within `timeout` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def _lock(k8s_flags, name, budget):
    """Hold the etcd lock `name`, with the apiserver's own etcd client certificate: ``etcdctl lock``
    runs, while it holds it, a shell that says so and then lives as long as this process does
    (``kill -0``), so no holder outlives the state (a Salt job killed midway frees the lock within a
    second); ``_release`` ends that shell, and etcdctl then releases the lock. Returns (holder,
    None) once held, within `budget` seconds, else (None, why)."""
    env = {
        **os.environ,
        "ETCDCTL_API": "3",
        "ETCDCTL_CACERT": k8s_flags["etcd-cafile"],
        "ETCDCTL_CERT": k8s_flags["etcd-certfile"],
        "ETCDCTL_KEY": k8s_flags["etcd-keyfile"],
    }
    # SIGTERM ends it at once and cleanly (etcdctl then exits 0): the trap runs while it waits
    hold = f'trap "exit 0" TERM; echo "held $$"; while kill -0 {os.getpid()} 2>/dev/null; do sleep 1 & wait $!; done'
    cmd = ["etcdctl", f"--endpoints={k8s_flags['etcd-servers']}", "lock", name, "--", "/bin/sh", "-c", hold]
    errors = tempfile.TemporaryFile()  # pylint: disable=consider-using-with
    try:
        # pylint: disable-next=consider-using-with
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, env=env)
    except OSError as exc:
        errors.close()
        return None, f"etcdctl lock: {exc}"
    proc.errors = errors
    ready, _, _ = select.select([proc.stdout], [], [], budget)
    line = proc.stdout.readline().split() if ready else []
    if len(line) == 2 and line[0] == b"held" and line[1].isdigit():
        proc.shell = int(line[1])
        return proc, None
    proc.shell = None
    return None, f"the {name} lock was not held within {budget} s: {_release(proc)[-400:]}"


def _held(proc):
    """Whether the lock's holder still runs (etcdctl exits once the lock or its session is gone)."""
    return proc.poll() is None


def _release(proc):
    """End the holder (the lock is released); etcdctl's error output, if any."""
    if proc.poll() is None:
        if proc.shell:
            try:
                os.kill(proc.shell, signal.SIGTERM)
            except OSError:
                pass
        else:  # still waiting for the lock
            proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.errors.seek(0)
    out = proc.errors.read().decode(errors="replace").strip()
    proc.errors.close()
    return out


def _up_in_haproxy(me):
    rows = __salt__["ksha_lb.backends"]()
    return any(row["name"] == me and row["state"] == "UP" for row in rows.get("backends", []))


# seconds a component restarted in place must stay active: one that refuses its flags or files
# exits at once, and systemd's Restart=on-failure shows it activating again
STAYS_ACTIVE_S = 3


def _what(name, rolling):
    if rolling:
        return f"{name} would be restarted, one master at a time, every other apiserver ready first"
    return f"{name} would be restarted in place (its leader election moves the lease if it holds it)"


def _stays_active(name, seconds, step=0.5):
    """Whether ``name`` is active at every look for `seconds` (``systemctl is-active``)."""
    deadline = time.monotonic() + seconds
    while True:
        state = __salt__["cmd.run_all"](["systemctl", "is-active", name], python_shell=False)
        if state["retcode"] != 0:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(step)


def _restart_in_place(name, changed):
    ret = {"name": name, "result": False, "changes": {"restarted": name, "because": changed}, "comment": ""}
    __salt__["cmd.run_all"](["systemctl", "daemon-reload"], python_shell=False)
    restart = __salt__["cmd.run_all"](["systemctl", "restart", name], python_shell=False)
    if restart["retcode"] != 0 or not _stays_active(name, STAYS_ACTIVE_S):
        how = (restart.get("stderr") or "").strip() or f"not active {STAYS_ACTIVE_S} s after its restart"
        ret["comment"] = f"{name} restarted but {how}\n{__salt__['ksha.journal_tail'](name)}"
        return ret
    ret.update(result=True, comment=f"{name} restarted in place, active {STAYS_ACTIVE_S} s after")
    return ret


def running_with_current_config(name, watched, binary=None, rolling=True, timeout=120):
    """Restart ``name`` when a file of ``watched`` changed after its process started, or its
    process does not run ``binary`` as it is now. ``rolling`` (kube-apiserver): one master at a
    time, never two apiservers down at once; else in place, done once it stays active.

    The rolling restart holds the etcd lock ``ksha_model:kubernetes:apiserver:lock``; holding it, it waits
    (up to ``timeout`` s) until every other master's apiserver answers ``/readyz`` (refusing when
    they do not: ``_restart_decision``), stops it, waits until the LB's haproxy see it DOWN
    (``loadbalancer.down_s``), starts it, waits until it is ready and, on an LB host, UP in its
    haproxy, and only then releases the lock. So highstates on every master at once
    restart them one after the other. A stopped service is left to ``service.running``.
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    found = __salt__["ksha.changed_since_start"](name, watched, binary)
    changed = found["changed"]
    if not changed:
        ret.update(result=True, comment=found["comment"])
        return ret
    if __opts__.get("test"):
        ret.update(result=None, comment=f"{_what(name, rolling)}: changed " + ", ".join(changed))
        return ret
    if not rolling:
        return _restart_in_place(name, changed)
    model = __salt__["ksha.model"]()
    me = __grains__["id"]
    k8s, lb = model["kubernetes"], model["loadbalancer"]
    masters = [b["name"] for b in lb["backends"]]
    others = [m for m in masters if m != me]
    # its unit's stop and start, the LB's checks seeing it down, then up (qingcloud mode: a minute or more)
    unit_restart_s = (
        k8s["apiserver"]["stop_timeout_s"] + lb["down_s"] + k8s["apiserver"]["start_timeout_s"] + lb["settle_s"]
    )
    budget = _restart_budget(len(masters), timeout, unit_restart_s)
    lock, why = _lock(model["me"]["flags"][k8s["apiserver"]["unit"]], k8s["apiserver"]["lock"], budget)
    if lock is None:
        ret["comment"] = f"{name} not restarted: {why}"
        return ret
    try:
        deadline = time.monotonic() + timeout
        while True:
            action, comment = _restart_decision(changed, _ready(others), time.monotonic() >= deadline)
            if action != "wait":
                break
            time.sleep(1)
        if action == "refuse":
            ret["comment"] = f"{name} {comment}"
            return ret
        if not _held(lock):
            ret["comment"] = f"{name} not restarted: the {k8s['apiserver']['lock']} lock was lost (etcd unreachable?)"
            return ret
        __salt__["cmd.run_all"](["systemctl", "daemon-reload"], python_shell=False)
        # Stopped, then started once every haproxy has seen it DOWN (the model's down_s): a
        # restart quicker than haproxy's checks would leave it UP there, and the new process
        # would get requests before it is ready; seen DOWN, it gets none until `rise` checks
        # of /readyz pass. Meanwhile the connections sent to it are refused and redispatched.
        stop = __salt__["cmd.run_all"](["systemctl", "stop", name], python_shell=False)
        ret["changes"] = {"restarted": name, "because": changed}
        if stop["retcode"] == 0:
            time.sleep(lb["down_s"])
        restart = (
            __salt__["cmd.run_all"](["systemctl", "start", name], python_shell=False) if stop["retcode"] == 0 else stop
        )
        if restart["retcode"] != 0 or not _until(lambda: _ready([me])[me], timeout):
            how = (restart.get("stderr") or "").strip() or f"not ready (/readyz) {timeout} s after its restart"
            journal = __salt__["ksha.journal_tail"](name)
            ret["comment"] = f"{name} restarted but {how}; the rolling restart stops here\n{journal}"
            return ret
        steps = [comment, "stopped"]
        if lb["down_s"]:
            steps.append(f"{lb['down_s']} s for haproxy to see it DOWN")
        steps += ["started", "ready"]
        if "loadbalancer" in model["me"]["roles"]:
            if not _until(lambda: _up_in_haproxy(me), timeout):
                ret["comment"] = f"{name} is ready but this host's haproxy does not see it UP after {timeout} s"
                return ret
            steps.append("UP in haproxy")
        elif lb["settle_s"]:
            # the LB hosts' haproxy see it UP within this (the model's check timings)
            time.sleep(lb["settle_s"])
            steps.append(f"{lb['settle_s']} s for haproxy to see it UP")
    finally:
        _release(lock)
    ret.update(
        result=True,
        changes={"restarted": name, "because": changed},
        comment=f"{name} restarted under the {k8s['apiserver']['lock']} lock: " + ", then ".join(steps),
    )
    return ret


def mod_watch(name, sfun=None, **kwargs):
    """The unit changed (``watch``): in a real run, the same as ``running_with_current_config``;
    under ``test=True``, where the unit is not written, its would-be change is the plan."""
    # Salt hands a mod_watch every argument of the low chunk, its own keys too: take this state's only
    args = {k: kwargs[k] for k in ("watched", "binary", "rolling", "timeout") if k in kwargs}
    if not __opts__.get("test"):
        return running_with_current_config(name, **args)
    found = __salt__["ksha.changed_since_start"](name, args.get("watched", []), args.get("binary"))
    if not found["running"]:
        return {
            "name": name,
            "result": None,
            "changes": {},
            "comment": f"{name} is not running: service.running starts it",
        }
    return {
        "name": name,
        "result": None,
        "changes": {},
        "comment": f"{_what(name, args.get('rolling', True))}: its unit or configuration file changes"
        + "".join(f", {c}" for c in found["changed"]),
    }


# the role labels and taint keys ksha owns on a node: others' are never touched
ROLE_PREFIX = "node-role.kubernetes.io/"
OWNED_ROLES = ("control-plane", "worker")


def _node_patch(node, labels, taints):
    """The JSON merge patch that gives `node` (the API's object) ksha's role `labels` and
    `taints` ({key, effect}), or None when it has them: labels ksha owns (OWNED_ROLES) and wants
    no more are removed; taints with a key ksha owns are replaced, every other taint is kept (the
    patch holds the whole list: a merge patch replaces lists)."""
    have = (node.get("metadata") or {}).get("labels") or {}
    owned = {ROLE_PREFIX + r for r in OWNED_ROLES}
    changed = {k: v for k, v in labels.items() if have.get(k) != v}
    changed.update({k: None for k in have if k in owned and k not in labels})
    current = (node.get("spec") or {}).get("taints") or []
    keys = {t["key"] for t in taints} | owned
    wanted = [t for t in current if t.get("key") not in keys] + [dict(t) for t in taints]

    def bag(items):  # the same taints in any order; the API stamps timeAdded itself
        return sorted(json.dumps({k: v for k, v in t.items() if k != "timeAdded"}, sort_keys=True) for t in items)

    same = bag(current) == bag(wanted)
    patch = {}
    if changed:
        patch["metadata"] = {"labels": changed}
    if not same:
        patch["spec"] = {"taints": wanted}
    # a node ksha cordoned to drain it (it was leaving the nodes) and that is wanted again: ksha's
    # cordon goes, never one that ksha did not make (an operator's maintenance)
    if CORDONED in ((node.get("metadata") or {}).get("annotations") or {}):
        patch.setdefault("metadata", {})["annotations"] = {CORDONED: None}
        patch.setdefault("spec", {})["unschedulable"] = None
    return patch or None


# the annotation ksha's cordon carries (node_drained), so that only ksha's own cordon is undone
CORDONED = "ksha/cordoned"


def _kubectl(kubeconfig, *args, stdin=None, timeout=60):
    return subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "--request-timeout=10s", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _not_found(proc):
    """kubectl's words for an object the API does not have (not any "not found": a wrong endpoint's
    "404 page not found" must not pass for a deleted Node)."""
    return proc.returncode != 0 and "Error from server (NotFound)" in proc.stderr


# kubectl drain's words (k8s.io/kubectl/pkg/drain, 1.30 to 1.32) for a pod it could not evict
# (each retry, then the global timeout) and for pods it would not evict at all
_EVICTING = re.compile(
    r'error when evicting pods/"([^"]+)" -n "([^"]+)"(?: \(will retry after \S+\))?: '
    r"(.+?)(?=, error when evicting |\]|, continuing command|$)"
)
_NO_CONTROLLER = re.compile(
    r"cannot delete (Pods? (?:that )?declare no controller[^:]*): (.+?)(?=, continuing command|$)"
)


def _drain_refusals(output):
    """The pods `kubectl drain`'s `output` (stdout and stderr) says it could not evict, as
    ``{namespace/pod: why}`` (pure): the last reason given for each (a pod whose eviction
    PodDisruptionBudgets refused until the timeout keeps that reason, not "global timeout
    reached"), and the pods no controller manages."""
    found = {}
    for line in output.splitlines():
        line = line.strip().removeprefix("error: ")
        for hit in _EVICTING.finditer(line):
            pod, why = f"{hit[2]}/{hit[1]}", hit[3].strip()
            if not why.startswith("global timeout reached") or pod not in found:
                found[pod] = why
        hit = _NO_CONTROLLER.search(line)
        if hit:
            for pod in hit[2].split(", "):
                found[pod.strip()] = hit[1]
    return found


def _pods_on(kubeconfig, node):
    """``namespace/name`` of the pods bound to `node`, or None when the API did not say."""
    got = _kubectl(kubeconfig, "get", "pods", "--all-namespaces", "--field-selector", f"spec.nodeName={node}",
                   "-o", "json")  # fmt: skip
    if got.returncode != 0:
        return None
    return sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in json.loads(got.stdout)["items"])


def _still_a_node(name):
    """A refusal when `name` is one of the cluster model's nodes (the plan drains and deletes
    only hosts that are no node), else None."""
    if name in __salt__["ksha.model"]()["nodes"]["hosts"]:
        return (f"{name} is a node of the cluster model (ksha:groups:kube-node, or a master while "
                "ksha:nodes:masters_run_kubelet): orch.ksha drains and deletes only hosts that are not")  # fmt: skip
    return None


def _leaving_node(name, kubeconfig, gone):
    """How node_drained and node_absent begin: (their return so far, the API's Node), the Node None
    when the return is final: `name` is a node of the model (refused), the API does not have it
    (the comment `gone`, no change) or did not answer."""
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    refusal = _still_a_node(name)
    if refusal:
        return {**ret, "result": False, "comment": refusal}, None
    got = _kubectl(kubeconfig, "get", "node", name, "-o", "json")
    if _not_found(got):
        return {**ret, "comment": gone}, None
    if got.returncode != 0:
        return {**ret, "result": False, "comment": f"kubectl get node {name}: {got.stderr.strip()}"}, None
    return ret, json.loads(got.stdout)


def node_drained(name, timeout, kubeconfig="/etc/kubernetes/admin.conf"):
    """Node `name` is cordoned (with ksha's annotation, so that ksha undoes only its own cordon
    when the host is a node again: ``_node_patch``) and drained: ``kubectl drain`` evicts its
    pods (PodDisruptionBudgets hold; DaemonSet pods stay, emptyDir data goes) for at most
    `timeout` seconds. Pods still there fail the state, named with why, and say the fix; the node
    stays cordoned. A node the API does not have counts as drained. ``test=True``: the pods it
    would evict, nothing changed. Refused for a node of the cluster model."""
    ret, node = _leaving_node(name, kubeconfig, f"{name} is not in the API: nothing to drain")
    if node is None:
        return ret
    pods = _pods_on(kubeconfig, name)
    cordoned = (node.get("spec") or {}).get("unschedulable") is True
    if pods == [] and cordoned:  # None: the API did not say, so drain
        ret["comment"] = f"{name} is cordoned and runs no pod"
        return ret
    if __opts__["test"]:
        changes = {} if cordoned else {"cordoned": name}
        ret.update(result=None, changes={**changes, "drained": pods if pods is not None else "its pods"},
                   comment=f"would {'' if cordoned else 'cordon and '}drain {name}, at most {timeout} s: "
                           + (", ".join(pods) if pods else "no pod on it" if pods is not None else "its pods"))  # fmt: skip
        return ret
    if not cordoned:
        patch = {"metadata": {"annotations": {CORDONED: "leaving the nodes (orch.ksha)"}},
                 "spec": {"unschedulable": True}}  # fmt: skip
        done = _kubectl(kubeconfig, "patch", "node", name, "--type", "merge", "-p", json.dumps(patch))
        if done.returncode != 0:
            ret.update(result=False, comment=f"kubectl patch node {name} (cordon): {done.stderr.strip()}")
            return ret
        ret["changes"]["cordoned"] = name
    drain = _kubectl(kubeconfig, "drain", name, "--ignore-daemonsets", "--delete-emptydir-data",
                     f"--timeout={timeout}s", timeout=timeout + 60)  # fmt: skip
    if drain.returncode != 0:
        output = drain.stdout + "\n" + drain.stderr
        refused = _drain_refusals(output)
        why = "; ".join(f"{pod}: {reason}" for pod, reason in sorted(refused.items())) or output.strip()[-1000:]
        ret.update(result=False, comment=(
            f"{name} is cordoned but not drained after ksha:nodes:drain_timeout_s ({timeout} s); pods that stay: "
            f"{why}. Nothing on {name} was changed. Let them go (relax or delete the PodDisruptionBudget that holds "
            "them, give a bare pod a controller or delete it) or raise ksha:nodes:drain_timeout_s, then run "
            f"orch.ksha again; to keep {name} a node, put it back in ksha:groups:kube-node and run orch.ksha "
            "(it undoes ksha's cordon)"))  # fmt: skip
        return ret
    left = _pods_on(kubeconfig, name)  # DaemonSets' pods stay (--ignore-daemonsets)
    if pods is None or left is None:  # the API did not say which: kubectl drain said it drained
        ret["changes"]["drained"] = name
        ret["comment"] = f"{name} cordoned and drained"
        return ret
    evicted = [p for p in pods if p not in left]
    if evicted:
        ret["changes"]["evicted"] = evicted
    ret["comment"] = f"{name} cordoned and drained" + (f": {', '.join(evicted)} evicted" if evicted else "")
    return ret


def node_absent(name, kubeconfig="/etc/kubernetes/admin.conf"):
    """Node `name` is not in the API (``kubectl delete node``): for a host that is no node any
    more, once ksha.node.stopped stopped its kubelet (a running kubelet registers its Node again).
    ``test=True``: whether it would be deleted. Refused for a node of the cluster model."""
    ret, node = _leaving_node(name, kubeconfig, f"{name} is not in the API")
    if node is None:
        return ret
    if __opts__["test"]:
        ret.update(result=None, changes={"deleted": name}, comment=f"would delete Node {name}")
        return ret
    done = _kubectl(kubeconfig, "delete", "node", name, "--ignore-not-found")
    if done.returncode != 0:
        ret.update(result=False, comment=f"kubectl delete node {name}: {done.stderr.strip()}")
        return ret
    ret.update(changes={"deleted": name}, comment=f"Node {name} deleted")
    return ret


def node_roles(name, nodes, kubeconfig="/etc/kubernetes/admin.conf", wait=60):
    """Every node of `nodes` ({node: {labels, taints}}, the cluster model's) has those role labels
    and taints in the API, read and patched with kubectl (`kubeconfig`). A node not registered
    yet (its kubelet just started) is waited for up to `wait` seconds; one still missing then
    fails the state, naming it. ``test=True``: what would be patched, nothing patched."""
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    deadline = time.monotonic() + wait
    pending = dict(nodes)
    notes = []
    while True:
        for node, want in list(pending.items()):
            got = _kubectl(kubeconfig, "get", "node", node, "-o", "json")
            if got.returncode != 0:
                if "NotFound" in got.stderr or "not found" in got.stderr:
                    continue  # not registered yet
                ret.update(result=False, comment=f"kubectl get node {node}: {got.stderr.strip()}")
                return ret
            patch = _node_patch(json.loads(got.stdout), want["labels"], want["taints"])
            del pending[node]
            if patch is None:
                continue
            if __opts__["test"]:
                ret["changes"][node] = patch
                continue
            done = _kubectl(kubeconfig, "patch", "node", node, "--type", "merge", "-p", json.dumps(patch))
            if done.returncode != 0:
                ret.update(result=False, comment=f"kubectl patch node {node}: {done.stderr.strip()}")
                return ret
            ret["changes"][node] = patch
        if not pending or time.monotonic() >= deadline or __opts__["test"]:
            break
        time.sleep(1)
    if pending:
        missing = ", ".join(sorted(pending))
        if __opts__["test"]:
            notes.append(f"not registered yet (their kubelets register when they start): {missing}")
        else:
            ret.update(result=False, comment=f"no Node in the API after {wait} s: {missing} (is its kubelet running? "
                                             "journalctl -u kubelet on it)")  # fmt: skip
            return ret
    if __opts__["test"] and ret["changes"]:
        ret["result"] = None
        notes.insert(0, f"would patch {', '.join(sorted(ret['changes']))}")
    elif __opts__["test"] and pending:
        ret["result"] = None
    elif ret["changes"]:
        notes.insert(0, f"patched {', '.join(sorted(ret['changes']))}")
    else:
        notes.insert(0, "every node has its role labels and taints")
    ret["comment"] = "; ".join(notes)
    return ret


# the annotation holding the sha256 of the object as ksha rendered it (objects_applied)
APPLIED = "ksha/applied-sha256"


def _digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _identity(obj):
    meta = obj.get("metadata") or {}
    group = obj.get("apiVersion", "").rpartition("/")[0]
    return (group, obj.get("kind"), meta.get("namespace") or "", meta.get("name"))


def _ref(obj):
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def _contains(live, want):
    """Whether `live` has every field `want` sets, with its value (lists: as many items, each
    containing `want`'s): what the API added (defaults, status, its metadata) does not count."""
    if isinstance(want, dict):
        return isinstance(live, dict) and all(k in live and _contains(live[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(live, list) and len(live) == len(want) and all(map(_contains, live, want))
    return live == want


def _labelled(obj, labels):
    found = (obj.get("metadata") or {}).get("labels") or {}
    return all(found.get(k) == v for k, v in labels.items())


def _apply_plan(desired, found, in_set, managed_by):
    """What ``objects_applied`` does (pure): ``{"create": [object], "replace": [object with the
    live resourceVersion], "delete": [live object], "unchanged": [ref], "foreign": [ref]}``.

    desired
        the objects as rendered, in the order they are created.
    found
        the live objects of the same names (``kubectl get -f``).
    in_set
        the live objects carrying the set's label (``kubectl get -l``, in the order of the
        set's kinds): those not rendered any more, and carrying ksha's label (`managed_by`) too,
        are deleted, in the reverse order (custom resource definitions last).
    managed_by
        ksha's label ({key: value}), on every object ksha applies.

    An object is replaced when its annotation ``APPLIED`` is not the digest of its rendering (it
    was rendered otherwise) or a field ksha sets has another value (drift). A live object of a
    rendered name without ksha's label is someone else's: ``foreign``, left alone.
    """
    live = {_identity(o): o for o in found}
    plan = {"create": [], "replace": [], "delete": [], "unchanged": [], "foreign": []}
    wanted = set()
    for obj in desired:
        key = _identity(obj)
        wanted.add(key)
        digest = _digest(obj)
        sent = json.loads(json.dumps(obj))
        sent["metadata"].setdefault("annotations", {})[APPLIED] = digest
        current = live.get(key)
        if current is None:
            plan["create"].append(sent)
        elif not _labelled(current, managed_by):
            plan["foreign"].append(_ref(obj))
        elif ((current.get("metadata") or {}).get("annotations") or {}).get(APPLIED) != digest or not _contains(
            current, obj
        ):
            sent["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
            plan["replace"].append(sent)
        else:
            plan["unchanged"].append(_ref(obj))
    plan["delete"] = [o for o in reversed(in_set) if _identity(o) not in wanted and _labelled(o, managed_by)]
    return plan


def _items(proc):
    out = json.loads(proc.stdout or "{}")
    return out.get("items", [out] if out.get("kind") else [])


VERBS = (("created", "create"), ("replaced", "replace"), ("deleted", "delete"))


def objects_applied(name, objects, set_name, set_label, kinds, managed_by, kubeconfig="/etc/kubernetes/admin.conf"):
    """The API holds `objects` (a set of ksha's, labelled ``set_label: set_name`` and
    `managed_by`) as rendered: each is created, or replaced (``kubectl replace``, with its
    resourceVersion) when its rendering changed or a field ksha sets was changed in the API; an
    object of the set that is no longer rendered is deleted (listed by label among `kinds`).
    Decided by ``_apply_plan`` (pure). An object of a rendered name that is not ksha's fails the
    state, named, and nothing is changed. ``test=True``: what would be created, replaced and
    deleted. A run that fails part way says what it had changed.

    name
        What the set is (free text).
    objects
        The objects, in creation order (the cluster model's ``network_objects``).
    kinds
        The resources the set's objects are of (``daemonsets.apps``, ...), for the deletion.
    managed_by
        ksha's label ({key: value}): an object without it is never replaced or deleted.
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    try:
        return _objects_applied(ret, objects, set_name, set_label, kinds, managed_by, kubeconfig)
    except subprocess.TimeoutExpired as err:
        ret.update(result=False, comment=f"kubectl did not finish in {err.timeout} s: {' '.join(err.cmd[4:6])} ...")
        return ret


def _objects_applied(ret, objects, set_name, set_label, kinds, managed_by, kubeconfig):
    # the set as the API has it: one kubectl, a list per kind (the usual run needs no more)
    selector = ",".join([f"{set_label}={set_name}", *(f"{k}={v}" for k, v in managed_by.items())])
    listed = _kubectl(kubeconfig, "get", ",".join(kinds), "--all-namespaces", "-l", selector, "-o", "json")
    if listed.returncode != 0:
        why = f"kubectl get -l {selector}: {listed.stderr.strip()}"
        if __opts__["test"]:  # a cluster not made yet: the plan is to create them all
            ret.update(result=None, changes={"created": [_ref(o) for o in objects]},
                       comment=f"{why}; once the API answers, would create all {len(objects)}")  # fmt: skip
        else:
            ret.update(result=False, comment=why)
        return ret
    found = _items(listed)
    # a rendered object not in the set: absent, or someone else's of that name (get by name)
    have = {_identity(o) for o in found}
    missing = [o for o in objects if _identity(o) not in have]
    if missing:
        got = _kubectl(kubeconfig, "get", "-f", "-", "--ignore-not-found", "-o", "json", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": missing}))  # fmt: skip
        if got.returncode != 0:
            ret.update(result=False, comment=f"kubectl get (the {set_name} objects): {got.stderr.strip()}")
            return ret
        found += _items(got)
    plan = _apply_plan(objects, found, _items(listed), managed_by)
    if plan["foreign"]:
        label = ", ".join(f"{k}={v}" for k, v in managed_by.items())
        ret.update(result=False, comment=(
            f"not ksha's (no label {label}), so left alone: {', '.join(plan['foreign'])}; delete them for ksha to "
            "create its own, or set ksha:network:plugin: none to keep yours. Nothing was changed"))  # fmt: skip
        return ret
    changes = {verb: [_ref(o) for o in plan[key]] for verb, key in VERBS if plan[key]}
    if not changes:
        ret["comment"] = f"the {len(objects)} {set_name} objects are as rendered"
        return ret
    if __opts__["test"]:
        ret.update(result=None, changes=changes, comment="would have " + ", ".join(
            f"{k} {len(v)}" for k, v in changes.items()))  # fmt: skip
        return ret
    for verb, key in VERBS[:2]:
        if plan[key]:
            # a stream of JSON objects, not a List: kubectl validates each by its own kind
            done = _kubectl(kubeconfig, key, "-f", "-", stdin="\n".join(json.dumps(o) for o in plan[key]))
            if done.returncode != 0:
                # what kubectl did before it failed ("<kind>/<name> created") is in its output
                did = "; ".join(done.stdout.strip().splitlines()) or "nothing"
                ret.update(result=False, comment=f"kubectl {key}: {done.stderr.strip()} (before that it did: {did})")
                return ret
            ret["changes"][verb] = changes[verb]
    for obj in plan["delete"]:
        meta = obj["metadata"]
        group = obj["apiVersion"].rpartition("/")[0]
        args = ["delete", f"{obj['kind'].lower()}{'.' + group if group else ''}", meta["name"], "--ignore-not-found"]
        done = _kubectl(kubeconfig, *args, *(["-n", meta["namespace"]] if meta.get("namespace") else []))
        if done.returncode != 0:
            ret.update(result=False, comment=f"kubectl delete {_ref(obj)}: {done.stderr.strip()}")
            return ret
        ret["changes"].setdefault("deleted", []).append(_ref(obj))
    ret["comment"] = "; ".join(f"{k} {len(v)}" for k, v in changes.items())
    return ret
