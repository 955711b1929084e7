"""ksha:loadbalancer:qingcloud's checks (the mode's keys, each finding naming its key and the
fix), and that the key is never shown."""

import json
import re
from pathlib import Path

import pytest
import yaml

from ksha import inventory, model
from tests.conftest import edited

SECRET = "qy-secret-never-shown"
FILE = "/etc/salt/ksha/qingcloud.yaml"
GOOD = {
    "loadbalancer:mode": "qingcloud",
    "loadbalancer:qingcloud:zone": "pek3a",
    "loadbalancer:qingcloud:vxnet": "vxnet-kube",
    "loadbalancer:qingcloud:credentials_file": FILE,
}
KEY = {"loadbalancer:qingcloud:access_key_id": "QYKEYID", "loadbalancer:qingcloud:secret_access_key": SECRET}
NO_FILE = {"loadbalancer:qingcloud:credentials_file": None}
IN_PILLAR = "WARNING ksha:loadbalancer:qingcloud:secret_access_key: the API key is in the ksha pillar, which every"


def findings(example, **edits):
    found = [str(f) for f in inventory.validate(edited(example, **{**GOOD, **edits}))]
    return [f for f in found if "ksha:loadbalancer" in f or "qingcloud_instance_id" in f]


# (case, pillar edits over GOOD, the findings, each as the start of "LEVEL key: message")
CASES = [
    ("complete", {}, []),
    ("no zone", {"loadbalancer:qingcloud:zone": None}, ["ERROR ksha:loadbalancer:qingcloud:zone: missing: qingcloud"]),
    ("not a zone", {"loadbalancer:qingcloud:zone": "Peking 3"},
     ["ERROR ksha:loadbalancer:qingcloud:zone: 'Peking 3' is not a QingCloud zone (e.g. pek3a)"]),
    ("no vxnet", {"loadbalancer:qingcloud:vxnet": None},
     ["ERROR ksha:loadbalancer:qingcloud:vxnet: missing: the hosts' VxNet ID (vxnet-...)"]),
    ("a vxnet's name", {"loadbalancer:qingcloud:vxnet": "kube"},
     ["ERROR ksha:loadbalancer:qingcloud:vxnet: 'kube' is not a VxNet ID (vxnet-...)"]),
    ("an eip's address", {"loadbalancer:qingcloud:eip": "139.198.1.2"},
     ["ERROR ksha:loadbalancer:qingcloud:eip: '139.198.1.2' is not an EIP ID (eip-...)"]),
    ("no key at all", NO_FILE,
     ["ERROR ksha:loadbalancer:qingcloud:credentials_file: missing: qingcloud mode needs an API key"]),
    ("a key in the pillar", {**NO_FILE, **KEY}, [IN_PILLAR]),
    ("the key's ID alone", {**NO_FILE, "loadbalancer:qingcloud:access_key_id": "QYKEYID"},
     ["ERROR ksha:loadbalancer:qingcloud:secret_access_key: missing: access_key_id is set", IN_PILLAR]),
    ("a key file and a key", KEY,
     ["ERROR ksha:loadbalancer:qingcloud:credentials_file: is set, and so are access_key_id and secret_access_key"]),
    ("a relative key file", {"loadbalancer:qingcloud:credentials_file": "qingcloud.yaml"},
     ["ERROR ksha:loadbalancer:qingcloud:credentials_file: 'qingcloud.yaml' must be an absolute path on the Salt"]),
    ("a secret that is no string", {**NO_FILE, **KEY, "loadbalancer:qingcloud:secret_access_key": 12345},
     ["ERROR ksha:loadbalancer:qingcloud:secret_access_key: must be a string of 1 to 128 characters"]),
    ("a section that is no mapping", {"loadbalancer:qingcloud": f"access_key_id: QYKEYID secret_access_key: {SECRET}"},
     ["ERROR ksha:loadbalancer:qingcloud: must be a mapping (zone, vxnet, the API key, ...), got a str"]),
    ("Poll", {"loadbalancer:qingcloud:balance_mode": "poll"},
     ["ERROR ksha:loadbalancer:qingcloud:balance_mode: 'poll' is not one of roundrobin, leastconn, source"]),
    ("a check interval out of QingCloud's range", {"loadbalancer:qingcloud:healthy_check_option": "1|5|2|5"},
     ["ERROR ksha:loadbalancer:qingcloud:healthy_check_option: '1|5|2|5': the interval must be from 2 to 60"]),
    ("not a check option", {"loadbalancer:qingcloud:healthy_check_option": "10s"},
     ["ERROR ksha:loadbalancer:qingcloud:healthy_check_option: '10s' must be interval|timeout|fall|rise"]),
    ("an http console check", {"loadbalancer:qingcloud:console_check": "http|/healthz"}, []),
    ("a console check of another kind", {"loadbalancer:qingcloud:console_check": "udp"},
     ["ERROR ksha:loadbalancer:qingcloud:console_check: 'udp' must be tcp, or http|/path"]),
    ("a type out of range", {"loadbalancer:qingcloud:loadbalancer_type": 6},
     ["ERROR ksha:loadbalancer:qingcloud:loadbalancer_type: 6 must be an integer from 0 to 5"]),
    ("an http endpoint", {"loadbalancer:qingcloud:api": {"host": "api.private.cloud", "port": 7777, "protocol": "http"}},
     ["WARNING ksha:loadbalancer:qingcloud:api:protocol: http: requests and answers cross the network unencrypted"]),
    ("the address of a master", {"loadbalancer:address": "192.168.0.1"},
     ["ERROR ksha:loadbalancer:address: 192.168.0.1 is host 'master1''s address; the internal load balancer needs a free"]),
    ("no address", {"loadbalancer:address": None},
     ["ERROR ksha:loadbalancer:address: missing: mode 'qingcloud' needs the internal load balancer's private IP"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "edits", "expected"), CASES)
def test_qingcloud_findings(example_ksha, case, edits, expected):
    found = findings(example_ksha, **edits)
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), line
    assert all(SECRET not in line and "QYKEYID" not in line for line in found)


