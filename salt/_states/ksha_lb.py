"""ksha_lb states: checks of the load balancer from a host.

``reachable`` is read-only: it changes nothing, so under ``test=True`` it
runs the same check and reports its real result, but for a load balancer the same
orchestration makes first (``made_by_this_run``): not there yet is what would change.
"""

__virtualname__ = "ksha_lb"

EXPECT = ("answer", "listen", "ready")

HINT = (
    "check ksha:loadbalancer:address and :port, and that the LB's firewall (security group) "
    "allows TCP {port} from this host"
)


def __virtual__():
    if "ksha_lb.reach" not in __salt__:
        return (False, "ksha_lb state: the ksha_lb execution module is not synced (saltutil.sync_all)")
    return __virtualname__


def reachable(name, port=6443, expect="answer", domain=None, cafile=None, timeout=3, made_by_this_run=False):
    """This host reaches the load balancer at ``name`` (its address) on ``port``.

    made_by_this_run
        The load balancer is made by an earlier step of the same orchestration (qingcloud
        mode): under ``test=True``, which made nothing, not reaching it is what the run would
        change (``result: None``), not a failure.

    expect
        ``answer``: the address answers on the port, with a connection or a
        refusal (routed, not silently dropped); for before the apiservers
        exist. ``listen``: a TCP connection is accepted. ``ready``: a TLS
        ``GET /readyz`` through it, with ``domain`` as server name, returns 200
        (verified against ``cafile`` when given).

    .. code-block:: yaml

        ksha-loadbalancer-external-address-reachable:
          ksha_lb.reachable:
            - name: 192.168.0.253
            - port: 6443
    """
    ret = _reachable(name, port, expect, domain, cafile, timeout)
    if ret["result"] is False and made_by_this_run and __opts__["test"]:
        ret.update(
            result=None,
            comment=f"{ret['comment']} (test=True: the QingCloud step before makes it; unless it does, the run fails here)",
        )
    return ret


def _reachable(name, port, expect, domain, cafile, timeout):
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    if expect not in EXPECT:
        ret["comment"] = f"expect: {expect!r} is not one of {', '.join(EXPECT)} (ksha:loadbalancer:external:check)"
        return ret
    where = f"{name}:{port}"
    reach = __salt__["ksha_lb.reach"](address=name, port=port, timeout=timeout)
    if not reach["answered"]:
        ret["comment"] = f"LB {where} does not answer from this host ({reach['error']}); {HINT.format(port=port)}"
        return ret
    if expect == "answer":
        how = "accepts connections" if reach["listening"] else "answers (connection refused: nothing ready behind it)"
        ret.update(result=True, comment=f"LB {where} {how}")
        return ret
    if not reach["listening"]:
        ret["comment"] = f"LB {where} refuses connections on port {port} ({reach['error']}); is its listener there?"
        return ret
    if expect == "listen":
        ret.update(result=True, comment=f"LB {where} accepts connections")
        return ret
    probe = __salt__["ksha_lb.probe"](address=name, port=port, domain=domain, cafile=cafile, timeout=timeout)
    if probe["ok"]:
        verified = "certificate verified" if probe.get("verified") else "certificate not verified (no cafile)"
        ret.update(result=True, comment=f"LB {where}: GET /readyz as {domain or 'the LB domain'} -> 200 ({verified})")
    else:
        got = probe["status"] if probe["status"] is not None else probe.get("error")
        ret["comment"] = f"LB {where} accepts connections but GET /readyz through it failed: {got}"
    return ret
