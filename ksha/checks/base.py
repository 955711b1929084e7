"""What every section of the validator shares: findings, the report, the context, value tests.

Nothing here imports another ksha module, so ``ksha.inventory`` can re-export these names.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

KNOWN_GROUPS = ("kube-master", "kube-node", "etcd")
LB_MODES = ("keepalived", "external", "qingcloud", "none")
# ksha:loadbalancer:qingcloud:balance_mode (QingCloud's "Poll" is roundrobin)
QINGCLOUD_BALANCE_MODES = ("roundrobin", "leastconn", "source")
# ksha:loadbalancer:external:check (see salt/_states/ksha_lb.py, reachable)
EXTERNAL_CHECKS = ("answer", "listen", "ready")
ETCD_SOURCES = ("package", "archive")
TOP_KEYS = (
    "cluster_name",
    "hosts",
    "groups",
    "loadbalancer",
    "etcd",
    "kubernetes",
    "nodes",
    "containerd",
    "network",
    "kubesphere",
    "common",
)
HOST_KEYS = ("name", "ip", "addresses", "qingcloud_instance_id")

# Whole-string patterns: always used with fullmatch (a trailing newline is no match).
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_LABEL = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?")

# How many names a message lists before it says how many there are in all.
NAMES_SHOWN = 10


@dataclasses.dataclass(frozen=True)
class Finding:
    level: str  # "ERROR" or "WARNING"
    key: str  # pillar key, e.g. "ksha:hosts:1:ip"
    message: str

    def __str__(self) -> str:
        return f"{self.level} {self.key}: {self.message}"


def is_rfc1123_label(name: Any) -> bool:
    return isinstance(name, str) and _LABEL.fullmatch(name) is not None


def is_dns_name(name: Any) -> bool:
    if not isinstance(name, str) or not name or len(name) > 253:
        return False
    return all(_DNS_LABEL.fullmatch(label) for label in name.removesuffix(".").split("."))


def parse_ip(value: Any):
    """An ip_address, or None when `value` is not a cluster address.

    A cluster address is the address alone: no surrounding blanks, no IPv6 zone (``fe80::3%eth0``).
    """
    if not isinstance(value, str):
        return None
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if getattr(addr, "scope_id", None) is not None:
        return None
    return addr


def ip_problem(value: Any) -> str:
    """Why `value` is not a cluster address (for a value :func:`parse_ip` refused)."""
    if isinstance(value, str) and "%" in value and parse_ip(value.partition("%")[0]) is not None:
        return (
            f"{show(value)} is a scoped IPv6 address: a cluster address cannot carry a zone (%...); "
            "use a global or unique-local address"
        )
    return f"{show(value)} is not a valid IPv4 or IPv6 address"


def is_int_in(value: Any, low: int, high: int) -> bool:
    """An int (YAML's true/false are not) from low to high."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_number_in(value: Any, low: float, high: float) -> bool:
    """An int or float (not true/false) from low to high."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def is_port(value: Any) -> bool:
    return is_int_in(value, 1, 65535)


def show(value: Any, limit: int = 100) -> str:
    """repr(value), shortened: a message stays one readable line whatever the input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def names(items: list[str] | dict) -> str:
    """'a, b, c', or the first NAMES_SHOWN and how many there are in all (an odd name as its repr)."""
    items = list(items)
    shown = [n if n.isprintable() and len(n) <= 63 else show(n) for n in items[:NAMES_SHOWN]]
    if len(items) <= NAMES_SHOWN:
        return ", ".join(shown)
    return f"{', '.join(shown)}, ... ({len(items)} in all)"


class Report:
    """The findings of every section, in the order found."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def error(self, key: str, message: str) -> None:
        self.findings.append(Finding("ERROR", key, message))

    def warning(self, key: str, message: str) -> None:
        self.findings.append(Finding("WARNING", key, message))

    def ordered(self) -> list[Finding]:
        """Errors first; each level in the pillar's order (TOP_KEYS), then as found."""
        rank = {key: index for index, key in enumerate(TOP_KEYS)}

        def place(finding: Finding) -> tuple[bool, int]:
            parts = finding.key.split(":")
            top = rank.get(parts[1], len(rank)) if len(parts) > 1 else -1
            return finding.level != "ERROR", top

        return sorted(self.findings, key=place)


@dataclasses.dataclass
class Context:
    """What the sections read and leave for the sections after them.

    ``ksha`` is the pillar with the defaults merged in; the schema section leaves every key of a
    wrong type or out of its range out of it (its error is reported), so a later section finds
    a key either absent or of the right type. ``bad`` holds the keys reported by the schema
    section (list items included: they stay in their lists, the sections skip them).
    """

    pillar: dict  # as given
    ksha: dict  # defaults merged in; after the schema section, only keys of the right type
    defaults: dict = dataclasses.field(default_factory=dict)
    bad: set[str] = dataclasses.field(default_factory=set)
    # well-formed hosts by name, each with "_index" (its position in ksha:hosts)
    hosts: dict[str, dict] = dataclasses.field(default_factory=dict)
    # every host address (ip and addresses) -> "host 'name'" (or "host #index")
    addresses: dict[Any, str] = dataclasses.field(default_factory=dict)
    # group -> members defined in ksha:hosts, each once, in pillar order
    groups: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    # group -> member -> its index in the pillar's list (the first one)
    positions: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    # groups whose members are not all known (a wrong type, a member not defined): their size is
    # not checked, its error would repeat the one already reported
    unresolved: set[str] = dataclasses.field(default_factory=set)

    def section(self, *path: str) -> dict:
        """The mapping at ksha:<path>, {} when absent (a wrong type is reported and left out)."""
        node: Any = self.ksha
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else {}


def certificate_days(key: str, pki: dict, report: Report) -> None:
    """A PKI section's days (`key`: ksha:etcd:pki, ksha:kubernetes:pki): a certificate renewed
    before it is due, or outliving its CA, is an error."""
    valid, remaining, ca_valid = pki.get("days_valid"), pki.get("days_remaining"), pki.get("ca_days_valid")
    if valid is not None and remaining is not None and remaining >= valid:
        report.error(
            f"{key}:days_remaining",
            f"{remaining} is not less than {key}:days_valid ({valid}): every highstate would issue the "
            "certificates again and restart the services using them",
        )
    if valid is not None and ca_valid is not None and valid > ca_valid:
        report.error(
            f"{key}:days_valid",
            f"{valid} is more than {key}:ca_days_valid ({ca_valid}): a certificate cannot outlive its CA",
        )


def ca_host_in_group(ctx: Context, report: Report, key: str, ca_host: Any, group: str, what: str, one: str) -> None:
    """A CA host (`key`, a string or null) must be one of `group`'s members (`what`: "an etcd
    member"); null means the first `one` ("member"). No member (the group's own error), or one listed but not
    defined (that error): nothing to add."""
    members = ctx.groups[group]
    if ca_host is None or not members or ca_host in ctx.positions[group]:
        return
    report.error(
        key,
        f"{show(ca_host)} is not {what}: ksha:groups:{group} lists {names(members)}; "
        f"null means the first {one} ({members[0]})",
    )
