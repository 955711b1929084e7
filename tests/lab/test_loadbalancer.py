"""Issue 4 in the lab: keepalived + haproxy VIP in front of the masters' apiservers.

The apiservers are the kube-apiserver STAND-IN that ksha installs from the lab's release tarball
and runs with its own unit and the model's flags (ksha_lab/standins/apiservers.py): TLS on each
master's node address with the formula's apiserver certificate, ready while etcd is.
"""

import functools
import json
import subprocess
import time

import pytest

from ksha_lab.standins import apiservers as standin
from tests.lab.conftest import converged_lab, failed_states, wait_for

DOMAIN = standin.DOMAIN
stop_standin = standin.stop
start_standin = standin.start


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
        "--cacert", standin.CLIENT_CA_FILE, f"https://{DOMAIN}:6443/readyz",
    )  # fmt: skip
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def keepalived_lab(_lab_session):
    """The shared converged cluster (the lab's pillar is in keepalived mode), with ksha's
    kube-apiserver units (the stand-in) on the masters as the LB's backends."""
    lab, salt, _ = converged_lab()
    standin.share_ca(lab, [lab.hosts[n] for n in ("master1", "master2", "master3")])
    return lab, salt


MASTERS = ["master1", "master2", "master3"]


def test_vip_on_exactly_one_lb_host_and_api_reachable_from_every_host(keepalived_lab):
    lab, _ = keepalived_lab
    # The first LB host whose haproxy sees a backend UP takes the VIP; master1 (highest priority,
    # first in host order) then preempts it.
    assert wait_for(lambda: vip_holders(lab, MASTERS) == ["master1"], 20), vip_holders(lab, MASTERS)
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
    assert failed_states(first) == {}
    assert "inter 500 " in lab.exec(host, "cat", "/etc/haproxy/haproxy.cfg").stdout
    assert lab.exec(host, "systemctl", "is-active", "keepalived").stdout.strip() == "active"
    assert f"{lab.vip} {DOMAIN}" in lab.exec(host, "cat", "/etc/hosts").stdout
    time.sleep(2)  # a VIP move, had there been one, takes well under this
    assert vip_holders(lab, MASTERS) == [holder]

    second = salt.salt(target, "state.highstate")[target]
    assert all(s["result"] is True and not s["changes"] for s in second.values())


