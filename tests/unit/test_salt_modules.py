"""salt/_runners/ksha_runner.py, _states/ksha.py and _modules/ksha.py under Salt's loader mock.

The runner's two touch points with the master (accepted keys, pillar
compilation) and its ping are replaced per test; the lab tests exercise the
real ones.
"""

import calendar
import json

import pytest
import salt.client

from ksha import model, plan
from tests.conftest import load_salt_module

runner = load_salt_module("runners", "ksha_runner")
state = load_salt_module("states")
module = load_salt_module("modules")


@pytest.fixture
def context():
    return {}


@pytest.fixture
def configure_loader_modules(context, example_ksha):
    pillar = {"ksha": example_ksha, **model.for_minion(model.build(example_ksha), "master2")}
    return {
        runner: {"__opts__": {"id": "saltmaster_master", "conf_file": "/etc/salt/master"}, "__context__": context},
        state: {"__opts__": {"test": False}, "__salt__": {}},
        module: {"__grains__": {"id": "master2"}, "__pillar__": pillar},
    }


@pytest.fixture
def fleet(monkeypatch, example_ksha, hosts):
    """Six accepted minions, all compiling the example pillar; tests edit it."""
    minions = {name: {"ksha": example_ksha} for name in ["master1", "master2", "master3", "node1", "node2", "node3"]}
    monkeypatch.setattr(runner, "_accepted_minions", lambda: list(minions))
    monkeypatch.setattr(runner, "_compile_pillar", lambda minion_id: minions[minion_id])
    monkeypatch.setattr(runner, "_etcd_view", lambda members, ip_of, pki_dir, timeout: ETCD_VIEW)
    monkeypatch.setattr(
        runner, "_control_plane_view", lambda masters, timeout: (CP_VIEW, CP_READY, CP_LEASES, CP_NODES)
    )
    monkeypatch.setattr(salt.client, "get_local_client", lambda conf_file: hosts)
    return minions


class Hosts:
    """The runner's publishes (salt.client.LocalClient.cmd) answered as the hosts would: ``facts``
    ``{minion: {function: return}}`` for the plan's one publish of several functions, ``members``
    for ksha_etcd.members; every call is kept in ``calls``."""

    def __init__(self):
        self.facts = {}
        self.members = {}
        self.calls = []
        self.old_modules = False  # the minions' ksha_etcd predates the plan's arguments

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def cmd(self, tgt, fun, arg=(), tgt_type="glob", timeout=None, kwarg=None):
        self.calls.append((fun, tgt, kwarg or arg))
        if isinstance(fun, list):
            return {m: self.facts[m] for m in tgt if m in self.facts}
        assert fun == "ksha_etcd.members", fun
        if kwarg and self.old_modules:  # Salt's answer when the minion's function takes no such argument
            return {m: "ERROR executing 'ksha_etcd.members': The following keyword arguments are not valid"
                    for m in tgt if m in self.members}  # fmt: skip
        return {m: self.members[m] for m in tgt if m in self.members}


@pytest.fixture
def hosts():
    """Six bare hosts: no CA key, no bootstrap grain, none of ksha's files."""
    bare = Hosts()
    # grep's answer where none of the files is there: one "No such file" line each
    none_left = {"retcode": 2, "stdout": "", "stderr": "grep: /etc/x: No such file or directory", "pid": 1}
    for name in ["master1", "master2", "master3", "node1", "node2", "node3"]:
        bare.facts[name] = {"grains.get": "", "cmd.run_all": none_left}
    return bare


# ksha.status's control-plane view of a healthy cluster (what _control_plane_view gathers from the
# masters: their certificates' days left, their apiservers' readiness)
CP_VIEW = {
    m: {"apiserver": 364, "admin-client": 364, "front-proxy-client": 200} for m in ("master1", "master2", "master3")
}
CP_READY = {"master1": True, "master2": True, "master3": True}
CP_LEASES = {"from": "master1", "leases": {
    "kube-controller-manager": {"holder": "master2_0f1e", "master": "master2", "renewed_s_ago": 1.5, "duration_s": 15,
                                "transitions": 2, "expired": False},
    "kube-scheduler": {"holder": "master1_aa", "master": "master1", "renewed_s_ago": 0.4, "duration_s": 15,
                       "transitions": 0, "expired": False},
}}  # fmt: skip
NODE = {"ready": "True", "reason": "KubeletReady", "roles": ["worker"], "kubelet": "v1.30.8", "heartbeat_s_ago": 2.5}
CP_NODES = {"from": "master1", "nodes": {
    **{m: {**NODE, "roles": ["control-plane"]} for m in ("master1", "master2", "master3")},
    **{n: NODE for n in ("node1", "node2", "node3")},
}}  # fmt: skip
# ksha.status's etcd view of a healthy cluster (what _etcd_view gathers from the members).
ETCD_VIEW = (
    {"healthy": True, "cluster_id": "c0ffee", "leader": "master2", "problems": [], "members": {}},
    {
        "master1": {"ok": True, "is_leader": False, "learner": False, "db_size": 20480},
        "master2": {"ok": True, "is_leader": True, "learner": False, "db_size": 24576},
        "master3": {"ok": True, "is_leader": False, "learner": False, "db_size": 2 * 1024 * 1024},
    },
    {"master1": 364, "master2": 364, "master3": 29},
)


def test_runner_virtual_needs_the_ksha_package():
    assert runner.__virtual__() == "ksha"


def test_validate_fleet_valid(fleet, context):
    assert runner.validate() == {
        "result": True,
        "findings": [],
        "summary": "inventory valid: 0 error(s), 0 warning(s)",
        "retcode": 0,
    }
    assert context["retcode"] == 0


