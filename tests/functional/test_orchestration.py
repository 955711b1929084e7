"""salt/orch/ksha.sls and salt/top.sls through Salt itself: a real master and minion
from pytest-salt-factories, Salt's renderers, the synced runner and states.

The minion runs on this machine, so its pillar points ksha.common at a
temporary hosts file and manages no packages: nothing outside tmp is touched
(the lb phase's ksha.loadbalancer.clean only removes ksha's own LB files,
which this machine does not have).
"""

import copy

import pytest
import yaml

from ksha import model
from ksha.saltconf import file_roots
from tests.conftest import NODE_RELEASE_SHA256, RELEASE_SHA256, REPO

pytestmark = pytest.mark.timeout(300)

# The minion is this machine: the runs stop after the lb phase (etcd is for the lab).
UNTIL_LB = 'pillar={"ksha_until": "lb"}'


@pytest.fixture(scope="module")
def pillar_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pillar")
    (path / "top.sls").write_text((REPO / "pillar" / "top.sls.example").read_text())
    return path


@pytest.fixture(scope="module")
def hosts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("etc") / "hosts"
    path.write_text("127.0.0.1 localhost\n# a line of the user's own\n")
    return path


@pytest.fixture(scope="module")
def salt_master(salt_factories, pillar_dir):
    overrides = {
        "file_roots": file_roots(REPO),
        "ext_pillar": [{"ksha_model": {}}],
        "pillar_roots": {"base": [str(pillar_dir)]},
        "open_mode": True,
    }
    factory = salt_factories.salt_master_daemon("ksha-func-master", overrides=overrides)
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def salt_minion(salt_master):
    factory = salt_master.salt_minion_daemon("master1")
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def synced(salt_master, salt_minion):
    ret = salt_master.salt_run_cli(timeout=120).run("saltutil.sync_all")
    assert ret.returncode == 0, ret.stderr
    assert "runners.ksha_runner" in ret.data["runners"]
    assert "states.ksha" in ret.data["states"]
    assert "pillar.ksha_model" in ret.data["pillar"]
    return ret


@pytest.fixture
def set_pillar(pillar_dir, salt_minion, hosts_file):
    def _set(ksha):
        ksha = copy.deepcopy(ksha)
        ksha.setdefault("common", {}).update(hosts_file=str(hosts_file), pkgs=[])
        (pillar_dir / "ksha.sls").write_text(yaml.safe_dump({"ksha": ksha}))
        ret = salt_minion.salt_call_cli(timeout=120).run("saltutil.refresh_pillar", wait=True)
        assert ret.returncode == 0, ret.stderr

    return _set


@pytest.fixture
def one_host_ksha():
    return {
        "hosts": [{"name": "master1", "ip": "10.99.0.11"}],
        "groups": {"kube-master": ["master1"], "kube-node": [], "etcd": ["master1"]},
        "loadbalancer": {"mode": "none"},
        "kubernetes": {"archive": {"sha256": RELEASE_SHA256}, "node_archive": {"sha256": NODE_RELEASE_SHA256}},
    }


