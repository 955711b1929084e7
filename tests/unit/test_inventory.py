"""ksha.inventory.validate: one bad inventory per check, and the valid examples."""

import os

import pytest

from ksha import inventory


def lines(findings):
    return [str(f) for f in findings]


def errors(ksha):
    return [str(f) for f in inventory.validate(ksha) if f.level == "ERROR"]


def warnings(ksha):
    return [str(f) for f in inventory.validate(ksha) if f.level == "WARNING"]


def test_example_pillar_is_valid_without_findings(example_ksha):
    assert inventory.validate(example_ksha) == []


def test_missing_ksha_key():
    assert lines(inventory.validate(None)) == ["ERROR ksha: the pillar has no 'ksha' key; see pillar/ksha.sls.example"]


@pytest.mark.parametrize("value", [[], "hosts", 3])
def test_ksha_not_a_mapping(value):
    [finding] = inventory.validate(value)
    assert finding.key == "ksha" and "must be a mapping" in finding.message


def test_unknown_top_key_warns(example_ksha):
    example_ksha["loadbalacner"] = {}
    assert warnings(example_ksha) == [
        "WARNING ksha:loadbalacner: unknown key, ignored (known keys: cluster_name, hosts, groups, loadbalancer, "
        "etcd, kubernetes, nodes, containerd, network, kubesphere, common)"
    ]


def test_every_problem_reported_at_once_errors_first(example_ksha):
    example_ksha["hosts"][1]["ip"] = "300.1.1.1"
    example_ksha["groups"]["etcd"] = ["master1", "master2"]
    example_ksha["loadbalancer"]["port"] = 0
    example_ksha["groups"]["extra"] = []
    found = inventory.validate(example_ksha)
    assert [f.key for f in found] == [
        "ksha:hosts:1:ip",
        "ksha:groups:etcd",
        "ksha:loadbalancer:port",
        "ksha:groups:extra",
    ]
    assert [f.level for f in found] == ["ERROR", "ERROR", "ERROR", "WARNING"]


# --- etcd member count -------------------------------------------------------


def test_even_etcd_count_is_an_error(example_ksha):
    example_ksha["groups"]["etcd"] = ["master1", "master2"]
    assert errors(example_ksha) == [
        "ERROR ksha:groups:etcd: has 2 members; etcd needs an odd number (e.g. 1 or 3). While replacing a member, "
        "set ksha:etcd:allow_even_member_count: true for the transition"
    ]


def test_even_etcd_count_with_override_is_a_warning(example_ksha):
    example_ksha["hosts"].append({"name": "master4", "ip": "192.168.0.7"})
    example_ksha["groups"]["kube-master"].append("master4")
    example_ksha["groups"]["etcd"].append("master4")
    example_ksha["etcd"]["allow_even_member_count"] = True
    assert errors(example_ksha) == []
    [warning] = warnings(example_ksha)
    assert warning.startswith(
        "WARNING ksha:groups:etcd: has 4 members (even), allowed by ksha:etcd:allow_even_member_count"
    )


def test_override_must_be_boolean(example_ksha):
    example_ksha["etcd"]["allow_even_member_count"] = "yes"
    assert "ERROR ksha:etcd:allow_even_member_count: must be true or false, got 'yes'" in errors(example_ksha)


def test_single_etcd_member_warns_not_ha(example_ksha):
    example_ksha["groups"]["etcd"] = ["master1"]
    assert errors(example_ksha) == []
    assert warnings(example_ksha) == [
        "WARNING ksha:groups:etcd: has 1 member: etcd is not highly available (use 3 or 5)"
    ]


def test_no_etcd_member_is_an_error(example_ksha):
    example_ksha["groups"]["etcd"] = []
    assert errors(example_ksha) == [
        "ERROR ksha:groups:etcd: is empty: the cluster needs etcd members (an odd number, usually 3)"
    ]


def test_etcd_on_worker_only_host_warns(example_ksha):
    example_ksha["groups"]["etcd"] = ["master1", "master2", "node1"]
    assert errors(example_ksha) == []
    [warning] = warnings(example_ksha)
    assert warning.startswith("WARNING ksha:groups:etcd:2: host 'node1' is a kube-node but not a kube-master")


