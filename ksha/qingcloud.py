"""QingCloud load balancers (ksha:loadbalancer:mode qingcloud): what ksha wants, and the API calls
that get there from what QingCloud describes. Pure: no I/O; the state module
``ksha_qingcloud`` describes, calls this, and carries the plan out through qingcloud-sdk.

The seed's walkthrough makes two load balancers by hand: an internal one in the hosts' VxNet,
at the LB address, with a TCP listener on the API port to every master, and (with an EIP) an
external one with an HTTP listener on the console port to every node. ``wanted`` describes
both from the cluster model's settings; ``plan`` compares one with what the API describes and
says which calls make it so:

- a load balancer that does not exist is created (and waited for until active);
- one that exists with another VxNet, address or EIP is refused, naming the key: QingCloud
  cannot move a load balancer, and ksha does not delete one that carries traffic on its own;
- a listener missing is added; one with another protocol or port removed and added again; one
  whose balance mode or health check differs is modified in place; one ksha does not want
  (ksha's name prefix, another port) is removed;
- backends: the missing are added, the stale removed (matched by instance and port);
- ``UpdateLoadBalancers`` when anything changed or the load balancer is not applied
  (``is_applied`` 0: a change made before, by ksha or by hand, that never took effect).
"""

from __future__ import annotations

from typing import Any

# listener fields QingCloud changes in place (ModifyLoadBalancerListenerAttributes)
MODIFIABLE = ("balance_mode", "healthy_check_method", "healthy_check_option")
# listener fields that make another listener (removed, then added again)
IDENTITY = ("listener_port", "listener_protocol", "backend_protocol")


def name_prefix(conf: dict) -> str:
    return conf["loadbalancer"]["qingcloud"]["name_prefix"] or f"ksha-{conf['cluster_name']}"


def lb_names(conf: dict) -> dict[str, str]:
    """The names of ksha's two load balancers (and of their listeners and rules): what ksha
    creates, keeps and, once unwanted, deletes (QingCloud has no tag ksha could rely on for it)."""
    prefix = name_prefix(conf)
    return {"apiserver": f"{prefix}-apiserver", "console": f"{prefix}-console"}


def unwanted(conf: dict) -> list[str]:
    """ksha's load balancers the model does not want (``loadbalancers_absent`` deletes those it
    finds): both when ksha:loadbalancer:mode is not qingcloud, the console's without an EIP."""
    names = lb_names(conf)
    if conf["loadbalancer"]["mode"] != "qingcloud":
        return [names["apiserver"], names["console"]]
    return [] if conf["loadbalancer"]["qingcloud"]["eip"] else [names["console"]]


def absent(conf: dict) -> dict:
    """What ``loadbalancers_absent`` is given (computed here, once): the load balancers to delete
    (``unwanted``; not ``names``, which Salt's state compiler takes for its own), the rule names to remove from the security group (all of ksha's on a switch
    away from qingcloud mode; none while in it: ``wanted_rules`` keeps those), the group, and
    ``loadbalancer.address`` (a load balancer there still carries the API: never deleted)."""
    lb = conf["loadbalancer"]
    qc = lb["qingcloud"]
    away = lb["mode"] != "qingcloud"
    return {
        "loadbalancers": unwanted(conf),
        "security_group": qc["security_group"],
        "rule_names": rule_names(conf) if away and qc["security_group"] else [],
        "address": lb.get("address"),
    }


def deletion_refusal(
    found: dict, found_listeners: list[dict], names: list[str], address: str | None = None
) -> str | None:
    """Why ksha does not delete the load balancer ``found`` of its name, or None: one at
    ``address`` (ksha:loadbalancer:address: say, external mode pointed at the load balancer ksha
    made) still carries the API; one with a listener not named one of ksha's ``names``
    (``lb_names``) carries someone else's traffic too."""
    where = [*(found.get("private_ips") or []), *(e.get("eip_addr") for e in found.get("eips") or [])]
    if address and address in where:
        return (
            f"{found['loadbalancer_id']} ({found['loadbalancer_name']}) is at ksha:loadbalancer:address ({address}), "
            "which the cluster still uses: ksha does not delete it; set ksha:loadbalancer:address to the new "
            "load balancer's address, or keep ksha:loadbalancer:mode qingcloud (in external mode, to keep using "
            "it as an LB ksha no longer keeps: remove ksha:loadbalancer:qingcloud's zone and key)"
        )
    others = sorted(
        x.get("loadbalancer_listener_name") or x["loadbalancer_listener_id"]
        for x in found_listeners
        if x.get("loadbalancer_listener_name") not in names
    )
    if not others:
        return None
    return (
        f"{found['loadbalancer_id']} ({found['loadbalancer_name']}) is no longer wanted, but ksha does not delete it: "
        f"it has listener(s) ksha did not make ({', '.join(others)}); remove them, or delete the load balancer "
        "in QingCloud yourself"
    )


