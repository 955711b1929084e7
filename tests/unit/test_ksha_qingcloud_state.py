"""salt/_states/ksha_qingcloud.py, loadbalancers_present: the real qingcloud-sdk against the lab's
QingCloud API emulator (lab/ksha_lab/qingcloud_api.py, signatures checked), on this machine."""

import logging
import socket

import pytest

from ksha import qingcloud
from ksha import qingcloud_client as client
from ksha_lab import qingcloud_api as api
from tests.conftest import load_salt_module

state = load_salt_module("states", "ksha_qingcloud")
KEY, SECRET = "QYSTATETEST", "state-secret-never-shown"
IP = {"master1": "127.0.0.1", "master2": "127.0.0.2", "master3": "127.0.0.3", "node1": "127.0.0.4"}
GROUPS = {"kube-master": ["master1", "master2", "master3"], "k8s-cluster": list(IP)}


def conf(eip=None, masters=("master1", "master2", "master3")):
    return {
        "cluster_name": "lab",
        "hosts": [{"name": h, "ip": ip} for h, ip in IP.items()],
        "loadbalancer": {"mode": "qingcloud", "address": "127.0.0.100", "port": 6443, "console": {"port": 30880}, "qingcloud": {
            "vxnet": "vxnet-lab", "eip": eip, "security_group": "sg-lab", "loadbalancer_type": 0,
            "balance_mode": "roundrobin", "healthy_check_option": "10|5|2|5", "console_check": "tcp",
            "name_prefix": None, "rule_priority": 1}},
        "kubernetes": {"apiserver_port": 6443},
        "kubesphere": {"console_port": 30880},
    }, {**GROUPS, "kube-master": list(masters)}  # fmt: skip


@pytest.fixture
def cloud():
    return api.Cloud(
        zone="lab1", keys={KEY: SECRET},
        instances={"i-m1": "127.0.0.1", "i-m2": "127.0.0.2", "i-m3": "127.0.0.3", "i-n1": "127.0.0.4"},
        vxnets={"vxnet-lab": "127.0.0.0/8"}, eips={"eip-console": "198.51.100.7"},
        security_groups={"sg-lab": {"name": "lab"}}, job_s=0.1, probe=lambda ip, port, check: False,
    )  # fmt: skip


@pytest.fixture
def configure_loader_modules(cloud):
    server = api.serve(cloud)
    host, port = server.server_address
    settings = {"zone": "lab1", "access_key_id": KEY, "secret_access_key": SECRET, "credentials_file": None,
                "api": {"host": host, "port": port, "protocol": "http"}}  # fmt: skip
    yield {state: {"__opts__": {"test": False}, "__pillar__": {"ksha": {"loadbalancer": {"qingcloud": settings}}}}}
    server.shutdown()


def present(c, groups, test=False):
    state.__opts__["test"] = test
    return state.loadbalancers_present(
        "ksha-qingcloud", qingcloud.wanted(c, IP, groups), rules=qingcloud.wanted_rules(c), security_group="sg-lab",
        rule_names=qingcloud.rule_names(c), job_timeout_s=10,
    )  # fmt: skip


def writes(cloud, since=0):
    return [c["action"] for c in cloud.writes()[since:]]