def test_validate_fleet_invalid_sets_retcode(fleet, context, example_ksha):
    example_ksha["groups"]["etcd"] = ["master1", "master2"]
    out = runner.validate()
    assert out["result"] is False
    assert out["findings"][0].startswith("ERROR ksha:groups:etcd: has 2 members")
    assert out["retcode"] == context["retcode"] == 1


def test_one_orchestration_compiles_the_pillars_once_salt_run_every_time(fleet, context, monkeypatch, hosts):
    """The plan an orchestration renders and its preflight's validation share ksha.runner's context:
    the pillars are compiled once and the preflight validates the ones the plan was built from.
    Without that context (salt-run), every call compiles them again."""
    compiled = []
    monkeypatch.setattr(runner, "_compile_pillar", lambda m: compiled.append(m) or fleet[m])
    runner.validate()
    runner.validate()
    assert len(compiled) == 12
    compiled.clear()
    context[runner.FLEET_SHARED] = {}  # what ksha.runner hands the runners of one orchestration
    runner.plan(output="data")
    fleet["node3"] = {"ksha": {**fleet["node3"]["ksha"], "groups": {}}}  # an edit after the plan was built
    assert runner.validate()["result"] is True  # the pillars the plan was built from
    assert sorted(compiled) == sorted(fleet)
    context[runner.FLEET_SHARED] = {}  # the next orchestration
    assert runner.validate()["result"] is False


def test_ksha_runner_shares_one_context_between_the_runners_it_calls(monkeypatch):
    """ksha.runner's runners get one __context__ (kept in its own: one orchestration's), holding
    the key under which ksha_runner._fleet keeps what it compiled."""
    import salt.loader

    class Runners(dict):
        def destroy(self):
            pass

    seen = []

    def loader(opts, context=None):
        seen.append(context)
        return Runners({"ksha.validate": lambda: True})

    monkeypatch.setattr(salt.loader, "runner", loader)
    monkeypatch.setattr(module, "__opts__", {"id": "master", "master_job_cache": "local_cache"}, raising=False)
    monkeypatch.setattr(module, "__context__", {}, raising=False)
    assert module.runner("ksha.validate") is True and module.runner("ksha.validate") is True
    assert seen[0] is seen[1] and seen[0] == {runner.FLEET_SHARED: {}}
    assert module.FLEET_SHARED == runner.FLEET_SHARED


def test_validate_reports_host_without_accepted_key(fleet, context):
    del fleet["node3"]
    out = runner.validate()
    assert out["findings"] == [
        "ERROR ksha:hosts:5:name: host 'node3' has no accepted minion key on this master "
        "(salt-key -L; accept with salt-key -a node3)"
    ]
    assert context["retcode"] == 1


def test_validate_reports_minions_that_disagree(fleet, example_ksha):
    fleet["node1"] = {"ksha": {**example_ksha, "cluster_name": "other"}}
    out = runner.validate()
    assert out["findings"] == [
        "ERROR ksha: minions get different 'ksha' pillars (groups: master1, master2, master3, node2, node3; node1); "
        "they must agree"
    ]


def test_validate_reports_inventory_host_without_ksha_pillar(fleet):
    fleet["node2"] = {}
    assert runner.validate()["findings"] == [
        "ERROR ksha:hosts:4:name: minion 'node2' does not get the 'ksha' pillar; fix the pillar top file"
    ]


def test_validate_without_any_ksha_pillar(fleet):
    for name in fleet:
        fleet[name] = {}
    assert runner.validate()["findings"] == [
        "ERROR ksha: no 'ksha' pillar reaches any of the 6 accepted minion(s); assign it in the pillar top file "
        "(pillar/top.sls)"
    ]


def test_validate_reports_pillar_render_errors(fleet, example_ksha):
    fleet["master1"] = {"ksha": example_ksha, "_errors": ["Rendering SLS 'ksha' failed: mapping values"]}
    assert runner.validate()["findings"] == [
        "ERROR ksha: pillar of minion 'master1' failed to render: Rendering SLS 'ksha' failed: mapping values"
    ]


def test_validate_given_pillar(context, example_ksha):
    example_ksha["loadbalancer"]["port"] = "6443"
    out = runner.validate(pillar={"ksha": example_ksha})
    assert out["findings"] == [
        "ERROR ksha:loadbalancer:port: '6443' is not a port: use an integer from 1 to 65535 (e.g. 6443)"
    ]
    assert context["retcode"] == 1


def _plan(**kwargs):
    return [(step["id"], step["target"]) for step in runner.plan(output="data", **kwargs)["steps"]]


ALL = ["master1", "master2", "master3", "node1", "node2", "node3"]


def test_plan_until_lb_in_external_mode(fleet, hosts):
    # The example is the seed's external (cloud) LB: no host runs one, every host checks it reaches it.
    # Hosts that ran ksha's keepalived mode before (their configs carry the marker) are cleaned.
    lb = model.build(fleet["master1"]["ksha"])["loadbalancer"]
    for name in ALL:
        hosts.facts[name]["cmd.run_all"] = {"retcode": 0, "stdout": f"{lb['haproxy_cfg']}:1", "pid": 1}
    assert _plan(until="lb") == [
        ("ksha-preflight-inventory-valid", []),
        ("ksha-preflight-every-host-minion-responds", ALL),
        ("ksha-preflight-custom-modules-synced", ALL),
        ("ksha-preflight-custom-states-synced", ALL),
        ("ksha-preflight-pillar-refreshed", ALL),
        ("ksha-preflight-lb-address-reachable-from-every-host", ALL),
        ("ksha-phase-common-applied", ALL),
        ("ksha-phase-lb-other-hosts-cleaned", ALL),
    ]


