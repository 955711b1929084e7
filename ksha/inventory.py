"""The ksha inventory: defaults, merging and the one validator.

Every consumer (the orchestration's preflight state, ``salt-run ksha.validate``
and the ``ksha`` CLI) calls :func:`validate` on the ``ksha`` pillar dict; none
of them checks anything on its own.

A finding names the pillar key it is about in Salt's colon notation, so
``ksha:hosts:1:ip`` is what ``salt '*' pillar.get ksha:hosts:1:ip`` shows.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml

DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "salt" / "ksha" / "defaults.yaml"

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


def load_defaults() -> dict:
    """The formula's defaults.yaml: the same file map.jinja imports."""
    with DEFAULTS_FILE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def merge(base: Any, over: Any) -> Any:
    """Recursive dict merge where `over` wins and lists are replaced.

    The same strategy as map.jinja's ``slsutil.merge(..., strategy='recurse')``.
    """
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base.get(key), value) if key in base else value
        return out
    return over


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


def is_port(value: Any) -> bool:
    return is_int_in(value, 1, 65535)


def host_names(ksha: dict) -> list[str]:
    return [h["name"] for h in ksha.get("hosts") or [] if isinstance(h, dict) and isinstance(h.get("name"), str)]


def roles_of(ksha: dict, host: str) -> list[str]:
    """The groups a host belongs to, in KNOWN_GROUPS order, then any others."""
    groups = ksha.get("groups") or {}
    ordered = list(KNOWN_GROUPS) + sorted(g for g in groups if g not in KNOWN_GROUPS)
    return [g for g in ordered if host in (groups.get(g) or [])]


class _Report:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def error(self, key: str, message: str) -> None:
        self.findings.append(Finding("ERROR", key, message))

    def warning(self, key: str, message: str) -> None:
        self.findings.append(Finding("WARNING", key, message))


def validate(pillar_ksha: Any, defaults: dict | None = None) -> list[Finding]:
    """Check the ``ksha`` pillar value; return every problem found, errors first.

    `pillar_ksha` is the value under the ``ksha`` key (not the whole pillar).
    The defaults are merged first, so a missing optional key is never an error.
    """
    report = _Report()
    if pillar_ksha is None:
        report.error("ksha", "the pillar has no 'ksha' key; see pillar/ksha.sls.example")
        return report.findings
    if not isinstance(pillar_ksha, dict):
        report.error("ksha", f"must be a mapping, got {type(pillar_ksha).__name__}")
        return report.findings
    for key in pillar_ksha:
        if key not in TOP_KEYS:
            report.warning(f"ksha:{key}", f"unknown key, ignored (known keys: {', '.join(TOP_KEYS)})")

    ksha = merge(defaults if defaults is not None else load_defaults(), pillar_ksha)
    hosts = _check_hosts(ksha.get("hosts"), report)
    groups = _check_groups(ksha.get("groups"), hosts, report)
    _check_etcd(ksha, groups, report)
    _check_loadbalancer(ksha.get("loadbalancer"), groups, hosts, report)
    _check_roleless(hosts, groups, report)
    return sorted(report.findings, key=lambda f: f.level != "ERROR")


