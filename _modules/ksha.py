"""ksha execution module: what the ``ksha`` pillar says about this minion.

Reads only this minion's pillar; the inventory is validated on the master
(``salt-run ksha.validate``), not here.
"""

__virtualname__ = "ksha"


def __virtual__():
    return __virtualname__


def _inventory():
    return __salt__["pillar.get"]("ksha", {}) or {}


def host(minion_id=None):
    """This minion's (or ``minion_id``'s) entry in ``ksha:hosts``, or ``{}``.

    CLI Example:

    .. code-block:: bash

        salt '*' ksha.host
    """
    name = minion_id or __grains__["id"]
    for entry in _inventory().get("hosts") or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return {}


def roles(minion_id=None):
    """The ``ksha:groups`` naming this minion (or ``minion_id``), sorted.

    CLI Example:

    .. code-block:: bash

        salt '*' ksha.roles
    """
    name = minion_id or __grains__["id"]
    groups = _inventory().get("groups") or {}
    return sorted(group for group, members in groups.items() if name in (members or []))