def test_orchestration_renders_the_phases_with_the_example_pillar(salt_master, synced, set_pillar, example_ksha):
    set_pillar(example_ksha)
    ret = salt_master.salt_run_cli(timeout=120).run("state.orchestrate_show_sls", "orch.ksha")
    assert ret.returncode == 0, ret.stderr
    chunks = ret.data[salt_master.id]

    def arg(state_id, name):
        [fun_args] = [v for k, v in chunks[state_id].items() if not k.startswith("__")]
        return next((a[name] for a in fun_args if isinstance(a, dict) and name in a), None)

    # Each phase requires the one before it, and every one is failhard.
    assert {state_id: arg(state_id, "require") for state_id in chunks} == {
        "ksha-preflight-inventory-valid": None,
        "ksha-preflight-every-host-minion-responds": [{"ksha": "ksha-preflight-inventory-valid"}],
        "ksha-preflight-custom-modules-synced": [{"salt": "ksha-preflight-every-host-minion-responds"}],
        "ksha-preflight-custom-states-synced": [{"salt": "ksha-preflight-custom-modules-synced"}],
        "ksha-preflight-pillar-refreshed": [{"salt": "ksha-preflight-custom-states-synced"}],
        # The example is the seed's cloud LB (external mode): every host must reach it first.
        "ksha-preflight-lb-address-reachable-from-every-host": [{"salt": "ksha-preflight-pillar-refreshed"}],
        "ksha-phase-common-applied": [{"salt": "ksha-preflight-lb-address-reachable-from-every-host"}],
        "ksha-phase-lb-other-hosts-cleaned": [{"salt": "ksha-phase-common-applied"}],
        # A cluster never bootstrapped (no member has the grain ksha_etcd_cluster_id): bootstrap.
        "ksha-phase-etcd-ca-ready": [{"salt": "ksha-phase-lb-other-hosts-cleaned"}],
        "ksha-phase-etcd-certificates-issued": [{"salt": "ksha-phase-etcd-ca-ready"}],
        "ksha-phase-etcd-members-bootstrapped": [{"salt": "ksha-phase-etcd-certificates-issued"}],
        "ksha-phase-etcd-other-hosts-cleaned": [{"salt": "ksha-phase-etcd-members-bootstrapped"}],
        "ksha-phase-etcd-cluster-healthy": [{"salt": "ksha-phase-etcd-other-hosts-cleaned"}],
        "ksha-phase-control-plane-binaries-installed": [{"salt": "ksha-phase-etcd-cluster-healthy"}],
        "ksha-phase-control-plane-ca-ready": [{"salt": "ksha-phase-control-plane-binaries-installed"}],
        "ksha-phase-control-plane-certificates-issued": [{"salt": "ksha-phase-control-plane-ca-ready"}],
        "ksha-phase-control-plane-service-account-keys-published": [
            {"salt": "ksha-phase-control-plane-certificates-issued"}
        ],
        "ksha-phase-control-plane-service-account-keys-trusted": [
            {"salt": "ksha-phase-control-plane-service-account-keys-published"}
        ],
        "ksha-phase-control-plane-components-running": [
            {"salt": "ksha-phase-control-plane-service-account-keys-trusted"}
        ],
        # the workers have no minion here: a host that did not answer the file probe is cleaned
        "ksha-phase-control-plane-other-hosts-cleaned": [{"salt": "ksha-phase-control-plane-components-running"}],
        "ksha-phase-nodes-joined": [{"salt": "ksha-phase-control-plane-other-hosts-cleaned"}],
        "ksha-phase-nodes-roles-labelled": [{"salt": "ksha-phase-nodes-joined"}],
    }
    assert all(arg(state_id, "failhard") is True for state_id in chunks)
    assert {"pillar": {"ksha_etcd_bootstrap": True}} in chunks["ksha-phase-etcd-members-bootstrapped"]["salt"]
    assert {"tgt": "master1"} in chunks["ksha-phase-etcd-ca-ready"]["salt"]
    common = chunks["ksha-phase-common-applied"]["salt"]
    assert {"tgt": "master1,master2,master3,node1,node2,node3"} in common
    assert {"tgt_type": "list"} in common


def test_top_assigns_states_by_role_from_pillar(salt_minion, synced, set_pillar, example_ksha):
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_top")
    assert ret.returncode == 0, ret.stderr
    # external mode (the seed's cloud LB): no LB software here, a reachability check instead.
    assert ret.data == {
        "base": [
            "ksha.common",
            "ksha.loadbalancer.clean",
            "ksha.loadbalancer.external",
            "ksha.etcd.ca",  # master1 is the first etcd member: the default CA host
            "ksha.etcd.pki",  # kube-master: the apiserver's etcd client certificate
            "ksha.etcd",
            "ksha.kubernetes.ca",  # master1 is the first kube-master: the Kubernetes CA host
            "ksha.kubernetes.install",
            "ksha.kubernetes.pki",
            "ksha.kubernetes.service_account",
            "ksha.kubernetes.service",
            "ksha.containerd",  # a master is a node too (masters_run_kubelet)
            "ksha.node",
            "ksha.node.roles",  # the first master sets every node's roles through the API
            "ksha.network",  # and applies the pod network's objects
        ]
    }


