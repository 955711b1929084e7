"""salt/_states/ksha_kube.py under Salt's loader mock: the mine is the module's
``ksha.service_account_keys`` (its parsing has its own tests); the lab runs the real one."""

import json
import os
import subprocess
import sys
from unittest.mock import patch

import pytest

from tests.conftest import REPO, load_salt_module

kube = load_salt_module("states", "ksha_kube")
PEM = "-----BEGIN PUBLIC KEY-----\nk\n-----END PUBLIC KEY-----\n"
SA = {"key": "/etc/kubernetes/pki/sa.key", "pub": "/etc/kubernetes/pki/sa.pub", "mine": "ksha_kube_service_account_key"}


@pytest.fixture
def managed():
    return []


@pytest.fixture
def configure_loader_modules(managed):
    def file_managed(name, **kwargs):
        managed.append((name, kwargs))
        return {"name": name, "result": True, "changes": {"diff": "new file"}, "comment": "written"}

    return {
        kube: {
            "__opts__": {"test": False},
            "__grains__": {"id": "master1"},
            "__salt__": {
                "ksha.model": lambda: {"kubernetes": {"service_account": SA}},
                "x509.get_public_key": lambda key: PEM,  # master1's sa.key
            },
            "__states__": {"file.managed": file_managed},
        }
    }


def keys(pem, missing, published=None):
    published = {"master1": PEM} if published is None else published
    kube.__salt__["ksha.service_account_keys"] = lambda: {"pem": pem, "keys": published, "missing": missing}


def test_every_key_published_writes_the_bundle_with_file_managed(managed):
    keys(PEM * 3, [])
    ret = kube.service_account_keys_trusted(SA["pub"])
    assert ret["result"] is True and ret["changes"] == {"diff": "new file"}
    assert managed == [(SA["pub"], {"contents": PEM * 3, "user": "root", "mode": "0644"})]


def test_a_master_missing_from_the_mine_fails_naming_it_and_the_command(managed):
    keys(PEM, ["master2", "master3"])
    ret = kube.service_account_keys_trusted(SA["pub"])
    assert ret["result"] is False and ret["changes"] == {} and managed == []
    assert "of master2, master3: run orch.ksha" in ret["comment"]
    assert "salt -L master2,master3 ksha.publish_service_account_key" in ret["comment"]


def test_in_test_mode_a_missing_key_is_the_plan_not_a_failure(managed, monkeypatch):
    monkeypatch.setitem(kube.__opts__, "test", True)
    keys("", ["master1", "master2", "master3"], published={})
    ret = kube.service_account_keys_trusted(SA["pub"])
    assert ret["result"] is None and ret["changes"] == {} and managed == []
    assert "once the Salt mine holds master1, master2, master3's" in ret["comment"]


@pytest.mark.parametrize("test", [False, True])
def test_a_key_made_anew_since_it_was_published_is_refused_until_published(managed, monkeypatch, test):
    monkeypatch.setitem(kube.__opts__, "test", test)
    stale = PEM.replace("\nk\n", "\nold\n")
    keys(stale * 3, [], published={"master1": stale})
    ret = kube.service_account_keys_trusted(SA["pub"])
    assert ret["result"] is (None if test else False) and ret["changes"] == {} and managed == []
    assert (
        "master1's service account key (/etc/kubernetes/pki/sa.key) is not the one the Salt mine holds"
        in (ret["comment"])
    )
    assert "salt master1 ksha.publish_service_account_key" in ret["comment"]


# (case, changed, others_ready, waited_out, action, comment starts)
DECISIONS = [
    ("nothing changed: nothing to do, whatever the others", [], {"master2": False}, False, "none", "runs with"),
    ("changed, every other ready: restart", ["/u"], {"master2": True, "master3": True}, False, "restart",
     "every other apiserver is ready (master2, master3)"),
    ("the only master: restart", ["/u"], {}, False, "restart", "every other apiserver is ready (none: the only"),
    ("one other not ready: wait", ["/u"], {"master2": True, "master3": False}, False, "wait",
     "waiting for the apiservers of master3"),
    ("still not ready when the wait is over: refuse, naming it", ["/u"], {"master2": True, "master3": False}, True,
     "refuse", "not restarted: the apiservers of master3 are not ready (/readyz), and restarting this one would "
     "leave 1 of 3 serving"),
    ("none of the others ready: refuse too (this may be the last one serving)", ["/u"],
     {"master2": False, "master3": False}, True, "refuse", "not restarted: the apiservers of master2, master3"),
]  # fmt: skip


