"""`ksha-lab down` leaves nothing behind, and is safe to run twice. Runs last among the lab tests."""

import subprocess
import sys
from pathlib import Path

from ksha_lab import core

KSHA_LAB = Path(sys.executable).parent / "ksha-lab"


def test_down_twice_leaves_no_process_mount_or_bridge(lab):
    for _ in range(2):
        run = subprocess.run([str(KSHA_LAB), "down"], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert core.leftovers() == {"processes": [], "mounts": [], "bridges": []}
        assert not core.STATE.exists()
    assert subprocess.run(["pgrep", "-x", "systemd-nspawn"], capture_output=True).returncode == 1
    assert " overlay " not in Path("/proc/mounts").read_text()
    bridges = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
    assert core.BRIDGE not in bridges
