"""The one table of ranges (ksha.checks.schema.LIMITS): every number of the pillar is checked from it."""

import pytest

from ksha import inventory
from ksha.checks import schema


def leaves(value, key="ksha"):
    if isinstance(value, dict):
        for part, child in value.items():
            yield from leaves(child, f"{key}:{part}")
    else:
        yield key, value


DEFAULT_LEAVES = dict(leaves(inventory.load_defaults()))


def put(ksha, key, value):
    node = ksha
    *path, name = key.split(":")[1:]
    for part in path:
        node = node.setdefault(part, {})
    node[name] = value


def test_every_number_of_the_defaults_has_a_range_and_every_range_a_default():
    numbers = {k for k, v in DEFAULT_LEAVES.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numbers - set(schema.LIMITS) == set()
    assert set(schema.LIMITS) - set(DEFAULT_LEAVES) == set()


@pytest.mark.parametrize("key", list(schema.LIMITS))
def test_each_default_is_in_its_range(key):
    assert schema.limit_problem(key, DEFAULT_LEAVES[key]) is None


@pytest.mark.parametrize("key", list(schema.LIMITS))
def test_the_bounds_are_in_and_beyond_them_is_one_error(example_ksha, key):
    low, high = schema.LIMITS[key]
    assert schema.limit_problem(key, low) is None
    assert schema.limit_problem(key, high) is None
    step = 1 if isinstance(low, int) and isinstance(high, int) else low / 2
    for value in (low - step, high + step, str(low), True, [low]):
        put(example_ksha, key, value)
        found = [f for f in inventory.validate(example_ksha) if f.level == "ERROR"]
        assert [(f.key, f.message) for f in found] == [(key, schema.limit_problem(key, value))], value


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ksha:loadbalancer:haproxy:retries", 11, "11 must be an integer from 0 to 10"),
        ("ksha:etcd:quota_backend_bytes", 1.5, "1.5 must be an integer from 1048576 to 8589934592"),
        ("ksha:loadbalancer:keepalived:advert_int", 0, "0 must be seconds from 0.01 to 255"),
        ("ksha:loadbalancer:port", "6443", "'6443' is not a port: use an integer from 1 to 65535 (e.g. 6443)"),
        ("ksha:etcd:metrics_port", 0, "0 is not a port; null turns the metrics listener off"),
    ],
)
def test_messages_come_from_the_table(key, value, message):
    assert schema.limit_problem(key, value) == message


def test_a_nullable_number(example_ksha):
    assert schema.limit_problem("ksha:etcd:metrics_port", None) is None
    assert schema.limit_problem("ksha:etcd:client_port", None) == "None must be an integer from 1 to 65535"
