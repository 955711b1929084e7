"""ksha_x509 execution module: whether one of x509_v2's key, certificate or PEM file states
would change nothing, found without running it.

x509_v2's ``private_key_managed``, ``certificate_managed`` and ``pem_managed`` test their file
on every run through ``state.single`` (``file.managed``), and every ``state.single`` in
a minion's job compiles the pillar afresh on the master and loads its own modules: about a
quarter of a second a state, most of a no-op ``orch.ksha`` (each master has some twenty of them).
ksha's PKI states call ``ksha_x509.current`` as their ``unless``, with the state's own
arguments: when it answers True, Salt skips the state ("unless condition is true", no change);
when it answers False, or cannot tell, x509_v2's state runs as it would without it and decides.

It answers True only when every thing the state checks holds, read the way x509_v2 reads it:
the file is an absolute path to a regular file (not a link) with the owner (by name) and mode
asked for (a key's default mode 0400, as x509_v2's); a key loads without
a passphrase, is PEM, of the algorithm and size asked for; a certificate is PEM and
``salt.utils.x509.check_cert_changes`` (the comparison x509_v2's state itself makes, against the
CA host's signing policy) finds nothing to change: the subject, the extensions and SANs, the
public key of ``private_key``, the CA's signature, and more than ``days_remaining`` days left;
a PEM file (a CA certificate as the CA host hands it out) holds exactly what ``pem_managed``
would write, ``x509.get_pem_entry`` of its ``text``. Any argument it does not know (other file
settings, a passphrase, a local CA, ``new: True``) makes it answer False.
"""

import copy
import fnmatch
import logging
import os
import pwd
import stat
import time

from salt.exceptions import CommandExecutionError

try:
    import salt.utils.x509 as x509util

    HAS_X509 = True
except ImportError:  # cryptography missing: x509_v2 is not available either
    HAS_X509 = False

log = logging.getLogger(__name__)

__virtualname__ = "ksha_x509"
# how long one answer of the CA host about a policy is used (see get_signing_policy)
POLICY_TTL_S = 60

# file.managed's settings it checks are `user` and `mode` (its parameters); any other one (group,
# attrs, ...) lands among the key's or the certificate's arguments and makes it say False.
# A certificate's arguments passed on to check_cert_changes as they are (what ksha's states use)
CERT_ARGS = ("CN", "O", "OU", "subjectAltName", "basicConstraints", "keyUsage", "extendedKeyUsage")


def __virtual__():
    if not HAS_X509:
        return (False, "ksha_x509: salt.utils.x509 (cryptography) is not importable")
    return __virtualname__


def file_mismatch(st, owner=None, user=None, mode=None):
    """What about a file's ``os.lstat`` result ``st`` (None: no file), whose owner's name is
    `owner`, differs from the `user` and the `mode` ("0600") asked for, as one word; None when
    nothing does (pure). Owners by name, as file.managed compares them."""
    if st is None:
        return "missing"
    if stat.S_ISLNK(st.st_mode):
        return "link"
    if not stat.S_ISREG(st.st_mode):
        return "type"
    if user is not None and owner != user:
        return "owner"
    if mode is not None and stat.S_IMODE(st.st_mode) != int(str(mode), 8):
        return "mode"
    return None


def current(kind, name, user=None, mode=None, **kwargs):
    """True when x509_v2's state ``x509.<kind>_managed`` with these arguments would change
    nothing on this host; False when it would, or when this cannot tell (the state then runs).

    kind
        ``private_key``, ``certificate`` or ``pem``.
    name, user, mode, the other arguments
        the state's own.

    CLI Example:

    .. code-block:: bash

        salt master2 ksha_x509.current certificate /etc/etcd/pki/server.crt user=etcd mode=0644 \\
            ca_server=master1 signing_policy=ksha_etcd_server__master2 private_key=/etc/etcd/pki/server.key \\
            CN=master2 days_remaining=30
    """
    why = mismatch(kind, name, user, mode, **kwargs)
    log.debug("ksha_x509.current %s %s: %s", kind, name, why or "current")
    return why is None


