"""lab/ksha_lab/qingcloud_dataplane.py: the QingCloud emulator's load balancers served by a real
haproxy (this machine's, as in the lab), on loopback addresses; what it serves is what the
emulator's UpdateLoadBalancers jobs applied, made by ksha's own state through qingcloud-sdk."""

import os
import signal
import socket
import socketserver
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ksha import qingcloud
from ksha_lab import qingcloud_api as api
from ksha_lab import qingcloud_dataplane as dataplane
from tests.conftest import free_port, load_salt_module

state = load_salt_module("states", "ksha_qingcloud")
KEY, SECRET = "QYDATAPLANE", "dataplane-secret"
IP = {"master1": "127.0.0.2", "master2": "127.0.0.3", "master3": "127.0.0.4"}
LB_ADDRESS = "127.0.0.100"

APPLIED = {
    "lb-1": {"loadbalancer_id": "lb-1", "addresses": ["10.0.0.100"], "listeners": [
        {"loadbalancer_listener_id": "lbl-1", "listener_port": 6443, "listener_protocol": "tcp",
         "balance_mode": "roundrobin", "healthy_check_method": "tcp", "healthy_check_option": "10|5|2|5",
         "backends": [{"name": "lbb-1", "address": "10.0.0.11", "port": 6443, "weight": 1},
                      {"name": "lbb-2", "address": "10.0.0.12", "port": 6443, "weight": 1}]}]},
    "lb-2": {"loadbalancer_id": "lb-2", "addresses": ["198.51.100.7"], "listeners": [
        {"loadbalancer_listener_id": "lbl-2", "listener_port": 30880, "listener_protocol": "http",
         "balance_mode": "leastconn", "healthy_check_method": "http|/healthz|console.local",
         "healthy_check_option": "5|2|3|2",
         "backends": [{"name": "lbb-3", "address": "10.0.0.21", "port": 30880, "weight": 2}]}]},
}  # fmt: skip


def test_the_applied_load_balancers_render_as_a_config_haproxy_accepts(tmp_path):
    text = dataplane.render(APPLIED)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    checked = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    api_proxy = text.split("listen lb-1-6443\n", 1)[1].split("\n\n", 1)[0].split("\n")
    assert [line.strip() for line in api_proxy] == [
        "bind 10.0.0.100:6443", "mode tcp", "balance roundrobin", "timeout check 5s",
        "server lbb-1 10.0.0.11:6443 weight 1 check inter 10s fall 2 rise 5",
        "server lbb-2 10.0.0.12:6443 weight 1 check inter 10s fall 2 rise 5",
    ]  # fmt: skip
    console = text.split("listen lb-2-30880\n", 1)[1].split("\n\n", 1)[0]
    assert "mode http" in console and "balance leastconn" in console
    assert "http-check send meth GET uri /healthz hdr Host console.local" in console
    assert "server lbb-3 10.0.0.21:30880 weight 2 check inter 5s fall 3 rise 2" in console
    assert not dataplane.listens({"lb-3": {"loadbalancer_id": "lb-3", "addresses": ["10.0.0.9"], "listeners": []}})


