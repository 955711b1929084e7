"""ksha runner: inventory validation, import and fleet status, on the Salt master.

The checks themselves live in the ``ksha`` Python package (``ksha.inventory``),
shared with the CLI; install it into the master's Python (``pip install -e``
of a checkout, or ``salt-pip install`` on a onedir master).

The file is not named ``ksha.py`` on purpose: Salt's loader puts this
module's directory first on ``sys.path`` while loading it, so a runner file
named ``ksha.py`` would import itself instead of the ``ksha`` package.
"""

import json
import logging
import re

import salt.key
import salt.pillar
import salt.utils.minions

try:
    from ksha import importer, inventory

    HAS_KSHA = True
except ImportError:
    HAS_KSHA = False

log = logging.getLogger(__name__)

__virtualname__ = "ksha"


def __virtual__():
    if not HAS_KSHA:
        return (
            False,
            "ksha runner: the 'ksha' Python package is not importable by the salt-master; "
            "install it into the master's Python (pip install -e /path/to/ksha, or salt-pip install)",
        )
    return __virtualname__


def _accepted_minions():
    return salt.key.get_key(__opts__).list_status("accepted").get("minions", [])


def _compile_pillar(minion_id):
    """The pillar the master compiles for `minion_id`, as ``pillar.show_pillar`` does."""
    _, grains, _ = salt.utils.minions.get_minion_data(minion_id, __opts__)
    pillar = salt.pillar.get_pillar(
        __opts__,
        grains or {},
        minion_id,
        saltenv=__opts__.get("saltenv") or "base",
        pillarenv=__opts__.get("pillarenv"),
    )
    return pillar.compile_pillar()


def _fleet(minion=None):
    """(ksha pillar value, fleet findings, {minion: has ksha pillar}).

    Compiles the pillar of every accepted minion (or just `minion`); the ones
    that get a ``ksha`` key must all get the same one.
    """
    findings = []
    accepted = _accepted_minions()
    ids = [minion] if minion else accepted
    seen = {}
    for minion_id in ids:
        compiled = _compile_pillar(minion_id)
        for error in compiled.get("_errors") or []:
            findings.append(
                inventory.Finding("ERROR", "ksha", f"pillar of minion {minion_id!r} failed to render: {error}")
            )
        if compiled.get("ksha") is not None:
            seen[minion_id] = compiled["ksha"]
    if not seen:
        where = f"minion {minion!r}" if minion else f"any of the {len(ids)} accepted minion(s)"
        findings.append(
            inventory.Finding(
                "ERROR", "ksha", f"no 'ksha' pillar reaches {where}; assign it in the pillar top file (pillar/top.sls)"
            )
        )
        return None, findings, seen
    variants = {}
    for minion_id, value in seen.items():
        variants.setdefault(json.dumps(value, sort_keys=True, default=str), []).append(minion_id)
    ksha = next(iter(seen.values()))
    if len(variants) > 1:
        groups = "; ".join(", ".join(sorted(ms)) for ms in variants.values())
        findings.append(
            inventory.Finding(
                "ERROR", "ksha", f"minions get different 'ksha' pillars (groups: {groups}); they must agree"
            )
        )
    for index, name in enumerate(inventory.host_names(ksha)):
        if name not in accepted:
            findings.append(
                inventory.Finding(
                    "ERROR",
                    f"ksha:hosts:{index}:name",
                    f"host {name!r} has no accepted minion key on this master (salt-key -L; accept with salt-key -a {name})",
                )
            )
        elif not minion and name not in seen:
            findings.append(
                inventory.Finding(
                    "ERROR",
                    f"ksha:hosts:{index}:name",
                    f"minion {name!r} does not get the 'ksha' pillar; fix the pillar top file",
                )
            )
    return ksha, findings, seen


def _report(findings):
    lines = [str(f) for f in findings]
    result = not inventory.has_errors(findings)
    # __context__ makes an orchestration step fail; the "retcode" key sets salt-run's exit code.
    __context__["retcode"] = 0 if result else 1
    return {"result": result, "findings": lines, "summary": inventory.summary(findings), "retcode": 0 if result else 1}


