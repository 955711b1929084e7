"""Issue 5 in the lab: etcd over TLS on the seed's three masters, from bare hosts by orch.ksha.

etcd here is Debian's etcd-server 3.4 (the lab's package source); the certificates come from
Salt's x509_v2 with the CA key on master1 (the first etcd member).
"""

import datetime
import functools
import hashlib
import http.server
import re
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time

import pytest
from cryptography import x509

from ksha_lab.standins import pki
from tests.lab.conftest import converged_lab, failed_states, leaf_pki, orchestrate_ok, wait_for

MEMBERS = ["master1", "master2", "master3"]
PKI = "/etc/etcd/pki"


def etcdctl(lab, host, *args, cert="admin", endpoints=None, timeout=5):
    """etcdctl inside a lab host; cert: admin (ksha's), None (no client certificate) or a path stem."""
    urls = endpoints or ",".join(f"https://{lab.hosts[m].ip}:2379" for m in MEMBERS)
    cmd = ["env", "ETCDCTL_API=3", "etcdctl", f"--endpoints={urls}", f"--cacert={PKI}/ca.crt",
           "--dial-timeout=2s", f"--command-timeout={timeout}s"]  # fmt: skip
    if cert == "admin":
        cmd += [f"--cert={PKI}/admin.crt", f"--key={PKI}/admin.key"]
    elif cert:
        cmd += [f"--cert={cert}.crt", f"--key={cert}.key"]
    return lab.exec(lab.hosts[host], *cmd, *args, timeout=timeout + 30)


@pytest.fixture(scope="module")
def etcd_lab(_lab_session):
    """The shared converged cluster, and the states of the orchestration that bootstrapped it."""
    return converged_lab()


def health(salt, host="master1"):
    return salt.salt(host, "ksha_etcd.health")[host]


def test_orchestration_bootstraps_three_healthy_members_over_tls(etcd_lab):
    lab, salt, states = etcd_lab
    assert "ksha-phase-etcd-members-bootstrapped" in states
    h = health(salt)
    assert h["healthy"] is True, h["problems"]
    assert sorted(h["members"]) == MEMBERS and h["leader"] in MEMBERS
    # The bootstrap is recorded on every member: the next run will not bootstrap again.
    grains = salt.salt(",".join(MEMBERS), "grains.get", "ksha_etcd_cluster_id")
    assert set(grains.values()) == {h["cluster_id"]}


def test_second_orchestration_changes_nothing_anywhere(etcd_lab):
    """Right after the orchestration from bare hosts: the second run converges every phase
    with no change on any host (common, LB, etcd certificates and members), does not
    bootstrap etcd again, and the cluster keeps its ID."""
    lab, salt, _ = etcd_lab
    cluster_id = health(salt)["cluster_id"]
    again = orchestrate_ok(salt)
    assert "ksha-phase-etcd-members-bootstrapped" not in again
    assert {state_id: changed_on(ret) for state_id, ret in again.items()} == {state_id: [] for state_id in again}
    assert health(salt)["cluster_id"] == cluster_id


def changed_on(ret):
    """The minions where an orchestration step's states changed something."""
    minions = (ret.get("changes") or {}).get("ret") or {}
    return sorted(
        m
        for m, states in minions.items()
        if isinstance(states, dict) and any(isinstance(s, dict) and s.get("changes") for s in states.values())
    )


