"""ksha_kube.objects_applied (salt/_states/ksha_kube.py): what it decides (``_apply_plan``, a
table), then what it does, as a state runs it, with the real kubectl against the lab's
kube-apiserver stand-in and a real etcd: the pod network's objects are created, a rerun changes
nothing, a field changed in the API is put back, an object no longer rendered is deleted, one
that is not ksha's is refused, and ``test=True`` changes nothing."""

import copy
import json
import shutil
import subprocess
from unittest.mock import patch

import pytest

from ksha import network
from tests.conftest import load_salt_module
from tests.unit.test_network import SETTINGS
from tests.unit.test_standin_kubectl import kubeconfig

kube = load_salt_module("states", "ksha_kube")


@pytest.fixture
def configure_loader_modules():
    return {kube: {"__opts__": {"test": False}, "__grains__": {"id": "m1"}}}


def cm(name, data="1", labels=True, labels_only=None):
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": data},
           "metadata": {"name": name, "namespace": "kube-system"}}  # fmt: skip
    if labels:
        obj["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "ksha", "ksha/manifest": "calico"}
    if labels_only:
        obj["metadata"]["labels"] = labels_only
    return obj


def live(obj, applied=None, rv="7", **extra):
    """`obj` as the API returns it: its annotation (the digest of `applied`, default `obj`), a
    resourceVersion, and what the API adds."""
    out = copy.deepcopy(obj)
    out["metadata"].setdefault("annotations", {})[kube.APPLIED] = kube._digest(applied or obj)
    out["metadata"].update(resourceVersion=rv, uid="u")
    out.update(extra)
    return out


A, B, C = cm("a"), cm("b"), cm("c")
MANAGED = {"app.kubernetes.io/managed-by": "ksha"}
ONLY_IN_SET = cm("d", labels=False, labels_only={"ksha/manifest": "calico"})


@pytest.mark.parametrize(
    "case, desired, found, in_set, want",
    [
        ("nothing there: all created", [A, B], [], [], {"create": ["a", "b"]}),
        ("as rendered, with what the API adds", [A], [live(A, status={"x": 1})], [live(A)], {"unchanged": ["a"]}),
        ("rendered otherwise: replaced", [A], [live(A, applied=cm("a", "0"))], [live(A)], {"replace": ["a"]}),
        ("a field changed in the API: replaced", [A], [live(cm("a", "changed"), applied=A)], [], {"replace": ["a"]}),
        ("no longer rendered: deleted, last first", [A], [live(A)], [live(A), live(B), live(C)],
         {"unchanged": ["a"], "delete": ["c", "b"]}),
        ("someone else's: foreign", [A], [live(cm("a", labels=False))], [], {"foreign": ["a"]}),
        ("the set's label without ksha's: never deleted", [A], [live(A)], [live(A), live(ONLY_IN_SET)],
         {"unchanged": ["a"]}),
    ],
)  # fmt: skip
def test_apply_plan(case, desired, found, in_set, want):
    plan = kube._apply_plan(desired, found, in_set, MANAGED)
    names = {key: [o if isinstance(o, str) else o["metadata"]["name"] for o in plan[key]] for key in plan if plan[key]}
    names = {k: [n.rpartition("/")[2] for n in v] for k, v in names.items()}
    assert names == want
    for sent in plan["create"] + plan["replace"]:  # what is sent carries the digest of the rendering
        rendered = next(o for o in desired if o["metadata"]["name"] == sent["metadata"]["name"])
        assert sent["metadata"]["annotations"] == {kube.APPLIED: kube._digest(rendered)}
    assert all(s["metadata"]["resourceVersion"] == "7" for s in plan["replace"])
    assert "annotations" not in A["metadata"]  # the rendering is not changed


@pytest.fixture
def api(standin_apiserver, tmp_path):
    if not shutil.which("kubectl"):
        pytest.skip("needs kubectl (make apt)")
    port, files, _ = standin_apiserver
    conf = str(kubeconfig(files, port, "client", tmp_path / "admin.conf"))

    def kubectl(*args, stdin=None):
        return subprocess.run(["kubectl", "--kubeconfig", conf, "--request-timeout=10s", *args], input=stdin,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    return conf, kubectl


def apply(conf, objects):
    return kube.objects_applied(
        "calico", objects, "calico", network.SET_LABEL, list(network.RESOURCES), dict(network.MANAGED_BY), conf
    )


def test_the_calico_objects_are_applied_kept_and_pruned_through_the_real_kubectl(api):
    conf, kubectl = api
    objects = network.calico_objects(SETTINGS)
    refs = [network.ref(o) for o in objects]
    with patch.dict(kube.__opts__, {"test": True}):
        planned = apply(conf, objects)
    assert (planned["result"], planned["changes"]) == (None, {"created": refs})
    assert kubectl("get", "daemonsets", "-A", "-o", "name").stdout == ""  # test=True changed nothing

    made = apply(conf, objects)
    assert (made["result"], made["changes"]) == (True, {"created": refs}), made["comment"]
    ds = json.loads(kubectl("get", "daemonset", "calico-node", "-n", "kube-system", "-o", "json").stdout)
    env = {e["name"]: e.get("value") for e in ds["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CALICO_IPV4POOL_CIDR"] == "10.233.64.0/18"
    crds = kubectl("get", "crd", "-o", "name").stdout.split()
    assert len(crds) == 18 and "customresourcedefinition.apiextensions.k8s.io/ippools.crd.projectcalico.org" in crds

    again = apply(conf, objects)
    assert (again["result"], again["changes"]) == (True, {}), again
    assert again["comment"] == "the 31 calico objects are as rendered"

    # drift: a field ksha sets, changed through the API, is put back on the next run
    changed = kubectl("set", "env", "daemonset/calico-node", "-n", "kube-system", "-c", "calico-node",
                      "CALICO_IPV4POOL_CIDR=10.1.0.0/16")  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    fixed = apply(conf, objects)
    assert (fixed["result"], fixed["changes"]) == (True, {"replaced": ["DaemonSet kube-system/calico-node"]}), fixed
    ds = json.loads(kubectl("get", "daemonset", "calico-node", "-n", "kube-system", "-o", "json").stdout)
    env = {e["name"]: e.get("value") for e in ds["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CALICO_IPV4POOL_CIDR"] == "10.233.64.0/18"

    # a rendering without the budget and with another MTU: the ConfigMap replaced, the budget deleted
    fewer = network.calico_objects({**SETTINGS, "mtu": 1440})[:-1]
    pruned = apply(conf, fewer)
    assert pruned["changes"] == {"replaced": ["ConfigMap kube-system/calico-config"],
                                 "deleted": ["PodDisruptionBudget kube-system/calico-kube-controllers"]}, pruned  # fmt: skip
    assert kubectl("get", "pdb", "-A", "-o", "name").stdout == ""
    assert json.loads(kubectl("get", "cm", "calico-config", "-n", "kube-system", "-o", "json").stdout)["data"][
        "veth_mtu"] == "1440"  # fmt: skip

    # nothing rendered any more: the whole set goes, in the reverse order of its kinds (CRDs last)
    emptied = apply(conf, [])
    deleted = emptied["changes"]["deleted"]
    assert sorted(deleted) == sorted(network.ref(o) for o in fewer), emptied
    assert deleted[0] == "Deployment kube-system/calico-kube-controllers"
    assert {r.split()[0] for r in deleted[-18:]} == {"CustomResourceDefinition"}
    assert kubectl("get", "crd,daemonsets,clusterroles", "-A", "-o", "name").stdout == ""


def test_an_object_that_is_not_ksha_s_is_refused_and_nothing_is_changed(api):
    conf, kubectl = api
    mine = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "calico-node", "namespace": "kube-system"},
    }
    assert kubectl("create", "-f", "-", stdin=json.dumps(mine)).returncode == 0
    ret = apply(conf, network.calico_objects(SETTINGS))
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("not ksha's (no label app.kubernetes.io/managed-by=ksha), so left alone: "
                                     "ServiceAccount kube-system/calico-node; delete them")  # fmt: skip
    assert kubectl("get", "crd", "-o", "name").stdout == ""


def test_under_test_an_api_that_does_not_answer_yet_means_every_object_would_be_created(tmp_path):
    """A cluster not made yet (orch.ksha test=True from bare hosts): no kubeconfig, no API."""
    if not shutil.which("kubectl"):
        pytest.skip("needs kubectl (make apt)")
    objects = network.calico_objects(SETTINGS)
    missing = str(tmp_path / "admin.conf")
    with patch.dict(kube.__opts__, {"test": True}):
        planned = apply(missing, objects)
    assert (planned["result"], planned["changes"]) == (None, {"created": [network.ref(o) for o in objects]})
    assert planned["comment"].endswith("once the API answers, would create all 31"), planned["comment"]
    failed = apply(missing, objects)
    assert (failed["result"], failed["changes"]) == (False, {}) and "kubectl get" in failed["comment"]
