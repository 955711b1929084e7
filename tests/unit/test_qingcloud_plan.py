"""ksha/qingcloud.py: the load balancers ksha wants in qingcloud mode, and the calls that get
there from what QingCloud describes (table-driven; no I/O)."""

import copy

import pytest

from ksha import qingcloud

IP = {"master1": "10.0.0.11", "master2": "10.0.0.12", "master3": "10.0.0.13", "node1": "10.0.0.21"}
GROUPS = {"kube-master": ["master1", "master2", "master3"], "k8s-cluster": ["master1", "master2", "master3", "node1"]}


def conf(**qc):
    settings = {
        "zone": "pek3a", "vxnet": "vxnet-k8s", "eip": None, "security_group": "sg-k8s", "loadbalancer_type": 0,
        "balance_mode": "roundrobin", "healthy_check_option": "10|5|2|5", "console_check": "tcp", "name_prefix": None,
        "rule_priority": 1,
    }  # fmt: skip
    settings.update(qc)
    return {
        "cluster_name": "kubesphere",
        "hosts": [{"name": h, "ip": ip} for h, ip in IP.items()],
        "loadbalancer": {"address": "10.0.0.100", "port": 6443, "console": {"port": 30880}, "qingcloud": settings},
        "kubernetes": {"apiserver_port": 6443},
        "kubesphere": {"console_port": 30880},
    }


INSTANCES = {"10.0.0.11": "i-m1", "10.0.0.12": "i-m2", "10.0.0.13": "i-m3", "10.0.0.21": "i-n1"}


def internal(**qc):
    lbs, missing = qingcloud.with_instances(qingcloud.wanted(conf(**qc), IP, GROUPS), INSTANCES)
    assert missing == []
    return lbs[0]


def test_the_internal_lb_forwards_the_api_port_to_every_master_the_external_the_console_to_every_node():
    (only,) = qingcloud.wanted(conf(), IP, GROUPS)
    assert (only["name"], only["vxnet"], only["private_ip"], only["eips"]) == (
        "ksha-kubesphere-apiserver", "vxnet-k8s", "10.0.0.100", [])  # fmt: skip
    (api,) = only["listeners"]
    assert (api["listener_port"], api["listener_protocol"], api["balance_mode"]) == (6443, "tcp", "roundrobin")
    assert [(b["host"], b["port"]) for b in api["backends"]] == [
        ("master1", 6443),
        ("master2", 6443),
        ("master3", 6443),
    ]
    internal_lb, external = qingcloud.wanted(conf(eip="eip-console", name_prefix="prod"), IP, GROUPS)
    assert internal_lb["name"] == "prod-apiserver"
    assert (external["name"], external["eips"], external["vxnet"]) == ("prod-console", ["eip-console"], None)
    (console,) = external["listeners"]
    assert (console["listener_port"], console["listener_protocol"]) == (30880, "http")
    assert [b["host"] for b in console["backends"]] == GROUPS["k8s-cluster"]


def test_instances_come_from_the_pillar_else_from_the_hosts_ips_and_a_host_found_neither_way_is_named():
    c = conf()
    c["hosts"][0]["qingcloud_instance_id"] = "i-pillar"
    lbs = qingcloud.wanted(c, IP, GROUPS)
    described = [
        {"instance_id": "i-m2", "vxnets": [{"vxnet_id": "vxnet-k8s", "private_ip": "10.0.0.12"}]},
        # another VxNet (a VPC) reusing master3's address: not master3
        {"instance_id": "i-elsewhere", "vxnets": [{"vxnet_id": "vxnet-other", "private_ip": "10.0.0.13"}]},
    ]
    by_ip, ambiguous = qingcloud.instances_by_ip(described, "vxnet-k8s")
    assert ambiguous == {}
    filled, missing = qingcloud.with_instances(lbs, by_ip)
    assert [b["resource_id"] for b in filled[0]["listeners"][0]["backends"]] == ["i-pillar", "i-m2", None]
    assert missing == ["master3"]
    twice = described + [{"instance_id": "i-clone", "vxnets": [{"vxnet_id": "vxnet-k8s", "private_ip": "10.0.0.12"}]}]
    assert qingcloud.instances_by_ip(twice, "vxnet-k8s") == ({}, {"10.0.0.12": ["i-m2", "i-clone"]})


