"""The first section: the type of every pillar key, and every number against its range.

Two tables. TYPES: pillar key -> what its value must be (a key not in it gets the type of its
default in defaults.yaml: a mapping, a list, a boolean, a string, a number). LIMITS: numeric
pillar key -> (low, high), applied by one function, :func:`limit_problem`. A key of a wrong
type or out of its range is reported here, once, and left out of ``ctx.ksha``; so a later
section finds every key absent or of the right type, and never reports it again. List items
keep their places (their index is their key): a wrong item is reported here and skipped by
the section that reads the list.
"""

from __future__ import annotations

import re
from typing import Any

from ksha.checks.base import (
    ETCD_SOURCES,
    EXTERNAL_CHECKS,
    LB_MODES,
    QINGCLOUD_BALANCE_MODES,
    TOP_KEYS,
    Context,
    Report,
    ip_problem,
    is_dns_name,
    is_int_in,
    is_number_in,
    parse_ip,
    show,
)

# --- ranges -------------------------------------------------------------------------------

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
    "ksha:loadbalancer:qingcloud:rule_priority": (0, 100),
    "ksha:loadbalancer:qingcloud:loadbalancer_type": (0, 5),
    "ksha:loadbalancer:qingcloud:api:port": (1, 65535),
    "ksha:loadbalancer:qingcloud:job_timeout_s": (10, 86_400),
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
    "ksha:kubernetes:apiserver:wait_ready_s": (10, 3600),
    "ksha:kubernetes:pki:ca_days_valid": (1, 36500),
    "ksha:kubernetes:pki:days_valid": (1, 36500),
    "ksha:kubernetes:pki:days_remaining": (0, 36500),
    "ksha:kubernetes:leader_election:lease_duration_s": (2, 600),
    "ksha:kubernetes:leader_election:renew_deadline_s": (1, 600),
    "ksha:kubernetes:leader_election:retry_period_s": (1, 300),
    "ksha:nodes:batch": (1, 100_000),
    "ksha:nodes:batch_timeout_s": (60, 86_400),
    "ksha:nodes:drain_timeout_s": (10, 86_400),
    "ksha:network:calico:mtu": (0, 9000),  # 1 to 575 refused too: checks/nodes.py
    "ksha:kubesphere:console_port": (1, 65535),
}

# Keys of LIMITS that may also be null.
NULLABLE = frozenset({"ksha:etcd:metrics_port"})

# The message for a value out of range, when it says more than the default ones below;
# {value}, {low} and {high} are filled in ({value} is the value's repr, shortened).
TEXTS = {
    "ksha:loadbalancer:port": "{value} is not a port: use an integer from {low} to {high} (e.g. 6443)",
    "ksha:loadbalancer:keepalived:virtual_router_id": "{value} must be an integer from {low} to {high}, unique on the LAN",
    "ksha:loadbalancer:keepalived:prefixlen": "{value} must be the prefix length of the LB hosts' subnet (e.g. 24)",
    "ksha:loadbalancer:keepalived:advert_int": "{value} must be seconds from {low} to {high}",
    "ksha:loadbalancer:console:port": "{value} is not a port (e.g. 30880)",
    "ksha:loadbalancer:external:timeout": "{value} must be seconds from {low} to {high}",
    "ksha:etcd:metrics_port": "{value} is not a port; null turns the metrics listener off",
    "ksha:kubernetes:apiserver_port": "{value} is not a port: use an integer from {low} to {high} (e.g. 6443)",
    "ksha:kubesphere:console_port": "{value} is not a port: use an integer from {low} to {high} (e.g. 30880)",
    "ksha:network:calico:mtu": "{value} must be an MTU from {low} to {high} bytes; 0 lets calico find it",
}
INTEGER_TEXT = "{value} must be an integer from {low} to {high}"
NUMBER_TEXT = "{value} must be a number from {low} to {high}"