# --- groups -----------------------------------------------------------------


def test_empty_kube_master(example_ksha):
    example_ksha["groups"]["kube-master"] = []
    assert "ERROR ksha:groups:kube-master: is empty: the cluster needs at least one master" in errors(example_ksha)


def test_group_names_undefined_host(example_ksha):
    example_ksha["groups"]["kube-node"].append("node9")
    assert errors(example_ksha) == [
        "ERROR ksha:groups:kube-node:3: host 'node9' is not defined in ksha:hosts "
        "(defined: master1, master2, master3, node1, node2, node3)"
    ]


def test_host_listed_twice_in_a_group(example_ksha):
    example_ksha["groups"]["kube-node"].append("node1")
    assert errors(example_ksha) == ["ERROR ksha:groups:kube-node:3: host 'node1' is listed twice"]


def test_group_not_a_list(example_ksha):
    example_ksha["groups"]["kube-node"] = "node1,node2"
    assert "ERROR ksha:groups:kube-node: must be a list of host names, got 'node1,node2'" in errors(example_ksha)


def test_unknown_group_warns(example_ksha):
    example_ksha["groups"]["k8s-cluster"] = ["master1"]
    assert warnings(example_ksha) == [
        "WARNING ksha:groups:k8s-cluster: unknown group, ignored (known groups: kube-master, kube-node, etcd)"
    ]


def test_host_in_no_group_warns(example_ksha):
    example_ksha["hosts"].append({"name": "spare1", "ip": "192.168.0.9"})
    assert warnings(example_ksha) == ["WARNING ksha:hosts:6:name: host 'spare1' is in no group and gets no role"]


# --- hosts ------------------------------------------------------------------


def test_empty_hosts():
    assert "ERROR ksha:hosts: is empty: the cluster needs at least one host" in errors({"hosts": []})


def test_hosts_not_a_list(example_ksha):
    example_ksha["hosts"] = {"master1": {"ip": "192.168.0.1"}}
    assert "ERROR ksha:hosts: must be a list of {name, ip} mappings" in errors(example_ksha)


def test_duplicate_host_name(example_ksha):
    example_ksha["hosts"][4]["name"] = "node1"
    assert "ERROR ksha:hosts:4:name: duplicate host name 'node1' (also ksha:hosts:3)" in errors(example_ksha)


def test_duplicate_ip(example_ksha):
    example_ksha["hosts"][5]["ip"] = "192.168.0.1"
    assert errors(example_ksha) == [
        "ERROR ksha:hosts:5:ip: host 'node3': address 192.168.0.1 is also used by host 'master1'"
    ]


def test_duplicate_ip_in_extra_addresses(example_ksha):
    example_ksha["hosts"][3]["addresses"] = ["192.168.0.2"]
    assert errors(example_ksha) == [
        "ERROR ksha:hosts:3:addresses:0: host 'node1': address 192.168.0.2 is also used by host 'master2'"
    ]


@pytest.mark.parametrize("bad", ["192.168.0.256", "192.168.0", "master1", "", 3232235521, None])
def test_invalid_ip(example_ksha, bad):
    example_ksha["hosts"][0]["ip"] = bad
    [error] = errors(example_ksha)
    assert error.startswith("ERROR ksha:hosts:0:ip: host 'master1': ")


def test_ipv6_address_is_valid(example_ksha):
    example_ksha["hosts"][3]["ip"] = "fd00::4"
    assert inventory.validate(example_ksha) == []


@pytest.mark.parametrize("bad", ["Master1", "master_1", "-master1", "master1-", "a" * 64, "master1.example.com", 7])
def test_host_name_not_rfc1123_label(example_ksha, bad):
    example_ksha["hosts"][0]["name"] = bad
    found = errors(example_ksha)
    assert f"ERROR ksha:hosts:0:name: {bad!r} is not an RFC 1123 label" in found[0]


def test_host_without_name(example_ksha):
    del example_ksha["hosts"][0]["name"]
    assert "ERROR ksha:hosts:0:name: missing: every host needs a name (its Salt minion id)" in errors(example_ksha)


