"""ksha:nodes, ksha:containerd and ksha:network: which hosts are nodes, their kernel settings,
the runtime's settings, the pod network's.

Each key's type and range: the schema section (registry mirrors as http(s) URLs, insecure
registries as host[:port], the sandbox image as an image reference, the cgroup driver). Here:
what depends on other keys.
"""

from __future__ import annotations

import ipaddress
import re

from ksha.checks.base import Context, Report

SYSCTL = re.compile(r"[a-z0-9_-]+(\.[A-Za-z0-9_-]+)+")
# the calico release whose objects ksha/network.py renders (its CRDs and RBAC)
CALICO_SERIES = "v3.28."
MIN_MTU = 576  # IPv4's minimum datagram every host must take


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
    _network(ctx, report)


def _network(ctx: Context, report: Report) -> None:
    net = ctx.section("network")
    if net.get("plugin") != "calico":
        return
    calico = ctx.section("network", "calico")
    try:
        pods = ipaddress.ip_network(str(ctx.section("kubernetes").get("pod_cidr")), strict=False)
    except ValueError:
        pods = None  # reported by the kubernetes section
    if pods is not None and pods.version == 6:
        report.error(
            "ksha:network:plugin",
            f"calico is rendered for an IPv4 pod network, and ksha:kubernetes:pod_cidr is IPv6 ({pods}): set "
            "ksha:network:plugin: none and bring your own network plugin",
        )
    mtu = calico.get("mtu")
    if isinstance(mtu, int) and not isinstance(mtu, bool) and 0 < mtu < MIN_MTU:
        report.error(
            "ksha:network:calico:mtu",
            f"{mtu} is below {MIN_MTU}, the least an IPv4 host must take: use 0 (calico finds it) or the "
            "network's MTU less calico's overhead (20 for IP-in-IP)",
        )
    version = calico.get("version")
    if isinstance(version, str) and not version.startswith(CALICO_SERIES):
        report.warning(
            "ksha:network:calico:version",
            f"{version}: ksha renders the objects of calico {CALICO_SERIES}x (its CRDs and RBAC); another "
            f"release may need others. Use a {CALICO_SERIES}x release",
        )