def limit_problem(key: str, value: Any) -> str | None:
    """What is wrong with `value` for the numeric pillar `key` (one of LIMITS), or None."""
    low, high = LIMITS[key]
    if value is None and key in NULLABLE:
        return None
    integer = isinstance(low, int) and isinstance(high, int)
    if (is_int_in if integer else is_number_in)(value, low, high):
        return None
    text = TEXTS.get(key, INTEGER_TEXT if integer else NUMBER_TEXT)
    return text.format(value=show(value), low=low, high=high)


# --- types --------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Spec:
    """What a value must be. problem() says what is wrong with one, or None."""

    def problem(self, key: str, value: Any) -> str | None:
        raise NotImplementedError


class Mapping(Spec):
    """A mapping. `secret`: the section holds secrets, so a wrong value is not shown."""

    def __init__(self, text: str = "must be a mapping", secret: bool = False) -> None:
        self.text, self.secret = text, secret

    def problem(self, key: str, value: Any) -> str | None:
        if isinstance(value, dict):
            return None
        got = f"a {type(value).__name__}" if self.secret and value is not None else show(value)
        return f"{self.text}, got {got}" + (" (an empty section: remove it or write {})" if value is None else "")


class ListOf(Spec):
    """A list; each item checked by `item` (an item's key is the list's key and its index)."""

    def __init__(self, item: Spec | None = None, what: str = "values", text: str | None = None) -> None:
        self.item, self.what, self.text = item, what, text

    def problem(self, key: str, value: Any) -> str | None:
        if isinstance(value, list):
            return None
        if self.text:
            return self.text
        return f"must be a list of {self.what}, got {show(value)}" + (" (write [] for none)" if value is None else "")


class Text(Spec):
    """A non-empty string without control characters (a line break would end up in a config file)."""

    def __init__(
        self, what: str = "a string", nullable: bool = False, pattern: str | None = None, text: str = ""
    ) -> None:
        self.what, self.nullable, self.text = what, nullable, text
        self.pattern = re.compile(pattern) if pattern else None

    def problem(self, key: str, value: Any) -> str | None:
        if value is None and self.nullable:
            return None
        if not isinstance(value, str):
            return f"must be {self.what}{' or null' if self.nullable else ''}, got {show(value)}"
        if not value:
            return "must not be empty" + (": write null" if self.nullable else "")
        if _CONTROL.search(value) or value != value.strip():
            return f"{show(value)} has a control character or blanks around it (a line break?): write the value alone"
        if self.pattern and not self.pattern.fullmatch(value):
            return self.text.format(value=show(value))
        return None


class Path(Text):
    def __init__(self) -> None:
        super().__init__("an absolute path", pattern=r"/.*", text="{value} must be an absolute path")

    def problem(self, key: str, value: Any) -> str | None:
        if not isinstance(value, str):
            return f"{show(value)} must be an absolute path"
        return super().problem(key, value)


class Secret(Spec):
    """A string of min to max characters, never shown."""

    def __init__(self, text: str, low: int, high: int) -> None:
        self.text, self.low, self.high = text, low, high

    def problem(self, key: str, value: Any) -> str | None:
        if value is None or (
            isinstance(value, str) and self.low <= len(value) <= self.high and not _CONTROL.search(value)
        ):
            return None
        return self.text


class Bool(Spec):
    def __init__(self, text: str = "{value} must be true or false") -> None:
        self.text = text

    def problem(self, key: str, value: Any) -> str | None:
        return None if isinstance(value, bool) else self.text.format(value=show(value))


class OneOf(Spec):
    def __init__(self, choices: tuple) -> None:
        self.choices = choices

    def problem(self, key: str, value: Any) -> str | None:
        if isinstance(value, str) and value in self.choices:
            return None
        return f"{show(value)} is not one of {', '.join(self.choices)}"


class Number(Spec):
    """A number of LIMITS (its range and message from there)."""

    def problem(self, key: str, value: Any) -> str | None:
        if key in LIMITS:
            return limit_problem(key, value)
        return None if is_number_in(value, float("-inf"), float("inf")) else f"must be a number, got {show(value)}"


