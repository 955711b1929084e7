"""Phase 6's facts in the cluster model (ksha/model.py ``_nodes``), the containerd config.toml
rendered from them, the plan's node step and the validator's node keys: table-driven."""

import json
import tomllib

import jinja2
import pytest

from ksha import flags, inventory, model, plan
from tests.conftest import REPO, edited

ALL = ["master1", "master2", "master3", "node1", "node2", "node3"]
WORKERS = ["node1", "node2", "node3"]
CRI = "io.containerd.grpc.v1.cri"


def build(example, family=None, **edits):
    ksha = edited(example, **edits)
    assert not inventory.has_errors(inventory.validate(ksha)), inventory.validate(ksha)
    return model.build(ksha, family)


# (case, pillar edits, node hosts, workers)
NODE_HOSTS = [
    ("the seed: masters (tainted) and workers", {}, ALL, WORKERS),
    ("masters run no kubelet", {"nodes:masters_run_kubelet": False}, WORKERS, WORKERS),
    (
        "a master also in kube-node is a node whatever masters_run_kubelet says",
        {"nodes:masters_run_kubelet": False, "groups:kube-node": ["node1", "master2"]},
        ["master2", "node1"],
        ["node1"],
    ),
    (
        "a host only in etcd is no node",
        {"groups:etcd": ["master1", "master2", "node3"], "groups:kube-node": ["node1", "node2"]},
        ["master1", "master2", "master3", "node1", "node2"],
        ["node1", "node2"],
    ),
]


@pytest.mark.parametrize("case, edits, hosts, workers", NODE_HOSTS, ids=[c[0] for c in NODE_HOSTS])
def test_which_hosts_are_nodes(example_ksha, case, edits, hosts, workers):
    m = build(example_ksha, **edits)
    assert (m["nodes"]["hosts"], m["nodes"]["workers"]) == (hosts, workers)
    for h in m["hosts"]:
        assert ("node" in h["roles"]) == (h["name"] in hosts), h["name"]
        assert ("ksha.containerd" in h["states"]) == (h["name"] in hosts), h["name"]
        if h["name"] in hosts:
            tail = h["states"][h["states"].index("ksha.containerd") :]  # the last phase
            assert tail == ["ksha.containerd", "ksha.node"] + (
                ["ksha.node.roles", "ksha.network"] if h["name"] == "master1" else []
            )


@pytest.mark.parametrize(
    "names, size, expected",
    [
        (ALL, 10, [ALL]),
        (ALL, 6, [ALL]),
        (ALL, 4, [ALL[:4], ALL[4:]]),
        (ALL, 1, [[n] for n in ALL]),
        ([], 3, []),
    ],
)
def test_batches_keep_the_inventory_order(names, size, expected):
    assert model.batches(names, size) == expected


@pytest.mark.parametrize(
    "cidr, ip", [("10.233.0.0/18", "10.233.0.3"), ("10.96.0.0/12", "10.96.0.3"), ("fd00:10:96::/112", "fd00:10:96::3")]
)
def test_cluster_dns_is_the_third_address_of_the_service_range(cidr, ip):
    assert model.dns_service_ip(cidr) == ip


def test_the_model_s_cluster_dns_follows_the_service_range(example_ksha):
    assert build(example_ksha)["nodes"]["dns_ip"] == "10.233.0.3"
    assert build(example_ksha, **{"kubernetes:service_cidr": "10.96.0.0/12"})["nodes"]["dns_ip"] == "10.96.0.3"


SUMS = {}  # the example_ksha fixture has both checksums
LIVE = {"recorded": {}, "current": None, "ca_keys": []}


