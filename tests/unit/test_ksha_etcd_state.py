"""salt/_states/ksha_etcd.py: when running_with_current_config restarts etcd, under Salt's loader mock.

The "etcd" here is a real process (a copy of sleep, so the binary check has a file of its own to
compare and replace); its unit's MainPID (ksha.changed_since_start's systemctl call) and the
rolling-restart command are what the mock stands in for. The restart itself (an etcd lock, one member at a time) is shown in the lab.
"""

import os
import shutil
import subprocess
import time

import pytest

from tests.conftest import load_salt_module

state = load_salt_module("states", "ksha_etcd")
# what the process runs with: the real ksha.changed_since_start, its systemctl call mocked
ksha_module = load_salt_module("modules")


@pytest.fixture
def etcd(tmp_path):
    """A running process from its own binary file; yields (process, binary path)."""
    binary = tmp_path / "etcd"
    shutil.copy2(shutil.which("sleep"), binary)
    proc = subprocess.Popen([str(binary), "600"])
    time.sleep(0.1)
    yield proc, binary
    proc.kill()
    proc.wait()


@pytest.fixture(autouse=True)
def progress_file(tmp_path, monkeypatch):
    """The restart's progress file in tmp, never this machine's /run."""
    monkeypatch.setattr(state, "RESTART_PROGRESS", str(tmp_path / "restart.progress"))


@pytest.fixture
def restarts():
    return []


@pytest.fixture
def configure_loader_modules(etcd, restarts):
    proc, _ = etcd

    def run_all(cmd, **kwargs):
        restarts.append(cmd)
        return {"retcode": 0, "stdout": "", "stderr": ""}

    settings = {
        "unit_restart_s": 135,
        "client_port": 2379,
        "cacert": "/etc/etcd/pki/ca.crt",
        "cert": "/etc/etcd/pki/admin.crt",
        "key": "/etc/etcd/pki/admin.key",
        "client_urls": {
            "master1": "https://10.0.0.1:2379",
            "master2": "https://10.0.0.2:2379",
            "master3": "https://10.0.0.3:2379",
        },
    }
    # etcd's member list: master3 is in pillar but was only added, never started (no client URL)
    listed = {
        "result": True,
        "members": [
            {"name": "master1", "client_urls": ["https://10.0.0.1:2379"]},
            {"name": "master2", "client_urls": ["https://10.0.0.2:2379"]},
            {"name": "", "client_urls": []},
        ],
    }
    return {
        ksha_module: {"__salt__": {"cmd.run": lambda cmd, **kwargs: str(proc.pid), "cmd.run_all": run_all}},
        state: {
            "__opts__": {"test": False},
            "__grains__": {"id": "master1"},
            "__salt__": {
                "ksha.changed_since_start": ksha_module.changed_since_start,
                "ksha.journal_tail": ksha_module.journal_tail,
                "cmd.run_all": run_all,
                "ksha_etcd.settings": lambda: settings,
                "ksha_etcd.health": lambda: {"healthy": True},
                "ksha_etcd.members": lambda: listed,
            },
        },
    }


def test_unchanged_config_and_binary_is_left_running(etcd, tmp_path, restarts):
    _, binary = etcd
    conf = tmp_path / "etcd.env"
    conf.write_text("ETCD_NAME=master1\n")
    os.utime(conf, (time.time() - 3600, time.time() - 3600))
    ret = state.running_with_current_config("etcd", watched=[str(conf), "/nonexistent"], binary=str(binary))
    assert ret == {"name": "etcd", "result": True, "changes": {}, "comment": "etcd runs with its current configuration"}
    assert restarts == []


def test_a_changed_file_restarts_under_the_lock_and_test_mode_only_says_so(etcd, tmp_path, restarts):
    conf = tmp_path / "etcd.env"
    conf.write_text("ETCD_SNAPSHOT_COUNT=5\n")  # written after the process started
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(state.__opts__, "test", True)
        ret = state.running_with_current_config("etcd", watched=[str(conf)])
    assert ret["result"] is None and ret["changes"] == {}
    assert ret["comment"] == f"etcd would be restarted, one member at a time: changed {conf}"
    assert restarts == []

    ret = state.running_with_current_config("etcd", watched=[str(conf)])
    assert ret["result"] is True and ret["changes"] == {"restarted": "etcd", "because": [str(conf)]}
    [cmd] = restarts
    # `timeout` ends the whole process group (etcdctl and its script) when the budget is spent
    assert cmd[:4] == ["timeout", "-k", "10", str(state._restart_budget(3, 120, 135))]
    assert cmd[4:6] == ["etcdctl", "--endpoints=https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379"]
    assert cmd[6:10] == ["lock", "ksha-etcd-rolling-restart", "--", "/bin/sh"]
    # the started others are waited for before the restart (not master3, never started), this member after it
    script = cmd[-1]
    assert "wait_healthy https://10.0.0.2:2379 ||" in script and "10.0.0.3" not in script
    assert script.index("wait_healthy https://10.0.0.2:2379") < script.index("systemctl restart etcd")
    assert script.index("systemctl restart etcd") < script.rindex("wait_healthy https://10.0.0.1:2379")


