"""ksha states.

``inventory_valid`` is the orchestration's preflight, on the master. Validation only reads,
so it runs with ``test=True`` too: a dry run shows a real verdict.

``release_extracted`` (minions) is Salt's ``archive.extracted`` with any credentials of its
source URL (``user:password@`` of a mirror) taken out of what it returns: on a failed download or
checksum ``archive.extracted`` returns ``file.cached``'s return, whose name is the URL as given.
The Kubernetes release and etcd's archive are extracted with it.
"""

import os
import re

__virtualname__ = "ksha"

_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


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


def _redacted(value):
    """`value` (a state return: dicts, lists, strings) with the userinfo of every URL in its
    strings replaced by ``<redacted>``."""
    if isinstance(value, str):
        return _USERINFO.sub(r"\1<redacted>@", value)
    if isinstance(value, dict):
        return {_redacted(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redacted(v) for v in value)
    return value


def release_extracted(name, source, source_hash, user="root", expect=(), **kwargs):
    """``archive.extracted`` of ``source`` into ``name``, checked against ``source_hash`` before
    anything is extracted (``kwargs``: more of its arguments, e.g. ``options``); its return with
    the credentials of any URL redacted (a mirror's URL, ``ksha:kubernetes:archive:url`` or
    ``ksha:etcd:archive:url``, may carry them).

    name
        The release directory (``/opt/kubernetes-<version>``, ``/opt/etcd-<version>``).
    expect
        The release's files ksha runs (its binaries). While each is a file, archive.extracted
        compares the kept tarball's recorded checksum with ``source_hash`` instead of reading the
        tarball's file list (``skip_files_list_verify``: listing it decompresses the whole
        tarball, a second or more of CPU on every run that changes nothing); a missing one, or no
        recorded checksum, and it checks the file list and extracts what is missing as always.
        The checksum is recorded when the tarball is fetched (``source_hash_update``).
    """
    if expect and all(os.path.isfile(path) for path in expect):
        kwargs["skip_files_list_verify"] = True
    ret = __states__["archive.extracted"](
        name=name, source=source, source_hash=source_hash, user=user, source_hash_update=True, **kwargs
    )
    return {**_redacted(ret), "name": name}
