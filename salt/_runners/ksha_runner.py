"""ksha runner: inventory validation, the orchestration's plan, import and fleet status,
on the Salt master.

The checks (``ksha.inventory``), the cluster model (``ksha.model``) and the plans
(``ksha.plan``) live in the ``ksha`` Python package, shared with the CLI; install it into the master's Python (``pip install -e``
of a checkout, or ``salt-pip install`` on a onedir master).

The file is not named ``ksha.py`` on purpose: Salt's loader puts this
module's directory first on ``sys.path`` while loading it, so a runner file
named ``ksha.py`` would import itself instead of the ``ksha`` package.
"""

import copy
import json
import logging
import re

import salt.key
import salt.pillar
import salt.utils.minions

try:
    from ksha import importer, inventory, model, qingcloud, qingcloud_client
    from ksha import plan as planner

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


# set in __context__ by ksha.runner (salt/_modules/ksha.py), the runners of one orchestration
FLEET_SHARED = "ksha_runner.fleet"


def _fleet(minion=None):
    """(ksha pillar value, fleet findings, {minion: has ksha pillar}).

    Compiles the pillar of every accepted minion (or just `minion`); the ones
    that get a ``ksha`` key must all get the same one. Within one orchestration
    (``ksha.runner`` shares a ``__context__`` holding ``FLEET_SHARED``), once: its
    preflight validates the pillars its plan was built from. Anywhere else (salt-run),
    every call compiles them.
    """
    shared = __context__.get(FLEET_SHARED)
    if shared is None:
        return _compiled_fleet(minion)
    if minion not in shared:
        shared[minion] = _compiled_fleet(minion)
    return copy.deepcopy(shared[minion])


def _compiled_fleet(minion=None):
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
        return _report(model.preflight_findings(pillar.get("ksha")))
    ksha, fleet_findings, _ = _fleet(minion)
    findings = fleet_findings if ksha is None else model.preflight_findings(ksha) + fleet_findings
    return _report(sorted(findings, key=lambda f: f.level != "ERROR"))


def _model():
    """The cluster model of the ksha pillar the master compiles, or None when it is not valid.

    Fleet problems (a host without an accepted key, minions that disagree) do not stop the
    plan: the preflight's validation reports them and fails the run before any host changes.
    """
    ksha, _, _ = _fleet()
    if ksha is None or inventory.has_errors(inventory.validate(ksha)):
        return None
    return model.build(ksha)


def _live(cluster, timeout, etcd=True):
    """What the plan needs from the hosts (``ksha.plan.build``'s ``live``), in one publish of
    two functions: the etcd bootstrap grain and ``ksha.plan.file_probe`` (what the clean states
    would remove, where the CA keys are); then, for a bootstrapped cluster and ``etcd``, the
    member names etcd reports (None when no member answers)."""
    import salt.client  # pylint: disable=import-outside-toplevel

    hosts = [h["name"] for h in cluster["hosts"]]
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        # {minion: {function: return}}
        out = client.cmd(
            hosts,
            ["grains.get", "cmd.run_all"],
            [
                [cluster["etcd"]["bootstrap_grain"]],
                [planner.file_probe(cluster), "python_shell=False", "ignore_retcode=True"],
            ],
            tgt_type="list",
            timeout=timeout,
        )
        out = {m: r for m, r in out.items() if isinstance(r, dict)}
        files = {h: planner.files_found(out.get(h, {}).get("cmd.run_all")) for h in hosts}
        grains = {m: r.get("grains.get") for m, r in out.items()}
        recorded = {m: v for m, v in grains.items() if isinstance(v, str) and re.fullmatch("[0-9a-f]+", v)}
        live = {
            "recorded": recorded,
            "current": None,
            "ca_keys": planner.holders(files, cluster["etcd"]["ca"]["key"]),
            "silent": [h for h in hosts if files[h] is None],
            "files": files,
        }
        if not recorded or not etcd:
            return live
        # with the master's model (the recorded hosts' client URLs, the admin certificate), not
        # the members' pillars in memory: the plan runs before the preflight refreshes those
        port = cluster["config"]["etcd"]["client_port"]
        ip_of = {h["name"]: h["ip"] for h in cluster["hosts"]}
        query = {"endpoints": ",".join(model.url(ip_of[m], port) for m in sorted(recorded)), **cluster["etcd"]["admin"]}
        answer = _member_list(client.cmd(sorted(recorded), "ksha_etcd.members", kwarg=query, tgt_type="list",
                                         timeout=timeout + 10))  # fmt: skip
        if answer is None:
            # then as the members themselves would ask: their modules may predate ksha's (a first
            # run after an upgrade, before the preflight syncs them), or the pillar may change the
            # port or the certificates' directory the running members still use
            answer = _member_list(client.cmd(sorted(recorded), "ksha_etcd.members", tgt_type="list",
                                             timeout=timeout + 10))  # fmt: skip
    live["current"] = [m["name"] or m["id"] for m in answer["members"]] if answer else None
    return live


