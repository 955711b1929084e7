"""External pillar ``ksha_model``: the cluster model (``ksha.model``) for every minion.

Master config::

    ext_pillar:
      - ksha_model: {}

It reads the ``ksha`` pillar compiled for the minion so far, validates it with the one
validator (``ksha.inventory``) and, when it is valid, adds:

- ``ksha_model``: the whole cluster model (``ksha.model.build``) plus ``me``, this
  minion's own host entry (roles, states, certificates, LB priority and peers, the
  interface holding its ip, from its grains);
- ``x509_signing_policies``: a CA's signing policies, on its CA host only (the etcd CA's,
  the Kubernetes CAs'; both on a host that holds both).

An invalid pillar gives ``ksha_model: {errors: [...]}``, which the formula's map.jinja
turns into a render error listing the findings. A minion without a ``ksha`` pillar gets
nothing. The ``ksha`` package must be importable by the master's Python.

The file is not named ``ksha.py``: Salt's loader puts this directory first on
``sys.path`` while loading it, and it would shadow the ``ksha`` package.
"""

import logging

try:
    from ksha import inventory, model

    HAS_KSHA = True
except ImportError:
    HAS_KSHA = False

log = logging.getLogger(__name__)

__virtualname__ = "ksha_model"


def __virtual__():
    if not HAS_KSHA:
        return (False, "ksha_model ext_pillar: the 'ksha' Python package is not importable by the salt-master")
    return __virtualname__


def ext_pillar(minion_id, pillar, *args, **kwargs):  # pylint: disable=unused-argument
    ksha = pillar.get("ksha")
    if ksha is None:
        return {}
    findings = inventory.validate(ksha)
    if inventory.has_errors(findings):
        return {"ksha_model": {"errors": [str(f) for f in findings if f.level == "ERROR"]}}
    # __grains__ (this minion's) is Salt's loader context, not a dict: take what the model uses
    grains = {key: __grains__.get(key) or {} for key in ("ip4_interfaces", "ip6_interfaces")}
    cluster = model.build(ksha, os_family=__grains__.get("os_family"))
    return model.for_minion(cluster, minion_id, grains)