def test_plan_batches_the_node_step_only_when_there_is_more_than_one_batch(example_ksha):
    for size, batch in ((10, None), (6, None), (4, 4), (1, 1)):
        m = build(example_ksha, **{"nodes:batch": size, **SUMS})
        step = plan.build(m, LIVE)["steps"][-2]
        assert step["id"] == "ksha-phase-nodes-joined"
        assert step["target"] == ALL and step["sls"] == ["ksha.containerd", "ksha.node"]
        assert [a["batch"] for a in step["args"] if "batch" in a] == ([batch] if batch else [])
        # a batched step waits for each node's job (Salt's own window is 15 s)
        assert [a["timeout"] for a in step["args"] if "timeout" in a] == ([900] if batch else [])
    masters_only = build(example_ksha, **{"nodes:masters_run_kubelet": False, "groups:kube-node": [], **SUMS})
    assert masters_only["nodes"]["hosts"] == []
    ids = [s["id"] for s in plan.build(masters_only, LIVE)["steps"]]
    assert "ksha-phase-nodes-joined" not in ids and "ksha-phase-nodes-roles-labelled" not in ids


@pytest.mark.parametrize("until, refused", [(None, True), ("nodes", True), ("control-plane", False)])
def test_a_node_release_without_its_checksum_is_refused_at_preflight(example_ksha, until, refused):
    m = build(example_ksha, **{"kubernetes:node_archive:sha256": None})
    steps = plan.build(m, LIVE, until)["steps"]
    assert (steps[-1]["id"] == "ksha-preflight-kubernetes-node-release-checksum-set") == refused
    if refused:
        assert len(steps) == 2  # the validation, then the refusal: no host touched
        assert steps[-1]["why"].startswith("ksha:kubernetes:node_archive:sha256 is not set: ")
        assert "https://dl.k8s.io/v1.30.8/kubernetes-node-linux-amd64.tar.gz.sha256" in steps[-1]["why"]