def mismatch(kind, name, user=None, mode=None, **kwargs):
    """Why ``current`` answers False, in a word (``mode``, ``expiration``, ``extensions``,
    ``error: <exception>``, ...); None when it answers True.

    CLI Example:

    .. code-block:: bash

        salt master2 ksha_x509.mismatch private_key /etc/etcd/pki/server.key user=etcd mode=0600 algo=ec keysize=256
    """
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    if kind == "private_key" and not mode:
        mode = "0400"  # x509_v2's own default for a key
    try:
        if not os.path.isabs(name):
            return "path"  # file.managed refuses it
        try:
            st = os.lstat(name)
        except FileNotFoundError:
            st = None
        owner = pwd.getpwuid(st.st_uid).pw_name if st is not None and user is not None else None
        why = file_mismatch(st, owner, user, mode)
        if why is None and kind == "private_key":
            why = _key_mismatch(name, **kwargs)
        elif why is None and kind == "certificate":
            why = _certificate_mismatch(name, **kwargs)
        elif why is None and kind == "pem":
            why = _pem_mismatch(name, **kwargs)
        elif why is None:
            why = f"kind {kind}"
    except Exception as err:  # pylint: disable=broad-except
        # whatever this cannot read, x509_v2's state reads and reports
        why = f"error: {err.__class__.__name__}"
    return why


def get_signing_policy(name, ca_server):
    """x509_v2's ``x509.get_signing_policy`` of `name` on `ca_server`, with one peer publish per
    CA in a state run instead of one per policy (a copy of the answer is returned).

    The CA host's policies are the cluster model's (the ext_pillar hands them to it from
    ``ksha_model:signing_policies``, which every minion's pillar holds too). Its answer to
    ``get_signing_policy`` is that policy without its ``minions`` and private key, and with the CA
    certificate it signs with (``signing_cert``) as PEM. So the first policy of a CA asked in a
    state run is asked of the CA host (a publish: the minion signs a token with its key, the CA
    host runs a job); when its answer is the model's policy so handed out, the other policies of
    that CA are the model's, with the CA certificate of that answer, as long as their ``minions``
    glob names this minion. Any other policy is asked of the CA host: one the model does not
    have, one the CA host may refuse this minion, every one of a CA whose answer was not the
    model's (a pillar older on one side). The next state run asks again, so a changed policy or
    CA certificate is seen. The CA host asking for its own policies runs the function a peer's
    publish would run on it (``sign_remote_certificate``) in this job, for its own ID: no publish
    to itself.

    CLI Example:

    .. code-block:: bash

        salt node1 ksha_x509.get_signing_policy ksha_kube_kubelet_client__node1 master1
    """
    cache = __context__.setdefault("ksha_x509.policies", {})
    # __context__ lives as long as the job's process (a minion forks one per job); with
    # multiprocessing off it could outlive the job: an answer older than POLICY_TTL_S is not used
    pid, now = os.getpid(), time.monotonic()

    def fresh(key):
        found = cache.get(key)
        return found[1] if found is not None and now - found[0] <= POLICY_TTL_S else None

    policy = fresh((pid, ca_server, name))
    if policy is None:
        modelled = _modelled_policy(name)
        ca_key = (pid, ca_server, "signing_cert", (modelled or {}).get("signing_cert"))
        signing_cert = modelled and _allowed(modelled) and fresh(ca_key)
        if signing_cert:
            policy = _published(modelled, signing_cert)
        elif ca_server == __grains__.get("id"):
            policy = _asked_here(name)
        else:
            policy = __salt__["x509.get_signing_policy"](name, ca_server=ca_server)
            # the CA host's answer is the model's policy (not so while one of the two has a pillar
            # older than the other's): the CA's other policies may come from the model
            if modelled and policy.get("signing_cert") and policy == _published(modelled, policy["signing_cert"]):
                cache[ca_key] = (now, policy["signing_cert"])
        cache[(pid, ca_server, name)] = (now, policy)
    return copy.deepcopy(policy)