def _member_list(listed):
    """The first answer of ``ksha_etcd.members`` that holds the member list, or None."""
    return next((v for v in (listed or {}).values() if isinstance(v, dict) and v.get("result")), None)


def _show(result, text):
    """``output=data``: the dict; otherwise the text (salt-run prints it as it is)."""
    return result if text is None else text


def plan(until=None, output="table", timeout=5):
    """The steps ``orch.ksha`` takes, in order: id, target, what runs there, pillar, why.

    Computed from the cluster model (``ksha.model``) and the live etcd membership by
    ``ksha.plan.build``; ``orch/ksha.sls`` renders exactly these steps. With an invalid
    pillar the plan is the preflight's validation alone (which fails and says why).

    until
        the last phase: preflight, common, lb, etcd, control-plane (default: all).
    output
        ``table`` (default): one block per step, for a person; ``data``: the plan as a dict.

    CLI Example:

    .. code-block:: bash

        salt-run ksha.plan
        salt-run ksha.plan until=lb
    """
    cluster = _model()
    live = None
    phases = planner.phases_until(until)
    if cluster is not None and "lb" in phases:
        live = _live(cluster, timeout, etcd="etcd" in phases and bool(cluster["etcd"]["names"]))
    result = planner.build(cluster, live, until)
    return _show(result, None if output == "data" else planner.describe(result["steps"]))


def etcd_restore_plan(source=None, snapshot=None, output="table", timeout=10):
    """The steps ``orch.ksha.etcd_restore`` takes: which snapshot, restored on which member
    (the newest on any etcd member unless ``source`` and ``snapshot`` are given), then every
    other member joins it.

    CLI Example:

    .. code-block:: bash

        salt-run ksha.etcd_restore_plan
    """
    import salt.client  # pylint: disable=import-outside-toplevel

    cluster = _model()
    if cluster is None:
        result = planner.restore(None, {})
        return _show(result, None if output == "data" else result["problem"])
    members = cluster["etcd"]["names"]
    found = {}
    if members:
        with salt.client.get_local_client(__opts__["conf_file"]) as client:
            found = client.cmd(
                [source] if source in members else members, "ksha_etcd.snapshots", tgt_type="list", timeout=timeout
            )
    result = planner.restore(cluster, found, source, snapshot)
    text = result["problem"] or planner.describe(result["steps"])
    return _show(result, None if output == "data" else text)


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
        if roster_out:  # before anything is read or written
            importer.check_output_path(roster_out, "roster_out", [hosts_ini, common_yaml])
        ksha, roster, notes = importer.import_files(hosts_ini, common_yaml, roster_kept=bool(roster_out))
        if roster_out:
            importer.write_roster(roster, roster_out)
    except importer.InputError as exc:  # OutputError too
        __context__["retcode"] = 2
        return {"error": str(exc), "retcode": 2}
    for note in notes:
        log.warning("NOTE %s", note)
    if roster_out:
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


