"""The lab's kubelet and kube-proxy stand-ins (the node tarball's kubernetes/node/bin/), against the
kube-apiserver stand-in and a real etcd: the kubelet registers its Node and renews its Lease with
its client certificate, is NotReady while no container runtime answers, serves its TLS port with
its serving certificate; a certificate of another node is refused by the Node authorizer; a
kubelet gone silent is marked Unknown by the controller-manager's node lifecycle; kube-proxy reads
Services and EndpointSlices; what the real components refuse at start is refused. Read with the
real kubectl and openssl."""

import json
import shutil
import subprocess
import time

import pytest
import yaml

from tests.conftest import free_port
from tests.unit.test_standin_kubectl import kubeconfig
from tests.unit.test_standin_leader_election import until

pytestmark = pytest.mark.skipif(not shutil.which("kubectl"), reason="needs kubectl (make apt)")


@pytest.fixture
def node_env(standin_apiserver, tmp_path):
    """(start(component, *args) -> Popen, kubectl(*args, who=...) -> CompletedProcess, files, port, tmp)."""
    port, files, _ = standin_apiserver
    procs = []

    def start(component, *args):
        where = "node" if component in ("kubelet", "kube-proxy") else "server"
        proc = subprocess.Popen([str(files / f"kubernetes/{where}/bin/{component}"), *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        procs.append(proc)
        return proc

    def kubectl(*args, who="client"):
        conf = kubeconfig(files, port, who, tmp_path / f"{who}.conf")
        return subprocess.run(["kubectl", "--kubeconfig", str(conf), "--request-timeout=5s", *args],
                              capture_output=True, text=True, timeout=30)  # fmt: skip

    try:
        yield start, kubectl, files, port, tmp_path
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def kubelet_config(files, tmp, **extra):
    """A KubeletConfiguration as ksha writes one, with a runtime socket nothing listens on."""
    conf = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(files / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "systemd",
        "clusterDNS": ["10.233.0.3"],
        "clusterDomain": "cluster.local",
        "containerRuntimeEndpoint": f"unix://{tmp}/no-containerd.sock",
        "rotateCertificates": False,
        "tlsCertFile": str(files / "server.crt"),
        "tlsPrivateKeyFile": str(files / "server.key"),
        "address": "127.0.0.1",
        "port": free_port(),
        "healthzPort": free_port(),
        "nodeStatusUpdateFrequency": "1s",
        "nodeLeaseDurationSeconds": 4,
        **extra,
    }  # fmt: skip
    path = tmp / f"kubelet-{conf['port']}.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path, conf


def kubelet_args(files, port, tmp, name, who, config):
    conf = kubeconfig(files, port, who, tmp / f"kubelet-{name}-{who}.conf")
    return [f"--config={config}", f"--kubeconfig={conf}", f"--hostname-override={name}", "--node-ip=127.0.0.1"]


def node(kubectl, name):
    out = kubectl("get", "node", name, "-o", "json")
    return json.loads(out.stdout) if out.returncode == 0 else None


def ready(obj):
    return next((c for c in obj["status"]["conditions"] if c["type"] == "Ready"), None) if obj else None


def test_the_kubelet_registers_its_node_not_ready_without_a_runtime_and_renews_its_lease(node_env):
    start, kubectl, files, port, tmp = node_env
    config, _ = kubelet_config(files, tmp)
    proc = start("kubelet", *kubelet_args(files, port, tmp, "node1", "node1", config))
    registered = until(lambda: node(kubectl, "node1"), 15)
    assert registered, proc.stderr.read() if proc.poll() is not None else "no Node"
    assert registered["metadata"]["labels"]["kubernetes.io/hostname"] == "node1"
    assert registered["status"]["nodeInfo"]["kubeletVersion"] == "v1.30.8"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in registered["status"]["addresses"]
    condition = ready(registered)
    assert (condition["status"], condition["reason"]) == ("False", "KubeletNotReady")
    assert condition["message"].startswith("container runtime is down")
    wide = kubectl("get", "nodes", "--no-headers")
    assert wide.stdout.split()[:2] == ["node1", "NotReady"], wide.stdout

    # the Lease in kube-node-lease, held by the node, renewed every nodeLeaseDurationSeconds / 4
    def renewed():
        out = kubectl("get", "lease", "node1", "-n", "kube-node-lease", "-o", "json")
        return json.loads(out.stdout)["spec"] if out.returncode == 0 else None

    first = until(renewed, 10)
    assert first["holderIdentity"] == "node1" and first["leaseDurationSeconds"] == 4
    assert until(lambda: (renewed() or {}).get("renewTime", "") > first["renewTime"], 10)
    # the Lease is the heartbeat: an unchanged status is not posted again (nodeStatusReportFrequency, 5m)
    assert node(kubectl, "node1")["metadata"]["resourceVersion"] == registered["metadata"]["resourceVersion"]


def test_the_node_authorizer_refuses_a_kubelet_with_another_node_s_certificate(node_env):
    start, kubectl, files, port, tmp = node_env
    config, _ = kubelet_config(files, tmp)
    # node2 runs with node1's client certificate: it may not create (or write) the Node node2
    proc = start("kubelet", *kubelet_args(files, port, tmp, "node2", "node1", config))
    time.sleep(4)
    assert node(kubectl, "node2") is None
    assert proc.poll() is None  # it keeps trying, as the real one does
    # what the authorizer says, through the real kubectl with another node's identity
    config1, _ = kubelet_config(files, tmp)
    start("kubelet", *kubelet_args(files, port, tmp, "node1", "node1", config1))
    assert until(lambda: node(kubectl, "node1"), 15)
    out = kubectl("annotate", "node", "node1", "ksha/test=other", who="node2")
    assert out.returncode == 1
    assert 'nodes "node1" is forbidden: User "system:node:node2" cannot patch resource "nodes"' in out.stderr
    own = kubectl("annotate", "node", "node1", "ksha/test=own", who="node1")
    assert own.returncode == 0, own.stderr


def test_the_kubelet_serves_its_port_with_its_serving_certificate(node_env):
    start, kubectl, files, port, tmp = node_env
    config, conf = kubelet_config(files, tmp)
    start("kubelet", *kubelet_args(files, port, tmp, "node1", "node1", config))
    assert until(lambda: node(kubectl, "node1"), 15)
    served = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{conf['port']}", "-CAfile", str(files / "ca.crt"),
         "-verify_return_error"],
        input="", capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "Verify return code: 0 (ok)" in served.stdout, served.stdout + served.stderr
    assert "subject=CN = master1" in served.stdout  # server.crt, the serving certificate of the config
    health = subprocess.run(["curl", "-s", f"http://127.0.0.1:{conf['healthzPort']}/healthz"],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert health.stdout == "ok"


# (what is wrong, config edits or flags, what the stand-in prints)
REFUSED = [
    ("a field not in 1.30's KubeletConfiguration", {"noSuchField": 1}, 'unknown field "noSuchField"'),
    ("a nested field not in the reference", {"authentication": {"x509": {"clientCAFiles": "x"}}},
     'unknown field "authentication.x509.clientCAFiles"'),
    ("another apiVersion", {"apiVersion": "kubelet.config.k8s.io/v1alpha1"},
     'no kind "KubeletConfiguration" is registered for version "kubelet.config.k8s.io/v1alpha1"'),
    ("a flag not in 1.30's kubelet reference", ["--network-plugin=cni"], "unknown flag: --network-plugin"),
]  # fmt: skip


@pytest.mark.parametrize("case, edits, message", REFUSED, ids=[r[0] for r in REFUSED])
def test_the_kubelet_refuses_a_config_or_flag_not_of_1_30(node_env, case, edits, message):
    start, _, files, port, tmp = node_env
    config, _ = kubelet_config(files, tmp, **(edits if isinstance(edits, dict) else {}))
    args = kubelet_args(files, port, tmp, "node1", "node1", config) + (edits if isinstance(edits, list) else [])
    proc = start("kubelet", *args)
    assert proc.wait(15) == 1
    assert message in proc.stderr.read()


def proxy_config(files, port, tmp, who="kube-proxy", **extra):
    conf = kubeconfig(files, port, who, tmp / f"proxy-{who}.conf")
    health = free_port()
    data = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(conf)}, "clusterCIDR": "10.233.64.0/18",
            "hostnameOverride": "node1", "mode": "ipvs", "healthzBindAddress": f"127.0.0.1:{health}",
            "ipvs": {"syncPeriod": "1s"}, **extra}  # fmt: skip
    path = tmp / f"proxy-{who}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, health


