"""The lab for tests: one session-wide lab, torn down at the end (also on failure
or interrupt), with helpers that run salt / salt-run against its master and
parse their JSON output.
"""

import json
import os
import shutil
import subprocess
import time

import pytest
import yaml

from ksha_lab import core


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


class LabSalt:
    """salt / salt-run against the lab master, JSON in and out."""

    def __init__(self, lab: core.Lab):
        self.lab = lab

    def _json(self, tool, *args, timeout=600):
        cmd = self.lab.salt_cmd(tool, "--out=json", *args)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        try:
            data = json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError:
            data = None
        return proc.returncode, data, proc

    def salt(self, targets, fun, *args, timeout=600):
        """`fun` on a comma-separated list of minions: {minion: return}."""
        rc, data, proc = self._json(
            "salt", "--static", f"--timeout={timeout}", "-L", targets, fun, *args, timeout=timeout + 30
        )
        return data or {}

    def run(self, fun, *args, timeout=600):
        return self._json("salt-run", fun, *args, timeout=timeout)

    def orchestrate(self, *args):
        """state.orchestrate orch.ksha: (exit code, {state ID: state return})."""
        rc, data, proc = self.run("state.orchestrate", "orch.ksha", *args)
        assert data is not None and isinstance(data["data"], dict), (data, proc.stderr[-2000:])
        states = next(iter(data["data"].values()))
        assert isinstance(states, dict), states  # a list is a render error
        return rc, {key.split("_|-")[1]: value for key, value in states.items()}


def _lab_ready():
    lab = core.Lab.load()
    if lab is None or not all(lab.nspawn_pid(h) for h in lab.hosts.values()):
        return None
    return lab if all(lab.ping(list(lab.hosts), timeout=5).values()) else None


@pytest.fixture(scope="session")
def _lab_session():
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn") or not shutil.which("debootstrap"):
        pytest.fail("lab tests need root, systemd-nspawn and debootstrap (make setup); skip them with -m 'not lab'")
    try:
        yield core.up("seed")
    finally:
        core.down()


@pytest.fixture
def lab(_lab_session):
    """The seed lab, brought up again if a test took it down."""
    return _lab_ready() or core.up("seed")


@pytest.fixture
def lab_salt(lab):
    return LabSalt(lab)


class LabPillar:
    """The lab's ksha pillar (``ksha.sls``) as a test changes it; the ``lab_pillar`` fixture puts
    the original back after the test. Every minion's pillar is refreshed after each change."""

    def __init__(self, lab, salt):
        self.lab, self.salt = lab, salt
        self.path = lab.pillar_dir / "ksha.sls"
        self.original = self.path.read_text()

    def write(self, text):
        self.path.write_text(text)
        self.salt.salt(",".join(self.lab.hosts), "saltutil.refresh_pillar", "wait=True")

    def edit(self, change):
        """``change(ksha)`` mutates a fresh copy of the original ``ksha`` dict, which is then written:
        each edit starts from the pillar the test began with, not from the previous edit."""
        pillar = yaml.safe_load(self.original)
        change(pillar["ksha"])
        self.write(yaml.safe_dump(pillar))

    def restore(self):
        self.write(self.original)


@pytest.fixture
def lab_pillar(_lab_session):
    """Edit the lab's ksha pillar for one test (``lab_pillar.edit(fn)``); the original comes back afterwards.
    It edits the lab that is up (a module's fixture set it up): it never brings a lab up itself."""
    lab = core.Lab.load()
    assert lab is not None, "no lab is up"
    pillar = LabPillar(lab, LabSalt(lab))
    yield pillar
    pillar.restore()


def failed_states(out):
    """The states that did not succeed, as {state ID: comment}, for one state run ({key: state
    return}: a minion's highstate, the orchestration's states); for salt's per-minion output
    ({minion: state run}), {minion: that} for every minion with one (or the minion's error as is)."""
    if all(isinstance(v, dict) and "result" in v for v in out.values()):
        return {s.get("__id__", key): s["comment"] for key, s in out.items() if s["result"] is not True}
    failed = {}
    for minion, states in out.items():
        if not isinstance(states, dict):
            failed[minion] = states
        elif bad := failed_states(states):
            failed[minion] = bad
    return failed


def wait_for(predicate, timeout, step=0.2):
    """The predicate's first truthy value within `timeout` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def synced_lab():
    """For module fixtures: the seed lab (brought up again if a test took it down), with the
    master's custom modules synced (a fresh lab's master has not synced ksha's runner yet)."""
    lab = _lab_ready() or core.up("seed")
    salt = LabSalt(lab)
    rc, _, proc = salt.run("saltutil.sync_all")
    assert rc == 0, proc.stderr
    return lab, salt
