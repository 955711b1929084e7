"""Issue 14 in the lab: ksha:loadbalancer:mode qingcloud. orch.ksha makes and keeps ksha's QingCloud
load balancers through qingcloud-sdk, on the Salt master, against the lab's QingCloud API emulator
(lab/ksha_lab/qingcloud_api.py: every request's signature checked), whose data plane is a real
haproxy holding the load balancers' addresses on the lab's bridge (qingcloud_lab): the hosts reach
the apiservers (ksha's units of the stand-in) through it, with the backends the API says.

The module runs on the shared cluster as test_loadbalancer.py's last test left it (external mode,
or keepalived: either holds), and puts it back in keepalived mode itself (the switch away).
"""

import json
import subprocess

import pytest
import yaml

from ksha_lab import core, qingcloud_lab
from ksha_lab.qingcloud_api import Fault
from ksha_lab.standins import apiservers as standin
from tests.lab.conftest import converged_again, converged_lab, failed_states, wait_for
from tests.lab.test_loadbalancer import DOMAIN, MASTERS, request, vip_holders


@pytest.fixture(scope="module")
def cloud_lab(_lab_session):
    """The shared cluster as the test before left it, and the QingCloud emulator on the bridge."""
    lab, salt, _ = converged_lab(as_left=True)
    standin.share_ca(lab, [lab.hosts[n] for n in MASTERS])  # what request() verifies the apiservers with
    cloud = qingcloud_lab.LabCloud(lab)
    yield lab, salt, cloud
    cloud.stop()


def qingcloud_mode(cloud, **settings):
    def edit(ksha):
        ksha["loadbalancer"] = {
            "mode": "qingcloud", "address": cloud.internal_address, "port": 6443,
            "qingcloud": cloud.settings(**settings),
        }  # fmt: skip

    return edit


def writes(cloud, since=0):
    return [(c["action"], c["ret_code"]) for c in cloud.cloud.writes()[since:]]


def bridge_addresses():
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", core.BRIDGE], capture_output=True, text=True)
    return [line.split()[3].split("/")[0] for line in out.stdout.splitlines()]


def test_a_wrong_key_stops_the_run_at_preflight_before_any_host_is_touched(cloud_lab, lab_pillar):
    lab, _, cloud = cloud_lab
    wrong = cloud.credentials_file.with_name("wrong.yaml")
    wrong.write_text(yaml.safe_dump({"access_key_id": cloud.key_id, "secret_access_key": "not-the-secret-key"}))
    rc, states = lab_pillar.apply(qingcloud_mode(cloud, credentials_file=str(wrong)), until="lb")
    assert rc != 0
    check = states["ksha-preflight-qingcloud-api-answers"]
    assert check["result"] is False
    assert "ret_code 1200" in check["comment"]
    assert f"check ksha:loadbalancer:qingcloud:credentials_file ({wrong})" in check["comment"]
    # only the validation ran before it; nothing after it did
    assert [k for k, s in states.items() if s["result"] is True] == ["ksha-preflight-inventory-valid"]
    assert writes(cloud) == []
    shown = json.dumps(states)
    assert "not-the-secret-key" not in shown and cloud.secret not in shown and cloud.key_id not in shown
    # by credentials_file, the key is in no file of the master's (logs, job cache, pillar cache)
    found = subprocess.run(["grep", "-rlF", "-e", "not-the-secret-key", "-e", cloud.key_id, str(lab.master_dir)],
                           capture_output=True, text=True)  # fmt: skip
    assert found.returncode == 1 and found.stdout == "", found.stdout