@pytest.mark.parametrize("case, changed, ready, waited_out, action, comment", DECISIONS, ids=[d[0] for d in DECISIONS])
def test_restart_decision(case, changed, ready, waited_out, action, comment):
    got, text = kube._restart_decision(changed, ready, waited_out)
    assert got == action and text.startswith(comment), text
    if action == "refuse":
        assert "journalctl -u kube-apiserver" in text and text.endswith("changed: /u")


def said(running, changed):
    """What ksha.changed_since_start says when nothing is to restart (its own tests check the words)."""
    return None if changed else f"ksha.changed_since_start's comment ({'running' if running else 'stopped'})"


@pytest.fixture
def apiserver(monkeypatch):
    """What kube-apiserver runs with now (ksha.changed_since_start); the lock must not be taken."""

    def no_lock(*args):
        raise AssertionError("the lock was taken")

    monkeypatch.setattr(kube, "_lock", no_lock)

    def found(running, changed):
        monkeypatch.setitem(
            kube.__salt__,
            "ksha.changed_since_start",
            lambda name, watched, binary: {"running": running, "changed": changed, "comment": said(running, changed)},
        )

    return found


def test_an_apiserver_with_its_current_configuration_or_stopped_is_left_alone(apiserver):
    apiserver(True, [])
    ret = kube.running_with_current_config("kube-apiserver", ["/u"], "/usr/local/bin/kube-apiserver")
    assert ret == {"name": "kube-apiserver", "result": True, "changes": {}, "comment": said(True, [])}
    apiserver(False, [])
    ret = kube.running_with_current_config("kube-apiserver", ["/u"])
    assert ret["result"] is True and ret["comment"] == said(False, [])


def test_in_test_mode_a_changed_apiserver_is_the_plan(apiserver, monkeypatch):
    monkeypatch.setitem(kube.__opts__, "test", True)
    apiserver(True, ["/etc/systemd/system/kube-apiserver.service", "/usr/local/bin/kube-apiserver was replaced"])
    ret = kube.running_with_current_config("kube-apiserver", ["/etc/systemd/system/kube-apiserver.service"])
    assert ret["result"] is None and ret["changes"] == {}
    assert ret["comment"] == (
        "kube-apiserver would be restarted, one master at a time, every other apiserver ready first: changed "
        "/etc/systemd/system/kube-apiserver.service, /usr/local/bin/kube-apiserver was replaced"
    )


def test_in_test_mode_a_unit_that_would_change_is_the_plan(apiserver, monkeypatch):
    """Under test=True the unit is not written: the watch (mod_watch) says the restart."""
    monkeypatch.setitem(kube.__opts__, "test", True)
    apiserver(True, [])
    ret = kube.mod_watch("kube-apiserver", sfun="running_with_current_config", watched=["/u"], binary="/b")
    assert ret["result"] is None and ret["changes"] == {}
    assert ret["comment"] == (
        "kube-apiserver would be restarted, one master at a time, every other apiserver ready first: its unit or configuration file changes"
    )
    apiserver(False, [])
    ret = kube.mod_watch("kube-apiserver", sfun="running_with_current_config", watched=["/u"], binary="/b")
    assert ret == {"name": "kube-apiserver", "result": None, "changes": {},
                   "comment": "kube-apiserver is not running: service.running starts it"}  # fmt: skip


