"""The first section: the top-level keys, and every number of the pillar against its range, from one table.

A key out of its range is reported here and left out of ``ctx.ksha``, so the later sections
compare only good values (and never report the same key again).
"""

from __future__ import annotations

from typing import Any

from ksha.checks.base import TOP_KEYS, Context, Report, is_int_in, is_number_in

# pillar key -> (low, high), inclusive. Integer bounds: the value must be an integer (YAML's
# true/false are not); a float bound: any number. A section that adds a numeric key adds it here.
LIMITS: dict[str, tuple[float, float]] = {
    "ksha:loadbalancer:port": (1, 65535),
    "ksha:loadbalancer:keepalived:virtual_router_id": (1, 255),
    "ksha:loadbalancer:keepalived:prefixlen": (1, 128),  # at most 32 for an IPv4 VIP: loadbalancer.py
    "ksha:loadbalancer:keepalived:advert_int": (0.01, 255),
    "ksha:loadbalancer:haproxy:maxconn": (1, 1_000_000),
    "ksha:loadbalancer:haproxy:check_inter_ms": (50, 60_000),
    "ksha:loadbalancer:haproxy:check_fall": (1, 100),
    "ksha:loadbalancer:haproxy:check_rise": (1, 100),
    "ksha:loadbalancer:haproxy:connect_timeout_ms": (50, 60_000),
    "ksha:loadbalancer:haproxy:retries": (0, 10),
    "ksha:loadbalancer:console:port": (1, 65535),
    "ksha:loadbalancer:external:timeout": (0.1, 300),
    "ksha:etcd:client_port": (1, 65535),
    "ksha:etcd:peer_port": (1, 65535),
    "ksha:etcd:metrics_port": (1, 65535),
    "ksha:etcd:heartbeat_interval_ms": (10, 10_000),
    "ksha:etcd:election_timeout_ms": (50, 50_000),
    "ksha:etcd:quota_backend_bytes": (2**20, 8 * 2**30),
    "ksha:etcd:snapshot_count": (1, 10_000_000),
    "ksha:etcd:wait_healthy_s": (10, 3600),
    "ksha:etcd:pki:ca_days_valid": (1, 36500),
    "ksha:etcd:pki:days_valid": (1, 36500),
    "ksha:etcd:pki:days_remaining": (0, 36500),
    "ksha:etcd:backup:period_minutes": (1, 7 * 24 * 60),
    "ksha:etcd:backup:keep": (1, 1000),
    "ksha:kubernetes:apiserver_port": (1, 65535),
    "ksha:kubesphere:console_port": (1, 65535),
}

# Keys of LIMITS that may also be null.
NULLABLE = frozenset({"ksha:etcd:metrics_port"})

# The message for a value out of range, when it says more than the default ones below;
# {value!r}, {low} and {high} are filled in.
TEXTS = {
    "ksha:loadbalancer:port": "{value!r} is not a port: use an integer from {low} to {high} (e.g. 6443)",
    "ksha:loadbalancer:keepalived:virtual_router_id": "{value!r} must be an integer from {low} to {high}, unique on the LAN",
    "ksha:loadbalancer:keepalived:prefixlen": "{value!r} must be the prefix length of the LB hosts' subnet (e.g. 24)",
    "ksha:loadbalancer:keepalived:advert_int": "{value!r} must be seconds from {low} to {high}",
    "ksha:loadbalancer:console:port": "{value!r} is not a port (e.g. 30880)",
    "ksha:loadbalancer:external:timeout": "{value!r} must be seconds from {low} to {high}",
    "ksha:etcd:metrics_port": "{value!r} is not a port; null turns the metrics listener off",
    "ksha:kubernetes:apiserver_port": "{value!r} is not a port: use an integer from {low} to {high} (e.g. 6443)",
    "ksha:kubesphere:console_port": "{value!r} is not a port: use an integer from {low} to {high} (e.g. 30880)",
}
# pillar key -> the message when it is not true or false.
BOOLEANS = {
    "ksha:etcd:allow_even_member_count": "must be true or false, got {value!r}",
    "ksha:loadbalancer:console:enabled": "{value!r} must be true or false",
}

INTEGER_TEXT = "{value!r} must be an integer from {low} to {high}"
NUMBER_TEXT = "{value!r} must be a number from {low} to {high}"


def limit_problem(key: str, value: Any) -> str | None:
    """What is wrong with `value` for the numeric pillar `key` (one of LIMITS), or None."""
    low, high = LIMITS[key]
    if value is None and key in NULLABLE:
        return None
    integer = isinstance(low, int) and isinstance(high, int)
    if (is_int_in if integer else is_number_in)(value, low, high):
        return None
    text = TEXTS.get(key, INTEGER_TEXT if integer else NUMBER_TEXT)
    return text.format(value=value, low=low, high=high)


def _parent(ksha: dict, key: str) -> tuple[dict | None, str]:
    """The mapping holding `key` ("ksha:a:b" -> ksha["a"], "b"), None when there is none."""
    *path, name = key.split(":")[1:]
    node: Any = ksha
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), name


def check(ctx: Context, report: Report) -> None:
    for key in ctx.pillar:
        if key not in TOP_KEYS:
            report.warning(f"ksha:{key}", f"unknown key, ignored (known keys: {', '.join(TOP_KEYS)})")
    for key in [*BOOLEANS, *LIMITS]:
        parent, name = _parent(ctx.ksha, key)
        if parent is None or name not in parent:
            continue
        value = parent[name]
        if key in BOOLEANS:
            problem = None if isinstance(value, bool) else BOOLEANS[key].format(value=value)
        else:
            problem = limit_problem(key, value)
        if problem:
            report.error(key, problem)
            ctx.bad.add(key)
            del parent[name]
