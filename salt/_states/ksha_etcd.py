"""ksha_etcd states: the etcd cluster's health and its members' restarts.

They use the ``ksha_etcd`` execution module (etcdctl over mTLS with the admin
certificate ksha issues to every member).
"""

import os
import shlex
import shutil
import time

__virtualname__ = "ksha_etcd"

RESTART_LOCK = "ksha-etcd-rolling-restart"
RESTART_PROGRESS = "/run/ksha-etcd-restart.progress"


def __virtual__():
    if "ksha_etcd.health" not in __salt__:
        return (False, "ksha_etcd state: the ksha_etcd execution module is not synced (saltutil.sync_all)")
    return __virtualname__


def _ret(name):
    return {"name": name, "result": False, "changes": {}, "comment": ""}


def _journal_tail(unit="etcd", lines=15):
    return __salt__["ksha.journal_tail"](unit, lines)


def cluster_healthy(name, timeout=120, record=False):
    """Wait until the etcd cluster is healthy: every member answers, one leader, one cluster ID.

    name
        A label for the check (the cluster name).
    timeout
        Seconds to wait. On failure the comment has the problems and this host's etcd
        log tail.
    record
        Set the grain ``ksha_model:etcd:bootstrap_grain`` (``ksha_etcd_cluster_id``) on this minion once healthy: the
        orchestration's record that this cluster was bootstrapped (it then never
        bootstraps it again).

    Read-only except for ``record``; under ``test=True`` it checks once.
    """
    ret = _ret(name)
    deadline = time.monotonic() + (0 if __opts__.get("test") else float(timeout))
    while True:
        health = __salt__["ksha_etcd.health"]()
        if health["healthy"] or time.monotonic() >= deadline:
            break
        time.sleep(1)
    if not health["healthy"]:
        waited = "" if __opts__.get("test") else f" after {timeout} s"
        tail = _journal_tail()
        ret["comment"] = (
            f"etcd cluster not healthy{waited}: " + "; ".join(health["problems"])
            + (f"\netcd log on this host (last lines):\n{tail}" if tail else "")
        )  # fmt: skip
        ret["result"] = None if __opts__.get("test") else False
        return ret
    members = ", ".join(sorted(health["members"]))
    ret["comment"] = f"etcd cluster {health['cluster_id']} healthy: members {members}, leader {health['leader']}"
    ret["result"] = True
    grain = __salt__["ksha_etcd.settings"]()["bootstrap_grain"] if record else None
    if record and __grains__.get(grain) != health["cluster_id"]:
        if __opts__.get("test"):
            ret["result"] = None
            ret["comment"] += f"; would record grain {grain}={health['cluster_id']}"
        else:
            __salt__["grains.setval"](grain, health["cluster_id"])
            ret["changes"] = {grain: {"old": __grains__.get(grain), "new": health["cluster_id"]}}
    return ret


def _restart_budget(members, timeout, unit_restart_s):
    """Seconds a restart may take, lock queue included: each of the `members` may restart
    before this one, each waiting at most `timeout` for the others and for itself, plus the
    unit's own stop and start timeouts."""
    return max(1, int(members)) * (2 * int(timeout) + int(unit_restart_s) + 10)


def _restart_failure(name, out, progress, budget, journal=""):
    """The comment of a failed rolling restart (pure): which step it reached and why it failed,
    from the command's result (Salt's timeout leaves only "Timed out" in stdout), its progress
    file and the unit's journal."""
    steps = [line for line in (progress or "").splitlines() if line.strip()]
    reached = steps[-1].split(" ", 1)[-1] if steps else "before it started"
    stdout, stderr = (out.get("stdout") or "").strip(), (out.get("stderr") or "").strip()
    if out.get("retcode") in (124, 137) or ("Timed out" in stdout and not stderr):
        why = f"timed out after {budget} s (the budget for the lock queue and this restart)"
    else:
        why = f"exit {out.get('retcode')}"
    lines = [f"rolling restart of {name} failed, {why}, at step: {reached}"]
    if stderr:
        lines.append(f"stderr: {stderr[-800:]}")
    if stdout and "Timed out" not in stdout:
        lines.append(f"stdout: {stdout[-400:]}")
    if steps:
        lines.append("steps: " + "; ".join(steps))
    if journal and journal.strip():
        lines.append(f"{name} log (last lines):\n{journal.strip()}")
    return "\n".join(lines)


