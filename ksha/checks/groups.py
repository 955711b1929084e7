"""ksha:groups: members defined, listed once; a master. Leaves ``ctx.groups`` and ``ctx.positions``.

``check_roleless`` runs last: a host in no group gets no role.
"""

from __future__ import annotations

from ksha.checks.base import KNOWN_GROUPS, Context, Report


def check(ctx: Context, report: Report) -> None:
    groups = ctx.ksha.get("groups")
    hosts = ctx.hosts
    clean = ctx.groups
    if not isinstance(groups, dict):
        report.error("ksha:groups", f"must be a mapping of group name to host names ({', '.join(KNOWN_GROUPS)})")
        groups = {}
    for group, members in groups.items():
        key = f"ksha:groups:{group}"
        if group not in KNOWN_GROUPS:
            report.warning(key, f"unknown group, ignored (known groups: {', '.join(KNOWN_GROUPS)})")
        if members is None:
            members = []
        if not isinstance(members, list):
            report.error(key, f"must be a list of host names, got {members!r}")
            members = []
        positions: dict[str, int] = {}
        for index, member in enumerate(members):
            if member in positions:
                report.error(f"{key}:{index}", f"host {member!r} is listed twice")
                continue
            positions[member] = index
            if hosts and member not in hosts:
                report.error(
                    f"{key}:{index}", f"host {member!r} is not defined in ksha:hosts (defined: {', '.join(hosts)})"
                )
        ctx.positions[group] = positions
        clean[group] = [m for m in positions if m in hosts]
    for group in KNOWN_GROUPS:
        clean.setdefault(group, [])
        ctx.positions.setdefault(group, {})
    if not clean["kube-master"]:
        report.error("ksha:groups:kube-master", "is empty: the cluster needs at least one master")


def check_roleless(ctx: Context, report: Report) -> None:
    grouped = {m for g in KNOWN_GROUPS for m in ctx.groups[g]}
    for name, host in ctx.hosts.items():
        if name not in grouped:
            report.warning(f"ksha:hosts:{host['_index']}:name", f"host {name!r} is in no group and gets no role")
