"""salt/_modules/ksha_x509.py: the ``unless`` of ksha's key and certificate states, on real keys
and certificates made the way x509_v2 makes them (``salt.utils.x509.build_crt``, signed by a CA
key) under a signing policy as the CA host hands it out (the model's ``leaf_policy`` without
its private key, the CA certificate as PEM). The only stand-in is that hand-out: the lab runs
the CA host's real one. Every case where x509_v2's state would change something is False."""

import datetime
import os
import pwd

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from salt.modules.x509_v2 import get_pem_entry
from salt.utils import x509 as x509util

from ksha import model
from tests.conftest import load_salt_module

mod = load_salt_module("modules", "ksha_x509")
NOBODY = pwd.getpwnam("nobody").pw_uid


def write_key(path, key, encryption=None):
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            encryption or serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def make_ca(tmp_path, name="ksha test CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


class Pki:
    """A CA, its signing policy for master2 as the CA host hands it out, and leaf certificates."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.ca_key, self.ca_cert = make_ca(tmp_path)
        ca_pem = self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        policy = model.leaf_policy(
            "master2", {"key": "/etc/ksha/ca.key", "cert": "/etc/ksha/ca.crt"}, "serverAuth", 365
        )
        del policy["minions"], policy["signing_private_key"]  # what sign_remote_certificate hands out
        self.policy = {**policy, "signing_cert": ca_pem}
        self.key = write_key(tmp_path / "server.key", ec.generate_private_key(ec.SECP256R1()))
        self.crt = tmp_path / "server.crt"

    def issue(self, days=365, ca_key=None, ca_cert=None, key=None, encoding="pem", **args):
        """The certificate x509_v2 would issue for `args` (CN, subjectAltName), written to self.crt."""
        ca_cert = ca_cert or self.ca_cert
        signing = {k: v for k, v in self.policy.items() if k not in ("signing_cert", "days_valid")}
        builder, _, _, _ = x509util.build_crt(
            ca_key or self.ca_key,
            signing_cert=ca_cert,
            private_key=str(key or self.key),
            days_valid=days,
            **signing,
            **args,
        )
        cert = builder.sign(ca_key or self.ca_key, hashes.SHA256())
        form = serialization.Encoding.PEM if encoding == "pem" else serialization.Encoding.DER
        self.crt.write_bytes(cert.public_bytes(form))
        self.crt.chmod(0o644)
        return cert

    def args(self, overrides):
        args = {
            "name": str(self.crt),
            "user": "root",
            "mode": "0644",
            "ca_server": "master1",
            "signing_policy": "ksha_etcd_server__master2",
            "private_key": str(self.key),
            "CN": "master2",
            "subjectAltName": "DNS:master2, IP:10.0.0.12",
            "days_remaining": 30,
        }
        args.update(overrides)
        return {k: v for k, v in args.items() if v is not None}

    def mismatch(self, **overrides):
        return mod.mismatch("certificate", **self.args(overrides))

    def current(self, **overrides):
        return mod.current("certificate", **self.args(overrides))


@pytest.fixture
def configure_loader_modules(pki):
    def get_signing_policy(name, ca_server=None):
        assert (name, ca_server) == ("ksha_etcd_server__master2", "master1")
        return dict(pki.policy)

    # x509_v2's own get_pem_entry: what pem_managed writes
    return {mod: {"__salt__": {"x509.get_signing_policy": get_signing_policy, "x509.get_pem_entry": get_pem_entry}}}


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path)


SANS = "DNS:master2, IP:10.0.0.12"


def test_a_certificate_as_issued_is_current(pki):
    pki.issue(CN="master2", subjectAltName=SANS)
    assert pki.current() is True


def chmod(mode):
    return lambda pki: pki.crt.chmod(mode)


def chown(uid):
    return lambda pki: os.chown(pki.crt, uid, -1)


def relink(pki):
    target = pki.tmp / "elsewhere.crt"
    pki.crt.rename(target)
    pki.crt.symlink_to(target)


@pytest.mark.parametrize(
    "issued, change, asked, why",
    [
        ({}, chmod(0o600), {}, "mode"),
        ({}, chown(NOBODY), {}, "owner"),
        ({}, relink, {}, "link"),  # x509_v2 follows a link; this leaves it to x509_v2
        ({}, lambda pki: pki.crt.unlink(), {}, "missing"),
        ({"days": 20}, None, {}, "expiration"),  # 20 days left, renewal at 30
        ({}, None, {"CN": "master3"}, "subject_name"),
        ({}, None, {"subjectAltName": SANS + ", DNS:node1"}, "extensions"),  # a SAN more (a master added)
        ({"subjectAltName": "DNS:master2"}, None, {}, "extensions"),  # a SAN less in the certificate
        ({}, None, {"O": "system:masters"}, "subject_name"),  # an organization asked for
        ({"encoding": "der"}, None, {}, "encoding"),  # DER where PEM is asked for
        ({}, None, {"group": "root"}, "arguments"),  # a file setting this does not check
        ({}, None, {"ca_server": None}, "error: TypeError"),  # a local CA: not ksha's way
        ({}, None, {"user": "no-such-user"}, "owner"),
    ],
)
def test_anything_x509_v2_would_change_is_not_current(pki, issued, change, asked, why):
    pki.issue(**{"CN": "master2", "subjectAltName": SANS, **issued})
    if change:
        change(pki)
    assert pki.mismatch(**asked) == why
    assert pki.current(**asked) is False


def test_a_certificate_of_another_ca_or_key_is_not_current(pki, tmp_path):
    other_key, other_cert = make_ca(tmp_path, name="ksha test CA")  # same name, another key
    pki.issue(CN="master2", subjectAltName=SANS, ca_key=other_key, ca_cert=other_cert)
    assert pki.mismatch() == "extensions,signing_private_key"  # its authority key ID, its signature
    # the right CA, but for a key other than private_key's (the key was replaced)
    other = write_key(tmp_path / "other.key", ec.generate_private_key(ec.SECP256R1()))
    pki.issue(CN="master2", subjectAltName=SANS, key=other)
    assert pki.mismatch() == "extensions,private_key"  # its subject key ID, its public key
    pki.issue(CN="master2", subjectAltName=SANS)
    assert pki.current() is True


def test_what_the_ca_host_does_not_hand_out_is_not_current(pki):
    """The CA host did not answer or refused: x509_v2's state says why, this only says False."""
    pki.issue(CN="master2", subjectAltName=SANS)

    def refused(name, ca_server=None):
        raise RuntimeError("ca_server did not respond")

    mod.__salt__["x509.get_signing_policy"] = refused
    assert pki.mismatch() == "error: RuntimeError"


def key_current(path, **overrides):
    args = {"user": "root", "mode": "0600", "algo": "ec", "keysize": 256, "new": False, **overrides}
    return mod.current("private_key", str(path), **args)


def key_mismatch(path, **overrides):
    args = {"user": "root", "mode": "0600", "algo": "ec", "keysize": 256, "new": False, **overrides}
    return mod.mismatch("private_key", str(path), **args)


EC256 = lambda: ec.generate_private_key(ec.SECP256R1())  # noqa: E731


@pytest.mark.parametrize(
    "key, overrides, why",
    [
        (EC256, {}, None),
        (EC256, {"mode": "0640"}, "mode"),
        (EC256, {"new": True}, "arguments"),  # a new key every run
        (lambda: ec.generate_private_key(ec.SECP384R1()), {}, "keysize"),
        (lambda: rsa.generate_private_key(65537, 2048), {}, "algo"),
        (lambda: rsa.generate_private_key(65537, 2048), {"algo": "rsa", "keysize": 2048}, None),
        (EC256, {"passphrase": "x"}, "arguments"),
    ],
)
def test_a_key_is_current_only_as_asked_for(tmp_path, key, overrides, why):
    path = write_key(tmp_path / "k.key", key())
    assert key_mismatch(path, **overrides) == why
    assert key_current(path, **overrides) is (why is None)


def test_an_encrypted_or_missing_key_is_not_current(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    path = write_key(tmp_path / "k.key", key, serialization.BestAvailableEncryption(b"secret"))
    assert key_mismatch(path) == "error: MissingPassword"
    assert key_mismatch(tmp_path / "none.key") == "missing"
    assert key_current(tmp_path / "none.key") is False


def test_file_mismatch_names_the_first_difference():
    class St:
        def __init__(self, mode):
            self.st_mode = mode

    regular = 0o100644
    assert mod.file_mismatch(None) == "missing"
    assert mod.file_mismatch(St(0o120777)) == "link"
    assert mod.file_mismatch(St(0o040755)) == "type"
    assert mod.file_mismatch(St(regular), owner="nobody", user="root", mode="0644") == "owner"
    assert mod.file_mismatch(St(regular), owner="root", user="root", mode="0600") == "mode"
    assert mod.file_mismatch(St(regular), owner="root", user="root", mode="0644") is None
    assert mod.file_mismatch(St(regular), owner="root", user="root", mode=644) is None  # YAML may give an int
    assert mod.file_mismatch(St(regular), owner="nobody", mode="0644") is None  # no user asked for


def test_a_key_without_a_mode_is_held_to_x509_v2s_default_0400(tmp_path):
    path = write_key(tmp_path / "k.key", EC256())  # 0600
    assert mod.mismatch("private_key", str(path), user="root", algo="ec", keysize=256) == "mode"
    path.chmod(0o400)
    assert mod.mismatch("private_key", str(path), user="root", algo="ec", keysize=256) is None


def test_a_relative_path_is_not_current(pki, monkeypatch):
    pki.issue(CN="master2", subjectAltName=SANS)
    monkeypatch.chdir(pki.tmp)
    assert pki.mismatch(name="server.crt") == "path"


def test_the_ca_host_is_asked_once_per_policy_in_a_state_run(pki):
    """Every check of one state run (one __context__) compares against one answer of the CA host
    per policy; the next run asks again (a changed policy is seen)."""
    pki.issue(CN="master2", subjectAltName=SANS)
    asked = []

    def counted(name, ca_server=None):
        asked.append((name, ca_server))
        return dict(pki.policy)

    mod.__salt__["x509.get_signing_policy"] = counted
    assert pki.current() is True and pki.current() is True
    assert asked == [("ksha_etcd_server__master2", "master1")]
    mod.__context__.clear()  # the next state run
    assert pki.current() is True
    assert len(asked) == 2


def test_one_publish_per_ca_in_a_state_run_the_other_policies_from_the_model(pki):
    """The CA host is asked for the first of its policies; the others are the model's (the CA
    host's own source), without what it never hands out, with the CA certificate of its answer.
    A policy the model lacks is asked for; the next state run asks again."""
    ca = "/etc/kubernetes/pki/ca.crt"
    modelled = {
        "p1": {"minions": "node1", "signing_private_key": "/etc/kubernetes/pki/ca.key", "signing_cert": ca,
               "CN": "system:node:node1", "days_valid": 365},
        "p2": {"minions": "node1", "signing_private_key": "/etc/kubernetes/pki/ca.key", "signing_cert": ca,
               "CN": "system:kube-proxy", "days_valid": 365, "signing_private_key_passphrase": "x"},
    }  # fmt: skip
    asked = []

    def ca_host(name, ca_server=None):  # what x509_v2 returns: no minions or key, the CA as PEM
        asked.append(name)
        policy = {k: v for k, v in modelled.get(name, {"CN": "other"}).items() if k not in mod.UNPUBLISHED}
        return {**policy, "signing_cert": "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"}

    mod.__salt__["x509.get_signing_policy"] = ca_host
    mod.__pillar__["ksha_model"] = {"signing_policies": {"kubernetes": modelled, "etcd": {}}}
    mod.__grains__["id"] = "node1"
    try:
        first = mod.get_signing_policy("p1", "master1")
        second = mod.get_signing_policy("p2", "master1")
        assert asked == ["p1"]
        assert second == ca_host("p2") and "signing_private_key_passphrase" not in second
        assert first == ca_host("p1")
        asked.clear()
        mod.get_signing_policy("p3", "master1")  # not the model's
        mod.get_signing_policy("p2", "other-ca-host")  # another CA host: its own answer
        assert asked == ["p3", "p2"]
        mod.__context__.clear()  # the next state run
        asked.clear()
        mod.get_signing_policy("p2", "master1")
        assert asked == ["p2"]
        # another minion's policy (the CA host would refuse it) and a CA answer that is not the
        # model's (a pillar older on one side): asked of the CA host, every time
        modelled["p4"] = {**modelled["p2"], "minions": "node2"}
        modelled["p5"] = dict(modelled["p2"])
        mod.__context__.clear()
        asked.clear()
        mod.get_signing_policy("p1", "master1")
        mod.get_signing_policy("p4", "master1")
        assert asked == ["p1", "p4"]
        mod.__context__.clear()
        asked.clear()
        real = ca_host
        mod.__salt__["x509.get_signing_policy"] = lambda name, ca_server=None: {**real(name), "days_valid": 30}
        mod.get_signing_policy("p1", "master1")
        mod.get_signing_policy("p5", "master1")
        assert asked == ["p1", "p5"]
    finally:
        mod.__pillar__.pop("ksha_model", None)
        mod.__grains__.pop("id", None)


@pytest.mark.parametrize(
    "written, overrides, why",
    [
        ("as_written", {}, None),
        ("as_written", {"mode": "0600"}, "mode"),
        ("as_written", {"group": "root"}, "arguments"),  # a file setting it does not check
        ("one_line", {}, "contents"),  # get_pem_entry rewraps it: pem_managed would rewrite the file
        ("other_ca", {}, "contents"),
        ("no_newline", {}, "contents"),
        (None, {}, "missing"),
    ],
)
def test_a_pem_file_is_current_only_with_what_pem_managed_would_write(tmp_path, written, overrides, why):
    _, ca = make_ca(tmp_path)
    text = ca.public_bytes(serialization.Encoding.PEM).decode()
    body = {
        "as_written": get_pem_entry(text),
        "one_line": text.replace("\n", "").encode(),
        "other_ca": make_ca(tmp_path, "another CA")[1].public_bytes(serialization.Encoding.PEM),
        "no_newline": get_pem_entry(text).rstrip(b"\n"),
    }
    path = tmp_path / "ca.crt"
    if written:
        path.write_bytes(body[written])
        path.chmod(0o644)
    args = {"mode": "0644", "text": text, **overrides}
    assert mod.mismatch("pem", str(path), **args) == why
    assert mod.current("pem", str(path), **args) is (why is None)


def test_the_ca_host_answers_itself_as_it_answers_a_peer(pki, tmp_path):
    """On the CA host, a policy is what its sign_remote_certificate hands a peer (run in the job,
    for the CA host's own ID, no publish): the CA certificate as PEM, long names short; its
    errors are raised."""
    der = pki.ca_cert.public_bytes(serialization.Encoding.DER)
    calls = []

    def sign_remote_certificate(name, kwargs, get_signing_policy_only=False, **more):
        calls.append((name, kwargs, get_signing_policy_only, more))
        if name == "refused":
            return {"data": None, "errors": ["minion not permitted to use specified signing policy"]}
        return {"data": {"commonName": "master1", "X509v3 Key Usage": "critical, digitalSignature",
                         "signing_cert": der}, "errors": []}  # fmt: skip

    mod.__salt__["x509.sign_remote_certificate"] = sign_remote_certificate
    mod.__salt__["x509.get_signing_policy"] = lambda *a, **k: pytest.fail("published to itself")
    mod.__grains__["id"] = "master1"
    try:
        policy = mod.get_signing_policy("ksha_etcd_server__master1", "master1")
        # long names made short, as x509_v2's get_signing_policy makes them
        assert policy == {"CN": "master1", "keyUsage": "critical, digitalSignature",
                          "signing_cert": pki.policy["signing_cert"]}  # fmt: skip
        assert calls == [("ksha_etcd_server__master1", {}, True, {"__pub_id": "master1"})]
        with pytest.raises(mod.CommandExecutionError, match="not permitted"):
            mod.get_signing_policy("refused", "master1")
    finally:
        mod.__grains__.pop("id", None)
