"""The lab itself and the foundation (issue 2) on it: real systemd hosts, real minions, orch.ksha."""

import pytest
import yaml

from ksha_lab import core
from tests.lab.conftest import converged_lab, failed_states, wait_for

SEED_ROLES = {
    "master1": ["kube-master", "etcd"],
    "master2": ["kube-master", "etcd"],
    "master3": ["kube-master", "etcd"],
    "node1": ["kube-node"],
    "node2": ["kube-node"],
    "node3": ["kube-node"],
}


def test_every_minion_answers_on_a_booted_systemd_host(lab, lab_salt):
    assert lab.ping(list(lab.hosts)) == {name: True for name in SEED_ROLES}
    grains = lab_salt.salt(",".join(lab.hosts), "grains.item", "init", "virtual", "os", "ip4_interfaces")
    for name, host in lab.hosts.items():
        assert grains[name]["init"] == "systemd"
        assert grains[name]["virtual"] == "systemd-nspawn"
        assert grains[name]["os"] == "Debian"
        # its address, and the VIP on the LB host holding it
        assert [a for a in grains[name]["ip4_interfaces"]["host0"] if a != lab.vip] == [host.ip]
        assert lab.system_state(host) == "running"
    providers = lab_salt.salt("master1", "test.provider", "service")
    assert providers == {"master1": "systemd_service"}


def test_nothing_routes_off_the_lab(lab):
    for host in lab.hosts.values():
        routes = lab.exec(host, "ip", "-4", "route", "show").stdout.strip().splitlines()
        assert routes == [f"{lab.subnet} dev host0 proto kernel scope link src {host.ip}"], routes


def test_sync_all_delivers_modules_states_and_runners(lab, lab_salt):
    rc, master_sync, proc = lab_salt.run("saltutil.sync_all")
    assert rc == 0, proc.stderr
    rc, plan, proc = lab_salt.run("ksha.plan", "until=common", "output=data")  # the synced runner answers
    assert rc == 0, proc.stderr
    common = next(step for step in plan["steps"] if step["id"] == "ksha-phase-common-applied")
    assert common["target"] == list(SEED_ROLES)
    minion_sync = lab_salt.salt(",".join(lab.hosts), "saltutil.sync_all")
    assert set(minion_sync) == set(SEED_ROLES)
    roles = lab_salt.salt(",".join(lab.hosts), "ksha.roles")
    assert roles == SEED_ROLES
    states = lab_salt.salt("master1", "sys.list_state_functions", "ksha", "ksha_etcd", "ksha_kube", "ksha_lb")
    # the states and nothing else: a helper without a leading underscore would be listed as a state
    assert states == {
        "master1": [
            "ksha.inventory_valid",
            "ksha.release_extracted",
            "ksha_etcd.cluster_healthy",
            "ksha_etcd.member_absent",
            "ksha_etcd.member_present",
            "ksha_etcd.not_a_member",
            "ksha_etcd.restored",
            "ksha_etcd.running_with_current_config",
            "ksha_kube.mod_watch",  # Salt's name for what a watch calls
            "ksha_kube.node_absent",
            "ksha_kube.node_drained",
            "ksha_kube.node_roles",
            "ksha_kube.objects_applied",
            "ksha_kube.running_with_current_config",
            "ksha_kube.service_account_keys_trusted",
            "ksha_lb.reachable",
        ]
    }


def test_lab_pillar_comes_from_the_importer_and_validates(lab, lab_salt):
    pillar = yaml.safe_load((lab.pillar_dir / "ksha.sls").read_text())["ksha"]
    assert [h["name"] for h in pillar["hosts"]] == list(SEED_ROLES)
    assert pillar["loadbalancer"] == {"mode": "keepalived", "address": lab.vip, "port": 6443}
    rc, report, proc = lab_salt.run("ksha.validate")
    assert rc == 0, proc.stdout
    assert report == {
        "result": True,
        "findings": [],
        "summary": "inventory valid: 0 error(s), 0 warning(s)",
        "retcode": 0,
    }


def test_bad_pillar_fails_validation_and_stops_orchestration(lab, lab_salt, lab_pillar):
    hosts_before = {n: lab.exec(h, "cat", "/etc/hosts").stdout for n, h in lab.hosts.items()}

    def invalid(ksha):
        ksha["groups"]["etcd"] = ["master1", "master2"]
        ksha["hosts"][4]["ip"] = ksha["hosts"][3]["ip"]

    lab_pillar.edit(invalid)

    rc, report, _ = lab_salt.run("ksha.validate")
    assert rc == 1
    assert [line.split(":")[0:3] for line in report["findings"]] == [
        ["ERROR ksha", "hosts", "4"],
        ["ERROR ksha", "groups", "etcd"],
    ]
    rc, states = lab_salt.orchestrate()
    assert rc != 0
    assert states["ksha-preflight-inventory-valid"]["result"] is False
    assert "ERROR ksha:groups:etcd: has 2 members" in states["ksha-preflight-inventory-valid"]["comment"]
    assert all(not s.get("changes") for s in states.values())
    assert {n: lab.exec(h, "cat", "/etc/hosts").stdout for n, h in lab.hosts.items()} == hosts_before