def _etcd_view(members, ip_of, server_cert, timeout):
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
        days = client.cmd(members, "ksha_etcd.cert_days_left", [server_cert], tgt_type="list", timeout=timeout)
    member_at = {str(ip): name for name, ip in ip_of.items()}
    by_member = {}
    for row in rows.get("endpoints", []) if isinstance(rows, dict) else []:
        address = row["endpoint"].split("//", 1)[-1].rsplit(":", 1)[0].strip("[]")
        if address in member_at:
            by_member[member_at[address]] = row
    return healths[best], by_member, {m: d for m, d in days.items() if isinstance(d, int)}


def _control_plane_view(masters, timeout):
    """In one publish to the masters: ({master: {certificate id: days left or None}} of the
    Kubernetes certificates each answering master holds (``ksha.certificates_days_left``),
    {master: whether its apiserver answers /readyz (``ksha.apiserver_ready``), None: unknown},
    the leader Leases as the first master whose kubectl read them saw them (``ksha.leader_leases``:
    ``{"from": master, "leases": ...}``, or ``{"error": ...}`` when none could), the nodes as the
    first master whose kubectl read them saw them (``ksha.api_nodes``: ``{"from": master, "nodes":
    ...}`` or ``{"error": ...}``))."""
    if not masters:
        return {}, {}, {}, {"error": "no master"}
    functions = ["ksha.certificates_days_left", "ksha.apiserver_ready", "ksha.leader_leases", "ksha.api_nodes"]
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        out = client.cmd(masters, functions, [[], [], [], []], tgt_type="list", timeout=timeout)
    answers = {m: r for m, r in out.items() if isinstance(r, dict)}
    days = {
        m: r.get(functions[0], {}).get("kubernetes") or {}
        for m, r in answers.items()
        if isinstance(r.get(functions[0]), dict)
    }
    ready = {m: r[functions[1]].get("ok") for m, r in answers.items() if isinstance(r.get(functions[1]), dict)}
    return (
        days,
        ready,
        _first_read(masters, answers, functions[2], "leases"),
        _first_read(masters, answers, functions[3], "nodes"),
    )


def _first_read(masters, answers, function, key):
    """What the first master whose kubectl read it answered to `function`: ``{"from": master, key:
    its answer}``, else ``{"error": ...}`` (the last master's kubectl error, or none answered)."""
    found = {"error": "no master answered"}
    for master in masters:
        seen = answers.get(master, {}).get(function)
        if isinstance(seen, dict) and "error" not in seen:
            return {"from": master, key: seen}
        if isinstance(seen, dict):
            found = {"error": f"kubectl on {master}: {seen['error']}"}
    return found


def lease_rows(view):
    """The leader Leases' lines of ``ksha.status`` and whether any is a problem (pure): which
    master holds the controller-manager's and the scheduler's Lease (``_control_plane_view``'s
    third part). A Lease missing, released or not renewed within its duration (no leader), or
    Leases no master could read, is a problem."""
    if "error" in view:
        return [f"  leader leases: unknown ({view['error']})"], True
    lines, problem = [], False
    for lease, row in view["leases"].items():
        if row is None:
            lines.append(f"  {lease} leader: NONE (no Lease in kube-system: does it run on any master?)")
            problem = True
        elif row["expired"]:
            last = f"last renewed {row['renewed_s_ago']} s ago by {row['holder']}" if row["holder"] else "released"
            lines.append(f"  {lease} leader: NONE (its Lease was {last}; lease duration {row['duration_s']} s)")
            problem = True
        else:
            who = row["master"] or f"{row['holder']} (not a master's hostname)"
            lines.append(
                f"  {lease} leader: {who} (renewed {row['renewed_s_ago']} s ago, {row['transitions']} transitions)"
            )
    return lines, problem