def test_plan_lb_hosts_in_keepalived_mode(fleet, example_ksha, hosts):
    example_ksha["loadbalancer"]["mode"] = "keepalived"
    steps = dict(_plan(until="lb"))
    assert steps["ksha-phase-lb-keepalived-haproxy-applied"] == ["master1", "master2", "master3"]
    assert "ksha-phase-lb-other-hosts-cleaned" not in steps  # bare hosts: nothing to clean
    assert "ksha-preflight-lb-address-reachable-from-every-host" not in steps
    # Moving the LB: the hosts that stop being LB hosts are the ones cleaned.
    keepalived_conf = model.build(example_ksha)["loadbalancer"]["keepalived_conf"]
    for name in ["master1", "master2", "master3"]:
        hosts.facts[name]["cmd.run_all"] = {**hosts.facts[name]["cmd.run_all"], "stdout": f"{keepalived_conf}:1"}
    example_ksha["loadbalancer"]["hosts"] = ["node1", "node2"]
    steps = dict(_plan(until="lb"))
    assert steps["ksha-phase-lb-keepalived-haproxy-applied"] == ["node1", "node2"]
    assert steps["ksha-phase-lb-other-hosts-cleaned"] == ["master1", "master2", "master3"]


def test_plan_asks_etcd_for_its_members_only_for_the_etcd_phase_of_a_bootstrapped_cluster(fleet, hosts):
    steps = dict(_plan())
    assert [fun for fun, *_ in hosts.calls] == [["grains.get", "cmd.run_all"]]
    assert steps["ksha-phase-etcd-members-bootstrapped"] == ["master1", "master2", "master3"]
    # bare hosts: nothing to clean anywhere
    assert not [i for i in steps if i.endswith("-cleaned")]
    for member in ["master1", "master2", "master3"]:
        hosts.facts[member]["grains.get"] = "c0ffee"
    ca_key = model.build(fleet["master1"]["ksha"])["etcd"]["ca"]["key"]
    hosts.facts["master1"]["cmd.run_all"] = {"retcode": 0, "stdout": f"{ca_key}:0", "pid": 1}
    hosts.members["master1"] = {"result": True, "members": [{"name": m, "id": "1"} for m in ["master1", "master2"]]}
    hosts.calls.clear()
    _plan(until="lb")
    assert [fun for fun, *_ in hosts.calls] == [["grains.get", "cmd.run_all"]]
    hosts.calls.clear()
    steps = dict(_plan())
    assert [fun for fun, *_ in hosts.calls][1] == "ksha_etcd.members"
    # asked with the master's model (the recorded members' client URLs, the admin certificate),
    # not the minion's pillar in memory, which the plan (before the preflight's refresh) cannot trust
    cluster = model.build(fleet["master1"]["ksha"])
    ip = {h["name"]: h["ip"] for h in cluster["hosts"]}
    assert hosts.calls[1][1:] == (
        ["master1", "master2", "master3"],
        {"endpoints": ",".join(f"https://{ip[m]}:2379" for m in ["master1", "master2", "master3"]),
         **cluster["etcd"]["admin"]},
    )  # fmt: skip
    # a first run after an upgrade: the minions' module takes none of those arguments yet (the
    # preflight syncs it later); the plan asks again as the members themselves would
    hosts.old_modules = True
    hosts.calls.clear()
    steps = dict(_plan())
    assert [(fun, args) for fun, _, args in hosts.calls[1:]] == [("ksha_etcd.members", hosts.calls[1][2]),
                                                                  ("ksha_etcd.members", ())]  # fmt: skip
    assert steps["ksha-phase-etcd-master3-joined"] == ["master3"]
    assert steps["ksha-phase-etcd-master3-joined"] == ["master3"]


def test_plan_cleans_the_hosts_the_probe_finds_ksha_files_on(fleet, hosts, example_ksha):
    example_ksha["loadbalancer"]["mode"] = "keepalived"
    hosts.facts["node1"]["cmd.run_all"] = {"retcode": 0, "stdout": "/etc/keepalived/keepalived.conf:1", "pid": 1}
    del hosts.facts["node3"]  # no answer: cleaned, as before there was a probe
    steps = dict(_plan())
    assert steps["ksha-phase-lb-other-hosts-cleaned"] == ["node1", "node3"]
    assert steps["ksha-phase-etcd-other-hosts-cleaned"] == ["node3"]
    # the probe is the plan's command, run without a shell; a missing file is no error in the log
    [(_, target, args)] = hosts.calls
    assert target == ["master1", "master2", "master3", "node1", "node2", "node3"]
    assert args[1] == [plan.file_probe(model.build(example_ksha)), "python_shell=False", "ignore_retcode=True"]


def test_plan_without_pillar_is_the_failing_preflight(fleet):
    for name in fleet:
        fleet[name] = {}
    assert _plan() == [("ksha-preflight-inventory-valid", [])]


def test_plan_table_for_a_person(fleet):
    text = runner.plan(until="common")
    assert text.splitlines()[:4] == [
        " 1. ksha-preflight-inventory-valid",
        "    ksha.inventory_valid on master",
        "    why: the ksha pillar is valid and reaches every host (read-only, so it runs under test=True too)",
        " 2. ksha-preflight-every-host-minion-responds",
    ]
    assert "    ksha.common on master1,master2,master3,node1,node2,node3" in text


