"""The etcd membership decisions of salt/_states/ksha_etcd.py (_join_decision, _leave_decision):
pure functions, one row per path and per refusal. member_present/member_absent carry them out
(the lab's membership tests), and test=True reports the same decision."""

import pytest

from tests.conftest import load_salt_module

states = load_salt_module("states", "ksha_etcd")

PEER = "https://10.0.0.4:2380"


def member(name, mid, peer=None, learner=False):
    return {"name": name, "id": mid, "peer_urls": [peer or f"https://{name}:2380"], "learner": learner}


THREE = [member("m1", "a1"), member("m2", "a2"), member("m3", "a3")]


def health(ok=("m1", "m2", "m3"), sick=(), leader="m1"):
    members = {**{m: True for m in ok}, **{m: False for m in sick}}
    problems = [f"member {m} does not answer" for m in sick]
    return {"members": members, "leader": leader, "problems": problems}


# (case, members listed, health of the others, this host has data, action, steps, comment part)
JOINS = [
    ("a new member", THREE, health(), False, "join", [("add_learner", None), ("start", None), ("promote", None)], "m4 would join: take a snapshot, add as a learner"),
    ("already a voting member with data", THREE + [member("m4", "a4", PEER)], health(), True, "none", [], "m4 is a voting member (a4)"),
    ("a learner that started: promote", THREE + [member("m4", "a4", PEER, learner=True)], health(), True, "join", [("start", None), ("promote", None)], "start etcd, promote"),
    ("added but never started (no name yet)", THREE + [member("", "a4", PEER)], health(), False, "join", [("start", None), ("promote", None)], "would join"),
    ("a wiped member: stale entry removed, added again", THREE + [member("m4", "a4", PEER)], health(("m1", "m2", "m3")), False, "join", [("remove_stale", "a4"), ("add_learner", None), ("start", None), ("promote", None)], "remove the stale member a4 (this host has no data)"),
    ("refused: another member unhealthy", THREE, health(ok=("m1", "m2"), sick=("m3",)), False, "refuse", [], "refused: the cluster is not healthy (member m3 does not answer)"),
    ("refused: no leader", THREE, health(leader=None), False, "refuse", [], "refused: the cluster is not healthy"),
    ("refused: removing the wiped member would break quorum", [member("m1", "a1"), member("m2", "a2"), member("m4", "a4", PEER)], health(ok=("m1",), sick=()), False, "refuse", [], "refused: removing the wiped member m4 would leave 1 of 2"),
]  # fmt: skip


@pytest.mark.parametrize("case, listed, hl, has_data, action, steps, comment", JOINS, ids=[j[0] for j in JOINS])
def test_join_decision(case, listed, hl, has_data, action, steps, comment):
    decision = states._join_decision("m4", PEER, listed, hl, has_data)
    assert (decision["action"], decision["steps"]) == (action, steps)
    assert comment in decision["comment"]


def test_join_keeps_the_id_of_a_listed_learner():
    listed = THREE + [member("m4", "a4", PEER, learner=True)]
    assert states._join_decision("m4", PEER, listed, health(), True)["member_id"] == "a4"
    assert states._join_decision("m4", PEER, THREE, health(), False)["member_id"] is None


# (case, members, health, action, steps, comment part)
LEAVES = [
    ("not a member", THREE, health(), "none", [], "m9 is not an etcd member"),
    ("a follower leaves", THREE + [member("m9", "a9")], health(ok=("m1", "m2", "m3", "m9")), "leave", [("remove", "a9")], "m9 (a9) would leave: take a snapshot, remove member a9"),
    ("the leader leaves: leadership moves first", THREE + [member("m9", "a9")], health(ok=("m1", "m2", "m3", "m9"), leader="m9"), "leave", [("move_leader", "a1"), ("remove", "a9")], "move leadership to a1 first"),
    ("a learner leaves", THREE + [member("m9", "a9", learner=True)], health(), "leave", [("remove", "a9")], "would leave"),
    ("refused: the rest would lose quorum", [member("m1", "a1"), member("m2", "a2"), member("m9", "a9")], health(ok=("m9",), sick=("m1", "m2")), "refuse", [], "below its quorum of 2"),
    ("refused: the last member", [member("m9", "a9")], health(ok=("m9",)), "refuse", [], "would have 0 healthy of 0 members"),
    ("refused: another member unhealthy", THREE + [member("m9", "a9")], health(ok=("m1", "m2", "m9"), sick=("m3",)), "refuse", [], "refused: the cluster is not healthy (member m3 does not answer)"),
]  # fmt: skip


@pytest.mark.parametrize("case, listed, hl, action, steps, comment", LEAVES, ids=[c[0] for c in LEAVES])
def test_leave_decision(case, listed, hl, action, steps, comment):
    decision = states._leave_decision("m9", listed, hl)
    assert (decision["action"], decision["steps"]) == (action, steps)
    assert comment in decision["comment"]


def test_test_mode_reports_the_decision_and_changes_nothing(monkeypatch):
    calls = []
    salt = {
        "ksha_etcd.settings": lambda: {"client_urls": {"m1": "https://m1:2379", "m4": "https://m4:2379"}, "data_dir": "/nonexistent"},
        "ksha_etcd.members": lambda endpoints=None: {"result": True, "members": THREE},
        "ksha_etcd.health": lambda endpoints=None: health(),
        "ksha_etcd.snapshot_save": lambda **kw: calls.append("snapshot"),
        "ksha_etcd.member_add": lambda *a, **kw: calls.append("add"),
    }  # fmt: skip
    monkeypatch.setattr(states, "__salt__", salt, raising=False)
    monkeypatch.setattr(states, "__opts__", {"test": True}, raising=False)
    ret = states.member_present("m4", PEER, "/nonexistent/initial-cluster.env")
    assert ret["result"] is None and calls == []
    assert ret["comment"] == states._join_decision("m4", PEER, THREE, health(), False)["comment"]