def _read(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def running_with_current_config(name, watched, binary=None, timeout=120, progress=None):
    """Restart ``name`` (etcd) when one of ``watched`` changed after its process started, or
    when its process does not run ``binary`` as it is now (another release, an upgraded package).

    The restart holds an etcd lock (``ksha-etcd-rolling-restart``) and first waits
    until every other member is healthy; it releases the lock when this member is
    healthy again. So highstates running on all members at once restart them one
    at a time, never two at once. A stopped service is left to ``service.running``.
    """
    ret = _ret(name)
    found = __salt__["ksha.changed_since_start"](name, watched, binary)
    newer = found["changed"]
    if not newer:
        ret.update(result=True, comment=found["comment"])
        return ret
    if __opts__.get("test"):
        ret.update(result=None, comment=f"{name} would be restarted, one member at a time: changed {', '.join(newer)}")
        return ret
    conf = __salt__["ksha_etcd.settings"]()
    me = __grains__["id"]
    # The others to wait for are the members etcd lists as started, not the pillar's: a member
    # in pillar that has not joined yet (3 -> 5: node2 while node1 joins) would never answer.
    listed = __salt__["ksha_etcd.members"]()
    if listed.get("result"):
        others = [m["client_urls"][0] for m in listed["members"] if m["name"] != me and m["client_urls"]]
    else:
        others = [url for member, url in conf["client_urls"].items() if member != me]
    mine = conf["client_urls"][me] if me in conf["client_urls"] else conf["local_client_url"]
    progress = progress or RESTART_PROGRESS
    # Every step is logged to a progress file as it starts: when the command fails or Salt's
    # timeout kills it (then Salt keeps no output), the comment still says where it stopped.
    script = f"""
step() {{ echo "$(date -u +%H:%M:%S) $*" >> {shlex.quote(progress)}; }}
wait_healthy() {{
  end=$(( $(date +%s) + {int(timeout)} ))
  until out=$(etcdctl --endpoints="$1" --dial-timeout=1s --command-timeout=2s endpoint health 2>&1); do
    if [ "$(date +%s)" -ge "$end" ]; then
      echo "etcd at $1 not healthy after {int(timeout)} s: $out" >&2; step "failed: $1 not healthy"; return 1
    fi
    sleep 1
  done
}}
step "holding the {RESTART_LOCK} lock"
{"step 'waiting for the other members to be healthy'" if others else ""}
{"wait_healthy " + shlex.quote(",".join(others)) + " || exit 1" if others else ""}
step "restarting {name}"
systemctl daemon-reload
systemctl restart {shlex.quote(name)} || {{ step "failed: systemctl restart {name}"; exit 1; }}
step "waiting for this member to be healthy"
wait_healthy {shlex.quote(mine)} || exit 1
step "done"
"""
    env = {
        "ETCDCTL_API": "3",
        "ETCDCTL_CACERT": conf["cacert"],
        "ETCDCTL_CERT": conf["cert"],
        "ETCDCTL_KEY": conf["key"],
    }
    # The lock may be queued behind every other member's restart: the budget covers the whole
    # queue. `timeout` ends the whole process group (etcdctl and the script it runs) when it
    # is spent, so no script goes on restarting etcd after its lock's lease ran out.
    budget = _restart_budget(len(conf["client_urls"]), timeout, conf["unit_restart_s"])
    cmd = [
        "timeout",
        "-k",
        "10",
        str(budget),
        "etcdctl",
        f"--endpoints={','.join(conf['client_urls'].values())}",
        "lock",
        RESTART_LOCK,
        "--",
        "/bin/sh",
        "-c",
        script,
    ]
    with open(progress, "w", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%H:%M:%S', time.gmtime())} waiting for the {RESTART_LOCK} lock\n")
    out = __salt__["cmd.run_all"](cmd, python_shell=False, env=env, timeout=budget + 30)
    if out["retcode"] != 0:
        ret["comment"] = _restart_failure(name, out, _read(progress), budget, _journal_tail(name, 10))
        return ret
    ret.update(
        result=True,
        changes={"restarted": name, "because": newer},
        comment=f"{name} restarted under the {RESTART_LOCK} lock, with every other member healthy first",
    )
    return ret


def _quorum(voters):
    return voters // 2 + 1


# etcd's strict reconfiguration check (on by default) refuses a member add or remove with this
# error while the member that answers has not been connected to every voting member for the
# whole of its health interval (5 s): right after a member joined, was promoted or restarted.
# Nothing was proposed then, and the same call goes through once those connections are 5 s old.
RECONFIG_NOT_YET = "etcdserver: unhealthy cluster"


def _reconfigured(change, timeout, *args, clock=time.monotonic, sleep=time.sleep, **kwargs):
    """``change(*args, **kwargs)`` (a ``ksha_etcd`` member add or remove: ``{result, comment, ...}``), called
    again every second while etcd refuses it with ``RECONFIG_NOT_YET``, for up to ``timeout``
    seconds; any other failure, or success, is returned at once. A refusal that outlasts the
    timeout says how long it was tried."""
    deadline = clock() + timeout
    while True:
        out = change(*args, **kwargs)
        if out["result"] or RECONFIG_NOT_YET not in out["comment"]:
            return out
        if clock() >= deadline:
            return {**out, "comment": f"{out['comment']} (etcd still refused it after {timeout} s of retries)"}
        sleep(1)


def _unhealthy_others(health, exclude):
    return [m for m, ok in health.get("members", {}).items() if not ok and m not in exclude]


# What each step of a membership change does, for the operator (test=True and the comments).
STEP_TEXT = {
    "remove_stale": "remove the stale member {arg} (this host has no data)",
    "add_learner": "add as a learner",
    "start": "start etcd",
    "promote": "promote once caught up",
    "move_leader": "move leadership to {arg} first",
    "remove": "remove member {arg}",
}


def _describe(steps):
    """The steps of a decision as one line: "snapshot, add as a learner, ..."."""
    return ", ".join(["take a snapshot"] + [STEP_TEXT[kind].format(arg=arg) for kind, arg in steps])


def _join_decision(name, peer_url, members, health, has_data):
    """What joining ``name`` (this host) to the running cluster takes (pure).

    members
        the member list (``ksha_etcd.members``' ``members``) as the other members see it.
    health
        ``ksha_etcd.health`` of the other members.
    has_data
        whether this host's data dir holds a member.

    Returns ``{"action": "none" | "refuse" | "join", "comment", "steps", "member_id"}``;
    ``steps`` are ``(kind, argument)`` pairs in order (kinds: ``STEP_TEXT``), each preceded by
    a snapshot. The paths: already a started voting member (none); another member unhealthy
    or no leader (refuse); listed but this host lost its data (a wiped member: remove the
    stale entry, refused unless the rest keep quorum, then add again); listed as a learner or
    added but never started (start, promote); not listed (add as a learner, start, promote).
    """
    entry = next((m for m in members if peer_url in m["peer_urls"]), None)
    if entry and entry["name"] == name and not entry["learner"] and has_data:
        return {"action": "none", "comment": f"{name} is a voting member ({entry['id']})", "steps": []}
    exclude = {name, entry["id"]} if entry else {name}
    if _unhealthy_others(health, exclude) or health["leader"] is None:
        return {
            "action": "refuse",
            "comment": (
                f"refused: the cluster is not healthy ({'; '.join(health['problems'])}); "
                "membership is only changed on a healthy cluster"
            ),
            "steps": [],
        }
    stale = entry is not None and not has_data and not entry["learner"] and bool(entry["name"])
    steps = []
    if stale:
        voters = len([m for m in members if not m["learner"]])
        healthy_after = len([m for m, ok in health["members"].items() if ok and m not in exclude])
        if healthy_after < _quorum(voters - 1):
            return {
                "action": "refuse",
                "comment": f"refused: removing the wiped member {name} would leave {healthy_after} of {voters - 1}",
                "steps": [],
            }
        steps.append(("remove_stale", entry["id"]))
    if entry is None or stale:
        steps.append(("add_learner", None))
    steps += [("start", None), ("promote", None)]
    return {
        "action": "join",
        "comment": f"{name} would join: {_describe(steps)}",
        "steps": steps,
        "member_id": None if entry is None or stale else entry["id"],
    }


def _leave_decision(name, members, health):
    """What removing member ``name`` takes (pure); run on a member that stays.

    Returns ``{"action": "none" | "refuse" | "leave", "comment", "steps"}``. Refused when the
    healthy members left would be below the new quorum, or another member is unhealthy.
    Leadership moves away from the member first when it leads.
    """
    entry = next((m for m in members if m["name"] == name), None)
    if entry is None:
        return {"action": "none", "comment": f"{name} is not an etcd member", "steps": []}
    voters = len([m for m in members if not m["learner"]])
    remaining = voters - (0 if entry["learner"] else 1)
    healthy_after = len([m for m, ok in health["members"].items() if ok and m not in (name, entry["id"])])
    if remaining < 1 or healthy_after < _quorum(remaining):
        return {
            "action": "refuse",
            "comment": (
                f"refused: without {name} the cluster would have {healthy_after} healthy of {remaining} members, "
                f"below its quorum of {_quorum(max(remaining, 1))}"
            ),
            "steps": [],
        }
    if _unhealthy_others(health, {name, entry["id"]}):
        return {
            "action": "refuse",
            "comment": f"refused: the cluster is not healthy ({'; '.join(health['problems'])})",
            "steps": [],
        }
    steps = []
    if health.get("leader") == name:
        target = next(m["id"] for m in members if m["name"] != name and not m["learner"])
        steps.append(("move_leader", target))
    steps.append(("remove", entry["id"]))
    return {"action": "leave", "comment": f"{name} ({entry['id']}) would leave: {_describe(steps)}", "steps": steps}


def _before_the_steps(ret, decision, action, endpoints):
    """What every membership change does before its steps: the decision's comment; nothing to
    do or a refusal ends here, so does test=True (result None: the comment says what it would
    do); otherwise a snapshot first. The changes so far, or None when it ended here."""
    ret["comment"] = decision["comment"]
    if decision["action"] != action:
        ret["result"] = decision["action"] == "none"
        return None
    if __opts__.get("test"):
        ret["result"] = None
        return None
    snapshot = _snapshot_first(ret, endpoints)
    if snapshot is None:
        return None
    ret["changes"] = {"snapshot": snapshot}
    return ret["changes"]


def _snapshot_first(ret, endpoints):
    snap = __salt__["ksha_etcd.snapshot_save"](endpoints=endpoints)
    if not snap["result"]:
        ret["comment"] = f"refused: the snapshot taken before every membership change failed: {snap['comment']}"
        return None
    return snap["path"]


def member_present(name, peer_url, initial_cluster_file, timeout=120):
    """This host (etcd member ``name``) is a voting member of the running cluster.

    Run on the joining host. The decision is ``_join_decision`` (the same for ``test=True``
    and the real run); every step checks what is already done, so a rerun after a failure
    half way continues where it stopped. Refuses, changing nothing, when another member is
    unhealthy or the cluster would lose quorum. etcd's refusal of a member add right after
    another membership change (a member joined a moment ago) is retried for up to ``timeout``
    seconds (``_reconfigured``).
    """
    ret = _ret(name)
    conf = __salt__["ksha_etcd.settings"]()
    others = [url for member, url in conf["client_urls"].items() if member != name]
    if not others:
        ret["comment"] = f"{name} is the only etcd member in pillar; nothing to join"
        return ret
    listed = __salt__["ksha_etcd.members"](endpoints=others)
    if not listed["result"]:
        ret["comment"] = f"refused: no other etcd member answers ({listed['comment']})"
        return ret
    has_data = os.path.isdir(os.path.join(conf["data_dir"], "member"))
    health = __salt__["ksha_etcd.health"](endpoints=others)
    decision = _join_decision(name, peer_url, listed["members"], health, has_data)
    changes = _before_the_steps(ret, decision, "join", others)
    if changes is None:
        return ret
    snapshot = changes["snapshot"]
    member_id = decision["member_id"]
    cluster = ",".join(f"{m['name'] or name}={url}" for m in listed["members"] for url in m["peer_urls"])
    for kind, arg in decision["steps"]:
        if kind == "remove_stale":
            removed = _reconfigured(__salt__["ksha_etcd.member_remove"], timeout, arg, endpoints=others)
            if not removed["result"]:
                ret["comment"] = f"removing the stale member {arg} failed: {removed['comment']}"
                return ret
            changes["removed_stale"] = arg
        elif kind == "add_learner":
            added = _reconfigured(
                __salt__["ksha_etcd.member_add"], timeout, name, peer_url, learner=True, endpoints=others
            )
            if not added["result"]:
                ret["comment"] = f"member add failed: {added['comment']}"
                return ret
            member_id, cluster = added["id"], added["initial_cluster"]
            changes["added_learner"] = member_id
        elif kind == "start":
            with open(initial_cluster_file, "w", encoding="utf-8") as fh:
                fh.write(
                    "# Written by ksha_etcd.member_present when this member joined; read only while it has no data.\n"
                    f"ETCD_INITIAL_CLUSTER={cluster}\nETCD_INITIAL_CLUSTER_STATE=existing\n"
                )
            started = __salt__["cmd.run_all"](["systemctl", "start", "etcd"], python_shell=False, timeout=timeout)
            if started["retcode"] != 0:
                ret["comment"] = f"etcd did not start: {started.get('stderr', '').strip()}\n{_journal_tail()}"
                return ret
            changes["started"] = True
        elif kind == "promote":
            deadline = time.monotonic() + timeout
            while True:
                promoted = __salt__["ksha_etcd.promote"](member_id, endpoints=others)
                if promoted["result"] or "not a learner" in promoted["comment"]:
                    break
                if time.monotonic() > deadline:
                    ret["comment"] = f"learner {member_id} did not catch up in {timeout} s: {promoted['comment']}"
                    return ret
                time.sleep(1)
            changes["promoted"] = member_id
        else:
            raise ValueError(f"_join_decision gave an unknown step {kind!r}")
    ret.update(result=True, comment=f"{name} joined as {member_id} (snapshot {snapshot})")
    return ret


def member_absent(name, timeout=60):
    """etcd member ``name`` is not in the cluster. Run on a member that stays.

    The decision is ``_leave_decision`` (the same for ``test=True`` and the real run):
    refused, changing nothing, when another member is unhealthy or when the members left
    would not keep quorum. Takes a snapshot first and moves leadership away from the
    member first when it leads. etcd's refusal of a removal right after another membership
    change is retried for up to ``timeout`` seconds (``_reconfigured``).
    """
    ret = _ret(name)
    listed = __salt__["ksha_etcd.members"]()
    if not listed["result"]:
        ret["comment"] = f"refused: no etcd member answers ({listed['comment']})"
        return ret
    urls = [m["client_urls"][0] for m in listed["members"] if m["client_urls"] and m["name"] != name]
    health = __salt__["ksha_etcd.health"](endpoints=urls)
    decision = _leave_decision(name, listed["members"], health)
    changes = _before_the_steps(ret, decision, "leave", urls)
    if changes is None:
        return ret
    snapshot = changes["snapshot"]
    for kind, arg in decision["steps"]:
        if kind == "move_leader":
            moved = __salt__["ksha_etcd.move_leader"](arg)
            if not moved["result"]:
                ret["comment"] = f"moving leadership away from {name} failed: {moved['comment']}"
                return ret
            changes["leader_moved_to"] = arg
        elif kind == "remove":
            removed = _reconfigured(__salt__["ksha_etcd.member_remove"], timeout, arg, endpoints=urls)
            if not removed["result"]:
                ret["comment"] = f"member remove failed: {removed['comment']}"
                return ret
            changes["removed"] = arg
        else:
            raise ValueError(f"_leave_decision gave an unknown step {kind!r}")
    ret.update(result=True, comment=f"{name} removed (snapshot {snapshot})")
    return ret


def not_a_member(name):
    """Etcd member ``name`` (this host) is no longer in the cluster's member list.

    ksha.etcd.clean requires it before it stops etcd on a host that left ksha:groups:etcd,
    so a highstate run before orch.ksha removed the member cannot take a voting member away.
    """
    ret = _ret(name)
    conf = __salt__["ksha_etcd.settings"]()
    others = [url for member, url in conf["client_urls"].items() if member != name]
    if not others:
        ret["comment"] = "no etcd member in pillar to ask; not stopping etcd here"
        return ret
    listed = __salt__["ksha_etcd.members"](endpoints=others)
    if not listed["result"]:
        ret["comment"] = f"cannot tell whether {name} is still an etcd member ({listed['comment']}); not stopping it"
        return ret
    if any(m["name"] == name for m in listed["members"]):
        ret["comment"] = f"{name} is still an etcd member: run orch.ksha, which removes it first"
        return ret
    ret.update(result=True, comment=f"{name} is not an etcd member")
    return ret


def restored(name, member, peer_url, data_dir, user="etcd"):
    """This member's data dir holds snapshot ``name``, as the only member of a new cluster.

    The old data dir is moved aside (``<data_dir>.before-restore-<time>``), never deleted.
    Run by orch.ksha.etcd_restore on the member the snapshot is restored on, with etcd stopped;
    the other members then join it (ksha.etcd.join).
    """
    ret = _ret(name)
    if not os.path.isfile(name):
        ret["comment"] = f"snapshot {name} does not exist on this host"
        return ret
    if __opts__.get("test"):
        ret.update(result=None, comment=f"would move {data_dir} aside and restore {name} into it as {member}")
        return ret
    changes = {}
    if os.path.exists(data_dir):
        aside = f"{data_dir}.before-restore-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
        shutil.move(data_dir, aside)  # a copy where rename cannot cross filesystems (e.g. overlayfs)
        changes["moved_aside"] = aside
    out = __salt__["ksha_etcd.snapshot_restore"](
        name, member, f"{member}={peer_url}", peer_url, data_dir=data_dir, token=f"ksha-restored-{int(time.time())}"
    )
    if not out["result"]:
        ret.update(changes=changes, comment=f"restore failed: {out['comment']}")
        return ret
    __salt__["cmd.run_all"](["chown", "-R", f"{user}:", data_dir], python_shell=False)
    os.chmod(data_dir, 0o700)
    changes["restored"] = name
    ret.update(result=True, changes=changes, comment=f"{name} restored into {data_dir} as the only member {member}")
    return ret
