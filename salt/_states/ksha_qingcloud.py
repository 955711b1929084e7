"""QingCloud load balancers kept by ksha (ksha:loadbalancer:mode qingcloud), through qingcloud-sdk.

``loadbalancers_present`` describes first, then calls only what is missing or different, as
``ksha.qingcloud.plan`` and ``rules_plan`` (pure, table-tested) decide: the load balancer
(created, then waited for until active), its listeners, its backends (the missing added, the
stale removed), the security group's rules for the LB ports; then ``UpdateLoadBalancers`` /
``ApplySecurityGroup`` when something changed or was never applied, waiting on the job.
``test=True`` lists the API actions it would call and calls none of them. A call QingCloud
answers busy is retried, a few times, backing off; any other error, or a job that fails, fails
the state with QingCloud's code and message and the job's ID (``ksha.qingcloud_client``).

Where it runs: in the orchestration on the Salt master (docs/ARCHITECTURE.md, "QingCloud load
balancers"), so the API key is read in one place: the master's pillar
(``ksha:loadbalancer:qingcloud:access_key_id``/``secret_access_key``) or the file
``credentials_file`` names, on the master. The key is never in the state's arguments, its
output, its comments or the log.
"""

try:
    from ksha import qingcloud
    from ksha import qingcloud_client as client
    from ksha.qingcloud_client import QingCloudError

    HAS_KSHA = True
except ImportError:  # pragma: no cover
    HAS_KSHA = False

__virtualname__ = "ksha_qingcloud"

NOTHING_TO_DELETE = (
    "none of ksha's load balancers to delete (after a switch away from qingcloud mode, the zone and key of "
    "ksha:loadbalancer:qingcloud may go now: while they are set, every orch.ksha asks QingCloud)"
)


def __virtual__():
    if not HAS_KSHA:
        return False, "ksha_qingcloud: the 'ksha' Python package is not importable"
    if client.APIConnection is None:
        return (
            False,
            "ksha_qingcloud: qingcloud-sdk is not installed in the Salt master's Python (pip install qingcloud-sdk)",
        )
    return __virtualname__


def _settings(connection=None):
    """ksha:loadbalancer:qingcloud's settings for the client: ``connection`` (the model's: zone,
    api, credentials_file, defaults merged; the plan passes it), with the key from this
    pillar when no ``credentials_file`` holds it; without ``connection``, this pillar's section
    as it is. The orchestration's pillar is compiled for the master's own minion ID (``<id>_master``):
    a key in the pillar reaches these states only when the pillar top gives ``ksha`` to it too."""
    mine = ((__pillar__.get("ksha") or {}).get("loadbalancer") or {}).get("qingcloud") or {}
    if connection is None:
        return mine
    settings = dict(connection)
    if not settings.get("credentials_file"):
        if not mine.get("access_key_id") or not mine.get("secret_access_key"):
            raise QingCloudError(
                "ksha:loadbalancer:qingcloud: no API key in the pillar the orchestration compiles for "
                f"{__opts__.get('id')}: give it the ksha pillar in the pillar top (as '*' does), or set credentials_file"
            )
        settings.update(access_key_id=mine["access_key_id"], secret_access_key=mine["secret_access_key"])
    return settings


def _carry_out(conn, lb_id, plan, timeout, done):
    """The listener and backend calls of `plan`, then the update; each action called is appended
    to `done` as it is made (a failure later leaves what was done in the state's changes)."""
    if plan["delete_listeners"]:
        client.call(conn, "delete_loadbalancer_listeners", plan["delete_listeners"])
        done.append("DeleteLoadBalancerListeners")
    for listener_id, changes in plan["modify_listeners"]:
        client.call(conn, "modify_loadbalancer_listener_attributes", listener_id, **changes)
        done.append("ModifyLoadBalancerListenerAttributes")
    if plan["add_listeners"]:
        client.call(conn, "add_listeners_to_loadbalancer", lb_id, plan["add_listeners"])
        done.append("AddLoadBalancerListeners")
    if plan["delete_backends"]:
        client.call(conn, "delete_loadbalancer_backends", plan["delete_backends"])
        done.append("DeleteLoadBalancerBackends")
    if plan["add_backends"]:
        by_port = {x["listener_port"]: x["loadbalancer_listener_id"] for x in client.listeners(conn, lb_id)}
        for port, backends in plan["add_backends"]:
            client.call(conn, "add_backends_to_listener", by_port[port], backends)
            done.append("AddLoadBalancerBackends")
    if plan["update"]:
        job = client.call(conn, "update_loadbalancers", [lb_id])["job_id"]
        done.append("UpdateLoadBalancers")
        client.wait(conn, job, "UpdateLoadBalancers", timeout)


