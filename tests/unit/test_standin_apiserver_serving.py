"""The kube-apiserver stand-in of the lab's release serves with the files its real flags name:
TLS with its certificate, client certificates from --client-ca-file, and /readyz that follows a
real etcd (this machine's, over TLS with the etcd client certificate)."""

import json
import shutil
import signal
import ssl
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import (
    STANDIN_VERSION,
    free_port,
    https_get,
    start_etcd,
    start_standin_apiserver,
    wait_for_status,
)


def test_ready_while_etcd_is_healthy_and_not_ready_without_it(standin_apiserver):
    port, files, etcd = standin_apiserver
    assert https_get(files, port, "/livez") == (200, "ok")
    status, body = https_get(files, port, "/version")
    assert status == 200 and json.loads(body)["gitVersion"] == STANDIN_VERSION
    # anonymous: the health paths and /version only (system:public-info-viewer); discovery needs a user
    assert https_get(files, port, "/api")[0] == 403
    status, body = https_get(files, port, "/api", client="client")  # a client of the CA
    assert status == 200 and json.loads(body)["kind"] == "APIVersions"
    with pytest.raises((urllib.error.URLError, ssl.SSLError)):  # a certificate of another CA is refused
        https_get(files, port, "/api", client="stranger")
    with pytest.raises((urllib.error.URLError, ConnectionResetError)):  # TLS only
        urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).read()
    etcd.kill()
    etcd.wait()
    status, body = wait_for_status(files, port, "/readyz", 500)  # etcd's health is asked at most once a second
    assert status == 500 and body.startswith("[-]etcd failed: ")
    assert https_get(files, port, "/livez") == (200, "ok")


def test_a_key_that_does_not_match_its_certificate_stops_it(standin_files):
    proc = start_standin_apiserver(standin_files, free_port(), "https://127.0.0.1:1", cert="client")
    assert proc.wait(timeout=30) == 1  # client.crt with server.key
    assert "failed to load the serving certificate" in proc.stderr.read()


@pytest.mark.parametrize("delay", [None, 2.0])
def test_sigterm_fails_readyz_serves_the_shutdown_delay_then_exits_0(standin_files, tmp_path, delay):
    """As the real apiserver terminates: /readyz fails at once (the LB takes it out), it serves
    for --shutdown-delay-duration, then stops listening, lets requests in flight finish, exit 0."""
    if not shutil.which("etcd"):
        pytest.skip("needs etcd (make apt)")
    etcd_url, etcd = start_etcd(standin_files, tmp_path / "etcd")
    port = free_port()
    extra = [f"--shutdown-delay-duration={delay:g}s"] if delay else []
    proc = start_standin_apiserver(standin_files, port, etcd_url, extra=extra)
    try:
        assert wait_for_status(standin_files, port, "/readyz", 200, proc) == (200, "ok")
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        if delay:
            status, body = wait_for_status(standin_files, port, "/readyz", 500, proc)
            assert (status, body) == (500, "[-]shutdown failed: reason withheld\nreadyz check failed\n")
            assert https_get(standin_files, port, "/livez") == (200, "ok")  # still serving
        assert proc.wait(timeout=30) == 0
        took = time.monotonic() - sent
        assert (delay or 0) <= took < (delay or 0) + 5, took
        with pytest.raises((urllib.error.URLError, ConnectionRefusedError)):
            https_get(standin_files, port, "/livez")
    finally:
        for p in (proc, etcd):
            p.kill()
            p.wait()
