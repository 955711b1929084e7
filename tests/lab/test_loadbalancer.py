"""Issue 4 in the lab: keepalived + haproxy VIP in front of the masters' apiservers.

The apiservers are the kube-apiserver STAND-IN (tests/standins/kube_apiserver.py): a TLS
server on each master's node address answering /readyz, with a certificate from a test CA.
"""

import time
from pathlib import Path

import pytest
import yaml

from tests.standins import pki

STANDIN = Path(__file__).resolve().parent.parent / "standins" / "kube_apiserver.py"
DOMAIN = "lb.kubesphere.local"


def stop_standin(lab, host):
    lab.exec(host, "systemctl", "stop", "kube-apiserver-standin-*", check=True)


def start_standin(lab, host):
    stop_standin(lab, host)
    # A fresh unit name each time: a stopped transient unit keeps its name loaded.
    cmd = [
        "systemd-run", f"--unit=kube-apiserver-standin-{time.monotonic_ns()}", "--collect", "--service-type=notify",
        "--property=NotifyAccess=all", "/usr/bin/python3", "/usr/local/lib/ksha-standin/kube_apiserver.py",
        f"--bind-address={host.ip}", "--secure-port=6443",
        "--tls-cert-file=/etc/ksha-standin/apiserver.crt", "--tls-private-key-file=/etc/ksha-standin/apiserver.key",
        f"--expect-san={DOMAIN}", f"--expect-san={lab.vip}", f"--expect-san={host.ip}",
    ]  # fmt: skip
    run = lab.exec(host, *cmd)
    assert run.returncode == 0, run.stderr


def vip_holders(lab, names):
    out = []
    for name in names:
        addrs = lab.exec(lab.hosts[name], "ip", "-4", "-o", "addr", "show").stdout
        if f" {lab.vip}/" in addrs:
            out.append(name)
    return out


def request(lab, host, timeout=2):
    """HTTPS GET /readyz through the LB by its domain, verifying the server certificate."""
    proc = lab.exec(
        host, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(timeout),
        "--cacert", "/etc/ksha-standin/ca.crt", f"https://{DOMAIN}:6443/readyz",
    )  # fmt: skip
    return proc.stdout.strip()