def _instances(conn, lbs):
    """The load balancers with every backend's instance (found by the host's IP in the hosts'
    VxNet where the pillar names none); a host without one, or with two, fails, naming it."""
    if all(b["resource_id"] for lb in lbs for x in lb["listeners"] for b in x["backends"]):
        return lbs
    described = []
    while True:  # every page: QingCloud answers at most 100 a call
        page = client.call(conn, "describe_instances", status=["pending", "running", "stopped"], verbose=0,
                     offset=len(described), limit=100)  # fmt: skip
        described += page["instance_set"]
        if not page["instance_set"] or len(described) >= page.get("total_count", 0):
            break
    vxnet = next(lb["vxnet"] for lb in lbs if lb["vxnet"])
    by_ip, ambiguous = qingcloud.instances_by_ip(described, vxnet)
    twice = sorted({b["host"] for lb in lbs for x in lb["listeners"] for b in x["backends"]
                    if not b["resource_id"] and b["ip"] in ambiguous})  # fmt: skip
    if twice:
        raise QingCloudError(
            f"more than one instance in {vxnet} has the ip of {', '.join(twice)}: set "
            "ksha:hosts[].qingcloud_instance_id for each"
        )
    filled, missing = qingcloud.with_instances(lbs, by_ip)
    if missing:
        raise QingCloudError(
            f"no QingCloud instance in {vxnet} has the ip of {', '.join(missing)}: set "
            "ksha:hosts[].qingcloud_instance_id for each, or check the hosts' ip against their instances' private IPs"
        )
    return filled


def loadbalancers_present(
    name, loadbalancers, rules=None, security_group=None, rule_names=(), job_timeout_s=600, connection=None
):
    """The QingCloud load balancers ``loadbalancers`` (``ksha.qingcloud.wanted``, from the cluster
    model) exist as described, applied, and the security group ``security_group`` lets ``rules``
    (``ksha.qingcloud.wanted_rules``) in.

    name
        A label (the orchestration step's).
    loadbalancers
        The wanted load balancers: name, vxnet, private_ip, eips, listeners and their backends.
    rules
        The security group rules the LB ports need (none without a security group of ksha's).
    rule_names
        The names ksha gives its rules (``ksha.qingcloud.rule_names``): only rules of these names
        are ever removed from the group.
    job_timeout_s
        How long to wait for each QingCloud job.
    connection
        The model's zone, api and credentials_file (``_settings``).
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    test = __opts__["test"]
    try:
        conn = client.connect(_settings(connection))
        lbs = _instances(conn, loadbalancers)
        would, comments = {}, []
        for want in lbs:
            found = client.found(conn, want["name"])
            plan = qingcloud.plan(want, found, client.listeners(conn, found["loadbalancer_id"]) if found else [])
            if plan["refuse"]:
                raise QingCloudError(plan["refuse"])
            if test:
                calls = qingcloud.calls(plan)
                if plan["create"]:  # then its listeners, backends and the update, once it is active
                    calls += ["AddLoadBalancerListeners", "AddLoadBalancerBackends", "UpdateLoadBalancers"]
                if calls:
                    would[want["name"]] = calls
                continue
            done = []
            if plan["create"]:
                made = client.call(conn, "create_loadbalancer", **plan["create"])
                ret["changes"][want["name"]] = {"id": made["loadbalancer_id"], "calls": done}
                done.append("CreateLoadBalancer")
                client.wait(conn, made["job_id"], "CreateLoadBalancer", job_timeout_s)
                found = client.found(conn, want["name"])
                plan = qingcloud.plan(want, found, [])
            ret["changes"][want["name"]] = {"id": found["loadbalancer_id"], "calls": done}
            _carry_out(conn, found["loadbalancer_id"], plan, job_timeout_s, done)
            if done:
                comments.append(f"{want['name']} ({found['loadbalancer_id']}): {', '.join(done)}")
            else:
                del ret["changes"][want["name"]]
        if security_group and rules:
            group = client.security_group(conn, security_group)
            found_rules = client.call(conn, "describe_security_group_rules", security_group, limit=100)[
                "security_group_rule_set"
            ]
            plan = qingcloud.rules_plan(rules, found_rules, group.get("is_applied", 1), list(rule_names))
            calls = (["DeleteSecurityGroupRules"] * bool(plan["delete"]) + ["AddSecurityGroupRules"] * bool(plan["add"])
                     + ["ApplySecurityGroup"] * plan["apply"])  # fmt: skip
            if test and calls:
                would[security_group] = calls
            elif calls:
                done = []
                ret["changes"][security_group] = {"calls": done}
                if plan["delete"]:
                    client.call(conn, "delete_security_group_rules", plan["delete"])
                    done.append("DeleteSecurityGroupRules")
                if plan["add"]:
                    client.call(conn, "add_security_group_rules", security_group, plan["add"])
                    done.append("AddSecurityGroupRules")
                job = client.call(conn, "apply_security_group", security_group)["job_id"]
                done.append("ApplySecurityGroup")
                client.wait(conn, job, "ApplySecurityGroup", job_timeout_s)
                comments.append(f"{security_group}: {', '.join(done)}")
    except QingCloudError as err:
        # what was called before the failure stays in the changes (they happened)
        ret.update(result=False, comment=str(err))
        if test:
            ret["changes"] = {}
        return ret
    if test:
        ret["result"] = None if would else True
        ret["changes"] = {k: {"would call": v} for k, v in would.items()}
        ret["comment"] = (
            "; ".join(f"{k}: would call {', '.join(v)}" for k, v in would.items())
            or "the load balancers are as wanted and applied"
        )
        return ret
    ret["comment"] = "; ".join(comments) or "the load balancers are as wanted and applied"
    return ret


def _doomed(conn, loadbalancers, address):
    """{name: ID} of ksha's load balancers ``loadbalancers`` that exist, to delete; one that
    ``ksha.qingcloud.deletion_refusal`` refuses raises, naming it (nothing is deleted)."""
    doomed = {}
    for lb_name in loadbalancers:
        found = client.found(conn, lb_name)
        if found is None:
            continue
        why = qingcloud.deletion_refusal(
            found, client.listeners(conn, found["loadbalancer_id"]), list(loadbalancers), address
        )
        if why:
            raise QingCloudError(why)
        doomed[lb_name] = found["loadbalancer_id"]
    return doomed


def loadbalancers_absent(
    name, loadbalancers, security_group=None, rule_names=(), address=None, job_timeout_s=600, connection=None
):
    """ksha's load balancers ``loadbalancers`` (their names) do not exist, and no rule named one of ``rule_names`` is
    left in ``security_group`` (a switch away from qingcloud mode; the console's load balancer
    once ``eip`` is unset). The arguments are ``ksha.qingcloud.absent``'s, from the model.

    A load balancer at ``address`` (ksha:loadbalancer:address), or with a listener ksha did not
    make, is refused, naming it (``ksha.qingcloud.deletion_refusal``), and nothing is deleted.
    ``test=True`` lists the calls.
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    test = __opts__["test"]
    try:
        conn = client.connect(_settings(connection))
        doomed = _doomed(conn, loadbalancers, address)
        rules_plan = None
        if security_group and rule_names:
            group = client.security_group(conn, security_group)
            found_rules = client.call(conn, "describe_security_group_rules", security_group, limit=100)[
                "security_group_rule_set"
            ]
            rules_plan = qingcloud.rules_plan([], found_rules, group.get("is_applied", 1), list(rule_names))
            if not rules_plan["delete"]:
                rules_plan = None  # ksha's rules are gone: the group's own state is the operator's
        if test:
            would = {lb_name: {"would call": ["DeleteLoadBalancers"], "id": lb_id} for lb_name, lb_id in doomed.items()}
            if rules_plan:
                would[security_group] = {"would call": ["DeleteSecurityGroupRules", "ApplySecurityGroup"]}
            ret["changes"] = would
            ret["result"] = None if would else True
            ret["comment"] = (
                "; ".join(f"{k}: would call {', '.join(v['would call'])}" for k, v in would.items())
                or NOTHING_TO_DELETE
            )
            return ret
        if doomed:
            job = client.call(conn, "delete_loadbalancers", list(doomed.values()))["job_id"]
            ret["changes"]["deleted"] = dict(doomed)
            client.wait(conn, job, "DeleteLoadBalancers", job_timeout_s)
        if rules_plan:
            client.call(conn, "delete_security_group_rules", rules_plan["delete"])
            ret["changes"][security_group] = {"calls": ["DeleteSecurityGroupRules"]}
            job = client.call(conn, "apply_security_group", security_group)["job_id"]
            ret["changes"][security_group]["calls"].append("ApplySecurityGroup")
            client.wait(conn, job, "ApplySecurityGroup", job_timeout_s)
    except QingCloudError as err:
        ret.update(result=False, comment=str(err))
        if test:
            ret["changes"] = {}
        return ret
    deleted = ", ".join(f"{k} ({v})" for k, v in (ret["changes"].get("deleted") or {}).items())
    ret["comment"] = (
        "; ".join(
            x for x in (f"deleted {deleted}" if deleted else "", "ksha's rules removed" if rules_plan else "") if x
        )
        or NOTHING_TO_DELETE
    )
    return ret