def test_unknown_host_key_warns(example_ksha):
    example_ksha["hosts"][0]["ansible_ssh_pass"] = "secret"
    [warning] = warnings(example_ksha)
    assert warning.startswith("WARNING ksha:hosts:0:ansible_ssh_pass: host 'master1': unknown key")
    assert "secret" not in warning


# --- load balancer ----------------------------------------------------------


@pytest.mark.parametrize("port", [0, 65536, "6443", 6443.0, True, None])
def test_lb_port_must_be_integer_in_range(example_ksha, port):
    example_ksha["loadbalancer"]["port"] = port
    assert errors(example_ksha) == [
        f"ERROR ksha:loadbalancer:port: {port!r} is not a port: use an integer from 1 to 65535 (e.g. 6443)"
    ]


@pytest.mark.parametrize("address", ["192.168.0.999", "lb.example.com", 12])
def test_lb_address_must_be_ip(example_ksha, address):
    example_ksha["loadbalancer"]["address"] = address
    assert errors(example_ksha) == [f"ERROR ksha:loadbalancer:address: {address!r} is not a valid IPv4 or IPv6 address"]


def test_lb_address_missing_for_external(example_ksha):
    del example_ksha["loadbalancer"]["address"]
    assert errors(example_ksha) == [
        "ERROR ksha:loadbalancer:address: missing: mode 'external' needs the LB address (the VIP)"
    ]


@pytest.mark.parametrize("domain", ["lb_kubesphere.local", "-lb.local", "", "a..b", 5])
def test_lb_domain_must_be_dns_name(example_ksha, domain):
    example_ksha["loadbalancer"]["domain"] = domain
    assert errors(example_ksha) == [
        f"ERROR ksha:loadbalancer:domain: {domain!r} is not a valid DNS name (e.g. lb.kubesphere.local)"
    ]


def test_lb_mode_unknown(example_ksha):
    example_ksha["loadbalancer"]["mode"] = "nginx"
    assert errors(example_ksha) == [
        "ERROR ksha:loadbalancer:mode: 'nginx' is not one of keepalived, external, qingcloud, none"
    ]


def test_several_masters_without_lb_is_an_error(example_ksha):
    example_ksha["loadbalancer"] = {"mode": "none"}
    [error] = errors(example_ksha)
    assert error.startswith("ERROR ksha:loadbalancer:mode: is 'none' but there are 3 masters")


def test_missing_loadbalancer_section_means_none(example_ksha):
    del example_ksha["loadbalancer"]
    [error] = errors(example_ksha)
    assert error.startswith("ERROR ksha:loadbalancer:mode: is 'none' but there are 3 masters")


def test_single_master_without_lb_is_valid(example_ksha):
    example_ksha["groups"] = {"kube-master": ["master1"], "kube-node": ["node1", "node2", "node3"], "etcd": ["master1"]}
    example_ksha["hosts"] = [h for h in example_ksha["hosts"] if h["name"] not in ("master2", "master3")]
    example_ksha["loadbalancer"] = {"mode": "none"}
    assert errors(example_ksha) == []


def test_keepalived_vip_must_not_be_a_host_address(example_ksha):
    example_ksha["loadbalancer"].update(mode="keepalived", address="192.168.0.2")
    assert errors(example_ksha) == [
        "ERROR ksha:loadbalancer:address: 192.168.0.2 is host 'master2''s address; the VIP must be a free address "
        "in the hosts' subnet"
    ]


def test_qingcloud_mode_names_what_it_needs(example_ksha):
    example_ksha["loadbalancer"]["mode"] = "qingcloud"
    missing = errors(example_ksha)
    # each key the mode needs is named (tests/unit/test_inventory_qingcloud.py)
    assert [e.split(": ")[0] for e in missing] == [
        f"ERROR ksha:loadbalancer:qingcloud:{key}" for key in ("zone", "vxnet", "credentials_file")
    ]


def test_merge_replaces_lists_and_recurses_dicts():
    assert inventory.merge({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3]}, "e": 2}) == {
        "a": {"b": 1, "c": [3]},
        "d": 1,
        "e": 2,
    }


# --- keepalived mode (issue 4) ------------------------------------------------


@pytest.fixture
def keepalived_ksha(example_ksha):
    example_ksha["loadbalancer"]["mode"] = "keepalived"
    return example_ksha