def validate(minion=None, pillar=None):
    """Validate the ``ksha`` pillar; every problem is reported, one line each.

    By default the pillar the master compiles for the accepted minions is
    checked (and that they all get the same one, and every inventory host is
    an accepted minion). Exit code 1 when there is an error.

    minion
        Check the pillar as compiled for this minion only.
    pillar
        Check this pillar dict instead (it must have a ``ksha`` key).

    CLI Example:

    .. code-block:: bash

        salt-run ksha.validate
        salt-run ksha.validate pillar='{"ksha": {...}}'
    """
    if pillar is not None:
        if not isinstance(pillar, dict):
            return _report(
                [inventory.Finding("ERROR", "ksha", f"pillar= must be a dict with a 'ksha' key, got {pillar!r}")]
            )
        return _report(inventory.validate(pillar.get("ksha")))
    ksha, fleet_findings, _ = _fleet(minion)
    findings = fleet_findings if ksha is None else inventory.validate(ksha) + fleet_findings
    return _report(sorted(findings, key=lambda f: f.level != "ERROR"))


def targets(minion=None):
    """Minion lists per role from the compiled ``ksha`` pillar (for orch/ksha.sls).

    Returns ``{"all": [...], "kube-master": [...], "kube-node": [...], "etcd": [...]}``
    plus the load-balancer targets of ``ksha.inventory.lb_targets``; empty lists
    when there is no usable pillar (the preflight then fails).
    """
    ksha, out = _inventory(minion)
    out.update(inventory.lb_targets(ksha))
    return out


def _inventory(minion=None):
    """(the fleet's ksha pillar or {}, {"all": hosts, <group>: its members that are hosts})."""
    ksha, _, _ = _fleet(minion)
    ksha = ksha if isinstance(ksha, dict) else {}
    hosts = inventory.host_names(ksha)
    groups = ksha.get("groups") if isinstance(ksha.get("groups"), dict) else {}
    out = {"all": hosts}
    for group in inventory.KNOWN_GROUPS:
        members = groups.get(group) if isinstance(groups.get(group), list) else []
        out[group] = [m for m in members if m in hosts]
    return ksha, out


def etcd_plan(timeout=5):
    """What the orchestration's etcd phase does (orch/ksha.sls): the members, the CA host,
    the hosts that get etcd certificates, and whether the cluster was bootstrapped.

    The cluster counts as bootstrapped when any member answers with the grain
    ``ksha_etcd_cluster_id`` (set by ``ksha.etcd.healthy`` once the bootstrap
    succeeded); then the orchestration never bootstraps it again.

    CLI Example:

    .. code-block:: bash

        salt-run ksha.etcd_plan
    """
    import salt.client  # pylint: disable=import-outside-toplevel

    ksha, groups = _inventory()
    hosts, members, masters = groups["all"], groups["etcd"], groups["kube-master"]
    pki = ((ksha.get("etcd") or {}).get("pki") or {}) if isinstance(ksha.get("etcd"), dict) else {}
    ca_host = pki.get("ca_host") or (members[0] if members else None)
    recorded, current, problem = {}, [], None
    if hosts:
        with salt.client.get_local_client(__opts__["conf_file"]) as client:
            out = client.cmd(hosts, "grains.get", ["ksha_etcd_cluster_id"], tgt_type="list", timeout=timeout)
            recorded = {m: v for m, v in out.items() if isinstance(v, str) and re.fullmatch("[0-9a-f]+", v)}
            if recorded:
                listed = client.cmd(sorted(recorded), "ksha_etcd.members", tgt_type="list", timeout=timeout + 10)
                answer = next((v for v in listed.values() if isinstance(v, dict) and v.get("result")), None)
                if answer is None:
                    problem = (
                        f"the etcd cluster was bootstrapped (grain ksha_etcd_cluster_id on {', '.join(sorted(recorded))}) "
                        "but no member answers; if quorum is lost for good, restore it: "
                        "salt-run state.orchestrate orch.ksha.etcd_restore"
                    )
                else:
                    current = [m["name"] or m["id"] for m in answer["members"]]
    in_pillar = [m for m in members if m in recorded]
    return {
        "members": members,
        "ca_host": ca_host,
        "pki_hosts": members + [m for m in masters if m not in members],
        "bootstrapped": bool(recorded),
        "cluster_ids": sorted(set(recorded.values())),
        "recorded_on": sorted(recorded),
        "current": current,
        # Members to add, one at a time (new in pillar, or listed but their host lost its data).
        "joining": [m for m in members if m not in current or m not in recorded] if current else [],
        # Members to remove (no longer in pillar), from a member that stays.
        "leaving": [m for m in current if m not in members],
        "remover": next((m for m in in_pillar if m in current), None),
        "others": [h for h in hosts if h not in members],
        "problem": problem,
    }


