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
    [(key, problem)] = network.problems(objects, "v1.30.8")
    assert key == "ksha:network" and problem.startswith(found), problem


def test_a_version_kubernetes_validate_has_no_schemas_for_is_said_once_naming_the_version_key(example_ksha):
    [(key, problem)] = network.problems(network.calico_objects(SETTINGS), "v1.99.0")
    assert key == "ksha:kubernetes:version"
    assert problem.startswith("kubernetes-validate 1.30.0 has no schemas of Kubernetes 1.99.0 (v1.99.0), so the "
                              "network objects cannot be checked: install one that has them")  # fmt: skip


def test_without_kubernetes_validate_the_preflight_says_how_to_install_it(example_ksha, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "kubernetes_validate", None)  # import fails
    [finding] = network.findings(model.build(example_ksha))
    assert (finding.level, finding.key) == ("ERROR", "ksha")
    assert "kubernetes-validate is not importable" in finding.message and "pip install" in finding.message


@pytest.mark.parametrize("release, schemas", [("v1.30.8", "1.30.0"), ("v1.30.0", "1.30.0"), ("1.31.2", "1.31.0")])
def test_schema_version(release, schemas):
    assert network.schema_version(release) == schemas


def test_the_preflight_reports_objects_the_schemas_refuse(example_ksha, monkeypatch):
    assert model.preflight_findings(example_ksha) == inventory.validate(example_ksha)
    monkeypatch.setattr(
        network, "problems", lambda objects, version: [("ksha:network", f"DaemonSet x: {len(objects)} {version}")]
    )
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


def test_an_ipv6_pod_network_is_refused_for_calico_and_fine_without_a_plugin(example_ksha):
    for index, host in enumerate(example_ksha["hosts"]):
        host["ip"] = f"fd00:10::{index + 11}"
    example_ksha["loadbalancer"]["address"] = "fd00:10::100"
    example_ksha["kubernetes"].update(service_cidr="fd00:1::/112", pod_cidr="fd00:233::/56")
    errors = [str(f) for f in inventory.validate(example_ksha) if f.level == "ERROR"]
    assert errors == ["ERROR ksha:network:plugin: calico is rendered for an IPv4 pod network, and "
                      "ksha:kubernetes:pod_cidr is IPv6 (fd00:233::/56): set ksha:network:plugin: none and bring "
                      "your own network plugin"]  # fmt: skip
    example_ksha["network"] = {"plugin": "none"}
    assert not [f for f in inventory.validate(example_ksha) if f.level == "ERROR"]


@pytest.mark.parametrize(
    "value, level, message",
    [
        (50, "ERROR", "50 is below 576, the least an IPv4 host must take"),
        (576, None, None),
        (0, None, None),
    ],
)
def test_an_mtu_below_ipv4_s_minimum_is_refused(example_ksha, value, level, message):
    found = [f for f in inventory.validate(edited(example_ksha, **{"network:calico:mtu": value}))
             if f.key == "ksha:network:calico:mtu"]  # fmt: skip
    assert [(f.level, f.message[: len(message)]) for f in found] == ([(level, message)] if level else [])


def test_another_calico_series_is_a_warning(example_ksha):
    found = [f for f in inventory.validate(edited(example_ksha, **{"network:calico:version": "v3.26.1"}))
             if f.key == "ksha:network:calico:version"]  # fmt: skip
    assert [f.level for f in found] == ["WARNING"]
    assert found[0].message.startswith("v3.26.1: ksha renders the objects of calico v3.28.x")
