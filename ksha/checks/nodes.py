"""ksha:nodes and ksha:containerd: which hosts are nodes, the runtime's settings.

Each key's type and range: the schema section (registry mirrors as http(s) URLs, insecure
registries as host[:port], the sandbox image as an image reference, the cgroup driver). Here:
what depends on other keys.
"""

from __future__ import annotations

import re

from ksha.checks.base import Context, Report

SYSCTL = re.compile(r"[a-z0-9_-]+(\.[A-Za-z0-9_-]+)+")


def check(ctx: Context, report: Report) -> None:
    nodes = ctx.section("nodes")
    run_on_masters = nodes.get("masters_run_kubelet")
    if run_on_masters is False and not ctx.groups.get("kube-node") and ctx.groups.get("kube-master"):
        report.warning(
            "ksha:groups:kube-node",
            "is empty and ksha:nodes:masters_run_kubelet is false: no host runs a kubelet, so the cluster "
            "can run no pod; add workers to kube-node or set masters_run_kubelet: true",
        )
    for name in nodes.get("sysctl") or {}:
        if not isinstance(name, str) or not SYSCTL.fullmatch(name):
            report.error(
                f"ksha:nodes:sysctl:{name}",
                "is not a sysctl name (dotted, as `sysctl -a` lists them, e.g. net.ipv4.ip_forward)",
            )
    ctd = ctx.section("containerd")
    insecure = ctd.get("insecure_registries") or []
    seen: set[str] = set()
    for index, registry in enumerate(insecure):
        if isinstance(registry, str) and registry in seen:
            report.warning(
                f"ksha:containerd:insecure_registries:{index}", f"{registry} is listed twice; remove the repeat"
            )
        seen.add(registry if isinstance(registry, str) else "")