def wanted(conf: dict, ip_of: dict[str, str], groups: dict[str, list[str]]) -> list[dict]:
    """The load balancers of ksha:loadbalancer:qingcloud: the internal one (the API), and the
    external one (the console) when an EIP is set. Each backend names its host; its
    ``resource_id`` is the host's ksha:hosts[].qingcloud_instance_id, or None until looked up by
    the host's IP (``with_instances``)."""
    lb = conf["loadbalancer"]
    qc = lb["qingcloud"]
    names = lb_names(conf)
    instance_of = {h["name"]: h.get("qingcloud_instance_id") for h in conf.get("hosts") or [] if isinstance(h, dict)}

    def backends(hosts: list[str], port: int) -> list[dict]:
        return [{"host": h, "ip": ip_of[h], "resource_id": instance_of.get(h), "port": port} for h in hosts]

    common = {"security_group": qc["security_group"], "loadbalancer_type": qc["loadbalancer_type"]}
    internal = {
        "name": names["apiserver"],
        "key": "ksha:loadbalancer:qingcloud:vxnet",
        "vxnet": qc["vxnet"],
        "private_ip": lb["address"],
        "eips": [],
        **common,
        "listeners": [
            {
                "loadbalancer_listener_name": names["apiserver"],
                "listener_port": lb["port"],
                "listener_protocol": "tcp",
                "backend_protocol": "tcp",
                "balance_mode": qc["balance_mode"],
                "healthy_check_method": "tcp",
                "healthy_check_option": qc["healthy_check_option"],
                "backends": backends(groups["kube-master"], conf["kubernetes"]["apiserver_port"]),
            }
        ],
    }
    if not qc["eip"]:
        return [internal]
    console_port = conf["kubesphere"]["console_port"]
    external = {
        "name": names["console"],
        "key": "ksha:loadbalancer:qingcloud:eip",
        "vxnet": None,
        "private_ip": None,
        "eips": [qc["eip"]],
        **common,
        "listeners": [
            {
                "loadbalancer_listener_name": names["console"],
                "listener_port": lb["console"]["port"],
                "listener_protocol": "http",
                "backend_protocol": "http",
                "balance_mode": qc["balance_mode"],
                "healthy_check_method": qc["console_check"],
                "healthy_check_option": qc["healthy_check_option"],
                "backends": backends(groups["k8s-cluster"], console_port),
            }
        ],
    }
    return [internal, external]