def test_only_tls_with_a_client_certificate_of_the_etcd_ca_is_served(etcd_lab):
    lab, salt, _ = etcd_lab
    ok = etcdctl(lab, "master2", "put", "/ksha/tls-probe", "1")
    assert ok.returncode == 0, ok.stderr
    refused = etcdctl(lab, "master2", "get", "/ksha/tls-probe", cert=None, timeout=3)
    assert refused.returncode != 0
    assert "bad certificate" in refused.stderr or "deadline exceeded" in refused.stderr, refused.stderr
    # A client certificate from another CA.
    ca_key, ca_cert = pki.make_ca("not the etcd CA")
    key, cert = pki.make_server_cert(ca_key, ca_cert, "intruder", ["intruder"])
    root = lab.hosts["master2"].root
    # (not /tmp: the container's /tmp is its own tmpfs, not the overlay written here)
    (root / "var/tmp/intruder.key").write_bytes(key)
    (root / "var/tmp/intruder.crt").write_bytes(cert)
    stranger = etcdctl(lab, "master2", "get", "/ksha/tls-probe", cert="/var/tmp/intruder", timeout=3)
    assert stranger.returncode != 0
    assert "bad certificate" in stranger.stderr or "deadline exceeded" in stranger.stderr, stranger.stderr
    # No plain-HTTP listener on the client or the peer port.
    for port in (2379, 2380):
        plain = lab.exec(
            lab.hosts["master2"], "curl", "-s", "--max-time", "3", f"http://{lab.hosts['master1'].ip}:{port}/version"
        )
        assert plain.returncode != 0 or "etcdserver" not in plain.stdout


def test_certificates_and_keys_are_where_and_how_they_should_be(etcd_lab):
    lab, salt, _ = etcd_lab
    for name in MEMBERS:
        host = lab.hosts[name]
        keys = lab.exec(host, "stat", "-c", "%n %U %a", f"{PKI}/server.key", f"{PKI}/peer.key", f"{PKI}/admin.key")
        assert keys.stdout.split("\n")[:3] == [
            f"{PKI}/server.key etcd 600",
            f"{PKI}/peer.key etcd 600",
            f"{PKI}/admin.key root 600",
        ]
        sans = lab.exec(host, "openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", f"{PKI}/server.crt").stdout
        assert f"DNS:{name}" in sans and f"IP Address:{host.ip}" in sans and "IP Address:127.0.0.1" in sans
        assert "DNS:localhost" in sans
    # The CA key exists only on the CA host.
    assert lab.exec(lab.hosts["master1"], "test", "-f", "/etc/ksha/etcd-ca/ca.key").returncode == 0
    for name in ["master2", "master3", "node1"]:
        found = lab.exec(
            lab.hosts[name],
            "sh",
            "-c",
            "ls /etc/ksha/etcd-ca 2>/dev/null; grep -rl 'PRIVATE KEY' /etc/ksha 2>/dev/null",
        )
        assert found.stdout.strip() == ""


def test_killing_the_leader_keeps_writes_going_and_it_rejoins(etcd_lab):
    lab, salt, _ = etcd_lab
    leader = health(salt)["leader"]
    others = [m for m in MEMBERS if m != leader]
    lab.kill(lab.hosts[leader])
    # the lab's kill (test_lifecycle.py has its stop): the host is gone, its minion with it
    assert lab.nspawn_pid(lab.hosts[leader]) is None
    assert lab.ping([leader], timeout=2) == {leader: False}
    endpoints = ",".join(f"https://{lab.hosts[m].ip}:2379" for m in others)
    written = wait_for(
        lambda: etcdctl(lab, others[0], "put", "/ksha/after-leader-loss", "yes", endpoints=endpoints).returncode == 0,
        15,
    )
    assert written, "the two remaining members did not accept a write"
    lab.boot(lab.hosts[leader])
    assert wait_for(lambda: lab.ping([leader], timeout=2)[leader], 90)
    rejoined = wait_for(lambda: health(salt, others[0])["healthy"], 60, step=2)
    assert rejoined, health(salt, others[0])["problems"]
    got = etcdctl(lab, leader, "get", "/ksha/after-leader-loss", "--print-value-only",
                  endpoints=f"https://{lab.hosts[leader].ip}:2379")  # fmt: skip
    assert got.stdout.strip() == "yes"