class StrOrInt(Spec):
    def problem(self, key: str, value: Any) -> str | None:
        if is_int_in(value, 0, 2**63):
            return None
        if isinstance(value, str):
            return Text().problem(key, value)
        return f"must be a string or an integer, got {show(value)}"


class Address(Spec):
    """A cluster address (parse_ip), or null."""

    def problem(self, key: str, value: Any) -> str | None:
        return None if value is None or parse_ip(value) is not None else ip_problem(value)


class DnsName(Spec):
    def problem(self, key: str, value: Any) -> str | None:
        return None if is_dns_name(value) else f"{show(value)} is not a valid DNS name (e.g. lb.kubesphere.local)"


class NameOrAddress(Spec):
    """A DNS name or an IP address (a certificate's subject alternative name)."""

    def problem(self, key: str, value: Any) -> str | None:
        if is_dns_name(value) or parse_ip(value) is not None:
            return None
        return f"{show(value)} is neither a DNS name nor an IP address"


HOST_NAME = Text("a host name")
PACKAGES = ListOf(Text("a package name"), "package names")
KERNEL_MODULES = ListOf(
    Text("a module name", pattern=r"[A-Za-z0-9_-]+", text="{value} is not a kernel module name (e.g. br_netfilter)"),
    "kernel module names",
)

