"""bench/scale.py's pure parts: the topology it boots, and what counts as a failed or changing
orchestration (its run is in docs/BENCHMARKS.md, not here: it needs two labs)."""

import importlib.util
import sys

from ksha import importer
from tests.conftest import REPO


def load_scale():
    sys.path.insert(0, str(REPO / "bench"))  # its `import verdict`
    try:
        spec = importlib.util.spec_from_file_location("ksha_bench_scale", REPO / "bench" / "scale.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / "bench"))


scale = load_scale()


def test_the_topology_is_three_masters_and_n_workers():
    parsed = importer.parse_hosts_ini(scale.hosts_ini(12), "scale")
    ksha, _ = importer.to_pillar(parsed)
    assert ksha["groups"]["kube-master"] == ksha["groups"]["etcd"] == ["master1", "master2", "master3"]
    assert ksha["groups"]["kube-node"] == [f"node{i}" for i in range(1, 13)]
    assert parsed["order"] == ["master1", "master2", "master3", *(f"node{i}" for i in range(1, 13))]


def step(changes, result=True, state_id="s"):
    return {"__id__": state_id, "result": result, "changes": changes}


def orch(*steps):
    return {"data": {"master": {f"salt_|-{s['__id__']}_|-x_|-state": s for s in steps}}}


def test_what_fails_and_what_changes():
    quiet = step({"ret": {"n1": {"file_|-a": {"changes": {}}}}}, state_id="quiet")
    moved = step({"ret": {"n1": {"file_|-a": {"changes": {"diff": "x"}}}}}, state_id="moved")
    answered = step({"ret": {"n1": True}}, state_id="ping")  # a salt.function step: no state changed
    assert scale.failed_states(orch(quiet, answered)) == []
    assert scale.changed_steps(orch(quiet, answered)) == []
    assert scale.changed_steps(orch(quiet, moved)) == ["moved"]
    assert scale.failed_states(orch(quiet, step({}, result=False, state_id="bad"))) == ["bad"]
    assert scale.failed_states({"data": {"master": ["Rendering SLS failed"]}}) == ["no orchestration result"]
    assert scale.failed_states(None) == ["no orchestration result"]
