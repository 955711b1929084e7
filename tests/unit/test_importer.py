"""ksha.importer: the seed's hosts.ini/common.yaml → pillar + roster; malformed input."""

import stat

import pytest
import yaml

from ksha import flags, importer, inventory
from tests.conftest import SEED


def test_seed_files_import_to_the_example_inventory(example_ksha):
    ksha, roster, notes = importer.import_files(SEED / "hosts.ini", SEED / "common.yaml")
    assert notes == []
    assert ksha["hosts"] == example_ksha["hosts"]
    assert ksha["groups"] == example_ksha["groups"]
    assert ksha["loadbalancer"] == {"mode": "external", "address": "192.168.0.253", "port": 6443}
    # valid; the release's checksum is the user's to add (common.yaml has none)
    assert [(f.level, f.key) for f in inventory.validate(ksha)] == [
        ("WARNING", "ksha:kubernetes:archive:sha256"),
        ("WARNING", "ksha:kubernetes:node_archive:sha256"),
    ]


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
    assert notes == [
        "hosts.ini:2: host m1: salt-ssh uses one password for ssh and sudo; the become password was not kept"
    ]


def test_common_yaml_settings_are_mapped_and_unknown_ones_noted(tmp_path):
    common = tmp_path / "common.yaml"
    common.write_text(
        "loadbalancer_apiserver: {address: 10.0.0.9, port: 8443}\n"
        "apiserver_loadbalancer_domain_name: api.example.com\n"
        "etcd_backup_period: 60\nkeep_backup_number: 3\netcd_backup_dir: /backup\nkube_version: v1.30.2\n"
        "kube_service_addresses: 10.96.0.0/16\nkube_pods_subnet: 10.244.0.0/16\ncluster_name: corp.local\n"
        "persistence: {storageClass: ''}\n"
        "docker_registry_mirrors: [https://mirror.example.com]\ndocker_insecure_registries: ['10.0.0.5:5000']\n"
        "kube_proxy_mode: iptables\nkube_network_plugin: calico\n"
    )
    ksha, _, notes = importer.import_files(SEED / "hosts.ini", common)
    assert ksha["network"] == {"plugin": "calico"}
    assert ksha["containerd"] == {
        "registry_mirrors": ["https://mirror.example.com"],
        "insecure_registries": ["10.0.0.5:5000"],
    }
    assert ksha["loadbalancer"] == {
        "mode": "external",
        "address": "10.0.0.9",
        "port": 8443,
        "domain": "api.example.com",
    }
    assert ksha["etcd"] == {"backup": {"period_minutes": 60, "keep": 3, "dir": "/backup"}}
    assert ksha["kubernetes"] == {
        "version": "v1.30.2",
        "service_cidr": "10.96.0.0/16",
        "pod_cidr": "10.244.0.0/16",
        "cluster_domain": "corp.local",
        "kube_proxy": {"mode": "iptables"},
    }
    assert notes == ["common.yaml: settings not imported: persistence"]


def test_a_kube_version_ksha_does_not_deploy_is_noted_not_imported(tmp_path):
    """The seed's installer pinned v1.16.7; this ksha deploys one minor version (ksha/flags.py)."""
    common = tmp_path / "common.yaml"
    common.write_text("kube_version: v1.16.7\n")
    ksha, _, notes = importer.import_files(SEED / "hosts.ini", common)
    assert "kubernetes" not in ksha
    assert notes == [
        f"common.yaml: kube_version v1.16.7 not imported: this ksha deploys Kubernetes {flags.version()} "
        "(ksha:kubernetes:version has its default)"
    ]


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


# --- issue 11 item 3: group vars, redefinitions, notes, comments, secrets, size ---

SECRET = "s3cr3t-Value"


def parse(text):
    return importer.parse_hosts_ini(text, "hosts.ini")


def test_all_vars_apply_to_every_host_in_the_roster_and_host_vars_win():
    text = (
        "[all]\n"
        "m1 ip=10.0.0.1 ansible_user=root\n"
        "m2 ip=10.0.0.2\n"
        "n1 ip=10.0.0.3\n"
        "[kube-master]\nm1\nm2\n[kube-node]\nn1\n[etcd]\nm1\n"
        "[k8s-cluster:children]\nkube-master\nkube-node\n"
        "[all:vars]\n"
        "ansible_user=ubuntu\n"
        'ansible_ssh_pass="s3 cr3t"\n'
        "ansible_become = true\n"
        "ansible_port=2222\n"
        "[k8s-cluster:vars]\nansible_port=2200\n"
        "[kube-node:vars]\nansible_port=2201\n"
    )
    roster, notes = importer.to_roster(parse(text))
    common = {"passwd": "s3 cr3t", "sudo": True}
    assert roster == {
        "m1": {"host": "10.0.0.1", "user": "root", "port": 2200, **common},
        "m2": {"host": "10.0.0.2", "user": "ubuntu", "port": 2200, **common},
        "n1": {"host": "10.0.0.3", "user": "ubuntu", "port": 2201, **common},
    }
    assert notes == []