def described(lb, *, applied=1, vxnet="vxnet-k8s", ip="10.0.0.100", eips=()):
    return {"loadbalancer_id": "lb-1", "loadbalancer_name": lb["name"], "status": "active", "is_applied": applied,
            "vxnet_id": vxnet or "", "private_ips": [ip] if ip else [],
            "eips": [{"eip_id": e} for e in eips]}  # fmt: skip


def listener_of(lb, backends=("i-m1", "i-m2", "i-m3"), **changed):
    want = lb["listeners"][0]
    found = {k: v for k, v in want.items() if k != "backends"} | {"loadbalancer_listener_id": "lbl-1"} | changed
    found["backends"] = [{"loadbalancer_backend_id": f"lbb-{r}", "resource_id": r, "port": 6443} for r in backends]
    return found


LB = internal()


@pytest.mark.parametrize(
    ("case", "found", "listeners", "expect", "calls"),
    [
        ("nothing there: created", None, [], {"create": {"loadbalancer_name": "ksha-kubesphere-apiserver",
         "loadbalancer_type": 0, "vxnet": "vxnet-k8s", "private_ip": "10.0.0.100", "security_group": "sg-k8s"}},
         ["CreateLoadBalancer"]),
        ("created, no listener yet", described(LB), [], {"add_listeners": [qingcloud.listener_params(LB["listeners"][0])],
         "add_backends": [(6443, [{"resource_id": r, "port": 6443, "weight": 1, "loadbalancer_backend_name": h}
                                  for r, h in (("i-m1", "master1"), ("i-m2", "master2"), ("i-m3", "master3"))])],
         "update": True}, ["AddLoadBalancerListeners", "AddLoadBalancerBackends", "UpdateLoadBalancers"]),
        ("as wanted: nothing", described(LB), [listener_of(LB)], {}, []),
        ("as wanted but never applied", described(LB, applied=0), [listener_of(LB)], {"update": True},
         ["UpdateLoadBalancers"]),
        ("a master added", described(LB), [listener_of(LB, backends=("i-m1", "i-m2"))],
         {"add_backends": [(6443, [{"resource_id": "i-m3", "port": 6443, "weight": 1, "loadbalancer_backend_name": "master3"}])],
          "update": True}, ["AddLoadBalancerBackends", "UpdateLoadBalancers"]),
        ("a master gone", described(LB), [listener_of(LB, backends=("i-m1", "i-m2", "i-m3", "i-old"))],
         {"delete_backends": ["lbb-i-old"], "update": True}, ["DeleteLoadBalancerBackends", "UpdateLoadBalancers"]),
        ("a backend twice", described(LB), [listener_of(LB) | {"backends": listener_of(LB)["backends"] + [
            {"loadbalancer_backend_id": "lbb-again", "resource_id": "i-m1", "port": 6443}]}],
         {"delete_backends": ["lbb-again"], "update": True}, ["DeleteLoadBalancerBackends", "UpdateLoadBalancers"]),
        ("another balance mode: modified in place", described(LB), [listener_of(LB, balance_mode="source")],
         {"modify_listeners": [("lbl-1", {"balance_mode": "roundrobin"})], "update": True},
         ["ModifyLoadBalancerListenerAttributes", "UpdateLoadBalancers"]),
        ("another protocol on the port: removed and added again", described(LB),
         [listener_of(LB, listener_protocol="http", backend_protocol="http")],
         {"delete_listeners": ["lbl-1"], "add_listeners": [qingcloud.listener_params(LB["listeners"][0])],
          "add_backends": [(6443, [qingcloud.backend_params(b) for b in LB["listeners"][0]["backends"]])], "update": True},
         ["DeleteLoadBalancerListeners", "AddLoadBalancerListeners", "AddLoadBalancerBackends", "UpdateLoadBalancers"]),
        ("a listener on another port: removed", described(LB),
         [listener_of(LB), listener_of(LB, listener_port=8443, loadbalancer_listener_id="lbl-2")],
         {"delete_listeners": ["lbl-2"], "update": True}, ["DeleteLoadBalancerListeners", "UpdateLoadBalancers"]),
        ("in another vxnet: refused", described(LB, vxnet="vxnet-other"), [listener_of(LB)],
         {"refuse": "ksha:loadbalancer:qingcloud:vxnet"}, []),
        ("at another address: refused", described(LB, ip="10.0.0.99"), [listener_of(LB)],
         {"refuse": "ksha:loadbalancer:address"}, []),
        ("a public one of the internal one's name: refused", described(LB, vxnet=None, ip=None, eips=["eip-9"]),
         [], {"refuse": "ksha:loadbalancer:qingcloud:eip"}, []),
        ("ports as strings: the same listener and backends", described(LB),
         [listener_of(LB, listener_port="6443") | {"backends": [
             {"loadbalancer_backend_id": f"lbb-{r}", "resource_id": r, "port": "6443"} for r in ("i-m1", "i-m2", "i-m3")]}],
         {}, []),
    ],
)  # fmt: skip
def test_plan(case, found, listeners, expect, calls):
    before = copy.deepcopy((found, listeners))
    p = qingcloud.plan(LB, found, listeners)
    empty = {"refuse": None, "create": None, "delete_listeners": [], "modify_listeners": [], "add_listeners": [],
             "delete_backends": [], "add_backends": [], "update": False}  # fmt: skip
    if "refuse" in expect:
        assert expect["refuse"] in p["refuse"] and "run again" in p["refuse"], p["refuse"]
        expect = {**expect, "refuse": p["refuse"]}
    assert p == {**empty, **expect}, case
    assert qingcloud.calls(p) == calls, case
    assert (found, listeners) == before  # what the API said is left as it was