def etcd_restore_plan(source=None, snapshot=None, timeout=10):
    """The snapshot orch.ksha.etcd_restore restores and where: the newest on any etcd member
    unless ``source`` and ``snapshot`` are given.

    CLI Example:

    .. code-block:: bash

        salt-run ksha.etcd_restore_plan
    """
    import salt.client  # pylint: disable=import-outside-toplevel

    _, groups = _inventory()
    members = groups["etcd"]
    plan = {"members": members, "source": source, "snapshot": snapshot, "problem": None}
    if not members:
        plan["problem"] = "ksha:groups:etcd is empty: nothing to restore"
        return plan
    if source and source not in members:
        plan["problem"] = f"source {source!r} is not an etcd member (ksha:groups:etcd)"
        return plan
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        found = client.cmd([source] if source else members, "ksha_etcd.snapshots", tgt_type="list", timeout=timeout)
    candidates = [
        (row["mtime"], minion, row["path"])
        for minion, rows in found.items()
        if isinstance(rows, list)
        for row in rows
        if not snapshot or row["path"] == snapshot
    ]
    if not candidates:
        where = f"{snapshot} on {source}" if snapshot else "no snapshot on any member"
        plan["problem"] = f"nothing to restore: {where} (ksha:etcd:backup:dir)"
        return plan
    _, plan["source"], plan["snapshot"] = max(candidates)
    return plan


def import_inventory(hosts_ini, common_yaml=None, roster_out=None):
    """Import the seed installer's hosts.ini (and common.yaml) on the master.

    Returns ``{"ksha": ...}``: with ``--out=yaml`` it is a pillar file. Notes
    go to the log (shown on the console); with ``roster_out`` the salt-ssh
    roster (connection data) is written there, mode 0600. When the files
    cannot be read (exit code 2) or the inventory is invalid (exit code 1) the
    return says so instead: ``error`` or ``findings``, and ``retcode``.

    CLI Example:

    .. code-block:: bash

        salt-run ksha.import_inventory /srv/conf/hosts.ini common_yaml=/srv/conf/common.yaml --out=yaml
    """
    try:
        ksha, roster, notes = importer.import_files(hosts_ini, common_yaml)
    except importer.InputError as exc:
        __context__["retcode"] = 2
        return {"error": str(exc), "retcode": 2}
    for note in notes:
        log.warning("NOTE %s", note)
    if roster_out:
        importer.write_roster(roster, roster_out)
        log.warning("NOTE roster with connection data written to %s (mode 0600)", roster_out)
    findings = inventory.validate(ksha)
    if inventory.has_errors(findings):
        return {"ksha": ksha, **_report(findings)}
    for finding in findings:
        log.warning("%s", finding)
    __context__["retcode"] = 0
    return {"ksha": ksha}


def _ping(hosts, timeout):
    import salt.client  # pylint: disable=import-outside-toplevel

    if not hosts:
        return {}
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        return client.cmd(hosts, "test.ping", tgt_type="list", timeout=timeout)


def _lb_view(lb_hosts, timeout):
    """(hosts holding the VIP, backends as the holder's haproxy sees them)."""
    import salt.client  # pylint: disable=import-outside-toplevel

    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        held = client.cmd(lb_hosts, "ksha_lb.vip_holder", tgt_type="list", timeout=timeout)
        holders = [h for h in lb_hosts if isinstance(held.get(h), dict) and held[h].get("held")]
        if not holders:
            return holders, []
        out = client.cmd(holders[0], "ksha_lb.backends", timeout=timeout).get(holders[0]) or {}
    return holders, out.get("backends", []) if isinstance(out, dict) else []


