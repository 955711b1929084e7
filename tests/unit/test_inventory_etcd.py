"""ksha:etcd's model checks: the CA host is an etcd member (or null: the first one)."""

import pytest

from ksha import inventory


def errors(ksha):
    return [str(f) for f in inventory.validate(ksha) if f.level == "ERROR"]


CA_HOST_TAIL = "ksha:groups:etcd lists master1, master2, master3; null means the first member (master1)"


@pytest.mark.parametrize(
    ("ca_host", "etcd_group", "expected"),
    [
        (None, None, []),
        ("master1", None, []),
        ("master3", None, []),
        (None, ["master2"], []),
        ("master2", ["master2"], []),
        ("node1", None, [f"ERROR ksha:etcd:pki:ca_host: 'node1' is not an etcd member: {CA_HOST_TAIL}"]),
        ("nobody", None, [f"ERROR ksha:etcd:pki:ca_host: 'nobody' is not an etcd member: {CA_HOST_TAIL}"]),
        ("Master1", None, [f"ERROR ksha:etcd:pki:ca_host: 'Master1' is not an etcd member: {CA_HOST_TAIL}"]),
        (
            "master1",
            ["master2"],
            [
                "ERROR ksha:etcd:pki:ca_host: 'master1' is not an etcd member: ksha:groups:etcd lists master2; "
                "null means the first member (master2)"
            ],
        ),
        # the etcd group's own error is the one line: no member to compare with
        (
            "master1",
            [],
            ["ERROR ksha:groups:etcd: is empty: the cluster needs etcd members (an odd number, usually 3)"],
        ),
        # a member listed but not defined in ksha:hosts: that error only
        (
            "master9",
            ["master1", "master2", "master3", "master9"],
            [
                "ERROR ksha:groups:etcd:3: host 'master9' is not defined in ksha:hosts (defined: master1, master2, "
                "master3, node1, node2, node3)"
            ],
        ),
    ],
)
def test_ca_host_is_null_or_an_etcd_member(example_ksha, ca_host, etcd_group, expected):
    example_ksha["etcd"]["pki"]["ca_host"] = ca_host
    if etcd_group is not None:
        example_ksha["groups"]["etcd"] = etcd_group
    assert errors(example_ksha) == expected