def test_the_external_lb_is_created_with_its_eip_and_refused_on_another():
    _, external = qingcloud.with_instances(qingcloud.wanted(conf(eip="eip-1"), IP, GROUPS), INSTANCES)[0]
    assert qingcloud.plan(external, None, [])["create"] == {
        "loadbalancer_name": "ksha-kubesphere-console", "loadbalancer_type": 0, "eips": ["eip-1"],
        "security_group": "sg-k8s"}  # fmt: skip
    refused = qingcloud.plan(external, described(external, vxnet=None, ip=None, eips=["eip-2"]), [])
    assert "ksha:loadbalancer:qingcloud:eip" in refused["refuse"] and "eip-2" in refused["refuse"]


def rule(name, port, rule_id=None, **changed):
    out = {"security_group_rule_name": name, "protocol": "tcp", "priority": 1, "action": "accept", "direction": 0,
           "val1": str(port), "val2": str(port), "val3": ""} | changed  # fmt: skip
    return out | ({"security_group_rule_id": rule_id} if rule_id else {})


def test_the_rules_open_the_api_port_and_with_an_eip_the_console_port_in_ksha_s_group_only():
    assert qingcloud.wanted_rules(conf(security_group=None, rule_priority=1)) == []
    rules = qingcloud.wanted_rules(conf(eip="eip-1", rule_priority=5))
    assert [(r["security_group_rule_name"], r["val1"], r["priority"]) for r in rules] == [
        ("ksha-kubesphere-apiserver", "6443", 5), ("ksha-kubesphere-console", "30880", 5)]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "found", "is_applied", "expect"),
    [
        ("none there", [], 1, {"add": ["api", "console"], "delete": [], "apply": True}),
        ("there, applied", [rule("ksha-x-apiserver", 6443, "r1"), rule("ksha-x-console", 30880, "r2")], 1,
         {"add": [], "delete": [], "apply": False}),
        ("there under the operator's names", [rule("ssh and api", 6443, "r1"), rule("web", 30880, "r2")], 1,
         {"add": [], "delete": [], "apply": False}),
        ("there, never applied", [rule("ksha-x-apiserver", 6443, "r1"), rule("ksha-x-console", 30880, "r2")], 0,
         {"add": [], "delete": [], "apply": True}),
        ("ksha's rule for a port no longer used", [rule("ksha-x-apiserver", 6443, "r1"), rule("ksha-x-console", 30880, "r2"),
         rule("ksha-x-apiserver", 8443, "r3")], 1, {"add": [], "delete": ["r3"], "apply": True}),
        ("the operator's rule for another port is left", [rule("ksha-x-apiserver", 6443, "r1"),
         rule("ksha-x-console", 30880, "r2"), rule("db", 5432, "r4")], 1, {"add": [], "delete": [], "apply": False}),
        ("a rule whose name only starts like ksha's is left", [rule("ksha-x-apiserver", 6443, "r1"),
         rule("ksha-x-console", 30880, "r2"), rule("ksha-x-eu-console", 8443, "r5")], 1,
         {"add": [], "delete": [], "apply": False}),
        ("a drop rule is not an accept", [rule("ksha-x-apiserver", 6443, "r1", action="drop"),
         rule("ksha-x-console", 30880, "r2")], 1, {"add": ["api"], "delete": ["r1"], "apply": True}),
    ],
)  # fmt: skip
def test_rules_plan(case, found, is_applied, expect):
    api_rule, console_rule = rule("ksha-x-apiserver", 6443), rule("ksha-x-console", 30880)
    p = qingcloud.rules_plan([api_rule, console_rule], found, is_applied, ["ksha-x-apiserver", "ksha-x-console"])
    names = {"api": api_rule, "console": console_rule}
    assert p == {**expect, "add": [names[n] for n in expect["add"]]}, case