# pillar key -> what its value must be; "*" stands for any one key (a group's name). Keys with
# a default in defaults.yaml need an entry only when their default says too little (null, an
# empty list, a string with a format, a choice).
TYPES: dict[str, Spec] = {
    "ksha:hosts": ListOf(
        Mapping("must be a mapping with 'name' and 'ip'"), text="must be a list of {name, ip} mappings"
    ),
    "ksha:groups": Mapping("must be a mapping of group name to host names (kube-master, kube-node, etcd)"),
    "ksha:groups:*": ListOf(HOST_NAME, "host names"),
    "ksha:loadbalancer": Mapping("must be a mapping (mode, address, port, domain, ...)"),
    "ksha:loadbalancer:mode": OneOf(LB_MODES),
    "ksha:loadbalancer:address": Address(),
    "ksha:loadbalancer:domain": DnsName(),
    "ksha:loadbalancer:hosts": ListOf(HOST_NAME, "host names"),
    "ksha:loadbalancer:keepalived:interface": Text(
        "an interface name",
        nullable=True,
        pattern=r"[A-Za-z0-9_.:@-]{1,15}",
        text="{value} is not an interface name; null finds the one holding the host's ip",
    ),
    "ksha:loadbalancer:keepalived:auth_pass": Secret(
        "must be a string of 1 to 8 characters (VRRPv2 PASS authentication)", 1, 8
    ),
    "ksha:loadbalancer:haproxy:stats_socket": Path(),
    "ksha:loadbalancer:console:enabled": Bool(),
    "ksha:loadbalancer:external:check": OneOf(EXTERNAL_CHECKS),
    "ksha:loadbalancer:qingcloud": Mapping("must be a mapping (zone, vxnet, the API key, ...)", secret=True),
    "ksha:loadbalancer:qingcloud:zone": Text(
        "a zone", nullable=True, pattern=r"[a-z][a-z0-9-]{1,31}", text="{value} is not a QingCloud zone (e.g. pek3a)"
    ),
    "ksha:loadbalancer:qingcloud:vxnet": Text(
        "a VxNet ID", nullable=True, pattern=r"vxnet-[a-z0-9]+", text="{value} is not a VxNet ID (vxnet-...)"
    ),
    "ksha:loadbalancer:qingcloud:eip": Text(
        "an EIP ID", nullable=True, pattern=r"eip-[a-z0-9]+", text="{value} is not an EIP ID (eip-...)"
    ),
    "ksha:loadbalancer:qingcloud:security_group": Text(
        "a security group ID",
        nullable=True,
        pattern=r"sg-[a-z0-9]+",
        text="{value} is not a security group ID (sg-...)",
    ),
    "ksha:loadbalancer:qingcloud:balance_mode": OneOf(QINGCLOUD_BALANCE_MODES),
    "ksha:loadbalancer:qingcloud:healthy_check_option": Text(
        "interval|timeout|fall|rise",
        pattern=r"\d{1,3}\|\d{1,3}\|\d{1,2}\|\d{1,2}",
        text="{value} must be interval|timeout|fall|rise, e.g. 10|5|2|5",
    ),
    "ksha:loadbalancer:qingcloud:console_check": Text(
        "a health check", pattern=r"tcp|http\|/[^|]*(\|[^|]+)?", text="{value} must be tcp, or http|/path"
    ),
    "ksha:loadbalancer:qingcloud:name_prefix": Text(
        "a name prefix",
        nullable=True,
        pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}",
        text="{value} must be letters, digits, '-', '_' or '.', at most 41 (the LBs' and rules' names start with it)",
    ),
    # never shown, not even the access key's ID
    "ksha:loadbalancer:qingcloud:access_key_id": Secret("must be a string of 1 to 128 characters", 1, 128),
    "ksha:loadbalancer:qingcloud:secret_access_key": Secret("must be a string of 1 to 128 characters", 1, 128),
    "ksha:loadbalancer:qingcloud:credentials_file": Text(
        "an absolute path", nullable=True, pattern=r"/.*", text="{value} must be an absolute path on the Salt master"
    ),
    "ksha:loadbalancer:qingcloud:api:host": NameOrAddress(),
    "ksha:loadbalancer:qingcloud:api:protocol": OneOf(("https", "http")),
    "ksha:etcd:source": OneOf(ETCD_SOURCES),
    "ksha:etcd:pkgs": PACKAGES,
    "ksha:etcd:client_pkgs": PACKAGES,
    "ksha:etcd:archive:version": Text(),
    "ksha:etcd:archive:url": Text(),
    "ksha:etcd:archive:sha256": Text(nullable=True),
    "ksha:etcd:data_dir": Path(),
    "ksha:etcd:auto_compaction_mode": OneOf(("periodic", "revision")),
    "ksha:etcd:auto_compaction_retention": StrOrInt(),
    "ksha:etcd:allow_even_member_count": Bool("must be true or false, got {value}"),
    "ksha:etcd:pki:ca_host": Text("a host name", nullable=True),
    "ksha:etcd:pki:ca_dir": Path(),
    "ksha:etcd:pki:dir": Path(),
    "ksha:etcd:backup:dir": Path(),
    "ksha:kubernetes:archive:url": Text(nullable=True),
    "ksha:kubernetes:archive:sha256": Text(nullable=True),
    "ksha:kubernetes:node_archive:url": Text(nullable=True),
    "ksha:kubernetes:node_archive:sha256": Text(nullable=True),
    # nftables is alpha in 1.30 (behind the NFTablesProxyMode feature gate): not offered
    "ksha:kubernetes:kube_proxy:mode": OneOf(("ipvs", "iptables")),
    "ksha:kubernetes:kube_proxy:pkgs": PACKAGES,
    "ksha:kubernetes:kube_proxy:ipvs_modules": KERNEL_MODULES,
    "ksha:nodes:kernel_modules": KERNEL_MODULES,
    "ksha:nodes:sysctl": Mapping("must be a mapping of sysctl name to value (e.g. net.ipv4.ip_forward: 1)"),
    "ksha:nodes:sysctl:*": StrOrInt(),
    "ksha:kubernetes:cluster_domain": DnsName(),
    "ksha:kubernetes:pki:ca_host": Text("a host name", nullable=True),
    "ksha:kubernetes:pki:ca_dir": Path(),
    "ksha:kubernetes:pki:dir": Path(),
    "ksha:kubernetes:apiserver:extra_sans": ListOf(NameOrAddress(), "DNS names or IP addresses"),
    "ksha:containerd:pkgs": PACKAGES,
    "ksha:containerd:cni_pkgs": PACKAGES,
    "ksha:containerd:cni_bin_dir": Path(),
    "ksha:containerd:cni_conf_dir": Path(),
    "ksha:containerd:config_file": Path(),
    "ksha:containerd:root": Path(),
    "ksha:containerd:socket": Path(),
    "ksha:containerd:cgroup_driver": OneOf(("systemd", "cgroupfs")),
    "ksha:containerd:snapshotter": Text(
        "a snapshotter name",
        pattern=r"[a-z][a-z0-9_-]*",
        text="{value} is not a containerd snapshotter name (e.g. overlayfs)",
    ),
    "ksha:containerd:sandbox_image": Text(
        "an image reference",
        pattern=r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?",
        text="{value} is not an image reference (e.g. registry.k8s.io/pause:3.9)",
    ),
    "ksha:containerd:registry_mirrors": ListOf(
        Text(
            "a URL", pattern=r"https?://[^\s/]+(?:/\S*)?", text="{value} is not an http(s):// URL of a registry mirror"
        ),
        "mirror URLs",
    ),
    "ksha:containerd:insecure_registries": ListOf(
        Text(
            "a registry",
            pattern=r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?",
            text="{value} is not a registry's host[:port] (e.g. 192.168.0.10:5000)",
        ),
        "registries (host[:port])",
    ),
    "ksha:network:plugin": OneOf(("calico", "none")),
    "ksha:network:calico:version": Text(
        "a calico release",
        pattern=r"v[0-9]+\.[0-9]+\.[0-9]+",
        text="{value} is not a calico release tag (e.g. v3.28.2)",
    ),
    "ksha:network:calico:registry": Text(
        "a registry",
        pattern=r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*",
        text="{value} is not a registry host[:port][/path] (e.g. docker.io or 192.168.0.10:5000/mirror)",
    ),
    "ksha:network:calico:ipip_mode": OneOf(("Always", "CrossSubnet", "Never")),
    "ksha:common:pkgs": PACKAGES,
    "ksha:common:hosts_file": Path(),
}