def test_each_node_s_certificates_kubeconfigs_and_units(example_ksha):
    m = build(example_ksha, **SUMS)
    me = model.host(m, "node2")["node"]
    certs = {c["id"]: c for c in me["certificates"]}
    assert (certs["kubelet-client"]["cn"], certs["kubelet-client"]["o"]) == ("system:node:node2", "system:nodes")
    assert certs["kubelet-server"]["sans"] == "DNS:node2, IP:192.168.0.5"
    assert certs["kube-proxy-client"]["cn"] == "system:kube-proxy"
    # every kubeconfig through the LB domain, never a master's address (kubesphere #4066)
    for name, kubeconfig in me["kubeconfigs"].items():
        assert kubeconfig["content"]["clusters"][0]["cluster"]["server"] == "https://lb.kubesphere.local:6443", name
    assert me["kubeconfigs"]["kubelet"]["path"] == "/etc/kubernetes/kubelet.conf"
    assert me["kubeconfigs"]["kube-proxy"]["path"] == "/etc/kubernetes/proxy.conf"
    kubelet = me["configs"]["kubelet"]["content"]
    assert kubelet["clusterDNS"] == ["10.233.0.3"] and kubelet["cgroupDriver"] == "systemd"
    assert kubelet["authentication"]["x509"]["clientCAFile"] == "/etc/kubernetes/pki/ca.crt"
    assert kubelet["authentication"]["webhook"]["enabled"] and kubelet["authorization"]["mode"] == "Webhook"
    assert kubelet["rotateCertificates"] is False
    assert kubelet["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"
    proxy = me["configs"]["kube-proxy"]["content"]
    assert (proxy["mode"], proxy["clusterCIDR"]) == ("ipvs", "10.233.64.0/18")
    assert me["units"]["kubelet"]["exec_start"] == [
        "/usr/local/bin/kubelet", "--config=/var/lib/kubelet/config.yaml", "--hostname-override=node2",
        "--kubeconfig=/etc/kubernetes/kubelet.conf", "--node-ip=192.168.0.5",
    ]  # fmt: skip
    assert "/var/lib/kubelet/pki/kubelet-client.crt" in me["units"]["kubelet"]["watched"]
    assert model.host(m, "node2")["ca_policies"] == {"kubernetes": "ksha_kube_kubelet_client__node2"}
    assert model.host(m, "master1")["node"] is not None  # masters run a kubelet by default
    assert build(example_ksha, **{"nodes:masters_run_kubelet": False})["hosts"][0]["node"] is None


def test_every_flag_the_nodes_get_is_in_the_pinned_reference(example_ksha):
    m = build(example_ksha, **SUMS)
    for h in m["hosts"]:
        for component, given in h["node"]["flags"].items():
            assert set(given) <= flags.known(component), (h["name"], component)


def test_the_node_policies_fix_each_subject_to_the_node_s_own(example_ksha):
    policies = build(example_ksha, **SUMS)["signing_policies"]["kubernetes"]
    client = policies["ksha_kube_kubelet_client__node1"]
    assert (client["minions"], client["subject"], client["extendedKeyUsage"]) == (
        "node1", "CN=system:node:node1,O=system:nodes", "clientAuth")  # fmt: skip
    server = policies["ksha_kube_kubelet_server__node1"]
    assert (server["subject"], server["subjectAltName"], server["extendedKeyUsage"]) == (
        "CN=node1", "DNS:node1, IP:192.168.0.4", "serverAuth")  # fmt: skip
    assert policies["ksha_kube_proxy_client__node3"]["subject"] == "CN=system:kube-proxy"
    assert policies["ksha_kube_kubelet_client__master2"]["subject"] == "CN=system:node:master2,O=system:nodes"
    nodes = [p for name, p in policies.items() if name.split("__")[0] in model.NODE_POLICIES]
    assert len(nodes) == 3 * 6  # three policies for each of the six nodes
    assert all(p["signing_private_key"] == "/etc/ksha/kubernetes-ca/ca.key" for p in nodes)


# what a node may ask the CA host for (x509.sign_remote_certificate's kwargs), hostile or not
HOSTILE = [
    {"CN": "system:node:node1", "O": "system:nodes"},
    {"CN": "system:node:node1", "O": "system:masters"},
    {"CN": "kubernetes-admin", "O": "system:masters", "OU": "x"},
    {"subject": "CN=kubernetes-admin,O=system:masters"},
    {"subject": {"CN": "kubernetes-admin", "O": "system:masters"}},
    {"CN": "system:node:node1", "not_after": "2126-01-01 00:00:00", "days_valid": 36500},
    {"subjectAltName": "DNS:lb.kubesphere.local", "CN": "x"},
]


@pytest.mark.parametrize("policy", list(model.NODE_POLICIES))
@pytest.mark.parametrize("asked", HOSTILE)
def test_a_node_gets_its_own_subject_and_lifetime_whatever_it_asks(example_ksha, policy, asked):
    """Salt's own merge (x509_v2's sign_remote_certificate calls it on the CA host), then Salt's
    own subject builder: the certificate's subject, names and lifetime are the policy's."""
    from cryptography import x509 as cx509
    from salt.utils import x509 as sx509

    contents = build(example_ksha, **SUMS)["signing_policies"]["kubernetes"][f"{policy}__node1"]
    merged = sx509.merge_signing_policy({k: v for k, v in contents.items() if k != "minions"}, dict(asked))
    name = sx509._get_dn(merged.get("subject") or merged)  # noqa: SLF001 - what build_crt uses
    want = cx509.Name.from_rfc4514_string(contents["subject"])
    assert name == want, name.rfc4514_string()
    assert "O=system:masters" not in name.rfc4514_string()
    assert merged.get("not_after") is None and merged.get("not_before") is None
    assert merged["days_valid"] == contents["days_valid"] == 365
    if "subjectAltName" in contents:
        assert merged["subjectAltName"] == contents["subjectAltName"]


def render(ctd):
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(REPO / "salt" / "ksha" / "containerd" / "files")),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["json"] = json.dumps  # Salt's
    return env.get_template("config.toml.jinja").render(config=ctd["config"], marker=ctd["marker"])