def test_another_binary_restarts(etcd, tmp_path, restarts):
    release = tmp_path / "opt-etcd"
    shutil.copy2(shutil.which("sleep"), release)
    link = tmp_path / "usr-local-bin-etcd"
    link.symlink_to(release)
    _, binary = etcd
    ret = state.running_with_current_config("etcd", watched=[], binary=str(link))
    assert ret["result"] is True
    assert ret["changes"]["because"] == [f"runs {binary}, not {release}"]
    assert len(restarts) == 1


def test_a_replaced_binary_restarts(etcd, restarts):
    _, binary = etcd
    binary.unlink()  # a package upgrade replaces the file the process runs
    shutil.copy2(shutil.which("sleep"), binary)
    ret = state.running_with_current_config("etcd", watched=[], binary=str(binary))
    assert ret["changes"]["because"] == [f"{binary} was replaced"]


def test_a_failed_restart_fails_with_its_step_and_error(tmp_path):
    conf = tmp_path / "etcd.env"
    conf.write_text("x\n")
    progress = tmp_path / "progress"

    def run_all(cmd, **kw):
        if cmd[0] == "journalctl":
            return {"retcode": 0, "stdout": "etcd: request timed out"}
        progress.write_text(progress.read_text() + "10:00:01 holding the lock\n10:00:01 restarting etcd\n")
        return {"retcode": 1, "stdout": "", "stderr": "etcd at https://x:2379 not healthy after 120 s: x is unhealthy"}

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(state.__salt__, "cmd.run_all", run_all)
        mp.setitem(ksha_module.__salt__, "cmd.run_all", run_all)  # the journal, through ksha.journal_tail
        ret = state.running_with_current_config("etcd", watched=[str(conf)], progress=str(progress))
    assert ret["result"] is False and ret["changes"] == {}
    lines = ret["comment"].splitlines()
    assert lines[0] == "rolling restart of etcd failed, exit 1, at step: restarting etcd"
    assert lines[1] == "stderr: etcd at https://x:2379 not healthy after 120 s: x is unhealthy"
    assert lines[2].startswith("steps: ") and lines[2].endswith("10:00:01 restarting etcd")
    assert lines[-2:] == ["etcd log (last lines):", "etcd: request timed out"]


# (case, the command's result, progress file, the comment's first line)
FAILURES = [
    (
        "Salt's timeout while queued for the lock: it says so, not an empty reason",
        {"retcode": 1, "stdout": "etcdctl lock ... : Timed out after 810 seconds", "stderr": ""},
        "10:00:00 waiting for the ksha-etcd-rolling-restart lock\n",
        "rolling restart of etcd failed, timed out after 810 s (the budget for the lock queue and this restart), "
        "at step: waiting for the ksha-etcd-rolling-restart lock",
    ),
    (
        "coreutils' timeout ended it while etcd restarted",
        {"retcode": 124, "stdout": "", "stderr": ""},
        "10:00:00 waiting for the lock\n10:00:05 holding the lock\n10:00:09 restarting etcd\n",
        "rolling restart of etcd failed, timed out after 810 s (the budget for the lock queue and this restart), "
        "at step: restarting etcd",
    ),
    (
        "the others never became healthy",
        {"retcode": 1, "stdout": "", "stderr": "etcd at https://b:2379 not healthy after 120 s"},
        "10:00:00 waiting for the lock\n10:00:02 waiting for the other members to be healthy\n",
        "rolling restart of etcd failed, exit 1, at step: waiting for the other members to be healthy",
    ),
    (
        "etcdctl itself failed before the script ran, output on stdout",
        {"retcode": 1, "stdout": "Error: context deadline exceeded", "stderr": ""},
        "",
        "rolling restart of etcd failed, exit 1, at step: before it started",
    ),
]


@pytest.mark.parametrize("case, out, progress, first", FAILURES, ids=[f[0] for f in FAILURES])
def test_restart_failure_names_the_step_and_the_cause(case, out, progress, first):
    comment = state._restart_failure("etcd", out, progress, 810)
    assert comment.splitlines()[0] == first
    if "context deadline" in out["stdout"]:
        assert "stdout: Error: context deadline exceeded" in comment


def test_a_stopped_service_is_left_to_service_running(restarts):
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(ksha_module.__salt__, "cmd.run", lambda cmd, **kwargs: "0")
        ret = state.running_with_current_config("etcd", watched=["/etc/hostname"])
    assert ret["result"] is True and ret["comment"] == "etcd is not running; nothing to restart"
    assert restarts == []
