"""Issue 5 in the lab: etcd membership changed from pillar, one orch.ksha each, never losing a key.

Each change is checked against 10,000 keys written before it: all of them must be there after.
"""

import json
import time

import pytest

from tests.lab.conftest import converge, converged_lab, failed_states, wait_for
from tests.lab.test_control_plane import MASTERS, ROLLING, apiserver_process, down_intervals
from tests.lab.test_etcd import PKI, changed_on, etcdctl

KEYS = 10_000
BACKUP_UNITS = ("ksha-etcd-backup.timer", "ksha-etcd-backup.service")
BACKUP_FILES = (
    "/usr/local/sbin/ksha-etcd-backup",
    "/etc/systemd/system/ksha-etcd-backup.service",
    "/etc/systemd/system/ksha-etcd-backup.timer",
)
PREFIX = "/ksha/bulk/"


def endpoints(lab, names):
    return ",".join(f"https://{lab.hosts[n].ip}:2379" for n in names)


def write_keys(lab, host, names, count=KEYS, batch=100):
    """`count` keys in transactions of `batch` puts (etcd's default limit is 128 operations)."""
    root = lab.hosts[host].root
    (root / "var/tmp/ksha-bulk").mkdir(parents=True, exist_ok=True)
    for start in range(0, count, batch):
        puts = "\n".join(f"put {PREFIX}{i:05d} value-{i}" for i in range(start, min(start + batch, count)))
        (root / f"var/tmp/ksha-bulk/{start:05d}.txn").write_text(f"\n{puts}\n\n\n")
    script = (
        f"for f in /var/tmp/ksha-bulk/*.txn; do ETCDCTL_API=3 etcdctl --endpoints={endpoints(lab, names)} "
        f"--cacert={PKI}/ca.crt --cert={PKI}/admin.crt --key={PKI}/admin.key txn < $f > /dev/null || exit 1; done"
    )
    out = lab.exec(lab.hosts[host], "sh", "-c", script, timeout=300)
    assert out.returncode == 0, out.stderr


def readyz(lab, master):
    """The HTTP status of `master`'s apiserver's /readyz, asked on it by curl with the cluster CA."""
    return lab.exec(
        lab.hosts[master], "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
        "--cacert", "/etc/kubernetes/pki/ca.crt", f"https://{master}:6443/readyz",
    ).stdout.strip()  # fmt: skip


def apiserver_pid(lab, master):
    return lab.exec(lab.hosts[master], "systemctl", "show", "-p", "MainPID", "--value", "kube-apiserver").stdout.strip()


def count_keys(lab, host, names):
    out = etcdctl(lab, host, "get", PREFIX, "--prefix", "--keys-only", "--limit=1", "--write-out=json",
                  endpoints=endpoints(lab, names))  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout).get("count", 0)


@pytest.fixture(scope="module")
def members_lab(_lab_session):
    lab, salt, _ = converged_lab()
    write_keys(lab, "master1", ["master1", "master2", "master3"])
    assert count_keys(lab, "master1", ["master1"]) == KEYS
    return lab, salt


@pytest.fixture
def etcd_group(members_lab, lab_pillar):
    """Set ksha:groups:etcd (and options) and orchestrate up to the etcd phase (`until`: another
    phase, None every phase); the seed's 3 members come back after."""

    def apply(members, until="etcd", **etcd_options):
        def change(ksha):
            ksha["groups"]["etcd"] = members
            ksha.setdefault("etcd", {}).update(etcd_options)

        return lab_pillar.apply(change, until=until)

    return apply


def health(salt, host="master1"):
    return salt.salt(host, "ksha_etcd.health")[host]


def failed_comments(states):
    out = []
    for value in states.values():
        if value["result"] is False:
            out.append(value["comment"])
            for minion_ret in ((value.get("changes") or {}).get("ret") or {}).values():
                if isinstance(minion_ret, dict):
                    out += [
                        s["comment"] for s in minion_ret.values() if isinstance(s, dict) and s.get("result") is False
                    ]
    return "\n".join(out)


def etcd_servers(lab):
    """{master: the --etcd-servers its apiserver's process runs with}."""
    return {m: next(a for a in apiserver_process(lab, m)[0] if a.startswith("--etcd-servers=")) for m in MASTERS}


def rolled_over(lab, states, members):
    """Every apiserver was restarted by the orchestration's control-plane phase, one at a time
    (systemd's timestamps), and runs with every member of `members` in --etcd-servers."""
    running = states["ksha-phase-control-plane-components-running"]["changes"]["ret"]
    for master in MASTERS:
        [rolling] = [s for s in running[master].values() if s["__id__"] == ROLLING]
        assert rolling["changes"].get("restarted") == "kube-apiserver", (master, rolling)
    intervals = sorted(down_intervals(lab).values())
    for (_, up), (down_next, _) in zip(intervals, intervals[1:], strict=False):
        assert up < down_next, intervals
    expected = "--etcd-servers=" + ",".join(f"https://{lab.hosts[m].ip}:2379" for m in members)
    assert etcd_servers(lab) == dict.fromkeys(MASTERS, expected)