def etcd_unit_times(lab):
    """{member: (left active, entered active)} of its etcd unit, on the kernel's monotonic clock,
    which every host of the lab shares (microseconds; 0 when it never happened)."""
    times = {}
    for m in MEMBERS:
        out = lab.exec(lab.hosts[m], "systemctl", "show", "-p", "ActiveExitTimestampMonotonic",
                       "-p", "ActiveEnterTimestampMonotonic", "etcd", check=True).stdout  # fmt: skip
        shown = dict(line.split("=", 1) for line in out.split())
        times[m] = (int(shown["ActiveExitTimestampMonotonic"]), int(shown["ActiveEnterTimestampMonotonic"]))
    return times


def down_windows(before, after):
    """The members stopped or restarted between two ``etcd_unit_times``, each with its last time
    not active: from leaving active (stop) to active again (etcd tells systemd it is ready, which
    it does once it serves as a member of the cluster); one not active again is down till now."""
    windows = {}
    for m in after:
        if after[m] != before[m]:
            left, back = after[m]
            windows[m] = (left, back if back > left else float("inf"))
    return windows


def overlapping(windows):
    """The pairs of members that were down at the same time."""
    spans = sorted((start, end, m) for m, (start, end) in windows.items())
    return [(a[2], b[2]) for i, a in enumerate(spans) for b in spans[i + 1 :] if b[0] < a[1]]


def test_etcd_states_repair_config_and_cert_drift_restarting_one_member_at_a_time(etcd_lab):
    """``ksha.etcd`` (what a member's highstate runs of etcd; a master's whole highstate has its
    own drift test in test_loadbalancer.py) puts back a hand-edited setting, a hand-edited CA
    certificate and a removed certificate, restarting the two members one at a time, then
    changes nothing."""
    lab, salt, _ = etcd_lab
    assert wait_for(lambda: health(salt)["healthy"], 60, step=2)
    lab.exec(
        lab.hosts["master2"],
        "sed",
        "-i",
        "s/^ETCD_SNAPSHOT_COUNT=.*/ETCD_SNAPSHOT_COUNT=5/",
        "/etc/etcd/ksha-etcd.env",
        check=True,
    )
    lab.exec(lab.hosts["master2"], "sh", "-c", f"echo '# hand edit' >> {PKI}/ca.crt", check=True)
    lab.exec(lab.hosts["master3"], "rm", "-f", f"{PKI}/peer.crt", check=True)

    before = etcd_unit_times(lab)
    first = salt.salt(",".join(MEMBERS), "state.apply", "ksha.etcd", timeout=900)
    windows = down_windows(before, etcd_unit_times(lab))
    restarted = {
        m: [s for s in r.values() if s["__id__"] == "ksha-etcd-restarted-one-member-at-a-time"]
        for m, r in first.items()
    }
    assert restarted["master2"][0]["changes"]["restarted"] == "etcd"
    assert restarted["master3"][0]["changes"]["restarted"] == "etcd"
    assert not restarted["master1"][0]["changes"]
    assert failed_states(first) == {}
    assert sorted(windows) == ["master2", "master3"] and not overlapping(windows), windows
    assert "ETCD_SNAPSHOT_COUNT=10000" in lab.exec(lab.hosts["master2"], "cat", "/etc/etcd/ksha-etcd.env").stdout
    # the CA certificate as the CA host hands it out (x509_v2's pem_managed ran: ksha_x509 found it changed)
    ca_installed = {
        m: [s for s in r.values() if s["__id__"] == "ksha-etcd-pki-ca-certificate-installed"][0]
        for m, r in first.items()
    }
    assert [m for m, s in sorted(ca_installed.items()) if s["changes"]] == ["master2"], ca_installed
    assert ca_installed["master1"]["comment"] == "unless condition is true"
    ca_pem = (lab.hosts["master1"].root / "etc/ksha/etcd-ca/ca.crt").read_text()
    assert (lab.hosts["master2"].root / PKI.lstrip("/") / "ca.crt").read_text() == ca_pem
    assert wait_for(lambda: health(salt)["healthy"], 30, step=1)

    second = salt.salt(",".join(MEMBERS), "state.apply", "ksha.etcd", timeout=900)
    changed = {m: [s["__id__"] for s in r.values() if s["changes"]] for m, r in second.items()}
    assert changed == {m: [] for m in MEMBERS}
    # the second time, ksha_x509 found every key and certificate current (the states' unless):
    # x509_v2's states, a state.single each, did not run (the first time, they did for
    # master3's missing certificate: it was issued)
    skipped = {m: leaf_pki(r, "unless condition is true") for m, r in second.items()}
    assert all(len(ids) == 8 for ids in skipped.values()), skipped  # server, peer, admin, apiserver client
    assert all(
        s["comment"] == "unless condition is true"
        for r in second.values() for s in r.values() if s["__id__"] == "ksha-etcd-pki-ca-certificate-installed"
    )  # fmt: skip
    assert "ksha-etcd-pki-member-peer-certificate-issued" not in leaf_pki(first["master3"], "unless condition is true")