def test_import_inventory(context, tmp_path):
    from tests.conftest import SEED

    out = runner.import_inventory(str(SEED / "hosts.ini"), common_yaml=str(SEED / "common.yaml"))
    assert list(out) == ["ksha"]  # with --out=yaml, a pillar file
    assert out["ksha"]["loadbalancer"]["address"] == "192.168.0.253"
    assert context["retcode"] == 0


def test_import_inventory_invalid_reports_findings(context, tmp_path):
    from tests.conftest import SEED

    out = runner.import_inventory(str(SEED / "hosts.ini"))  # 3 masters, no LB
    assert out["result"] is False
    assert out["findings"][0].startswith("ERROR ksha:loadbalancer:mode: is 'none' but there are 3 masters")
    assert out["retcode"] == context["retcode"] == 1


def test_import_inventory_refuses_a_roster_path_before_writing(context, tmp_path):
    from tests.conftest import SEED

    out = runner.import_inventory(str(SEED / "hosts.ini"), roster_out=str(tmp_path / "no" / "roster"))
    assert out == {"error": f"roster_out {tmp_path}/no/roster: directory {tmp_path}/no does not exist", "retcode": 2}
    assert context["retcode"] == 2


def test_import_inventory_unreadable(context, tmp_path):
    out = runner.import_inventory(str(tmp_path / "missing.ini"))
    assert out["error"].startswith("hosts.ini ")
    assert out["retcode"] == context["retcode"] == 2


def test_status_table(fleet, monkeypatch, context):
    monkeypatch.setattr(runner, "_ping", lambda hosts, timeout: {h: True for h in hosts if h != "node2"})
    table = runner.status()
    lines = table.splitlines()
    assert lines[0].split() == ["HOST", "ADDRESS", "ROLES", "MINION", "VIP"]
    assert lines[1].split() == ["master1", "192.168.0.1", "kube-master,etcd", "up"]
    assert lines[5].split() == ["node2", "192.168.0.5", "kube-node", "DOWN"]
    assert lines[8] == "API endpoint: lb.kubesphere.local:6443 -> 192.168.0.253 (loadbalancer mode: external)"
    assert lines[10:] == [
        "etcd cluster c0ffee: healthy; leader master2",
        "  etcd master1: up, db 20.0 KiB, server certificate 364 days left",
        "  etcd master2: up (leader), db 24.0 KiB, server certificate 364 days left",
        "  etcd master3: up, db 2.0 MiB, server certificate 29 days left",
        "",
        "control plane (apiservers, certificates, leader Leases):",
        "  master1: apiserver ready, 3 certificates, soonest front-proxy-client 200 days left",
        "  master2: apiserver ready, 3 certificates, soonest front-proxy-client 200 days left",
        "  master3: apiserver ready, 3 certificates, soonest front-proxy-client 200 days left",
        "  kube-controller-manager leader: master2 (renewed 1.5 s ago, 2 transitions)",
        "  kube-scheduler leader: master1 (renewed 0.4 s ago, 0 transitions)",
        "",
        "nodes (as the API sees them):",
        "  master1: Ready, roles control-plane, kubelet v1.30.8, heartbeat 2.5 s ago",
        "  master2: Ready, roles control-plane, kubelet v1.30.8, heartbeat 2.5 s ago",
        "  master3: Ready, roles control-plane, kubelet v1.30.8, heartbeat 2.5 s ago",
        "  node1: Ready, roles worker, kubelet v1.30.8, heartbeat 2.5 s ago",
        "  node2: Ready, roles worker, kubelet v1.30.8, heartbeat 2.5 s ago",
        "  node3: Ready, roles worker, kubelet v1.30.8, heartbeat 2.5 s ago",
    ]
    assert context["retcode"] == 1  # node2's minion is down


def test_status_flags_an_unhealthy_or_unreachable_etcd(fleet, monkeypatch, context):
    monkeypatch.setattr(runner, "_ping", lambda hosts, timeout: {h: True for h in hosts})
    sick = ({**ETCD_VIEW[0], "healthy": False, "problems": ["member master3 does not answer"]}, {}, {})
    monkeypatch.setattr(runner, "_etcd_view", lambda *args: sick)
    lines = runner.status().splitlines()
    assert "etcd cluster c0ffee: NOT HEALTHY: member master3 does not answer; leader master2" in lines
    assert "  etcd master3: DOWN, db -, server certificate unknown left" in lines
    assert context["retcode"] == 1
    monkeypatch.setattr(runner, "_etcd_view", lambda *args: (None, {}, {}))
    assert "etcd: no member answers (not bootstrapped yet, or every member is down)" in runner.status().splitlines()
    assert context["retcode"] == 1


# (case, {master: {certificate: days}} as the masters answered, {master: apiserver ready}, lines, a problem)
CONTROL_PLANE_ROWS = [
    ("every certificate there", {"master1": {"apiserver": 300, "admin-client": 200}}, {"master1": True},
     ["  master1: apiserver ready, 2 certificates, soonest admin-client 200 days left"], False),
    ("due for renewal (days_remaining 30)", {"master1": {"apiserver": 30}}, {"master1": True},
     ["  master1: apiserver ready, 1 certificates, soonest apiserver 30 days left  <-- renewed at the next highstate"],
     False),
    ("the apiserver not ready", {"master1": {"apiserver": 300}}, {"master1": False},
     ["  master1: apiserver NOT READY, 1 certificates, soonest apiserver 300 days left"], True),
    ("the apiserver's readiness not said", {"master1": {"apiserver": 300}}, {},
     ["  master1: apiserver unknown, 1 certificates, soonest apiserver 300 days left"], True),
    ("a certificate missing", {"master1": {"apiserver": None, "admin-client": 20}}, {"master1": True},
     ["  master1: apiserver ready, certificates missing or unreadable: apiserver"], True),
    ("none issued yet", {"master1": {}}, {"master1": False},
     ["  master1: apiserver NOT READY, certificates missing or unreadable: all"], True),
    ("the master did not answer", {}, {}, ["  master1: did not answer"], True),
]  # fmt: skip


