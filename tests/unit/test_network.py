"""The pod network's objects (ksha/network.py): rendered from the settings, checked offline by
the real kubernetes-validate against the pinned version's schemas (the preflight's check), and
what the validator says of ksha:network's keys."""

import pytest

from ksha import inventory, model, network
from tests.conftest import edited

SETTINGS = {"version": "v3.28.2", "registry": "docker.io", "ipip_mode": "Always", "mtu": 0,
            "pod_cidr": "10.233.64.0/18", "cni_bin_dir": "/usr/lib/cni", "cni_conf_dir": "/etc/cni/net.d"}  # fmt: skip


def by_ref(objects):
    return {network.ref(o): o for o in objects}


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_default_rendering_passes_the_pinned_version_s_schemas(example_ksha):
    cluster = model.build(example_ksha)
    objects = cluster["network"]["objects"]
    assert network.problems(objects, cluster["kubernetes"]["version"]) == []
    assert network.findings(cluster) == []
    refs = [network.ref(o) for o in objects]
    assert len(refs) == len(set(refs)) == 18 + 9 + 4  # the CRDs, 3 x (account, role, binding), the rest
    assert refs[:18] == [
        f"CustomResourceDefinition {plural}.crd.projectcalico.org" for _, plural, _ in network.CALICO_CRDS
    ]
    assert refs[-4:] == ["ConfigMap kube-system/calico-config", "DaemonSet kube-system/calico-node",
                         "Deployment kube-system/calico-kube-controllers",
                         "PodDisruptionBudget kube-system/calico-kube-controllers"]  # fmt: skip
    for obj in objects:  # every object is ksha's and of the set, of a resource the state lists
        assert obj["metadata"]["labels"][network.SET_LABEL] == "calico"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ksha"
        group = obj["apiVersion"].rpartition("/")[0]
        assert f"{obj['kind'].lower()}s{'.' + group if group else ''}".replace("ys.", "ies.") in network.RESOURCES


def test_the_settings_reach_the_objects():
    objects = by_ref(network.calico_objects({**SETTINGS, "pod_cidr": "10.50.0.0/16", "ipip_mode": "CrossSubnet",
                                             "mtu": 1440, "registry": "10.0.0.5:5000/mirror",
                                             "cni_bin_dir": "/opt/cni/bin"}))  # fmt: skip
    ds = objects["DaemonSet kube-system/calico-node"]["spec"]["template"]["spec"]
    node = env_of(ds["containers"][0])
    assert node["CALICO_IPV4POOL_CIDR"] == "10.50.0.0/16" and node["CALICO_IPV4POOL_IPIP"] == "CrossSubnet"
    assert ds["containers"][0]["image"] == "10.0.0.5:5000/mirror/calico/node:v3.28.2"
    assert ds["initContainers"][0]["image"] == "10.0.0.5:5000/mirror/calico/cni:v3.28.2"
    volumes = {v["name"]: v["hostPath"]["path"] for v in ds["volumes"]}
    assert (volumes["cni-bin-dir"], volumes["cni-net-dir"]) == ("/opt/cni/bin", "/etc/cni/net.d")
    # install-cni leaves the distro package's plugins alone
    assert "loopback" in env_of(ds["initContainers"][0])["SKIP_CNI_BINARIES"].split(",")
    config = objects["ConfigMap kube-system/calico-config"]["data"]
    assert config["veth_mtu"] == "1440" and '"mtu": __CNI_MTU__' in config["cni_network_config"]


def test_the_model_renders_from_the_pillar_and_none_renders_nothing(example_ksha):
    cluster = model.build(edited(example_ksha, **{"kubernetes:pod_cidr": "10.100.0.0/16"}))
    assert cluster["network"]["host"] == "master1"
    ds = by_ref(cluster["network"]["objects"])["DaemonSet kube-system/calico-node"]
    assert env_of(ds["spec"]["template"]["spec"]["containers"][0])["CALICO_IPV4POOL_CIDR"] == "10.100.0.0/16"
    none = model.build(edited(example_ksha, **{"network:plugin": "none"}))
    assert (none["network"]["host"], none["network"]["objects"], none["network"]["refs"]) == (None, [], [])
    assert all("ksha.network" not in h["states"] for h in none["hosts"])
    assert "ksha.network" in model.host(cluster, "master1")["states"]


@pytest.mark.parametrize(
    "case, breaks, found",
    [
        ("an unknown field", lambda o: o[-3]["spec"].update(replicas=2),
         "DaemonSet kube-system/calico-node: spec: Additional properties are not allowed ('replicas' was unexpected)"),
        ("a wrong type", lambda o: o[-2]["spec"].update(replicas="one"),
         "Deployment kube-system/calico-kube-controllers: spec.replicas: 'one' is not of type 'integer'"),
        ("a required field missing", lambda o: o[-3]["spec"].pop("selector"),
         "DaemonSet kube-system/calico-node: spec: 'selector' is a required property"),
    ],
)  # fmt: skip
def test_the_check_names_the_object_and_the_field(case, breaks, found):
    objects = network.calico_objects(SETTINGS)
    breaks(objects)
    [problem] = network.problems(objects, "v1.30.8")
    assert problem.startswith(found), problem


def test_a_version_kubernetes_validate_has_no_schemas_for_is_named():
    [problem, *_] = network.problems(network.calico_objects(SETTINGS), "v1.99.0")
    assert problem == ("CustomResourceDefinition bgpconfigurations.crd.projectcalico.org: kubernetes-validate does "
                       "not support version 1.99; install a kubernetes-validate that has it")  # fmt: skip


@pytest.mark.parametrize("release, schemas", [("v1.30.8", "1.30.0"), ("v1.30.0", "1.30.0"), ("1.31.2", "1.31.0")])
def test_schema_version(release, schemas):
    assert network.schema_version(release) == schemas


def test_the_preflight_reports_objects_the_schemas_refuse(example_ksha, monkeypatch):
    assert model.preflight_findings(example_ksha) == inventory.validate(example_ksha)
    monkeypatch.setattr(network, "problems", lambda objects, version: [f"DaemonSet x: {len(objects)} {version}"])
    [finding] = model.preflight_findings(example_ksha)
    assert (finding.level, finding.key) == ("ERROR", "ksha:network")
    assert finding.message.startswith("DaemonSet x: 31 v1.30.8 (checked offline against Kubernetes v1.30.8's schemas")
    # an invalid pillar: its own findings only, no rendering
    example_ksha["network"] = {"plugin": "flannel"}
    assert [str(f) for f in model.preflight_findings(example_ksha)] == [
        "ERROR ksha:network:plugin: 'flannel' is not one of calico, none"
    ]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("network:calico:ipip_mode", "always", "'always' is not one of Always, CrossSubnet, Never"),
        ("network:calico:mtu", 99999, "99999 must be an MTU from 0 to 9000 bytes; 0 lets calico find it"),
        ("network:calico:version", "3.28", "'3.28' is not a calico release tag (e.g. v3.28.2)"),
        ("network:calico:registry", "https://docker.io", "'https://docker.io' is not a registry host[:port][/path]"),
    ],
)
def test_the_validator_names_the_network_key(example_ksha, key, value, message):
    errors = [f for f in inventory.validate(edited(example_ksha, **{key: value})) if f.level == "ERROR"]
    assert [f.key for f in errors] == [f"ksha:{key}"]
    assert errors[0].message.startswith(message), errors[0].message
