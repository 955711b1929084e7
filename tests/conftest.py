"""Shared fixtures. The lab fixtures live in tests/lab/conftest.py."""

import copy
import importlib.util
import socket
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


@pytest.fixture
def example_ksha(_example_pillar):
    """The shipped pillar example (the seed's 6 hosts), with a checksum for the Kubernetes
    release (the example leaves it to the user): a fresh copy per test."""
    ksha = copy.deepcopy(_example_pillar)
    ksha["kubernetes"]["archive"]["sha256"] = RELEASE_SHA256
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


def model_functions(ksha, minion_id):
    """``__salt__`` entries for the ksha modules' ``ksha.model`` calls: the real
    salt/_modules/ksha.py, its pillar what the ext_pillar publishes for `minion_id`."""
    from ksha import model

    module = load_salt_module("modules")
    module.__pillar__ = model.for_minion(model.build(ksha), minion_id)
    return {"ksha.model": module.model}


@pytest.fixture
def standin_certs(tmp_path):
    """A test CA and a serving certificate for lb.kubesphere.local and 127.0.0.1 (ca.crt, s.key, s.crt)."""
    from ksha_lab.standins import pki

    ca_key, ca_cert = pki.make_ca()
    key, cert = pki.make_server_cert(ca_key, ca_cert, "master1", ["lb.kubesphere.local", "127.0.0.1"])
    (tmp_path / "ca.crt").write_bytes(pki.ca_pem(ca_cert))
    (tmp_path / "s.key").write_bytes(key)
    (tmp_path / "s.crt").write_bytes(cert)
    return tmp_path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