@pytest.mark.parametrize(
    "mode, qc, expected",
    [
        ("qingcloud", {"eip": "eip-console"}, []),
        ("qingcloud", {}, ["ksha-kubesphere-console"]),  # no EIP: no console LB
        ("keepalived", {"eip": "eip-console"}, ["ksha-kubesphere-apiserver", "ksha-kubesphere-console"]),
        ("external", {"name_prefix": "prod"}, ["prod-apiserver", "prod-console"]),
        ("none", {}, ["ksha-kubesphere-apiserver", "ksha-kubesphere-console"]),
    ],
)
def test_unwanted_names_ksha_s_load_balancers_the_model_does_not_want(mode, qc, expected):
    c = conf(**qc)
    c["loadbalancer"]["mode"] = mode
    assert qingcloud.unwanted(c) == expected


DOOMED = {"loadbalancer_id": "lb-1", "loadbalancer_name": "ksha-kubesphere-apiserver"}
NAMES = ["ksha-kubesphere-apiserver", "ksha-kubesphere-console"]


@pytest.mark.parametrize(
    "listeners, refused",
    [
        ([], None),
        ([{"loadbalancer_listener_id": "lbl-1", "loadbalancer_listener_name": "ksha-kubesphere-apiserver"}], None),
        # a listener of another name, or none: someone else's; each named (by ID when it has no name)
        ([{"loadbalancer_listener_id": "lbl-1", "loadbalancer_listener_name": "ksha-kubesphere-apiserver"},
          {"loadbalancer_listener_id": "lbl-2", "loadbalancer_listener_name": "app"},
          {"loadbalancer_listener_id": "lbl-3", "loadbalancer_listener_name": ""}], "(app, lbl-3)"),
        # a prefix alone is not ksha's name
        ([{"loadbalancer_listener_id": "lbl-4", "loadbalancer_listener_name": "ksha-kubesphere-apiserver-2"}],
         "(ksha-kubesphere-apiserver-2)"),
    ],
)  # fmt: skip
def test_a_load_balancer_with_a_listener_of_another_name_is_not_deleted(listeners, refused):
    why = qingcloud.deletion_refusal(DOOMED, listeners, NAMES)
    if refused is None:
        assert why is None
    else:
        assert why.startswith("lb-1 (ksha-kubesphere-apiserver) is no longer wanted, but ksha does not delete it")
        assert f"listener(s) ksha did not make {refused}" in why


