"""ksha states that run on the master inside ``orch/ksha.sls``.

``inventory_valid`` is the orchestration's preflight. Validation only reads,
so it runs with ``test=True`` too: a dry run shows a real verdict.
"""

__virtualname__ = "ksha"


def __virtual__():
    return __virtualname__


def inventory_valid(name, minion=None):
    """Fail when the ``ksha`` pillar the master compiles has any error.

    name
        The state ID (free text).
    minion
        Validate the pillar as compiled for this minion only (default: every
        accepted minion that gets a ``ksha`` pillar, and they must agree).
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    report = __salt__["ksha.runner"]("ksha.validate", minion=minion)
    if not isinstance(report, dict) or "result" not in report:
        ret["comment"] = (
            f"runner ksha.validate did not answer as expected (is it synced? salt-run saltutil.sync_all): {report!r}"
        )
        return ret
    ret["result"] = bool(report["result"])
    ret["comment"] = "\n".join([*report["findings"], report["summary"]])
    return ret
