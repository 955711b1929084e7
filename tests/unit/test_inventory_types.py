"""The validator's type checks: every pillar key of a wrong type is one ERROR naming it, never a traceback."""

import copy

import pytest
import yaml

from ksha import inventory
from tests.conftest import REPO


def errors(ksha):
    return [str(f) for f in inventory.validate(ksha) if f.level == "ERROR"]


def put(ksha, key, value):
    """Set ksha:<key> (colon notation, list indexes as numbers), creating mappings on the way."""
    node = ksha
    parts = key.split(":")[1:]
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def named(finding, key):
    """The finding is about `key`, a mapping or list holding it, or an item of it."""
    return finding.key == key or key.startswith(finding.key + ":") or finding.key.startswith(key + ":")


# --- sections and sub-mappings -------------------------------------------------

SECTIONS = [
    "ksha:groups",
    "ksha:loadbalancer",
    "ksha:loadbalancer:keepalived",
    "ksha:loadbalancer:haproxy",
    "ksha:loadbalancer:external",
    "ksha:loadbalancer:console",
    "ksha:loadbalancer:qingcloud",
    "ksha:etcd",
    "ksha:etcd:archive",
    "ksha:etcd:pki",
    "ksha:etcd:backup",
    "ksha:kubernetes",
    "ksha:kubesphere",
    "ksha:common",
]


@pytest.mark.parametrize("key", SECTIONS)
@pytest.mark.parametrize("value", ["oops", ["a"], 3, True, None])
def test_a_section_that_is_no_mapping_is_one_error(example_ksha, key, value):
    put(example_ksha, key, value)
    found = errors(example_ksha)
    assert len(found) == 1, found  # one line per problem: nothing inside it is checked again
    assert found[0].startswith(f"ERROR {key}: must be a mapping")
    # a section holding secrets (the QingCloud API key) says what it got, not its value
    shown = f"a {type(value).__name__}" if key == "ksha:loadbalancer:qingcloud" and value is not None else repr(value)
    assert f"got {shown}" in found[0]


def test_etcd_as_a_string_is_an_error(example_ksha):
    example_ksha["etcd"] = "oops"
    assert errors(example_ksha) == ["ERROR ksha:etcd: must be a mapping, got 'oops'"]


# --- group members ------------------------------------------------------------


def test_a_list_or_mapping_as_a_group_member_is_an_error(example_ksha):
    example_ksha["groups"]["kube-master"] = [["a"], {"b": 1}, "master1", "master2", "master3"]
    assert errors(example_ksha) == [
        "ERROR ksha:groups:kube-master:0: must be a host name, got ['a']",
        "ERROR ksha:groups:kube-master:1: must be a host name, got {'b': 1}",
    ]


def test_an_unknown_group_gets_the_same_type_checks(example_ksha):
    example_ksha["groups"]["extra"] = [{"b": 1}]
    assert errors(example_ksha) == ["ERROR ksha:groups:extra:0: must be a host name, got {'b': 1}"]


@pytest.mark.parametrize("group", ["kube-master", "kube-node", "etcd"])
def test_a_null_group_is_an_error(example_ksha, group):
    example_ksha["groups"][group] = None
    assert errors(example_ksha) == [
        f"ERROR ksha:groups:{group}: must be a list of host names, got None (write [] for none)"
    ]


def test_lb_hosts_items_must_be_host_names(example_ksha):
    example_ksha["loadbalancer"].update(mode="keepalived", hosts=[["master1"], "master2"])
    assert errors(example_ksha) == ["ERROR ksha:loadbalancer:hosts:0: must be a host name, got ['master1']"]