def test_the_runtime_config_is_checked_by_containerd_before_it_is_installed(
    salt_minion, synced, set_pillar, example_ksha
):
    example_ksha["containerd"] = {"insecure_registries": ["10.0.0.5:5000"]}
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_sls", "ksha.containerd")
    assert ret.returncode == 0, ret.stderr
    config = {
        k: v for arg in ret.data["ksha-containerd-config"]["file"] if isinstance(arg, dict) for k, v in arg.items()
    }
    assert config["name"] == "/etc/containerd/config.toml"
    assert config["check_cmd"] == "sh -c 'containerd --config \"$0\" config dump >/dev/null'"
    assert config["context"]["config"]["insecure"] == ["10.0.0.5:5000"]
    running = ret.data["ksha-containerd-running"]["service"]
    assert {"watch": [{"file": "ksha-containerd-config"}]} in running
    assert {"name": "containerd"} in running


def rank(state):
    """A state's place in the run (show_sls: its "order" argument)."""
    [fun] = [k for k in state if not k.startswith("__")]
    return next(a["order"] for a in state[fun] if isinstance(a, dict) and "order" in a)


def test_a_node_loads_its_kernel_modules_before_its_sysctls(salt_minion, synced, set_pillar, example_ksha):
    """ksha.node.kernel as rendered for a node (the lab cannot load modules: its pillar has none)."""
    # ipvs mode (the default); iptables mode's list: tests/unit/test_model_nodes.py
    modules = ["overlay", "br_netfilter", "ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"]
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_sls", "ksha.containerd")
    assert ret.returncode == 0, ret.stderr

    order = sorted(ret.data, key=lambda state_id: rank(ret.data[state_id]))
    loaded = [i for i in order if i.startswith("ksha-node-kernel-module-")]
    assert loaded == [f"ksha-node-kernel-module-{m}-loaded" for m in modules]
    assert order.index(loaded[-1]) < order.index("ksha-containerd-running")  # before containerd starts
    module = dict(a for arg in ret.data["ksha-node-kernel-module-br_netfilter-loaded"]["cmd"]
                  if isinstance(arg, dict) for a in arg.items())  # fmt: skip
    assert module["name"] == "modprobe br_netfilter" and module["unless"].startswith("test -d /sys/module/br_netfilter")
    at_boot = ret.data["ksha-node-kernel-/etc/modules-load.d/ksha-node.conf-written"]["file"]
    contents = next(a["contents"] for a in at_boot if isinstance(a, dict) and "contents" in a)
    assert contents.split("\n") == ["# Managed by Salt (ksha.node)", *modules]
    bridge = dict(a for arg in ret.data["ksha-node-sysctl-net.bridge.bridge-nf-call-iptables-set"]["cmd"]
                  if isinstance(arg, dict) for a in arg.items())  # fmt: skip
    assert bridge["name"] == "sysctl -q -w net.bridge.bridge-nf-call-iptables=1"
    assert {"cmd": "ksha-node-kernel-module-br_netfilter-loaded"} in bridge["require"]
    # no module to load: ksha's file goes (where it carries the marker), no modprobe
    example_ksha["nodes"] = {"kernel_modules": []}
    example_ksha["kubernetes"]["kube_proxy"] = {"mode": "iptables"}  # no ipvs modules either
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_sls", "ksha.node.kernel")
    assert ret.returncode == 0, ret.stderr
    assert "ksha-node-kernel-/etc/modules-load.d/ksha-node.conf-removed" in ret.data
    assert not [i for i in ret.data if i.startswith("ksha-node-kernel-module-")]