def _asked_here(name):
    """On the CA host itself: what it answers a peer asking for policy `name` (x509_v2's
    ``sign_remote_certificate`` with ``get_signing_policy_only``, run here for this minion's own
    ID instead of through a publish to itself), as x509_v2's ``get_signing_policy`` returns it:
    the CA certificate as PEM, long names made short; an error of the CA host raised as
    ``_query_remote`` raises it. (The master's ``peer`` setting is not asked: the states that
    sign, x509_v2's, still publish to the CA host, and fail where it does not allow that.)"""
    result = __salt__["x509.sign_remote_certificate"](name, {}, True, __pub_id=__grains__["id"])
    if not isinstance(result, dict) or result.get("errors") or not isinstance(result.get("data"), dict):
        errors = result.get("errors") if isinstance(result, dict) else None
        raise CommandExecutionError("ca_server reported errors:\n" + "\n".join(errors or [repr(result)]))
    policy = result["data"]
    if "signing_cert" in policy:
        policy["signing_cert"] = x509util.to_pem(x509util.load_cert(policy["signing_cert"])).decode()
    # x509_v2's get_signing_policy takes a policy's long names to the short ones
    for alt_names in (x509util.NAME_ATTRS_ALT_NAMES, x509util.EXTENSIONS_ALT_NAMES):
        for short, long_names in alt_names.items():
            for long_name in long_names:
                if long_name in policy:
                    policy[short] = policy.pop(long_name)
    return policy


# what the CA host leaves out of a policy it hands out (x509_v2's sign_remote_certificate)
UNPUBLISHED = ("minions", "signing_private_key", "signing_private_key_passphrase")


def _published(policy, signing_cert):
    """`policy` as the CA host hands it out: without what it keeps, with its CA certificate."""
    return {**{k: v for k, v in policy.items() if k not in UNPUBLISHED}, "signing_cert": signing_cert}


def _allowed(policy):
    """Whether the CA host lets this minion use `policy` (its ``minions``, a glob as x509_v2 matches
    it; a compound expression the master would have to match is not read here): a policy it
    would refuse, or may, is asked of it."""
    minions = policy.get("minions", "*")
    return isinstance(minions, str) and "@" not in minions and fnmatch.fnmatch(__grains__.get("id", ""), minions)


def _modelled_policy(name):
    """The cluster model's signing policy `name` (any CA's), None when it has none."""
    policies = (__pillar__.get("ksha_model") or {}).get("signing_policies") or {}
    return next((dict(p[name]) for p in policies.values() if isinstance(p, dict) and name in p), None)


def _key_mismatch(name, algo="rsa", keysize=None, new=False, **unknown):
    if new or unknown:
        return "arguments"
    key, encoding, _ = x509util.load_privkey(name, passphrase=None, get_encoding=True)
    wanted = {"rsa": x509util.KEY_TYPE.RSA, "ec": x509util.KEY_TYPE.EC}.get(algo)
    if wanted is None or x509util.get_key_type(key) != wanted:
        return "algo"
    if key.key_size != (keysize if keysize is not None else {"rsa": 2048, "ec": 256}[algo]):
        return "keysize"
    if encoding != "pem":
        return "encoding"
    return None


def _pem_mismatch(name, text, **unknown):
    """x509_v2's ``pem_managed`` writes ``x509.get_pem_entry(text)`` through file.managed, whose
    contents end in a newline (which get_pem_entry's already do): the file must hold exactly that."""
    if unknown:
        return "arguments"
    wanted = __salt__["x509.get_pem_entry"](text=text)
    with open(name, "rb") as fh:
        return None if fh.read() == wanted else "contents"


def _certificate_mismatch(name, days_remaining, ca_server, signing_policy, private_key, **cert_args):
    if set(cert_args) - set(CERT_ARGS):
        return "arguments"
    policy = get_signing_policy(signing_policy, ca_server)
    found, changes, replace, _ = x509util.check_cert_changes(
        name,
        days_remaining=days_remaining,
        days_valid=365,  # x509_v2's default (3008) for the certificate it would build; not compared
        not_before=None,
        not_after=None,
        ca_server=ca_server,
        signing_policy_contents=policy,
        encoding="pem",
        append_certs=[],
        digest="sha256",
        private_key=private_key,
        **x509util.ensure_cert_kwargs_compat(cert_args),
    )
    if found is None or replace:
        return "unreadable"
    return ",".join(sorted(changes)) or None