def _etcd_view(members, ip_of, pki_dir, timeout):
    """(health as one member sees it, {member: status row}, {member: server cert days left})."""
    import salt.client  # pylint: disable=import-outside-toplevel

    if not members:
        return None, {}, {}
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        healths = client.cmd(members, "ksha_etcd.health", tgt_type="list", timeout=timeout + 10)
        answered = [m for m in members if isinstance(healths.get(m), dict)]
        if not answered:
            return None, {}, {}
        best = next((m for m in answered if healths[m].get("healthy")), answered[0])
        rows = client.cmd(best, "ksha_etcd.status", timeout=timeout + 10).get(best) or {}
        days = client.cmd(
            members, "ksha_etcd.cert_days_left", [f"{pki_dir}/server.crt"], tgt_type="list", timeout=timeout
        )
    member_at = {str(ip): name for name, ip in ip_of.items()}
    by_member = {}
    for row in rows.get("endpoints", []) if isinstance(rows, dict) else []:
        address = row["endpoint"].split("//", 1)[-1].rsplit(":", 1)[0].strip("[]")
        if address in member_at:
            by_member[member_at[address]] = row
    return healths[best], by_member, {m: d for m, d in days.items() if isinstance(d, int)}


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def status(output="table", timeout=5):
    """The cluster at a glance: every inventory host, its address, roles and minion.

    output
        ``table`` (default): a text table; ``data``: a dict, with ``healthy`` and
        ``retcode`` (so ``salt-run ksha.status output=data`` exits 1 when a minion
        is down, the VIP is not on exactly one host or etcd is unhealthy).

    CLI Example:

    .. code-block:: bash

        salt-run ksha.status
    """
    ksha, findings, _ = _fleet()
    if ksha is None:
        __context__["retcode"] = 1
        return "\n".join(str(f) for f in findings)
    names = inventory.host_names(ksha)
    answered = _ping(names, timeout)
    rows = []
    for entry in ksha.get("hosts") or []:
        if not isinstance(entry, dict) or entry.get("name") not in names:
            continue
        name = entry["name"]
        rows.append(
            {
                "host": name,
                "address": entry.get("ip"),
                "roles": inventory.roles_of(ksha, name),
                "minion": "up" if answered.get(name) is True else "DOWN",
            }
        )
    lb = ksha.get("loadbalancer") or {}
    keepalived = lb.get("mode") == "keepalived"
    holders, backends = _lb_view(inventory.lb_hosts(ksha), timeout) if keepalived else ([], [])
    for row in rows:
        row["vip"] = row["host"] in holders
    groups = ksha.get("groups") if isinstance(ksha.get("groups"), dict) else {}
    members = [m for m in groups.get("etcd") or [] if m in names]
    etcd_conf = ksha.get("etcd") if isinstance(ksha.get("etcd"), dict) else {}
    pki_dir = (etcd_conf.get("pki") or {}).get("dir") or "/etc/etcd/pki"
    ip_of = {r["host"]: r["address"] for r in rows}
    etcd_health, etcd_rows, cert_days = _etcd_view(members, ip_of, pki_dir, timeout)
    unhealthy = (
        any(row["minion"] == "DOWN" for row in rows)
        or (keepalived and len(holders) != 1)
        or bool(members and not (etcd_health or {}).get("healthy"))
    )
    __context__["retcode"] = 1 if unhealthy else 0
    if output == "data":
        # salt-run takes its exit code from a "retcode" key of a returned dict (the table is a string).
        return {
            "healthy": not unhealthy,
            "retcode": 1 if unhealthy else 0,
            "hosts": rows,
            "vip_holders": holders,
            "backends": backends,
            "etcd": {"health": etcd_health, "members": etcd_rows, "cert_days_left": cert_days},
        }
    header = ("HOST", "ADDRESS", "ROLES", "MINION", "VIP")
    table = [header] + [
        (r["host"], str(r["address"]), ",".join(r["roles"]) or "-", r["minion"], "held" if r["vip"] else "")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.append("")
    lines.append(
        f"API endpoint: {lb.get('domain', 'lb.kubesphere.local')}:{lb.get('port', 6443)} -> "
        f"{lb.get('address') or 'first master'} (loadbalancer mode: {lb.get('mode', 'none')})"
    )
    if keepalived:
        who = ", ".join(holders) or "NOBODY"
        warn = "" if len(holders) == 1 else "  <-- expected exactly one holder"
        lines.append(f"VIP {lb.get('address')} held by: {who}{warn}")
        states = ", ".join(
            f"{b['name']} {b['state']}" + ("" if b["state"].startswith("UP") else f" ({b['check']} {b['last_check']})")
            for b in backends
        )
        lines.append(f"apiserver backends (haproxy on {holders[0] if holders else '-'}): {states or 'none seen'}")
    if members:
        lines.append("")
        if etcd_health is None:
            lines.append("etcd: no member answers (not bootstrapped yet, or every member is down)")
        else:
            verdict = "healthy" if etcd_health["healthy"] else "NOT HEALTHY: " + "; ".join(etcd_health["problems"])
            lines.append(f"etcd cluster {etcd_health.get('cluster_id')}: {verdict}; leader {etcd_health.get('leader')}")
            for member in members:
                row = etcd_rows.get(member) or {}
                state = "up" if row.get("ok") else "DOWN"
                role = " (leader)" if row.get("is_leader") else (" (learner)" if row.get("learner") else "")
                size = _size(row["db_size"]) if row.get("db_size") is not None else "-"
                days = cert_days.get(member)
                cert = f"{days} days" if days is not None else "unknown"
                lines.append(f"  etcd {member}: {state}{role}, db {size}, server certificate {cert} left")
    return "\n".join(lines)