def test_the_release_is_checked_by_its_sha256_then_linked(salt_minion, synced, set_pillar, example_ksha):
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_sls", "ksha.kubernetes.install")
    assert ret.returncode == 0, ret.stderr

    def args(state_id):
        [(fun, fun_args)] = [(k, v) for k, v in ret.data[state_id].items() if not k.startswith("__")]
        return fun, {k: v for a in fun_args if isinstance(a, dict) for k, v in a.items()}

    fun, extracted = args("ksha-kubernetes-release-archive-extracted")
    assert fun == "ksha" and extracted["name"] == "/opt/kubernetes-v1.30.8"
    assert extracted["source"] == "https://dl.k8s.io/v1.30.8/kubernetes-server-linux-amd64.tar.gz"
    assert extracted["source_hash"] == "sha256=" + example_ksha["kubernetes"]["archive"]["sha256"]
    links = {args(i)[1]["name"]: args(i)[1]["target"] for i in ret.data if i.endswith("-binary-linked")}
    assert links == {
        f"/usr/local/bin/{b}": f"/opt/kubernetes-v1.30.8/kubernetes/server/bin/{b}"
        for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
    }
    # Without a checksum (as the shipped example is), a highstate fails it, saying where to find it.
    example_ksha["kubernetes"]["archive"]["sha256"] = None
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_sls", "ksha.kubernetes.install")
    assert list(ret.data) == ["ksha-kubernetes-release-checksum-set"]
    fun, refusal = args("ksha-kubernetes-release-checksum-set")
    assert fun == "test" and refusal["name"].startswith("ksha:kubernetes:archive:sha256 is not set")


def test_the_control_plane_units_and_their_restarts_render_from_the_model(
    salt_minion, synced, set_pillar, example_ksha
):
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_sls", "ksha.kubernetes.service")
    assert ret.returncode == 0, ret.stderr
    units = model.host(model.build(example_ksha), "master1")["units"]
    chunks = {i: {k: v for a in c[f] for k, v in (a.items() if isinstance(a, dict) else [])}
              for i, c in ret.data.items() for f in c if not f.startswith("__")}  # fmt: skip
    assert set(chunks) == {
        f"ksha-kubernetes-{component}-{what}"
        for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
        for what in ("systemd-unit", "service-enabled", "service-running", "restarted-when-changed")
    } | {"ksha-kubernetes-kube-scheduler-configuration-file"}
    for component, unit in units.items():
        written = chunks[f"ksha-kubernetes-{component}-systemd-unit"]
        assert written["name"] == f"/etc/systemd/system/{component}.service"
        assert written["context"]["exec_start"] == unit["exec_start"]
        assert written["context"]["type"] == unit["type"]
        restart = chunks[f"ksha-kubernetes-{component}-restarted-when-changed"]
        assert restart["watched"] == unit["watched"] and restart["timeout"] == 120
        assert restart["binary"] == f"/usr/local/bin/{component}"
        assert restart["rolling"] is (component == "kube-apiserver")
    scheduler = chunks["ksha-kubernetes-kube-scheduler-configuration-file"]
    assert scheduler["name"] == "/etc/kubernetes/kube-scheduler.yaml"
    assert scheduler["dataset"] == units["kube-scheduler"]["configuration"]["content"]