def test_three_to_five_and_back_to_three_keeps_every_key(members_lab, etcd_group):
    """Each change by one orch.ksha up to the control plane (the nodes do not talk to etcd): the
    members join (leave) one at a time, and then every apiserver is restarted with the new
    --etcd-servers, one master at a time."""
    lab, salt = members_lab
    five = ["master1", "master2", "master3", "node1", "node2"]
    t0 = time.monotonic()
    rc, states = etcd_group(five, until="control-plane")
    assert rc == 0, failed_comments(states)
    print(f"3 -> 5 members: {time.monotonic() - t0:.1f} s")
    assert [k for k in states if k.startswith("ksha-phase-etcd-") and k.endswith("-joined")] == [
        "ksha-phase-etcd-node1-joined",
        "ksha-phase-etcd-node2-joined",
    ]
    h = health(salt)
    assert h["healthy"] and sorted(h["members"]) == sorted(five) and h["learners"] == [], h
    assert count_keys(lab, "node2", ["node2"]) == KEYS  # served by a new member
    rolled_over(lab, states, five)

    t0 = time.monotonic()
    rc, states = etcd_group(MASTERS, until="control-plane")
    assert rc == 0, failed_comments(states)
    print(f"5 -> 3 members: {time.monotonic() - t0:.1f} s")
    removed = states["ksha-phase-etcd-members-removed"]["changes"]["ret"]
    assert all(s["changes"].get("snapshot") for r in removed.values() for s in r.values())
    h = health(salt)
    assert h["healthy"] and sorted(h["members"]) == MASTERS, h
    assert count_keys(lab, "master3", ["master3"]) == KEYS
    for node in ("node1", "node2"):
        assert lab.exec(lab.hosts[node], "systemctl", "is-active", "etcd").stdout.strip() != "active"
        assert lab.exec(lab.hosts[node], "test", "-d", "/var/lib/etcd/member").returncode != 0  # moved aside
        # no backup timer left behind to fire for a member that is gone, no failed unit left by it
        assert lab.exec(lab.hosts[node], "systemctl", "is-active", BACKUP_UNITS[0]).stdout.strip() != "active"
        failed = lab.exec(lab.hosts[node], "systemctl", "list-units", "--failed", "--plain", "--no-legend").stdout
        assert "ksha-etcd-backup" not in failed, failed
        for path in BACKUP_FILES:
            assert not (lab.hosts[node].root / path.lstrip("/")).exists(), (node, path)
    rolled_over(lab, states, MASTERS)


def test_membership_changes_are_refused_on_an_unhealthy_cluster_and_change_nothing(members_lab, etcd_group, lab_pillar):
    lab, salt = members_lab
    # master3's backup timer stopped with its etcd: a run would wait for it and may fail
    lab.exec(lab.hosts["master3"], "systemctl", "stop", *BACKUP_UNITS, "etcd", check=True)
    try:
        before = salt.salt("master1", "ksha_etcd.members")["master1"]["members"]
        # Removing master2 while master3 is down would leave 1 healthy member of 2: no quorum.
        rc, states = etcd_group(["master1", "master3"], allow_even_member_count=True)
        assert rc != 0
        assert "refused: without master2 the cluster would have 1 healthy of 2 members" in failed_comments(states)
        assert changed_anywhere(states) == {}
        # Adding a member while one is down is refused too: node1, the first to join, was made
        # ready (its certificates, its settings) but is no member.
        rc, states = etcd_group(["master1", "master2", "master3", "node1", "node2"])
        assert rc != 0
        assert "refused: the cluster is not healthy" in failed_comments(states)
        assert changed_anywhere(states) == {"ksha-phase-etcd-node1-joined": ["node1"]}
        # Taking master1, which holds the etcd CA's key, out of etcd moves the default CA host
        # (the first member) but not the key: the plan (what orch.ksha renders) refuses it
        # before any etcd step.
        lab_pillar.edit(lambda ksha: ksha["groups"].update(etcd=["master2", "master3", "node1"]))
        rc, plan, proc = salt.run("ksha.plan", "output=data")
        etcd_steps = [s for s in plan["steps"] if s["id"].startswith("ksha-phase-etcd")]
        assert [(s["id"], s["state"]) for s in etcd_steps] == [
            ("ksha-phase-etcd-ca-stays-where-its-key-is", "test.fail_without_changes")
        ], plan
        assert "ksha:etcd:pki:ca_host resolves to master2, but the etcd CA's key is on master1" in etcd_steps[0]["why"]
        # A highstate's CA state on master2 (the CA host in this pillar) refuses the same.
        out = salt.salt("master2", "state.sls", "ksha.etcd.ca")["master2"]
        failed = failed_states(out)
        assert sorted(failed) == [
            "ksha-etcd-ca-certificate-present",
            "ksha-etcd-ca-never-replaced",
            "ksha-etcd-ca-private-key-present",
        ], out
        assert (
            "master2 trusts an etcd CA (/etc/etcd/pki/ca.crt) but holds no CA key"
            in failed["ksha-etcd-ca-never-replaced"]
        )
        assert "requisite failed" in failed["ksha-etcd-ca-private-key-present"]
        assert not (lab.hosts["master2"].root / "etc/ksha/etcd-ca/ca.key").exists()
        lab.exec(lab.hosts["master2"], "rmdir", "/etc/ksha/etcd-ca", check=True)  # the state made it, empty
        assert salt.salt("master1", "ksha_etcd.members")["master1"]["members"] == before
    finally:
        lab.exec(lab.hosts["master3"], "systemctl", "start", "etcd")
        lab.exec(lab.hosts["master3"], "systemctl", "reset-failed", BACKUP_UNITS[1])
        lab.exec(lab.hosts["master3"], "systemctl", "start", BACKUP_UNITS[0])
    assert wait_for(lambda: health(salt)["healthy"], 60, step=2)