class Named(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def backend(name, address, port):
    """A TCP server on address:port that answers its name: an apiserver as the LB sees it."""

    class Answer(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.sendall(name.encode())

    server = Named((address, port), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def through_lb(port, tries=12):
    """The backends that answered `tries` connections to the LB's address (haproxy balances
    round robin among those its checks see up)."""
    seen = set()
    for _ in range(tries):
        try:
            with socket.create_connection((LB_ADDRESS, port), timeout=2) as conn:
                seen.add(conn.recv(64).decode())
        except OSError:
            seen.add(None)
    return seen


def until(predicate, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    return predicate()


@pytest.fixture
def served(tmp_path):
    """The emulator, its data plane, and a QingCloud instance per master whose "apiserver" answers
    its name: (cloud, data plane, LB port, apiserver port)."""
    plane = dataplane.DataPlane(tmp_path / "dataplane")
    cloud = api.Cloud(
        zone="lab1", keys={KEY: SECRET}, instances={f"i-{h}": ip for h, ip in IP.items()},
        vxnets={"vxnet-lab": "127.0.0.0/8"}, job_s=0.1, on_applied=plane,
    )  # fmt: skip
    server = api.serve(cloud)
    apiserver_port, lb_port = free_port(), free_port()
    servers = [backend(h, ip, apiserver_port) for h, ip in IP.items()]
    host, port = server.server_address
    settings = {"zone": "lab1", "access_key_id": KEY, "secret_access_key": SECRET, "credentials_file": None,
                "api": {"host": host, "port": port, "protocol": "http"}}  # fmt: skip
    state.__opts__ = {"test": False}
    state.__pillar__ = {"ksha": {"loadbalancer": {"qingcloud": settings}}}
    try:
        yield cloud, plane, lb_port, apiserver_port
    finally:
        plane.stop()
        server.shutdown()
        for s in servers:
            s.shutdown()
            s.server_close()


def sdk():
    """qingcloud-sdk on the emulator, as an operator's script would call it."""
    from qingcloud.iaas.connection import APIConnection

    at = state.__pillar__["ksha"]["loadbalancer"]["qingcloud"]["api"]
    return APIConnection(KEY, SECRET, "lab1", host=at["host"], port=at["port"], protocol="http", retry_time=1)


def present(lb_port, apiserver_port, masters):
    conf = {
        "cluster_name": "lab",
        "hosts": [{"name": h, "ip": ip, "qingcloud_instance_id": f"i-{h}"} for h, ip in IP.items()],
        "loadbalancer": {"mode": "qingcloud", "address": LB_ADDRESS, "port": lb_port, "console": {"port": 30880},
                         "qingcloud": {"vxnet": "vxnet-lab", "eip": None, "security_group": None,
                                       "loadbalancer_type": 0, "balance_mode": "roundrobin",
                                       "healthy_check_option": "2|5|2|2", "console_check": "tcp",
                                       "name_prefix": None, "rule_priority": 1}},
        "kubernetes": {"apiserver_port": apiserver_port},
        "kubesphere": {"console_port": 30880},
    }  # fmt: skip
    groups = {"kube-master": masters, "k8s-cluster": list(IP)}
    return state.loadbalancers_present("lb", qingcloud.wanted(conf, IP, groups), job_timeout_s=10)


def test_the_load_balancer_ksha_makes_forwards_to_the_masters_and_only_what_was_applied(served):
    cloud, plane, lb_port, apiserver_port = served
    ret = present(lb_port, apiserver_port, ["master1", "master2", "master3"])
    assert ret["result"] is True, ret["comment"]
    assert until(lambda: through_lb(lb_port) == {"master1", "master2", "master3"}), through_lb(lb_port)
    assert plane.errors == []

    # master3 out: one backend deleted, one update; the LB stops sending to it
    ret = present(lb_port, apiserver_port, ["master1", "master2"])
    assert ret["result"] is True and ret["changes"]["ksha-lab-apiserver"]["calls"] == [
        "DeleteLoadBalancerBackends", "UpdateLoadBalancers"]  # fmt: skip
    assert until(lambda: through_lb(lb_port) == {"master1", "master2"}), through_lb(lb_port)

    # a backend added without an UpdateLoadBalancers is not served (QingCloud applies on update)
    [(lb_id, _)] = list(cloud.snapshot()["loadbalancers"].items())
    [listener_id] = list(cloud.snapshot()["listeners"])
    added = sdk().add_backends_to_listener(listener_id, [{"resource_id": "i-master3", "port": apiserver_port}])
    assert added["ret_code"] == 0 and cloud.snapshot()["loadbalancers"][lb_id]["is_applied"] == 0
    time.sleep(1)
    assert through_lb(lb_port) == {"master1", "master2"}
    # ksha's next run sees it stale (not wanted), removes it and applies: still the two
    ret = present(lb_port, apiserver_port, ["master1", "master2"])
    assert ret["changes"]["ksha-lab-apiserver"]["calls"] == ["DeleteLoadBalancerBackends", "UpdateLoadBalancers"]
    assert f"{IP['master3']}:" not in (plane.workdir / "haproxy.cfg").read_text()
    assert f"{IP['master2']}:" in (plane.workdir / "haproxy.cfg").read_text()


def test_a_deleted_load_balancer_serves_nothing(served):
    cloud, plane, lb_port, apiserver_port = served
    assert present(lb_port, apiserver_port, ["master1"])["result"] is True
    assert until(lambda: through_lb(lb_port) == {"master1"})
    state.__opts__["test"] = False
    gone = state.loadbalancers_absent("lb", ["ksha-lab-apiserver", "ksha-lab-console"], job_timeout_s=10)
    assert gone["result"] is True and list(gone["changes"]["deleted"]) == ["ksha-lab-apiserver"], gone
    assert until(lambda: plane.pid() is None)
    assert through_lb(lb_port, tries=2) == {None}


def test_stop_ends_every_haproxy_of_the_data_plane_the_one_a_reload_left_too(tmp_path):
    """A reload (-sf) leaves the old haproxy serving the connections it holds (a client's kept-alive
    one keeps it alive); stopping the data plane, as a deleted load balancer does, ends them all,
    so such a client sees its connection end rather than hang on an address that is gone."""
    plane = dataplane.DataPlane(tmp_path / "dataplane")
    timeouts = "    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n"
    other = []
    for port in (free_port(), free_port()):  # two processes with this data plane's config: old, new
        plane.cfg.write_text(f"listen lb\n    bind 127.0.0.1:{port}\n    mode tcp\n{timeouts}")
        subprocess.run(["haproxy", "-D", "-f", str(plane.cfg), "-p", str(plane.pidfile)], check=True)
    unrelated = tmp_path / "other.cfg"  # another haproxy: not the data plane's
    unrelated.write_text(f"listen x\n    bind 127.0.0.1:{free_port()}\n    mode tcp\n{timeouts}")
    other_pid = tmp_path / "other.pid"
    subprocess.run(["haproxy", "-D", "-f", str(unrelated), "-p", str(other_pid)], check=True)
    other.append(int(other_pid.read_text().split()[0]))
    try:
        assert until(lambda: len(plane.processes()) == 2)
        plane.stop()
        assert plane.processes() == []
        assert Path(f"/proc/{other[0]}").exists()  # only the data plane's own
    finally:
        for pid in other + plane.processes():
            os.kill(pid, signal.SIGKILL)
