"""Issue 5 in the lab: etcd over TLS on the seed's three masters, from bare hosts by orch.ksha.

etcd here is Debian's etcd-server 3.4 (the lab's package source); the certificates come from
Salt's x509_v2 with the CA key on master1 (the first etcd member).
"""

import threading
import time

import pytest

from tests.lab.conftest import synced_lab, wait_for
from tests.standins import pki

MEMBERS = ["master1", "master2", "master3"]
PKI = "/etc/etcd/pki"


def etcdctl(lab, host, *args, cert="admin", endpoints=None, timeout=5):
    """etcdctl inside a lab host; cert: admin (ksha's), None (no client certificate) or a path stem."""
    urls = endpoints or ",".join(f"https://{lab.hosts[m].ip}:2379" for m in MEMBERS)
    cmd = ["env", "ETCDCTL_API=3", "etcdctl", f"--endpoints={urls}", f"--cacert={PKI}/ca.crt",
           "--dial-timeout=2s", f"--command-timeout={timeout}s"]  # fmt: skip
    if cert == "admin":
        cmd += [f"--cert={PKI}/admin.crt", f"--key={PKI}/admin.key"]
    elif cert:
        cmd += [f"--cert={cert}.crt", f"--key={cert}.key"]
    return lab.exec(lab.hosts[host], *cmd, *args, timeout=timeout + 30)


@pytest.fixture(scope="module")
def etcd_lab(_lab_session):
    lab, salt = synced_lab()
    t0 = time.monotonic()
    rc, states = salt.orchestrate()
    assert rc == 0, {k: v["comment"] for k, v in states.items() if v["result"] is not True}
    print(f"orch.ksha from bare hosts to a healthy etcd: {time.monotonic() - t0:.1f} s")
    return lab, salt, states


def health(salt, host="master1"):
    return salt.salt(host, "ksha_etcd.health")[host]


def test_orchestration_bootstraps_three_healthy_members_over_tls(etcd_lab):
    lab, salt, states = etcd_lab
    assert "ksha-phase-etcd-members-bootstrapped" in states
    h = health(salt)
    assert h["healthy"] is True, h["problems"]
    assert sorted(h["members"]) == MEMBERS and h["leader"] in MEMBERS
    # The bootstrap is recorded on every member: the next run will not bootstrap again.
    grains = salt.salt(",".join(MEMBERS), "grains.get", "ksha_etcd_cluster_id")
    assert set(grains.values()) == {h["cluster_id"]}


def test_only_tls_with_a_client_certificate_of_the_etcd_ca_is_served(etcd_lab):
    lab, salt, _ = etcd_lab
    ok = etcdctl(lab, "master2", "put", "/ksha/tls-probe", "1")
    assert ok.returncode == 0, ok.stderr
    refused = etcdctl(lab, "master2", "get", "/ksha/tls-probe", cert=None, timeout=3)
    assert refused.returncode != 0
    assert "bad certificate" in refused.stderr or "deadline exceeded" in refused.stderr, refused.stderr
    # A client certificate from another CA.
    ca_key, ca_cert = pki.make_ca("not the etcd CA")
    key, cert = pki.make_server_cert(ca_key, ca_cert, "intruder", ["intruder"])
    root = lab.hosts["master2"].root
    # (not /tmp: the container's /tmp is its own tmpfs, not the overlay written here)
    (root / "var/tmp/intruder.key").write_bytes(key)
    (root / "var/tmp/intruder.crt").write_bytes(cert)
    stranger = etcdctl(lab, "master2", "get", "/ksha/tls-probe", cert="/var/tmp/intruder", timeout=3)
    assert stranger.returncode != 0
    assert "bad certificate" in stranger.stderr or "deadline exceeded" in stranger.stderr, stranger.stderr
    # No plain-HTTP listener on the client or the peer port.
    for port in (2379, 2380):
        plain = lab.exec(
            lab.hosts["master2"], "curl", "-s", "--max-time", "3", f"http://{lab.hosts['master1'].ip}:{port}/version"
        )
        assert plain.returncode != 0 or "etcdserver" not in plain.stdout