def in_place(monkeypatch, active):
    """systemctl as the in-place restart sees it: every call recorded; ``is-active`` answers from
    `active` (one answer a look, the last repeated)."""
    calls, answers = [], list(active)
    monkeypatch.setattr(kube, "STAYS_ACTIVE_S", 0.2)

    def run_all(cmd, python_shell=False):
        calls.append(cmd[1:])
        if cmd[1] == "is-active":
            up = answers.pop(0) if len(answers) > 1 else answers[0]
            return {"retcode": 0 if up else 3, "stdout": "active" if up else "activating", "stderr": ""}
        return {"retcode": 0, "stdout": "", "stderr": ""}

    monkeypatch.setitem(kube.__salt__, "cmd.run_all", run_all)
    monkeypatch.setitem(kube.__salt__, "ksha.journal_tail", lambda name: f"(journal of {name})")
    monkeypatch.setitem(kube.__salt__, "ksha.model", lambda: pytest.fail("an in-place restart reads no model"))
    return calls


def test_the_controller_manager_restarts_in_place_without_the_lock(apiserver, monkeypatch):
    apiserver(True, ["/etc/kubernetes/controller-manager.conf"])
    calls = in_place(monkeypatch, [True])
    ret = kube.running_with_current_config("kube-controller-manager", ["/u"], "/b", rolling=False)
    assert ret == {
        "name": "kube-controller-manager",
        "result": True,
        "changes": {"restarted": "kube-controller-manager", "because": ["/etc/kubernetes/controller-manager.conf"]},
        "comment": "kube-controller-manager restarted in place, active 0.2 s after",
    }
    assert calls[:2] == [["daemon-reload"], ["restart", "kube-controller-manager"]]
    assert {tuple(c) for c in calls[2:]} == {("is-active", "kube-controller-manager")}


def test_a_component_that_does_not_stay_active_after_its_restart_fails_with_its_journal(apiserver, monkeypatch):
    apiserver(True, ["/etc/kubernetes/kube-scheduler.yaml"])
    in_place(monkeypatch, [True, False])  # started, then exited (a file it refuses)
    ret = kube.running_with_current_config("kube-scheduler", ["/u"], "/b", rolling=False)
    assert ret["result"] is False and ret["changes"]["restarted"] == "kube-scheduler"
    assert (
        ret["comment"] == "kube-scheduler restarted but not active 0.2 s after its restart\n(journal of kube-scheduler)"
    )


def test_in_test_mode_an_in_place_restart_is_the_plan(apiserver, monkeypatch):
    monkeypatch.setitem(kube.__opts__, "test", True)
    apiserver(True, ["/etc/kubernetes/kube-scheduler.yaml"])
    ret = kube.running_with_current_config("kube-scheduler", ["/u"], rolling=False)
    assert ret["result"] is None and ret["comment"] == (
        "kube-scheduler would be restarted in place (its leader election moves the lease if it holds it): "
        "changed /etc/kubernetes/kube-scheduler.yaml"
    )
    apiserver(True, [])
    ret = kube.mod_watch("kube-scheduler", sfun="running_with_current_config", watched=["/u"], rolling=False)
    assert ret["result"] is None and ret["comment"].startswith("kube-scheduler would be restarted in place")


def test_the_restart_budget_covers_every_master_and_its_units_restart():
    assert kube._restart_budget(3, 120, 135) == 3 * (3 * 120 + 135 + 10)
    assert kube._restart_budget(0, 10, 135) == 175


@pytest.fixture
def lock_etcd(standin_files, tmp_path):
    """This machine's etcd (TLS, client certificates of the test CA) and the apiserver's etcd flags for it."""
    from tests.conftest import start_etcd

    url, proc = start_etcd(standin_files, tmp_path / "etcd")
    flags = {
        "etcd-servers": url,
        "etcd-cafile": str(standin_files / "ca.crt"),
        "etcd-certfile": str(standin_files / "etcd-client.crt"),
        "etcd-keyfile": str(standin_files / "etcd-client.key"),
    }
    yield flags
    proc.kill()
    proc.wait()


def other_gets_the_lock(flags, within=2):
    """Whether another etcdctl holds the lock within `within` seconds (it then lets it go)."""
    env = {**os.environ, "ETCDCTL_API": "3", "ETCDCTL_CACERT": flags["etcd-cafile"],
           "ETCDCTL_CERT": flags["etcd-certfile"], "ETCDCTL_KEY": flags["etcd-keyfile"]}  # fmt: skip
    out = subprocess.run(
        ["timeout", str(within), "etcdctl", f"--endpoints={flags['etcd-servers']}", "lock", LOCK, "--", "true"],
        env=env, capture_output=True,
    )  # fmt: skip
    return out.returncode == 0


