"""ksha:groups: members defined, listed once; a master. Leaves ``ctx.groups``, ``ctx.positions``, ``ctx.unresolved``.

The schema section has checked that each group is a list of strings (a wrong one is left out,
a wrong member skipped here). ``check_roleless`` runs last: a host in no group gets no role.
"""

from __future__ import annotations

from ksha.checks.base import KNOWN_GROUPS, Context, Report, names, show


def check(ctx: Context, report: Report) -> None:
    hosts = ctx.hosts
    if "ksha:groups" in ctx.bad:
        ctx.unresolved.update(KNOWN_GROUPS)
    for group in KNOWN_GROUPS:
        if f"ksha:groups:{group}" in ctx.bad:
            ctx.unresolved.add(group)
    for group, members in ctx.section("groups").items():
        key = f"ksha:groups:{group}"
        if group not in KNOWN_GROUPS:
            report.warning(key, f"unknown group, ignored (known groups: {', '.join(KNOWN_GROUPS)})")
        positions: dict[str, int] = {}
        for index, member in enumerate(members):
            if not isinstance(member, str):  # reported by the schema section
                ctx.unresolved.add(group)
                continue
            if member in positions:
                report.error(f"{key}:{index}", f"host {show(member)} is listed twice")
                continue
            positions[member] = index
            if member not in hosts:
                ctx.unresolved.add(group)
                if hosts:
                    report.error(
                        f"{key}:{index}",
                        f"host {show(member)} is not defined in ksha:hosts (defined: {names(hosts)})",
                    )
        ctx.positions[group] = positions
        ctx.groups[group] = [m for m in positions if m in hosts]
    for group in KNOWN_GROUPS:
        ctx.groups.setdefault(group, [])
        ctx.positions.setdefault(group, {})
    if not ctx.groups["kube-master"] and "kube-master" not in ctx.unresolved:
        report.error("ksha:groups:kube-master", "is empty: the cluster needs at least one master")


def check_roleless(ctx: Context, report: Report) -> None:
    if "ksha:groups" in ctx.bad or any(f"ksha:groups:{g}" in ctx.bad for g in KNOWN_GROUPS):
        return  # a group's members are unknown, so are the roles
    grouped = {m for g in KNOWN_GROUPS for m in ctx.groups[g]}
    for name, host in ctx.hosts.items():
        if name not in grouped:
            report.warning(f"ksha:hosts:{host['_index']}:name", f"host {show(name)} is in no group and gets no role")