def test_group_vars_not_imported_are_noted_once_with_their_line():
    text = "[all]\nm1 ip=10.0.0.1\n[kube-master]\nm1\n[all:vars]\nansible_user=u\nntp_server=pool\nproxy=x\n"
    _, notes = importer.to_pillar(parse(text))
    assert notes == ["hosts.ini:7: [all:vars]: variables not imported: ntp_server, proxy"]


def test_host_notes_name_the_file_and_line():
    text = "[all]\nm1 ip=10.0.0.1\nm2 ip=10.0.0.2 foo=1 bar=2\n[kube-master]\nm1\n"
    _, notes = importer.to_pillar(parse(text))
    assert notes == ["hosts.ini:3: host m2: variables not imported: bar, foo"]


def test_host_defined_twice_with_different_ip_is_an_error_naming_both_lines():
    text = "[all]\nnode1 ip=10.0.0.4\nnode2 ip=10.0.0.5\nnode1 ip=10.0.0.9\n[kube-node]\nnode1\n"
    with pytest.raises(importer.InputError) as excinfo:
        parse(text)
    assert str(excinfo.value) == (
        "hosts.ini:4: host 'node1' is given ip=10.0.0.9 here but ip=10.0.0.4 on line 2; give it one value"
    )


def test_host_repeated_with_the_same_or_more_variables_is_merged():
    text = "[all]\nm1 ip=10.0.0.1\n[kube-master]\nm1 ip=10.0.0.1 ansible_user=u\n"
    inv = parse(text)
    assert inv["hosts"] == {"m1": {"ip": "10.0.0.1", "ansible_user": "u"}}
    assert inv["order"] == ["m1"]


def test_conflicting_passwords_are_an_error_that_never_shows_them():
    text = f"[all]\nm1 ip=10.0.0.1 ansible_ssh_pass={SECRET}\n[kube-master]\nm1 ansible_ssh_pass=other{SECRET}\n"
    with pytest.raises(importer.InputError) as excinfo:
        parse(text)
    message = str(excinfo.value)
    assert message.startswith("hosts.ini:4: host 'm1' is given ansible_ssh_pass=*** here but ")
    assert "line 2" in message and SECRET not in message


def test_group_var_set_twice_differently_is_an_error():
    text = "[all]\nm1 ip=10.0.0.1\n[all:vars]\nansible_user=a\n[all:vars]\nansible_user=b\n"
    with pytest.raises(
        importer.InputError,
        match=r"^hosts.ini:6: \[all:vars\] gives ansible_user=b here but "
        r"ansible_user=a on line 4; give it one value$",
    ):
        parse(text)


def test_ansible_host_taken_as_the_cluster_ip_is_noted():
    text = "[all]\nm1 ip=10.0.0.1\nm2 ansible_host=10.0.0.2\n[kube-master]\nm1\nm2\n"
    ksha, notes = importer.to_pillar(parse(text))
    assert [h.get("ip") for h in ksha["hosts"]] == ["10.0.0.1", "10.0.0.2"]
    assert notes == ["hosts.ini:3: host m2: no ip=, so ansible_host 10.0.0.2 is taken as its cluster address"]


@pytest.mark.parametrize(
    "header",
    ["[all]  # the machines", "[all]# no space", "[all] ; semicolon comment", "[all]\t;x", "[ all ]"],
)
def test_section_headers_with_trailing_comments_are_accepted(header):
    inv = parse(
        f"{header}\nm1 ip=10.0.0.1\n[kube-master]   # masters\nm1\n[k8s-cluster:children] ; derived\nkube-master\n"
    )
    assert inv["groups"]["all"] == ["m1"] and inv["groups"]["kube-master"] == ["m1"]
    assert inv["children"] == {"k8s-cluster": ["kube-master"]}