@pytest.mark.parametrize(
    "case, days, ready, lines, problem", CONTROL_PLANE_ROWS, ids=[r[0] for r in CONTROL_PLANE_ROWS]
)
def test_control_plane_rows(case, days, ready, lines, problem):
    assert runner.control_plane_rows(["master1"], days, 30, ready) == (lines, problem)


HELD = CP_LEASES["leases"]["kube-scheduler"]
# (case, _control_plane_view's leases, lines, a problem)
LEASE_ROWS = [
    ("both held", CP_LEASES, ["  kube-controller-manager leader: master2 (renewed 1.5 s ago, 2 transitions)",
                              "  kube-scheduler leader: master1 (renewed 0.4 s ago, 0 transitions)"], False),
    ("no Lease: not running anywhere", {"from": "master1", "leases": {"kube-scheduler": None}},
     ["  kube-scheduler leader: NONE (no Lease in kube-system: does it run on any master?)"], True),
    ("not renewed within its duration",
     {"from": "master1", "leases": {"kube-scheduler": {**HELD, "renewed_s_ago": 31.0, "expired": True}}},
     ["  kube-scheduler leader: NONE (its Lease was last renewed 31.0 s ago by master1_aa; lease duration 15 s)"],
     True),
    ("released", {"from": "master1", "leases": {"kube-scheduler": {**HELD, "holder": None, "master": None,
                                                                   "renewed_s_ago": None, "expired": True}}},
     ["  kube-scheduler leader: NONE (its Lease was released; lease duration 15 s)"], True),
    ("held by a host that is no master",
     {"from": "master1", "leases": {"kube-scheduler": {**HELD, "holder": "box_1", "master": None}}},
     ["  kube-scheduler leader: box_1 (not a master's hostname) (renewed 0.4 s ago, 0 transitions)"], False),
    ("kubectl failed on every master", {"error": "kubectl on master3: Unable to connect to the server: EOF"},
     ["  leader leases: unknown (kubectl on master3: Unable to connect to the server: EOF)"], True),
]  # fmt: skip


@pytest.mark.parametrize("case, view, lines, problem", LEASE_ROWS, ids=[r[0] for r in LEASE_ROWS])
def test_lease_rows(case, view, lines, problem):
    assert runner.lease_rows(view) == (lines, problem)


def test_status_is_unhealthy_without_a_controller_manager_leader(fleet, monkeypatch, context):
    monkeypatch.setattr(runner, "_ping", lambda hosts, timeout: {h: True for h in hosts})
    gone = {"from": "master1", "leases": {**CP_LEASES["leases"], "kube-controller-manager": None}}
    monkeypatch.setattr(runner, "_control_plane_view", lambda masters, timeout: (CP_VIEW, CP_READY, gone, CP_NODES))
    out = runner.status(output="data")
    assert (out["healthy"], out["retcode"]) == (False, 1)
    assert out["control_plane"]["leases"] == gone


def test_status_flags_a_master_without_its_certificates(fleet, monkeypatch, context):
    monkeypatch.setattr(runner, "_ping", lambda hosts, timeout: {h: True for h in hosts})
    monkeypatch.setattr(
        runner,
        "_control_plane_view",
        lambda masters, timeout: ({**CP_VIEW, "master3": {}}, CP_READY, CP_LEASES, CP_NODES),
    )
    out = runner.status(output="data")
    assert (out["healthy"], out["retcode"]) == (False, 1)
    assert out["control_plane"]["cert_days_left"]["master3"] == {}


def test_status_data(fleet, monkeypatch):
    monkeypatch.setattr(runner, "_ping", lambda hosts, timeout: {h: True for h in hosts})
    out = runner.status(output="data")
    assert (out["healthy"], out["retcode"]) == (True, 0)
    rows = out["hosts"]
    assert rows[3] == {"host": "node1", "address": "192.168.0.4", "roles": ["kube-node"], "minion": "up", "vip": False}


def test_status_shows_vip_holder_and_backends_in_keepalived_mode(fleet, monkeypatch, context, example_ksha):
    example_ksha["loadbalancer"]["mode"] = "keepalived"
    monkeypatch.setattr(runner, "_ping", lambda hosts, timeout: {h: True for h in hosts})
    backends = [
        {"name": "master1", "state": "UP", "check": "L7OK", "last_check": "200"},
        {"name": "master2", "state": "DOWN", "check": "L4CON", "last_check": "Connection refused"},
    ]
    monkeypatch.setattr(runner, "_lb_view", lambda hosts, timeout: (["master2"], backends))
    lines = runner.status().splitlines()
    assert lines[2].split() == ["master2", "192.168.0.2", "kube-master,etcd", "up", "held"]
    assert lines[9] == "VIP 192.168.0.253 held by: master2"
    assert lines[10] == "apiserver backends (haproxy on master2): master1 UP, master2 DOWN (L4CON Connection refused)"
    assert context["retcode"] == 0