def test_real_kubectl_reaches_an_apiserver_through_the_lb_with_admin_conf(keepalived_lab, tmp_path):
    """kubectl (the real one: in the hosts, the release's, which is this machine's; on this machine,
    its own) with the formula's admin.conf: client certificate, the cluster CA, the LB domain."""
    lab, _ = keepalived_lab
    kubectl = ["/usr/local/bin/kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]
    ready = lab.exec(lab.hosts["master2"], *kubectl, "get", "--raw", "/readyz")
    assert (ready.returncode, ready.stdout) == (0, "ok"), ready.stderr
    version = lab.exec(lab.hosts["master2"], *kubectl, "version", "-o", "json")
    assert version.returncode == 0, version
    assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == "v1.30.8"
    # On this machine: admin.conf made portable (its files embedded), to the VIP by address,
    # verifying the LB domain as the certificate names it.
    flat = lab.exec(lab.hosts["master2"], *kubectl, "config", "view", "--flatten", "--raw", check=True).stdout
    (tmp_path / "admin.conf").write_text(flat)
    here = subprocess.run(
        ["kubectl", "--kubeconfig", str(tmp_path / "admin.conf"), f"--server=https://{lab.vip}:6443",
         f"--tls-server-name={DOMAIN}", "get", "--raw", "/readyz"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (here.returncode, here.stdout) == (0, "ok"), here.stderr


def test_status_shows_the_vip_holder_and_backend_states(keepalived_lab):
    lab, salt = keepalived_lab
    assert wait_for(lambda: len(vip_holders(lab, MASTERS)) == 1, 15)
    rc, table, proc = salt.run("ksha.status")
    assert rc == 0, table
    [holder] = vip_holders(lab, MASTERS)
    assert f"VIP {lab.vip} held by: {holder}" in table.splitlines()
    assert f"apiserver backends (haproxy on {holder}): master1 UP, master2 UP, master3 UP" in table.splitlines()


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


# --- reconfiguration from pillar: one orchestration each ------------------------------


@pytest.fixture
def reconfigure(keepalived_lab, lab_pillar):
    """Edit the lab's ksha pillar and run orch.ksha once, up to the LB phase (what these tests
    check; the phases after it never see the change, so putting it back converges no more than
    that); afterwards the pillar comes back, and the LB with it before the next test that uses
    the cluster (lab_pillar)."""
    lab, _ = keepalived_lab
    # the cluster as the seed pillar has it (a test before may have moved the LB and back)
    assert wait_for(lambda: vip_holders(lab, MASTERS) == ["master1"], 20), vip_holders(lab, MASTERS)
    return functools.partial(lab_pillar.apply, until="lb")


@pytest.fixture(scope="module")
def lb_as_left(_lab_session):
    """The shared cluster as the test before left it, not put back first: whatever LB hosts the
    test before moved it to (a test using it holds either), which saves an orchestration."""
    lab, salt, _ = converged_lab(as_left=True)
    return lab, salt


@pytest.fixture
def reconfigure_as_left(lb_as_left, lab_pillar):
    """``reconfigure`` on the cluster as the test before left it (``lb_as_left``)."""
    lab, _ = lb_as_left
    assert wait_for(lambda: len(vip_holders(lab, list(lab.hosts))) == 1, 20), vip_holders(lab, list(lab.hosts))
    return functools.partial(lab_pillar.apply, until="lb")


def active(lab, name, unit):
    return lab.exec(lab.hosts[name], "systemctl", "is-active", unit).stdout.strip() == "active"


def unicast_peers(lab, name):
    conf = lab.exec(lab.hosts[name], "cat", "/etc/keepalived/keepalived.conf").stdout
    block = conf.split("unicast_peer {", 1)[1].split("}", 1)[0]
    return block.split()


def test_moving_the_lb_hosts_and_adding_a_master_take_one_orchestration(keepalived_lab, reconfigure):
    lab, salt = keepalived_lab
    ip = {name: host.ip for name, host in lab.hosts.items()}

    def edit(ksha):
        ksha["loadbalancer"]["hosts"] = ["master2", "master3", "node1"]
        ksha["groups"]["kube-master"].append("node3")
        ksha["loadbalancer"]["console"] = {"enabled": True}

    rc, states = reconfigure(edit)
    assert rc == 0, failed_states(states)
    lb_hosts = ["master2", "master3", "node1"]
    # master1 left the LB hosts: ksha's keepalived and haproxy are gone from it; node1 runs both.
    assert not active(lab, "master1", "keepalived") and not active(lab, "master1", "haproxy")
    leftovers = lab.exec(lab.hosts["master1"], "ls", "/etc/keepalived", "/etc/haproxy").stdout.split()
    assert "keepalived.conf" not in leftovers and "haproxy.cfg" not in leftovers
    assert all(active(lab, n, "keepalived") and active(lab, n, "haproxy") for n in lb_hosts)
    assert unicast_peers(lab, "node1") == [ip["master2"], ip["master3"]]
    assert unicast_peers(lab, "master2") == [ip["master3"], ip["node1"]]
    # The VIP is on the first LB host now (master2, highest priority), and only there.
    assert wait_for(lambda: vip_holders(lab, [*MASTERS, "node1"]) == ["master2"], 15)

    def backends(name="ksha-apiserver"):
        out = salt.salt("master2", "ksha_lb.backends", f"backend={name}")["master2"]
        return {b["name"]: b["state"] for b in out["backends"]}

    # node3 became a master: a backend, DOWN as long as it runs no apiserver (this run stopped
    # before the control plane), and the requests below go to the others.
    expected = {"master1": "UP", "master2": "UP", "master3": "UP", "node3": "DOWN"}
    assert wait_for(lambda: backends() == expected, 10), backends()
    # The console frontend: every cluster node, none serving a console here (no KubeSphere).
    assert sorted(backends("ksha-console")) == sorted(lab.hosts)
    for host in lab.hosts.values():
        assert wait_for(lambda h=host: request(lab, h) == "200", 10), host.name

    # Again: master1 has nothing of ksha's LB left (the plan's probe of the hosts' files), so the
    # next orch.ksha cleans no host; the LB hosts keep theirs.
    rc, plan, proc = salt.run("ksha.plan", "until=lb", "output=data")
    assert rc == 0, proc.stderr
    assert [(s["id"], s["target"]) for s in plan["steps"] if s["id"].startswith("ksha-phase-lb")] == [
        ("ksha-phase-lb-keepalived-haproxy-applied", lb_hosts),
    ], plan


def test_external_mode_checks_every_host_reaches_the_lb_before_changing_anything(lb_as_left, reconfigure_as_left):
    """From the keepalived LB as the test before left it (the seed's, or moved: either holds)."""
    lab, salt = lb_as_left
    reconfigure = reconfigure_as_left
    everyone = list(lab.hosts)
    [holder] = vip_holders(lab, everyone)
    hosts_before = lab.exec(lab.hosts["node1"], "cat", "/etc/hosts").stdout
    unused = lab.vip.rsplit(".", 1)[0] + ".200"

    def wrong_address(ksha):
        ksha["loadbalancer"] = {"mode": "external", "address": unused, "port": 6443}

    rc, states = reconfigure(wrong_address)
    assert rc != 0
    check = states["ksha-preflight-lb-address-reachable-from-every-host"]
    assert check["result"] is False
    comments = {minion: next(iter(ret.values()))["comment"] for minion, ret in check["changes"]["ret"].items()}
    assert sorted(comments) == sorted(lab.hosts)
    assert all(c.startswith(f"LB {unused}:6443 does not answer from this host (") for c in comments.values())
    assert all("ksha:loadbalancer:address" in c for c in comments.values())
    # Nothing was changed: the keepalived LB still holds the VIP, /etc/hosts still points at it.
    assert "ksha-phase-common-applied" not in states or not states["ksha-phase-common-applied"]["changes"]
    assert lab.exec(lab.hosts["node1"], "cat", "/etc/hosts").stdout == hosts_before
    assert vip_holders(lab, everyone) == [holder]

    # An LB that works (here: master1's apiserver stand-in, standing in for the cloud LB).
    def external(ksha):
        ksha["loadbalancer"] = {
            "mode": "external", "address": lab.hosts["master1"].ip, "port": 6443, "external": {"check": "ready"},
        }  # fmt: skip

    rc, states = reconfigure(external)
    assert rc == 0, failed_states(states)
    # No host runs ksha's LB any more, nobody holds the VIP, and the LB domain is the external address.
    assert not any(active(lab, n, "keepalived") or active(lab, n, "haproxy") for n in everyone)
    assert vip_holders(lab, everyone) == []
    for host in lab.hosts.values():
        resolved = lab.exec(host, "getent", "hosts", DOMAIN).stdout.split()
        assert resolved == [lab.hosts["master1"].ip, DOMAIN]
        assert request(lab, host) == "200"