def test_switching_to_qingcloud_makes_the_load_balancers_then_back_to_keepalived_deletes_them(cloud_lab, lab_pillar):
    lab, salt, cloud = cloud_lab
    ip = {name: host.ip for name, host in lab.hosts.items()}
    # a console stand-in on node1's console port, for the external load balancer to reach
    lab.exec(lab.hosts["node1"], "systemd-run", "--unit=ksha-test-console", "--", "python3", "-m", "http.server",
             "--directory", "/", "30880", check=True)  # fmt: skip
    # QingCloud busy twice when the first backends are added: retried, then done
    cloud.cloud.inject(Fault("AddLoadBalancerBackends", ret_code=5100, times=2))
    # the key in the pillar this time (the other way: credentials_file, above)
    in_pillar = qingcloud_mode(cloud, credentials_file=None, access_key_id=cloud.key_id, secret_access_key=cloud.secret)

    rc, states = lab_pillar.apply(in_pillar, until="lb")
    assert rc == 0, failed_states(states)
    assert writes(cloud) == [
        ("CreateLoadBalancer", 0), ("AddLoadBalancerListeners", 0),
        ("AddLoadBalancerBackends", 5100), ("AddLoadBalancerBackends", 5100), ("AddLoadBalancerBackends", 0),
        ("UpdateLoadBalancers", 0),
        ("CreateLoadBalancer", 0), ("AddLoadBalancerListeners", 0), ("AddLoadBalancerBackends", 0),
        ("UpdateLoadBalancers", 0),
        ("AddSecurityGroupRules", 0), ("ApplySecurityGroup", 0),
    ]  # fmt: skip
    order = list(states)
    assert order.index("ksha-phase-lb-reached-from-every-host") < order.index("ksha-phase-common-applied")
    lbs = {lb["loadbalancer_name"]: lb for lb in cloud.cloud.snapshot()["loadbalancers"].values()}
    assert sorted(lbs) == ["ksha-kubesphere-apiserver", "ksha-kubesphere-console"]
    assert all(lb["status"] == "active" and lb["is_applied"] == 1 for lb in lbs.values())
    # the data plane serves what the API applied: the masters behind the internal address, every
    # node behind the EIP's
    assert cloud.dataplane.errors == []
    served = cloud.dataplane.cfg.read_text()
    assert all(f" {ip[m]}:6443 " in served for m in MASTERS)
    assert all(f" {ip[h]}:30880 " in served for h in lab.hosts)
    assert {cloud.internal_address, cloud.eip_address} <= set(bridge_addresses())
    # no host holds the keepalived VIP; every host resolves the LB domain to the load balancer and
    # reaches the apiservers through it; the console through the external one
    assert vip_holders(lab, list(lab.hosts)) == []
    for host in lab.hosts.values():
        assert lab.exec(host, "getent", "hosts", DOMAIN).stdout.split() == [cloud.internal_address, DOMAIN]
        assert wait_for(lambda h=host: request(lab, h) == "200", 10), host.name

    def console():
        return lab.exec(lab.hosts["node2"], "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                        "3", f"http://{cloud.eip_address}:30880/").stdout.strip()  # fmt: skip

    # the other nodes serve no console: the load balancer's checks (every 2 s, the lab's
    # healthy_check_option) take them out
    assert wait_for(lambda: console() == "200", 30), console()

    # the same pillar again: QingCloud is described, nothing written
    before = len(cloud.cloud.writes())
    rc, states = lab_pillar.apply(in_pillar, until="lb")
    assert rc == 0, failed_states(states)
    assert writes(cloud, before) == []
    assert states["ksha-phase-lb-qingcloud-loadbalancers-present"]["comment"] == (
        "the load balancers are as wanted and applied"
    )

    # ksha.status: the load balancers as QingCloud reports them (the emulator measures backend
    # health: the masters' apiservers answer, of the nodes only node1 serves a console)
    rc, status, proc = salt.run("ksha.status", "output=data")
    assert rc == 0 and status["healthy"] is True, (proc.stdout[-3000:], proc.stderr[-2000:])
    shown = status["qingcloud"]
    assert sorted(shown) == ["ksha-kubesphere-apiserver", "ksha-kubesphere-console"]
    assert all(x["lb"]["status"] == "active" and x["lb"]["is_applied"] == 1 for x in shown.values())

    def health(name):
        [listener] = shown[name]["listeners"]
        return {b["loadbalancer_backend_name"]: b["status"] for b in listener["backends"]}

    assert health("ksha-kubesphere-apiserver") == dict.fromkeys(MASTERS, "up")
    assert health("ksha-kubesphere-console") == {h: "up" if h == "node1" else "down" for h in lab.hosts}
    assert cloud.secret not in proc.stdout + proc.stderr and cloud.key_id not in proc.stdout + proc.stderr

    # back to the seed's keepalived LB, the key kept: ksha's load balancers and rules go once the
    # hosts use the VIP, and the data plane lets their addresses go
    before = len(cloud.cloud.writes())

    def keepalived_again(ksha):
        ksha["loadbalancer"]["qingcloud"] = cloud.settings(
            credentials_file=None, access_key_id=cloud.key_id, secret_access_key=cloud.secret
        )

    rc, states = lab_pillar.apply(keepalived_again, until="lb")
    assert rc == 0, failed_states(states)
    assert writes(cloud, before) == [("DeleteLoadBalancers", 0), ("DeleteSecurityGroupRules", 0),
                                     ("ApplySecurityGroup", 0)]  # fmt: skip
    order = list(states)
    assert order.index("ksha-phase-lb-keepalived-haproxy-applied") < order.index(
        "ksha-phase-lb-qingcloud-unwanted-absent"
    )
    assert all(lb["status"] == "deleted" for lb in cloud.cloud.snapshot()["loadbalancers"].values())
    assert cloud.dataplane.pid() is None
    assert not {cloud.internal_address, cloud.eip_address} & set(bridge_addresses())
    assert wait_for(lambda: vip_holders(lab, MASTERS) == ["master1"], 20), vip_holders(lab, MASTERS)
    for host in lab.hosts.values():
        assert wait_for(lambda h=host: request(lab, h) == "200", 10), host.name
    # up to the LB phase, the hosts are as the original pillar has them (the QingCloud settings
    # kept in the pillar change no host's states)
    lab_pillar.converged()
    converged_again(lab, "lb")

    # the key is nowhere in the master's logs, job cache or other files, nor in any minion's logs
    # or cache. But for the master's cache of each minion's pillar (cache/pillar, Salt's
    # minion_data_cache), which holds the pillar as it is: a key in the pillar is stored there
    # (the validator's warning says so; credentials_file keeps it out)
    master = lab.master_dir
    found = subprocess.run(["grep", "-rlF", "-e", cloud.secret, "-e", cloud.key_id, str(master)],
                           capture_output=True, text=True)  # fmt: skip
    assert found.returncode in (0, 1), found.stderr
    stored = found.stdout.split()
    assert stored and all(path.startswith(f"{master}/cache/pillar/") for path in stored), stored
    for host in lab.hosts.values():
        found = lab.exec(host, "grep", "-rlF", "-e", cloud.secret, "-e", cloud.key_id, "/var/log/salt",
                         "/var/cache/salt")  # fmt: skip
        assert found.returncode == 1 and found.stdout == "", (host.name, found.stdout)
    lab.exec(lab.hosts["node1"], "systemctl", "stop", "ksha-test-console")
