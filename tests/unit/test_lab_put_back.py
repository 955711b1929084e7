"""The lab tests' put-back rule (tests/lab/conftest.py ``after_apply``): after a test's pillar
applies, which phases must be converged again before the next test uses the shared cluster."""

import pytest

from tests.lab.conftest import after_apply

# (case, applies as (until, back to the original pillar, exit code), phase reached, converged)
APPLIES = [
    ("one change up to etcd", [("etcd", False, 0)], "etcd", False),
    ("3 -> 5 -> 3 members, both up to etcd", [("etcd", False, 0), ("etcd", True, 0)], "etcd", True),
    ("a change up to etcd, back up to lb only", [("etcd", False, 0), ("lb", True, 0)], "etcd", False),
    ("a change of every phase, back up to etcd", [(None, False, 0), ("etcd", True, 0)], "nodes", False),
    ("a change up to etcd, back through every phase", [("etcd", False, 0), (None, True, 0)], "etcd", True),
    ("back, but the run failed", [("etcd", False, 0), ("etcd", True, 1)], "etcd", False),
    ("refused changes only", [("etcd", False, 1), ("etcd", False, 1)], "etcd", False),
    ("a change up to lb, then one up to etcd", [("lb", False, 0), ("etcd", False, 0)], "etcd", False),
]  # fmt: skip


@pytest.mark.parametrize("case, applies, reached, converged", APPLIES, ids=[a[0] for a in APPLIES])
def test_after_apply(case, applies, reached, converged):
    state, done = "preflight", None
    for until, back, rc in applies:
        state, _ = after_apply(state, until, back, None)
        state, done = after_apply(state, until, back, rc)
    assert (state, done) == (reached, converged)
