"""A local emulator of QingCloud's IaaS API, for the load balancer actions ksha calls (lab only).

What it is: a stand-in for https://api.qingcloud.com/iaas/, which cannot be reached from here.
It answers as QingCloud's API documents it (docs.qingcloud.com, "API 文档": the signature page,
the error codes, the load balancer, job, instance and security group actions) and as
qingcloud-sdk 1.2.16 calls it:

- **Every request is signed** (signature_version 1, HmacSHA256 or HmacSHA1): the string to sign
  is the method, the path and the parameters but ``signature``, sorted by name, each name and
  value URL-encoded (only ``A-Za-z0-9-_.~`` left as they are, uppercase hex, a space as %20).
  A request with an unknown access key or another signature gets ret_code 1200; a
  ``time_stamp`` more than 60 s away from this machine's clock, 1300. QingCloud's own worked
  example is reproduced in tests/unit/test_qingcloud_api.py.
- **Errors** come as QingCloud's do: HTTP 200 with ``{"ret_code": N, "message": ...}``: 1100 a
  bad or missing parameter, 1101 an unknown action, 1400 a resource in a state that cannot be
  changed, 2100 not found, 5000/5100 internal error/busy (retry later).
- **State is kept** (load balancers, listeners, backends, security group rules, jobs), and what
  QingCloud runs as a job runs as one here: CreateLoadBalancer, DeleteLoadBalancers,
  UpdateLoadBalancers and ApplySecurityGroup answer a ``job_id`` at once; the job is ``pending``,
  then ``working``, then ``successful`` (or ``failed``) after ``job_s`` seconds, and only then does
  its effect show (a created load balancer ``active``, an updated one ``is_applied`` 1).
  Listener and backend changes are immediate but leave the load balancer's ``is_applied`` 0
  until an UpdateLoadBalancers job ends, as QingCloud's do.
- **Backend health** is measured, not made up: a backend is ``up`` when its instance's private
  IP answers on the backend port (a TCP connect, or the listener's ``http|/path`` check), else
  ``down``.
- **Faults** can be injected (``inject``; over HTTP ``POST /_emulator/faults``): an action
  answering an error code a number of times (busy 5100, bad parameter 1100, ...), the next job
  of an action failing, or taking longer.
- **Every call is logged** (``calls``; ``GET /_emulator/calls``): action, parameters (the
  signature and access key left out), ret_code, so tests count the write calls.

- **What is applied** is kept apart from what is configured: a load balancer's listeners and
  backends as of its last successful UpdateLoadBalancers (as of its creation: none), which is
  what QingCloud's load balancer serves. ``on_applied`` is called with all of it whenever it
  changes; the lab's data plane (``qingcloud_dataplane``) makes a real haproxy serve it.

What it does not do: billing, quotas, EIP allocation, users, regions; zones other than the
configured one are refused (2100).
"""

from __future__ import annotations

import base64
import calendar
import copy
import hashlib
import hmac
import http.server
import ipaddress
import itertools
import json
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PATH = "/iaas/"
STALE_S = 60  # QingCloud: "time_stamp ... 超过 60 秒" is refused with 1300
ASYNC = ("CreateLoadBalancer", "DeleteLoadBalancers", "UpdateLoadBalancers", "ApplySecurityGroup")


class APIError(Exception):
    def __init__(self, ret_code: int, message: str):
        super().__init__(message)
        self.ret_code, self.message = ret_code, message


# --- the signature ---------------------------------------------------------------------------


def canonical_query(params: dict[str, Any]) -> str:
    """The parameters (``signature`` left out) as QingCloud signs them: sorted by name, each name
    and value URL-encoded with only ``A-Za-z0-9-_.~`` kept, joined ``name=value&...``."""
    pairs = sorted((k, str(v)) for k, v in params.items() if k != "signature")
    return "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in pairs)


def string_to_sign(method: str, path: str, params: dict[str, Any]) -> str:
    return f"{method}\n{path}\n{canonical_query(params)}"


def signature(secret: str, method: str, path: str, params: dict[str, Any]) -> str:
    """The base64 of the HMAC (the parameters' ``signature_method``: HmacSHA256 or HmacSHA1)."""
    digest = {"HmacSHA256": hashlib.sha256, "HmacSHA1": hashlib.sha1}[params.get("signature_method", "HmacSHA256")]
    mac = hmac.new(secret.encode(), string_to_sign(method, path, params).encode(), digest)
    return base64.b64encode(mac.digest()).decode()