def _check_hosts(hosts: Any, report: _Report) -> dict[str, dict]:
    """Validate ksha:hosts; return the well-formed hosts by name."""
    if not isinstance(hosts, list):
        report.error("ksha:hosts", "must be a list of {name, ip} mappings")
        return {}
    if not hosts:
        report.error("ksha:hosts", "is empty: the cluster needs at least one host")
        return {}
    by_name: dict[str, dict] = {}
    ip_owner: dict[Any, str] = {}
    for index, host in enumerate(hosts):
        key = f"ksha:hosts:{index}"
        if not isinstance(host, dict):
            report.error(key, f"must be a mapping with 'name' and 'ip', got {host!r}")
            continue
        name = host.get("name")
        label = f"host {name!r}" if isinstance(name, str) else f"host #{index}"
        for extra in host:
            if extra not in HOST_KEYS:
                report.warning(f"{key}:{extra}", f"{label}: unknown key, ignored (known keys: {', '.join(HOST_KEYS)})")
        if name is None:
            report.error(f"{key}:name", "missing: every host needs a name (its Salt minion id)")
        elif isinstance(name, str) and name in by_name:
            report.error(f"{key}:name", f"duplicate host name {name!r} (also ksha:hosts:{by_name[name]['_index']})")
        else:
            if not is_rfc1123_label(name):
                report.error(
                    f"{key}:name",
                    f"{name!r} is not an RFC 1123 label (lowercase letters, digits and '-', "
                    "1-63 characters, starting and ending with a letter or digit); it becomes the Kubernetes node name",
                )
            if isinstance(name, str):  # still known to the groups: one error per problem, no cascade
                by_name[name] = {**host, "_index": index}

        addresses = [("ip", host.get("ip"))]
        extras = host.get("addresses", [])
        if not isinstance(extras, list):
            report.error(f"{key}:addresses", f"{label}: must be a list of IP addresses")
            extras = []
        addresses += [(f"addresses:{i}", a) for i, a in enumerate(extras)]
        for suffix, value in addresses:
            if suffix == "ip" and value is None:
                report.error(f"{key}:ip", f"{label}: missing: the address the cluster uses to reach this host")
                continue
            addr = parse_ip(value)
            if addr is None:
                report.error(f"{key}:{suffix}", f"{label}: {value!r} is not a valid IPv4 or IPv6 address")
                continue
            if addr in ip_owner and ip_owner[addr] != label:
                report.error(f"{key}:{suffix}", f"{label}: address {addr} is also used by {ip_owner[addr]}")
            ip_owner.setdefault(addr, label)
    return by_name


def _check_groups(groups: Any, hosts: dict[str, dict], report: _Report) -> dict[str, list[str]]:
    if not isinstance(groups, dict):
        report.error("ksha:groups", f"must be a mapping of group name to host names ({', '.join(KNOWN_GROUPS)})")
        return {g: [] for g in KNOWN_GROUPS}
    clean: dict[str, list[str]] = {}
    for group, members in groups.items():
        key = f"ksha:groups:{group}"
        if group not in KNOWN_GROUPS:
            report.warning(key, f"unknown group, ignored (known groups: {', '.join(KNOWN_GROUPS)})")
        if members is None:
            members = []
        if not isinstance(members, list):
            report.error(key, f"must be a list of host names, got {members!r}")
            members = []
        seen: list[str] = []
        for index, member in enumerate(members):
            if member in seen:
                report.error(f"{key}:{index}", f"host {member!r} is listed twice")
                continue
            seen.append(member)
            if hosts and member not in hosts:
                report.error(
                    f"{key}:{index}", f"host {member!r} is not defined in ksha:hosts (defined: {', '.join(hosts)})"
                )
        clean[group] = [m for m in seen if m in hosts]
    for group in KNOWN_GROUPS:
        clean.setdefault(group, [])
    if not clean["kube-master"]:
        report.error("ksha:groups:kube-master", "is empty: the cluster needs at least one master")
    return clean


def _check_etcd(ksha: dict, groups: dict[str, list[str]], report: _Report) -> None:
    etcd = ksha.get("etcd") if isinstance(ksha.get("etcd"), dict) else {}
    members = groups["etcd"]
    count = len(members)
    allow_even = etcd.get("allow_even_member_count", False)
    if not isinstance(allow_even, bool):
        report.error("ksha:etcd:allow_even_member_count", f"must be true or false, got {allow_even!r}")
        allow_even = False
    if count == 0:
        report.error("ksha:groups:etcd", "is empty: the cluster needs etcd members (an odd number, usually 3)")
    elif count == 1:
        report.warning("ksha:groups:etcd", "has 1 member: etcd is not highly available (use 3 or 5)")
    elif count % 2 == 0:
        if allow_even:
            report.warning(
                "ksha:groups:etcd",
                f"has {count} members (even), allowed by ksha:etcd:allow_even_member_count while a member is "
                "replaced; an even count tolerates no more failures than one member fewer: set it back to false "
                "once the replacement has joined",
            )
        else:
            report.error(
                "ksha:groups:etcd",
                f"has {count} members; etcd needs an odd number (e.g. {count - 1} or {count + 1}). While replacing "
                "a member, set ksha:etcd:allow_even_member_count: true for the transition",
            )
    _check_etcd_settings(etcd, report)
    workers_only = [m for m in members if m in groups["kube-node"] and m not in groups["kube-master"]]
    for member in workers_only:
        report.warning(
            f"ksha:groups:etcd:{members.index(member)}",
            f"host {member!r} is a kube-node but not a kube-master: etcd on workers competes with workloads "
            "for memory and disk; the seed advises against it",
        )