def api_answers(name, unwanted=(), address=None, connection=None):
    """QingCloud's API answers with ksha's key (a signed DescribeLoadBalancers): the orchestration's
    preflight, before any host is touched, so that a wrong key or endpoint stops the run there,
    naming the pillar key; and ksha's load balancers the run would delete (``unwanted``, the LB
    phase's ``loadbalancers_absent``) may be deleted: one it would refuse (at ``address``, or
    carrying a listener ksha did not make) fails the run here, not after the hosts changed.
    Read-only: it runs under ``test=True`` too.

    name
        A label (the orchestration step's).
    unwanted, address
        ``ksha.qingcloud.absent``'s ``loadbalancers`` and ``address``.
    """
    try:
        qc = _settings(connection)
        conn = client.connect(qc)
        client.call(conn, "describe_loadbalancers", verbose=0, limit=1)
        doomed = _doomed(conn, unwanted, address) if unwanted else {}
    except QingCloudError as err:
        return {"name": name, "result": False, "changes": {}, "comment": str(err)}
    comment = f"QingCloud's API at {conn.host}:{conn.port} answers ksha's key in zone {qc.get('zone')}"
    if doomed:
        comment += "; the LB phase deletes " + ", ".join(f"{k} ({v})" for k, v in doomed.items())
    return {"name": name, "result": True, "changes": {}, "comment": comment}