def test_from_nothing_to_both_load_balancers_then_a_rerun_writes_nothing(cloud):
    c, groups = conf(eip="eip-console")
    plan = present(c, groups, test=True)
    assert plan["result"] is None and writes(cloud) == []
    assert plan["changes"]["ksha-lab-apiserver"] == {"would call": [
        "CreateLoadBalancer", "AddLoadBalancerListeners", "AddLoadBalancerBackends", "UpdateLoadBalancers"]}  # fmt: skip
    assert plan["changes"]["sg-lab"] == {"would call": ["AddSecurityGroupRules", "ApplySecurityGroup"]}

    ret = present(c, groups)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"]["ksha-lab-apiserver"]["calls"] == [
        "CreateLoadBalancer", "AddLoadBalancerListeners", "AddLoadBalancerBackends", "UpdateLoadBalancers"]  # fmt: skip
    shown = cloud.snapshot()
    lbs = {lb["loadbalancer_name"]: lb for lb in shown["loadbalancers"].values()}
    assert lbs["ksha-lab-apiserver"]["private_ips"] == ["127.0.0.100"] and lbs["ksha-lab-apiserver"]["is_applied"] == 1
    assert [e["eip_id"] for e in lbs["ksha-lab-console"]["eips"]] == ["eip-console"]
    backends = {(b["loadbalancer_id"], b["resource_id"], b["port"]) for b in shown["backends"].values()}
    api_id, console_id = lbs["ksha-lab-apiserver"]["loadbalancer_id"], lbs["ksha-lab-console"]["loadbalancer_id"]
    assert {(r, p) for i, r, p in backends if i == api_id} == {("i-m1", 6443), ("i-m2", 6443), ("i-m3", 6443)}
    assert {(r, p) for i, r, p in backends if i == console_id} == {(i, 30880) for i in ("i-m1", "i-m2", "i-m3", "i-n1")}
    rules = shown["security_groups"]["sg-lab"]["rules"].values()
    assert (
        sorted(r["val1"] for r in rules) == ["30880", "6443"] and shown["security_groups"]["sg-lab"]["is_applied"] == 1
    )

    before = len(cloud.writes())
    again = present(c, groups)
    assert (again["result"], again["changes"]) == (True, {}) and writes(cloud, before) == []
    assert present(c, groups, test=True)["result"] is True


def test_a_master_added_then_one_removed_changes_the_backends_with_one_update_each(cloud):
    c, groups = conf(masters=("master1", "master2"))
    assert present(c, groups)["result"] is True
    c, groups = conf(masters=("master1", "master2", "master3"))
    before = len(cloud.writes())
    ret = present(c, groups)
    assert ret["changes"]["ksha-lab-apiserver"]["calls"] == ["AddLoadBalancerBackends", "UpdateLoadBalancers"]
    assert writes(cloud, before) == ["AddLoadBalancerBackends", "UpdateLoadBalancers"]
    added = [call for call in cloud.calls if call["action"] == "AddLoadBalancerBackends"][-1]["params"]
    assert [v for k, v in added.items() if k.endswith("resource_id")] == ["i-m3"]
    c, groups = conf(masters=("master2", "master3"))
    before = len(cloud.writes())
    present(c, groups)
    assert writes(cloud, before) == ["DeleteLoadBalancerBackends", "UpdateLoadBalancers"]
    resources = {b["resource_id"] for b in cloud.snapshot()["backends"].values()}
    assert resources == {"i-m2", "i-m3"}


def test_busy_twice_then_ok_succeeds_and_a_failed_job_fails_with_its_id(cloud, monkeypatch):
    monkeypatch.setattr(client.time, "sleep", lambda s: None)  # the backoff's, not the jobs' (they run on)
    c, groups = conf()
    cloud.inject(api.Fault("AddLoadBalancerListeners", ret_code=5100, times=2))
    ret = present(c, groups)
    assert ret["result"] is True, ret["comment"]
    assert [x["ret_code"] for x in cloud.calls if x["action"] == "AddLoadBalancerListeners"] == [5100, 5100, 0]

    c, groups = conf(masters=("master1",))
    cloud.inject(api.Fault("UpdateLoadBalancers", job="failed"))
    failed = present(c, groups)
    job = [j for j in cloud.snapshot()["jobs"].values() if j["status"] == "failed"][0]
    assert failed["result"] is False
    assert failed["comment"].startswith(f"UpdateLoadBalancers: QingCloud's job {job['job_id']} ended failed"), failed[
        "comment"
    ]
    # what was called before the failure is in the changes: it happened
    assert failed["changes"]["ksha-lab-apiserver"]["calls"] == ["DeleteLoadBalancerBackends", "UpdateLoadBalancers"]


def test_a_refusal_that_is_not_busy_fails_at_once_with_qingcloud_s_code(cloud):
    c, groups = conf()
    cloud.inject(api.Fault("CreateLoadBalancer", ret_code=1100, message="InvalidParameter, [vxnet] is wrong"))
    ret = present(c, groups)
    assert ret["result"] is False
    assert ret["comment"] == "CreateLoadBalancer: QingCloud answered ret_code 1100: InvalidParameter, [vxnet] is wrong"
    assert [x["ret_code"] for x in cloud.calls if x["action"] == "CreateLoadBalancer"] == [1100]