@pytest.mark.parametrize("header", ["[all] junk", "[all]x", "[all", "[]", "[:vars]"])
def test_section_headers_with_anything_else_after_them_are_refused(header):
    with pytest.raises(importer.InputError, match=r"^hosts.ini:1: malformed section header"):
        parse(f"{header}\nm1 ip=10.0.0.1\n")


def test_vars_lines_read_values_as_ansible_does():
    text = (
        "[all]\nm1 ip=10.0.0.1\n[all:vars]\n"
        "ansible_user = ubuntu\n"
        "ansible_ssh_pass='pa ss'\n"
        "ansible_become_user=root # trailing text is part of the value in Ansible\n"
    )
    inv = parse(text)
    assert inv["group_vars"]["all"] == {
        "ansible_user": "ubuntu",
        "ansible_ssh_pass": "pa ss",
        "ansible_become_user": "root # trailing text is part of the value in Ansible",
    }


def test_unwritten_secrets_are_noted_by_host_never_by_value(tmp_path):
    ini = tmp_path / "hosts.ini"
    ini.write_text(
        "[all]\nm1 ip=10.0.0.1 ansible_connection=local\n"
        f"m2 ip=10.0.0.2 ansible_ssh_pass={SECRET}\nm3 ip=10.0.0.3 ansible_become_pass={SECRET}\n"
        "[kube-master]\nm1\nm2\nm3\n"
    )
    _, _, notes = importer.import_files(ini, roster_kept=False)
    assert notes == [
        f"{ini}:3: ssh/become passwords of 2 host(s) (m2, m3) were not written anywhere (the pillar never holds "
        "them); to keep them in a salt-ssh roster, add --roster-out FILE"
    ]
    _, _, kept_notes = importer.import_files(ini)
    assert kept_notes == []


def test_unwritten_secrets_note_names_at_most_ten_hosts():
    hosts = "".join(f"h{i} ip=10.0.0.{i + 1} ansible_ssh_pass=p\n" for i in range(25))
    note = importer.unwritten_secrets_note(parse("[all]\n" + hosts))
    assert "25 host(s) (h0, h1, h2, h3, h4, h5, h6, h7, h8, h9 and 15 more)" in note


@pytest.mark.parametrize(
    "text",
    [
        f'[all]\nm1 ip=10.0.0.1 ansible_ssh_pass="{SECRET}\n',  # unterminated quote
        f"[all]\nm1 ip=10.0.0.1 ansible_ssh_pass='{SECRET} ip=1\n",
        f"[all]\nm1 ansible_ssh_pass={SECRET} more{SECRET}\n",  # a space inside an unquoted password
        f"[all]\nm1 ansible_ssh_pass= {SECRET}\n",
        f"[all]\nansible_ssh_pass={SECRET} ip=1\n",  # no host name
        f"m1 ansible_password={SECRET}\n",  # outside any section
        f"[all ansible_become_pass={SECRET}\nm1\n",
        f"[all ansible_become_password={SECRET}]\n",
        f"[all] # ansible_ssh_pass={SECRET}\nm1 ip\n",
        f"[k8s-cluster:children]\nkube-node my_api_token={SECRET}\n",
        f"[all]\nm1 vault_password={SECRET}\n[kube-master]\nm1 vault_password=x{SECRET}\n",
        f"[all:vars]\nansible_ssh_pass={SECRET}\n[all:vars]\nansible_ssh_pass=other\n",
        f"[all]\nm1\n[all:vars]\n={SECRET}\n",
        f"[all]\nm1 ={SECRET}\n",
    ],
)
def test_parse_errors_never_show_a_secret(tmp_path, text):
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    with pytest.raises(importer.InputError) as excinfo:
        importer.import_files(path)
    message = str(excinfo.value)
    assert SECRET not in message and SECRET[:6] not in message
    assert message.startswith(f"{path}:")


def test_mask_hides_every_pass_key_value():
    line = f"m1 ansible_ssh_pass={SECRET} ip=1"
    assert importer.mask(line) == "m1 ansible_ssh_pass=***"
    assert importer.mask(f"x ANSIBLE_BECOME_PASSWORD = '{SECRET} y'") == "x ANSIBLE_BECOME_PASSWORD =***"
    assert importer.mask("m1 ip=10.0.0.1 ansible_user=u") == "m1 ip=10.0.0.1 ansible_user=u"


