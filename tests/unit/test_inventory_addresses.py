"""The validator on names and addresses: whole-string matches, scoped IPv6, the LB address's family and HA."""

import pytest

from ksha import inventory


def errors(ksha):
    return [str(f) for f in inventory.validate(ksha) if f.level == "ERROR"]


def warnings(ksha):
    return [str(f) for f in inventory.validate(ksha) if f.level == "WARNING"]


@pytest.fixture
def keepalived_ksha(example_ksha):
    example_ksha["loadbalancer"]["mode"] = "keepalived"
    return example_ksha


# --- a trailing newline (or blank) is no match ---------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("hosts", 0, "name"), "master1\n", "ksha:hosts:0:name"),
        (("hosts", 0, "ip"), "192.168.0.1\n", "ksha:hosts:0:ip"),
        (("hosts", 0, "ip"), " 192.168.0.1", "ksha:hosts:0:ip"),
        (("loadbalancer", "domain"), "lb.kubesphere.local\n", "ksha:loadbalancer:domain"),
        (("loadbalancer", "address"), "192.168.0.253\n", "ksha:loadbalancer:address"),
        (("loadbalancer", "keepalived", "interface"), "eth0\n", "ksha:loadbalancer:keepalived:interface"),
        (("etcd", "backup", "dir"), "/var/backups\n", "ksha:etcd:backup:dir"),
        (("cluster_name",), "kubesphere\n", "ksha:cluster_name"),
        (("kubernetes", "version"), "v1.16.7\n", "ksha:kubernetes:version"),
    ],
)
def test_a_trailing_newline_is_an_error(example_ksha, path, value, key):
    node = example_ksha
    for part in path[:-1]:
        node = node[part] if isinstance(part, int) else node.setdefault(part, {})
    node[path[-1]] = value
    found = errors(example_ksha)
    assert found[0].startswith(f"ERROR {key}: ") and all("\n" not in line for line in found), found
    # a host whose name is wrong is not the host the groups name: they say so too
    assert len(found) == (3 if key == "ksha:hosts:0:name" else 1), found


@pytest.mark.parametrize("field", ["sha256", "url", "version"])
def test_archive_fields_with_a_trailing_newline(example_ksha, field):
    archive = {"sha256": "ab" * 32, "url": "https://example.com/etcd.tgz", "version": "v3.4.23"}
    example_ksha["etcd"].update(source="archive", archive=archive)
    assert errors(example_ksha) == []
    archive[field] += "\n"
    [error] = errors(example_ksha)
    assert error.startswith(f"ERROR ksha:etcd:archive:{field}: ")


@pytest.mark.parametrize("name", ["master1\n", "a.b\n", "lb.\n"])
def test_name_predicates_match_the_whole_string(name):
    assert not inventory.is_rfc1123_label(name)
    assert not inventory.is_dns_name(name)


# --- scoped IPv6 -------------------------------------------------------------------


def test_parse_ip_refuses_a_scope_and_blanks():
    assert inventory.parse_ip("fe80::3%eth0") is None
    assert inventory.parse_ip(" 192.168.0.1") is None
    assert str(inventory.parse_ip("fe80::3")) == "fe80::3"


def test_scoped_ipv6_host_ip_is_an_error(example_ksha):
    example_ksha["hosts"][3]["ip"] = "fe80::3%eth0"
    assert errors(example_ksha) == [
        "ERROR ksha:hosts:3:ip: host 'node1': 'fe80::3%eth0' is a scoped IPv6 address: a cluster address cannot "
        "carry a zone (%...); use a global or unique-local address"
    ]


def test_scoped_ipv6_extra_address_is_an_error(example_ksha):
    example_ksha["hosts"][3]["addresses"] = ["fe80::3%eth0"]
    [error] = errors(example_ksha)
    assert error.startswith("ERROR ksha:hosts:3:addresses:0: host 'node1': 'fe80::3%eth0' is a scoped IPv6 address")


