"""ksha:loadbalancer: the mode and the LB address; keepalived's VIP, prefix and LB hosts; the console port.

Each key's type (the mode, an address, a DNS name, the interface name ...) and range: the
schema section. Here: what depends on the mode and on other keys.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ksha.checks.base import LB_MODES_NOT_IMPLEMENTED, Context, Report, names, parse_ip, show

KEY = "ksha:loadbalancer"


def check(ctx: Context, report: Report) -> None:
    lb = ctx.section("loadbalancer")
    mode = lb.get("mode")
    if mode is None:  # a wrong section or mode: reported by the schema section
        return
    if mode in LB_MODES_NOT_IMPLEMENTED:
        report.error(
            f"{KEY}:mode",
            f"{mode!r} is not supported by this version of ksha yet; use 'external' "
            "with an LB you created, or 'keepalived'",
        )
    if mode == "none":
        masters = ctx.groups["kube-master"]
        if len(masters) > 1:
            report.error(
                f"{KEY}:mode",
                f"is 'none' but there are {len(masters)} masters: the API would not be highly available; set "
                "mode to 'keepalived' or 'external' and ksha:loadbalancer:address",
            )
        return
    if "address" not in lb:  # a wrong address: reported by the schema section
        return
    if lb["address"] is None:
        report.error(f"{KEY}:address", f"missing: mode {mode!r} needs the LB address (the VIP)")
        return
    vip = parse_ip(lb["address"])
    owner = ctx.addresses.get(vip)
    if mode == "keepalived":
        if owner:
            report.error(
                f"{KEY}:address",
                f"{vip} is {owner}'s address; the VIP must be a free address in the hosts' subnet",
            )
        _keepalived(ctx, lb, vip, report)
        _console(lb, report)
    elif owner:
        report.warning(
            f"{KEY}:address",
            f"{vip} is {owner}'s address: that is no HA: every client reaches the API through that one "
            "host; give the address of the load balancer in front of the masters",
        )


def _keepalived(ctx: Context, lb: dict, vip: Any, report: Report) -> None:
    ka = ctx.section("loadbalancer", "keepalived")
    advert, auth = ka.get("advert_int"), ka.get("auth_pass")
    if auth is not None and advert is not None and advert < 1:
        report.error(
            f"{KEY}:keepalived:advert_int",
            f"{advert} s needs VRRPv3, which has no authentication; with auth_pass set use advert_int >= 1 "
            "(VRRPv2, failover >= 3 s) or remove auth_pass",
        )
    if f"{KEY}:hosts" in ctx.bad:
        return
    members = lb.get("hosts") or ctx.groups["kube-master"]
    ips = {}
    for index, name in enumerate(members):
        if not isinstance(name, str):  # reported by the schema section
            continue
        if name not in ctx.hosts:
            report.error(f"{KEY}:hosts:{index}", f"host {show(name)} is not defined in ksha:hosts")
            continue
        ip = parse_ip(ctx.hosts[name].get("ip"))
        if ip is not None:  # else: the host's own error
            ips[name] = ip
    other = [name for name, ip in ips.items() if ip.version != vip.version]
    if other:
        theirs = 6 if vip.version == 4 else 4
        report.error(
            f"{KEY}:address",
            f"{vip} is IPv{vip.version} but the ip of LB host(s) {names(other)} is IPv{theirs}; keepalived "
            f"moves the VIP within the LB hosts' subnet: use an IPv{theirs} VIP",
        )
    prefix = ka.get("prefixlen")  # in 1..128 (schema section), or absent
    if prefix is not None and not other and vip.version == 4 and prefix > 32:
        report.error(
            f"{KEY}:keepalived:prefixlen",
            f"{prefix} must be the prefix length of the LB hosts' subnet (e.g. 24); an IPv4 VIP has at most 32",
        )
        prefix = None
    if prefix is not None:
        for name, ip in ips.items():
            if ip.version != vip.version:
                continue
            net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
            if vip not in net:
                report.error(
                    f"{KEY}:address",
                    f"{vip} is not in LB host {show(name)}'s subnet {net}; keepalived can only move a VIP "
                    "within the LB hosts' subnet",
                )
    if len(members) == 1:
        report.warning(f"{KEY}:hosts", "has 1 LB host: the VIP has no failover")


def _console(lb: dict, report: Report) -> None:
    console = lb.get("console") or {}
    if console.get("enabled") is True and "port" in console and console["port"] == lb.get("port"):
        report.error(f"{KEY}:console:port", "is the API's port (ksha:loadbalancer:port); use another")