def parse_time(text: str) -> float:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def check_request(method: str, path: str, params: dict[str, str], keys: dict[str, str], now: float) -> None:
    """Raise APIError unless the request is signed by a known key, in time, as QingCloud checks it."""
    for name in ("access_key_id", "signature", "time_stamp", "signature_version", "version"):
        if not params.get(name):
            raise APIError(1100, f"MissingParameter, [{name}] is required")
    if params.get("signature_method", "HmacSHA256") not in ("HmacSHA256", "HmacSHA1"):
        raise APIError(1100, "InvalidParameter, [signature_method] should be HmacSHA256 or HmacSHA1")
    if params["signature_version"] != "1" or params["version"] != "1":
        raise APIError(1100, "InvalidParameter, [signature_version] and [version] should be 1")
    secret = keys.get(params["access_key_id"])
    # base64 has no space: a '+' decoded as one by a form parser is put back (QingCloud's doc)
    given = params["signature"].replace(" ", "+")
    if secret is None or not hmac.compare_digest(given, signature(secret, method, path, params)):
        raise APIError(1200, "AuthFailure, signature not matched or access key not found")
    try:
        sent = parse_time(params["time_stamp"])
    except ValueError:
        raise APIError(1100, "InvalidParameter, [time_stamp] should be YYYY-MM-DDThh:mm:ssZ") from None
    if abs(now - sent) > STALE_S:
        raise APIError(1300, f"MessageExpired, [time_stamp] {params['time_stamp']} is more than {STALE_S} s off")


# --- parameters ------------------------------------------------------------------------------


def listed(params: dict[str, str], name: str) -> list[str]:
    """``name.1``, ``name.2``, ... (and a bare ``name``, as qingcloud-sdk sends a lone string)."""
    values = [params[name]] if name in params else []
    for n in itertools.count(1):
        if f"{name}.{n}" not in params:
            return values
        values.append(params[f"{name}.{n}"])


def listed_dicts(params: dict[str, str], name: str) -> list[dict[str, str]]:
    """``name.N.field`` -> [{field: value}], N from 1."""
    items: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == name and parts[1].isdigit():
            items.setdefault(int(parts[1]), {})[parts[2]] = value
    return [items[n] for n in sorted(items)]


def required(params: dict[str, str], name: str) -> str:
    if not params.get(name):
        raise APIError(1100, f"MissingParameter, [{name}] is required")
    return params[name]


