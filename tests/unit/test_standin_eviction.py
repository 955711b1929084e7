"""The kube-apiserver stand-in's eviction rule and selectors (pure), as the real apiserver's
(pkg/registry/core/pod/storage/eviction.go, the field and label selectors). kubectl drain against
it runs in test_ksha_kube_drain.py."""

import pytest

from ksha_lab.standins.kube_component import ApiError, eviction_refusal, fields_match, label_selected


def pod(name, ready=True, phase="Running", app="web", deleting=False):
    meta = {"name": name, "labels": {"app": app}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T10:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}  # fmt: skip


def pdb(name="web", app="web", **spec):
    return {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": app}}, **spec}}


W1, W2, W3 = pod("w1"), pod("w2"), pod("w3")
# (case, the pod, the budgets, the namespace's pods, None or (code, the cause's message))
EVICTIONS = [
    ("no budget selects it", W1, [pdb(app="db", minAvailable=1)], [W1], None),
    ("minAvailable 1 of 1 ready: refused", W1, [pdb(minAvailable=1)], [W1],
     (429, "The disruption budget web needs 1 healthy pods and has 1 currently")),
    ("minAvailable 1 of 2 ready: goes", W1, [pdb(minAvailable=1)], [W1, W2], None),
    ("a percentage needs the controllers' scale: none here, refused", W1, [pdb(minAvailable="50%")],
     [W1, W2, W3], (429, "The disruption budget web needs 3 healthy pods and has 3 currently")),
    ("maxUnavailable needs the controllers' scale: none here, refused", W1, [pdb(maxUnavailable=1)], [W1, W2],
     (429, "The disruption budget web needs 2 healthy pods and has 2 currently")),
    ("a Pending pod goes whatever the budget", pod("p", phase="Pending"), [pdb(minAvailable=5)], [W1], None),
    ("a Succeeded pod goes", pod("s", phase="Succeeded"), [pdb(minAvailable=5)], [W1], None),
    ("a pod being deleted goes", pod("d", deleting=True), [pdb(minAvailable=5)], [W1], None),
    ("a pod not ready while the budget is met goes", pod("u", ready=False), [pdb(minAvailable=1)],
     [W1, pod("u", ready=False)], None),
    ("none healthy under minAvailable 0: no disruption allowed, refused", pod("u", ready=False),
     [pdb(minAvailable=0)], [pod("u", ready=False)],
     (429, "The disruption budget web needs 0 healthy pods and has 0 currently")),
    ("a pod not ready while the budget is not met: refused", pod("u", ready=False), [pdb(minAvailable=2)],
     [W1, pod("u", ready=False)], (429, "The disruption budget web needs 2 healthy pods and has 1 currently")),
    ("two budgets select it", W1, [pdb(minAvailable=0), pdb("other", minAvailable=0)], [W1, W2], (500, None)),
    ("minAvailable 0: goes", W1, [pdb(minAvailable=0)], [W1], None),
]  # fmt: skip


@pytest.mark.parametrize("case, target, budgets, pods, refusal", EVICTIONS, ids=[c[0] for c in EVICTIONS])
def test_eviction_refusal(case, target, budgets, pods, refusal):
    got = eviction_refusal(target, budgets, pods)
    if refusal is None:
        assert got is None
        return
    code, cause = refusal
    assert isinstance(got, ApiError) and got.code == code
    if code == 429:
        assert got.reason == "TooManyRequests"
        assert got.message == "Cannot evict pod as it would violate the pod's disruption budget."
        assert got.causes == [{"type": "DisruptionBudget", "message": cause}]


SELECTORS = [
    ("empty selects all", {}, {"a": "1"}, True),
    ("matchLabels", {"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ("matchLabels miss", {"matchLabels": {"a": "2"}}, {"a": "1"}, False),
    ("In", {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "3"]}]}, {"a": "1"}, True),
    ("NotIn", {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
    ("Exists", {"matchExpressions": [{"key": "b", "operator": "Exists"}]}, {"a": "1"}, False),
    ("DoesNotExist", {"matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]}, {"a": "1"}, True),
    ("an unknown operator selects nothing", {"matchExpressions": [{"key": "a", "operator": "Gt"}]}, {"a": "1"}, False),
]  # fmt: skip


@pytest.mark.parametrize("case, selector, labels, selected", SELECTORS, ids=[c[0] for c in SELECTORS])
def test_label_selected(case, selector, labels, selected):
    assert label_selected(selector, labels) is selected


POD = {
    "metadata": {"name": "w1", "namespace": "default"},
    "spec": {"nodeName": "node3"},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    "selector, kind, matches",
    [
        ("spec.nodeName=node3", "Pod", True),
        ("spec.nodeName==node3", "Pod", True),
        ("spec.nodeName!=node3", "Pod", False),
        ("spec.nodeName=node1", "Pod", False),
        ("spec.nodeName=node3,status.phase=Running", "Pod", True),
        ("metadata.name=w1", "Pod", True),
        ("", "Pod", True),
    ],
)
def test_fields_match(selector, kind, matches):
    assert fields_match(POD, selector, kind) is matches


def test_a_field_the_real_one_does_not_index_is_refused():
    with pytest.raises(ApiError) as refused:
        fields_match(POD, "spec.nodeName=node3", "ConfigMap")
    assert refused.value.code == 400 and '"spec.nodeName" is not a known field selector' in refused.value.message