# (case, family, pillar edits, what config.toml must hold: (path in the TOML, value))
CONFIGS = [
    (
        "Debian defaults",
        "Debian",
        {},
        [
            (("plugins", CRI, "containerd", "runtimes", "runc", "options", "SystemdCgroup"), True),
            (("plugins", CRI, "sandbox_image"), "registry.k8s.io/pause:3.9"),
            (("plugins", CRI, "containerd", "snapshotter"), "overlayfs"),
            (("plugins", CRI, "cni", "bin_dir"), "/usr/lib/cni"),
            (("grpc", "address"), "/run/containerd/containerd.sock"),
            (("plugins", CRI, "registry"), None),
        ],
    ),
    ("RedHat's CNI directory", "RedHat", {}, [(("plugins", CRI, "cni", "bin_dir"), "/usr/libexec/cni")]),
    (
        "cgroupfs",
        "Debian",
        {"containerd:cgroup_driver": "cgroupfs"},
        [(("plugins", CRI, "containerd", "runtimes", "runc", "options", "SystemdCgroup"), False)],
    ),
    (
        "the seed's mirrors and insecure registries",
        "Debian",
        {
            "containerd:registry_mirrors": ["https://mirror.example.com", "http://10.0.0.7:5000/v2"],
            "containerd:insecure_registries": ["10.0.0.5:5000", "registry.lan"],
        },
        [
            (
                ("plugins", CRI, "registry", "mirrors", "docker.io", "endpoint"),
                ["https://mirror.example.com", "http://10.0.0.7:5000/v2", "https://registry-1.docker.io"],
            ),
            (
                ("plugins", CRI, "registry", "mirrors", "10.0.0.5:5000", "endpoint"),
                ["http://10.0.0.5:5000", "https://10.0.0.5:5000"],
            ),
            (("plugins", CRI, "registry", "configs", "10.0.0.5:5000", "tls", "insecure_skip_verify"), True),
            (("plugins", CRI, "registry", "configs", "registry.lan", "tls", "insecure_skip_verify"), True),
        ],
    ),
]


def dig(tree, path):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