def integer(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise APIError(1100, f"InvalidParameter, [{name}] should be an integer") from None
    if not low <= number <= high:
        raise APIError(1100, f"InvalidParameter, [{name}] should be between {low} and {high}")
    return number


def health_check(method: str) -> str:
    if method == "tcp" or (method.startswith("http|/") and method.count("|") in (1, 2)):
        return method
    raise APIError(1100, f"InvalidParameter, [healthy_check_method] {method!r} should be tcp or http|/path")


def health_option(option: str) -> str:
    parts = option.split("|")
    ranges = ((2, 60), (5, 300), (2, 10), (2, 10))
    if len(parts) != 4 or not all(
        p.isdigit() and lo <= int(p) <= hi for p, (lo, hi) in zip(parts, ranges, strict=False)
    ):
        raise APIError(1100, f"InvalidParameter, [healthy_check_option] {option!r} should be inter|timeout|fall|rise")
    return option


# --- the cloud -------------------------------------------------------------------------------


@dataclass
class Fault:
    action: str
    ret_code: int | None = None  # answer this code instead of acting
    times: int = 1
    job: str | None = None  # the action's next job ends so: "failed", "done with failure"
    job_s: float | None = None  # the action's next job takes this long
    message: str = ""


@dataclass
class Cloud:
    """One zone of one account's resources. ``instances``: {instance id: private IP} (the hosts
    a backend may name; in the first VxNet) or {instance id: (vxnet id, private IP)},
    ``vxnets``: {vxnet id: its CIDR}, ``eips``: {eip id: address}."""

    zone: str
    keys: dict[str, str]
    instances: dict[str, str] = field(default_factory=dict)
    vxnets: dict[str, str] = field(default_factory=dict)
    eips: dict[str, str] = field(default_factory=dict)
    security_groups: dict[str, dict] = field(default_factory=dict)
    job_s: float = 1.0
    clock: Callable[[], float] = time.time
    probe: Callable[[str, int, str], bool] | None = None
    # called with ``applied`` (under the lock) whenever what a load balancer serves changes
    on_applied: Callable[[dict[str, dict]], None] | None = None
    lbs: dict[str, dict] = field(default_factory=dict)
    # {load balancer id: what it serves} (``served``): its listeners and backends as of its last
    # successful UpdateLoadBalancers
    applied: dict[str, dict] = field(default_factory=dict)
    listeners: dict[str, dict] = field(default_factory=dict)
    backends: dict[str, dict] = field(default_factory=dict)
    jobs: dict[str, dict] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self):
        first = next(iter(self.vxnets), "")
        self.instances = {i: v if isinstance(v, tuple) else (first, v) for i, v in self.instances.items()}
        for sg in self.security_groups.values():
            sg.setdefault("rules", {})
            sg.setdefault("is_applied", 1)
        self.probe = self.probe or probe

    # --- the entry point ---

    def request(self, method: str, path: str, params: dict[str, str]) -> dict:
        """One API request, as QingCloud answers it (a dict to send as JSON)."""
        with self.lock:
            self._advance()
            action = params.get("action", "")
            logged = {k: v for k, v in params.items() if k not in ("signature", "access_key_id")}
            try:
                if path != PATH:
                    raise APIError(1101, f"InvalidRequestMethod, path {path!r}")
                check_request(method, path, params, self.keys, self.clock())
                handler = getattr(self, f"do_{action}", None) if action else None
                if handler is None:
                    raise APIError(1101, f"InvalidRequestMethod, action [{action}] is not supported")
                if params.get("zone", "").lower() != self.zone:
                    raise APIError(2100, f"ResourceNotFound, zone [{params.get('zone')}] not found")
                self._fault(action)
                answer = {"action": f"{action}Response", "ret_code": 0, **handler(params)}
            except APIError as err:
                answer = {"ret_code": err.ret_code, "message": err.message}
            self.calls.append({"action": action, "params": logged, "ret_code": answer["ret_code"], "at": self.clock()})
            return answer

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def writes(self) -> list[dict]:
        """The calls that asked for a change (every action but Describe*), answered or refused."""
        return [c for c in self.calls if not c["action"].startswith("Describe")]

    # --- faults and jobs ---

    def _fault(self, action: str) -> None:
        for fault in self.faults:
            if fault.action == action and fault.ret_code is not None and fault.times > 0:
                fault.times -= 1
                raise APIError(fault.ret_code, fault.message or f"injected fault {fault.ret_code}")

    def _job(self, action: str, resources: list[str], effect: Callable[[bool], None]) -> str:
        """A job of `action` on `resources`; ``effect(succeeded)`` runs when it ends."""
        job_id = f"j-{secrets.token_hex(4)}"
        outcome, took = "successful", self.job_s
        for fault in list(self.faults):
            if fault.action == action and fault.ret_code is None:
                self.faults.remove(fault)
                outcome = fault.job or outcome
                took = fault.job_s if fault.job_s is not None else took
        now = self.clock()
        self.jobs[job_id] = {"job_id": job_id, "job_action": action, "resource_ids": " ".join(resources),
                             "status": "pending", "create_time": iso(now), "status_time": iso(now),
                             "_started": now, "_ends": now + took, "_outcome": outcome, "_effect": effect}  # fmt: skip
        return job_id

    def _advance(self) -> None:
        """Jobs move on with the clock: pending for their first half, working for the second, then
        their outcome; its effect shows when it ends (a failed job's: what it undoes)."""
        now = self.clock()
        for job in self.jobs.values():
            if job["status"] not in ("pending", "working"):
                continue
            status = job["_outcome"] if now >= job["_ends"] else "working"
            if now < job["_started"] + (job["_ends"] - job["_started"]) / 2:
                status = "pending"
            if status != job["status"]:
                job["status"], job["status_time"] = status, iso(now)
                if status not in ("pending", "working"):
                    job["_effect"](status == "successful")
                if status not in ("pending", "working", "successful"):  # "failed", "done with failure"
                    job["error_codes"] = "5000"

    # --- load balancers ---

    def _lb(self, lb_id: str) -> dict:
        lb = self.lbs.get(lb_id)
        if lb is None or lb["status"] in ("deleted", "ceased"):
            raise APIError(2100, f"ResourceNotFound, resource [{lb_id}] not found")
        return lb

    def _changeable(self, lb: dict) -> None:
        if lb["status"] != "active" or lb["transition_status"]:
            raise APIError(1400, f"PermissionDenied, loadbalancer [{lb['loadbalancer_id']}] is "
                                 f"[{lb['transition_status'] or lb['status']}], please try later")  # fmt: skip

    def do_CreateLoadBalancer(self, p: dict) -> dict:
        eips, vxnet = listed(p, "eips"), p.get("vxnet")
        if bool(eips) == bool(vxnet):
            raise APIError(1100, "InvalidParameter, one of [eips] or [vxnet] is required")
        lb_type = integer(p.get("loadbalancer_type", 0), "loadbalancer_type", 0, 5)
        for eip in eips:
            if eip not in self.eips:
                raise APIError(2100, f"ResourceNotFound, resource [{eip}] not found")
            if any(eip in x["_eips"] for x in self.lbs.values() if x["status"] not in ("deleted", "ceased")):
                raise APIError(1400, f"PermissionDenied, eip [{eip}] is in use")
        private_ip = p.get("private_ip", "")
        if vxnet:
            if vxnet not in self.vxnets:
                raise APIError(2100, f"ResourceNotFound, resource [{vxnet}] not found")
            net = ipaddress.ip_network(self.vxnets[vxnet])
            if private_ip and ipaddress.ip_address(private_ip) not in net:
                raise APIError(1100, f"InvalidParameter, [private_ip] {private_ip} is not in {vxnet} ({net})")
            if private_ip and any(x.get("_private_ip") == private_ip for x in self.lbs.values()
                                  if x["status"] not in ("deleted", "ceased")):  # fmt: skip
                raise APIError(1400, f"PermissionDenied, private ip [{private_ip}] is in use")
        sg = p.get("security_group") or next(iter(self.security_groups), "")
        if sg and sg not in self.security_groups:
            raise APIError(2100, f"ResourceNotFound, resource [{sg}] not found")
        lb_id = f"lb-{secrets.token_hex(4)}"
        now = iso(self.clock())
        self.lbs[lb_id] = {"loadbalancer_id": lb_id, "loadbalancer_name": p.get("loadbalancer_name", ""),
                           "description": "", "status": "pending", "transition_status": "creating",
                           "is_applied": 1, "loadbalancer_type": lb_type, "security_group_id": sg,
                           "create_time": now, "status_time": now, "_eips": eips, "_vxnet": vxnet,
                           "_private_ip": private_ip}  # fmt: skip

        def created(ok):
            lb = self.lbs[lb_id]
            lb.update(status="active" if ok else "ceased", transition_status="", status_time=iso(self.clock()))
            if vxnet and not lb["_private_ip"]:
                lb["_private_ip"] = str(next(ipaddress.ip_network(self.vxnets[vxnet]).hosts()))
            if ok:
                self._apply({lb_id: self.served(lb)})

        return {"loadbalancer_id": lb_id, "job_id": self._job("CreateLoadBalancer", [lb_id], created)}

    def _shown_lb(self, lb: dict, verbose: bool) -> dict:
        shown = {k: v for k, v in lb.items() if not k.startswith("_")}
        shown["eips"] = [{"eip_id": e, "eip_name": "", "eip_addr": self.eips[e]} for e in lb["_eips"]]
        shown["vxnet_id"] = lb["_vxnet"] or ""  # as QingCloud's item has it: vxnet_id, private_ips
        shown["private_ips"] = [lb["_private_ip"]] if lb["_private_ip"] else []
        if verbose:
            shown["listeners"] = [self._shown_listener(x, False) for x in self._listeners_of(lb["loadbalancer_id"])]
        return shown

    def do_DescribeLoadBalancers(self, p: dict) -> dict:
        wanted, status, word = listed(p, "loadbalancers"), listed(p, "status"), p.get("search_word", "")
        found = [lb for lb in self.lbs.values()
                 if (not wanted or lb["loadbalancer_id"] in wanted) and (not status or lb["status"] in status)
                 and (not word or word in lb["loadbalancer_id"] or word in lb["loadbalancer_name"])
                 and (wanted or status or lb["status"] != "ceased")]  # fmt: skip
        return page(p, "loadbalancer_set", [self._shown_lb(lb, p.get("verbose") == "1") for lb in found])

    def do_DeleteLoadBalancers(self, p: dict) -> dict:
        ids = listed(p, "loadbalancers")
        if not ids:
            raise APIError(1100, "MissingParameter, [loadbalancers] is required")
        lbs = [self._lb(i) for i in ids]
        for lb in lbs:
            if lb["status"] == "pending":
                raise APIError(1400, f"PermissionDenied, loadbalancer [{lb['loadbalancer_id']}] is pending")
            lb["transition_status"] = "deleting"

        def deleted(ok):
            for lb in lbs:
                if not ok:
                    lb["transition_status"] = ""
                    continue
                lb.update(status="deleted", transition_status="", status_time=iso(self.clock()), _eips=[])
                for listener in self._listeners_of(lb["loadbalancer_id"]):
                    self._drop_listener(listener["loadbalancer_listener_id"])
            if ok:
                self._apply(dict.fromkeys((lb["loadbalancer_id"] for lb in lbs), None))

        return {"job_id": self._job("DeleteLoadBalancers", ids, deleted)}

    def do_UpdateLoadBalancers(self, p: dict) -> dict:
        ids = listed(p, "loadbalancers")
        if not ids:
            raise APIError(1100, "MissingParameter, [loadbalancers] is required")
        lbs = [self._lb(i) for i in ids]
        for lb in lbs:
            self._changeable(lb)
            lb["transition_status"] = "updating"
        applying = {lb["loadbalancer_id"]: lb.get("_changes", 0) for lb in lbs}
        serving = {lb["loadbalancer_id"]: self.served(lb) for lb in lbs}  # what the job applies

        def updated(ok):
            for lb in lbs:
                lb["transition_status"] = ""
                # changes made while the job ran are not applied by it, nor any by a failed job
                lb["is_applied"] = int(ok and lb.get("_changes", 0) == applying[lb["loadbalancer_id"]])
            if ok:
                self._apply(serving)

        return {"job_id": self._job("UpdateLoadBalancers", ids, updated)}

    def served(self, lb: dict) -> dict:
        """What load balancer `lb` serves once applied: its addresses (the private IP in its
        VxNet, or its EIPs' addresses) and its listeners, each with its backends' addresses."""
        listeners = []
        for x in sorted(self._listeners_of(lb["loadbalancer_id"]), key=lambda x: x["listener_port"]):
            backends = [
                {"name": b["loadbalancer_backend_id"], "address": self.instances[b["resource_id"]][1],
                 "port": b["port"], "weight": b["weight"]}
                for b in sorted(self._backends_of(x["loadbalancer_listener_id"]), key=lambda b: b["create_time"])
                if b["resource_id"] in self.instances
            ]  # fmt: skip
            keys = ("loadbalancer_listener_id", "listener_port", "listener_protocol", "balance_mode",
                    "healthy_check_method", "healthy_check_option")  # fmt: skip
            listeners.append({**{k: x[k] for k in keys}, "backends": backends})
        addresses = [self.eips[e] for e in lb["_eips"]] or ([lb["_private_ip"]] if lb["_private_ip"] else [])
        return {"loadbalancer_id": lb["loadbalancer_id"], "addresses": addresses, "listeners": listeners}

    def _apply(self, changed: dict[str, dict | None]) -> None:
        """What the load balancers of `changed` serve now (None: nothing, deleted)."""
        for lb_id, serving in changed.items():
            if serving is None:
                self.applied.pop(lb_id, None)
            else:
                self.applied[lb_id] = copy.deepcopy(serving)
        if self.on_applied:
            self.on_applied(copy.deepcopy(self.applied))

    def _changed(self, lb: dict) -> None:
        lb["is_applied"] = 0
        lb["_changes"] = lb.get("_changes", 0) + 1

    # --- listeners ---

    def _listeners_of(self, lb_id: str) -> list[dict]:
        return [x for x in self.listeners.values() if x["loadbalancer_id"] == lb_id]

    def _shown_listener(self, listener: dict, verbose: bool) -> dict:
        shown = dict(listener)
        if verbose:
            shown["backends"] = [
                self._shown_backend(b) for b in self._backends_of(listener["loadbalancer_listener_id"])
            ]
        return shown

    def do_AddLoadBalancerListeners(self, p: dict) -> dict:
        lb = self._lb(required(p, "loadbalancer"))
        self._changeable(lb)
        items = listed_dicts(p, "listeners")
        if not items:
            raise APIError(1100, "MissingParameter, [listeners] is required")
        taken = {x["listener_port"] for x in self._listeners_of(lb["loadbalancer_id"])}
        made = []
        for n, item in enumerate(items, 1):
            port = integer(item.get("listener_port"), f"listeners.{n}.listener_port", 1, 65535)
            protocol = item.get("listener_protocol")
            if protocol not in ("tcp", "http", "https"):
                raise APIError(
                    1100, f"InvalidParameter, [listeners.{n}.listener_protocol] should be tcp, http or https"
                )
            backend_protocol = item.get("backend_protocol") or protocol
            if (protocol == "tcp") != (backend_protocol == "tcp"):
                raise APIError(
                    1100, f"InvalidParameter, [listeners.{n}.backend_protocol] does not match the listener's"
                )
            if port in taken:
                raise APIError(1400, f"PermissionDenied, listener port [{port}] is in use")
            taken.add(port)
            mode = item.get("balance_mode", "roundrobin")
            if mode not in ("roundrobin", "leastconn", "source"):
                raise APIError(1100, f"InvalidParameter, [listeners.{n}.balance_mode] {mode!r}")
            listener_id = f"lbl-{secrets.token_hex(4)}"
            self.listeners[listener_id] = {
                "loadbalancer_listener_id": listener_id, "loadbalancer_id": lb["loadbalancer_id"],
                "loadbalancer_listener_name": item.get("loadbalancer_listener_name", ""),
                "listener_port": port, "listener_protocol": protocol, "backend_protocol": backend_protocol,
                "balance_mode": mode, "forwardfor": int(item.get("forwardfor", 0) or 0),
                "session_sticky": item.get("session_sticky", ""),
                "healthy_check_method": health_check(item.get("healthy_check_method", "tcp")),
                "healthy_check_option": health_option(item.get("healthy_check_option", "10|5|2|5")),
                "create_time": iso(self.clock()),
            }  # fmt: skip
            made.append(listener_id)
        self._changed(lb)
        return {"loadbalancer_listeners": made}

    def do_DescribeLoadBalancerListeners(self, p: dict) -> dict:
        wanted, lb_id = listed(p, "loadbalancer_listeners"), p.get("loadbalancer")
        found = [x for x in self.listeners.values()
                 if (not wanted or x["loadbalancer_listener_id"] in wanted)
                 and (not lb_id or x["loadbalancer_id"] == lb_id)]  # fmt: skip
        verbose = p.get("verbose") == "1"
        return page(p, "loadbalancer_listener_set", [self._shown_listener(x, verbose) for x in found])

    def do_ModifyLoadBalancerListenerAttributes(self, p: dict) -> dict:
        listener_id = required(p, "loadbalancer_listener")
        if listener_id not in self.listeners:
            raise APIError(2100, f"ResourceNotFound, resource [{listener_id}] not found")
        listener = self.listeners[listener_id]
        lb = self._lb(listener["loadbalancer_id"])
        self._changeable(lb)
        changes = {}
        if "balance_mode" in p:
            if p["balance_mode"] not in ("roundrobin", "leastconn", "source"):
                raise APIError(1100, f"InvalidParameter, [balance_mode] {p['balance_mode']!r}")
            changes["balance_mode"] = p["balance_mode"]
        if "healthy_check_method" in p:
            changes["healthy_check_method"] = health_check(p["healthy_check_method"])
        if "healthy_check_option" in p:
            changes["healthy_check_option"] = health_option(p["healthy_check_option"])
        for name in ("loadbalancer_listener_name", "session_sticky"):
            if name in p:
                changes[name] = p[name]
        if "forwardfor" in p:
            changes["forwardfor"] = integer(p["forwardfor"], "forwardfor", 0, 7)
        listener.update(changes)
        self._changed(lb)
        return {}

    def _drop_listener(self, listener_id: str) -> None:
        for backend in self._backends_of(listener_id):
            del self.backends[backend["loadbalancer_backend_id"]]
        del self.listeners[listener_id]

    def _deletable(self, p: dict, name: str, table: dict) -> list[str]:
        """The IDs of ``name.N`` to delete from `table`: each must exist, on a load balancer that
        can be changed now (else nothing is deleted)."""
        ids = listed(p, name)
        if not ids:
            raise APIError(1100, f"MissingParameter, [{name}] is required")
        for item_id in ids:
            if item_id not in table:
                raise APIError(2100, f"ResourceNotFound, resource [{item_id}] not found")
            self._changeable(self._lb(table[item_id]["loadbalancer_id"]))
        return ids

    def do_DeleteLoadBalancerListeners(self, p: dict) -> dict:
        ids = self._deletable(p, "loadbalancer_listeners", self.listeners)
        for listener_id in ids:
            lb = self._lb(self.listeners[listener_id]["loadbalancer_id"])
            self._drop_listener(listener_id)
            self._changed(lb)
        return {"loadbalancer_listeners": ids}

    # --- backends ---

    def _backends_of(self, listener_id: str) -> list[dict]:
        return [b for b in self.backends.values() if b["loadbalancer_listener_id"] == listener_id]

    def _shown_backend(self, backend: dict) -> dict:
        listener = self.listeners[backend["loadbalancer_listener_id"]]
        address = self.instances.get(backend["resource_id"], ("", ""))[1]
        up = bool(address) and self.probe(address, backend["port"], listener["healthy_check_method"])
        return {**backend, "status": "up" if up else "down"}

    def do_AddLoadBalancerBackends(self, p: dict) -> dict:
        listener_id = required(p, "loadbalancer_listener")
        if listener_id not in self.listeners:
            raise APIError(2100, f"ResourceNotFound, resource [{listener_id}] not found")
        lb = self._lb(self.listeners[listener_id]["loadbalancer_id"])
        self._changeable(lb)
        items = listed_dicts(p, "backends")
        if not items:
            raise APIError(1100, "MissingParameter, [backends] is required")
        taken = {(b["resource_id"], b["port"]) for b in self._backends_of(listener_id)}
        made = []
        for n, item in enumerate(items, 1):
            resource = item.get("resource_id", "")
            if not resource:
                raise APIError(1100, f"MissingParameter, [backends.{n}.resource_id] is required")
            if resource not in self.instances:
                raise APIError(2100, f"ResourceNotFound, resource [{resource}] not found")
            port = integer(item.get("port"), f"backends.{n}.port", 1, 65535)
            weight = integer(item.get("weight", 1), f"backends.{n}.weight", 1, 100)
            if (resource, port) in taken:
                raise APIError(1400, f"PermissionDenied, backend [{resource}:{port}] already exists")
            taken.add((resource, port))
            backend_id = f"lbb-{secrets.token_hex(4)}"
            self.backends[backend_id] = {
                "loadbalancer_backend_id": backend_id, "loadbalancer_listener_id": listener_id,
                "loadbalancer_id": lb["loadbalancer_id"], "resource_id": resource, "port": port,
                "weight": weight, "loadbalancer_backend_name": item.get("loadbalancer_backend_name", ""),
                "create_time": iso(self.clock()),
            }  # fmt: skip
            made.append(backend_id)
        self._changed(lb)
        return {"loadbalancer_backends": made}

    def do_DescribeLoadBalancerBackends(self, p: dict) -> dict:
        wanted = listed(p, "loadbalancer_backends")
        listener_id, lb_id = p.get("loadbalancer_listener"), p.get("loadbalancer")
        found = [b for b in self.backends.values()
                 if (not wanted or b["loadbalancer_backend_id"] in wanted)
                 and (not listener_id or b["loadbalancer_listener_id"] == listener_id)
                 and (not lb_id or b["loadbalancer_id"] == lb_id)]  # fmt: skip
        return page(p, "loadbalancer_backend_set", [self._shown_backend(b) for b in found])

    def do_DeleteLoadBalancerBackends(self, p: dict) -> dict:
        ids = self._deletable(p, "loadbalancer_backends", self.backends)
        for backend_id in ids:
            self._changed(self._lb(self.backends.pop(backend_id)["loadbalancer_id"]))
        return {"loadbalancer_backends": ids}

    # --- jobs, instances ---

    def do_DescribeJobs(self, p: dict) -> dict:
        wanted, status = listed(p, "jobs"), listed(p, "status")
        found = [{k: v for k, v in j.items() if not k.startswith("_")} for j in self.jobs.values()
                 if (not wanted or j["job_id"] in wanted) and (not status or j["status"] in status)]  # fmt: skip
        return page(p, "job_set", found)

    def do_DescribeInstances(self, p: dict) -> dict:
        wanted, word = listed(p, "instances"), p.get("search_word", "")
        found = [{"instance_id": i, "instance_name": i, "status": "running",
                  "vxnets": [{"vxnet_id": vxnet, "private_ip": ip}]}
                 for i, (vxnet, ip) in self.instances.items()
                 if (not wanted or i in wanted) and (not word or word in i)]  # fmt: skip
        return page(p, "instance_set", found)

    # --- security groups ---

    def _sg(self, sg_id: str) -> dict:
        if sg_id not in self.security_groups:
            raise APIError(2100, f"ResourceNotFound, resource [{sg_id}] not found")
        return self.security_groups[sg_id]

    def do_DescribeSecurityGroups(self, p: dict) -> dict:
        wanted = listed(p, "security_groups")
        found = [{"security_group_id": i, "security_group_name": sg.get("name", i), "is_applied": sg["is_applied"]}
                 for i, sg in self.security_groups.items() if not wanted or i in wanted]  # fmt: skip
        return page(p, "security_group_set", found)

    def do_DescribeSecurityGroupRules(self, p: dict) -> dict:
        sg_id = required(p, "security_group")
        rules = [dict(r) for r in self._sg(sg_id)["rules"].values()]
        return page(p, "security_group_rule_set", rules)

    def do_AddSecurityGroupRules(self, p: dict) -> dict:
        sg_id = required(p, "security_group")
        sg = self._sg(sg_id)
        items = listed_dicts(p, "rules")
        if not items:
            raise APIError(1100, "MissingParameter, [rules] is required")
        made = []
        for n, item in enumerate(items, 1):
            protocol = item.get("protocol", "")
            if protocol not in ("tcp", "udp", "icmp", "gre", "esp", "ah", "ipip"):
                raise APIError(1100, f"InvalidParameter, [rules.{n}.protocol] {protocol!r}")
            priority = integer(item.get("priority"), f"rules.{n}.priority", 0, 100)
            rule_id = f"sgr-{secrets.token_hex(4)}"
            sg["rules"][rule_id] = {
                "security_group_id": sg_id, "security_group_rule_id": rule_id, "priority": priority,
                "protocol": protocol, "action": item.get("action", "accept"),
                "direction": integer(item.get("direction", 0), f"rules.{n}.direction", 0, 1),
                "security_group_rule_name": item.get("security_group_rule_name", ""),
                "val1": item.get("val1", ""), "val2": item.get("val2", ""), "val3": item.get("val3", ""),
            }  # fmt: skip
            made.append(rule_id)
        sg["is_applied"] = 0
        return {"security_group_rules": made}

    def do_DeleteSecurityGroupRules(self, p: dict) -> dict:
        ids = listed(p, "security_group_rules")
        if not ids:
            raise APIError(1100, "MissingParameter, [security_group_rules] is required")
        groups = {}
        for rule_id in ids:
            sg = next((sg for sg in self.security_groups.values() if rule_id in sg["rules"]), None)
            if sg is None:
                raise APIError(2100, f"ResourceNotFound, resource [{rule_id}] not found")
            groups[rule_id] = sg
        for rule_id, sg in groups.items():
            del sg["rules"][rule_id]
            sg["is_applied"] = 0
        return {"security_group_rules": ids}

    def do_ApplySecurityGroup(self, p: dict) -> dict:
        sg_id = required(p, "security_group")
        sg = self._sg(sg_id)
        return {"job_id": self._job("ApplySecurityGroup", [sg_id], lambda ok: sg.update(is_applied=int(ok)))}

    # --- for tests and the lab ---

    def snapshot(self) -> dict:
        """The emulator's state as JSON-able data (jobs without their effects)."""
        with self.lock:
            self._advance()
            jobs = {i: {k: v for k, v in j.items() if not k.startswith("_")} for i, j in self.jobs.items()}
            lbs = {i: self._shown_lb(lb, False) for i, lb in self.lbs.items()}
            return copy.deepcopy({"loadbalancers": lbs, "listeners": self.listeners, "backends": self.backends,
                                  "security_groups": self.security_groups, "jobs": jobs})  # fmt: skip


def iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def page(p: dict, name: str, items: list) -> dict:
    offset = integer(p.get("offset", 0), "offset", 0, 1_000_000)
    limit = integer(p.get("limit", 20), "limit", 1, 100)
    return {name: items[offset : offset + limit], "total_count": len(items)}


def probe(address: str, port: int, method: str, timeout: float = 0.5) -> bool:
    """A backend's health as a load balancer checks it: a TCP connect, or ``http|/path[|host]``:
    an HTTP GET answering 2xx or 3xx."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            if method == "tcp":
                return True
            parts = method.split("|")
            host = parts[2] if len(parts) > 2 else address
            conn.settimeout(timeout)
            conn.sendall(f"GET {parts[1]} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            status = conn.recv(64).split(b" ", 2)
            return len(status) > 1 and status[1][:1] in (b"2", b"3")
    except OSError:
        return False


# --- over HTTP ---------------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    cloud: Cloud  # set on the server's class (serve)
    protocol_version = "HTTP/1.1"  # qingcloud-sdk keeps its connections alive

    def log_message(self, *args):  # the calls are logged by the cloud, without secrets
        pass

    def _answer(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _params(self, text: str) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_emulator/calls":
            with self.cloud.lock:
                return self._answer({"calls": list(self.cloud.calls)})
        if url.path == "/_emulator/state":
            return self._answer(self.cloud.snapshot())
        self._answer(self.cloud.request("GET", url.path, self._params(url.query)))

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        if url.path == "/_emulator/faults":
            for fault in json.loads(body):
                self.cloud.inject(Fault(**fault))
            return self._answer({"ok": True})
        self._answer(self.cloud.request("POST", url.path, self._params(body)))


def serve(cloud: Cloud, address: str = "127.0.0.1", port: int = 0) -> http.server.ThreadingHTTPServer:
    """The emulator on address:port (0: any free port; ``server.server_address`` says which),
    answering from a thread of its own until ``server.shutdown()``."""
    handler = type("CloudHandler", (Handler,), {"cloud": cloud})
    server = http.server.ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="qingcloud-api", daemon=True).start()
    return server
