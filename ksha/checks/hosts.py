"""ksha:hosts: names, addresses, duplicates. Leaves ``ctx.hosts`` and ``ctx.addresses``.

The schema section has checked that ksha:hosts is a list and each item a mapping; the fields
of a host are checked here, each one's type first.
"""

from __future__ import annotations

import re

from ksha.checks.base import HOST_KEYS, Context, Report, ip_problem, is_rfc1123_label, parse_ip, show

INSTANCE_ID = re.compile(r"i-[a-z0-9]+")


def check(ctx: Context, report: Report) -> None:
    hosts = ctx.ksha.get("hosts")
    if not isinstance(hosts, list):
        if "ksha:hosts" not in ctx.bad:
            report.error("ksha:hosts", "must be a list of {name, ip} mappings")
        return
    if not hosts:
        report.error("ksha:hosts", "is empty: the cluster needs at least one host")
        return
    by_name = ctx.hosts
    owner = ctx.addresses
    instances: dict[str, str] = {}
    for index, host in enumerate(hosts):
        if not isinstance(host, dict):  # reported by the schema section
            continue
        key = f"ksha:hosts:{index}"
        name = host.get("name")
        label = f"host {show(name)}" if isinstance(name, str) else f"host #{index}"
        for extra in host:
            if extra not in HOST_KEYS:
                report.warning(f"{key}:{extra}", f"{label}: unknown key, ignored (known keys: {', '.join(HOST_KEYS)})")
        if name is None:
            report.error(f"{key}:name", "missing: every host needs a name (its Salt minion id)")
        elif isinstance(name, str) and name in by_name:
            report.error(f"{key}:name", f"duplicate host name {show(name)} (also ksha:hosts:{by_name[name]['_index']})")
        else:
            if not is_rfc1123_label(name):
                report.error(
                    f"{key}:name",
                    f"{show(name)} is not an RFC 1123 label (lowercase letters, digits and '-', "
                    "1-63 characters, starting and ending with a letter or digit); it becomes the Kubernetes node name",
                )
            if isinstance(name, str):  # still known to the groups: one error per problem, no cascade
                by_name[name] = {**host, "_index": index}

        addresses = [("ip", host.get("ip"))]
        extras = host.get("addresses", [])
        if not isinstance(extras, list):
            report.error(f"{key}:addresses", f"{label}: must be a list of IP addresses, got {show(extras)}")
            extras = []
        addresses += [(f"addresses:{i}", a) for i, a in enumerate(extras)]
        for suffix, value in addresses:
            if suffix == "ip" and value is None:
                report.error(f"{key}:ip", f"{label}: missing: the address the cluster uses to reach this host")
                continue
            addr = parse_ip(value)
            if addr is None:
                report.error(f"{key}:{suffix}", f"{label}: {ip_problem(value)}")
                continue
            if addr in owner and owner[addr] != label:
                report.error(f"{key}:{suffix}", f"{label}: address {addr} is also used by {owner[addr]}")
            owner.setdefault(addr, label)

        instance = host.get("qingcloud_instance_id")
        if instance is not None:
            if not isinstance(instance, str) or not INSTANCE_ID.fullmatch(instance):
                report.error(
                    f"{key}:qingcloud_instance_id",
                    f"{label}: {show(instance)} is not a QingCloud instance ID (i-...); remove it to have ksha "
                    "find the instance by the host's ip",
                )
            elif instance in instances:
                report.error(
                    f"{key}:qingcloud_instance_id", f"{label}: instance {instance} is also {instances[instance]}'s"
                )
            else:
                instances[instance] = label