@pytest.mark.parametrize("case, family, edits, expected", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_config_toml(example_ksha, case, family, edits, expected):
    ctd = build(example_ksha, family, **edits)["nodes"]["containerd"]
    text = render(ctd)
    assert text.startswith(f"# {ctd['marker']}")
    parsed = tomllib.loads(text)
    assert parsed["version"] == 2
    for path, value in expected:
        assert dig(parsed, path) == value, path


@pytest.mark.parametrize(
    "family, pkgs",
    [
        ("Debian", ["containerd", "runc", "containernetworking-plugins"]),
        ("RedHat", ["containerd.io", "containernetworking-plugins"]),
    ],
)
def test_packages_per_os_family(example_ksha, family, pkgs):
    assert build(example_ksha, family)["nodes"]["containerd"]["pkgs"] == pkgs


# (case, pillar edits, the one finding)
FINDINGS = [
    ("batch 0", {"nodes:batch": 0}, "ERROR ksha:nodes:batch: 0 must be an integer from 1 to 100000"),
    (
        "a mirror without its scheme",
        {"containerd:registry_mirrors": ["mirror.example.com"]},
        "ERROR ksha:containerd:registry_mirrors:0: 'mirror.example.com' is not an http(s):// URL of a registry mirror",
    ),
    (
        "an insecure registry given as a URL",
        {"containerd:insecure_registries": ["http://10.0.0.5:5000"]},
        "ERROR ksha:containerd:insecure_registries:0: 'http://10.0.0.5:5000' is not a registry's host[:port] "
        "(e.g. 192.168.0.10:5000)",
    ),
    (
        "an insecure registry twice",
        {"containerd:insecure_registries": ["10.0.0.5:5000", "10.0.0.5:5000"]},
        "WARNING ksha:containerd:insecure_registries:1: 10.0.0.5:5000 is listed twice; remove the repeat",
    ),
    (
        "a cgroup driver containerd has not",
        {"containerd:cgroup_driver": "systemd-cgroup"},
        "ERROR ksha:containerd:cgroup_driver: 'systemd-cgroup' is not one of systemd, cgroupfs",
    ),
    (
        "a sandbox image with a blank in it",
        {"containerd:sandbox_image": "registry.k8s.io/pause 3.9"},
        "ERROR ksha:containerd:sandbox_image: 'registry.k8s.io/pause 3.9' is not an image reference "
        "(e.g. registry.k8s.io/pause:3.9)",
    ),
    (
        "a kubelet field ksha sets",
        {"kubernetes:kubelet:extra_config": {"clusterDNS": ["10.0.0.10"]}},
        "ERROR ksha:kubernetes:kubelet:extra_config:clusterDNS: clusterDNS is set by ksha from "
        "ksha:kubernetes:service_cidr (its third address): change that instead",
    ),
    (
        "a misspelt kube-proxy field",
        {"kubernetes:kube_proxy:extra_config": {"conntrak": {}}},
        "ERROR ksha:kubernetes:kube_proxy:extra_config:conntrak: 'conntrak' is not a KubeProxyConfiguration field "
        "of Kubernetes 1.30 (did you mean conntrack?); see " + flags.config_source("KubeProxyConfiguration"),
    ),
    (
        "nftables: alpha in 1.30, behind a feature gate",
        {"kubernetes:kube_proxy:mode": "nftables"},
        "ERROR ksha:kubernetes:kube_proxy:mode: 'nftables' is not one of ipvs, iptables",
    ),
    (
        "a proxy mode 1.30 has not",
        {"kubernetes:kube_proxy:mode": "userspace"},
        "ERROR ksha:kubernetes:kube_proxy:mode: 'userspace' is not one of ipvs, iptables",
    ),
    (
        "a relative config path",
        {"containerd:config_file": "etc/containerd/config.toml"},
        "ERROR ksha:containerd:config_file: 'etc/containerd/config.toml' must be an absolute path",
    ),
    (
        "no host would run a kubelet",
        {
            "nodes:masters_run_kubelet": False,
            "groups:kube-node": [],
            "hosts": [{"name": f"master{i}", "ip": f"192.168.0.{i}"} for i in (1, 2, 3)],
        },
        "WARNING ksha:groups:kube-node: is empty and ksha:nodes:masters_run_kubelet is false: no host runs a "
        "kubelet, so the cluster can run no pod; add workers to kube-node or set masters_run_kubelet: true",
    ),
]


@pytest.mark.parametrize("case, edits, finding", FINDINGS, ids=[c[0] for c in FINDINGS])
def test_node_keys_are_checked_and_named(example_ksha, case, edits, finding):
    found = [str(f) for f in inventory.validate(edited(example_ksha, **edits))]
    assert found == [finding]


TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
# (case, pillar edits, {node: (labels, taints)} of some nodes)
ROLES = [
    ("the seed: tainted control-plane masters, worker workers", {},
     {"master1": ({"node-role.kubernetes.io/control-plane": ""}, [TAINT]), "node1": ({"node-role.kubernetes.io/worker": ""}, [])}),
    ("a master in kube-node too: both labels, schedulable", {"groups:kube-node": ["master3", "node1", "node2", "node3"]},
     {"master3": ({"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": ""}, [])}),
]  # fmt: skip


@pytest.mark.parametrize("case, edits, expected", ROLES, ids=[c[0] for c in ROLES])
def test_role_labels_and_taints(example_ksha, case, edits, expected):
    m = build(example_ksha, **edits)
    assert m["nodes"]["roles_host"] == "master1"
    for node, (labels, taints) in expected.items():
        assert m["nodes"]["roles"][node] == {"labels": labels, "taints": taints}, node
    assert sorted(m["nodes"]["roles"]) == sorted(m["nodes"]["hosts"])


KUBELET_UNIT, CONFIG_TOML = "/etc/systemd/system/kubelet.service", "/etc/containerd/config.toml"
# a leaving host's steps: the API drains it, its kubelet stops, the API deletes its Node, its files go
LEAVE = ["leaving-drained", "leaving-kubelets-stopped", "leaving-deleted", "other-hosts-cleaned"]


def node_ids(steps):
    return [s["id"] for s in steps if s["id"].startswith("ksha-phase-nodes-")]


# (case, pillar edits, {host: its probe's files} (the others: nothing of ksha's), the node steps,
# the hosts leaving)
LEAVING = [
    ("the seed: no host leaves", {}, {}, ["joined", "roles-labelled"], None),
    ("node3 out of kube-node with ksha's units: drained, cleaned, deleted",
     {"groups:kube-node": ["node1", "node2"]}, {"node3": {KUBELET_UNIT: 1}},
     ["joined", "roles-labelled", *LEAVE], ["node3"]),
    ("node3 out with nothing of ksha's: nothing to do", {"groups:kube-node": ["node1", "node2"]}, {},
     ["joined", "roles-labelled"], None),
    ("a kubelet unit without ksha's marker is not ksha's", {"groups:kube-node": ["node1", "node2"]},
     {"node3": {KUBELET_UNIT: 0}}, ["joined", "roles-labelled"], None),
    ("ksha's config.toml alone counts", {"groups:kube-node": ["node1", "node2"]}, {"node3": {CONFIG_TOML: 1}},
     ["joined", "roles-labelled", *LEAVE], ["node3"]),
    ("a host that did not answer the probe is kept", {"groups:kube-node": ["node1", "node2"]}, {"node3": None},
     ["joined", "roles-labelled", *LEAVE], ["node3"]),
    ("masters that stop running a kubelet leave", {"nodes:masters_run_kubelet": False},
     {m: {KUBELET_UNIT: 1} for m in ("master1", "master2", "master3")},
     ["joined", "roles-labelled", *LEAVE],
     ["master1", "master2", "master3"]),
    ("no node left: the last ones still leave", {"nodes:masters_run_kubelet": False, "groups:kube-node": []},
     {"node1": {KUBELET_UNIT: 1}}, LEAVE, ["node1"]),
]  # fmt: skip


@pytest.mark.parametrize("case, edits, probed, steps, leaving", LEAVING, ids=[c[0] for c in LEAVING])
def test_a_host_leaving_the_nodes_is_drained_cleaned_then_deleted(example_ksha, case, edits, probed, steps, leaving):
    m = build(example_ksha, **edits, **SUMS)
    files = {h["name"]: probed.get(h["name"], {}) for h in m["hosts"]}
    live = {**LIVE, "files": files}
    built = plan.build(m, live)["steps"]
    assert node_ids(built) == [f"ksha-phase-nodes-{s}" for s in steps]
    if leaving is None:
        return
    by_id = {s["id"]: s for s in built}
    drain, stop, delete, clean = (by_id[f"ksha-phase-nodes-{s}"] for s in LEAVE)
    assert (stop["target"], stop["sls"], stop["pillar"]) == (leaving, ["ksha.node.stopped"], {})
    assert (drain["target"], drain["sls"], drain["pillar"]) == (["master1"], ["ksha.node.drain"],
                                                                {"ksha_nodes_leaving": leaving})  # fmt: skip
    assert (clean["target"], clean["sls"], clean["pillar"]) == (leaving, ["ksha.node.clean"], {})
    assert (delete["target"], delete["sls"], delete["pillar"]) == (["master1"], ["ksha.node.delete"],
                                                                   {"ksha_nodes_leaving": leaving})  # fmt: skip


def test_what_a_former_node_loses(example_ksha):
    m = build(example_ksha, **{"groups:kube-node": ["node1"], "nodes:masters_run_kubelet": False})
    hosts = {h["name"]: h for h in m["hosts"]}
    assert m["nodes"]["clean"]["hosts"] == ["master1", "master2", "master3", "node2", "node3"]
    assert hosts["node1"]["node_clean"] is None
    common = ["/var/lib/kubelet/config.yaml", "/var/lib/kubelet/pki", "/etc/kubernetes/kubelet.conf",
              "/var/lib/kube-proxy/config.yaml", "/var/lib/kube-proxy/pki", "/etc/kubernetes/proxy.conf"]  # fmt: skip
    release = ["/usr/local/bin/kubelet", "/usr/local/bin/kube-proxy", "/opt/kubernetes-node-v1.30.8"]
    kernel = ["/etc/sysctl.d/60-ksha-node.conf", "/etc/modules-load.d/ksha-node.conf"]
    # a worker's cluster CA certificate goes; a master keeps its own (ksha.kubernetes.pki's)
    assert hosts["node2"]["node_clean"] == {"files": [*common, "/etc/kubernetes/pki/ca.crt", *kernel, *release]}
    assert hosts["master1"]["node_clean"] == {"files": [*common, *kernel, *release]}
    assert m["nodes"]["api_host"] == "master1" and m["nodes"]["drain_timeout_s"] == 120
    assert m["nodes"]["leftovers"] == {"marked": [KUBELET_UNIT, "/etc/systemd/system/kube-proxy.service",
                                                  CONFIG_TOML], "owned": []}  # fmt: skip


@pytest.mark.parametrize(
    "edits, modules",
    [
        ({}, ["overlay", "br_netfilter", "ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"]),
        ({"kubernetes:kube_proxy:mode": "iptables"}, ["overlay", "br_netfilter"]),
        ({"nodes:kernel_modules": ["nf-conntrack", "overlay"], "kubernetes:kube_proxy:ipvs_modules": ["overlay"]},
         ["nf-conntrack", "overlay"]),
        ({"nodes:kernel_modules": [], "kubernetes:kube_proxy:mode": "iptables"}, []),
    ],
)  # fmt: skip
def test_a_node_s_kernel_modules_and_sysctls(example_ksha, edits, modules):
    kernel = model.node_kernel(model.settings(edited(example_ksha, **edits)))
    assert [m["name"] for m in kernel["modules"]] == modules
    assert kernel["files"][0] == {"path": "/etc/modules-load.d/ksha-node.conf", "lines": modules}
    for module in kernel["modules"]:  # /sys/module has underscores; modules.builtin either
        sysfs = module["name"].replace("-", "_")
        assert module["loaded"].startswith(f"test -d /sys/module/{sysfs} || grep -qsE '/(")
        assert module["load"] == f"modprobe {module['name']}"
    assert kernel["files"][1]["lines"] == [
        "net.bridge.bridge-nf-call-ip6tables = 1", "net.bridge.bridge-nf-call-iptables = 1", "net.ipv4.ip_forward = 1",
    ]  # fmt: skip


def test_a_sysctl_value_is_quoted_for_the_shell_and_compared_as_sysctl_shows_it(example_ksha):
    kernel = model.node_kernel(model.settings(edited(example_ksha, **{"nodes:sysctl": {
        "net.ipv4.ip_local_port_range": "32768   60999", "kernel.x": "a'b"}})))  # fmt: skip
    ports = kernel["sysctl"]["net.ipv4.ip_local_port_range"]
    assert ports["set"] == "sysctl -q -w 'net.ipv4.ip_local_port_range=32768 60999'"
    assert ports["current"] == "test \"$(sysctl -n net.ipv4.ip_local_port_range | xargs)\" = '32768 60999'"
    assert kernel["sysctl"]["kernel.x"]["set"] == "sysctl -q -w 'kernel.x=a'\"'\"'b'"