def instances_by_ip(described: list[dict], vxnet: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """({private IP: instance ID}, {IP: [instance IDs]} of the IPs more than one instance has) of
    DescribeInstances' ``instance_set``, counting only addresses in the hosts' VxNet `vxnet`
    (QingCloud has no filter by IP: every instance is listed and matched here; other VxNets,
    VPCs, may reuse the same addresses)."""
    seen: dict[str, list[str]] = {}
    for instance in described:
        for nic in instance.get("vxnets") or []:
            if nic.get("vxnet_id") == vxnet and nic.get("private_ip"):
                seen.setdefault(nic["private_ip"], []).append(instance["instance_id"])
    return {ip: ids[0] for ip, ids in seen.items() if len(ids) == 1}, {
        ip: ids for ip, ids in seen.items() if len(ids) > 1
    }


def with_instances(lbs: list[dict], by_ip: dict[str, str]) -> tuple[list[dict], list[str]]:
    """The load balancers with every backend's ``resource_id`` filled from the hosts' IPs where
    the pillar gave none, and the hosts found neither way (a finding each)."""
    missing: list[str] = []
    out = []
    for lb in lbs:
        listeners = []
        for listener in lb["listeners"]:
            backends = []
            for b in listener["backends"]:
                resource = b["resource_id"] or by_ip.get(b["ip"])
                if resource is None and b["host"] not in missing:
                    missing.append(b["host"])
                backends.append({**b, "resource_id": resource})
            listeners.append({**listener, "backends": backends})
        out.append({**lb, "listeners": listeners})
    return out, missing


def create_params(lb: dict) -> dict:
    """CreateLoadBalancer's parameters (qingcloud-sdk's create_loadbalancer arguments)."""
    params: dict[str, Any] = {"loadbalancer_name": lb["name"], "loadbalancer_type": lb["loadbalancer_type"]}
    if lb["eips"]:
        params["eips"] = list(lb["eips"])
    else:
        params.update(vxnet=lb["vxnet"], private_ip=lb["private_ip"])
    if lb["security_group"]:
        params["security_group"] = lb["security_group"]
    return params


def refusal(want: dict, found: dict) -> str | None:
    """Why an existing load balancer of ksha's name cannot be made the wanted one in place, or None."""
    eips = sorted(e["eip_id"] for e in found.get("eips") or [])
    where = f"{found['loadbalancer_id']} ({want['name']})"
    if eips != sorted(want["eips"]):
        return (
            f"{where} has EIP(s) {', '.join(eips) or 'none'}, not {', '.join(want['eips']) or 'none'}; set "
            "ksha:loadbalancer:qingcloud:eip to match, or delete that load balancer in QingCloud and run again"
        )
    if want["vxnet"]:
        vxnet = found.get("vxnet_id")  # DescribeLoadBalancers' item: vxnet_id and private_ips
        ips = found.get("private_ips") or []
        if vxnet != want["vxnet"]:
            return (
                f"{where} is in VxNet {vxnet or 'none'}, not {want['vxnet']}; set "
                "ksha:loadbalancer:qingcloud:vxnet to it, or delete that load balancer in QingCloud and run again"
            )
        if ips and want["private_ip"] not in ips:
            return (
                f"{where} has address {', '.join(ips)}, not "
                f"{want['private_ip']}; set ksha:loadbalancer:address to it, or delete that load balancer in "
                "QingCloud and run again"
            )
    return None


def listener_params(listener: dict) -> dict:
    return {k: v for k, v in listener.items() if k != "backends"}


def backend_params(backend: dict) -> dict:
    return {"resource_id": backend["resource_id"], "port": backend["port"], "weight": 1,
            "loadbalancer_backend_name": backend["host"]}  # fmt: skip


def plan(want: dict, found: dict | None, found_listeners: list[dict]) -> dict:
    """The calls that make the load balancer ``want`` (``wanted``, instances filled) of what the API
    describes: ``found`` (DescribeLoadBalancers' item of ksha's name, or None) and its listeners
    (DescribeLoadBalancerListeners verbose: each with its ``backends``). Returns
    {refuse: why or None, create: CreateLoadBalancer's params or None,
     delete_listeners: [listener id], modify_listeners: [(listener id, {field: value})],
     add_listeners: [listener params], delete_backends: [backend id],
     add_backends: [(listener port, [backend params])], update: bool}.
    A load balancer to create gets its listeners and backends by a second plan once it is
    active (their IDs do not exist before)."""
    out: dict[str, Any] = {"refuse": None, "create": None, "delete_listeners": [], "modify_listeners": [],
                           "add_listeners": [], "delete_backends": [], "add_backends": [], "update": False}  # fmt: skip
    if found is None:
        out["create"] = create_params(want)
        return out
    if why := refusal(want, found):
        out["refuse"] = why
        return out
    by_port = {int(x["listener_port"]): x for x in want["listeners"]}
    kept: dict[int, dict] = {}
    for listener in sorted(found_listeners, key=lambda x: int(x["listener_port"])):
        desired = by_port.get(int(listener["listener_port"]))
        if desired is None or any(str(listener.get(k)) != str(desired[k]) for k in IDENTITY):
            out["delete_listeners"].append(listener["loadbalancer_listener_id"])
            continue
        kept[int(listener["listener_port"])] = listener
        changed = {k: desired[k] for k in MODIFIABLE if str(listener.get(k)) != str(desired[k])}
        if changed:
            out["modify_listeners"].append((listener["loadbalancer_listener_id"], changed))
    for port, desired in sorted(by_port.items()):
        listener = kept.get(port)
        if listener is None:
            out["add_listeners"].append(listener_params(desired))
            if desired["backends"]:
                out["add_backends"].append((port, [backend_params(b) for b in desired["backends"]]))
            continue
        wanted_pairs = {(b["resource_id"], int(b["port"])) for b in desired["backends"]}
        have = {}
        for b in listener.get("backends") or []:
            pair = (b["resource_id"], int(b["port"]))
            if pair not in wanted_pairs or pair in have:
                out["delete_backends"].append(b["loadbalancer_backend_id"])
            else:
                have[pair] = b
        missing = [backend_params(b) for b in desired["backends"] if (b["resource_id"], int(b["port"])) not in have]
        if missing:
            out["add_backends"].append((port, missing))
    changes = ("delete_listeners", "modify_listeners", "add_listeners", "delete_backends", "add_backends")
    out["update"] = any(out[k] for k in changes) or not found.get("is_applied", 1)
    return out


def calls(p: dict) -> list[str]:
    """The plan as the API actions it calls, in order (what ``test=True`` shows)."""
    out = []
    if p["refuse"]:
        return out
    if p["create"]:
        return ["CreateLoadBalancer"]
    out += ["DeleteLoadBalancerListeners"] * bool(p["delete_listeners"])
    out += ["ModifyLoadBalancerListenerAttributes"] * len(p["modify_listeners"])
    out += ["AddLoadBalancerListeners"] * bool(p["add_listeners"])
    out += ["DeleteLoadBalancerBackends"] * bool(p["delete_backends"])
    out += ["AddLoadBalancerBackends"] * len(p["add_backends"])
    out += ["UpdateLoadBalancers"] * p["update"]
    return out


def wanted_rules(conf: dict) -> list[dict]:
    """The security group rules the load balancers' ports need (the seed's "firewall rules for
    both ports"): inbound TCP to the API port, and to the console port with an external LB.
    None without ksha:loadbalancer:qingcloud:security_group (QingCloud's default group is the
    operator's)."""
    lb = conf["loadbalancer"]
    qc = lb["qingcloud"]
    if not qc["security_group"]:
        return []
    prefix = name_prefix(conf)
    ports = [("apiserver", lb["port"])] + ([("console", lb["console"]["port"])] if qc["eip"] else [])
    return [
        {"security_group_rule_name": f"{prefix}-{what}", "protocol": "tcp", "priority": qc["rule_priority"],
         "action": "accept", "direction": 0, "val1": str(port), "val2": str(port), "val3": ""}
        for what, port in ports
    ]  # fmt: skip


RULE_MATCH = ("protocol", "action", "direction", "val1", "val2", "val3")


def rule_names(conf: dict) -> list[str]:
    """The names ksha gives its rules (whether wanted now or not): only these are ever removed."""
    return list(lb_names(conf).values())


def rules_plan(rules: list[dict], found: list[dict], is_applied: int, names: list[str]) -> dict:
    """The security group calls: {add: [rule params], delete: [rule id], apply: bool}. A wanted
    rule is there when a rule of the group lets the same traffic in, whatever its name; a rule
    named one of ksha's ``names`` (``rule_names``) that no wanted rule matches is deleted; the
    group is applied when anything changed or it is not applied (``is_applied`` 0)."""

    def key(rule: dict) -> tuple:
        return tuple(str(rule.get(k) if rule.get(k) is not None else "") for k in RULE_MATCH)

    present = {key(r) for r in found}
    wanted_keys = {key(r) for r in rules}
    add = [r for r in rules if key(r) not in present]
    delete = [
        r["security_group_rule_id"]
        for r in found
        if r.get("security_group_rule_name") in names and key(r) not in wanted_keys
    ]
    return {"add": add, "delete": delete, "apply": bool(add or delete) or not is_applied}


def status_rows(names: list[str], found: dict[str, dict | None]) -> tuple[list[str], bool]:
    """``ksha.status``'s lines for ksha's load balancers ``names`` (``lb_names`` the model wants)
    as QingCloud describes them, and whether that is a problem. ``found``: {name: None (no such
    load balancer) or {"lb": DescribeLoadBalancers' item, "listeners": DescribeLoadBalancerListeners
    verbose items (each with its ``backends`` and their ``status``: up, down, abnormal)}}.
    A problem: a load balancer missing, not active, or not applied (``is_applied`` 0: a change
    never took effect). A backend down is shown, as haproxy's are in keepalived mode, and is
    not one (the load balancer sends nothing to it)."""
    lines, problem = [], False
    for name in names:
        item = found.get(name)
        if item is None:
            lines.append(f"  {name}: MISSING (orch.ksha makes it)")
            problem = True
            continue
        lb = item["lb"]
        applied = "applied" if lb.get("is_applied", 1) else "NOT APPLIED (a change never took effect)"
        status = lb.get("status", "?")
        problem = problem or status != "active" or not lb.get("is_applied", 1)
        where = ", ".join([*(lb.get("private_ips") or []), *(e.get("eip_addr", "") for e in lb.get("eips") or [])])
        lines.append(
            f"  {name} {lb['loadbalancer_id']} at {where or '-'}: {status if status == 'active' else status.upper()}, {applied}"
        )
        for x in sorted(item["listeners"], key=lambda x: int(x["listener_port"])):
            backends = ", ".join(
                f"{b.get('loadbalancer_backend_name') or b['resource_id']} {b.get('status', '?')}"
                for b in sorted(x.get("backends") or [], key=lambda b: b.get("loadbalancer_backend_name") or "")
            )
            lines.append(f"    listener {x['listener_port']}/{x['listener_protocol']}: {backends or 'no backend'}")
    return lines, problem
