"""Shared fixtures. The lab fixtures live in tests/lab/conftest.py."""

import copy
import importlib.util
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "tests" / "data" / "seed"


@pytest.fixture(scope="session")
def repo_root():
    return REPO


@pytest.fixture(scope="session")
def _example_pillar():
    return yaml.safe_load((REPO / "pillar" / "ksha.sls.example").read_text())["ksha"]


# A sha256 for the Kubernetes release where the example leaves it to the user (nothing is
# downloaded by the tests that use it; the lab serves its own tarball with its own checksum).
RELEASE_SHA256 = "5" * 64
NODE_RELEASE_SHA256 = "6" * 64


@pytest.fixture
def example_ksha(_example_pillar):
    """The shipped pillar example (the seed's 6 hosts), with checksums for the Kubernetes
    server and node releases (the example leaves them to the user): a fresh copy per test."""
    ksha = copy.deepcopy(_example_pillar)
    ksha["kubernetes"]["archive"]["sha256"] = RELEASE_SHA256
    ksha["kubernetes"]["node_archive"]["sha256"] = NODE_RELEASE_SHA256
    return ksha


def edited(example, **edits):
    """A copy of the pillar `example` with `edits` ({"loadbalancer:mode": "keepalived", ...}) set."""
    ksha = copy.deepcopy(example)
    for path, value in edits.items():
        *parents, last = path.split(":")
        node = ksha
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return ksha


def load_salt_module(kind, name="ksha"):
    """Import salt/_runners/ksha_runner.py etc. under a unique name (Salt calls them all 'ksha')."""
    path = REPO / "salt" / f"_{kind}" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"ksha_salt_{kind}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_bench_verdict():
    """bench/verdict.py (the benchmarks' figures and verdicts; bench/ is no package)."""
    spec = importlib.util.spec_from_file_location("ksha_bench_verdict", REPO / "bench" / "verdict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_functions(ksha, minion_id):
    """``__salt__`` entries for the ksha modules' ``ksha.model`` calls: the real
    salt/_modules/ksha.py, its pillar what the ext_pillar publishes for `minion_id`."""
    from ksha import model

    module = load_salt_module("modules")
    module.__pillar__ = model.for_minion(model.build(ksha), minion_id)
    return {"ksha.model": module.model}


STANDIN_VERSION = "v1.30.8"


@pytest.fixture(scope="session")
def standin_files(tmp_path_factory):
    """The lab's Kubernetes release, extracted (``kubernetes/server/bin/``, ``kubernetes/node/bin/``),
    and a test CA with certificates: server (lb.kubesphere.local, 127.0.0.1, localhost), client,
    etcd-client (of that CA), nobody (a user with no role), controller-manager, node1 and node2
    (nodes), kube-proxy, and stranger (of another CA), each NAME.crt + NAME.key, and ca.crt."""
    from ksha_lab.standins import pki, release

    d = tmp_path_factory.mktemp("standin")
    ca_key, ca_cert = pki.make_ca()
    (d / "ca.crt").write_bytes(pki.ca_pem(ca_cert))
    names = ["lb.kubesphere.local", "127.0.0.1", "localhost"]
    for name, cn, orgs in (
        ("server", "master1", ()),
        ("client", "kubernetes-admin", ("system:masters",)),
        ("etcd-client", "kube-apiserver", ()),
        ("nobody", "somebody", ()),
        ("controller-manager", "system:kube-controller-manager", ()),
        ("node1", "system:node:node1", ("system:nodes",)),
        ("node2", "system:node:node2", ("system:nodes",)),
        ("kube-proxy", "system:kube-proxy", ()),
    ):
        key, cert = pki.make_server_cert(ca_key, ca_cert, cn, names, orgs)
        (d / f"{name}.key").write_bytes(key)
        (d / f"{name}.crt").write_bytes(cert)
    other_key, other_cert = pki.make_ca("another CA")
    key, cert = pki.make_server_cert(other_key, other_cert, "stranger", names)
    (d / "stranger.key").write_bytes(key)
    (d / "stranger.crt").write_bytes(cert)
    for kind in ("server", "node"):
        tarball = release.build(d / "www", STANDIN_VERSION, kind)
        subprocess.run(["tar", "-xzf", str(tarball), "-C", str(d)], check=True)
    return d


def stop_process(proc, timeout=10):
    """SIGTERM, then SIGKILL after `timeout` seconds; waits for it either way."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def start_etcd(files, data_dir):
    """This machine's etcd, one member, TLS with client certificates of the test CA: (client URL, process)."""
    url = f"https://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        ["etcd", "--name", "t", "--data-dir", str(data_dir), "--listen-client-urls", url,
         "--advertise-client-urls", url, "--listen-peer-urls", f"http://127.0.0.1:{free_port()}",
         "--cert-file", str(files / "server.crt"), "--key-file", str(files / "server.key"),
         "--trusted-ca-file", str(files / "ca.crt"), "--client-cert-auth"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return url, proc


def start_standin_apiserver(files, port, etcd_url, cert="server", extra=()):
    """The release's kube-apiserver stand-in on 127.0.0.1:`port` with the test CA's files (and
    the flags of `extra`)."""
    return subprocess.Popen(
        [str(files / "kubernetes/server/bin/kube-apiserver"), "--bind-address=127.0.0.1", f"--secure-port={port}",
         f"--tls-cert-file={files / cert}.crt", f"--tls-private-key-file={files / 'server.key'}",
         f"--client-ca-file={files / 'ca.crt'}", f"--etcd-servers={etcd_url}", f"--etcd-cafile={files / 'ca.crt'}",
         f"--etcd-certfile={files / 'etcd-client.crt'}", f"--etcd-keyfile={files / 'etcd-client.key'}",
         "--authorization-mode=Node,RBAC", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def https_get(files, port, path, client=None):
    """(status, body) of GET https://127.0.0.1:port/path, verifying the server against the test CA."""
    context = ssl.create_default_context(cafile=str(files / "ca.crt"))
    if client:
        context.load_cert_chain(str(files / f"{client}.crt"), str(files / f"{client}.key"))
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=context, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()


def wait_for_status(files, port, path, want, proc=None, timeout=10.0):
    """GET path until it answers `want` (a status code): (status, body) of the last answer."""
    deadline = time.monotonic() + timeout
    got = (None, "")
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the stand-in exited: {proc.stderr.read()}")
        try:
            got = https_get(files, port, path)
            if got[0] == want:
                return got
        except (ConnectionRefusedError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    return got


@pytest.fixture
def standin_apiserver(standin_files, tmp_path):
    """The release's kube-apiserver stand-in, ready (this machine's etcd behind it): (port,
    files, etcd process)."""
    if not shutil.which("etcd"):
        pytest.skip("needs etcd (make apt)")
    etcd_url, etcd = start_etcd(standin_files, tmp_path / "etcd")
    port = free_port()
    proc = start_standin_apiserver(standin_files, port, etcd_url)
    try:
        assert wait_for_status(standin_files, port, "/readyz", 200, proc) == (200, "ok")
        yield port, standin_files, etcd
    finally:
        for p in (proc, etcd):
            p.kill()
            p.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