def test_status_flags_no_or_two_vip_holders(fleet, monkeypatch, context, example_ksha):
    example_ksha["loadbalancer"]["mode"] = "keepalived"
    monkeypatch.setattr(runner, "_ping", lambda hosts, timeout: {h: True for h in hosts})
    monkeypatch.setattr(runner, "_lb_view", lambda hosts, timeout: (["master1", "master3"], []))
    assert "held by: master1, master3  <-- expected exactly one holder" in runner.status()
    assert context["retcode"] == 1


# --- the orchestration's preflight state ----------------------------------------


def _with_runner(report):
    state.__salt__["ksha.runner"] = lambda fun, **kwargs: report


def test_inventory_valid_state_passes():
    _with_runner({"result": True, "findings": [], "summary": "inventory valid: 0 error(s), 0 warning(s)"})
    assert state.inventory_valid("preflight") == {
        "name": "preflight",
        "result": True,
        "changes": {},
        "comment": "inventory valid: 0 error(s), 0 warning(s)",
    }


def test_inventory_valid_state_fails_with_the_findings():
    _with_runner(
        {"result": False, "findings": ["ERROR ksha:groups:etcd: x"], "summary": "inventory invalid: 1 error(s)"}
    )
    ret = state.inventory_valid("preflight")
    assert ret["result"] is False
    assert ret["comment"] == "ERROR ksha:groups:etcd: x\ninventory invalid: 1 error(s)"


def test_inventory_valid_state_validates_in_test_mode_too():
    state.__opts__["test"] = True
    _with_runner({"result": False, "findings": ["ERROR ksha: x"], "summary": "inventory invalid: 1 error(s)"})
    assert state.inventory_valid("preflight")["result"] is False


def test_inventory_valid_state_when_runner_is_missing():
    _with_runner("'ksha.validate' is not available.")
    ret = state.inventory_valid("preflight")
    assert ret["result"] is False
    assert "is it synced? salt-run saltutil.sync_all" in ret["comment"]


# --- the minion-side execution module ----------------------------------------------


def test_module_roles_and_host():
    assert module.roles() == ["kube-master", "etcd"]
    assert module.roles("node1") == ["kube-node"]
    me = module.host()
    assert (me["name"], me["ip"], me["states"]) == (
        "master2",
        "192.168.0.2",
        [
            "ksha.common",
            "ksha.loadbalancer.clean",
            "ksha.loadbalancer.external",
            "ksha.etcd.pki",
            "ksha.etcd",
            "ksha.kubernetes.install",
            "ksha.kubernetes.pki",
            "ksha.kubernetes.service_account",
            "ksha.kubernetes.service",
            "ksha.containerd",
            "ksha.node",
        ],
    )
    assert module.host("nobody") == {}


def test_apiserver_ready_probes_a_masters_readyz_verified_under_its_name(monkeypatch):
    asked = []

    def probe(**kwargs):
        asked.append(kwargs)
        return {"ok": True, "status": 200}

    monkeypatch.setitem(module.__salt__, "ksha_lb.probe", probe)
    assert module.apiserver_ready() == {"ok": True, "status": 200}  # this master's (master2)
    assert module.apiserver_ready("master3", timeout=1)["ok"] is True
    ca = "/etc/kubernetes/pki/ca.crt"
    assert asked == [
        {"address": "192.168.0.2", "port": 6443, "domain": "master2", "cafile": ca, "timeout": 2},
        {"address": "192.168.0.3", "port": 6443, "domain": "master3", "cafile": ca, "timeout": 1},
    ]
    assert module.apiserver_ready("node1") is None and len(asked) == 2  # not a master: not probed


def test_module_model_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(module, "__pillar__", {"ksha": {}}, raising=False)
    with pytest.raises(Exception, match="ext_pillar"):
        module.model()
    monkeypatch.setattr(module, "__pillar__", {"ksha_model": {"errors": ["ERROR ksha:hosts: x"]}}, raising=False)
    with pytest.raises(Exception, match="invalid .* ERROR ksha:hosts: x"):
        module.model()


def test_module_runner_runs_on_the_master_only(monkeypatch):
    # a minion's opts have no master_job_cache: the orchestrations call it on the master
    monkeypatch.setattr(module, "__opts__", {"id": "master2"}, raising=False)
    with pytest.raises(Exception, match="runs on the master.*salt-run ksha.plan"):
        module.runner("ksha.plan")


PEM = {m: f"-----BEGIN PUBLIC KEY-----\n{m}key\n-----END PUBLIC KEY-----\n" for m in ("master1", "master2", "master3")}
# (case, masters, what the mine holds, the bundle's keys in order, missing)
BUNDLES = [
    ("every master's key, in master order", ["master2", "master1"], PEM, ["master2", "master1"], []),
    ("one master never published", ["master1", "master2", "master3"], {"master1": PEM["master1"], "master3": PEM["master3"]},
     ["master1", "master3"], ["master2"]),
    ("mine.send stored an error, not a key", ["master1"], {"master1": "Traceback ..."}, [], ["master1"]),
    ("a key of a removed master is not trusted", ["master1"], PEM, ["master1"], []),
    ("no masters", [], PEM, [], []),
]  # fmt: skip


@pytest.mark.parametrize("case, masters, published, keys, missing", BUNDLES, ids=[b[0] for b in BUNDLES])
def test_public_key_bundle(case, masters, published, keys, missing):
    bundle = module.public_key_bundle(masters, published)
    assert bundle == {"pem": "".join(PEM[m] for m in keys), "keys": {m: PEM[m] for m in keys}, "missing": missing}