def test_a_wrong_secret_fails_naming_the_keys_and_never_shows_them(cloud, caplog):
    state.__pillar__["ksha"]["loadbalancer"]["qingcloud"]["secret_access_key"] = "not-the-secret"
    c, groups = conf()
    with caplog.at_level(logging.DEBUG):
        ret = present(c, groups)
    assert ret["result"] is False
    assert "ret_code 1200" in ret["comment"] and "access_key_id and secret_access_key" in ret["comment"]
    shown = repr(ret) + caplog.text + repr(cloud.calls)
    assert "not-the-secret" not in shown and SECRET not in shown and KEY not in shown


def test_the_preflight_check_reads_only_and_fails_a_wrong_key_naming_the_keys(cloud, caplog):
    for test in (False, True):  # read-only: the same under test=True
        state.__opts__["test"] = test
        ret = state.api_answers("ksha-preflight-qingcloud-api-answers")
        assert ret["result"] is True and ret["changes"] == {}, ret
        assert "answers ksha's key in zone lab1" in ret["comment"]
    assert writes(cloud) == [] and [c["action"] for c in cloud.calls] == ["DescribeLoadBalancers"] * 2
    state.__opts__["test"] = False
    state.__pillar__["ksha"]["loadbalancer"]["qingcloud"]["secret_access_key"] = "not-the-secret"
    with caplog.at_level(logging.DEBUG):
        ret = state.api_answers("ksha-preflight-qingcloud-api-answers")
    assert ret["result"] is False
    assert "ret_code 1200" in ret["comment"] and "access_key_id and secret_access_key" in ret["comment"]
    shown = repr(ret) + caplog.text + repr(cloud.calls)
    assert "not-the-secret" not in shown and SECRET not in shown and KEY not in shown


def test_the_key_from_a_credentials_file(cloud, tmp_path):
    path = tmp_path / "qingcloud.yaml"
    path.write_text(f"access_key_id: {KEY}\nsecret_access_key: {SECRET}\n")
    settings = state.__pillar__["ksha"]["loadbalancer"]["qingcloud"]
    settings.update(access_key_id=None, secret_access_key=None, credentials_file=str(path))
    c, groups = conf()
    assert present(c, groups)["result"] is True
    path.write_text("access_key_id: only\n")
    ret = present(c, groups)
    assert ret["result"] is False and ret["comment"].startswith("ksha:loadbalancer:qingcloud:credentials_file:")


def test_a_host_with_no_instance_is_named(cloud):
    del cloud.instances["i-m3"]
    c, groups = conf()
    ret = present(c, groups)
    assert ret["result"] is False and ret["comment"].startswith(
        "no QingCloud instance in vxnet-lab has the ip of master3"
    )


def test_an_lb_of_ksha_s_name_at_another_address_is_refused_and_left_alone(cloud):
    c, groups = conf()
    assert present(c, groups)["result"] is True
    c["loadbalancer"]["address"] = "127.0.0.99"
    before = len(cloud.writes())
    ret = present(c, groups)
    assert ret["result"] is False and "ksha:loadbalancer:address" in ret["comment"]
    assert writes(cloud, before) == []


def test_an_endpoint_that_does_not_answer_fails_naming_the_key(cloud):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    state.__pillar__["ksha"]["loadbalancer"]["qingcloud"]["api"]["port"] = port
    c, groups = conf()
    ret = present(c, groups)
    assert ret["result"] is False
    assert ret["comment"].startswith(f"DescribeInstances: cannot reach the QingCloud API at 127.0.0.1:{port}")
    assert ret["comment"].endswith("check ksha:loadbalancer:qingcloud:api")


def test_instances_are_matched_in_the_hosts_vxnet_only_and_an_address_twice_there_is_refused(cloud):
    cloud.vxnets["vxnet-other"] = "127.0.0.0/8"
    cloud.instances["i-other"] = ("vxnet-other", "127.0.0.2")  # a VPC reusing master2's address
    c, groups = conf()
    assert present(c, groups)["result"] is True
    assert {b["resource_id"] for b in cloud.snapshot()["backends"].values()} == {"i-m1", "i-m2", "i-m3"}
    cloud.instances["i-clone"] = ("vxnet-lab", "127.0.0.3")
    ret = present(c, groups)
    assert ret["result"] is False
    assert ret["comment"].startswith("more than one instance in vxnet-lab has the ip of master3")


