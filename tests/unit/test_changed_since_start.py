"""salt/_modules/ksha.py's changed_since_start, on real processes: what a unit's process does not
run with yet. Only systemd's MainPID is mocked (``systemctl show``); the rolling restarts that
read it are shown in the lab."""

import os
import shutil
import subprocess
import time

import pytest

from tests.conftest import load_salt_module

module = load_salt_module("modules")


@pytest.fixture
def run(monkeypatch):
    """Start `argv` as the unit's main process; yields a starter, kills what it started."""
    started = []

    def start(*argv):
        proc = subprocess.Popen([str(a) for a in argv])
        started.append(proc)
        monkeypatch.setattr(module, "__salt__", {"cmd.run": lambda cmd, **kw: str(proc.pid)}, raising=False)
        time.sleep(0.2)  # the interpreter has read its script
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def script(path, body="sleep 600"):
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def test_a_binary_run_as_it_is_has_nothing_changed_and_a_newer_watched_file_has(run, tmp_path):
    binary = tmp_path / "etcd"
    shutil.copy2(shutil.which("sleep"), binary)
    conf = tmp_path / "etcd.env"
    conf.write_text("x\n")
    os.utime(conf, (time.time() - 3600, time.time() - 3600))
    run(binary, 600)
    assert module.changed_since_start("etcd", [str(conf)], str(binary)) == {
        "running": True,
        "changed": [],
        "comment": "etcd runs with its current configuration",
    }
    conf.write_text("y\n")
    assert module.changed_since_start("etcd", [str(conf)], str(binary))["changed"] == [str(conf)]


def test_a_script_is_what_its_interpreter_runs(run, tmp_path):
    """A program that is a script (the lab's stand-ins are Python scripts): the process's exe is the
    interpreter, so what tells a new one is the link's ctime (re-pointed) or the script's (written
    anew, whatever mtime tar gives it)."""
    release = script(tmp_path / "kube-apiserver-v1")
    link = tmp_path / "kube-apiserver"
    link.symlink_to(release)
    time.sleep(0.05)
    run(link, "--v=2")
    assert module.changed_since_start("kube-apiserver", [], str(link))["changed"] == []
    # a new release: the link points at another script
    other = script(tmp_path / "kube-apiserver-v2")
    link.unlink()
    link.symlink_to(other)
    assert module.changed_since_start("kube-apiserver", [], str(link))["changed"] == [f"{link} now points to {other}"]


def test_a_script_written_anew_in_place_is_replaced_whatever_its_mtime(run, tmp_path):
    release = script(tmp_path / "kube-apiserver")
    time.sleep(0.05)
    run(release)
    assert module.changed_since_start("kube-apiserver", [], str(release))["changed"] == []
    release.write_text("#!/bin/sh\nsleep 601\n")
    old = time.time() - 3600
    os.utime(release, (old, old))  # as tar extracts it: the archive's mtime
    assert module.changed_since_start("kube-apiserver", [], str(release))["changed"] == [f"{release} was replaced"]


def test_a_stopped_unit_is_not_running(monkeypatch):
    monkeypatch.setattr(module, "__salt__", {"cmd.run": lambda cmd, **kw: "0"}, raising=False)
    assert module.changed_since_start("kube-apiserver", ["/etc/hostname"], "/bin/sh") == {
        "running": False,
        "changed": [],
        "comment": "kube-apiserver is not running; nothing to restart",
    }