def _check_ints(section: dict, key: str, limits: dict[str, tuple[int, int]], report: _Report) -> dict[str, int]:
    """Each of `limits` present in `section` must be an integer in its range; returns the good ones."""
    good = {}
    for name, (low, high) in limits.items():
        if name not in section:
            continue
        if is_int_in(section[name], low, high):
            good[name] = section[name]
        else:
            report.error(f"{key}:{name}", f"{section[name]!r} must be an integer from {low} to {high}")
    return good


def _check_etcd_settings(etcd: dict, report: _Report) -> None:
    """ksha:etcd's numbers, install source and certificate/backup periods."""
    key = "ksha:etcd"
    source = etcd.get("source", "package")
    if source not in ETCD_SOURCES:
        report.error(f"{key}:source", f"{source!r} is not one of {', '.join(ETCD_SOURCES)}")
    elif source == "archive":
        archive = etcd.get("archive") if isinstance(etcd.get("archive"), dict) else {}
        sha = archive.get("sha256")
        if not (isinstance(sha, str) and re.match(r"^[0-9a-fA-F]{64}$", sha)):
            report.error(
                f"{key}:archive:sha256",
                "source 'archive' needs the release tarball's sha256 (64 hex digits, from the release's "
                "SHA256SUMS) so a changed download is refused",
            )
        if not (isinstance(archive.get("url"), str) and re.match(r"^(https?|salt|file)://", archive["url"])):
            report.error(f"{key}:archive:url", f"{archive.get('url')!r} is not an http(s)://, salt:// or file:// URL")
        if not (isinstance(archive.get("version"), str) and re.match(r"^v?[0-9]+\.[0-9]+\.[0-9]+", archive["version"])):
            report.error(
                f"{key}:archive:version", f"{archive.get('version')!r} is not a release version (e.g. v3.4.23)"
            )
    ports = _check_ints(etcd, key, {"client_port": (1, 65535), "peer_port": (1, 65535)}, report)
    if len(set(ports.values())) < len(ports) == 2:
        report.error(f"{key}:peer_port", "is the same as ksha:etcd:client_port; etcd needs two ports")
    metrics = etcd.get("metrics_port")
    if metrics is not None and not is_port(metrics):
        report.error(f"{key}:metrics_port", f"{metrics!r} is not a port; null turns the metrics listener off")
    elif metrics is not None and metrics in ports.values():
        report.error(f"{key}:metrics_port", f"{metrics} is also ksha:etcd's client or peer port")
    raft = _check_ints(etcd, key, {"heartbeat_interval_ms": (10, 10_000), "election_timeout_ms": (50, 50_000)}, report)
    if len(raft) == 2 and raft["election_timeout_ms"] < 5 * raft["heartbeat_interval_ms"]:
        report.error(
            f"{key}:election_timeout_ms",
            f"{raft['election_timeout_ms']} ms is less than 5 heartbeats ({raft['heartbeat_interval_ms']} ms each); "
            "etcd refuses to start (it advises about 10 heartbeats)",
        )
    _check_ints(
        etcd,
        key,
        {"quota_backend_bytes": (2**20, 8 * 2**30), "snapshot_count": (1, 10_000_000), "wait_healthy_s": (10, 3600)},
        report,
    )
    pki = etcd.get("pki") if isinstance(etcd.get("pki"), dict) else {}
    days = _check_ints(
        pki, f"{key}:pki", {"ca_days_valid": (1, 36500), "days_valid": (1, 36500), "days_remaining": (0, 36500)}, report
    )
    if "days_valid" in days and "days_remaining" in days and days["days_remaining"] >= days["days_valid"]:
        report.error(
            f"{key}:pki:days_remaining",
            f"{days['days_remaining']} is not less than ksha:etcd:pki:days_valid ({days['days_valid']}): every "
            "highstate would issue the certificates again and restart etcd",
        )
    if "days_valid" in days and "ca_days_valid" in days and days["days_valid"] > days["ca_days_valid"]:
        report.error(
            f"{key}:pki:days_valid",
            f"{days['days_valid']} is more than ksha:etcd:pki:ca_days_valid ({days['ca_days_valid']}): a certificate "
            "cannot outlive its CA",
        )
    backup = etcd.get("backup") if isinstance(etcd.get("backup"), dict) else {}
    _check_ints(backup, f"{key}:backup", {"period_minutes": (1, 7 * 24 * 60), "keep": (1, 1000)}, report)
    if "dir" in backup and not (isinstance(backup["dir"], str) and backup["dir"].startswith("/")):
        report.error(f"{key}:backup:dir", f"{backup['dir']!r} must be an absolute path")


