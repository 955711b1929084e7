"""salt/_modules/ksha_lb.py under Salt's loader mock; probe() over TLS against the kube-apiserver stand-in
of the lab's release (this machine's etcd behind it)."""

import socket
import threading
from pathlib import Path
from unittest.mock import patch

import pytest

from tests.conftest import free_port, load_salt_module, model_functions

ksha_lb = load_salt_module("modules", "ksha_lb")

# `show stat` as the lab's haproxy 2.6 wrote it: master3's apiserver (stand-in) stopped.
STATS = (Path(__file__).resolve().parent.parent / "data" / "haproxy-2.6-show-stat.csv").read_text()


@pytest.fixture
def addrs():
    return {"v4": ["10.239.0.11"], "v6": []}


@pytest.fixture
def configure_loader_modules(example_ksha, addrs):
    return {
        ksha_lb: {
            "__salt__": {
                **model_functions(example_ksha, "master1"),
                "network.ip_addrs": lambda include_loopback=False: addrs["v4"],
                "network.ip_addrs6": lambda: addrs["v6"],
            },
        }
    }


def test_vip_holder(addrs):
    assert ksha_lb.vip_holder() == {"vip": "192.168.0.253", "held": False}
    addrs["v4"].append("192.168.0.253")
    assert ksha_lb.vip_holder() == {"vip": "192.168.0.253", "held": True}


def test_parse_stats_lists_servers_with_state_and_last_check():
    servers = ksha_lb.parse_stats(STATS, "ksha-apiserver")
    assert [(b["name"], b["state"], b["check"]) for b in servers] == [
        ("master1", "UP", "L7OK"),
        ("master2", "UP", "L7OK"),
        ("master3", "DOWN", "L4CON"),
    ]
    assert servers[2]["last_check"] == "Connection refused"
    assert ksha_lb.parse_stats(STATS, backend="other") == []


def test_backends_reads_a_real_unix_socket(tmp_path):
    path = str(tmp_path / "admin.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        assert conn.recv(100) == b"show stat\n"
        conn.sendall(STATS.encode())
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    out = ksha_lb.backends(socket_path=path)
    thread.join(5)
    server.close()
    assert out["result"] is True and [b["state"] for b in out["backends"]] == ["UP", "UP", "DOWN"]


def test_backends_without_haproxy(tmp_path):
    out = ksha_lb.backends(socket_path=str(tmp_path / "missing.sock"))
    assert out["result"] is False and "haproxy stats socket" in out["comment"]


@pytest.fixture
def standin(standin_apiserver):
    """The lab release's kube-apiserver stand-in, ready, on 127.0.0.1: (port, its CA)."""
    port, files, _ = standin_apiserver
    return port, files / "ca.crt"


def test_probe_verifies_the_lb_domain_against_the_ca(standin):
    port, ca = standin
    out = ksha_lb.probe(address="127.0.0.1", port=port, cafile=str(ca))
    assert (out["ok"], out["status"], out["verified"]) == (True, 200, True)


def test_probe_fails_on_a_name_the_certificate_does_not_cover(standin):
    port, ca = standin
    out = ksha_lb.probe(address="127.0.0.1", port=port, domain="api.example.com", cafile=str(ca))
    assert out["ok"] is False and "certificate" in out["error"].lower()


def test_probe_unverified_and_refused(standin):
    port, _ = standin
    assert ksha_lb.probe(address="127.0.0.1", port=port)["verified"] is False
    out = ksha_lb.probe(address="127.0.0.1", port=1, timeout=1)
    assert out["ok"] is False and out["status"] is None


@pytest.fixture
def silent_port():
    """A local port that drops SYNs, as a firewall does: a listener whose accept queue is full."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    clients = []
    while True:
        client = socket.socket()
        client.settimeout(0.3)
        try:
            client.connect(("127.0.0.1", port))
        except TimeoutError:
            client.close()
            break
        clients.append(client)
        assert len(clients) < 100, "the accept queue never filled"
    yield port
    for client in clients:
        client.close()
    server.close()


def test_reach_tells_accepted_from_refused_from_silent(standin, silent_port):
    port, _ = standin
    assert ksha_lb.reach(address="127.0.0.1", port=port)["listening"] is True
    refused = ksha_lb.reach(address="127.0.0.1", port=free_port())
    assert (refused["answered"], refused["listening"]) == (True, False)
    silent = ksha_lb.reach(address="127.0.0.1", port=silent_port, timeout=0.5)
    assert (silent["answered"], silent["listening"], silent["error"]) == (False, False, "timed out")


ksha_lb_state = load_salt_module("states", "ksha_lb")


@pytest.fixture
def lb_state(configure_loader_modules, addrs):
    """The ksha_lb state with the real ksha_lb execution module as its __salt__ (real sockets)."""
    salt = {"ksha_lb.reach": ksha_lb.reach, "ksha_lb.probe": ksha_lb.probe}
    with patch.dict(ksha_lb_state.__dict__, {"__salt__": salt, "__opts__": {"test": False}}, clear=False):
        yield ksha_lb_state


def test_reachable_state_expectations(lb_state, standin):
    port, ca = standin
    ret = lb_state.reachable("127.0.0.1", port=port, expect="ready", domain="lb.kubesphere.local", cafile=str(ca))
    assert ret == {
        "name": "127.0.0.1",
        "result": True,
        "changes": {},
        "comment": f"LB 127.0.0.1:{port}: GET /readyz as lb.kubesphere.local -> 200 (certificate verified)",
    }
    closed = free_port()
    assert lb_state.reachable("127.0.0.1", port=closed)["result"] is True  # answered: refused
    ret = lb_state.reachable("127.0.0.1", port=closed, expect="listen")
    assert ret["result"] is False and "refuses connections" in ret["comment"]
    ret = lb_state.reachable("127.0.0.1", port=port, expect="ready", domain="api.example.com", cafile=str(ca))
    assert ret["result"] is False and "GET /readyz through it failed" in ret["comment"]


def test_reachable_state_names_the_pillar_keys_when_silent(lb_state, silent_port):
    ret = lb_state.reachable("127.0.0.1", port=silent_port, timeout=0.5)
    assert ret["result"] is False
    assert ret["comment"] == (
        f"LB 127.0.0.1:{silent_port} does not answer from this host (timed out); check ksha:loadbalancer:address "
        f"and :port, and that the LB's firewall (security group) allows TCP {silent_port} from this host"
    )
    ret = lb_state.reachable("127.0.0.1", expect="ping")
    assert ret["result"] is False and "ksha:loadbalancer:external:check" in ret["comment"]


@pytest.mark.parametrize(
    "test, made_by_this_run, result",
    [(True, True, None), (True, False, False), (False, True, False), (False, False, False)],
)
def test_an_lb_this_run_makes_is_what_would_change_under_test_only(
    lb_state, silent_port, test, made_by_this_run, result
):
    lb_state.__opts__["test"] = test
    ret = lb_state.reachable("127.0.0.1", port=silent_port, timeout=0.5, made_by_this_run=made_by_this_run)
    assert ret["result"] is result
    assert ret["comment"].startswith(f"LB 127.0.0.1:{silent_port} does not answer from this host (timed out)")
    assert ("the QingCloud step before makes it" in ret["comment"]) is (result is None)