def test_instance_ids_are_checked_and_unique(example_ksha):
    example_ksha["hosts"][0]["qingcloud_instance_id"] = "i-abc123"
    example_ksha["hosts"][1]["qingcloud_instance_id"] = "i-abc123"
    example_ksha["hosts"][2]["qingcloud_instance_id"] = "master3"
    found = findings(example_ksha)
    assert found == [
        "ERROR ksha:hosts:1:qingcloud_instance_id: host 'master2': instance i-abc123 is also host 'master1''s",
        "ERROR ksha:hosts:2:qingcloud_instance_id: host 'master3': 'master3' is not a QingCloud instance ID (i-...); "
        "remove it to have ksha find the instance by the host's ip",
    ]


def test_the_key_is_not_in_the_model(example_ksha):
    cluster = model.build(edited(example_ksha, **{**GOOD, **NO_FILE, **KEY}))
    qc = cluster["config"]["loadbalancer"]["qingcloud"]
    assert (qc["access_key_id"], qc["secret_access_key"], qc["zone"]) == ("***", "***", "pek3a")
    text = json.dumps(cluster, default=str)
    assert SECRET not in text and "QYKEYID" not in text


def readme_examples():
    """The README's ``ksha:`` pillar examples (its yaml blocks that start so)."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(ksha:\n.*?)```", text, re.S)
    return [yaml.safe_load(b)["ksha"] for b in blocks]


def test_the_readme_s_load_balancer_examples_are_valid_and_one_is_qingcloud(example_ksha):
    examples = readme_examples()
    assert sorted(e["loadbalancer"]["mode"] for e in examples) == ["keepalived", "qingcloud"]
    for example in examples:
        pillar = {**example_ksha, **example}
        assert [str(f) for f in inventory.validate(pillar) if f.level == "ERROR"] == [], example
        assert model.build(pillar)["loadbalancer"]["mode"] == example["loadbalancer"]["mode"]
