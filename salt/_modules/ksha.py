"""ksha execution module: what the ``ksha`` pillar says about this minion.

Reads only this minion's pillar; the inventory is validated on the master
(``salt-run ksha.validate``), not here.

Salt 3008 masks pillar values at the output boundary, and ``pillar.get``
called from a job returns the masked form; this module reads ``__pillar__``
(plain values) and returns host entries, which hold no secret, exposed.
"""

import salt.utils.secret

__virtualname__ = "ksha"


def __virtual__():
    return __virtualname__


def _inventory():
    return __pillar__.get("ksha") or {}


def host(minion_id=None):
    """This minion's (or ``minion_id``'s) entry in ``ksha:hosts``, or ``{}``.

    CLI Example:

    .. code-block:: bash

        salt '*' ksha.host
    """
    name = minion_id or __grains__["id"]
    for entry in _inventory().get("hosts") or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return salt.utils.secret.expose(entry)
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