def test_an_internal_error_is_retried_for_a_read_but_not_for_a_create(cloud, monkeypatch):
    monkeypatch.setattr(client.time, "sleep", lambda s: None)
    c, groups = conf()
    cloud.inject(api.Fault("DescribeLoadBalancers", ret_code=5000, times=1))
    cloud.inject(api.Fault("CreateLoadBalancer", ret_code=5000, times=1))
    ret = present(c, groups)
    # the read again, then the create refused once and not retried: it may have been done
    assert [x["ret_code"] for x in cloud.calls if x["action"] == "DescribeLoadBalancers"][:2] == [5000, 0]
    assert [x["ret_code"] for x in cloud.calls if x["action"] == "CreateLoadBalancer"] == [5000]
    assert ret["result"] is False and ret["comment"].startswith("CreateLoadBalancer: QingCloud answered ret_code 5000")
    assert present(c, groups)["result"] is True  # the next run creates it


def test_a_job_done_with_failure_fails_the_state_at_once(cloud):
    c, groups = conf()
    cloud.inject(api.Fault("CreateLoadBalancer", job="done with failure"))
    ret = present(c, groups)
    assert ret["result"] is False
    assert "ended done with failure" in ret["comment"] and ret["comment"].startswith("CreateLoadBalancer: ")


def absent(c, test=False):
    state.__opts__["test"] = test
    return state.loadbalancers_absent("ksha-qingcloud-unwanted", **qingcloud.absent(c), job_timeout_s=10)


def operator():
    """qingcloud-sdk as the operator would use it, on the emulator: what ksha did not make."""
    from qingcloud.iaas.connection import APIConnection

    api_at = state.__pillar__["ksha"]["loadbalancer"]["qingcloud"]["api"]
    return APIConnection(KEY, SECRET, "lab1", host=api_at["host"], port=api_at["port"], protocol="http", retry_time=1)


def live_lbs(cloud):
    return sorted(lb["loadbalancer_name"] for lb in cloud.snapshot()["loadbalancers"].values()
                  if lb["status"] not in ("deleted", "ceased"))  # fmt: skip


def test_switching_away_deletes_ksha_s_load_balancers_and_rules_and_nothing_else(cloud):
    c, groups = conf(eip="eip-console")
    assert present(c, groups)["result"] is True
    theirs = operator()
    assert theirs.create_loadbalancer(vxnet="vxnet-lab", loadbalancer_name="their-lb", private_ip="127.0.0.50")[
        "ret_code"
    ] == 0  # fmt: skip
    rule = {"security_group_rule_name": "their-ssh", "protocol": "tcp", "priority": 1, "action": "accept",
            "direction": 0, "val1": "22", "val2": "22"}  # fmt: skip
    assert theirs.add_security_group_rules("sg-lab", [rule])["ret_code"] == 0
    c["loadbalancer"].update(mode="keepalived", address="127.0.0.200")  # the keepalived VIP now

    before = len(cloud.writes())
    plan = absent(c, test=True)
    assert plan["result"] is None and writes(cloud, before) == []
    assert {k: v["would call"] for k, v in plan["changes"].items()} == {
        "ksha-lab-apiserver": ["DeleteLoadBalancers"], "ksha-lab-console": ["DeleteLoadBalancers"],
        "sg-lab": ["DeleteSecurityGroupRules", "ApplySecurityGroup"],
    }  # fmt: skip

    ret = absent(c)
    assert ret["result"] is True, ret["comment"]
    assert writes(cloud, before) == ["DeleteLoadBalancers", "DeleteSecurityGroupRules", "ApplySecurityGroup"]
    assert live_lbs(cloud) == ["their-lb"]
    rules = cloud.snapshot()["security_groups"]["sg-lab"]["rules"].values()
    assert [r["security_group_rule_name"] for r in rules] == ["their-ssh"]
    # again: nothing of ksha's is left, nothing is written
    before = len(cloud.writes())
    again = absent(c)
    assert (again["result"], again["changes"], writes(cloud, before)) == (True, {}, [])
    assert again["comment"] == state.NOTHING_TO_DELETE


