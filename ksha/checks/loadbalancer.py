"""ksha:loadbalancer: the mode and the LB address; keepalived's VIP, prefix and LB hosts; the console port.

Each key's type (the mode, an address, a DNS name, the interface name ...) and range: the
schema section. Here: what depends on the mode and on other keys.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ksha.checks.base import Context, Report, names, parse_ip, show

KEY = "ksha:loadbalancer"


def check(ctx: Context, report: Report) -> None:
    lb = ctx.section("loadbalancer")
    mode = lb.get("mode")
    if mode is None:  # a wrong section or mode: reported by the schema section
        return
    if mode == "none":
        masters = ctx.groups["kube-master"]
        if len(masters) > 1:
            report.error(
                f"{KEY}:mode",
                f"is 'none' but there are {len(masters)} masters: the API would not be highly available; set "
                "mode to 'keepalived' or 'external' and ksha:loadbalancer:address",
            )
        return
    if mode == "qingcloud":
        _qingcloud(ctx, report)
    if "address" not in lb:  # a wrong address: reported by the schema section
        return
    if lb["address"] is None:
        what = "the internal load balancer's private IP" if mode == "qingcloud" else "the LB address (the VIP)"
        report.error(f"{KEY}:address", f"missing: mode {mode!r} needs {what}")
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
    elif owner and mode == "qingcloud":
        report.error(
            f"{KEY}:address",
            f"{vip} is {owner}'s address; the internal load balancer needs a free address in the hosts' VxNet",
        )
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


# ksha:loadbalancer:qingcloud:healthy_check_option's fields and QingCloud's ranges for them
CHECK_OPTION = (("interval", 2, 60), ("timeout", 5, 300), ("failures", 2, 10), ("successes", 2, 10))


def _qingcloud(ctx: Context, report: Report) -> None:
    key = f"{KEY}:qingcloud"
    if key in ctx.bad:
        return  # no mapping: reported by the schema section, nothing inside it checked
    qc = ctx.section("loadbalancer", "qingcloud")
    if "zone" in qc and qc["zone"] is None:
        report.error(f"{key}:zone", "missing: qingcloud mode needs the hosts' zone (e.g. pek3a)")
    if "vxnet" in qc and qc["vxnet"] is None:
        report.error(f"{key}:vxnet", "missing: the hosts' VxNet ID (vxnet-...), where the internal load balancer goes")
    _qingcloud_key(ctx, qc, key, report)
    option = qc.get("healthy_check_option")
    if isinstance(option, str) and option.count("|") == 3:
        for text, (what, low, high) in zip(option.split("|"), CHECK_OPTION, strict=True):
            if text.isdigit() and not low <= int(text) <= high:
                report.error(
                    f"{key}:healthy_check_option",
                    f"{show(option)}: the {what} must be from {low} to {high} (QingCloud's range)",
                )
                break
    api = ctx.section("loadbalancer", "qingcloud", "api")
    if api.get("protocol") == "http":
        report.warning(
            f"{key}:api:protocol",
            "http: requests and answers cross the network unencrypted (the secret key is never sent: requests are "
            "signed); use https unless the endpoint is on a network you trust",
        )


def _qingcloud_key(ctx: Context, qc: dict, key: str, report: Report) -> None:
    """The API key: access_key_id and secret_access_key, or credentials_file; one way, not both."""
    names = ("access_key_id", "secret_access_key")
    if any(f"{key}:{name}" in ctx.bad for name in (*names, "credentials_file")):
        return  # of the wrong type: reported by the schema section (never showing the value)
    given = [name for name in names if qc.get(name) is not None]
    if given and not qc.get("credentials_file"):
        report.warning(
            f"{key}:secret_access_key",
            "the API key is in the ksha pillar, which every minion it is given to receives (and the master's "
            "minion data cache stores on disk); to keep it in one file on the Salt master, put it there and set "
            "credentials_file instead",
        )
    if len(given) == 1:
        missing = names[1] if given == [names[0]] else names[0]
        report.error(f"{key}:{missing}", f"missing: {given[0]} is set, so is this (or use credentials_file alone)")
    elif given and qc.get("credentials_file"):
        report.error(
            f"{key}:credentials_file",
            "is set, and so are access_key_id and secret_access_key: keep one of the two ways to give the key",
        )
    elif not given and qc.get("credentials_file") is None:
        report.error(
            f"{key}:credentials_file",
            "missing: qingcloud mode needs an API key: access_key_id and secret_access_key, or credentials_file "
            "(a YAML file with both, on the Salt master)",
        )