def test_what_the_absent_state_is_given_comes_from_the_model():
    c = conf(eip=None)
    c["loadbalancer"]["mode"] = "qingcloud"
    # in qingcloud mode without an EIP: the console's LB only; its rule goes with wanted_rules
    assert qingcloud.absent(c) == {"loadbalancers": ["ksha-kubesphere-console"], "security_group": "sg-k8s",
                                   "rule_names": [], "address": "10.0.0.100"}  # fmt: skip
    c["loadbalancer"]["mode"] = "keepalived"
    assert qingcloud.absent(c)["rule_names"] == ["ksha-kubesphere-apiserver", "ksha-kubesphere-console"]
    c["loadbalancer"]["qingcloud"]["security_group"] = None
    assert qingcloud.absent(c)["rule_names"] == []


def test_a_load_balancer_at_the_cluster_s_lb_address_is_not_deleted():
    found = {**DOOMED, "private_ips": ["10.0.0.100"], "eips": []}
    assert "is at ksha:loadbalancer:address (10.0.0.100)" in qingcloud.deletion_refusal(found, [], NAMES, "10.0.0.100")
    assert qingcloud.deletion_refusal(found, [], NAMES, "10.0.0.200") is None
    public = {**DOOMED, "private_ips": [], "eips": [{"eip_id": "eip-1", "eip_addr": "198.51.100.7"}]}
    assert qingcloud.deletion_refusal(public, [], NAMES, "198.51.100.7").startswith(
        "lb-1 (ksha-kubesphere-apiserver) is at"
    )


def _described(status="active", applied=1, backends=(("master1", "up"), ("master2", "down"))):
    return {
        "lb": {"loadbalancer_id": "lb-1", "status": status, "is_applied": applied, "private_ips": ["10.0.0.9"],
               "eips": []},
        "listeners": [{"listener_port": 6443, "listener_protocol": "tcp", "backends": [
            {"loadbalancer_backend_name": n, "resource_id": f"i-{n}", "status": s} for n, s in backends]}],
    }  # fmt: skip


# (case, found, the lines, a problem)
STATUS = [
    (
        "active and applied, a backend down: shown, no problem",
        {"ksha-k-apiserver": _described()},
        ["  ksha-k-apiserver lb-1 at 10.0.0.9: active, applied",
         "    listener 6443/tcp: master1 up, master2 down"],
        False,
    ),
    (
        "a change never applied",
        {"ksha-k-apiserver": _described(applied=0)},
        ["  ksha-k-apiserver lb-1 at 10.0.0.9: active, NOT APPLIED (a change never took effect)",
         "    listener 6443/tcp: master1 up, master2 down"],
        True,
    ),
    (
        "still being made",
        {"ksha-k-apiserver": _described(status="pending", backends=())},
        ["  ksha-k-apiserver lb-1 at 10.0.0.9: PENDING, applied", "    listener 6443/tcp: no backend"],
        True,
    ),
    ("missing", {"ksha-k-apiserver": None}, ["  ksha-k-apiserver: MISSING (orch.ksha makes it)"], True),
]  # fmt: skip


@pytest.mark.parametrize("case, found, lines, problem", STATUS, ids=[c[0] for c in STATUS])
def test_status_rows(case, found, lines, problem):
    assert qingcloud.status_rows(["ksha-k-apiserver"], found) == (lines, problem)