def test_the_console_s_load_balancer_goes_once_the_eip_is_unset(cloud):
    c, groups = conf(eip="eip-console")
    assert present(c, groups)["result"] is True
    c["loadbalancer"]["qingcloud"]["eip"] = None
    assert qingcloud.unwanted(c) == ["ksha-lab-console"]
    ret = absent(c)
    assert ret["result"] is True and ret["changes"] == {"deleted": {"ksha-lab-console": ret["changes"]["deleted"][
        "ksha-lab-console"]}}  # fmt: skip
    assert live_lbs(cloud) == ["ksha-lab-apiserver"]
    # the console's rule goes with the rules the present state keeps (wanted_rules)
    before = len(cloud.writes())
    assert present(c, groups)["result"] is True
    assert writes(cloud, before) == ["DeleteSecurityGroupRules", "ApplySecurityGroup"]


def test_a_load_balancer_carrying_a_listener_ksha_did_not_make_is_not_deleted(cloud):
    c, groups = conf()
    assert present(c, groups)["result"] is True
    [lb_id] = [
        i for i, lb in cloud.snapshot()["loadbalancers"].items() if lb["loadbalancer_name"] == "ksha-lab-apiserver"
    ]
    listener = {"listener_port": 8080, "listener_protocol": "tcp", "backend_protocol": "tcp",
                "loadbalancer_listener_name": "their-app"}  # fmt: skip
    assert operator().add_listeners_to_loadbalancer(lb_id, [listener])["ret_code"] == 0
    c["loadbalancer"].update(mode="keepalived", address="127.0.0.200")
    before = len(cloud.writes())
    for test in (True, False):
        ret = absent(c, test=test)
        assert ret["result"] is False and ret["changes"] == {}
        assert ret["comment"] == (
            f"{lb_id} (ksha-lab-apiserver) is no longer wanted, but ksha does not delete it: it has listener(s) "
            "ksha did not make (their-app); remove them, or delete the load balancer in QingCloud yourself"
        )
    assert writes(cloud, before) == [] and "ksha-lab-apiserver" in live_lbs(cloud)


def test_switching_to_external_mode_at_the_address_of_ksha_s_load_balancer_deletes_nothing(cloud):
    """External mode pointed at the load balancer ksha made (an operator taking it over): it still
    carries the API, so it is refused, naming the key, and nothing is deleted."""
    c, groups = conf()
    assert present(c, groups)["result"] is True
    c["loadbalancer"]["mode"] = "external"
    before = len(cloud.writes())
    ret = absent(c)
    assert ret["result"] is False and writes(cloud, before) == []
    assert "is at ksha:loadbalancer:address (127.0.0.100), which the cluster still uses" in ret["comment"]
    assert "ksha-lab-apiserver" in live_lbs(cloud)


def test_the_preflight_refuses_a_deletion_the_lb_phase_would_refuse_and_names_what_it_would_delete(cloud):
    """The same refusal, before any host is touched: the preflight is given what the LB phase
    would delete (the plan's step arguments)."""
    c, groups = conf(eip="eip-console")
    assert present(c, groups)["result"] is True
    before = len(cloud.calls)
    c["loadbalancer"]["mode"] = "external"
    gone = qingcloud.absent(c)
    for test in (False, True):
        state.__opts__["test"] = test
        ret = state.api_answers("preflight", unwanted=gone["loadbalancers"], address=gone["address"])
        assert ret["result"] is False and ret["changes"] == {}
        assert "is at ksha:loadbalancer:address (127.0.0.100), which the cluster still uses" in ret["comment"]
        assert "remove ksha:loadbalancer:qingcloud's zone and key" in ret["comment"]
    # back to keepalived at another address: both may go, and the preflight says so
    c["loadbalancer"].update(mode="keepalived", address="127.0.0.200")
    gone = qingcloud.absent(c)
    ret = state.api_answers("preflight", unwanted=gone["loadbalancers"], address=gone["address"])
    assert ret["result"] is True
    ids = {lb["loadbalancer_name"]: i for i, lb in cloud.snapshot()["loadbalancers"].items()}
    assert ret["comment"].endswith(
        f"; the LB phase deletes ksha-lab-apiserver ({ids['ksha-lab-apiserver']}), "
        f"ksha-lab-console ({ids['ksha-lab-console']})"
    )
    assert all(x["action"].startswith("Describe") for x in cloud.calls[before:])  # read-only


