"""The `ksha` console script: exit codes 0/1/2 and its output, run as a user runs it."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, SEED

KSHA = Path(sys.executable).parent / "ksha"

CHECKSUM_WARNING = (
    "ksha:kubernetes:archive:sha256: ksha installs no Kubernetes release it cannot check; set it to the sha256 "
    "of kubernetes-server-linux-amd64.tar.gz v1.30.8, which upstream publishes at "
    "https://dl.k8s.io/v1.30.8/kubernetes-server-linux-amd64.tar.gz.sha256 (until then orch.ksha refuses to run, "
    "before any host is touched, unless ksha_until stops it before the control-plane phase)"
)
NODE_CHECKSUM_WARNING = (
    "ksha:kubernetes:node_archive:sha256: ksha installs no Kubernetes release it cannot check; set it to the sha256 "
    "of kubernetes-node-linux-amd64.tar.gz v1.30.8, which upstream publishes at "
    "https://dl.k8s.io/v1.30.8/kubernetes-node-linux-amd64.tar.gz.sha256 (until then orch.ksha refuses to run, "
    "before any host is touched, unless ksha_until stops it before the nodes phase)"
)


def ksha(*args):
    return subprocess.run([str(KSHA), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_validate_seed_files_exit_0():
    run = ksha("validate", "--hosts-ini", SEED / "hosts.ini", "--common-yaml", SEED / "common.yaml")
    assert run.returncode == 0, run.stderr
    # valid; the release's checksum is the user's to add (common.yaml has none)
    assert run.stderr.splitlines() == [
        f"WARNING {CHECKSUM_WARNING}",
        f"WARNING {NODE_CHECKSUM_WARNING}",
        "inventory valid: 0 error(s), 2 warning(s)",
    ]


def test_validate_example_pillar_exit_0():
    run = ksha("validate", "--pillar", REPO / "pillar" / "ksha.sls.example")
    assert run.returncode == 0, run.stderr


def test_validate_invalid_inventory_exit_1_with_lines(tmp_path):
    bad = tmp_path / "hosts.ini"
    bad.write_text(
        "[all]\nMaster1 ip=192.168.0.1\nmaster2 ip=192.168.0.1\n[kube-master]\nMaster1\nmaster2\n[etcd]\nMaster1\nmaster2\n"
    )
    run = ksha("validate", "--hosts-ini", bad)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "ERROR ksha:hosts:0:name: 'Master1' is not an RFC 1123 label (lowercase letters, digits and '-', 1-63 "
        "characters, starting and ending with a letter or digit); it becomes the Kubernetes node name",
        "ERROR ksha:hosts:1:ip: host 'master2': address 192.168.0.1 is also used by host 'Master1'",
        "ERROR ksha:groups:etcd: has 2 members; etcd needs an odd number (e.g. 1 or 3). While replacing a member, "
        "set ksha:etcd:allow_even_member_count: true for the transition",
        "ERROR ksha:loadbalancer:mode: is 'none' but there are 2 masters: the API would not be highly available; "
        "set mode to 'keepalived' or 'external' and ksha:loadbalancer:address",
        f"WARNING {CHECKSUM_WARNING}",
        f"WARNING {NODE_CHECKSUM_WARNING}",
        "inventory invalid: 4 error(s), 2 warning(s)",
    ]
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02binary", b"{not: ini}\n", b"ksha: [\n"])
def test_validate_unreadable_input_exit_2_without_traceback(tmp_path, content):
    path = tmp_path / "hosts.ini"
    path.write_bytes(content)
    run = ksha("validate", "--hosts-ini", path)
    assert run.returncode == 2
    assert run.stderr.startswith("ERROR hosts.ini ") or run.stderr.startswith(f"ERROR {path}")
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("content", [b"ksha: [\n", b"\x00\x01", b""])
def test_validate_unreadable_pillar_exit_2(tmp_path, content):
    path = tmp_path / "ksha.sls"
    path.write_bytes(content)
    run = ksha("validate", "--pillar", path)
    assert run.returncode == 2
    assert run.stderr.startswith("ERROR ") and "Traceback" not in run.stderr


def test_validate_pillar_without_ksha_key_exit_1(tmp_path):
    path = tmp_path / "other.sls"
    path.write_text("users: {}\n")
    run = ksha("validate", "--pillar", path)
    assert run.returncode == 1
    assert run.stderr.startswith("ERROR ksha: the pillar has no 'ksha' key")


def test_import_prints_pillar_and_writes_roster(tmp_path):
    roster = tmp_path / "roster"
    run = ksha(
        "import", "--hosts-ini", SEED / "hosts.ini", "--common-yaml", SEED / "common.yaml", "--roster-out", roster
    )
    assert run.returncode == 0, run.stderr
    pillar = yaml.safe_load(run.stdout)
    assert [h["name"] for h in pillar["ksha"]["hosts"]] == ["master1", "master2", "master3", "node1", "node2", "node3"]
    assert "PASSWORD" not in run.stdout and "PASSWORD" not in run.stderr
    assert yaml.safe_load(roster.read_text())["node3"] == {"host": "192.168.0.6", "passwd": "PASSWORD"}


def test_imported_pillar_validates_through_the_cli(tmp_path):
    run = ksha("import", "--hosts-ini", SEED / "hosts.ini", "--common-yaml", SEED / "common.yaml")
    pillar = tmp_path / "ksha.sls"
    pillar.write_text(run.stdout)
    assert ksha("validate", "--pillar", pillar).returncode == 0


def test_common_yaml_with_pillar_is_a_usage_error():
    run = ksha("validate", "--pillar", SEED / "common.yaml", "--common-yaml", SEED / "common.yaml")
    assert run.returncode == 2
    assert "--common-yaml goes with --hosts-ini" in run.stderr


# --- issue 11 item 3: output paths, secrets, redefinitions ---


@pytest.mark.parametrize(
    "where, reason",
    [
        ("no/such/dir/roster", "directory {tmp}/no/such/dir does not exist"),
        ("", "is a directory; give a file name"),
        ("afile/roster", "{tmp}/afile is not a directory"),
        ("hosts.ini", "is also an input file; it would be overwritten"),
    ],
)
def test_import_unwritable_roster_out_exit_2_before_printing_anything(tmp_path, where, reason):
    ini = tmp_path / "hosts.ini"
    ini.write_bytes((SEED / "hosts.ini").read_bytes())
    (tmp_path / "afile").write_text("")
    target = tmp_path / where if where else tmp_path
    run = ksha("import", "--hosts-ini", ini, "--roster-out", target)
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.splitlines() == [f"ERROR --roster-out {target}: {reason.format(tmp=tmp_path)}"]
    assert ini.read_bytes() == (SEED / "hosts.ini").read_bytes()


def test_import_to_a_full_stdout_exit_2_without_traceback():
    with open("/dev/full", "w") as full:
        run = subprocess.run(
            [str(KSHA), "import", "--hosts-ini", SEED / "hosts.ini", "--common-yaml", SEED / "common.yaml"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == "ERROR stdout: cannot write: No space left on device"
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr


def test_import_without_roster_out_notes_the_unwritten_passwords_by_host():
    run = ksha("import", "--hosts-ini", SEED / "hosts.ini", "--common-yaml", SEED / "common.yaml")
    assert run.returncode == 0, run.stderr
    assert (
        f"NOTE {SEED / 'hosts.ini'}:3: ssh/become passwords of 5 host(s) (master2, master3, node1, node2, node3) "
        "were not written anywhere (the pillar never holds them); to keep them in a salt-ssh roster, add "
        "--roster-out FILE"
    ) in run.stderr.splitlines()
    assert "PASSWORD" not in run.stderr and "PASSWORD" not in run.stdout


def test_import_with_roster_out_has_no_unwritten_passwords_note(tmp_path):
    run = ksha("import", "--hosts-ini", SEED / "hosts.ini", "--roster-out", tmp_path / "roster")
    assert "not written anywhere" not in run.stderr


def test_malformed_line_with_a_password_exit_2_without_showing_it(tmp_path):
    ini = tmp_path / "hosts.ini"
    ini.write_text('[all]\nmaster1 ip=10.0.0.1 ansible_ssh_pass="Sup3rS3cret\n[kube-master]\nmaster1\n')
    for command in ("import", "validate"):
        run = ksha(command, "--hosts-ini", ini)
        assert run.returncode == 2
        assert run.stderr.splitlines() == [
            f"ERROR {ini}:2: cannot parse 'master1 ip=10.0.0.1 ansible_ssh_pass=***': No closing quotation"
        ]
        assert "Sup3rS3cret" not in run.stdout + run.stderr


def test_host_defined_twice_with_different_ip_exit_2_naming_both_lines(tmp_path):
    ini = tmp_path / "hosts.ini"
    ini.write_text("[all]\nmaster1 ip=10.0.0.1\nmaster1 ip=10.0.0.2\n[kube-master]\nmaster1\n")
    run = ksha("import", "--hosts-ini", ini)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == [
        f"ERROR {ini}:3: host 'master1' is given ip=10.0.0.2 here but ip=10.0.0.1 on line 2; give it one value"
    ]
