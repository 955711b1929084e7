"""ksha/model.py: every derived fact, table-driven over pillar variants of the seed's example."""

import copy

import pytest
from salt.matchers import glob_match

from ksha import inventory, model, network
from tests.conftest import edited


def variant(example, **edits):
    """The example pillar with `edits` ({"loadbalancer:mode": "keepalived", ...}) applied, valid."""
    ksha = edited(example, **edits)
    assert not inventory.has_errors(inventory.validate(ksha)), inventory.validate(ksha)
    return ksha


KEEPALIVED = {"loadbalancer:mode": "keepalived", "loadbalancer:address": "192.168.0.100"}
ALL = ["master1", "master2", "master3", "node1", "node2", "node3"]

# (case, pillar edits, expected roles->hosts / facts)
LB_CASES = [
    (
        "external: nobody runs an LB, everyone checks it and is cleaned",
        {},
        {"hosts": [], "clean": ALL, "external_check": ALL, "priority": {}},
    ),
    (
        "keepalived: the masters by default, priorities in order",
        KEEPALIVED,
        {
            "hosts": ["master1", "master2", "master3"],
            "clean": ["node1", "node2", "node3"],
            "external_check": [],
            "priority": {"master1": 200, "master2": 190, "master3": 180},
        },
    ),
    (
        "keepalived on named LB hosts",
        {**KEEPALIVED, "loadbalancer:hosts": ["node2", "node1"]},
        {
            "hosts": ["node2", "node1"],
            "clean": ["master1", "master2", "master3", "node3"],
            "external_check": [],
            "priority": {"node2": 200, "node1": 190},
        },
    ),
]


@pytest.mark.parametrize("case, edits, expected", LB_CASES, ids=[c[0] for c in LB_CASES])
def test_loadbalancer_roles(example_ksha, case, edits, expected):
    lb = model.build(variant(example_ksha, **edits))["loadbalancer"]
    assert {key: lb[key] for key in expected} == expected


def test_lb_peers_backends_and_checks(example_ksha):
    m = model.build(variant(example_ksha, **KEEPALIVED, **{"loadbalancer:haproxy": {"check_inter_ms": 400}}))
    lb = m["loadbalancer"]
    assert lb["peers"]["master2"] == ["192.168.0.1", "192.168.0.3"]
    assert lb["backends"][0] == {"name": "master1", "ip": "192.168.0.1", "port": 6443}
    assert [b["name"] for b in lb["console_backends"]] == ALL
    assert lb["console_backends"][5]["port"] == 30880
    assert lb["check"] == {"inter": 400, "fastinter": 200, "downinter": 800, "fall": 2, "rise": 2}


API_CASES = [
    ("external LB", {}, ("lb.kubesphere.local", "192.168.0.253", 6443)),
    (
        "no LB, one master: the domain points at it",
        {
            "loadbalancer": {"mode": "none"},
            "groups": {"kube-master": ["master2"], "kube-node": ["node1"], "etcd": ["master2"]},
        },
        ("lb.kubesphere.local", "192.168.0.2", 6443),
    ),
    (
        "own domain and port",
        {"loadbalancer:domain": "api.example.org", "loadbalancer:port": 8443},
        ("api.example.org", "192.168.0.253", 8443),
    ),
]