def test_a_former_masters_clean_is_guarded_by_ksha_s_marker_in_every_state(
    salt_minion, synced, set_pillar, example_ksha
):
    set_pillar(example_ksha)  # master1 a master: nothing to clean
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_sls", "ksha.kubernetes.clean")
    assert ret.returncode == 0, ret.stderr
    assert list(ret.data) == ["ksha-kubernetes-clean-nothing-for-a-master"]
    example_ksha["groups"]["kube-master"] = ["master2", "master3"]
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_sls", "ksha.kubernetes.clean")
    assert ret.returncode == 0, ret.stderr
    chunks = {i: {k: v for a in c[f] for k, v in (a.items() if isinstance(a, dict) else [])}
              for i, c in ret.data.items() for f in c if not f.startswith("__")}  # fmt: skip
    clean = model.build(example_ksha)["kubernetes"]["clean"]
    assert chunks["ksha-kubernetes-clean-master-files-removed"]["names"] == [
        *clean["files"],
        *clean["links"],
        clean["release_dir"],
    ]
    marker = "grep -qsF 'Managed by Salt (ksha.kubernetes)' "
    for state_id, chunk in chunks.items():
        if state_id != "ksha-kubernetes-clean-systemd-reloaded":  # onchanges of the units' removal
            assert chunk["onlyif"].startswith(marker), (state_id, chunk)
    # the scheduler stops first, the apiserver last
    assert chunks["ksha-kubernetes-clean-kube-apiserver-stopped"]["require"] == [
        {"service": "ksha-kubernetes-clean-kube-controller-manager-stopped"}
    ]


def test_a_former_nodes_clean_and_its_drain_render_from_the_model_guarded_by_ksha_s_markers(
    salt_minion, synced, set_pillar, example_ksha
):
    set_pillar(example_ksha)  # master1 a node: nothing to clean

    def show(sls, *args):
        ret = salt_minion.salt_call_cli(timeout=120).run("state.show_sls", sls, *args)
        assert ret.returncode == 0, ret.stderr
        return {i: {k: v for a in c[f] for k, v in (a.items() if isinstance(a, dict) else [])}
                for i, c in ret.data.items() for f in c if not f.startswith("__")}  # fmt: skip

    assert sorted(show("ksha.node.clean")) == [
        "ksha-node-clean-nothing-for-a-node",
        "ksha-node-stopped-nothing-for-a-node",
    ]
    leaving = 'pillar={"ksha_nodes_leaving": ["node3"]}'
    drain = show("ksha.node.drain", leaving)["ksha-node-node3-cordoned-and-drained"]
    assert (drain["name"], drain["timeout"], drain["kubeconfig"]) == ("node3", 120, "/etc/kubernetes/admin.conf")
    assert show("ksha.node.delete", leaving)["ksha-node-node3-deleted-from-the-api"]["name"] == "node3"
    example_ksha.setdefault("nodes", {})["masters_run_kubelet"] = False
    set_pillar(example_ksha)
    chunks = show("ksha.node.clean")
    me = next(h for h in model.build(example_ksha)["hosts"] if h["name"] == "master1")
    assert chunks["ksha-node-clean-node-files-removed"]["names"] == me["node_clean"]["files"]
    assert "/etc/kubernetes/pki/ca.crt" not in me["node_clean"]["files"]  # master1's own
    for state_id, chunk in chunks.items():
        if state_id == "ksha-node-clean-systemd-reloaded":  # onchanges of the units' removal
            continue
        mark = "ksha.containerd" if "containerd" in state_id else "ksha.node"
        assert chunk["onlyif"].startswith(f"grep -qsF 'Managed by Salt ({mark})' "), (state_id, chunk)
    # kube-proxy stops first, then the kubelet, then containerd
    assert chunks["ksha-node-clean-kubelet-stopped"]["require"] == [{"service": "ksha-node-clean-kube-proxy-stopped"}]
    assert chunks["ksha-node-clean-containerd-stopped"]["require"] == [{"service": "ksha-node-clean-kubelet-stopped"}]


def test_a_mirrors_credentials_are_in_no_return_of_the_release_state(salt_minion, synced, tmp_path):
    """Salt's archive.extracted returns the URL as given when the download fails; ksha's state
    does not (the mirror here refuses connections: nothing listens on port 9)."""
    url = "http://ksha-user:s3cret@127.0.0.1:9/kubernetes-server-linux-amd64.tar.gz"
    assert salt_minion.salt_call_cli(timeout=120).run("saltutil.sync_states").returncode == 0
    ret = salt_minion.salt_call_cli(timeout=120).run(
        "state.single", "ksha.release_extracted", str(tmp_path / "release"), f"source={url}",
        f"source_hash=sha256={'0' * 64}",
    )  # fmt: skip
    assert ret.returncode != 0
    assert isinstance(ret.data, dict), ret.data  # a state return, not an error list
    [state] = ret.data.values()
    assert state["result"] is False and "Connection refused" in state["comment"], state
    assert "s3cret" not in ret.stdout + ret.stderr and "ksha-user" not in ret.stdout + ret.stderr
    assert not (tmp_path / "release").exists()