@pytest.fixture(scope="module")
def converged(_lab_session):
    """The shared converged cluster: (lab, salt, the states of orch.ksha from bare hosts)."""
    return converged_lab()


def test_orchestration_converges_every_host(converged):
    lab, lab_salt, states = converged
    assert failed_states(states) == {}
    assert "ksha-phase-etcd-members-bootstrapped" in states
    for host in lab.hosts.values():
        resolved = lab.exec(host, "getent", "hosts", "lb.kubesphere.local").stdout.split()
        assert resolved == [lab.vip, "lb.kubesphere.local"]
        peers = lab.exec(host, "getent", "hosts", "node3").stdout.split()
        assert peers[0] == lab.hosts["node3"].ip


def test_highstate_repairs_drift_and_then_reports_no_changes(converged):
    lab, lab_salt, _ = converged
    node2 = lab.hosts["node2"]
    lab.exec(node2, "sed", "-i", "/# BEGIN ksha/,/# END ksha/d", "/etc/hosts", check=True)
    lab.exec(node2, "sh", "-c", "echo '10.9.9.9 my-own-line' >> /etc/hosts", check=True)
    assert "lb.kubesphere.local" not in lab.exec(node2, "cat", "/etc/hosts").stdout

    first = lab_salt.salt("node2", "state.highstate")["node2"]
    changed = [s["__id__"] for s in first.values() if s["changes"]]
    assert changed == ["ksha-common-hosts-file-cluster-names"]
    text = lab.exec(node2, "cat", "/etc/hosts").stdout
    assert f"{lab.vip} lb.kubesphere.local" in text and "10.9.9.9 my-own-line" in text

    second = lab_salt.salt("node2", "state.highstate")["node2"]
    assert all(s["result"] is True and not s["changes"] for s in second.values())


def test_status_runner_table(converged):
    lab, lab_salt, _ = converged

    # ksha's apiservers (the stand-in, ksha's unit) are the LB's backends: one LB host holds the VIP
    # (master1 once its priority has preempted it), every master's apiserver is ready
    def settled():
        rc, data, _ = lab_salt.run("ksha.status", "output=data")
        return rc == 0 and data["vip_holders"] == ["master1"]

    wait_for(settled, 30, step=1)
    rc, data, proc = lab_salt.run("ksha.status", "output=data")
    assert (rc, data["healthy"], data["vip_holders"]) == (0, True, ["master1"]), (data, proc.stderr)
    assert data["etcd"]["health"]["healthy"] is True
    assert data["control_plane"]["apiserver_ready"] == {"master1": True, "master2": True, "master3": True}
    # The control plane's certificates, read on each master (all issued by orch.ksha just now).
    kube_days = data["control_plane"]["cert_days_left"]
    assert sorted(kube_days) == ["master1", "master2", "master3"]
    assert all(len(certs) == 6 and all(364 <= d <= 365 for d in certs.values()) for certs in kube_days.values())
    rc, table, proc = lab_salt.run("ksha.status")
    lines = table.splitlines()
    assert rc == 0, table
    assert lines[1].split() == ["master1", lab.hosts["master1"].ip, "kube-master,etcd", "up", "held"]
    assert f"API endpoint: lb.kubesphere.local:6443 -> {lab.vip} (loadbalancer mode: keepalived)" in lines
    assert f"VIP {lab.vip} held by: master1" in lines
    assert "apiserver backends (haproxy on master1): master1 UP, master2 UP, master3 UP" in lines
    assert f"  master2: apiserver ready, 6 certificates, soonest {min(kube_days['master2'])} 364 days left" in lines
    # the nodes as the API sees them: each Ready, with its roles, kubelet version and heartbeat
    nodes = data["nodes"]["nodes"]
    assert sorted(nodes) == sorted(SEED_ROLES) and {n["ready"] for n in nodes.values()} == {"True"}, nodes
    assert nodes["master1"]["roles"] == ["control-plane"] and nodes["node1"]["roles"] == ["worker"]
    assert {n["kubelet"] for n in nodes.values()} == {"v1.30.8"}
    assert all(0 <= n["heartbeat_s_ago"] < 15 for n in nodes.values()), nodes  # the Lease, every 3 s in the lab
    assert "nodes (as the API sees them):" in lines
    assert any(line.startswith("  node1: Ready, roles worker, kubelet v1.30.8, heartbeat ") for line in lines), lines


def test_lab_state_is_recorded(lab):
    loaded = core.Lab.load()
    assert list(loaded.hosts) == list(SEED_ROLES)
    assert loaded.vip == lab.vip and loaded.vip not in {h.ip for h in loaded.hosts.values()}