def served_certificate(lab, member):
    """The server certificate `member`'s etcd presents now (read with ksha's admin client certificate)."""
    root = lab.hosts["master1"].root / PKI.lstrip("/")
    context = ssl.create_default_context(cafile=str(root / "ca.crt"))
    context.load_cert_chain(str(root / "admin.crt"), str(root / "admin.key"))
    context.check_hostname = False
    with socket.create_connection((lab.hosts[member].ip, 2379), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def certificate_file(lab, member, name):
    return x509.load_pem_x509_certificate((lab.hosts[member].root / PKI.lstrip("/") / name).read_bytes())


def days_left(cert):
    return (cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400


def test_certificates_are_renewed_at_days_remaining_and_snapshots_come_by_timer(etcd_lab, lab_pillar):
    """A member certificate with fewer than ksha:etcd:pki:days_remaining days left is issued again
    by the member's etcd states (and etcd restarted to serve it); one with more is left alone,
    even when the CA's days_valid changed (the first apply: master1's and master3's, a year
    left, renewal at 10 days, the CA signing for 20). Meanwhile the backup timer (every minute in the
    lab's pillar) takes snapshots on its own. (``ksha.etcd`` is what a member's highstate runs of etcd; the other
    phases' states would only lengthen the test; a master's highstate has its test in
    test_loadbalancer.py.)"""
    lab, salt, _ = etcd_lab
    assert wait_for(lambda: health(salt)["healthy"], 60, step=2)
    members = ",".join(MEMBERS)
    lab_pillar.ran("etcd")  # its pillar edits are applied by the etcd states below

    def pillar_with(pki_settings):
        lab_pillar.edit(lambda ksha: ksha.setdefault("etcd", {}).setdefault("pki", {}).update(pki_settings))

    def apply_etcd():
        out = salt.salt(members, "state.apply", "ksha.etcd", timeout=900)
        assert not (failed := failed_states(out)), failed
        # IDs: x509 states report their file as a second state under the same ID
        return {m: sorted({s["__id__"] for s in r.values() if s["changes"]}) for m, r in out.items()}

    # A 20-day certificate on master2, as if it had been issued 345 days ago.
    began = time.time()
    pillar_with({"days_valid": 20, "days_remaining": 10})
    lab.exec(lab.hosts["master2"], "rm", "-f", f"{PKI}/server.crt", check=True)
    changed = apply_etcd()
    assert [i for i in changed["master2"] if "pki" in i] == ["ksha-etcd-pki-member-server-certificate-issued"]
    # the others' certificates (a year left, renewal at 10 days) are left alone, though the CA
    # now signs for 20 days
    assert not [i for m in ("master1", "master3") for i in changed[m] if "pki" in i], changed
    short = certificate_file(lab, "master2", "server.crt")
    assert 19 < days_left(short) <= 20
    assert wait_for(lambda: served_certificate(lab, "master2").serial_number == short.serial_number, 30)

    # Renewal at 30 days: master2's 20-day certificate is issued again, for 365 days, and served.
    pillar_with({"days_valid": 365, "days_remaining": 30})
    changed = apply_etcd()
    assert [i for i in changed["master2"] if "pki" in i] == ["ksha-etcd-pki-member-server-certificate-issued"]
    assert "ksha-etcd-restarted-one-member-at-a-time" in changed["master2"]
    assert not [i for m in ("master1", "master3") for i in changed[m] if "pki" in i], changed
    renewed = certificate_file(lab, "master2", "server.crt")
    assert renewed.serial_number != short.serial_number and days_left(renewed) > 364
    assert served_certificate(lab, "master2").serial_number == renewed.serial_number
    assert wait_for(lambda: health(salt)["healthy"], 60, step=2)

    # The timer fired on its own (nobody ran the backup service): on every member, a snapshot newer
    # than the test's start. Checked last, so that the state runs above spend the minute it may take.
    def timer_snapshots():
        found = {}
        for member in MEMBERS:
            files = list((lab.hosts[member].root / "var/backups/kube_etcd").glob("etcd-*.db"))
            found[member] = [f for f in files if f.stat().st_mtime > began]
        return found if all(found.values()) else None

    assert wait_for(timer_snapshots, 120, step=5), timer_snapshots()
    shown = lab.exec(lab.hosts["master3"], "systemctl", "show", "-p", "LastTriggerUSec", "ksha-etcd-backup.timer")
    assert re.match(r"LastTriggerUSec=\w+ \d{4}-\d\d-\d\d ", shown.stdout), shown.stdout

    # A backup run that meets its member restarting waits for it (up to ksha:etcd:wait_healthy_s),
    # rather than skip a period: master3's etcd stopped, the backup started, etcd back 3 s later.
    master3 = lab.hosts["master3"]

    def backup_state():
        shown = lab.exec(master3, "systemctl", "show", "-p", "ActiveState", "-p", "Result", "ksha-etcd-backup")
        values = dict(line.split("=", 1) for line in shown.stdout.split())
        return [values["ActiveState"], values["Result"]]

    # (its timer stopped meanwhile: a timer run mid-snapshot as etcd stops would fail the run
    # the start below joins)
    lab.exec(master3, "systemctl", "stop", "ksha-etcd-backup.timer", check=True)
    lab.exec(master3, "systemctl", "stop", "etcd", check=True)
    started = time.time()
    lab.exec(master3, "systemctl", "start", "--no-block", "ksha-etcd-backup.service", check=True)
    time.sleep(3)
    assert backup_state() == ["activating", "success"]  # still waiting for its member
    lab.exec(master3, "systemctl", "start", "etcd", check=True)
    assert wait_for(lambda: backup_state() == ["inactive", "success"], 60, step=0.5), backup_state()
    made = [f for f in (master3.root / "var/backups/kube_etcd").glob("etcd-*.db") if f.stat().st_mtime > started + 3]
    assert made, "no snapshot after etcd came back"
    lab.exec(master3, "systemctl", "start", "ksha-etcd-backup.timer", check=True)
    assert wait_for(lambda: health(salt)["healthy"], 60, step=2)

    # Back to the original pillar (the certificates' days) on every member.
    lab_pillar.restore()
    assert not failed_states(salt.salt(members, "state.apply", "ksha.etcd", timeout=900))
    lab_pillar.converged()


def running_binary(lab, member):
    out = lab.exec(lab.hosts[member], "sh", "-c", "readlink /proc/$(systemctl show -p MainPID --value etcd)/exe")
    return out.stdout.strip()


@pytest.fixture
def release_server(lab, tmp_path):
    """A release tarball laid out like etcd's (etcd-vX-linux-amd64/{etcd,etcdctl}), served over HTTP
    on the lab bridge. Upstream's cannot be downloaded here, so it is built from this machine's etcd
    (the same 3.4 the lab's package has): what is tested is ksha's archive path, not the release."""
    version = "v" + re.search(r"etcd Version: (\S+)", subprocess.check_output(["etcd", "--version"], text=True))[1]
    top = f"etcd-{version}-linux-amd64"
    tarball = tmp_path / f"{top}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for binary in ("etcd", "etcdctl"):
            tar.add(shutil.which(binary), arcname=f"{top}/{binary}")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer((lab.master_ip, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {
            "version": version,
            "url": f"http://{lab.master_ip}:{server.server_port}/{tarball.name}",
            "sha256": hashlib.sha256(tarball.read_bytes()).hexdigest(),
        }
    finally:
        server.shutdown()
        server.server_close()


def test_archive_source_switches_members_to_the_checked_release_one_at_a_time(etcd_lab, lab_pillar, release_server):
    """ksha:etcd:source archive: every member's etcd states (``ksha.etcd``, what its highstate
    runs of etcd) fetch the pinned release, check it and restart on it, one member at a time."""
    lab, salt, _ = etcd_lab
    assert wait_for(lambda: health(salt)["healthy"], 60, step=2)
    members = ",".join(MEMBERS)
    opt = f"/opt/etcd-{release_server['version']}/etcd"
    lab_pillar.ran("etcd")  # its pillar edits are applied by the etcd states below

    def pillar_with(archive):
        lab_pillar.edit(lambda ksha: ksha.setdefault("etcd", {}).update({"source": "archive", "archive": archive}))

    # A tarball that does not match the pinned sha256 is refused; every member keeps running as it was.
    pillar_with({**release_server, "sha256": "0" * 64})
    out = salt.salt(members, "state.apply", "ksha.etcd", timeout=900)
    for member in MEMBERS:
        [extracted] = [s for s in out[member].values() if s["__id__"] == "ksha-etcd-release-archive-extracted"]
        assert extracted["result"] is False and "hash" in extracted["comment"].lower(), extracted["comment"]
        assert running_binary(lab, member) == "/usr/bin/etcd"
    assert health(salt)["healthy"]

    # The right checksum: each member restarts on the release's binary, never two at once.
    pillar_with(release_server)
    before = etcd_unit_times(lab)
    out = salt.salt(members, "state.apply", "ksha.etcd", timeout=900)
    windows = down_windows(before, etcd_unit_times(lab))
    assert not (failed := failed_states(out)), failed
    for member in MEMBERS:
        assert running_binary(lab, member) == opt
        assert lab.exec(lab.hosts[member], "readlink", "/usr/local/bin/etcdctl").stdout.strip() == opt + "ctl"
    restarted = [
        m
        for m, r in out.items()
        for s in r.values()
        if s["__id__"] == "ksha-etcd-restarted-one-member-at-a-time" and s["changes"]
    ]
    assert sorted(restarted) == MEMBERS == sorted(windows) and not overlapping(windows), windows
    assert wait_for(lambda: health(salt)["healthy"], 60, step=2)
    again = salt.salt(members, "state.apply", "ksha.etcd", timeout=900)
    assert {m: [s["__id__"] for s in r.values() if s["changes"]] for m, r in again.items()} == {m: [] for m in MEMBERS}

    # And back to the distro's package.
    lab_pillar.restore()
    out = salt.salt(members, "state.apply", "ksha.etcd", timeout=900)
    assert not (failed := failed_states(out)), failed
    assert [running_binary(lab, m) for m in MEMBERS] == ["/usr/bin/etcd"] * 3
    assert not (lab.hosts["master1"].root / "usr/local/bin/etcdctl").is_symlink()
    assert wait_for(lambda: health(salt)["healthy"], 60, step=2)
    lab_pillar.converged()
