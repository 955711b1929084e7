"""ksha_etcd: the etcd cluster through ``etcdctl`` (API v3, JSON output), over mTLS.

Every call authenticates with the admin client certificate ksha issues to etcd
members (``ksha:etcd:pki``) and talks to the members' client URLs of the cluster
model (``ksha.model``), unless ``endpoints`` is given.

Member IDs are returned as etcdctl takes them: lower-case hex strings.
"""

import json
import os
import time

__virtualname__ = "ksha_etcd"

ETCDCTL = "etcdctl"


def __virtual__():
    return __virtualname__


class EtcdError(Exception):
    """etcdctl failed; the message is its stderr (or why it could not run)."""


def settings():
    """The etcd settings this module uses, from the cluster model (``ksha.model``): ports,
    the admin certificate, the data and backup directories, members and their URLs.

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_etcd.settings
    """
    model = __salt__["ksha.model"]()
    conf, etcd = model["config"]["etcd"], model["etcd"]
    return {
        "client_port": conf["client_port"],
        "peer_port": conf["peer_port"],
        **etcd["admin"],
        "data_dir": conf["data_dir"],
        "backup_dir": conf["backup"]["dir"],
        "members": etcd["names"],
        "client_urls": etcd["client_urls"],
        "peer_urls": etcd["peer_urls"],
        "local_client_url": etcd["local_client_url"],
        "unit_restart_s": etcd["stop_timeout_s"] + etcd["start_timeout_s"],
        "bootstrap_grain": etcd["bootstrap_grain"],
    }


def _endpoints(endpoints):
    if endpoints:
        return endpoints if isinstance(endpoints, str) else ",".join(endpoints)
    return ",".join(settings()["client_urls"].values())


def _etcdctl(*args, endpoints=None, json_out=True, timeout=5, cert=None, key=None, cacert=None):
    # the model (this minion's pillar) only for what the caller did not give
    given = endpoints and cacert and (cert is False or (cert and key))
    conf = {} if given else settings()
    cmd = [
        ETCDCTL,
        f"--endpoints={_endpoints(endpoints)}",
        f"--cacert={cacert or conf['cacert']}",
        f"--command-timeout={timeout}s",
        "--dial-timeout=2s",
    ]
    if cert is not False:
        cmd += [f"--cert={cert or conf['cert']}", f"--key={key or conf['key']}"]
    if json_out:
        cmd.append("--write-out=json")
    cmd += [str(a) for a in args]
    out = __salt__["cmd.run_all"](
        cmd, python_shell=False, env={"ETCDCTL_API": "3"}, output_loglevel="quiet", timeout=timeout + 10
    )
    if out["retcode"] != 0:
        raise EtcdError((out.get("stderr") or out.get("stdout") or f"etcdctl exited {out['retcode']}").strip())
    if not json_out:
        return out["stdout"]
    try:
        return json.loads(out["stdout"])
    except ValueError as exc:
        raise EtcdError(f"etcdctl printed no JSON: {out['stdout'][:200]!r}") from exc


def _hex(member_id):
    return format(int(member_id), "x")


def _fail(exc):
    return {"result": False, "comment": str(exc)}


def members(endpoints=None, cacert=None, cert=None, key=None):
    """The member list: name, hex ID, peer and client URLs, learner flag; and the cluster ID.

    ``endpoints`` and the admin certificate's ``cacert``, ``cert`` and ``key`` (paths) default to
    the model's; given all four, the pillar is not read (``salt-run ksha.plan`` asks so, before
    the minions' pillars are refreshed).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_etcd.members
    """
    try:
        out = _etcdctl("member", "list", endpoints=endpoints, cacert=cacert, cert=cert, key=key)
    except EtcdError as exc:
        return _fail(exc)
    return {
        "result": True,
        "cluster_id": _hex(out["header"]["cluster_id"]),
        "members": [
            {
                "id": _hex(m["ID"]),
                "name": m.get("name", ""),  # empty: added, never started
                "peer_urls": m.get("peerURLs") or [],
                "client_urls": m.get("clientURLs") or [],
                "learner": bool(m.get("isLearner")),
            }
            for m in out.get("members") or []
        ],
    }