def wait_for(predicate, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


@pytest.fixture(scope="module")
def keepalived_lab(_lab_session):
    from ksha.lab import core
    from tests.lab.conftest import LabSalt, _lab_ready

    lab = _lab_ready() or core.up("seed")
    salt = LabSalt(lab)
    rc, _, proc = salt.run("saltutil.sync_all")  # a fresh lab's master has not synced ksha's runner yet
    assert rc == 0, proc.stderr
    masters = [lab.hosts[n] for n in ("master1", "master2", "master3")]
    ca_key, ca_cert = pki.make_ca()
    for host in lab.hosts.values():
        (host.root / "etc/ksha-standin").mkdir(parents=True, exist_ok=True)
        (host.root / "etc/ksha-standin/ca.crt").write_bytes(pki.ca_pem(ca_cert))
    for host in masters:
        key, cert = pki.make_server_cert(ca_key, ca_cert, host.name, [DOMAIN, lab.vip, host.ip, host.name])
        (host.root / "etc/ksha-standin/apiserver.key").write_bytes(key)
        (host.root / "etc/ksha-standin/apiserver.crt").write_bytes(cert)
        (host.root / "usr/local/lib/ksha-standin").mkdir(parents=True, exist_ok=True)
        (host.root / "usr/local/lib/ksha-standin/kube_apiserver.py").write_bytes(STANDIN.read_bytes())
        start_standin(lab, host)

    path = lab.pillar_dir / "ksha.sls"
    original = path.read_text()
    pillar = yaml.safe_load(original)
    pillar["ksha"]["loadbalancer"]["mode"] = "keepalived"
    path.write_text(yaml.safe_dump(pillar))
    salt.salt(",".join(lab.hosts), "saltutil.refresh_pillar", "wait=True")
    rc, states = salt.orchestrate()
    assert rc == 0, {k: v["comment"] for k, v in states.items() if v["result"] is not True}
    yield lab, salt
    path.write_text(original)
    salt.salt(",".join(lab.hosts), "saltutil.refresh_pillar", "wait=True")


MASTERS = ["master1", "master2", "master3"]


def test_vip_on_exactly_one_lb_host_and_api_reachable_from_every_host(keepalived_lab):
    lab, _ = keepalived_lab
    assert wait_for(lambda: len(vip_holders(lab, MASTERS)) == 1, 10), vip_holders(lab, MASTERS)
    assert vip_holders(lab, MASTERS) == ["master1"]  # highest priority: first in host order
    for host in lab.hosts.values():
        assert wait_for(lambda h=host: request(lab, h) == "200", 10), host.name


def test_deployed_configs_pass_the_daemons_own_checks(keepalived_lab):
    lab, _ = keepalived_lab
    for name in MASTERS:
        host = lab.hosts[name]
        haproxy = lab.exec(host, "haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg")
        assert haproxy.returncode == 0, haproxy.stdout + haproxy.stderr
        keepalived = lab.exec(host, "keepalived", "--config-test", "-f", "/etc/keepalived/keepalived.conf")
        assert keepalived.returncode == 0, keepalived.stdout + keepalived.stderr


def test_second_orchestration_changes_nothing(keepalived_lab):
    lab, salt = keepalived_lab
    rc, states = salt.orchestrate()
    assert rc == 0
    assert states["ksha-phase-lb-keepalived-haproxy-applied"]["changes"] == {}
    assert states["ksha-phase-common-applied"]["changes"] == {}


def test_killing_the_vip_holder_moves_the_vip_and_requests_continue(keepalived_lab):
    lab, _ = keepalived_lab
    [holder] = wait_for(lambda: vip_holders(lab, MASTERS), 10)
    others = [n for n in MASTERS if n != holder]
    t0 = time.monotonic()
    lab.kill(lab.hosts[holder])
    assert wait_for(lambda: len(vip_holders(lab, others)) == 1, 10), "VIP did not move"
    takeover = time.monotonic() - t0
    assert wait_for(lambda: request(lab, lab.hosts["node1"]) == "200", 10)
    print(f"VIP takeover after kill of {holder}: {takeover:.2f} s")
    lab.boot(lab.hosts[holder])
    assert wait_for(lambda: lab.ping([holder], timeout=2)[holder], 90)
    start_standin(lab, lab.hosts[holder])
    assert wait_for(lambda: len(vip_holders(lab, MASTERS)) == 1, 15)


def test_killing_haproxy_on_the_holder_moves_the_vip(keepalived_lab):
    lab, _ = keepalived_lab
    [holder] = wait_for(lambda: vip_holders(lab, MASTERS), 15)
    lab.exec(lab.hosts[holder], "systemctl", "kill", "--signal=SIGKILL", "haproxy")
    lab.exec(lab.hosts[holder], "systemctl", "stop", "haproxy")
    others = [n for n in MASTERS if n != holder]
    assert wait_for(lambda: len(vip_holders(lab, others)) == 1 and holder not in vip_holders(lab, MASTERS), 10)
    assert wait_for(lambda: request(lab, lab.hosts["node2"]) == "200", 10)
    lab.exec(lab.hosts[holder], "systemctl", "start", "haproxy")
    assert wait_for(lambda: len(vip_holders(lab, MASTERS)) == 1, 15)


def test_highstate_repairs_lb_drift_without_moving_the_vip(keepalived_lab):
    lab, salt = keepalived_lab
    # After the fault tests, master1 (highest priority, preempt on) takes the VIP back: let that settle.
    holder = "master1"
    assert wait_for(lambda: vip_holders(lab, MASTERS) == [holder], 30), vip_holders(lab, MASTERS)
    target = "master2"
    host = lab.hosts[target]
    lab.exec(host, "sed", "-i", "s/inter 500/inter 9000/", "/etc/haproxy/haproxy.cfg", check=True)
    lab.exec(host, "systemctl", "stop", "keepalived", check=True)
    lab.exec(host, "sed", "-i", "/# BEGIN ksha/,/# END ksha/d", "/etc/hosts", check=True)

    first = salt.salt(target, "state.highstate")[target]
    changed = sorted(s["__id__"] for s in first.values() if s["changes"])
    assert changed == [
        "ksha-common-hosts-file-cluster-names",
        "ksha-loadbalancer-haproxy-config",
        "ksha-loadbalancer-haproxy-running",
        "ksha-loadbalancer-keepalived-running",
    ]
    assert all(s["result"] is True for s in first.values())
    assert "inter 500 " in lab.exec(host, "cat", "/etc/haproxy/haproxy.cfg").stdout
    assert lab.exec(host, "systemctl", "is-active", "keepalived").stdout.strip() == "active"
    assert f"{lab.vip} {DOMAIN}" in lab.exec(host, "cat", "/etc/hosts").stdout
    time.sleep(2)  # a VIP move, had there been one, takes well under this
    assert vip_holders(lab, MASTERS) == [holder]

    second = salt.salt(target, "state.highstate")[target]
    assert all(s["result"] is True and not s["changes"] for s in second.values())


def test_status_shows_the_vip_holder_and_backend_states(keepalived_lab):
    lab, salt = keepalived_lab
    assert wait_for(lambda: len(vip_holders(lab, MASTERS)) == 1, 15)
    rc, table, proc = salt.run("ksha.status")
    assert rc == 0, table
    [holder] = vip_holders(lab, MASTERS)
    assert f"VIP {lab.vip} held by: {holder}" in table.splitlines()
    assert table.splitlines()[-1] == (f"apiserver backends (haproxy on {holder}): master1 UP, master2 UP, master3 UP")


def test_a_stopped_backend_is_marked_down_and_requests_keep_succeeding(keepalived_lab):
    lab, salt = keepalived_lab
    [holder] = wait_for(lambda: vip_holders(lab, MASTERS), 15)
    victim = next(n for n in MASTERS if n != holder)
    stop_standin(lab, lab.hosts[victim])
    t0 = time.monotonic()

    def victim_down():
        out = salt.salt(holder, "ksha_lb.backends")[holder]
        return any(b["name"] == victim and b["state"].startswith("DOWN") for b in out["backends"])

    assert wait_for(victim_down, 10), "haproxy did not mark the stopped backend DOWN"
    detected = time.monotonic() - t0
    print(f"backend {victim} marked DOWN after {detected:.2f} s")
    results = [request(lab, lab.hosts["node3"]) for _ in range(30)]
    assert results == ["200"] * 30
    start_standin(lab, lab.hosts[victim])
    assert wait_for(lambda: not victim_down(), 10)


def test_partitioned_vip_holder_leaves_exactly_one_holder_each_side_and_one_after_heal(keepalived_lab):
    lab, _ = keepalived_lab
    [holder] = wait_for(lambda: vip_holders(lab, MASTERS), 15)
    connected = [n for n in MASTERS if n != holder]
    lab.partition(lab.hosts[holder])
    try:
        assert wait_for(lambda: len(vip_holders(lab, connected)) == 1, 10), vip_holders(lab, connected)
        assert wait_for(lambda: request(lab, lab.hosts["node1"]) == "200", 10)
    finally:
        lab.heal(lab.hosts[holder])
    assert wait_for(lambda: len(vip_holders(lab, MASTERS)) == 1, 15), vip_holders(lab, MASTERS)
    time.sleep(3)  # and it stays that way
    assert len(vip_holders(lab, MASTERS)) == 1