def spec_for(key: str, default: Any) -> Spec | None:
    """The key's entry in TYPES (exact, then with its last part as "*"), else its default's type."""
    spec = TYPES.get(key) or TYPES.get(key.rpartition(":")[0] + ":*")
    if spec is not None:
        return spec
    if key in LIMITS:
        return Number()
    if isinstance(default, dict):
        return Mapping()
    if isinstance(default, list):
        return ListOf()
    if isinstance(default, bool):
        return Bool()
    if isinstance(default, str):
        return Text()
    if isinstance(default, (int, float)):
        return Number()
    return None  # an unknown key, or a null default without an entry in TYPES


_BAD = object()


def _walk(key: str, value: Any, default: Any, ctx: Context, report: Report) -> Any:
    """`value` checked against its type; _BAD when wrong, else a copy without its wrong keys."""
    spec = spec_for(key, default)
    if spec is not None:
        problem = spec.problem(key, value)
        if problem:
            report.error(key, problem)
            ctx.bad.add(key)
            return _BAD
    if isinstance(value, dict):
        defaults = default if isinstance(default, dict) else {}
        out = {}
        # a key the section does not know (a typo such as etcd:clinet_port) would be ignored
        # silently; the top level, the groups and the hosts say so in their own sections
        open_ended = key in ("ksha", "ksha:groups") or not defaults or f"{key}:*" in TYPES
        for name, child in value.items():
            if not open_ended and name not in defaults:
                report.warning(f"{key}:{name}", f"unknown key, ignored (known keys: {', '.join(defaults)})")
                continue
            checked = _walk(f"{key}:{name}", child, defaults.get(name), ctx, report)
            if checked is not _BAD:
                out[name] = checked
        return out
    if isinstance(spec, ListOf) and spec.item is not None:
        for index, item in enumerate(value):
            problem = spec.item.problem(f"{key}:{index}", item)
            if problem:
                report.error(f"{key}:{index}", problem)
                ctx.bad.add(f"{key}:{index}")
    return value


def check(ctx: Context, report: Report) -> None:
    for key in ctx.pillar:
        if key not in TOP_KEYS:
            report.warning(f"ksha:{key}", f"unknown key, ignored (known keys: {', '.join(TOP_KEYS)})")
    ctx.ksha = _walk("ksha", ctx.ksha, ctx.defaults, ctx, report)