def status(endpoints=None):
    """Per endpoint: member ID, leader, raft term and index, db size, learner flag, version.

    Endpoints that do not answer are listed with their error.

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_etcd.status
    """
    urls = _endpoints(endpoints).split(",")
    rows = []
    for url in urls:
        try:
            [entry] = _etcdctl("endpoint", "status", endpoints=url)
        except (EtcdError, ValueError) as exc:
            rows.append({"endpoint": url, "ok": False, "error": str(exc)})
            continue
        st = entry["Status"]
        rows.append(
            {
                "endpoint": url,
                "ok": True,
                "member_id": _hex(st["header"]["member_id"]),
                "cluster_id": _hex(st["header"]["cluster_id"]),
                "leader": _hex(st["leader"]),
                "is_leader": st["leader"] == st["header"]["member_id"],
                "raft_term": st.get("raftTerm"),
                "raft_index": st.get("raftIndex"),
                "raft_applied_index": st.get("raftAppliedIndex"),
                "db_size": st.get("dbSize"),
                "learner": bool(st.get("isLearner")),
                "version": st.get("version"),
            }
        )
    return {"result": all(r["ok"] for r in rows), "endpoints": rows}


def health(endpoints=None):
    """The cluster's health: every member answers, there is one leader, and one cluster ID.

    Returns ``healthy`` (bool), ``members`` (name -> healthy), ``leader`` (name or None),
    ``cluster_id`` and ``problems`` (a sentence each).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_etcd.health
    """
    listed = members(endpoints=endpoints)
    if not listed["result"]:
        return {
            "healthy": False,
            "members": {},
            "leader": None,
            "problems": [f"no member answers: {listed['comment']}"],
        }
    urls = {}
    problems = []
    for m in listed["members"]:
        label = m["name"] or m["id"]
        if not m["client_urls"]:
            urls[label] = None
            problems.append(f"member {label} was added but has never started (no client URL)")
            continue
        urls[label] = m["client_urls"][0]
    state = {}
    leaders = set()
    clusters = set()
    for label, url in urls.items():
        if url is None:
            state[label] = False
            continue
        st = status(endpoints=url)["endpoints"][0]
        state[label] = st["ok"]
        if st["ok"]:
            leaders.add(st["leader"])
            clusters.add(st["cluster_id"])
        else:
            problems.append(f"member {label} ({url}) does not answer: {st['error']}")
    by_id = {m["id"]: m["name"] or m["id"] for m in listed["members"]}
    if len(leaders) != 1 or "0" in leaders:
        problems.append(f"no single leader (members see: {', '.join(sorted(leaders)) or 'none'})")
    if len(clusters) > 1:
        problems.append(f"members report different cluster IDs: {', '.join(sorted(clusters))}")
    leader = by_id.get(next(iter(leaders))) if len(leaders) == 1 else None
    return {
        "healthy": not problems,
        "members": state,
        "learners": [m["name"] or m["id"] for m in listed["members"] if m["learner"]],
        "leader": leader,
        "cluster_id": listed["cluster_id"],
        "problems": problems,
    }


def member_add(name, peer_url, learner=True, endpoints=None):
    """Add a member (as a learner by default, which does not count for quorum until promoted).

    Returns the new member's hex ID and the ``initial-cluster`` string it must start with.

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_etcd.member_add node1 https://10.0.0.4:2380
    """
    args = ["member", "add", name, f"--peer-urls={peer_url}"] + (["--learner"] if learner else [])
    try:
        out = _etcdctl(*args, endpoints=endpoints)
    except EtcdError as exc:
        return _fail(exc)
    new_id = _hex(out["member"]["ID"])
    cluster = []
    for m in out.get("members") or []:
        member_name = m.get("name") or (name if _hex(m["ID"]) == new_id else "")
        for url in m.get("peerURLs") or []:
            cluster.append(f"{member_name}={url}")
    return {"result": True, "id": new_id, "initial_cluster": ",".join(cluster)}


def promote(member_id, endpoints=None):
    """Promote a learner to a voting member (fails until the learner has caught up).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_etcd.promote 8e9e05c52164694d
    """
    return _member_change("promote", member_id, endpoints, "promoted")


def member_remove(member_id, endpoints=None):
    """Remove a member by hex ID.

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_etcd.member_remove 8e9e05c52164694d
    """
    return _member_change("remove", member_id, endpoints, "removed")


