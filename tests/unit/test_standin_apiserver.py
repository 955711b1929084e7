"""The kube-apiserver stand-in checks what it can: flags, certificate names, TLS only."""

import ssl
import subprocess
import sys
import time
import urllib.request

import pytest

from ksha_lab.standins.deploy import STANDIN
from tests.conftest import free_port


@pytest.fixture
def certs(standin_certs):
    return standin_certs


def standin(certs, port, *extra):
    return [
        sys.executable, STANDIN, "--bind-address=127.0.0.1", f"--secure-port={port}",
        f"--tls-cert-file={certs / 's.crt'}", f"--tls-private-key-file={certs / 's.key'}", *extra,
    ]  # fmt: skip


def test_refuses_a_certificate_missing_a_name(certs):
    run = subprocess.run(standin(certs, free_port(), "--expect-san=10.0.0.100"), capture_output=True, text=True)
    assert run.returncode != 0
    assert "serving certificate does not cover ['10.0.0.100']" in run.stderr


def test_refuses_unknown_flags_and_wildcard_bind(certs):
    assert subprocess.run(standin(certs, free_port(), "--insecure-port=8080"), capture_output=True).returncode == 2
    cmd = standin(certs, free_port())
    cmd[2] = "--bind-address=0.0.0.0"
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode != 0 and "must be the node address" in run.stderr


def test_serves_readyz_over_verified_tls(certs):
    port = free_port()
    proc = subprocess.Popen(standin(certs, port, "--expect-san=lb.kubesphere.local", "--expect-san=127.0.0.1"))
    try:
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=context, timeout=2) as resp:
                    assert (resp.status, resp.read()) == (200, b"ok")
                    break
            except (ConnectionRefusedError, urllib.error.URLError):
                time.sleep(0.1)
        else:
            pytest.fail("stand-in did not answer")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"https://127.0.0.1:{port}/api", context=context, timeout=2)
        err.value.close()  # the error holds the response and its TLS socket
        assert err.value.code == 404
        with pytest.raises((ssl.SSLError, ConnectionResetError, urllib.error.URLError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).read()
    finally:
        proc.terminate()
        proc.wait(5)
