"""ksha execution module: the cluster model as this minion's pillar has it.

The master's external pillar ``ksha_model`` publishes the model (``ksha/model.py``)
to every cluster minion; the other ksha modules read their settings through
``ksha.model`` here, never from defaults of their own. The inventory is validated
on the master (``salt-run ksha.validate``), not here.

Salt 3008 masks pillar values at the output boundary and ``pillar.get`` called from
a job returns the masked form; this module reads ``__pillar__`` (plain values) and
returns what holds no secret exposed.
"""

import salt.exceptions
import salt.utils.args
import salt.utils.secret

__virtualname__ = "ksha"


def __virtual__():
    return __virtualname__


def model():
    """The cluster model from this minion's pillar (``ksha_model``, including ``me``). It holds
    no secret: the VRRP password is ``***`` in its settings (``ksha.model.without_secrets``).

    Raises an error saying what is missing when the pillar has no usable model.

    CLI Example:

    .. code-block:: bash

        salt master1 ksha.model
    """
    found = __pillar__.get("ksha_model")
    if not found:
        raise salt.exceptions.CommandExecutionError(
            "no 'ksha_model' pillar: the master needs ext_pillar [{ksha_model: {}}] and the minion the 'ksha' "
            "pillar (then salt-run saltutil.sync_all; salt '*' saltutil.refresh_pillar)"
        )
    if found.get("errors"):
        raise salt.exceptions.CommandExecutionError(
            "the 'ksha' pillar is invalid (salt-run ksha.validate): " + "; ".join(found["errors"])
        )
    return found


def host(minion_id=None):
    """This minion's (or ``minion_id``'s) host entry of the model: name, ip, groups, roles,
    states, certificates; ``{}`` when it is not a cluster host.

    CLI Example:

    .. code-block:: bash

        salt '*' ksha.host
    """
    name = minion_id or __grains__["id"]
    found = next((h for h in model()["hosts"] if h["name"] == name), {})
    return salt.utils.secret.expose(found)


def roles(minion_id=None):
    """The ``ksha:groups`` naming this minion (or ``minion_id``), in the model's order.

    CLI Example:

    .. code-block:: bash

        salt '*' ksha.roles
    """
    return list(host(minion_id).get("groups", []))


def runner(name, **kwargs):
    """The result of the master's runner function ``name`` called with ``kwargs``, for the
    orchestrations (``orch/ksha.sls``) and the ``ksha`` states, which render and run on the master.

    It loads the runners and calls the function in this process, as ``saltutil.runner`` does
    through a ``RunnerClient``. Salt 3008.4 leaves that client and the ``MasterMinion`` it makes
    to the garbage collector, which logs ``[WARNING ] unclosed RunnerClient …`` and
    ``unclosed MasterMinion …`` lines on every ``salt-run state.orchestrate``; this makes
    neither. An error in the runner is raised here (``saltutil.runner`` returns its traceback
    as a string).

    Example (an orchestration SLS):

    .. code-block:: jinja

        {%- set plan = salt['ksha.runner']('ksha.plan', until='lb', output='data') %}
    """
    import salt.loader  # pylint: disable=import-outside-toplevel

    if "master_job_cache" not in __opts__:
        raise salt.exceptions.CommandExecutionError(
            f"ksha.runner runs on the master (orch/ksha.sls, the ksha states); use salt-run {name}"
        )
    runners = salt.loader.runner(__opts__)
    try:
        if name not in runners:
            raise salt.exceptions.CommandExecutionError(
                f"no runner {name} on the master: install ksha there and run salt-run saltutil.sync_all"
            )
        return runners[name](**salt.utils.args.clean_kwargs(**kwargs))
    finally:
        runners.destroy()


PUBLIC_KEY_PEM = "-----BEGIN PUBLIC KEY-----"


def public_key_bundle(minions, published):
    """The public keys `minions` published (``{minion: PEM}``, a ``mine.get`` result), as one
    PEM text in `minions`' order, and the minions whose key is not there (or is not a PEM public
    key): ``{"pem": str, "missing": [minion]}``. Pure: no mine, no files."""
    pem, missing = [], []
    for minion in minions:
        key = published.get(minion)
        if isinstance(key, str) and key.strip().startswith(PUBLIC_KEY_PEM):
            pem.append(key.strip() + "\n")
        else:
            missing.append(minion)
    return {"pem": "".join(pem), "missing": missing}


def service_account_keys():
    """The service account public keys every apiserver trusts: each master's, as the masters
    published them to the Salt mine (``ksha_model:kubernetes:service_account:mine``), in master
    order; ``missing`` names the masters whose key the mine does not hold (``salt -L <masters>
    mine.send`` as ``salt-run ksha.plan`` shows, or one ``orch.ksha``, publishes them).

    CLI Example:

    .. code-block:: bash

        salt master1 ksha.service_account_keys
    """
    k8s = model()["kubernetes"]
    masters = list(k8s["masters"])
    published = (
        __salt__["mine.get"](",".join(masters), k8s["service_account"]["mine"], tgt_type="list") if masters else {}
    )
    return public_key_bundle(masters, published or {})