def changed_anywhere(states):
    """{orchestration step: the minions where its states changed something}, for the steps that did."""
    return {step: minions for step, ret in states.items() if (minions := changed_on(ret))}


@pytest.mark.converges
def test_a_wiped_member_is_replaced_by_one_orchestration(members_lab):
    """Its orchestration also converges what a test before left (test_membership_changes_are_refused
    leaves node1 made ready to join): no orchestration before it."""
    lab, salt = members_lab
    lab.wipe(lab.hosts["master3"])
    assert wait_for(lambda: lab.ping(["master3"], timeout=2)["master3"], 120)
    assert not health(salt)["healthy"]
    rc, states = converge(lab, salt)
    assert rc == 0, failed_comments(states)
    joined = states["ksha-phase-etcd-master3-joined"]["changes"]["ret"]["master3"]
    [present] = [s for s in joined.values() if s["__id__"] == "ksha-etcd-member-joined-the-cluster"]
    assert present["changes"]["removed_stale"] and present["changes"]["promoted"]
    h = health(salt)
    assert h["healthy"] and sorted(h["members"]) == ["master1", "master2", "master3"], h
    assert count_keys(lab, "master3", ["master3"]) == KEYS


def test_quorum_loss_is_restored_from_the_latest_snapshot(members_lab):
    lab, salt = members_lab
    three = ["master1", "master2", "master3"]
    # the backup timers (every minute in the lab) stopped, so that the snapshot below stays the latest
    for name in three:
        lab.exec(lab.hosts[name], "systemctl", "stop", *BACKUP_UNITS, check=True)
    try:
        restored_from_the_latest_snapshot(lab, salt, three)
    finally:
        for name in three:  # a run the stop cut short ends failed: not left to make the host degraded
            lab.exec(lab.hosts[name], "systemctl", "reset-failed", BACKUP_UNITS[1])
            lab.exec(lab.hosts[name], "systemctl", "start", BACKUP_UNITS[0])


def restored_from_the_latest_snapshot(lab, salt, three):
    backup = lab.exec(lab.hosts["master1"], "/usr/local/sbin/ksha-etcd-backup", check=True).stdout.strip()
    assert (
        etcdctl(lab, "master1", "put", "/ksha/after-snapshot", "lost", endpoints=endpoints(lab, three)).returncode == 0
    )
    for name in ("master2", "master3"):  # two of three members' data destroyed: quorum is gone
        lab.exec(lab.hosts[name], "systemctl", "stop", "etcd", check=True)
        lab.exec(lab.hosts[name], "rm", "-rf", "/var/lib/etcd/member", check=True)
    assert (
        etcdctl(
            lab, "master1", "put", "/ksha/no-quorum", "x", endpoints=endpoints(lab, ["master1"]), timeout=3
        ).returncode
        != 0
    )
    # without quorum no apiserver is ready (curl, each master's own)
    assert wait_for(lambda: {readyz(lab, m) for m in three} == {"500"}, 15), {m: readyz(lab, m) for m in three}
    pids = {m: apiserver_pid(lab, m) for m in three}

    rc, data, proc = salt.run("state.orchestrate", "orch.ksha.etcd_restore", timeout=900)
    states = next(iter(data["data"].values()))
    assert rc == 0, failed_comments({k.split("_|-")[1]: v for k, v in states.items()})
    chosen = next(v for k, v in states.items() if "ksha-etcd-restore-snapshot-chosen" in k)
    assert chosen["name"] == f"restoring {backup} from master1 onto master1, master2, master3"
    assert wait_for(lambda: health(salt)["healthy"], 60, step=2)
    assert sorted(health(salt)["members"]) == three
    # and with the restored cluster every apiserver is ready again, the same processes (none restarted)
    assert wait_for(lambda: {readyz(lab, m) for m in three} == {"200"}, 15), {m: readyz(lab, m) for m in three}
    assert {m: apiserver_pid(lab, m) for m in three} == pids
    assert count_keys(lab, "master2", ["master2"]) == KEYS
    after = etcdctl(
        lab, "master3", "get", "/ksha/after-snapshot", "--print-value-only", endpoints=endpoints(lab, ["master3"])
    )
    assert after.returncode == 0 and after.stdout.strip() == ""
