"""ksha:loadbalancer: the mode, the LB address, keepalived's VIP and LB hosts, haproxy's console frontend."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ksha.checks.base import (
    EXTERNAL_CHECKS,
    LB_MODES,
    LB_MODES_NOT_IMPLEMENTED,
    Context,
    Report,
    is_dns_name,
    parse_ip,
)

KEY = "ksha:loadbalancer"


def check(ctx: Context, report: Report) -> None:
    lb = ctx.ksha.get("loadbalancer")
    if not isinstance(lb, dict):
        report.error(KEY, "must be a mapping (mode, address, port, domain)")
        return
    mode = lb.get("mode")
    if mode not in LB_MODES:
        report.error(f"{KEY}:mode", f"{mode!r} is not one of {', '.join(LB_MODES)}")
        return
    if mode in LB_MODES_NOT_IMPLEMENTED:
        report.error(
            f"{KEY}:mode",
            f"{mode!r} is not supported by this version of ksha yet; use 'external' "
            "with an LB you created, or 'keepalived'",
        )
    domain = lb.get("domain")
    if not is_dns_name(domain):
        report.error(f"{KEY}:domain", f"{domain!r} is not a valid DNS name (e.g. lb.kubesphere.local)")
    address = lb.get("address")
    if mode == "none":
        masters = ctx.groups["kube-master"]
        if len(masters) > 1:
            report.error(
                f"{KEY}:mode",
                f"is 'none' but there are {len(masters)} masters: the API would not be highly available; set "
                "mode to 'keepalived' or 'external' and ksha:loadbalancer:address",
            )
        if address is not None and parse_ip(address) is None:
            report.error(f"{KEY}:address", f"{address!r} is not a valid IPv4 or IPv6 address")
        return
    if address is None:
        report.error(f"{KEY}:address", f"missing: mode {mode!r} needs the LB address (the VIP)")
        return
    vip = parse_ip(address)
    if vip is None:
        report.error(f"{KEY}:address", f"{address!r} is not a valid IPv4 or IPv6 address")
        return
    if mode == "keepalived":
        _keepalived(ctx, lb, vip, report)
        _console(lb, report)
    if mode == "external":
        external = lb.get("external") if isinstance(lb.get("external"), dict) else {}
        check_kind = external.get("check", "answer")
        if check_kind not in EXTERNAL_CHECKS:
            report.error(f"{KEY}:external:check", f"{check_kind!r} is not one of {', '.join(EXTERNAL_CHECKS)}")


def _keepalived(ctx: Context, lb: dict, vip: Any, report: Report) -> None:
    for name, host in ctx.hosts.items():
        if parse_ip(host.get("ip")) == vip:
            report.error(
                f"{KEY}:address",
                f"{vip} is host {name!r}'s address; the VIP must be a free address in the hosts' subnet",
            )
    key = f"{KEY}:keepalived"
    ka = lb.get("keepalived") if isinstance(lb.get("keepalived"), dict) else {}
    prefix = ka.get("prefixlen")  # in range (schema section), or absent
    if prefix is not None and prefix > (32 if vip.version == 4 else 128):
        report.error(f"{key}:prefixlen", f"{prefix!r} must be the prefix length of the LB hosts' subnet (e.g. 24)")
        prefix = None
    interface = ka.get("interface")
    if interface is not None and not (isinstance(interface, str) and re.match(r"^[A-Za-z0-9_.:@-]{1,15}$", interface)):
        report.error(
            f"{key}:interface", f"{interface!r} is not an interface name; null finds the one holding the host's ip"
        )
    advert = ka.get("advert_int")
    auth = ka.get("auth_pass")
    if auth is not None and advert is not None and advert < 1:
        report.error(
            f"{key}:advert_int",
            f"{advert} s needs VRRPv3, which has no authentication; with auth_pass set use advert_int >= 1 "
            "(VRRPv2, failover >= 3 s) or remove auth_pass",
        )
    if auth is not None and not (isinstance(auth, str) and 1 <= len(auth) <= 8):
        report.error(f"{key}:auth_pass", "must be a string of 1 to 8 characters (VRRPv2 PASS authentication)")
    members = lb.get("hosts") or ctx.groups["kube-master"]
    if not isinstance(members, list):
        report.error(f"{KEY}:hosts", "must be a list of host names")
        return
    for index, name in enumerate(members):
        if name not in ctx.hosts:
            report.error(f"{KEY}:hosts:{index}", f"host {name!r} is not defined in ksha:hosts")
        elif prefix is not None:
            ip = parse_ip(ctx.hosts[name].get("ip"))
            if ip is not None and ip.version == vip.version:
                net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
                if vip not in net:
                    report.error(
                        f"{KEY}:address",
                        f"{vip} is not in LB host {name!r}'s subnet {net}; keepalived can only move a VIP "
                        "within the LB hosts' subnet",
                    )
    if len(members) == 1:
        report.warning(f"{KEY}:hosts", "has 1 LB host: the VIP has no failover")


def _console(lb: dict, report: Report) -> None:
    console = lb.get("console") if isinstance(lb.get("console"), dict) else {}
    if console.get("enabled") is True and "port" in console and console["port"] == lb.get("port"):
        report.error(f"{KEY}:console:port", "is the API's port (ksha:loadbalancer:port); use another")