def test_service_account_keys_reads_the_models_masters_from_the_mine(monkeypatch):
    asked = []

    def mine_get(tgt, fun, tgt_type):
        asked.append((tgt, fun, tgt_type))
        return {"master1": PEM["master1"], "master3": PEM["master3"], "node1": PEM["master2"]}

    monkeypatch.setattr(module, "__salt__", {"mine.get": mine_get}, raising=False)
    assert module.service_account_keys() == {
        "pem": PEM["master1"] + PEM["master3"],
        "keys": {"master1": PEM["master1"], "master3": PEM["master3"]},
        "missing": ["master2"],
    }
    assert asked == [("master1,master2,master3", "ksha_kube_service_account_key", "list")]


def test_days_left_counts_whole_days_in_utc():
    now = 1_800_000_000  # 2027-01-15 08:00:00 UTC
    assert module.days_left("2027-01-16 08:00:00", now) == 1
    assert module.days_left("2027-01-16 07:59:59", now) == 0
    assert module.days_left("2027-01-15 07:00:00", now) == -1


def test_certificates_days_left_reads_the_models_certificates_of_this_minion(monkeypatch):
    read = []

    def read_certificate(path):
        read.append(path)
        if path.endswith("/apiserver.crt"):
            raise OSError("no such file")
        return {"not_after": "2999-01-01 00:00:00"}

    monkeypatch.setattr(module, "__salt__", {"x509.read_certificate": read_certificate}, raising=False)
    days = module.certificates_days_left()
    assert sorted(days) == ["etcd", "kubernetes"]
    assert days["kubernetes"]["apiserver"] is None
    assert days["kubernetes"]["admin-client"] > 300000
    assert "/etc/kubernetes/pki/front-proxy-client.crt" in read


def mine_double(monkeypatch, stored_after):
    """The x509 and mine functions publish_service_account_key calls: master2's key is PEM
    master2; the mine returns `stored_after` (a list, one entry per mine.get) for master2."""
    calls = []
    answers = iter(stored_after)

    def send(name, *args, **kwargs):
        calls.append(("send", name, args, kwargs))
        return True

    def get(tgt, fun, tgt_type):
        calls.append(("get", tgt, fun, tgt_type))
        return {"master2": next(answers, stored_after[-1])}

    functions = {"x509.get_public_key": lambda key: PEM["master2"], "mine.send": send, "mine.get": get}
    monkeypatch.setattr(module, "__salt__", functions, raising=False)
    monkeypatch.setattr(module.time, "sleep", lambda s: None)
    return calls


def test_publish_service_account_key_waits_until_the_mine_holds_this_masters_key(monkeypatch):
    calls = mine_double(monkeypatch, [PEM["master1"], None, PEM["master2"]])  # stale, nothing, then stored
    assert module.publish_service_account_key() is True
    assert calls[0] == (
        "send", "ksha_kube_service_account_key", ("/etc/kubernetes/pki/sa.key",),
        {"mine_function": "x509.get_public_key"},
    )  # fmt: skip
    assert [c[0] for c in calls] == ["send", "get", "get", "get"]


def test_publish_service_account_key_fails_when_the_mine_never_stores_it(monkeypatch):
    mine_double(monkeypatch, [PEM["master1"]])
    with pytest.raises(
        Exception,
        match=r"did not store master2.s service account public key \(ksha_kube_service_account_key\) within 0 s",
    ):
        module.publish_service_account_key(timeout=0)


def leases_json(**specs):
    """``kubectl get leases -n kube-system -o json`` holding these Leases' specs."""
    import json

    items = [{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
              "metadata": {"name": name, "namespace": "kube-system"}, "spec": spec} for name, spec in specs.items()]  # fmt: skip
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


NOW = 1796410200.0  # 2026-12-04T18:50:00Z
LEASES = [
    # (case, the Leases' specs, {lease: (master, renewed_s_ago, expired)} or None)
    ("both held", {
        "kube-controller-manager": {"holderIdentity": "master2_0f1e", "leaseDurationSeconds": 15,
                                    "renewTime": "2026-12-04T18:49:58.500000Z", "leaseTransitions": 2},
        "kube-scheduler": {"holderIdentity": "master1_aa", "leaseDurationSeconds": 15,
                           "renewTime": "2026-12-04T18:49:59Z"}},
     {"kube-controller-manager": ("master2", 1.5, False), "kube-scheduler": ("master1", 1.0, False)}),
    ("not renewed within its duration: no leader", {
        "kube-controller-manager": {"holderIdentity": "master2_0f1e", "leaseDurationSeconds": 15,
                                    "renewTime": "2026-12-04T18:49:40.000000Z"}},
     {"kube-controller-manager": ("master2", 20.0, True), "kube-scheduler": None}),
    ("a holder whose hostname is no master, and one released", {
        "kube-controller-manager": {"holderIdentity": "box-7_1234", "leaseDurationSeconds": 15,
                                    "renewTime": "2026-12-04T18:49:59.000000Z"},
        "kube-scheduler": {"holderIdentity": "", "leaseDurationSeconds": 15}},
     {"kube-controller-manager": (None, 1.0, False), "kube-scheduler": (None, None, True)}),
]  # fmt: skip


@pytest.mark.parametrize("case, specs, want", LEASES, ids=[c[0] for c in LEASES])
def test_parse_leases(case, specs, want):
    got = module.parse_leases(leases_json(**specs, other={"holderIdentity": "x"}), ["master1", "master2"], NOW)
    assert set(got) == {"kube-controller-manager", "kube-scheduler"}  # the leader Leases only
    for lease, expected in want.items():
        if expected is None:
            assert got[lease] is None
            continue
        row = got[lease]
        assert (row["master"], row["renewed_s_ago"], row["expired"]) == expected
        assert row["holder"] == (specs[lease]["holderIdentity"] or None)
        assert row["duration_s"] == 15
    assert got["kube-controller-manager"]["transitions"] == specs["kube-controller-manager"].get("leaseTransitions", 0)


