"""ksha_kube.node_drained and node_absent (salt/_states/ksha_kube.py) run as a state runs them,
with the real kubectl against the lab's kube-apiserver stand-in and a real etcd: a
PodDisruptionBudget holds a pod until the timeout and the failure names it; a pod without a
controller is named too; a free pod is evicted; ksha's cordon carries its annotation, which
``_node_patch`` undoes; a Node is deleted once. Pods' status is written as a kubelet would (admin,
the status subresource): no kubelet runs here. The parsing of kubectl drain's words and the
stand-in's eviction rule have their own tables."""

import json
import shutil
import subprocess
from unittest.mock import patch

import pytest

from tests.conftest import load_salt_module
from tests.unit.test_standin_kubectl import kubeconfig

kube = load_salt_module("states", "ksha_kube")
pytestmark = pytest.mark.skipif(not shutil.which("kubectl"), reason="needs kubectl (make apt)")


@pytest.fixture
def configure_loader_modules():
    return {
        kube: {
            "__opts__": {"test": False},
            "__grains__": {"id": "m1"},
            "__salt__": {"ksha.model": lambda: {"nodes": {"hosts": ["m1", "n1"]}}},
        }
    }


@pytest.fixture
def api(standin_apiserver, tmp_path):
    """(the admin kubeconfig's path, kubectl(*args, stdin=None) with it) with node n3 in the API."""
    port, files, _ = standin_apiserver
    conf = str(kubeconfig(files, port, "client", tmp_path / "admin.conf"))

    def kubectl(*args, stdin=None):
        return subprocess.run(["kubectl", "--kubeconfig", conf, "--request-timeout=10s", *args], input=stdin,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n3"}, "spec": {}}
    assert kubectl("create", "-f", "-", stdin=json.dumps(node)).returncode == 0
    return conf, kubectl


def running_pod(kubectl, name, owned=True, node="n3"):
    """A pod bound to `node`, Running and Ready as its kubelet would report it."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
           "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}  # fmt: skip
    if owned:
        pod["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f",
                                               "uid": "0b5c1f3e-1111-4a7e-9c1d-3f1e2d3c4b5a", "controller": True}]  # fmt: skip
    made = kubectl("create", "-f", "-", stdin=json.dumps(pod))
    assert made.returncode == 0, made.stderr
    status = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    done = kubectl("patch", "pod", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))
    assert done.returncode == 0, done.stderr


def budget(kubectl, min_available=1):
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}}}  # fmt: skip
    assert kubectl("create", "-f", "-", stdin=json.dumps(pdb)).returncode == 0


def node(kubectl, name="n3"):
    got = kubectl("get", "node", name, "-o", "json")
    return json.loads(got.stdout) if got.returncode == 0 else None


def pods(kubectl):
    return [p["metadata"]["name"] for p in json.loads(kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]]


def test_a_budget_holds_its_pod_until_the_timeout_then_the_pod_goes_once_it_allows(api):
    conf, kubectl = api
    running_pod(kubectl, "web-1")
    budget(kubectl)
    with patch.dict(kube.__opts__, {"test": True}):
        planned = kube.node_drained("n3", timeout=6, kubeconfig=conf)
    assert planned["result"] is None and planned["changes"] == {"cordoned": "n3", "drained": ["default/web-1"]}
    assert not node(kubectl)["spec"].get("unschedulable")  # test=True changed nothing

    held = kube.node_drained("n3", timeout=6, kubeconfig=conf)
    assert held["result"] is False
    assert (
        "pods that stay: default/web-1: Cannot evict pod as it would violate the pod's disruption budget."
        in held["comment"]
    ), held["comment"]
    assert "ksha:nodes:drain_timeout_s (6 s)" in held["comment"] and "Nothing on n3 was changed" in held["comment"]
    cordoned = node(kubectl)
    assert cordoned["spec"]["unschedulable"] is True
    assert cordoned["metadata"]["annotations"][kube.CORDONED]
    assert pods(kubectl) == ["web-1"]

    assert kubectl("delete", "pdb", "web").returncode == 0
    drained = kube.node_drained("n3", timeout=6, kubeconfig=conf)
    assert (drained["result"], drained["changes"]) == (True, {"evicted": ["default/web-1"]}), drained
    assert pods(kubectl) == []
    again = kube.node_drained("n3", timeout=6, kubeconfig=conf)
    assert (again["result"], again["changes"], again["comment"]) == (True, {}, "n3 is cordoned and runs no pod")


def test_a_pod_without_a_controller_is_named_and_kept(api):
    conf, kubectl = api
    running_pod(kubectl, "bare", owned=False)
    ret = kube.node_drained("n3", timeout=6, kubeconfig=conf)
    assert ret["result"] is False
    assert "default/bare: Pods that declare no controller (use --force to override)" in ret["comment"], ret["comment"]
    assert pods(kubectl) == ["bare"]


def test_a_node_taken_back_loses_ksha_s_cordon_only(api):
    conf, kubectl = api
    assert kube.node_drained("n3", timeout=6, kubeconfig=conf)["result"] is True
    patch_back = kube._node_patch(node(kubectl), {}, [])
    assert patch_back == {"metadata": {"annotations": {kube.CORDONED: None}}, "spec": {"unschedulable": None}}
    done = kubectl("patch", "node", "n3", "--type=merge", "-p", json.dumps(patch_back))
    assert done.returncode == 0, done.stderr
    back = node(kubectl)
    assert not back["spec"].get("unschedulable") and kube.CORDONED not in back["metadata"].get("annotations", {})
    # an operator's own cordon (no ksha annotation) is left alone
    assert kubectl("cordon", "n3").returncode == 0
    assert kube._node_patch(node(kubectl), {}, []) is None


def test_the_node_is_deleted_once_and_a_node_of_the_model_is_refused(api):
    conf, kubectl = api
    with patch.dict(kube.__opts__, {"test": True}):
        planned = kube.node_absent("n3", kubeconfig=conf)
    assert (planned["result"], planned["changes"]) == (None, {"deleted": "n3"}) and node(kubectl)
    gone = kube.node_absent("n3", kubeconfig=conf)
    assert (gone["result"], gone["changes"]) == (True, {"deleted": "n3"}) and node(kubectl) is None
    again = kube.node_absent("n3", kubeconfig=conf)
    assert (again["result"], again["changes"], again["comment"]) == (True, {}, "n3 is not in the API")
    for state in (kube.node_absent, kube.node_drained):
        refused = state("n1", kubeconfig=conf, **({"timeout": 6} if state is kube.node_drained else {}))
        assert refused["result"] is False and refused["comment"].startswith("n1 is a node of the cluster model")


# kubectl drain's output (k8s.io/kubectl/pkg/drain's words): (case, output, the refusals read)
DRAIN_OUTPUTS = [
    ("a budget's retries, then the timeout: the budget's reason stays",
     'evicting pod default/web-1\nerror when evicting pods/"web-1" -n "default" (will retry after 5s): Cannot evict '
     "pod as it would violate the pod's disruption budget.\nThere are pending nodes to be drained:\n n3\nerror when "
     'evicting pods/"web-1" -n "default": global timeout reached: 6s',
     {"default/web-1": "Cannot evict pod as it would violate the pod's disruption budget."}),
    ("two pods in one aggregate error",
     'error: unable to drain node "n3" due to error: [error when evicting pods/"a" -n "x": global timeout reached: '
     '6s, error when evicting pods/"b" -n "y": global timeout reached: 6s], continuing command...',
     {"x/a": "global timeout reached: 6s", "y/b": "global timeout reached: 6s"}),
    ("pods without a controller",
     'error: unable to drain node "n3" due to error: cannot delete Pods that declare no controller (use --force to '
     "override): default/bare, kube-system/b2, continuing command...",
     {"default/bare": "Pods that declare no controller (use --force to override)",
      "kube-system/b2": "Pods that declare no controller (use --force to override)"}),
    ("nothing kubectl names", "error: the server doesn't have a resource type \"nodes\"", {}),
]  # fmt: skip


@pytest.mark.parametrize("case, output, refusals", DRAIN_OUTPUTS, ids=[c[0] for c in DRAIN_OUTPUTS])
def test_drain_refusals(case, output, refusals):
    assert kube._drain_refusals(output) == refusals