def _check_loadbalancer(lb: Any, groups: dict[str, list[str]], hosts: dict[str, dict], report: _Report) -> None:
    if not isinstance(lb, dict):
        report.error("ksha:loadbalancer", "must be a mapping (mode, address, port, domain)")
        return
    mode = lb.get("mode")
    if mode not in LB_MODES:
        report.error("ksha:loadbalancer:mode", f"{mode!r} is not one of {', '.join(LB_MODES)}")
        return
    if mode in LB_MODES_NOT_IMPLEMENTED:
        report.error(
            "ksha:loadbalancer:mode",
            f"{mode!r} is not supported by this version of ksha yet; use 'external' "
            "with an LB you created, or 'keepalived'",
        )
    port = lb.get("port")
    if not is_port(port):
        report.error("ksha:loadbalancer:port", f"{port!r} is not a port: use an integer from 1 to 65535 (e.g. 6443)")
    domain = lb.get("domain")
    if not is_dns_name(domain):
        report.error("ksha:loadbalancer:domain", f"{domain!r} is not a valid DNS name (e.g. lb.kubesphere.local)")
    address = lb.get("address")
    if mode == "none":
        masters = groups["kube-master"]
        if len(masters) > 1:
            report.error(
                "ksha:loadbalancer:mode",
                f"is 'none' but there are {len(masters)} masters: the API would not be highly available; set "
                "mode to 'keepalived' or 'external' and ksha:loadbalancer:address",
            )
        if address is not None and parse_ip(address) is None:
            report.error("ksha:loadbalancer:address", f"{address!r} is not a valid IPv4 or IPv6 address")
        return
    if address is None:
        report.error("ksha:loadbalancer:address", f"missing: mode {mode!r} needs the LB address (the VIP)")
        return
    vip = parse_ip(address)
    if vip is None:
        report.error("ksha:loadbalancer:address", f"{address!r} is not a valid IPv4 or IPv6 address")
        return
    if mode == "keepalived":
        for name, host in hosts.items():
            if parse_ip(host.get("ip")) == vip:
                report.error(
                    "ksha:loadbalancer:address",
                    f"{vip} is host {name!r}'s address; the VIP must be a free address in the hosts' subnet",
                )
        _check_keepalived(lb, vip, groups, hosts, report)
        _check_haproxy(lb, report)
    if mode == "external":
        external = lb.get("external") if isinstance(lb.get("external"), dict) else {}
        check = external.get("check", "answer")
        if check not in EXTERNAL_CHECKS:
            report.error("ksha:loadbalancer:external:check", f"{check!r} is not one of {', '.join(EXTERNAL_CHECKS)}")


def _check_haproxy(lb: dict, report: _Report) -> None:
    haproxy = lb.get("haproxy") if isinstance(lb.get("haproxy"), dict) else {}
    limits = {
        "maxconn": (1, 1_000_000),
        "check_inter_ms": (50, 60_000),
        "check_fall": (1, 100),
        "check_rise": (1, 100),
        "connect_timeout_ms": (50, 60_000),
        "retries": (0, 10),
    }
    for key, (low, high) in limits.items():
        if key in haproxy and not is_int_in(haproxy[key], low, high):
            report.error(
                f"ksha:loadbalancer:haproxy:{key}", f"{haproxy[key]!r} must be an integer from {low} to {high}"
            )
    console = lb.get("console") if isinstance(lb.get("console"), dict) else {}
    if "enabled" in console and not isinstance(console["enabled"], bool):
        report.error("ksha:loadbalancer:console:enabled", f"{console['enabled']!r} must be true or false")
    if "port" in console and not is_port(console["port"]):
        report.error("ksha:loadbalancer:console:port", f"{console['port']!r} is not a port (e.g. 30880)")
    if console.get("enabled") is True and console.get("port", 30880) == lb.get("port"):
        report.error("ksha:loadbalancer:console:port", "is the API's port (ksha:loadbalancer:port); use another")


def lb_hosts(ksha: dict) -> list[str]:
    """The hosts that run haproxy + keepalived: ksha:loadbalancer:hosts, else the masters."""
    lb = ksha.get("loadbalancer") or {}
    return list(lb.get("hosts") or (ksha.get("groups") or {}).get("kube-master") or [])