def healthz(port):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/healthz"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    return out.stdout


def test_kube_proxy_reads_services_and_endpointslices_with_its_own_identity_only(node_env):
    start, kubectl, files, port, tmp = node_env
    config, health = proxy_config(files, port, tmp)
    proc = start("kube-proxy", f"--config={config}", "--hostname-override=node1")
    assert until(lambda: healthz(health) == "200", 15), proc.stderr.read() if proc.poll() is not None else "no 200"
    # with a node's certificate instead, it may not list Services: never healthy
    other, other_health = proxy_config(files, port, tmp, who="nobody")
    start("kube-proxy", f"--config={other}")
    time.sleep(3)
    assert healthz(other_health) == "503"
    assert kubectl("get", "services", "-A", who="kube-proxy").returncode == 0
    assert kubectl("get", "configmaps", "-A", who="kube-proxy").returncode == 1


@pytest.mark.parametrize(
    "edits, message",
    [({"mode": "userspace"}, 'mode: Invalid value: \\"userspace\\"'),
     ({"mode": "nftables"}, "feature gate 'NFTablesProxyMode' must be enabled"), ({"udpIdleTimeout": "1s"}, 'unknown field "udpIdleTimeout"'),
     ({"ipvs": {"syncPeriod": "1s", "masqueradeAll": True}}, 'unknown field "ipvs.masqueradeAll"')],
)  # fmt: skip
def test_kube_proxy_refuses_a_config_not_of_1_30(node_env, edits, message):
    start, _, files, port, tmp = node_env
    config, _ = proxy_config(files, port, tmp, **edits)
    proc = start("kube-proxy", f"--config={config}")
    assert proc.wait(15) == 1
    assert message in proc.stderr.read()


def test_the_controller_manager_marks_a_silent_kubelet_s_node_unknown(node_env):
    start, kubectl, files, port, tmp = node_env
    config, _ = kubelet_config(files, tmp)
    kubelet = start("kubelet", *kubelet_args(files, port, tmp, "node1", "node1", config))
    assert until(lambda: node(kubectl, "node1"), 15)
    cm = kubeconfig(files, port, "controller-manager", tmp / "cm.conf")
    start("kube-controller-manager", f"--kubeconfig={cm}", "--leader-elect=true", "--leader-elect-lease-duration=3s",
          "--leader-elect-renew-deadline=2s", "--leader-elect-retry-period=500ms",
          "--node-monitor-grace-period=3s", "--node-monitor-period=1s")  # fmt: skip
    time.sleep(4)
    assert ready(node(kubectl, "node1"))["status"] == "False"  # posted by its kubelet: left alone
    kubelet.kill()
    kubelet.wait()
    gone = until(lambda: (c := ready(node(kubectl, "node1")))["status"] == "Unknown" and c, 15)
    assert gone and (gone["reason"], gone["message"]) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