def test_twenty_thousand_hosts_import_correctly(tmp_path):
    count = 20_000
    lines = ["[all]"]
    lines += [
        f"node{i} ansible_host=10.1.{i // 250}.{i % 250 + 1} ip=10.1.{i // 250}.{i % 250 + 1}" for i in range(count)
    ]
    lines += ["[kube-master]", "node0", "node1", "node2", "[etcd]", "node0", "node1", "node2", "[kube-node]"]
    lines += [f"node{i}" for i in range(3, count)]
    lines += ["[k8s-cluster:children]", "kube-master", "kube-node", "[all:vars]", "ansible_ssh_pass=p"]
    path = tmp_path / "hosts.ini"
    path.write_text("\n".join(lines) + "\n")
    ksha, roster, notes = importer.import_files(path)
    assert notes == []
    assert len(ksha["hosts"]) == count
    assert ksha["hosts"][12_345] == {"name": "node12345", "ip": "10.1.49.96"}
    assert ksha["groups"]["kube-master"] == ["node0", "node1", "node2"]
    assert ksha["groups"]["kube-node"] == [f"node{i}" for i in range(3, count)]
    assert len(roster) == count and roster["node19999"] == {"host": "10.1.79.250", "passwd": "p"}


def test_check_output_path_refuses_what_cannot_be_written(tmp_path):
    ini = tmp_path / "hosts.ini"
    ini.write_text("[all]\n")
    (tmp_path / "file").write_text("")
    cases = {
        tmp_path / "no" / "such" / "roster": f"directory {tmp_path / 'no' / 'such'} does not exist",
        tmp_path: "is a directory; give a file name",
        tmp_path / "file" / "roster": f"{tmp_path / 'file'} is not a directory",
        ini: "is also an input file; it would be overwritten",
        "/dev/null": "exists and is not a regular file",
    }
    for path, reason in cases.items():
        with pytest.raises(importer.OutputError) as excinfo:
            importer.check_output_path(path, "--roster-out", inputs=[ini])
        assert str(excinfo.value) == f"--roster-out {path}: {reason}"
    with pytest.raises(importer.OutputError, match=r"^--roster-out '': is empty; give a file name$"):
        importer.check_output_path("", "--roster-out")
    importer.check_output_path(tmp_path / "roster", "--roster-out", inputs=[ini])  # fine


def test_write_roster_replaces_a_roster_and_keeps_it_private(tmp_path):
    target = tmp_path / "roster"
    target.write_text("old\n")
    target.chmod(0o644)
    importer.write_roster({"m1": {"host": "10.0.0.1"}}, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert yaml.safe_load(target.read_text()) == {"m1": {"host": "10.0.0.1"}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roster"]


def test_write_roster_failure_is_an_output_error(tmp_path):
    with pytest.raises(importer.OutputError, match=r"^roster .*/missing/roster: cannot write: "):
        importer.write_roster({"m1": {}}, tmp_path / "missing" / "roster")


def test_dump_yaml_writes_what_pyyaml_s_pure_python_emitter_writes():
    ksha, roster, _ = importer.import_files(SEED / "hosts.ini", SEED / "common.yaml")
    for data in ({"ksha": ksha}, roster, {"text": "a: b # c", "n": 1, "unicode": "é", "list": []}):
        assert importer.dump_yaml(data) == yaml.safe_dump(data, default_flow_style=False, sort_keys=False)


def test_nested_group_note_names_the_file_and_line():
    text = "[all]\nm1 ip=10.0.0.1\n[kube-master]\nm1\n[masters:children]\nkube-master\n"
    _, notes = importer.to_pillar(parse(text))
    assert notes == ["hosts.ini:5: group [masters:children]: nested groups are not imported"]


def test_roster_notes_about_a_group_var_come_once_for_its_line():
    hosts = "".join(f"h{i} ip=10.0.0.{i + 1}\n" for i in range(12))
    text = (
        f"[all]\n{hosts}h0 ansible_port=22\n[all:vars]\nansible_port=ssh\nansible_ssh_pass=a\nansible_become_pass=b\n"
    )
    roster, notes = importer.to_roster(parse(text))
    assert roster["h0"]["port"] == 22 and roster["h1"]["port"] == "ssh"
    assert notes == [
        "hosts.ini:16: hosts h1, h2, h3, h4, h5, h6, h7, h8, h9, h10 and 1 more: port 'ssh' is not a number; "
        "kept as written",
        "hosts.ini:18: hosts h0, h1, h2, h3, h4, h5, h6, h7, h8, h9 and 2 more: salt-ssh uses one password for ssh "
        "and sudo; the become password was not kept",
    ]