@pytest.mark.parametrize("mode", ["external", "keepalived", "none"])
def test_scoped_ipv6_lb_address_is_an_error(example_ksha, mode):
    if mode == "none":
        example_ksha["groups"]["kube-master"] = ["master1"]
        example_ksha["groups"]["kube-node"] += ["master2", "master3"]
    example_ksha["loadbalancer"].update(mode=mode, address="fe80::3%eth0")
    [error] = errors(example_ksha)
    assert error.startswith("ERROR ksha:loadbalancer:address: 'fe80::3%eth0' is a scoped IPv6 address")


# --- keepalived: the VIP's family is the LB hosts' -------------------------------------


def test_ipv6_vip_with_ipv4_lb_hosts_is_an_error(keepalived_ksha):
    keepalived_ksha["loadbalancer"]["address"] = "fd00::100"
    assert errors(keepalived_ksha) == [
        "ERROR ksha:loadbalancer:address: fd00::100 is IPv6 but the ip of LB host(s) master1, master2, master3 is "
        "IPv4; keepalived moves the VIP within the LB hosts' subnet: use an IPv4 VIP"
    ]


def test_ipv4_vip_with_ipv6_lb_hosts_is_an_error(keepalived_ksha):
    for index, host in enumerate(keepalived_ksha["hosts"]):
        host["ip"] = f"fd00::{index + 1}"
    keepalived_ksha["kubernetes"].update(service_cidr="fd00:10::/108", pod_cidr="fd00:20::/56")  # IPv6 too
    keepalived_ksha["network"] = {"plugin": "none"}  # calico's objects are IPv4's
    keepalived_ksha["loadbalancer"]["keepalived"] = {"prefixlen": 64}
    assert errors(keepalived_ksha) == [
        "ERROR ksha:loadbalancer:address: 192.168.0.253 is IPv4 but the ip of LB host(s) master1, master2, master3 "
        "is IPv6; keepalived moves the VIP within the LB hosts' subnet: use an IPv6 VIP"
    ]
    keepalived_ksha["loadbalancer"]["address"] = "fd00::100"
    assert errors(keepalived_ksha) == []


def test_mixed_lb_hosts_name_only_the_other_family(keepalived_ksha):
    keepalived_ksha["hosts"][2]["ip"] = "fd00::3"
    [error] = errors(keepalived_ksha)
    assert error.startswith("ERROR ksha:loadbalancer:address: 192.168.0.253 is IPv4 but the ip of LB host(s) master3 ")


def test_ipv6_prefixlen_needs_an_ipv6_vip(keepalived_ksha):
    keepalived_ksha["loadbalancer"]["keepalived"] = {"prefixlen": 64}
    assert errors(keepalived_ksha) == [
        "ERROR ksha:loadbalancer:keepalived:prefixlen: 64 must be the prefix length of the LB hosts' subnet (e.g. 24); "
        "an IPv4 VIP has at most 32"
    ]


# --- external mode: the LB address is one host's -----------------------------------------


@pytest.mark.parametrize(("address", "host"), [("192.168.0.1", "master1"), ("192.168.0.6", "node3")])
def test_external_lb_address_of_a_host_warns(example_ksha, address, host):
    example_ksha["loadbalancer"]["address"] = address
    assert errors(example_ksha) == []
    assert warnings(example_ksha) == [
        f"WARNING ksha:loadbalancer:address: {address} is host '{host}''s address: that is no HA: every client "
        "reaches the API through that one host; give the address of the load balancer in front of the masters"
    ]


def test_external_lb_address_of_a_hosts_extra_address_warns(example_ksha):
    example_ksha["hosts"][3]["addresses"] = ["203.0.113.4"]
    example_ksha["loadbalancer"]["address"] = "203.0.113.4"
    [warning] = warnings(example_ksha)
    assert warning.startswith("WARNING ksha:loadbalancer:address: 203.0.113.4 is host 'node1''s address: that is no HA")


def test_keepalived_vip_of_a_hosts_extra_address_is_an_error(keepalived_ksha):
    keepalived_ksha["hosts"][3]["addresses"] = ["192.168.0.100"]
    keepalived_ksha["loadbalancer"]["address"] = "192.168.0.100"
    assert errors(keepalived_ksha) == [
        "ERROR ksha:loadbalancer:address: 192.168.0.100 is host 'node1''s address; the VIP must be a free address "
        "in the hosts' subnet"
    ]