def test_top_gives_the_lb_states_to_the_lb_hosts_only(salt_minion, synced, set_pillar, example_ksha):
    example_ksha["loadbalancer"]["mode"] = "keepalived"
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_top")
    etcd = ["ksha.etcd.ca", "ksha.etcd.pki", "ksha.etcd"]
    etcd += ["ksha.kubernetes.ca", "ksha.kubernetes.install", "ksha.kubernetes.pki", "ksha.kubernetes.service_account"]
    etcd += ["ksha.kubernetes.service", "ksha.containerd", "ksha.node", "ksha.node.roles", "ksha.network"]
    assert ret.data == {"base": ["ksha.common", "ksha.loadbalancer", *etcd]}
    example_ksha["loadbalancer"]["hosts"] = ["node1", "node2"]
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_top")
    assert ret.data == {"base": ["ksha.common", "ksha.loadbalancer.clean", *etcd]}


def test_top_gives_nothing_to_a_minion_outside_the_inventory(salt_minion, synced, set_pillar, example_ksha):
    example_ksha["hosts"][0]["name"] = "master0"
    example_ksha["groups"] = {
        "kube-master": ["master0", "master2", "master3"],
        "etcd": ["master0", "master2", "master3"],
    }
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_top")
    assert ret.data == {}


def test_common_state_renders_the_hosts_block_from_the_map(salt_minion, synced, set_pillar, example_ksha):
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_sls", "ksha.common")
    assert ret.returncode == 0, ret.stderr
    block = ret.data["ksha-common-hosts-file-cluster-names"]["file"]
    content = next(arg["content"] for arg in block if isinstance(arg, dict) and "content" in arg)
    assert content.splitlines() == [
        "192.168.0.1 master1",
        "192.168.0.2 master2",
        "192.168.0.3 master3",
        "192.168.0.4 node1",
        "192.168.0.5 node2",
        "192.168.0.6 node3",
        "192.168.0.253 lb.kubesphere.local",
    ]


def test_bad_pillar_stops_orchestration_before_any_host_is_touched(
    salt_master, synced, set_pillar, one_host_ksha, hosts_file
):
    before = hosts_file.read_text()
    one_host_ksha["groups"]["etcd"] = []
    one_host_ksha["loadbalancer"]["port"] = 70000
    set_pillar(one_host_ksha)
    ret = salt_master.salt_run_cli(timeout=120).run("state.orchestrate", "orch.ksha", UNTIL_LB)
    assert ret.returncode != 0
    states = next(iter(ret.data["data"].values()))
    preflight = next(v for k, v in states.items() if "ksha-preflight-inventory-valid" in k)
    assert preflight["result"] is False
    assert preflight["comment"].splitlines() == [
        "ERROR ksha:groups:etcd: is empty: the cluster needs etcd members (an odd number, usually 3)",
        "ERROR ksha:loadbalancer:port: 70000 is not a port: use an integer from 1 to 65535 (e.g. 6443)",
        "inventory invalid: 2 error(s), 0 warning(s)",
    ]
    # Nothing after the preflight ran.
    assert not any(v.get("changes") for k, v in states.items() if "ksha-phase-common" in k)
    assert hosts_file.read_text() == before


