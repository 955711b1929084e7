"""The inventory validator, by section.

``ksha.inventory.validate`` is the one entry point: it merges the defaults and calls
:func:`run`, which runs SECTIONS in order on one :class:`~ksha.checks.base.Context` and
one :class:`~ksha.checks.base.Report`. A section reads what the sections before it left in the
context (the hosts by name, the groups' members ...) and reports each problem once, naming
the pillar key and the fix. A new part of the cluster (the control plane, the nodes,
KubeSphere) adds a module here and its place in SECTIONS; its keys' types go into
``schema.TYPES`` (when their default does not say it) and its numeric keys into the one table
of ranges, ``schema.LIMITS``.
"""

from __future__ import annotations

from collections.abc import Callable

from ksha.checks import etcd, groups, hosts, kubernetes, loadbalancer, nodes, schema
from ksha.checks.base import Context, Finding, Report

Section = Callable[[Context, Report], None]

SECTIONS: tuple[Section, ...] = (
    schema.check,  # first: every key's type, every number's range; a wrong one is left out for the rest
    hosts.check,  # ctx.hosts, ctx.addresses
    groups.check,  # ctx.groups, ctx.positions
    etcd.check,
    loadbalancer.check,
    kubernetes.check,
    nodes.check,
    groups.check_roleless,  # last: every role is known
)


def run(pillar: dict, merged: dict, defaults: dict) -> list[Finding]:
    """Every section on `merged` (`pillar` with `defaults` merged in); errors first."""
    ctx = Context(pillar=pillar, ksha=merged, defaults=defaults)
    report = Report()
    for section in SECTIONS:
        section(ctx, report)
    return report.ordered()