def node_rows(expected, view):
    """The nodes' lines of ``ksha.status`` and whether any is a problem (pure): per node of the
    model (`expected`), its Ready condition, roles, kubelet version and last heartbeat as the API
    sees them (``_control_plane_view``'s fourth part); a node the API does not have, one not
    Ready, or nodes no master could read, is a problem. A node in the API that the model does
    not have is listed too (a former node not removed yet)."""
    if "error" in view:
        return [f"  nodes: unknown ({view['error']})"], bool(expected)
    seen = view["nodes"]
    lines, problem = [], False
    for node in [*expected, *sorted(n for n in seen if n not in expected)]:
        row = seen.get(node)
        if row is None:
            lines.append(f"  {node}: NOT IN THE API (its kubelet has not registered it)")
            problem = True
            continue
        state = {"True": "Ready", "False": "NOT READY", "Unknown": "NOT READY (no heartbeat)"}.get(
            row["ready"], "NOT READY"
        )
        why = "" if row["ready"] == "True" else f" ({row['reason']})" if row.get("reason") else ""
        beat = f"{row['heartbeat_s_ago']} s ago" if row["heartbeat_s_ago"] is not None else "never"
        extra = "" if node in expected else "  <-- not in the pillar"
        lines.append(
            f"  {node}: {state}{why}, roles {','.join(row['roles']) or '<none>'}, kubelet {row['kubelet'] or '?'}, "
            f"heartbeat {beat}{extra}"
        )
        problem = problem or (node in expected and row["ready"] != "True")
    return lines, problem


def control_plane_rows(masters, days, renew_at, ready=None):
    """The control plane's lines of ``ksha.status`` and whether any is a problem (pure): per
    master, whether its apiserver is ready (``ready``: {master: True, False or None}) and its
    certificate with the fewest days left; a master that did not answer, one whose apiserver is
    not ready (or did not say), or one whose certificate is missing or unreadable, is a problem;
    one at or under `renew_at` days (``ksha:kubernetes:pki:days_remaining``) is due for renewal
    at its next highstate."""
    lines, problem = [], False
    ready = ready or {}
    for master in masters:
        certs = days.get(master)
        if certs is None:
            lines.append(f"  {master}: did not answer")
            problem = True
            continue
        apiserver = {True: "apiserver ready", False: "apiserver NOT READY"}.get(ready.get(master), "apiserver unknown")
        problem = problem or ready.get(master) is not True
        unknown = sorted(c for c, d in certs.items() if d is None)
        if unknown or not certs:
            lines.append(f"  {master}: {apiserver}, certificates missing or unreadable: {', '.join(unknown) or 'all'}")
            problem = True
            continue
        soonest = min(certs, key=lambda c: (certs[c], c))
        due = "  <-- renewed at the next highstate" if certs[soonest] <= renew_at else ""
        lines.append(
            f"  {master}: {apiserver}, {len(certs)} certificates, soonest {soonest} {certs[soonest]} days left{due}"
        )
    return lines, problem