def test_keepalived_example_is_valid(keepalived_ksha):
    assert inventory.validate(keepalived_ksha) == []


@pytest.mark.parametrize("vrid", [0, 256, "51", True])
def test_keepalived_router_id(keepalived_ksha, vrid):
    keepalived_ksha["loadbalancer"]["keepalived"] = {"virtual_router_id": vrid}
    [error] = errors(keepalived_ksha)
    assert error.startswith(f"ERROR ksha:loadbalancer:keepalived:virtual_router_id: {vrid!r} must be an integer")


def test_keepalived_vip_outside_lb_hosts_subnet(keepalived_ksha):
    keepalived_ksha["loadbalancer"]["address"] = "192.168.1.253"
    found = errors(keepalived_ksha)
    assert found[0] == (
        "ERROR ksha:loadbalancer:address: 192.168.1.253 is not in LB host 'master1''s subnet 192.168.0.0/24; "
        "keepalived can only move a VIP within the LB hosts' subnet"
    )
    assert len(found) == 3  # one per LB host


def test_keepalived_prefix_widens_the_subnet(keepalived_ksha):
    keepalived_ksha["loadbalancer"]["address"] = "192.168.1.253"
    keepalived_ksha["loadbalancer"]["keepalived"] = {"prefixlen": 16}
    assert errors(keepalived_ksha) == []


def test_keepalived_interface_name(keepalived_ksha):
    keepalived_ksha["loadbalancer"]["keepalived"] = {"interface": "eth0; rm -rf /"}
    [error] = errors(keepalived_ksha)
    assert error.startswith("ERROR ksha:loadbalancer:keepalived:interface: 'eth0; rm -rf /' is not an interface name")


def test_keepalived_auth_needs_vrrpv2_advert(keepalived_ksha):
    keepalived_ksha["loadbalancer"]["keepalived"] = {"auth_pass": "s3cret"}
    [error] = errors(keepalived_ksha)
    assert error.startswith("ERROR ksha:loadbalancer:keepalived:advert_int: 0.2 s needs VRRPv3")
    assert "s3cret" not in error


def test_keepalived_auth_pass_too_long(keepalived_ksha):
    keepalived_ksha["loadbalancer"]["keepalived"] = {"auth_pass": "much-too-long", "advert_int": 1}
    assert errors(keepalived_ksha) == [
        "ERROR ksha:loadbalancer:keepalived:auth_pass: must be a string of 1 to 8 characters (VRRPv2 PASS authentication)"
    ]


def test_keepalived_lb_hosts_must_exist_and_one_warns(keepalived_ksha):
    keepalived_ksha["loadbalancer"]["hosts"] = ["lb9"]
    assert errors(keepalived_ksha) == ["ERROR ksha:loadbalancer:hosts:0: host 'lb9' is not defined in ksha:hosts"]
    keepalived_ksha["loadbalancer"]["hosts"] = ["node1"]
    assert warnings(keepalived_ksha) == ["WARNING ksha:loadbalancer:hosts: has 1 LB host: the VIP has no failover"]


@pytest.mark.parametrize(
    ("key", "value"),
    [("maxconn", 0), ("check_inter_ms", 10), ("check_fall", "2"), ("connect_timeout_ms", 2.5), ("retries", 11)],
)
def test_haproxy_numbers(keepalived_ksha, key, value):
    keepalived_ksha["loadbalancer"]["haproxy"] = {key: value}
    [error] = errors(keepalived_ksha)
    assert error.startswith(f"ERROR ksha:loadbalancer:haproxy:{key}: {value!r} must be an integer from ")


def test_console_frontend_settings(keepalived_ksha):
    keepalived_ksha["loadbalancer"]["console"] = {"enabled": "yes", "port": 0}
    assert errors(keepalived_ksha) == [
        "ERROR ksha:loadbalancer:console:enabled: 'yes' must be true or false",
        "ERROR ksha:loadbalancer:console:port: 0 is not a port (e.g. 30880)",
    ]
    keepalived_ksha["loadbalancer"]["console"] = {"enabled": True, "port": 6443}
    assert errors(keepalived_ksha) == [
        "ERROR ksha:loadbalancer:console:port: is the API's port (ksha:loadbalancer:port); use another"
    ]
    keepalived_ksha["loadbalancer"]["console"] = {"enabled": True}
    assert errors(keepalived_ksha) == []


