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
# Modes the validator knows but this version cannot deploy yet.
LB_MODES_NOT_IMPLEMENTED = ("qingcloud",)
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
    "kubesphere",
    "common",
)
HOST_KEYS = ("name", "ip", "addresses")

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class Finding:
    level: str  # "ERROR" or "WARNING"
    key: str  # pillar key, e.g. "ksha:hosts:1:ip"
    message: str

    def __str__(self) -> str:
        return f"{self.level} {self.key}: {self.message}"


def is_rfc1123_label(name: Any) -> bool:
    return isinstance(name, str) and bool(_LABEL.match(name))


def is_dns_name(name: Any) -> bool:
    if not isinstance(name, str) or not name or len(name) > 253:
        return False
    return all(_DNS_LABEL.match(label) for label in name.rstrip(".").split("."))


def parse_ip(value: Any):
    """An ip_address, or None when `value` is not an IP address."""
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def is_int_in(value: Any, low: int, high: int) -> bool:
    """An int (YAML's true/false are not) from low to high."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_number_in(value: Any, low: float, high: float) -> bool:
    """An int or float (not true/false) from low to high."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def is_port(value: Any) -> bool:
    return is_int_in(value, 1, 65535)


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

    ``ksha`` is the pillar with the defaults merged in, every key of a wrong type or out of its
    range left out (its error is already reported), so a later section finds a key either
    absent or of the right type. ``bad`` holds the keys left out.
    """

    pillar: dict
    ksha: dict
    bad: set[str] = dataclasses.field(default_factory=set)
    # well-formed hosts by name, each with "_index" (its position in ksha:hosts)
    hosts: dict[str, dict] = dataclasses.field(default_factory=dict)
    # every host address (ip and addresses) -> "host 'name'" (or "host #index")
    addresses: dict[Any, str] = dataclasses.field(default_factory=dict)
    # group -> members defined in ksha:hosts, each once, in pillar order
    groups: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    # group -> member -> its index in the pillar's list (the first one)
    positions: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def section(self, *path: str) -> dict:
        """The mapping at ksha:<path>, {} when absent (a wrong type is reported and left out)."""
        node: Any = self.ksha
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else {}