def test_leader_leases_asks_the_real_kubectl_with_admin_conf(monkeypatch):
    calls = []

    def run_all(cmd, **kwargs):
        calls.append(cmd)
        return {"retcode": 0, "stdout": leases_json(), "stderr": ""}

    monkeypatch.setitem(module.__salt__, "cmd.run_all", run_all)
    assert module.leader_leases(timeout=3) == {"kube-controller-manager": None, "kube-scheduler": None}
    assert calls == [["/usr/local/bin/kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "--request-timeout=3s",
                      "get", "leases", "-n", "kube-system", "-o", "json"]]  # fmt: skip
    monkeypatch.setitem(
        module.__salt__,
        "cmd.run_all",
        lambda cmd, **kw: {"retcode": 1, "stdout": "", "stderr": "Unable to connect to the server: EOF"},
    )
    assert module.leader_leases() == {"error": "Unable to connect to the server: EOF"}


SIX = ["master1", "master2", "master3", "node1", "node2", "node3"]
# (case, the API's nodes, lines (of node1 and beyond), a problem)
NODE_ROWS = [
    ("every node Ready", CP_NODES, ["  node1: Ready, roles worker, kubelet v1.30.8, heartbeat 2.5 s ago"], False),
    ("a silent kubelet", {"from": "master1", "nodes": {**CP_NODES["nodes"], "node1": {
        **NODE, "ready": "Unknown", "reason": "NodeStatusUnknown", "heartbeat_s_ago": 40.2}}},
     ["  node1: NOT READY (no heartbeat) (NodeStatusUnknown), roles worker, kubelet v1.30.8, heartbeat 40.2 s ago"],
     True),
    ("a runtime down", {"from": "master1", "nodes": {**CP_NODES["nodes"], "node1": {
        **NODE, "ready": "False", "reason": "KubeletNotReady"}}},
     ["  node1: NOT READY (KubeletNotReady), roles worker, kubelet v1.30.8, heartbeat 2.5 s ago"], True),
    ("never registered", {"from": "master1", "nodes": {k: v for k, v in CP_NODES["nodes"].items() if k != "node1"}},
     ["  node1: NOT IN THE API (its kubelet has not registered it)"], True),
    ("a former node still in the API", {"from": "master1", "nodes": {**CP_NODES["nodes"], "node9": NODE}},
     ["  node1: Ready, roles worker, kubelet v1.30.8, heartbeat 2.5 s ago",
      "  node2: Ready, roles worker, kubelet v1.30.8, heartbeat 2.5 s ago",
      "  node3: Ready, roles worker, kubelet v1.30.8, heartbeat 2.5 s ago",
      "  node9: Ready, roles worker, kubelet v1.30.8, heartbeat 2.5 s ago  <-- not in the pillar"], False),
    ("kubectl failed on every master", {"error": "kubectl on master3: EOF"}, None, True),
]  # fmt: skip


@pytest.mark.parametrize("case, view, lines, problem", NODE_ROWS, ids=[r[0] for r in NODE_ROWS])
def test_node_rows(case, view, lines, problem):
    got, bad = runner.node_rows(SIX, view)
    assert bad == problem
    if lines is None:
        assert got == [f"  nodes: unknown ({view['error']})"]
    else:
        assert got[3 : 3 + len(lines)] == lines
        assert got[0] == "  master1: Ready, roles control-plane, kubelet v1.30.8, heartbeat 2.5 s ago"


def test_status_is_unhealthy_with_a_node_not_ready(fleet, monkeypatch, context):
    monkeypatch.setattr(runner, "_ping", lambda hosts, timeout: {h: True for h in hosts})
    down = {
        "from": "master1",
        "nodes": {**CP_NODES["nodes"], "node2": {**NODE, "ready": "False", "reason": "KubeletNotReady"}},
    }
    monkeypatch.setattr(runner, "_control_plane_view", lambda masters, timeout: (CP_VIEW, CP_READY, CP_LEASES, down))
    out = runner.status(output="data")
    assert (out["healthy"], out["retcode"]) == (False, 1)
    table = runner.status()
    assert "nodes (as the API sees them):" in table and "  node2: NOT READY (KubeletNotReady), roles worker" in table


def test_parse_nodes_reads_kubectl_s_json():
    nodes = json.dumps({"items": [
        {"metadata": {"name": "node1", "labels": {"node-role.kubernetes.io/worker": "", "x": "y"}},
         "status": {"nodeInfo": {"kubeletVersion": "v1.30.8"}, "conditions": [
             {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": "2026-12-07T12:00:00Z"}]}},
        {"metadata": {"name": "node2"}, "status": {}},
    ]})  # fmt: skip
    leases = json.dumps(
        {"items": [{"metadata": {"name": "node1"}, "spec": {"renewTime": "2026-12-07T12:00:09.500000Z"}}]}
    )
    now = calendar.timegm((2026, 12, 7, 12, 0, 10, 0, 0, 0))
    assert module.parse_nodes(nodes, leases, now) == {
        "node1": {"ready": "True", "reason": "KubeletReady", "roles": ["worker"], "kubelet": "v1.30.8",
                  "heartbeat_s_ago": 0.5},
        "node2": {"ready": None, "reason": None, "roles": [], "kubelet": None, "heartbeat_s_ago": None},
    }  # fmt: skip