def test_external_check_kind(example_ksha):
    example_ksha["loadbalancer"]["external"] = {"check": "ping"}
    assert errors(example_ksha) == [
        "ERROR ksha:loadbalancer:external:check: 'ping' is not one of answer, listen, ready"
    ]
    example_ksha["loadbalancer"]["external"] = {"check": "ready"}
    assert errors(example_ksha) == []


# --- etcd settings -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("source",), "tarball", "'tarball' is not one of package, archive"),
        (("client_port",), 0, "0 must be an integer from 1 to 65535"),
        (("peer_port",), 2379, "is the same as ksha:etcd:client_port; etcd needs two ports"),
        (("metrics_port",), 2380, "2380 is also ksha:etcd's client or peer port"),
        (("heartbeat_interval_ms",), "100", "'100' must be an integer from 10 to 10000"),
        (("election_timeout_ms",), 400, "400 ms is less than 5 heartbeats (100 ms each); etcd refuses to start"),
        (("quota_backend_bytes",), 2**40, "1099511627776 must be an integer from 1048576 to 8589934592"),
        (("pki", "days_remaining"), 365, "365 is not less than ksha:etcd:pki:days_valid (365): every highstate"),
        (("pki", "days_valid"), 4000, "4000 is more than ksha:etcd:pki:ca_days_valid (3650): a certificate"),
        (("backup", "period_minutes"), 0, "0 must be an integer from 1 to 10080"),
        (("backup", "keep"), 0.5, "0.5 must be an integer from 1 to 1000"),
        (("backup", "dir"), "backups", "'backups' must be an absolute path"),
    ],
)
def test_etcd_settings(example_ksha, path, value, message):
    section = example_ksha.setdefault("etcd", {})
    for part in path[:-1]:
        section = section.setdefault(part, {})
    section[path[-1]] = value
    [error] = errors(example_ksha)
    key = "ksha:etcd:" + ":".join(path)
    assert error.startswith(f"ERROR {key}: {message}"), error


def test_etcd_archive_source_needs_a_checksum(example_ksha):
    example_ksha.setdefault("etcd", {})["source"] = "archive"
    assert errors(example_ksha) == [
        "ERROR ksha:etcd:archive:sha256: source 'archive' needs the release tarball's sha256 (64 hex digits, from the "
        "release's SHA256SUMS) so a changed download is refused"
    ]
    example_ksha["etcd"]["archive"] = {"sha256": "ab" * 32, "url": "ftp://mirror/etcd.tgz", "version": "latest"}
    assert errors(example_ksha) == [
        "ERROR ksha:etcd:archive:url: 'ftp://mirror/etcd.tgz' is not an http(s)://, salt:// or file:// URL",
        "ERROR ksha:etcd:archive:version: 'latest' is not a release version (e.g. v3.4.23)",
    ]
    example_ksha["etcd"]["archive"] = {"sha256": "ab" * 32, "url": "salt://files/etcd.tgz", "version": "v3.4.23"}
    assert errors(example_ksha) == []


def test_defaults_are_parsed_once_handed_out_as_copies_and_read_again_when_edited(tmp_path, monkeypatch):
    defaults = tmp_path / "defaults.yaml"
    defaults.write_text("ksha:\n  a: 1\n")
    monkeypatch.setattr(inventory, "DEFAULTS_FILE", defaults)
    first = inventory.load_defaults()
    first["ksha"]["a"] = 99  # a caller changing its copy changes nobody else's
    assert inventory.load_defaults() == {"ksha": {"a": 1}}
    defaults.write_text("ksha:\n  a: 2\n  b: 3\n")
    assert inventory.load_defaults() == {"ksha": {"a": 2, "b": 3}}
    # the same size, the same modification time: a file put in its place is read again
    replacement = tmp_path / "new.yaml"
    replacement.write_text("ksha:\n  a: 4\n  b: 5\n")
    stat = defaults.stat()
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    replacement.replace(defaults)
    assert inventory.load_defaults() == {"ksha": {"a": 4, "b": 5}}
