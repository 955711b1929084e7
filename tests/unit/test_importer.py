"""ksha.importer: the seed's hosts.ini/common.yaml → pillar + roster; malformed input."""

import stat

import pytest
import yaml

from ksha import importer, inventory
from tests.conftest import SEED


def test_seed_files_import_to_the_example_inventory(example_ksha):
    ksha, roster, notes = importer.import_files(SEED / "hosts.ini", SEED / "common.yaml")
    assert notes == []
    assert ksha["hosts"] == example_ksha["hosts"]
    assert ksha["groups"] == example_ksha["groups"]
    assert ksha["loadbalancer"] == {"mode": "external", "address": "192.168.0.253", "port": 6443}
    assert inventory.validate(ksha) == []


def test_seed_roster_holds_the_connection_data():
    _, roster, _ = importer.import_files(SEED / "hosts.ini", SEED / "common.yaml")
    assert roster["master1"] == {"host": "localhost"}  # ansible_connection=local
    assert roster["master2"] == {"host": "192.168.0.2", "passwd": "PASSWORD"}
    assert set(roster) == {"master1", "master2", "master3", "node1", "node2", "node3"}


def test_pillar_never_holds_connection_data():
    ksha, _, _ = importer.import_files(SEED / "hosts.ini", SEED / "common.yaml")
    dumped = yaml.safe_dump(ksha)
    assert "PASSWORD" not in dumped
    assert "ansible" not in dumped


def test_hosts_ini_without_common_yaml_and_several_masters_is_flagged():
    ksha, _, _ = importer.import_files(SEED / "hosts.ini")
    assert "loadbalancer" not in ksha
    assert [f.key for f in inventory.validate(ksha) if f.level == "ERROR"] == ["ksha:loadbalancer:mode"]


def test_become_and_port_and_key_map_to_salt_ssh_roster():
    text = (
        "[all]\n"
        "m1 ansible_host=10.0.0.1 ansible_port=2222 ansible_user=ubuntu ansible_become=true "
        "ansible_become_pass='s3 cr3t' ansible_ssh_private_key_file=/root/.ssh/id ip=10.0.0.1\n"
        "[kube-master]\nm1\n[etcd]\nm1\n"
    )
    roster, notes = importer.to_roster(importer.parse_hosts_ini(text))
    assert roster == {
        "m1": {
            "host": "10.0.0.1",
            "port": 2222,
            "user": "ubuntu",
            "priv": "/root/.ssh/id",
            "sudo": True,
            "passwd": "s3 cr3t",
        }
    }
    assert notes == []


def test_different_ssh_and_become_passwords_are_noted():
    text = "[all]\nm1 ansible_host=10.0.0.1 ansible_ssh_pass=a ansible_become_pass=b\n[kube-master]\nm1\n"
    roster, notes = importer.to_roster(importer.parse_hosts_ini(text))
    assert roster["m1"]["passwd"] == "a"
    assert notes == ["host m1: salt-ssh uses one password for ssh and sudo; the become password was not kept"]


def test_common_yaml_settings_are_mapped_and_unknown_ones_noted(tmp_path):
    common = tmp_path / "common.yaml"
    common.write_text(
        "loadbalancer_apiserver: {address: 10.0.0.9, port: 8443}\n"
        "apiserver_loadbalancer_domain_name: api.example.com\n"
        "etcd_backup_period: 60\nkeep_backup_number: 3\netcd_backup_dir: /backup\nkube_version: v1.17.9\n"
        "persistence: {storageClass: ''}\n"
    )
    ksha, _, notes = importer.import_files(SEED / "hosts.ini", common)
    assert ksha["loadbalancer"] == {
        "mode": "external",
        "address": "10.0.0.9",
        "port": 8443,
        "domain": "api.example.com",
    }
    assert ksha["etcd"] == {"backup": {"period_minutes": 60, "keep": 3, "dir": "/backup"}}
    assert ksha["kubernetes"] == {"version": "v1.17.9"}
    assert notes == ["common.yaml: settings not imported: persistence"]


def test_write_roster_is_private(tmp_path):
    target = tmp_path / "roster"
    importer.write_roster({"m1": {"host": "10.0.0.1", "passwd": "x"}}, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert yaml.safe_load(target.read_text()) == {"m1": {"host": "10.0.0.1", "passwd": "x"}}


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"   \n\n", "is empty"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "is a binary file, not text"),
        (b"\xff\xfe[all]", "is not UTF-8 text"),
        (b"master1 ip=1.2.3.4\n", "is outside any [section]; this is not an INI inventory"),
        (b"[all\nmaster1\n", "malformed section header"),
        (b"[all]\nmaster1 ip\n", "expected key=value after the host name"),
        (b"[all]\nmaster1 ip='1.2.3.4\n", "cannot parse"),
        (b"[all:weird]\nmaster1\n", "unknown section type"),
        (b"[kube-master]\n", "defines no hosts"),
        (b"ksha:\n  hosts: []\n", "is outside any [section]"),
    ],
)
def test_malformed_hosts_ini_is_an_input_error(tmp_path, content, message):
    path = tmp_path / "hosts.ini"
    path.write_bytes(content)
    with pytest.raises(importer.InputError, match=message.replace("[", r"\[")):
        importer.import_files(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ("a: [1, 2\n", "{path}:2: is not valid YAML: expected ',' or ']', but got '<stream end>'"),
        ("- just\n- a list\n", "{path}: must be a YAML mapping of settings, got list"),
        ("[all]\nmaster1\n", "{path}:2: is not valid YAML: expected '<document start>', but found '<scalar>'"),
    ],
)
def test_malformed_common_yaml_is_an_input_error(tmp_path, content, message):
    path = tmp_path / "common.yaml"
    path.write_text(content)
    with pytest.raises(importer.InputError) as excinfo:
        importer.import_files(SEED / "hosts.ini", path)
    assert str(excinfo.value) == message.format(path=path)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(importer.InputError, match="cannot read"):
        importer.import_files(tmp_path / "nope.ini")


def test_pillar_file_with_jinja_is_refused(tmp_path):
    path = tmp_path / "ksha.sls"
    path.write_text("ksha:\n  cluster_name: {{ grains.id }}\n")
    with pytest.raises(importer.InputError, match="salt-run ksha.validate"):
        importer.load_pillar_file(path)
