"""ksha:groups:etcd's member count, the CA host, and ksha:etcd's cross-checks (archive source,
ports, raft timings, certificate days); each key's type and range: the schema section."""

from __future__ import annotations

import re

from ksha.checks.base import Context, Report, ca_host_in_group, certificate_days, show

KEY = "ksha:etcd"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_URL = re.compile(r"(https?|salt|file)://\S+")
_VERSION = re.compile(r"v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?")


def check(ctx: Context, report: Report) -> None:
    etcd = ctx.section("etcd")
    if "etcd" not in ctx.unresolved:
        _member_count(ctx, etcd, report)
    if etcd.get("source") == "archive":
        _archive(ctx.section("etcd", "archive"), report)
    _ports_and_timings(etcd, report)
    _pki(ctx, ctx.section("etcd", "pki"), report)
    _workers(ctx, report)


def _member_count(ctx: Context, etcd: dict, report: Report) -> None:
    count = len(ctx.groups["etcd"])
    allow_even = etcd.get("allow_even_member_count") is True
    if count == 0:
        report.error("ksha:groups:etcd", "is empty: the cluster needs etcd members (an odd number, usually 3)")
    elif count == 1:
        report.warning("ksha:groups:etcd", "has 1 member: etcd is not highly available (use 3 or 5)")
    elif count % 2 == 0 and f"{KEY}:allow_even_member_count" not in ctx.bad:
        if allow_even:
            report.warning(
                "ksha:groups:etcd",
                f"has {count} members (even), allowed by ksha:etcd:allow_even_member_count while a member is "
                "replaced; an even count tolerates no more failures than one member fewer: set it back to false "
                "once the replacement has joined",
            )
        else:
            report.error(
                "ksha:groups:etcd",
                f"has {count} members; etcd needs an odd number (e.g. {count - 1} or {count + 1}). While replacing "
                "a member, set ksha:etcd:allow_even_member_count: true for the transition",
            )


def _archive(archive: dict, report: Report) -> None:
    """source 'archive': a checksum, a URL and a version (each absent only after its type error)."""
    if "sha256" in archive and not (isinstance(archive["sha256"], str) and _SHA256.fullmatch(archive["sha256"])):
        report.error(
            f"{KEY}:archive:sha256",
            "source 'archive' needs the release tarball's sha256 (64 hex digits, from the release's "
            "SHA256SUMS) so a changed download is refused",
        )
    if "url" in archive and not _URL.fullmatch(archive["url"]):
        report.error(f"{KEY}:archive:url", f"{show(archive['url'])} is not an http(s)://, salt:// or file:// URL")
    if "version" in archive and not _VERSION.fullmatch(archive["version"]):
        report.error(f"{KEY}:archive:version", f"{show(archive['version'])} is not a release version (e.g. v3.4.23)")


def _ports_and_timings(etcd: dict, report: Report) -> None:
    """Cross-checks only: each number alone is checked by the schema section (LIMITS)."""
    client, peer, metrics = etcd.get("client_port"), etcd.get("peer_port"), etcd.get("metrics_port")
    if client is not None and client == peer:
        report.error(f"{KEY}:peer_port", "is the same as ksha:etcd:client_port; etcd needs two ports")
    if metrics is not None and metrics in (client, peer):
        report.error(f"{KEY}:metrics_port", f"{metrics} is also ksha:etcd's client or peer port")
    heartbeat, election = etcd.get("heartbeat_interval_ms"), etcd.get("election_timeout_ms")
    if heartbeat is not None and election is not None and election < 5 * heartbeat:
        report.error(
            f"{KEY}:election_timeout_ms",
            f"{election} ms is less than 5 heartbeats ({heartbeat} ms each); "
            "etcd refuses to start (it advises about 10 heartbeats)",
        )


def _pki(ctx: Context, pki: dict, report: Report) -> None:
    certificate_days(f"{KEY}:pki", pki, report)
    # a string or null (schema section), or absent after its type error
    ca_host_in_group(ctx, report, f"{KEY}:pki:ca_host", pki.get("ca_host"), "etcd", "an etcd member", "member")


def _workers(ctx: Context, report: Report) -> None:
    masters, nodes = set(ctx.groups["kube-master"]), set(ctx.groups["kube-node"])
    for member in ctx.groups["etcd"]:
        if member in nodes and member not in masters:
            report.warning(
                f"ksha:groups:etcd:{ctx.positions['etcd'][member]}",
                f"host {show(member)} is a kube-node but not a kube-master: etcd on workers competes with workloads "
                "for memory and disk; the seed advises against it",
            )
