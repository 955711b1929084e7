"""`ksha-lab down` leaves nothing behind, and is safe to run twice. Runs last among the lab tests."""

import subprocess
import sys
import urllib.request
from pathlib import Path

from ksha_lab import core, qingcloud_lab

KSHA_LAB = Path(sys.executable).parent / "ksha-lab"


def served(url):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_down_twice_leaves_no_process_mount_or_bridge(lab):
    release = lab.release_url("v1.30.8")
    assert served(release)  # the lab's Kubernetes release, on the bridge
    # a QingCloud data plane's haproxy a dead test session left (qingcloud_lab: its config is
    # under the lab's state)
    work = qingcloud_lab.workdir() / "dataplane"
    work.mkdir(parents=True, exist_ok=True)
    timeouts = "    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n"
    (work / "haproxy.cfg").write_text(f"listen left\n    bind {lab.master_ip}:39999\n    mode tcp\n{timeouts}")
    subprocess.run(["haproxy", "-D", "-f", str(work / "haproxy.cfg")], check=True)
    left = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in core.leftovers()["processes"]]
    assert any(cmd.startswith(b"haproxy") for cmd in left), left
    for _ in range(2):
        run = subprocess.run([str(KSHA_LAB), "down"], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        print((run.stderr + run.stdout).strip().splitlines()[-1:])  # "lab: down in X s (hosts Y s)"
        assert core.leftovers() == {"processes": [], "mounts": [], "bridges": [], "links": []}
        assert not core.STATE.exists()
    assert subprocess.run(["pgrep", "-x", "systemd-nspawn"], capture_output=True).returncode == 1
    assert " overlay " not in Path("/proc/mounts").read_text()
    bridges = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
    assert core.BRIDGE not in bridges
    assert not served(release)
