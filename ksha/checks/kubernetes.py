"""ksha:kubernetes: the version ksha can deploy, the networks, the CA host, the leader election
timings, the extra flags (against the version's flag reference) and the certificates' days.

Each key's type and range: the schema section. Here: what depends on other keys or on the
flag reference (``ksha/data/kubernetes-flags.yaml``).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any

from ksha import flags, release
from ksha.checks.base import Context, Report, ca_host_in_group, certificate_days, names, show

KEY = "ksha:kubernetes"
_VERSION = re.compile(r"v(1)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_URL = re.compile(r"(https?|salt|file)://\S+")
# the apiserver refuses a Service range of more than 20 host bits; fewer than 4 leaves no room
SERVICE_HOST_BITS = 20
SERVICE_MIN_HOST_BITS = 4
# kube-controller-manager carves a range of this prefix out of the pod network for each node
# (--node-cidr-mask-size-ipv4 / -ipv6, defaults 24 and 64), at most 16 bits below it for IPv6
NODE_MASK = {4: ("node-cidr-mask-size-ipv4", 24), 6: ("node-cidr-mask-size-ipv6", 64)}
NODE_MASK_MAX_BITS_IPV6 = 16
# extra flags that would contradict one ksha sets: component -> {extra flag: ksha's flag}
CONFLICTS = {
    "kube-apiserver": {"authorization-config": "authorization-mode"},
    "kube-scheduler": {},
    "kube-controller-manager": {},
}
# flag values ksha cannot work with: (component, flag) -> (the value, why)
NEEDED = {
    ("kube-apiserver", "anonymous-auth"): (
        "false",
        "--anonymous-auth=false makes /readyz answer 401: haproxy's checks, ksha's rolling restarts and "
        "ksha.status read it without a client certificate, so every apiserver would look down; leave it out "
        "(RBAC lets anonymous requests read only the health and version paths)",
    ),
}
# client-go: the renew deadline must exceed the retry period times its jitter factor
LEADER_JITTER = 1.2

# pillar key of each component's extra flags
EXTRA_ARGS = {
    "kube-apiserver": f"{KEY}:apiserver:extra_args",
    "kube-controller-manager": f"{KEY}:controller_manager:extra_args",
    "kube-scheduler": f"{KEY}:scheduler:extra_args",
}


def check(ctx: Context, report: Report) -> None:
    k8s = ctx.section("kubernetes")
    _version(k8s, report)
    _archive(ctx, k8s, ctx.section("kubernetes", "archive"), report)
    _archive(ctx, k8s, ctx.section("kubernetes", "node_archive"), report, "node")
    _networks(ctx, k8s, report)
    pki = ctx.section("kubernetes", "pki")
    certificate_days(f"{KEY}:pki", pki, report)
    _ca_host(ctx, pki, report)
    _pki_dirs(pki, ctx.section("etcd", "pki"), report)
    _leader_election(ctx.section("kubernetes", "leader_election"), report)
    for component, key in EXTRA_ARGS.items():
        section = key.split(":")[2]
        _extra_args(component, key, ctx.section("kubernetes", section).get("extra_args") or {}, report)
    for kind, key in EXTRA_CONFIG.items():
        section = key.split(":")[2]
        _extra_config(kind, key, ctx.section("kubernetes", section).get("extra_config") or {}, report)


def _version(k8s: dict, report: Report) -> None:
    version = k8s.get("version")
    if version is None:  # a wrong type: the schema section
        return
    pinned = flags.version()
    match = _VERSION.fullmatch(version)
    if not match:
        report.error(f"{KEY}:version", f"{show(version)} is not a Kubernetes release version (e.g. v{pinned}.0)")
    elif f"{match[1]}.{match[2]}" != pinned:
        report.error(
            f"{KEY}:version",
            f"{version} is not a {pinned} release: this ksha deploys Kubernetes {pinned} (its components' flags "
            f"are those of {pinned}'s reference); use a v{pinned}.x release",
        )


def _archive(ctx: Context, k8s: dict, archive: dict, report: Report, kind: str = "server") -> None:
    """The server tarball (ksha:kubernetes:archive, the masters') or the node tarball
    (node_archive, every node's)."""
    key = f"{KEY}:{'archive' if kind == 'server' else 'node_archive'}"
    phase = "control-plane" if kind == "server" else "nodes"
    sha256, url = archive.get("sha256"), archive.get("url")
    # the phase that needs it has hosts: the masters, or the nodes (kube-node, and the masters
    # unless masters_run_kubelet is false)
    nodes = ctx.groups.get("kube-node") or (
        ctx.groups.get("kube-master") and ctx.section("nodes").get("masters_run_kubelet") is not False
    )
    needed = ctx.groups.get("kube-master") if kind == "server" else nodes
    if sha256 is None and needed and isinstance(k8s.get("version"), str):
        report.warning(
            f"{key}:sha256",
            release.checksum_fix(k8s["version"], kind)
            + f" (until then orch.ksha refuses to run, before any host is touched, unless ksha_until stops it "
            f"before the {phase} phase)",
        )
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        report.error(
            f"{key}:sha256",
            f"must be the tarball's sha256 (64 hex digits, published next to the tarball as "
            f"{release.TARBALLS[kind][0]}.sha256)",
        )
    if url is not None and not _URL.fullmatch(url):
        report.error(f"{key}:url", f"{show(url)} is not an http(s)://, salt:// or file:// URL")


def _network(key: str, value: Any, report: Report):
    """The network `value` names, or None (reported)."""
    try:
        if "/" not in value:
            raise ValueError(value)
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        report.error(key, f"{show(value)} is not a network in CIDR notation (e.g. 10.233.0.0/18)")
        return None
    if str(network) != value:
        report.error(key, f"{value} has host bits set: write the network, {network}")
        return None
    return network


def _networks(ctx: Context, k8s: dict, report: Report) -> None:
    found = {}
    for name in ("service_cidr", "pod_cidr"):
        if name in k8s:
            found[name] = _network(f"{KEY}:{name}", k8s[name], report)
    service, pods = found.get("service_cidr"), found.get("pod_cidr")
    if service is not None and service.max_prefixlen - service.prefixlen > SERVICE_HOST_BITS:
        report.error(
            f"{KEY}:service_cidr",
            f"{service} is too large: the apiserver takes at most {SERVICE_HOST_BITS} host bits "
            f"(/{service.max_prefixlen - SERVICE_HOST_BITS} or smaller)",
        )
    elif service is not None and service.max_prefixlen - service.prefixlen < SERVICE_MIN_HOST_BITS:
        report.error(
            f"{KEY}:service_cidr",
            f"{service} is too small for Services: use at least /{service.max_prefixlen - SERVICE_MIN_HOST_BITS} "
            "(a /18 or more is usual)",
        )
    _families(ctx, found, report)
    if pods is not None:
        _node_ranges(ctx, pods, report)
    if service is not None and pods is not None and service.version == pods.version and service.overlaps(pods):
        report.error(
            f"{KEY}:pod_cidr", f"{pods} overlaps ksha:kubernetes:service_cidr ({service}): use two separate networks"
        )
    lb_address = ctx.section("loadbalancer").get("address")
    used = {addr: where for addr, where in ctx.addresses.items()}
    if isinstance(lb_address, str):
        used.setdefault(lb_address, "the LB address (ksha:loadbalancer:address)")
    for name, network in found.items():
        if network is None:
            continue
        inside = sorted(where for addr, where in used.items() if _in(addr, network))
        if inside:
            report.error(
                f"{KEY}:{name}",
                f"{network} contains {names(inside)}: cluster networks must not hold host or LB addresses "
                "(traffic to them would be routed into the cluster); choose another range",
            )


def _families(ctx: Context, found: dict, report: Report) -> None:
    """One IP family throughout: ksha deploys single-stack clusters."""
    hosts = {ipaddress.ip_address(h["ip"]).version for h in ctx.hosts.values() if _is_address(h.get("ip"))}
    if len(hosts) != 1:
        return  # none known, or mixed: the hosts section's concern
    [family] = hosts
    for name, network in found.items():
        if network is not None and network.version != family:
            report.error(
                f"{KEY}:{name}",
                f"{network} is IPv{network.version} but the hosts' addresses are IPv{family}: ksha deploys "
                f"single-stack clusters; use an IPv{family} network",
            )


def _is_address(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def _node_ranges(ctx: Context, pods, report: Report) -> None:
    """The pod network must hold a node range (kube-controller-manager's mask) for every node."""
    flag, mask = NODE_MASK[pods.version]
    extra = ctx.section("kubernetes", "controller_manager").get("extra_args") or {}
    given = extra.get(flag, extra.get("node-cidr-mask-size"))
    if isinstance(given, int) and not isinstance(given, bool):
        mask = given
    elif isinstance(given, str) and given.isdigit():
        mask = int(given)
    nodes = len(set(ctx.groups.get("kube-master", [])) | set(ctx.groups.get("kube-node", [])))
    where = f"kube-controller-manager's --{flag}, /{mask}"
    if mask <= pods.prefixlen:
        report.error(
            f"{KEY}:pod_cidr",
            f"{pods} cannot hold one node's pod range ({where}): use a larger network (e.g. /{max(mask - 6, 0)})",
        )
    elif pods.version == 6 and mask - pods.prefixlen > NODE_MASK_MAX_BITS_IPV6:
        report.error(
            f"{KEY}:pod_cidr",
            f"{pods} is more than {NODE_MASK_MAX_BITS_IPV6} bits larger than one node's range ({where}), which "
            f"kube-controller-manager refuses: use /{mask - NODE_MASK_MAX_BITS_IPV6} or smaller",
        )
    elif 2 ** (mask - pods.prefixlen) < nodes:
        report.error(
            f"{KEY}:pod_cidr",
            f"{pods} holds {2 ** (mask - pods.prefixlen)} node ranges ({where}) for {nodes} cluster hosts: "
            "use a larger network",
        )


def _in(address: Any, network) -> bool:
    try:
        return ipaddress.ip_address(str(address)) in network
    except ValueError:
        return False


def _ca_host(ctx: Context, pki: dict, report: Report) -> None:
    ca_host_in_group(ctx, report, f"{KEY}:pki:ca_host", pki.get("ca_host"), "kube-master", "a kube-master", "master")


def _pki_dirs(pki: dict, etcd_pki: dict, report: Report) -> None:
    """The etcd CA and the Kubernetes CAs each keep ca.key and ca.crt in their own directories:
    one directory for both would make one CA's key the other's (and the two CA states rewrite
    one ca.crt in turn); the same for the leaf directories' ca.crt."""
    for which, what in (("ca_dir", "the CAs' keys"), ("dir", "the certificates")):
        mine, etcd = pki.get(which), etcd_pki.get(which)
        if isinstance(mine, str) and isinstance(etcd, str) and mine.rstrip("/") == etcd.rstrip("/"):
            report.error(
                f"{KEY}:pki:{which}",
                f"{mine!r} is ksha:etcd:pki:{which} too: {what} of the two PKIs would overwrite each other's "
                "ca.key/ca.crt; give each its own directory",
            )


def _leader_election(election: dict, report: Report) -> None:
    duration, deadline, retry = (election.get(k) for k in ("lease_duration_s", "renew_deadline_s", "retry_period_s"))
    if duration is not None and deadline is not None and duration <= deadline:
        report.error(
            f"{KEY}:leader_election:renew_deadline_s",
            f"{deadline} s is not less than lease_duration_s ({duration} s): the components refuse to start",
        )
    if deadline is not None and retry is not None and deadline <= LEADER_JITTER * retry:
        report.error(
            f"{KEY}:leader_election:retry_period_s",
            f"{retry} s: renew_deadline_s ({deadline} s) must be more than {LEADER_JITTER} x retry_period_s "
            "(client-go's leader election refuses less)",
        )


# pillar key of each node component's extra configuration file fields
EXTRA_CONFIG = {
    "KubeletConfiguration": f"{KEY}:kubelet:extra_config",
    "KubeProxyConfiguration": f"{KEY}:kube_proxy:extra_config",
}


def _unknown(name: Any, known, what: str, source: str, why: str = "") -> str:
    """The finding for a name not in the version's reference, with the closest known names."""
    close = difflib.get_close_matches(name, known, n=3) if isinstance(name, str) else []
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"{show(name)} is not {what} of Kubernetes {flags.version()}{why}{hint}; see {source}"


def _extra_config(kind: str, key: str, extra: dict, report: Report) -> None:
    """Top-level fields of the kubelet's or kube-proxy's configuration file, merged over ksha's:
    each must be a field of the version's reference and not one ksha sets."""
    known, managed = flags.config_fields(kind)["fields"], flags.MANAGED_FIELDS[kind]
    for field, value in extra.items():
        where = f"{key}:{field}"
        if field in managed:
            report.error(where, f"{field} is set by ksha from {managed[field]}: change that instead")
        elif field not in known:
            report.error(where, _unknown(field, known, f"a {kind} field", flags.config_source(kind)))
        elif value is None:
            report.error(where, "must be the field's value, got null (leave the field out for its default)")


def _extra_args(component: str, key: str, extra: dict, report: Report) -> None:
    known, managed = flags.known(component), flags.MANAGED[component]
    for flag, value in extra.items():
        where = f"{key}:{flag}"
        if isinstance(flag, str) and flag.startswith("-"):
            report.error(where, f"write the flag's name without dashes: {flag.lstrip('-')}")
        elif flag in managed:
            report.error(where, f"--{flag} is set by ksha from {managed[flag]}: change that instead")
        elif flag in CONFLICTS[component]:
            ours = CONFLICTS[component][flag]
            report.error(where, f"--{flag} cannot go with --{ours}, which ksha sets from {managed[ours]}")
        elif flag not in known:
            report.error(
                where, _unknown(flag, known, f"a {component} flag", flags.source(component), " (unknown or removed)")
            )
        elif value is None or isinstance(value, (dict, list)):
            report.error(where, f"must be the flag's value (a string, number or true/false), got {show(value)}")
        elif (component, flag) in NEEDED and str(value).lower() == NEEDED[(component, flag)][0]:
            report.error(where, NEEDED[(component, flag)][1])
        elif isinstance(value, str) and (_CONTROL.search(value) or not value.strip()):
            report.error(
                where, f"{show(value)} has a line break or control character, or is blank: write the value alone"
            )