# --- scalars of known keys ------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ksha:cluster_name", 5, "must be a string, got 5"),
        ("ksha:cluster_name", "", "must not be empty"),
        ("ksha:kubernetes:version", 1.16, "must be a string, got 1.16"),
        ("ksha:kubesphere:version", None, "must be a string, got None"),
        ("ksha:kubernetes:apiserver_port", 0, "0 is not a port: use an integer from 1 to 65535"),
        ("ksha:kubesphere:console_port", "30880", "'30880' is not a port: use an integer from 1 to 65535"),
        ("ksha:common:hosts_file", "etc/hosts", "'etc/hosts' must be an absolute path"),
        ("ksha:common:pkgs", "curl", "must be a list of package names, got 'curl'"),
        ("ksha:etcd:pkgs", {"etcd": 1}, "must be a list of package names, got {'etcd': 1}"),
        ("ksha:etcd:user", ["etcd"], "must be a string, got ['etcd']"),
        ("ksha:etcd:data_dir", "var/lib/etcd", "'var/lib/etcd' must be an absolute path"),
        ("ksha:etcd:pki:ca_dir", 5, "5 must be an absolute path"),
        ("ksha:etcd:pki:ca_host", ["master1"], "must be a host name or null, got ['master1']"),
        ("ksha:etcd:auto_compaction_mode", "hourly", "'hourly' is not one of periodic, revision"),
        ("ksha:etcd:auto_compaction_retention", [1], "must be a string or an integer, got [1]"),
        ("ksha:etcd:archive:sha256", 5, "must be a string or null, got 5"),
        ("ksha:etcd:archive:url", None, "must be a string, got None"),
        ("ksha:etcd:archive:version", 3.4, "must be a string, got 3.4"),
        ("ksha:loadbalancer:keepalived:unicast", "yes", "'yes' must be true or false"),
        ("ksha:loadbalancer:keepalived:nopreempt", 1, "1 must be true or false"),
        ("ksha:loadbalancer:keepalived:advert_int", "1", "'1' must be seconds from 0.01 to 255"),
        ("ksha:loadbalancer:keepalived:prefixlen", 129, "129 must be the prefix length of the LB hosts' subnet"),
        ("ksha:loadbalancer:haproxy:stats_socket", "admin.sock", "'admin.sock' must be an absolute path"),
        ("ksha:loadbalancer:external:timeout", 0, "0 must be seconds from 0.1 to 300"),
        ("ksha:loadbalancer:external:timeout", True, "True must be seconds from 0.1 to 300"),
        ("ksha:loadbalancer:hosts", "master1", "must be a list of host names, got 'master1'"),
        ("ksha:loadbalancer:address", ["192.168.0.253"], "['192.168.0.253'] is not a valid IPv4 or IPv6 address"),
        ("ksha:loadbalancer:mode", None, "None is not one of keepalived, external, qingcloud, none"),
    ],
)
def test_scalar_of_a_wrong_type(example_ksha, key, value, message):
    put(example_ksha, key, value)
    found = errors(example_ksha)
    assert len(found) == 1 and found[0].startswith(f"ERROR {key}: {message}"), found


def test_a_list_item_of_a_wrong_type(example_ksha):
    example_ksha["common"] = {"pkgs": ["curl", 5]}
    assert errors(example_ksha) == ["ERROR ksha:common:pkgs:1: must be a package name, got 5"]


def test_a_secret_is_never_shown(example_ksha):
    put(example_ksha, "ksha:loadbalancer:keepalived:auth_pass", ["s3cret"])
    [error] = errors(example_ksha)
    assert error.startswith("ERROR ksha:loadbalancer:keepalived:auth_pass: must be a string of 1 to 8 characters")
    assert "s3cret" not in error


def test_long_values_are_shortened_in_messages(example_ksha):
    example_ksha["etcd"]["backup"] = list(range(10_000))
    [error] = errors(example_ksha)
    assert error.startswith("ERROR ksha:etcd:backup: must be a mapping, got [0, 1, 2")
    assert len(error) < 200


# --- fuzz: every key of the example pillar, and of the defaults ------------------

WRONG = [None, [["a"], {"b": 1}], {"a": [1]}, 7, "oops", True]