@pytest.mark.parametrize("case, edits, expected", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_endpoint_and_hosts_file(example_ksha, case, edits, expected):
    m = model.build(variant(example_ksha, **edits))
    api = m["api"]
    assert (api["domain"], api["address"], api["port"]) == expected
    assert api["url"] == f"https://{expected[0]}:{expected[2]}"
    assert m["hosts_file"][-1] == [expected[1], expected[0]]
    assert m["hosts_file"][0] == ["192.168.0.1", "master1"]


ETCD_CASES = [
    ("CA on the first member by default", {}, "master1"),
    ("CA host named", {"etcd:pki:ca_host": "master3"}, "master3"),
]


@pytest.mark.parametrize("case, edits, ca_host", ETCD_CASES, ids=[c[0] for c in ETCD_CASES])
def test_etcd_ca_host_and_roles(example_ksha, case, edits, ca_host):
    m = model.build(variant(example_ksha, **edits))
    assert m["etcd"]["ca_host"] == ca_host
    assert [h["name"] for h in m["hosts"] if "etcd-ca" in h["roles"]] == [ca_host]
    assert "ksha.etcd.ca" in model.host(m, ca_host)["states"]


def test_etcd_urls_and_initial_cluster(example_ksha):
    etcd = model.build(variant(example_ksha, **{"etcd:client_port": 12379}))["etcd"]
    assert etcd["client_urls"]["master2"] == "https://192.168.0.2:12379"
    assert etcd["peer_urls"]["master2"] == "https://192.168.0.2:2380"
    assert etcd["initial_cluster"] == (
        "master1=https://192.168.0.1:2380,master2=https://192.168.0.2:2380,master3=https://192.168.0.3:2380"
    )
    assert etcd["local_client_url"] == "https://127.0.0.1:12379"
    assert etcd["token"] == "ksha-kubesphere"
    assert etcd["others"] == ["node1", "node2", "node3"]


def test_etcd_ipv6_urls_are_bracketed(example_ksha):
    ksha = copy.deepcopy(example_ksha)
    for index, host in enumerate(ksha["hosts"]):
        host["ip"] = f"fd00::{index + 1}"
    ksha["loadbalancer"]["address"] = "fd00::fd"
    etcd = model.build(ksha)["etcd"]
    assert etcd["client_urls"]["master1"] == "https://[fd00::1]:2379"


def test_etcd_on_a_worker_and_a_master_outside_etcd(example_ksha):
    ksha = variant(example_ksha, **{"groups:etcd": ["master1", "master2", "node1"]})
    m = model.build(ksha)
    assert m["etcd"]["pki_hosts"] == ["master1", "master2", "node1", "master3"]
    certs = {h["name"]: [c["id"] for c in h["certificates"]["etcd"]] for h in m["hosts"]}
    assert certs["node1"] == ["member-server", "member-peer", "admin-client"]
    assert certs["master3"] == ["apiserver-client"]
    assert certs["node2"] == []
    assert model.host(m, "master3")["states"] == [
        "ksha.common",
        "ksha.loadbalancer.clean",
        "ksha.loadbalancer.external",
        "ksha.etcd.pki",
        "ksha.etcd.clean",
        "ksha.kubernetes.install",
        "ksha.kubernetes.pki",
        "ksha.kubernetes.service_account",
        "ksha.kubernetes.service",
        "ksha.containerd",
        "ksha.node",
    ]


def test_member_certificates_carry_the_hosts_names(example_ksha):
    m = model.build(example_ksha)
    server = model.host(m, "master2")["certificates"]["etcd"][0]
    assert server == {
        "id": "member-server",
        "path": "/etc/etcd/pki/server",
        "policy": "ksha_etcd_server__master2",
        "cn": "master2",
        "sans": "DNS:master2, DNS:localhost, IP:192.168.0.2, IP:127.0.0.1",
        "user": "etcd",
        "after_install": True,
    }
    client = model.host(m, "master2")["certificates"]["etcd"][2]
    assert (client["id"], client["user"], client["after_install"]) == ("admin-client", "root", False)
    assert client["policy"] == "ksha_etcd_client__master2"
    # each CA's certificate is fetched with a policy of that CA for this host
    assert model.host(m, "master2")["ca_policies"] == {
        "etcd": "ksha_etcd_client__master2",
        "kubernetes": "ksha_kube_apiserver__master2",
        "front-proxy": "ksha_kube_front_proxy_client__master2",
    }
    # a node that is no master fetches the cluster CA with its kubelet's policy
    assert model.host(m, "node1")["ca_policies"] == {"kubernetes": "ksha_kube_kubelet_client__node1"}


def test_signing_policies_follow_the_groups(example_ksha):
    ksha = variant(example_ksha, **{"groups:etcd": ["master1", "master2", "node1"], "etcd:pki:days_valid": 90})
    policies = model.build(ksha)["signing_policies"]["etcd"]
    # one policy per minion that may ask, matching its ID alone (a local glob on the CA host)
    assert {name: p["minions"] for name, p in policies.items()} == {
        **{f"ksha_etcd_{kind}__{m}": m for kind in ("server", "peer") for m in ("master1", "master2", "node1")},
        **{f"ksha_etcd_client__{m}": m for m in ("master1", "master2", "node1", "master3")},
    }
    assert {p["extendedKeyUsage"] for n, p in policies.items() if n.startswith("ksha_etcd_client")} == {"clientAuth"}
    assert {p["days_valid"] for p in policies.values()} == {90}


@pytest.mark.parametrize(
    "minion, glob",
    [("master1", "master1"), ("web[1]", "web[[]1]"), ("db*", "db[*]"), ("a?.example", "a[?].example")],
)
def test_a_policy_matches_its_minion_id_alone(example_ksha, minion, glob):
    policy = model.leaf_policy(minion, {"key": "k", "cert": "c"}, "clientAuth", 10)
    assert policy["minions"] == glob
    # what x509_v2 does with it on the CA host (no "@": match.glob, Salt's glob matcher)
    assert glob_match.match(glob, opts={"id": "ca"}, minion_id=minion)
    assert not glob_match.match(glob, opts={"id": "ca"}, minion_id=minion + "1")
    assert not glob_match.match(glob, opts={"id": "ca"}, minion_id="x" + minion)


def test_for_minion_publishes_me_and_the_policies_to_the_ca_host_only(example_ksha):
    m = model.build(variant(example_ksha, **KEEPALIVED))
    grains = {"ip4_interfaces": {"lo": ["127.0.0.1"], "host0": ["192.168.0.1"]}}
    on_ca = model.for_minion(m, "master1", grains)
    assert on_ca["ksha_model"]["me"]["interface"] == "host0"
    assert on_ca["ksha_model"]["me"]["lb_priority"] == 200
    assert on_ca["ksha_model"]["me"]["lb_peers"] == ["192.168.0.2", "192.168.0.3"]
    # master1 holds both CAs by default: both CAs' policies
    assert {p.split("__")[0] for p in on_ca["x509_signing_policies"]} == set(model.ETCD_POLICIES) | set(
        model.KUBE_POLICIES
    ) | set(model.NODE_POLICIES)
    other = model.for_minion(m, "master2", {})
    assert "x509_signing_policies" not in other
    assert other["ksha_model"]["me"]["interface"] is None
    # the network's objects reach the host that applies them (the first master) alone
    assert on_ca["ksha_model"]["me"]["network_objects"] == m["network"]["objects"] != []
    assert other["ksha_model"]["me"]["network_objects"] == []
    published = {k: v for k, v in m["network"].items() if k != "objects"}
    assert on_ca["ksha_model"]["network"] == other["ksha_model"]["network"] == published
    assert published["refs"] == [network.ref(o) for o in m["network"]["objects"]]
    assert model.for_minion(m, "stranger", grains) == {"ksha_model": {**m, "network": published, "me": {}}}


def test_each_ca_host_gets_its_own_cas_policies(example_ksha):
    m = model.build(variant(example_ksha, **{"kubernetes:pki:ca_host": "master2"}))
    assert {p.split("__")[0] for p in model.for_minion(m, "master1")["x509_signing_policies"]} == set(
        model.ETCD_POLICIES
    )
    on_kube_ca = model.for_minion(m, "master2")
    assert set(on_kube_ca["x509_signing_policies"]) == {
        model.policy_for(p, m) for p in model.KUBE_POLICIES for m in ("master1", "master2", "master3")
    } | {model.policy_for(p, n) for p in model.NODE_POLICIES for n in ALL}
    assert "kubernetes-ca" in on_kube_ca["ksha_model"]["me"]["roles"]
    assert on_kube_ca["ksha_model"]["me"]["states"][-7:] == [
        "ksha.kubernetes.ca",
        "ksha.kubernetes.install",
        "ksha.kubernetes.pki",
        "ksha.kubernetes.service_account",
        "ksha.kubernetes.service",
        "ksha.containerd",
        "ksha.node",
    ]


def test_kubeconfigs_reference_the_certificates_the_model_issues(example_ksha):
    m = model.build(variant(example_ksha, **KEEPALIVED))
    me = model.host(m, "master2")
    issued = {c["path"] + ".crt" for c in me["certificates"]["kubernetes"]}
    for name, entry in me["kubeconfigs"].items():
        content = entry["content"]
        [user] = content["users"]
        assert user["user"]["client-certificate"] in issued, name
        [cluster] = content["clusters"]
        assert cluster["cluster"]["certificate-authority"] == m["kubernetes"]["cas"]["kubernetes"]["installed"]
        assert content["current-context"] == content["contexts"][0]["name"]
    assert me["kubeconfigs"]["admin"]["content"]["clusters"][0]["cluster"]["server"] == m["api"]["url"]


def test_pillar_interface_wins_over_grains(example_ksha):
    m = model.build(variant(example_ksha, **KEEPALIVED, **{"loadbalancer:keepalived": {"interface": "eth1"}}))
    assert (
        model.for_minion(m, "master1", {"ip4_interfaces": {"host0": ["192.168.0.1"]}})["ksha_model"]["me"]["interface"]
        == "eth1"
    )


SETTINGS_CASES = [
    ("defaults", None, {}, []),
    ("Debian packages", "Debian", {}, ["ca-certificates", "iproute2", "conntrack", "socat", "ipset"]),
    ("RedHat packages", "RedHat", {}, ["ca-certificates", "iproute", "conntrack-tools", "socat", "ipset"]),
    ("the pillar wins over the os_family", "Debian", {"common": {"pkgs": ["x"]}}, ["x"]),
]


@pytest.mark.parametrize("case, family, over, pkgs", SETTINGS_CASES, ids=[c[0] for c in SETTINGS_CASES])
def test_settings_merge_defaults_os_family_pillar(case, family, over, pkgs):
    conf = model.settings(over, family)
    assert conf["common"]["pkgs"] == pkgs
    assert conf["etcd"]["client_port"] == 2379  # defaults.yaml


def test_states_follow_phase_order_once_each():
    assert model.states(["etcd", "all", "kube-master", "etcd-ca", "kubernetes-ca"]) == [
        "ksha.common",
        "ksha.etcd.ca",
        "ksha.etcd.pki",
        "ksha.etcd",
        "ksha.kubernetes.ca",
        "ksha.kubernetes.install",
        "ksha.kubernetes.pki",
        "ksha.kubernetes.service_account",
        "ksha.kubernetes.service",
    ]