def test_the_status_runner_reads_ksha_s_load_balancers_and_names_the_key_when_the_api_fails(cloud):
    runner = load_salt_module("runners", "ksha_runner")
    c, groups = conf(eip="eip-console")
    present(c, groups)
    settings = state.__pillar__["ksha"]["loadbalancer"]["qingcloud"]
    names = list(qingcloud.lb_names(c).values())
    found, error = runner._qingcloud_view({"loadbalancer": {"qingcloud": settings}}, names)
    assert error is None and sorted(found) == sorted(names)
    lines, problem = qingcloud.status_rows(names, found)
    assert problem is False and lines[0].endswith(": active, applied"), lines
    assert "listener 6443/tcp: master1 down, master2 down, master3 down" in lines[1]  # the probe says down
    wrong = {**settings, "secret_access_key": "not-the-secret"}
    found, error = runner._qingcloud_view({"loadbalancer": {"qingcloud": wrong}}, names)
    assert found == {} and "ret_code 1200" in error and "access_key_id and secret_access_key" in error
    assert "not-the-secret" not in error and SECRET not in error


def test_a_wrong_key_from_a_file_names_the_file_and_a_missing_group_names_its_key(cloud, tmp_path):
    path = tmp_path / "qingcloud.yaml"
    path.write_text(f"access_key_id: {KEY}\nsecret_access_key: not-the-secret\n")
    settings = state.__pillar__["ksha"]["loadbalancer"]["qingcloud"]
    settings.update(access_key_id=None, secret_access_key=None, credentials_file=str(path))
    ret = state.api_answers("ksha-preflight-qingcloud-api-answers")
    assert ret["result"] is False
    assert ret["comment"].endswith(f"(check ksha:loadbalancer:qingcloud:credentials_file ({path}))")
    path.write_text(f"access_key_id: {KEY}\nsecret_access_key: {SECRET}\n")
    c, groups = conf()
    state.__opts__["test"] = False
    ret = state.loadbalancers_present(
        "ksha-qingcloud", qingcloud.wanted(c, IP, groups), rules=qingcloud.wanted_rules(c), security_group="sg-gone",
        rule_names=qingcloud.rule_names(c), job_timeout_s=10,
    )  # fmt: skip
    assert ret["result"] is False
    assert ret["comment"] == (
        "DescribeSecurityGroups: QingCloud has no security group sg-gone in this zone; check "
        "ksha:loadbalancer:qingcloud:security_group"
    )


def test_an_sdk_error_carrying_the_request_shows_neither_the_key_nor_the_signature():
    conn = type("Conn", (), {"qy_access_key_id": KEY, "qy_secret_access_key": SECRET})()
    text = f"bad URL /iaas/?access_key_id={KEY}&action=X&signature=abc%2Bdef%3D&x={SECRET}"
    assert client._scrubbed(conn, text) == "bad URL /iaas/?access_key_id=***&action=X&signature=***&x=***"


def test_the_model_s_connection_settings_with_the_key_from_the_file_or_the_master_s_pillar(cloud, tmp_path):
    """The plan passes the model's zone, api and credentials_file; the key comes from that file, or
    from the pillar the orchestration compiles for the master's own ID."""
    mine = state.__pillar__["ksha"]["loadbalancer"]["qingcloud"]
    connection = {"zone": "lab1", "api": dict(mine["api"]), "credentials_file": None}
    assert state.api_answers("preflight", connection=connection)["result"] is True  # the key in the pillar
    path = tmp_path / "qingcloud.yaml"
    path.write_text(f"access_key_id: {KEY}\nsecret_access_key: {SECRET}\n")
    state.__pillar__.clear()  # the master's own pillar without ksha: the file is enough
    assert state.api_answers("preflight", connection={**connection, "credentials_file": str(path)})["result"] is True
    state.__opts__["id"] = "saltmaster_master"
    ret = state.api_answers("preflight", connection=connection)
    assert ret["result"] is False
    assert ret["comment"] == (
        "ksha:loadbalancer:qingcloud: no API key in the pillar the orchestration compiles for saltmaster_master: "
        "give it the ksha pillar in the pillar top (as '*' does), or set credentials_file"
    )
