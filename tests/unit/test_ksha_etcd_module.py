"""salt/_modules/ksha_etcd.py against a real etcd (the distro's, as in the lab) serving TLS with
client certificates, on this machine on free ports; its certificates come from a test CA.

etcd-server and etcd-client are dependencies of the test suite (Makefile APT_PACKAGES, installed
by `make setup`): without them these tests fail, they do not skip."""

import json
import os
import shutil
import subprocess
import time
from unittest.mock import patch

import pytest

from ksha_lab.standins import pki
from tests.conftest import free_port, load_salt_module, model_functions, stop_process

ksha_etcd = load_salt_module("modules", "ksha_etcd")

# etcd's log line for a client refused in the TLS handshake, by who the client is
REFUSED = {
    "nobody": "tls: client didn't provide a certificate",
    "stranger": "x509: certificate signed by unknown authority",
}


def run_all(cmd, python_shell=False, env=None, output_loglevel=None, timeout=None):
    """cmd.run_all's contract, by subprocess (the module only needs this much of Salt)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    return {"retcode": proc.returncode, "stdout": proc.stdout.strip(), "stderr": proc.stderr.strip()}


def write_cert(directory, name, key_pem, cert_pem):
    (directory / f"{name}.key").write_bytes(key_pem)
    (directory / f"{name}.crt").write_bytes(cert_pem)


@pytest.fixture(scope="module")
def etcd_pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = pki.make_ca("ksha test etcd CA")
    (d / "ca.crt").write_bytes(pki.ca_pem(ca_cert))
    write_cert(d, "server", *pki.make_server_cert(ca_key, ca_cert, "m1", ["m1", "localhost", "127.0.0.1"]))
    write_cert(d, "admin", *pki.make_server_cert(ca_key, ca_cert, "ksha-etcd-admin", ["ksha-etcd-admin"]))
    other_key, other_ca = pki.make_ca("not the etcd CA")
    write_cert(d, "stranger", *pki.make_server_cert(other_key, other_ca, "stranger", ["stranger"]))
    return d


@pytest.fixture(scope="module")
def etcd_server(etcd_pki, tmp_path_factory):
    missing = [tool for tool in ("etcd", "etcdctl") if not shutil.which(tool)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: etcd-server and etcd-client are dependencies of these tests "
            "(Makefile APT_PACKAGES); install them with `make setup`",
            pytrace=False,
        )
    run_dir = tmp_path_factory.mktemp("etcd")
    data, log = run_dir / "data", run_dir / "etcd.log"
    client, peer = free_port(), free_port()
    tls = [
        f"--cert-file={etcd_pki / 'server.crt'}", f"--key-file={etcd_pki / 'server.key'}",
        f"--trusted-ca-file={etcd_pki / 'ca.crt'}", "--client-cert-auth",
        f"--peer-cert-file={etcd_pki / 'server.crt'}", f"--peer-key-file={etcd_pki / 'server.key'}",
        f"--peer-trusted-ca-file={etcd_pki / 'ca.crt'}", "--peer-client-cert-auth",
    ]  # fmt: skip
    # etcd logs to a file, not a pipe: nothing has to drain it, and the tests read what it refused
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            ["etcd", "--name=m1", f"--data-dir={data}",
             f"--listen-client-urls=https://127.0.0.1:{client}", f"--advertise-client-urls=https://127.0.0.1:{client}",
             f"--listen-peer-urls=https://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=https://127.0.0.1:{peer}",
             f"--initial-cluster=m1=https://127.0.0.1:{peer}", *tls],
            stdout=subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
    try:
        yield {"client": client, "peer": peer, "data": data, "proc": proc, "log": log}
    finally:
        stop_process(proc)


@pytest.fixture
def configure_loader_modules(etcd_pki, etcd_server, tmp_path):
    ksha = {
        "hosts": [{"name": "m1", "ip": "127.0.0.1"}],
        "groups": {"etcd": ["m1"], "kube-master": ["m1"]},
        "etcd": {
            "client_port": etcd_server["client"],
            "peer_port": etcd_server["peer"],
            "pki": {"dir": str(etcd_pki)},
            "data_dir": str(tmp_path / "restored"),
            "backup": {"dir": str(tmp_path / "backups")},
        },
    }
    return {ksha_etcd: {"__salt__": {"cmd.run_all": run_all, **model_functions(ksha, "m1")}}}


@pytest.fixture
def healthy(etcd_server):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ksha_etcd.health()["healthy"]:
            return
        time.sleep(0.2)
    pytest.fail("the test etcd did not become healthy; its log ends:\n" + etcd_server["log"].read_text()[-4000:])


def test_settings_from_pillar(etcd_server, etcd_pki):
    conf = ksha_etcd.settings()
    assert conf["client_urls"] == {"m1": f"https://127.0.0.1:{etcd_server['client']}"}
    assert conf["cert"] == str(etcd_pki / "admin.crt") and conf["cacert"] == str(etcd_pki / "ca.crt")


def test_members_status_and_health(healthy):
    listed = ksha_etcd.members()
    assert listed["result"] is True
    [member] = listed["members"]
    assert member["name"] == "m1" and member["learner"] is False
    [row] = ksha_etcd.status()["endpoints"]
    assert row["ok"] and row["is_leader"] and row["member_id"] == member["id"] and row["db_size"] > 0
    health = ksha_etcd.health()
    assert health == {
        "healthy": True,
        "members": {"m1": True},
        "learners": [],
        "leader": "m1",
        "cluster_id": listed["cluster_id"],
        "problems": [],
    }


def test_a_learner_that_never_started_is_reported_and_removed(healthy):
    added = ksha_etcd.member_add("m2", f"https://127.0.0.2:{free_port()}")
    assert added["result"] is True
    try:
        cluster = sorted(added["initial_cluster"].split(","))  # etcd lists members by ID
        assert cluster[0].startswith("m1=https://127.0.0.1:") and cluster[1].startswith("m2=https://127.0.0.2:")
        health = ksha_etcd.health()
        assert health["healthy"] is False
        assert f"member {added['id']} was added but has never started (no client URL)" in health["problems"]
        assert ksha_etcd.promote(added["id"])["result"] is False  # a learner not in sync cannot be promoted
    finally:
        assert ksha_etcd.member_remove(added["id"])["result"] is True
    assert ksha_etcd.health()["healthy"] is True


def test_snapshot_save_list_and_restore(healthy, etcd_pki, tmp_path):
    env = {"ETCDCTL_API": "3"}
    conf = ksha_etcd.settings()
    put = run_all(
        ["etcdctl", f"--endpoints={conf['client_urls']['m1']}", f"--cacert={conf['cacert']}",
         f"--cert={conf['cert']}", f"--key={conf['key']}", "put", "/ksha/probe", "kept"], env=env,
    )  # fmt: skip
    assert put["retcode"] == 0, put
    saved = ksha_etcd.snapshot_save()
    assert saved["result"] is True and saved["size"] > 0
    assert oct(os.stat(saved["path"]).st_mode & 0o777) == "0o600"
    assert [s["path"] for s in ksha_etcd.snapshots()] == [saved["path"]]
    restored = ksha_etcd.snapshot_restore(saved["path"], "m1", "m1=https://127.0.0.1:2380", "https://127.0.0.1:2380")
    assert restored["result"] is True, restored
    assert (tmp_path / "restored" / "member" / "snap" / "db").exists()
    again = ksha_etcd.snapshot_restore(saved["path"], "m1", "m1=https://127.0.0.1:2380", "https://127.0.0.1:2380")
    assert again == {"result": False, "comment": f"{tmp_path / 'restored'} exists; move it aside before restoring"}


def test_defrag(healthy):
    out = ksha_etcd.defrag()
    assert out["result"] is True and len(out["defragmented"]) == 1


def etcdctl(conf, *args, cert=None, key=None):
    cmd = ["etcdctl", f"--endpoints={conf['client_urls']['m1']}", f"--cacert={conf['cacert']}", "--dial-timeout=2s"]
    if cert:
        cmd += [f"--cert={cert}", f"--key={key}"]
    return run_all([*cmd, "--command-timeout=3s", *args], env={"ETCDCTL_API": "3"})


@pytest.mark.parametrize("who", ["nobody", "stranger"])
def test_clients_without_a_certificate_of_the_etcd_ca_are_refused(healthy, etcd_server, etcd_pki, who):
    conf = ksha_etcd.settings()
    # the server is there: the same request with the admin certificate is answered
    admitted = etcdctl(conf, "get", "/ksha/probe", cert=conf["cert"], key=conf["key"])
    assert admitted["retcode"] == 0, admitted
    log = etcd_server["log"]
    seen = log.stat().st_size
    cert = {"cert": etcd_pki / "stranger.crt", "key": etcd_pki / "stranger.key"} if who == "stranger" else {}
    out = etcdctl(conf, "get", "/ksha/probe", **cert)
    assert out["retcode"] != 0 and out["stdout"] == "", out
    # etcdctl only says "context deadline exceeded", as it does for a server that is not there at all:
    # the refusal itself is in etcd's log, a connection from this client rejected in the TLS handshake
    deadline = time.monotonic() + 5
    while True:
        with open(log, "rb") as f:
            f.seek(seen)
            lines = f.read().decode(errors="replace").splitlines()
        rejected = [line for line in lines if 'rejected connection from "127.0.0.1:' in line]
        if any(REFUSED[who] in line for line in rejected) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rejected and all(REFUSED[who] in line for line in rejected), "\n".join(lines[-20:])


def test_members_asked_with_endpoints_and_the_admin_certificate_read_no_pillar(healthy, etcd_server, etcd_pki):
    """salt-run ksha.plan asks so, with the master's model, before the preflight refreshes the
    minions' pillars: a stale or invalid pillar on the member must not matter."""
    files = {
        "cacert": str(etcd_pki / "ca.crt"),
        "cert": str(etcd_pki / "admin.crt"),
        "key": str(etcd_pki / "admin.key"),
    }

    def no_model():
        raise AssertionError("ksha_etcd.members read the pillar's model")

    url = f"https://127.0.0.1:{etcd_server['client']}"
    with patch.dict(ksha_etcd.__salt__, {"ksha.model": no_model}):
        listed = ksha_etcd.members(endpoints=url, **files)
        assert listed["result"] is True and [m["name"] for m in listed["members"]] == ["m1"]
        # anything left out comes from the model, which this minion cannot give here
        with pytest.raises(AssertionError, match="read the pillar"):
            ksha_etcd.members(endpoints=url, cacert=files["cacert"], cert=files["cert"])
    # the certificate is checked as before: a stranger's is refused by etcd
    strange = ksha_etcd.members(
        endpoints=url, cacert=files["cacert"], cert=str(etcd_pki / "stranger.crt"), key=str(etcd_pki / "stranger.key")
    )
    assert strange["result"] is False and strange["comment"]


def test_errors_come_back_as_comments(configure_loader_modules):
    out = ksha_etcd.members(endpoints=f"https://127.0.0.1:{free_port()}")
    assert out["result"] is False and out["comment"]
    assert json.dumps(out)  # plain data for Salt's outputters