def _qingcloud_view(conf, names, timeout=None):
    """{name: {"lb": item, "listeners": [...]} or None} of ksha's QingCloud load balancers
    ``names``, as the API describes them, and an error (a QingCloudError's message: it names
    the key, never shows it) or None."""
    try:
        conn = qingcloud_client.connect(conf["loadbalancer"]["qingcloud"], timeout=timeout)
        found = {}
        for name in names:
            lb = qingcloud_client.found(conn, name)
            found[name] = lb and {"lb": lb, "listeners": qingcloud_client.listeners(conn, lb["loadbalancer_id"])}
        return found, None
    except qingcloud_client.QingCloudError as err:
        return {}, str(err)


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
        is down, the VIP is not on exactly one host, etcd is unhealthy, a master did not
        answer, lacks one of its Kubernetes certificates or its apiserver is not ready, the
        controller-manager or scheduler has no leader, a node of the pillar is not Ready in the
        API, or in qingcloud mode one of ksha's load balancers is missing, not active or not
        applied, or QingCloud's API does not answer).

    CLI Example:

    .. code-block:: bash

        salt-run ksha.status
    """
    ksha, findings, _ = _fleet()
    findings += inventory.validate(ksha) if ksha is not None else []
    if inventory.has_errors(findings):
        __context__["retcode"] = 1
        return "\n".join(str(f) for f in findings)
    cluster = model.build(ksha)
    names = [h["name"] for h in cluster["hosts"]]
    answered = _ping(names, timeout)
    rows = [
        {
            "host": h["name"],
            "address": h["ip"],
            "roles": h["groups"],
            "minion": "up" if answered.get(h["name"]) is True else "DOWN",
        }
        for h in cluster["hosts"]
    ]
    api, lb = cluster["api"], cluster["loadbalancer"]
    keepalived = lb["mode"] == "keepalived"
    holders, backends = _lb_view(lb["hosts"], timeout) if keepalived else ([], [])
    for row in rows:
        row["vip"] = row["host"] in holders
    members = cluster["etcd"]["names"]
    ip_of = {r["host"]: r["address"] for r in rows}
    etcd_health, etcd_rows, cert_days = _etcd_view(members, ip_of, cluster["etcd"]["server_cert"], timeout)
    masters = cluster["kubernetes"]["masters"]
    kube_days, apiservers_ready, leases, api_nodes = _control_plane_view(masters, timeout)
    qc_lines, qc_problem, qc_found, qc_error = [], False, {}, None
    if lb["mode"] == "qingcloud":
        wanted = [x["name"] for x in lb["qingcloud"]["present"]["loadbalancers"]]
        qc_found, qc_error = _qingcloud_view(model.settings(ksha), wanted, timeout)
        qc_lines, qc_problem = (
            qingcloud.status_rows(wanted, qc_found) if qc_error is None else ([f"  {qc_error}"], True)
        )
    renew_at = cluster["config"]["kubernetes"]["pki"]["days_remaining"]
    control_plane, control_plane_problem = control_plane_rows(masters, kube_days, renew_at, apiservers_ready)
    if masters:
        leader_lines, leases_problem = lease_rows(leases)
        control_plane += leader_lines
        control_plane_problem = control_plane_problem or leases_problem
    expected_nodes = cluster["nodes"]["hosts"]
    node_lines, nodes_problem = node_rows(expected_nodes, api_nodes) if masters else ([], False)
    unhealthy = (
        nodes_problem
        or any(row["minion"] == "DOWN" for row in rows)
        or (keepalived and len(holders) != 1)
        or bool(members and not (etcd_health or {}).get("healthy"))
        or control_plane_problem
        or qc_problem
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
            "control_plane": {"cert_days_left": kube_days, "apiserver_ready": apiservers_ready, "leases": leases},
            "nodes": api_nodes,
            "qingcloud": qc_found,
            "qingcloud_error": qc_error,
        }
    header = ("HOST", "ADDRESS", "ROLES", "MINION", "VIP")
    table = [header] + [
        (r["host"], str(r["address"]), ",".join(r["roles"]) or "-", r["minion"], "held" if r["vip"] else "")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.append("")
    lines.append(f"API endpoint: {api['domain']}:{api['port']} -> {api['address']} (loadbalancer mode: {api['mode']})")
    if keepalived:
        who = ", ".join(holders) or "NOBODY"
        warn = "" if len(holders) == 1 else "  <-- expected exactly one holder"
        lines.append(f"VIP {api['address']} held by: {who}{warn}")
        states = ", ".join(
            f"{b['name']} {b['state']}" + ("" if b["state"].startswith("UP") else f" ({b['check']} {b['last_check']})")
            for b in backends
        )
        lines.append(f"apiserver backends (haproxy on {holders[0] if holders else '-'}): {states or 'none seen'}")
    if qc_lines:
        lines.append("QingCloud load balancers (as QingCloud reports them):")
        lines += qc_lines
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
    if masters:
        lines.append("")
        lines.append("control plane (apiservers, certificates, leader Leases):")
        lines += control_plane
    if node_lines:
        lines.append("")
        lines.append("nodes (as the API sees them):")
        lines += node_lines
    return "\n".join(lines)