LOCK = "ksha-kube-apiserver-rolling-restart"


def test_the_rolling_lock_is_held_until_released_and_never_outlives_its_owner(lock_etcd):
    """The real etcd and etcdctl: while ksha holds the lock no other etcdctl gets it; once released,
    one does; and a holder whose owner process is gone frees it by itself."""
    held, why = kube._lock(lock_etcd, LOCK, 20)
    assert why is None and kube._held(held)
    assert not other_gets_the_lock(lock_etcd)
    assert kube._release(held) == ""
    assert not kube._held(held) and other_gets_the_lock(lock_etcd)

    # an owner that dies (a Salt job killed midway): its holder lets the lock go
    owner = subprocess.Popen([sys.executable, "-c", OWNER, json.dumps(lock_etcd)], cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert owner.stdout.readline().strip() == b"held"
        assert not other_gets_the_lock(lock_etcd)
    finally:
        owner.kill()
        owner.wait()
    assert other_gets_the_lock(lock_etcd, within=5)


# a process that takes the lock with the state's own _lock, says so, and waits to be killed
OWNER = """
import json, sys, time
from tests.conftest import REPO, load_salt_module
kube = load_salt_module("states", "ksha_kube")
held, why = kube._lock(json.loads(sys.argv[1]), "ksha-kube-apiserver-rolling-restart", 20)
print("held" if held else why, flush=True)
time.sleep(600)
"""


def test_a_lock_not_held_in_time_says_so_and_leaves_no_holder(lock_etcd):
    first, _ = kube._lock(lock_etcd, LOCK, 20)
    try:
        second, why = kube._lock(lock_etcd, LOCK, 1)
        assert second is None and why.startswith(f"the {LOCK} lock was not held within 1 s")
    finally:
        kube._release(first)
    assert other_gets_the_lock(lock_etcd)


def test_a_watch_in_a_real_run_checks_as_the_state_does_with_its_own_arguments_only(apiserver):
    """Salt hands mod_watch every key of the low chunk (its own too): they must not reach the state."""
    apiserver(True, [])
    ret = kube.mod_watch(
        "kube-apiserver", sfun="running_with_current_config", watched=["/u"], binary="/b", timeout=5,
        __reqs__={"watch": []}, __id__="ksha-kubernetes-kube-apiserver-restarted-when-changed", order=10001,
    )  # fmt: skip
    assert ret == {"name": "kube-apiserver", "result": True, "changes": {}, "comment": said(True, [])}


# --- node_roles ---------------------------------------------------------------------------

CP = "node-role.kubernetes.io/control-plane"
WORKER = "node-role.kubernetes.io/worker"
NOSCHEDULE = {"key": CP, "effect": "NoSchedule"}
NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute", "timeAdded": "2026-12-07T10:00:00Z"}

# (case, the node's labels, its taints, wanted labels, wanted taints, the merge patch or None)
NODE_PATCHES = [
    ("a new master: its label and taint", {"kubernetes.io/hostname": "m1"}, [], {CP: ""}, [NOSCHEDULE],
     {"metadata": {"labels": {CP: ""}}, "spec": {"taints": [NOSCHEDULE]}}),
    ("a master as it should be: nothing", {CP: ""}, [NOSCHEDULE], {CP: ""}, [NOSCHEDULE], None),
    ("a worker: its label only", {}, [], {WORKER: ""}, [], {"metadata": {"labels": {WORKER: ""}}}),
    ("another's taint is kept, ours added after it", {CP: ""}, [NOT_READY], {CP: ""}, [NOSCHEDULE],
     {"spec": {"taints": [NOT_READY, NOSCHEDULE]}}),
    ("the same taints in another order: nothing", {CP: ""}, [NOSCHEDULE, NOT_READY], {CP: ""}, [NOSCHEDULE], None),
    ("a former master now a worker: label and taint go", {CP: "", "team": "a"}, [NOSCHEDULE, NOT_READY],
     {WORKER: ""}, [], {"metadata": {"labels": {WORKER: "", CP: None}}, "spec": {"taints": [NOT_READY]}}),
    ("a role label ksha does not own stays", {"node-role.kubernetes.io/gpu": ""}, [], {WORKER: ""}, [],
     {"metadata": {"labels": {WORKER: ""}}}),
    ("our taint with another effect is replaced", {CP: ""}, [{"key": CP, "effect": "PreferNoSchedule"}], {CP: ""},
     [NOSCHEDULE], {"spec": {"taints": [NOSCHEDULE]}}),
]  # fmt: skip


@pytest.mark.parametrize("case, labels, taints, want_labels, want_taints, patch", NODE_PATCHES,
                         ids=[c[0] for c in NODE_PATCHES])  # fmt: skip
def test_node_patch(case, labels, taints, want_labels, want_taints, patch):
    node = {"metadata": {"name": "n", "labels": labels}, "spec": {"taints": taints} if taints else {}}
    assert kube._node_patch(node, want_labels, want_taints) == patch


class FakeKubectl:
    """kubectl against a dict of nodes: get -o json and patch --type merge, recorded."""

    def __init__(self, nodes):
        self.nodes, self.calls = nodes, []

    def __call__(self, kubeconfig, *args, stdin=None):
        self.calls.append(args)
        name = args[2]
        if name not in self.nodes:
            return subprocess.CompletedProcess(args, 1, "", f'Error from server (NotFound): nodes "{name}" not found')
        if args[0] == "get":
            return subprocess.CompletedProcess(args, 0, json.dumps(self.nodes[name]), "")
        patch = json.loads(args[-1])
        node = self.nodes[name]
        for key, value in patch.get("metadata", {}).get("labels", {}).items():
            if value is None:
                node["metadata"]["labels"].pop(key, None)
            else:
                node["metadata"]["labels"][key] = value
        if "spec" in patch:
            node.setdefault("spec", {})["taints"] = patch["spec"]["taints"]
        return subprocess.CompletedProcess(args, 0, "patched", "")


WANT = {"m1": {"labels": {CP: ""}, "taints": [NOSCHEDULE]}, "n1": {"labels": {WORKER: ""}, "taints": []}}


def fresh_nodes():
    return {n: {"metadata": {"name": n, "labels": {}}, "spec": {}} for n in ("m1", "n1")}


def test_node_roles_patches_then_leaves_alone_and_test_mode_patches_nothing(monkeypatch):
    fake = FakeKubectl(fresh_nodes())
    monkeypatch.setattr(kube, "_kubectl", fake)
    with patch.dict(kube.__opts__, {"test": True}):
        planned = kube.node_roles("2 nodes", WANT, wait=0)
    assert planned["result"] is None and sorted(planned["changes"]) == ["m1", "n1"]
    assert not [c for c in fake.calls if c[0] == "patch"]
    done = kube.node_roles("2 nodes", WANT, wait=0)
    assert done["result"] is True and sorted(done["changes"]) == ["m1", "n1"]
    assert fake.nodes["m1"]["spec"]["taints"] == [NOSCHEDULE]
    again = kube.node_roles("2 nodes", WANT, wait=0)
    assert (again["result"], again["changes"]) == (True, {})
    assert again["comment"] == "every node has its role labels and taints"


def test_node_roles_fails_naming_a_node_never_registered(monkeypatch):
    nodes = fresh_nodes()
    del nodes["n1"]
    monkeypatch.setattr(kube, "_kubectl", FakeKubectl(nodes))
    ret = kube.node_roles("2 nodes", WANT, wait=0)
    assert ret["result"] is False
    assert ret["comment"].startswith("no Node in the API after 0 s: n1 (is its kubelet running?")
    with patch.dict(kube.__opts__, {"test": True}):
        planned = kube.node_roles("2 nodes", WANT, wait=0)
    assert planned["result"] is None and "not registered yet" in planned["comment"]