def keys_of(value, key="ksha"):
    """Every key below `value` in colon notation (list items included)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for part, child in items:
        sub = f"{key}:{part}"
        yield sub, child
        yield from keys_of(child, sub)


def _example():
    return yaml.safe_load((REPO / "pillar" / "ksha.sls.example").read_text())["ksha"]


SHIPPED_EXAMPLE = dict(keys_of(_example()))
EXAMPLE_KEYS = list(SHIPPED_EXAMPLE)
DEFAULT_KEYS = [key for key, _ in keys_of(inventory.load_defaults())]


def wrong_kind(key, original, wrong):
    """`wrong` is not of the kind `original` is (a list always counts: its items are wrong)."""
    if isinstance(wrong, list):
        return True
    numbers = (int, float)
    if isinstance(original, numbers) and isinstance(wrong, numbers) and not isinstance(wrong, bool):
        return isinstance(original, bool)
    if key == "ksha:etcd:auto_compaction_retention" and isinstance(wrong, int) and not isinstance(wrong, bool):
        return False  # a number of hours
    if key.startswith("ksha:nodes:sysctl:") and isinstance(wrong, int) and not isinstance(wrong, bool):
        return False  # a sysctl's value: 1 or "1"
    return type(wrong) is not type(original)


def fuzz(base, key, wrong):
    ksha = copy.deepcopy(base)
    put(ksha, key, wrong)
    found = inventory.validate(ksha)  # never raises
    assert all(isinstance(f, inventory.Finding) for f in found)
    assert all("\n" not in str(f) and len(str(f)) < 1000 for f in found), found
    return found


@pytest.mark.parametrize("key", EXAMPLE_KEYS)
def test_fuzz_every_key_of_the_example(example_ksha, key):
    original = dict(keys_of(example_ksha))[key]
    for wrong in WRONG:
        if not wrong_kind(key, original, wrong) or (wrong is None and SHIPPED_EXAMPLE[key] is None):
            continue  # (null where the shipped example has null is valid: the fixture filled it in)
        found = fuzz(example_ksha, key, wrong)
        assert any(f.level == "ERROR" and named(f, key) for f in found), (key, wrong, [str(f) for f in found])


@pytest.mark.parametrize("key", DEFAULT_KEYS)
def test_fuzz_every_key_of_the_defaults_in_keepalived_mode(example_ksha, key):
    example_ksha["loadbalancer"]["mode"] = "keepalived"
    original = dict(keys_of(inventory.load_defaults()))[key]
    for wrong in WRONG:
        if not wrong_kind(key, original, wrong) or (original is None and isinstance(wrong, (str, int))):
            continue  # a string or number where null is the default may be valid (an address, a port ...)
        found = fuzz(example_ksha, key, wrong)
        assert any(f.level == "ERROR" and named(f, key) for f in found), (key, wrong, [str(f) for f in found])


@pytest.mark.parametrize("wrong", WRONG + [[], {}, 0, -1, 1e308, float("nan"), "\n", "x" * 10_000])
def test_fuzz_inside_lists(example_ksha, wrong):
    for key in [
        "ksha:hosts:0",
        "ksha:hosts:0:name",
        "ksha:hosts:0:ip",
        "ksha:groups:etcd:0",
        "ksha:groups:kube-node:2",
    ]:
        fuzz(example_ksha, key, wrong)
    example_ksha["hosts"][3]["addresses"] = [wrong]
    fuzz(example_ksha, "ksha:hosts:3:addresses:0", wrong)


# --- the table covers the defaults -----------------------------------------------------


def test_every_key_of_the_defaults_has_a_type_and_every_type_a_key():
    from ksha.checks import schema

    defaults = dict(keys_of(inventory.load_defaults()))
    assert [key for key, value in defaults.items() if schema.spec_for(key, value) is None] == []
    assert [key for key in schema.TYPES if "*" not in key and key not in defaults] == []


@pytest.mark.parametrize(
    "path, known",
    [
        (
            ("etcd", "clinet_port"),
            "ksha:etcd:clinet_port: unknown key, ignored (known keys: source, pkgs, client_pkgs, archive,",
        ),
        (("loadbalancer", "keepalived", "advert"), "ksha:loadbalancer:keepalived:advert: unknown key, ignored"),
        (("etcd", "pki", "days"), "ksha:etcd:pki:days: unknown key, ignored (known keys: ca_host, ca_dir,"),
    ],
)
def test_unknown_keys_inside_a_section_are_warned(example_ksha, path, known):
    node = example_ksha
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = 1
    findings = [str(f) for f in inventory.validate(example_ksha)]
    assert any(f.startswith("WARNING " + known) for f in findings), findings
    assert not inventory.has_errors(inventory.validate(example_ksha))