def test_dry_run_validates_and_plans(salt_master, synced, set_pillar, one_host_ksha, hosts_file):
    before = hosts_file.read_text()
    set_pillar(one_host_ksha)
    run = salt_master.salt_run_cli(timeout=120).run
    ret = run("state.orchestrate", "orch.ksha", UNTIL_LB, "test=True", "--log-level=warning")
    assert ret.returncode == 0, ret.stdout
    states = next(iter(ret.data["data"].values()))
    preflight = next(v for k, v in states.items() if "ksha-preflight-inventory-valid" in k)
    assert preflight["result"] is True
    assert preflight["comment"].splitlines() == [
        "WARNING ksha:groups:etcd: has 1 member: etcd is not highly available (use 3 or 5)",
        "inventory valid: 0 error(s), 1 warning(s)",
    ]
    assert hosts_file.read_text() == before
    # the plan and the preflight come from ksha.runner, which leaves no runner client to the garbage
    # collector (saltutil.runner does: "[WARNING ] unclosed RunnerClient ..." per call)
    assert "unclosed RunnerClient" not in ret.stderr


def test_orchestration_applies_common_and_second_run_changes_nothing(
    salt_master, synced, set_pillar, one_host_ksha, hosts_file
):
    set_pillar(one_host_ksha)
    first = salt_master.salt_run_cli(timeout=120).run("state.orchestrate", "orch.ksha", UNTIL_LB)
    assert first.returncode == 0, first.stdout
    text = hosts_file.read_text()
    assert "# a line of the user's own" in text
    assert "10.99.0.11 master1\n10.99.0.11 lb.kubesphere.local\n" in text
    second = salt_master.salt_run_cli(timeout=120).run("state.orchestrate", "orch.ksha", UNTIL_LB)
    assert second.returncode == 0
    assert hosts_file.read_text() == text
    states = next(iter(second.data["data"].values()))
    common = next(v for k, v in states.items() if "ksha-phase-common-applied" in k)
    assert common["result"] is True
    assert common["changes"] == {}, common["changes"]


def test_until_must_name_a_phase(salt_master, synced, set_pillar, one_host_ksha):
    set_pillar(one_host_ksha)
    ret = salt_master.salt_run_cli(timeout=120).run("state.orchestrate", "orch.ksha", 'pillar={"ksha_until": "dns"}')
    assert ret.returncode != 0
    states = next(iter(ret.data["data"].values()))
    failed = next(v for k, v in states.items() if "ksha-orchestration-until-names-a-phase" in k)
    assert (
        failed["name"] == "ksha_until: dns is not a phase; use one of preflight, common, lb, etcd, control-plane, nodes"
    )
    assert failed["comment"] == failed["name"]  # the message in both, for the operator
    assert failed["result"] is False
    assert not any("ksha-phase" in k for k in states)


