"""Phase 6 on the lab, as far as it is built: the container runtime on every node.

containerd runs for real in every lab host (Debian's containerd 1.6, runc and the CNI plugins,
in the lab's base as the formula names them); nothing of it is a stand-in. Checked with its own
client, ``ctr``, and ``containerd config dump`` (what the daemon makes of ksha's config.toml).
"""

import re

import pytest

from tests.lab.conftest import converged_lab, failed_states

NODES = ["master1", "master2", "master3", "node1", "node2", "node3"]
MIRROR = "https://mirror.ksha.invalid"
INSECURE = "10.239.0.250:5000"


@pytest.fixture(scope="module")
def nodes_lab(_lab_session):
    """The shared converged cluster (orch.ksha reaches the nodes phase)."""
    return converged_lab()


def cri_plugin(lab, host):
    """The CRI plugin's row of ``ctr plugins ls`` on `host` ([] when ctr cannot ask containerd)."""
    out = lab.exec(lab.hosts[host], "ctr", "plugins", "ls")
    return [line.split() for line in out.stdout.splitlines() if re.match(r"io\.containerd\.grpc\.v1\s+cri\s", line)]


def main_pid(lab, host):
    return lab.exec(lab.hosts[host], "systemctl", "show", "-p", "MainPID", "--value", "containerd").stdout.strip()


def dumped(lab, host):
    """containerd's whole configuration as the daemon reads ksha's config.toml."""
    out = lab.exec(lab.hosts[host], "containerd", "config", "dump", check=True)
    return out.stdout


def test_every_node_runs_containerd_with_the_cri_plugin_and_ksha_s_config(nodes_lab):
    lab, _, states = nodes_lab
    assert states["ksha-phase-nodes-container-runtime-ready"]["result"] is True
    for host in NODES:
        version = lab.exec(lab.hosts[host], "ctr", "version")
        assert version.returncode == 0, (host, version.stderr)
        assert re.search(r"Server:\s+Version:\s+1\.6\.", version.stdout), (host, version.stdout)
        assert cri_plugin(lab, host) == [["io.containerd.grpc.v1", "cri", "linux/amd64", "ok"]], host
        assert lab.exec(lab.hosts[host], "systemctl", "is-enabled", "containerd").stdout.strip() == "enabled"
        config = dumped(lab, host)
        assert "SystemdCgroup = true" in config, host
        assert 'sandbox_image = "registry.k8s.io/pause:3.9"' in config, host
        assert 'bin_dir = "/usr/lib/cni"' in config, host
        head = lab.exec(lab.hosts[host], "head", "-1", "/etc/containerd/config.toml").stdout
        assert head.startswith("# Managed by Salt (ksha.containerd)"), host


def test_a_registry_change_restarts_containerd_once_and_the_same_pillar_again_leaves_it_alone(nodes_lab, lab_pillar):
    """A docker.io mirror and an insecure registry in pillar: ksha.containerd on node1 writes
    them (containerd reads them: config dump) and restarts containerd once; applied again, it
    changes nothing and containerd keeps running. The original pillar applied puts node1 back."""
    lab, salt, _ = nodes_lab
    before = main_pid(lab, "node1")

    def registries(ksha):
        ksha.setdefault("containerd", {}).update(registry_mirrors=[MIRROR], insecure_registries=[INSECURE])

    lab_pillar.edit(registries)
    out = salt.salt("node1", "state.apply", "ksha.containerd")["node1"]
    assert not failed_states(out), failed_states(out)
    changed = sorted(s["__id__"] for s in out.values() if s["changes"])
    assert changed == ["ksha-containerd-config", "ksha-containerd-running"], changed
    restarted = main_pid(lab, "node1")
    assert restarted not in (before, "0")
    config = dumped(lab, "node1")
    assert f'endpoint = ["{MIRROR}", "https://registry-1.docker.io"]' in config
    assert re.search(rf'configs\."{re.escape(INSECURE)}"\.tls\]\s+ca_file = ""\s+cert_file = ""\s+'
                     r'insecure_skip_verify = true', config), config  # fmt: skip
    assert cri_plugin(lab, "node1")[0][-1] == "ok"

    again = salt.salt("node1", "state.apply", "ksha.containerd")["node1"]
    assert not failed_states(again) and not [s for s in again.values() if s["changes"]]
    assert main_pid(lab, "node1") == restarted

    lab_pillar.restore()
    back = salt.salt("node1", "state.apply", "ksha.containerd")["node1"]
    assert not failed_states(back), failed_states(back)
    assert MIRROR not in dumped(lab, "node1")
    lab_pillar.converged()


def test_a_stopped_containerd_is_started_again_by_a_highstate(nodes_lab):
    lab, salt, _ = nodes_lab
    host = lab.hosts["node2"]
    lab.exec(host, "systemctl", "stop", "containerd", check=True)
    assert cri_plugin(lab, "node2") == []
    out = salt.salt("node2", "state.highstate")["node2"]
    assert not failed_states(out), failed_states(out)
    running = next(s for s in out.values() if s["__id__"] == "ksha-containerd-running")
    assert running["changes"] == {"containerd": True}, running
    assert cri_plugin(lab, "node2")[0][-1] == "ok"
