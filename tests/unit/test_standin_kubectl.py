"""The lab's kube-apiserver stand-in as the real kubectl (this machine's) sees it, its objects in
a real etcd (this machine's, TLS): what the lab tests and the operator do with it must work as it
does with the real apiserver, and what the real one refuses (RBAC, a stale resourceVersion, an
unknown field) is refused. The objects are read back with kubectl and etcdctl, never with a
client of the stand-in's own making."""

import json
import shutil
import subprocess

import pytest

from tests.conftest import STANDIN_VERSION

pytestmark = pytest.mark.skipif(not shutil.which("kubectl"), reason="needs kubectl (make apt)")


def kubeconfig(files, port, who, path):
    """A kubeconfig for the test CA's certificate `who` (NAME.crt/NAME.key) at 127.0.0.1:`port`."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "t", "cluster": {"server": f"https://127.0.0.1:{port}",
                                              "certificate-authority": str(files / "ca.crt")}}
                ],
                "users": [{"name": who, "user": {"client-certificate": str(files / f"{who}.crt"),
                                                 "client-key": str(files / f"{who}.key")}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": who}}],
                "current-context": "t",
            }
        )
    )  # fmt: skip
    return path


@pytest.fixture
def kubectl(standin_apiserver, tmp_path):
    """kubectl(*args, who="client", stdin=None) -> CompletedProcess, the real kubectl as `who`."""
    port, files, _ = standin_apiserver

    def run(*args, who="client", stdin=None):
        conf = kubeconfig(files, port, who, tmp_path / f"{who}.conf")
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(conf), "--request-timeout=10s", *args],
            input=stdin, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    return run


def configmap(name, **data):
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
                       "data": data})  # fmt: skip


def test_kubectl_reads_readyz_version_and_the_system_namespaces(kubectl):
    ready = kubectl("get", "--raw", "/readyz")
    assert (ready.returncode, ready.stdout) == (0, "ok"), ready.stderr
    version = kubectl("version", "-o", "json")
    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == STANDIN_VERSION
    ns = kubectl("get", "namespaces", "-o", "json")
    assert ns.returncode == 0, ns.stderr
    assert sorted(i["metadata"]["name"] for i in json.loads(ns.stdout)["items"]) == [
        "default", "kube-node-lease", "kube-public", "kube-system",
    ]  # fmt: skip
    missing = kubectl("get", "configmap", "nothing-here")
    assert missing.returncode == 1 and 'configmaps "nothing-here" not found' in missing.stderr


def test_apply_creates_then_updates_a_configmap_kept_in_etcd(kubectl, standin_apiserver):
    _, files, _ = standin_apiserver
    created = kubectl("apply", "-f", "-", stdin=configmap("probe", answer="41"))
    assert created.returncode == 0 and "configmap/probe created" in created.stdout, created.stderr
    updated = kubectl("apply", "-f", "-", stdin=configmap("probe", answer="42"))
    assert updated.returncode == 0 and "configmap/probe configured" in updated.stdout, updated.stderr
    same = kubectl("apply", "-f", "-", stdin=configmap("probe", answer="42"))
    assert same.returncode == 0 and "configmap/probe unchanged" in same.stdout, same.stderr
    got = json.loads(kubectl("get", "configmap", "probe", "-o", "json").stdout)
    assert got["data"] == {"answer": "42"} and got["metadata"]["uid"]
    listed = kubectl("get", "configmaps", "-n", "default", "-o", "name")
    assert listed.stdout.split() == ["configmap/probe"]
    # where the real apiserver keeps it: etcd's /registry/<resource>/<namespace>/<name>
    keys = etcdctl(files, standin_apiserver, "get", "--prefix", "--keys-only", "/registry/configmaps/")
    assert keys.split() == ["/registry/configmaps/default/probe"]
    deleted = kubectl("delete", "configmap", "probe")
    assert deleted.returncode == 0 and 'configmap "probe" deleted' in deleted.stdout, deleted.stderr
    assert kubectl("get", "configmap", "probe").returncode == 1


def etcdctl(files, standin_apiserver, *args):
    """etcdctl against the stand-in's etcd (the etcd process's --listen-client-urls)."""
    etcd = standin_apiserver[2]
    url = etcd.args[etcd.args.index("--listen-client-urls") + 1]
    out = subprocess.run(
        ["etcdctl", f"--endpoints={url}", f"--cacert={files / 'ca.crt'}", f"--cert={files / 'etcd-client.crt'}",
         f"--key={files / 'etcd-client.key'}", *args],
        capture_output=True, text=True, timeout=30, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_an_update_naming_an_old_resource_version_is_a_conflict(kubectl, tmp_path):
    assert kubectl("apply", "-f", "-", stdin=configmap("rv", v="1")).returncode == 0
    old = kubectl("get", "configmap", "rv", "-o", "json").stdout
    assert kubectl("apply", "-f", "-", stdin=configmap("rv", v="2")).returncode == 0
    stale = kubectl("replace", "-f", "-", stdin=old)
    assert stale.returncode == 1
    assert "the object has been modified; please apply your changes to the latest version" in stale.stderr
    assert json.loads(kubectl("get", "configmap", "rv", "-o", "json").stdout)["data"] == {"v": "2"}


def test_an_unknown_field_is_refused_as_strict_field_validation_does(kubectl):
    bad = json.loads(configmap("strict", a="b"))
    bad["spec"] = {"replicas": 1}
    out = kubectl("apply", "-f", "-", stdin=json.dumps(bad))
    assert out.returncode == 1 and 'unknown field "spec"' in out.stderr, out.stderr
    assert kubectl("get", "configmap", "strict").returncode == 1


def test_rbac_in_short_who_may_do_what(kubectl):
    nobody = kubectl("get", "configmaps", who="nobody")
    assert nobody.returncode == 1
    assert 'User "somebody" cannot list resource "configmaps" in API group "" in the namespace "default"' in (
        nobody.stderr
    )
    # the controller-manager reads everything and writes only its Leases in kube-system
    assert kubectl("get", "configmaps", "-A", who="controller-manager").returncode == 0
    cm_write = kubectl("apply", "-f", "-", stdin=configmap("by-cm", a="b"), who="controller-manager")
    assert cm_write.returncode == 1 and "forbidden" in cm_write.stderr.lower(), cm_write.stderr
    # a node writes its own Node object only (the Node authorizer)
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1", "labels": {"ksha": "t"}}}
    own = kubectl("apply", "-f", "-", stdin=json.dumps(node), who="node1")
    assert own.returncode == 0 and "node/node1 created" in own.stdout, own.stderr
    other = kubectl("apply", "-f", "-", stdin=json.dumps({**node, "metadata": {"name": "node2"}}), who="node1")
    assert other.returncode == 1 and 'User "system:node:node1" cannot' in other.stderr, other.stderr
    assert kubectl("get", "nodes", "-l", "ksha=t", "-o", "name").stdout.split() == ["node/node1"]


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "probes.ksha.example.com"},
    "spec": {
        "group": "ksha.example.com",
        "names": {"kind": "Probe", "plural": "probes", "singular": "probe", "listKind": "ProbeList"},
        "scope": "Namespaced",
        "versions": [{"name": "v1", "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}  # fmt: skip


def test_a_custom_resource_is_served_once_its_definition_is_established(kubectl):
    before = kubectl("get", "probes")
    assert before.returncode == 1 and 'the server doesn\'t have a resource type "probes"' in before.stderr
    assert kubectl("apply", "-f", "-", stdin=json.dumps(CRD)).returncode == 0
    wait = kubectl("wait", "--for", "condition=established", "--timeout=20s", "crd/probes.ksha.example.com")
    assert wait.returncode == 0, wait.stderr
    cr = {"apiVersion": "ksha.example.com/v1", "kind": "Probe", "metadata": {"name": "p1", "namespace": "default"},
          "spec": {"every": "50ms"}}  # fmt: skip
    made = kubectl("apply", "-f", "-", stdin=json.dumps(cr))
    assert made.returncode == 0 and "probe.ksha.example.com/p1 created" in made.stdout, made.stderr
    got = json.loads(kubectl("get", "probes", "p1", "-o", "json").stdout)
    assert got["spec"] == {"every": "50ms"}