def lb_targets(ksha: dict) -> dict[str, list[str]]:
    """Which hosts get which load-balancer states (orch phase `lb`; top.sls does the same in Jinja).

    ``loadbalancer``: haproxy + keepalived (keepalived mode: the LB hosts);
    ``loadbalancer-clean``: every other inventory host, where a former LB host
    has its ksha haproxy/keepalived stopped and their configs removed;
    ``loadbalancer-external``: external mode, every host checks it reaches the LB.
    """
    lb = ksha.get("loadbalancer") if isinstance(ksha.get("loadbalancer"), dict) else {}
    hosts = host_names(ksha)
    mode = lb.get("mode")
    running = [m for m in lb_hosts(ksha) if m in hosts] if mode == "keepalived" else []
    return {
        "loadbalancer": running,
        "loadbalancer-clean": [m for m in hosts if m not in running],
        "loadbalancer-external": hosts if mode == "external" else [],
    }


def _check_keepalived(lb: dict, vip, groups: dict[str, list[str]], hosts: dict[str, dict], report: _Report) -> None:
    key = "ksha:loadbalancer:keepalived"
    ka = lb.get("keepalived") if isinstance(lb.get("keepalived"), dict) else {}
    vrid = ka.get("virtual_router_id")
    if not is_int_in(vrid, 1, 255):
        report.error(f"{key}:virtual_router_id", f"{vrid!r} must be an integer from 1 to 255, unique on the LAN")
    prefix = ka.get("prefixlen")
    max_prefix = 32 if vip.version == 4 else 128
    if not is_int_in(prefix, 1, max_prefix):
        report.error(f"{key}:prefixlen", f"{prefix!r} must be the prefix length of the LB hosts' subnet (e.g. 24)")
        prefix = None
    interface = ka.get("interface")
    if interface is not None and not (isinstance(interface, str) and re.match(r"^[A-Za-z0-9_.:@-]{1,15}$", interface)):
        report.error(
            f"{key}:interface", f"{interface!r} is not an interface name; null finds the one holding the host's ip"
        )
    advert = ka.get("advert_int")
    auth = ka.get("auth_pass")
    if not (isinstance(advert, (int, float)) and not isinstance(advert, bool) and 0.01 <= advert <= 255):
        report.error(f"{key}:advert_int", f"{advert!r} must be seconds between 0.01 and 255")
    elif auth is not None and advert < 1:
        report.error(
            f"{key}:advert_int",
            f"{advert} s needs VRRPv3, which has no authentication; with auth_pass set use advert_int >= 1 "
            "(VRRPv2, failover >= 3 s) or remove auth_pass",
        )
    if auth is not None and not (isinstance(auth, str) and 1 <= len(auth) <= 8):
        report.error(f"{key}:auth_pass", "must be a string of 1 to 8 characters (VRRPv2 PASS authentication)")
    members = lb.get("hosts") or groups["kube-master"]
    if not isinstance(members, list):
        report.error("ksha:loadbalancer:hosts", "must be a list of host names")
        return
    for index, name in enumerate(members):
        if name not in hosts:
            report.error(f"ksha:loadbalancer:hosts:{index}", f"host {name!r} is not defined in ksha:hosts")
        elif prefix is not None:
            ip = parse_ip(hosts[name].get("ip"))
            if ip is not None and ip.version == vip.version:
                net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
                if vip not in net:
                    report.error(
                        "ksha:loadbalancer:address",
                        f"{vip} is not in LB host {name!r}'s subnet {net}; keepalived can only move a VIP "
                        "within the LB hosts' subnet",
                    )
    if len(members) == 1:
        report.warning("ksha:loadbalancer:hosts", "has 1 LB host: the VIP has no failover")


def _check_roleless(hosts: dict[str, dict], groups: dict[str, list[str]], report: _Report) -> None:
    grouped = {m for g in KNOWN_GROUPS for m in groups[g]}
    for name, host in hosts.items():
        if name not in grouped:
            report.warning(f"ksha:hosts:{host['_index']}:name", f"host {name!r} is in no group and gets no role")


def has_errors(findings: list[Finding]) -> bool:
    return any(f.level == "ERROR" for f in findings)


def summary(findings: list[Finding]) -> str:
    errors = sum(f.level == "ERROR" for f in findings)
    warnings = len(findings) - errors
    verdict = "invalid" if errors else "valid"
    return f"inventory {verdict}: {errors} error(s), {warnings} warning(s)"