def _member_change(verb, member_id, endpoints, done):
    try:
        _etcdctl("member", verb, member_id, endpoints=endpoints, json_out=False)
    except EtcdError as exc:
        return _fail(exc)
    return {"result": True, "comment": f"member {member_id} {done}"}


def move_leader(member_id, endpoints=None):
    """Hand leadership to ``member_id`` (asked of the current leader).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_etcd.move_leader 8e9e05c52164694d
    """
    rows = status(endpoints=endpoints)["endpoints"]
    leader = next((r["endpoint"] for r in rows if r.get("is_leader")), None)
    if leader is None:
        return {"result": False, "comment": "no endpoint is the leader"}
    try:
        _etcdctl("move-leader", member_id, endpoints=leader, json_out=False)
    except EtcdError as exc:
        return _fail(exc)
    return {"result": True, "comment": f"leadership moved to {member_id}"}


def snapshot_save(path=None, endpoints=None):
    """Save a snapshot from one healthy member to ``path`` (default: the backup dir, timestamped).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_etcd.snapshot_save
    """
    conf = settings()
    if path is None:
        path = os.path.join(conf["backup_dir"], time.strftime("etcd-%Y%m%dT%H%M%S.db", time.gmtime()))
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    urls = _endpoints(endpoints).split(",")
    errors = []
    for url in urls:
        try:
            _etcdctl("snapshot", "save", path, endpoints=url, json_out=False, timeout=60)
        except EtcdError as exc:
            errors.append(f"{url}: {exc}")
            continue
        os.chmod(path, 0o600)
        return {"result": True, "path": path, "endpoint": url, "size": os.path.getsize(path)}
    return {"result": False, "comment": "no member gave a snapshot: " + "; ".join(errors)}


def snapshot_restore(path, name, initial_cluster, peer_url, data_dir=None, token=None):
    """Restore ``path`` into a new data dir for member ``name`` of a new cluster.

    The data dir must not exist (move the old one aside first).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_etcd.snapshot_restore /var/backups/kube_etcd/etcd-x.db master1 \\
            master1=https://10.0.0.1:2380 https://10.0.0.1:2380
    """
    conf = settings()
    data_dir = data_dir or conf["data_dir"]
    if os.path.exists(data_dir):
        return {"result": False, "comment": f"{data_dir} exists; move it aside before restoring"}
    args = [
        "snapshot", "restore", path, f"--name={name}", f"--initial-cluster={initial_cluster}",
        f"--initial-advertise-peer-urls={peer_url}", f"--data-dir={data_dir}",
    ]  # fmt: skip
    if token:
        args.append(f"--initial-cluster-token={token}")
    out = __salt__["cmd.run_all"](
        [ETCDCTL, *args], python_shell=False, env={"ETCDCTL_API": "3"}, output_loglevel="quiet"
    )
    if out["retcode"] != 0:
        return {"result": False, "comment": (out.get("stderr") or out.get("stdout") or "").strip()}
    return {"result": True, "data_dir": data_dir, "comment": f"restored {path} into {data_dir}"}


def snapshots(directory=None):
    """The snapshot files in the backup dir, newest first (path, size, mtime).

    CLI Example:

    .. code-block:: bash

        salt -G 'roles:etcd' ksha_etcd.snapshots
    """
    directory = directory or settings()["backup_dir"]
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".db")]
    except OSError:
        return []
    rows = []
    for name in names:
        path = os.path.join(directory, name)
        st = os.stat(path)
        rows.append({"path": path, "size": st.st_size, "mtime": st.st_mtime})
    return sorted(rows, key=lambda r: r["mtime"], reverse=True)


def defrag(endpoints=None):
    """Defragment the members' databases (one endpoint at a time).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_etcd.defrag
    """
    done, errors = [], []
    for url in _endpoints(endpoints).split(","):
        try:
            _etcdctl("defrag", endpoints=url, json_out=False, timeout=60)
            done.append(url)
        except EtcdError as exc:
            errors.append(f"{url}: {exc}")
    return {"result": not errors, "defragmented": done, "errors": errors}


def cert_days_left(path):
    """Days until the certificate at ``path`` expires (None if it cannot be read).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha_etcd.cert_days_left /etc/etcd/pki/server.crt
    """
    return __salt__["ksha.cert_days_left"](path)
