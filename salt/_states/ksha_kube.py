"""ksha's Kubernetes control-plane states that plain states cannot express.

``release_extracted`` is Salt's ``archive.extracted`` with any credentials of its source URL
(``user:password@`` of a mirror) taken out of what it returns: on a failed download or checksum
``archive.extracted`` returns ``file.cached``'s return, whose name is the URL as given.

``service_account_keys_trusted`` writes a master's ``sa.pub`` from the public keys the masters
published to the Salt mine, read when the state runs (not when the SLS renders), so that
``test=True`` on hosts whose keys are not made yet shows the plan instead of a failure, and
refuses while this master's own published key is not the one its ``sa.key`` has.
"""

import re

__virtualname__ = "ksha_kube"

_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def __virtual__():
    return __virtualname__


def redacted(value):
    """`value` (a state return: dicts, lists, strings) with the userinfo of every URL in its
    strings replaced by ``<redacted>``."""
    if isinstance(value, str):
        return _USERINFO.sub(r"\1<redacted>@", value)
    if isinstance(value, dict):
        return {redacted(k): redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redacted(v) for v in value)
    return value


def release_extracted(name, source, source_hash, user="root"):
    """``archive.extracted`` of ``source`` into ``name``, checked against ``source_hash`` before
    anything is extracted; its return with the credentials of any URL redacted (the source is a
    mirror's URL from ``ksha:kubernetes:archive:url``, which may carry them).

    name
        The release directory (``/opt/kubernetes-<version>``).
    """
    ret = __states__["archive.extracted"](name=name, source=source, source_hash=source_hash, user=user)
    return {**redacted(ret), "name": name}


def service_account_keys_trusted(name, user="root", mode="0644"):
    """``name`` (``sa.pub``) holds every master's service account public key, in master order
    (``ksha.service_account_keys``). Fails, changing nothing, while the Salt mine lacks a
    master's key, naming the master and how to publish it; with ``test=True`` that is the plan
    (``result: None``), as orch.ksha's step before this one publishes the keys
    (``ksha.publish_service_account_key``). Refuses, the same way, on a master whose ``sa.key``
    is not the key the mine holds for it.

    name
        The bundle file, ``ksha_model:kubernetes:service_account:pub``.
    """
    keys = __salt__["ksha.service_account_keys"]()
    me = __grains__["id"]
    sa = __salt__["ksha.model"]()["kubernetes"]["service_account"]
    # This master's own key as it is now: one made anew since it was published (a highstate
    # replacing a lost sa.key) would leave the mine, and every sa.pub, with the old one.
    try:
        own = __salt__["x509.get_public_key"](sa["key"]).strip() + "\n"
    except Exception:  # noqa: BLE001 - no key (ksha.kubernetes.pki makes it, before this)
        own = None
    if me in keys["keys"] and keys["keys"][me] != own:
        comment = (
            f"{me}'s service account key ({sa['key']}) is not the one the Salt mine holds for it: "
            f"run orch.ksha, or salt {me} ksha.publish_service_account_key, then this again"
        )
        if __opts__["test"]:
            return {"name": name, "result": None, "changes": {}, "comment": comment}
        return {"name": name, "result": False, "changes": {}, "comment": comment}
    if keys["missing"]:
        who = ", ".join(keys["missing"])
        if __opts__["test"]:
            return {
                "name": name,
                "result": None,
                "changes": {},
                "comment": f"{name} would trust every master's service account key once the Salt mine holds "
                f"{who}'s (orch.ksha publishes them in the step before this one)",
            }
        return {
            "name": name,
            "result": False,
            "changes": {},
            "comment": f"the Salt mine holds no service account public key ({sa['mine']}) of {who}: run orch.ksha, "
            f"which publishes them, or salt -L {','.join(keys['missing'])} ksha.publish_service_account_key",
        }
    return __states__["file.managed"](name, contents=keys["pem"], user=user, mode=mode)