def test_etcd_signing_policies_come_from_the_model_to_the_ca_host(salt_minion, synced, set_pillar, example_ksha):
    example_ksha["groups"]["kube-master"].append("node1")
    example_ksha["etcd"] = {"pki": {"ca_dir": "/srv/etcd-ca", "days_valid": 90}}
    example_ksha["kubernetes"] = {"pki": {"ca_host": "master2"}}  # the Kubernetes CAs' elsewhere
    set_pillar(example_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("pillar.get", "x509_signing_policies", "unmask=True")
    assert ret.returncode == 0, ret.stderr
    policies = ret.data
    members = ["master1", "master2", "master3"]
    assert sorted(policies) == sorted(
        [f"ksha_etcd_{kind}__{m}" for kind in ("server", "peer") for m in members]
        + [f"ksha_etcd_client__{m}" for m in [*members, "node1"]]  # + every master
    )
    assert {n: p["minions"] for n, p in policies.items() if n.startswith("ksha_etcd_server")} == {
        f"ksha_etcd_server__{m}": m for m in members
    }
    assert policies["ksha_etcd_client__node1"]["extendedKeyUsage"] == "clientAuth"
    assert policies["ksha_etcd_peer__master2"]["extendedKeyUsage"] == "serverAuth, clientAuth"
    assert policies["ksha_etcd_peer__master2"]["signing_private_key"] == "/srv/etcd-ca/ca.key"
    assert policies["ksha_etcd_peer__master2"]["days_valid"] == 90


def test_only_the_ca_host_gets_the_signing_policies(salt_minion, synced, set_pillar, example_ksha):
    example_ksha["etcd"] = {"pki": {"ca_host": "master2"}}
    set_pillar(example_ksha)
    cli = salt_minion.salt_call_cli(timeout=120)
    ret = cli.run("pillar.get", "x509_signing_policies", "unmask=True")
    assert ret.returncode == 0, ret.stderr
    # master1 is still the Kubernetes CA host (the first master): its CAs' policies only
    assert sorted(ret.data) == sorted(
        [
            f"{p}__{m}"
            for p in ("ksha_kube_apiserver", "ksha_kube_client", "ksha_kube_front_proxy_client")
            for m in ("master1", "master2", "master3")
        ]
        + [
            f"{p}__{n}"
            for p in ("ksha_kube_kubelet_client", "ksha_kube_kubelet_server", "ksha_kube_proxy_client")
            for n in ("master1", "master2", "master3", "node1", "node2", "node3")
        ]
    )
    example_ksha["kubernetes"] = {"pki": {"ca_host": "master3"}}
    set_pillar(example_ksha)
    ret = cli.run("pillar.get", "x509_signing_policies", "unmask=True")
    assert ret.returncode == 0, ret.stderr
    assert not ret.data


def test_an_invalid_pillar_fails_every_state_with_the_findings(salt_minion, synced, set_pillar, one_host_ksha):
    one_host_ksha["loadbalancer"]["port"] = 70000
    set_pillar(one_host_ksha)
    ret = salt_minion.salt_call_cli(timeout=120).run("state.show_sls", "ksha.common")
    assert ret.returncode != 0
    assert "ERROR ksha:loadbalancer:port: 70000 is not a port" in ret.stdout + ret.stderr


def test_plan_prints_the_steps_the_orchestration_renders(salt_master, synced, set_pillar, one_host_ksha):
    set_pillar(one_host_ksha)
    ret = salt_master.salt_run_cli(timeout=120).run("ksha.plan", "until=lb")
    assert ret.returncode == 0, ret.stderr
    text = ret.data if isinstance(ret.data, str) else ret.stdout
    shown = salt_master.salt_run_cli(timeout=120).run("state.orchestrate_show_sls", "orch.ksha", UNTIL_LB).data
    ids = [line.split(". ", 1)[1] for line in text.splitlines() if not line.startswith("    ")]
    assert ids == [
        "ksha-preflight-inventory-valid",
        "ksha-preflight-every-host-minion-responds",
        "ksha-preflight-custom-modules-synced",
        "ksha-preflight-custom-states-synced",
        "ksha-preflight-pillar-refreshed",
        "ksha-phase-common-applied",
        # no LB clean-up: the one host answered the plan's probe and holds none of ksha's LB files
    ]
    assert sorted(shown[salt_master.id]) == sorted(ids)


def test_the_vrrp_password_is_in_no_rendered_state_and_no_return(salt_minion, synced, set_pillar, example_ksha):
    example_ksha["loadbalancer"].update(
        mode="keepalived", address="192.168.0.100", keepalived={"auth_pass": "s3cr3t!", "advert_int": 1}
    )
    set_pillar(example_ksha)
    cli = salt_minion.salt_call_cli(timeout=120)
    assert cli.run("saltutil.sync_modules").returncode == 0
    shown = cli.run("state.show_sls", "ksha.loadbalancer")
    assert shown.returncode == 0, shown.stderr
    assert "ksha-loadbalancer-keepalived-config" in shown.data
    returned = cli.run("ksha.model")  # its output is masked by Salt 3008 too; the model has no password
    assert returned.returncode == 0, returned.stderr
    for ret in (shown, returned):
        assert "s3cr3t!" not in ret.stdout + ret.stderr