def test_certificates_and_keys_are_where_and_how_they_should_be(etcd_lab):
    lab, salt, _ = etcd_lab
    for name in MEMBERS:
        host = lab.hosts[name]
        keys = lab.exec(host, "stat", "-c", "%n %U %a", f"{PKI}/server.key", f"{PKI}/peer.key", f"{PKI}/admin.key")
        assert keys.stdout.split("\n")[:3] == [
            f"{PKI}/server.key etcd 600",
            f"{PKI}/peer.key etcd 600",
            f"{PKI}/admin.key root 600",
        ]
        sans = lab.exec(host, "openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", f"{PKI}/server.crt").stdout
        assert f"DNS:{name}" in sans and f"IP Address:{host.ip}" in sans and "IP Address:127.0.0.1" in sans
        assert "DNS:localhost" in sans
    # The CA key exists only on the CA host.
    assert lab.exec(lab.hosts["master1"], "test", "-f", "/etc/ksha/etcd-ca/ca.key").returncode == 0
    for name in ["master2", "master3", "node1"]:
        found = lab.exec(
            lab.hosts[name],
            "sh",
            "-c",
            "ls /etc/ksha/etcd-ca 2>/dev/null; grep -rl 'PRIVATE KEY' /etc/ksha 2>/dev/null",
        )
        assert found.stdout.strip() == ""


def test_second_orchestration_converges_without_bootstrapping_again(etcd_lab):
    lab, salt, _ = etcd_lab
    before = health(salt)["cluster_id"]
    rc, states = salt.orchestrate()
    assert rc == 0, {k: v["comment"] for k, v in states.items() if v["result"] is not True}
    assert "ksha-phase-etcd-members-bootstrapped" not in states
    assert states["ksha-phase-etcd-members-converged"]["changes"] == {}
    assert health(salt)["cluster_id"] == before


def test_killing_the_leader_keeps_writes_going_and_it_rejoins(etcd_lab):
    lab, salt, _ = etcd_lab
    leader = health(salt)["leader"]
    others = [m for m in MEMBERS if m != leader]
    lab.kill(lab.hosts[leader])
    endpoints = ",".join(f"https://{lab.hosts[m].ip}:2379" for m in others)
    written = wait_for(
        lambda: etcdctl(lab, others[0], "put", "/ksha/after-leader-loss", "yes", endpoints=endpoints).returncode == 0,
        15,
    )
    assert written, "the two remaining members did not accept a write"
    lab.boot(lab.hosts[leader])
    assert wait_for(lambda: lab.ping([leader], timeout=2)[leader], 90)
    rejoined = wait_for(lambda: health(salt, others[0])["healthy"], 60, step=2)
    assert rejoined, health(salt, others[0])["problems"]
    got = etcdctl(lab, leader, "get", "/ksha/after-leader-loss", "--print-value-only",
                  endpoints=f"https://{lab.hosts[leader].ip}:2379")  # fmt: skip
    assert got.stdout.strip() == "yes"


def test_highstate_repairs_config_and_cert_drift_restarting_one_member_at_a_time(etcd_lab):
    lab, salt, _ = etcd_lab
    assert wait_for(lambda: health(salt)["healthy"], 60, step=2)
    lab.exec(
        lab.hosts["master2"],
        "sed",
        "-i",
        "s/^ETCD_SNAPSHOT_COUNT=.*/ETCD_SNAPSHOT_COUNT=5/",
        "/etc/etcd/ksha-etcd.env",
        check=True,
    )
    lab.exec(lab.hosts["master3"], "rm", "-f", f"{PKI}/peer.crt", check=True)

    down_at_once = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            down = 0
            for m in MEMBERS:
                ep = f"https://{lab.hosts[m].ip}:2379"
                if etcdctl(lab, "master1", "endpoint", "health", endpoints=ep, timeout=2).returncode != 0:
                    down += 1
            down_at_once.append(down)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        first = salt.salt(",".join(MEMBERS), "state.highstate", timeout=900)
    finally:
        time.sleep(2)
        stop.set()
        watcher.join()
    restarted = {
        m: [s for s in r.values() if s["__id__"] == "ksha-etcd-restarted-one-member-at-a-time"]
        for m, r in first.items()
    }
    assert restarted["master2"][0]["changes"]["restarted"] == "etcd"
    assert restarted["master3"][0]["changes"]["restarted"] == "etcd"
    assert not restarted["master1"][0]["changes"]
    assert all(s["result"] is True for r in first.values() for s in r.values()), first
    assert max(down_at_once) <= 1, down_at_once
    assert "ETCD_SNAPSHOT_COUNT=10000" in lab.exec(lab.hosts["master2"], "cat", "/etc/etcd/ksha-etcd.env").stdout
    assert wait_for(lambda: health(salt)["healthy"], 30, step=1)

    second = salt.salt(",".join(MEMBERS), "state.highstate", timeout=900)
    changed = {m: [s["__id__"] for s in r.values() if s["changes"]] for m, r in second.items()}
    assert changed == {m: [] for m in MEMBERS}
