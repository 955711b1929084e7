"""The lab's QingCloud API emulator (lab/ksha_lab/qingcloud_api.py): its signature check against
QingCloud's own documented example, and its answers to the real qingcloud-sdk 1.2.16."""

import socket
import time

import pytest
from qingcloud.iaas.connection import APIConnection

from ksha_lab import qingcloud_api as api

KEY, SECRET = "QYTESTKEYID0000000001", "s3cret-not-to-be-seen-anywhere"

# QingCloud's worked example of a request signature (docs.qingcloud.com, "API 文档" > "签名方法";
# the yunify/qingcloud-docs source: content/development_docs/api/signature.md).
DOC_PARAMS = {
    "count": 1, "vxnets.1": "vxnet-0", "zone": "pek3a", "instance_type": "small_b",
    "signature_version": 1, "signature_method": "HmacSHA256", "instance_name": "demo",
    "image_id": "centos64x86a", "login_mode": "passwd", "login_passwd": "QingCloud20130712", "version": 1,
    "access_key_id": "QYACCESSKEYIDEXAMPLE", "action": "RunInstances", "time_stamp": "2013-08-27T14:30:10Z",
}  # fmt: skip
DOC_STRING_TO_SIGN = (
    "GET\n/iaas/\naccess_key_id=QYACCESSKEYIDEXAMPLE&action=RunInstances&count=1&image_id=centos64x86a"
    "&instance_name=demo&instance_type=small_b&login_mode=passwd&login_passwd=QingCloud20130712"
    "&signature_method=HmacSHA256&signature_version=1&time_stamp=2013-08-27T14%3A30%3A10Z&version=1"
    "&vxnets.1=vxnet-0&zone=pek3a"
)
DOC_SIGNATURE = "byjccvWIvAftaq%2BoublemagH3bYAlDWxxLFAzAsyslw%3D"  # as the doc prints it, URL-encoded


def test_the_documented_example_is_signed_as_the_doc_signs_it():
    assert api.string_to_sign("GET", "/iaas/", DOC_PARAMS) == DOC_STRING_TO_SIGN
    assert api.urllib.parse.quote_plus(api.signature("SECRETACCESSKEY", "GET", "/iaas/", DOC_PARAMS)) == DOC_SIGNATURE


@pytest.mark.parametrize(
    ("value", "encoded"),
    [("a b", "a%20b"), ("http|/readyz", "http%7C%2Freadyz"), ("10.0.0.0/24", "10.0.0.0%2F24"), ("a~b-c_d.e", "a~b-c_d.e"),
     ("a+b*c", "a%2Bb%2Ac"), ("é", "%C3%A9")],
)  # fmt: skip
def test_values_are_encoded_as_qingcloud_signs_them(value, encoded):
    assert api.canonical_query({"k": value}) == f"k={encoded}"


def signed(params, secret=SECRET, at=None, method="GET"):
    stamp = api.iso(time.time() if at is None else at)
    params = {"access_key_id": KEY, "signature_version": "1", "version": "1", "signature_method": "HmacSHA256",
              "time_stamp": stamp, "zone": "lab1", **params}  # fmt: skip
    return {**params, "signature": api.signature(secret, method, "/iaas/", params)}


@pytest.fixture
def cloud():
    return api.Cloud(
        zone="lab1", keys={KEY: SECRET}, instances={"i-master1": "127.0.0.1", "i-node1": "127.0.0.2"},
        vxnets={"vxnet-lab": "127.0.0.0/8"}, eips={"eip-console": "198.51.100.7"},
        security_groups={"sg-lab": {"name": "lab"}}, job_s=0.2,
    )  # fmt: skip


def test_a_bad_signature_an_unknown_key_and_a_stale_time_stamp_are_refused(cloud):
    ok = cloud.request("GET", "/iaas/", signed({"action": "DescribeLoadBalancers"}))
    assert ok["ret_code"] == 0 and ok["loadbalancer_set"] == []
    assert (
        cloud.request("GET", "/iaas/", signed({"action": "DescribeLoadBalancers"}, secret="wrong"))["ret_code"] == 1200
    )
    unknown = signed({"action": "DescribeLoadBalancers", "access_key_id": "QYOTHER"})
    assert cloud.request("GET", "/iaas/", unknown)["ret_code"] == 1200
    tampered = {**signed({"action": "DescribeLoadBalancers"}), "limit": "5"}
    assert cloud.request("GET", "/iaas/", tampered)["ret_code"] == 1200
    stale = cloud.request("GET", "/iaas/", signed({"action": "DescribeLoadBalancers"}, at=time.time() - 61))
    assert stale["ret_code"] == 1300 and "time_stamp" in stale["message"]
    assert (
        cloud.request("GET", "/iaas/", signed({"action": "DescribeLoadBalancers"}, at=time.time() + 50))["ret_code"]
        == 0
    )
    # signed for GET, sent as POST: another string to sign
    assert cloud.request("POST", "/iaas/", signed({"action": "DescribeLoadBalancers"}))["ret_code"] == 1200
    assert cloud.request("GET", "/iaas/", signed({"action": "RunInstances"}))["ret_code"] == 1101
    assert cloud.request("GET", "/iaas/", signed({"action": "DescribeJobs", "zone": "pek3a"}))["ret_code"] == 2100
    assert SECRET not in repr(cloud.calls)
    assert all("signature" not in c["params"] and "access_key_id" not in c["params"] for c in cloud.calls)


@pytest.fixture
def sdk(cloud):
    """The real qingcloud-sdk against the emulator, over HTTP on this machine (no retry of its
    own: retry_time is its number of attempts)."""
    server = api.serve(cloud)
    host, port = server.server_address
    yield APIConnection(KEY, SECRET, "lab1", host=host, port=port, protocol="http", retry_time=1)
    server.shutdown()


def wait_job(sdk, job_id, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = sdk.describe_jobs(jobs=[job_id])["job_set"][0]
        if job["status"] in ("successful", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']}")


def test_the_sdk_creates_a_load_balancer_with_a_listener_and_backends_applied_by_a_job(cloud, sdk):
    made = sdk.create_loadbalancer(vxnet="vxnet-lab", private_ip="127.0.0.9", loadbalancer_name="ksha-apiserver")
    assert made["ret_code"] == 0, made
    lb_id = made["loadbalancer_id"]
    lb = sdk.describe_loadbalancers(loadbalancers=[lb_id])["loadbalancer_set"][0]
    assert (lb["status"], lb["transition_status"]) == ("pending", "creating")
    # a pending load balancer takes no listener
    refused = sdk.add_listeners_to_loadbalancer(lb_id, [{"listener_port": 6443, "listener_protocol": "tcp",
                                                        "backend_protocol": "tcp"}])  # fmt: skip
    assert refused["ret_code"] == 1400
    assert wait_job(sdk, made["job_id"])["status"] == "successful"
    lb = sdk.describe_loadbalancers(loadbalancers=[lb_id])["loadbalancer_set"][0]
    assert (lb["status"], lb["is_applied"], lb["private_ips"]) == ("active", 1, ["127.0.0.9"])

    listener = {"listener_port": 6443, "listener_protocol": "tcp", "backend_protocol": "tcp",
                "balance_mode": "roundrobin", "healthy_check_method": "tcp", "healthy_check_option": "10|5|2|5"}  # fmt: skip
    added = sdk.add_listeners_to_loadbalancer(lb_id, [listener])
    assert added["ret_code"] == 0, added
    (listener_id,) = added["loadbalancer_listeners"]
    assert sdk.describe_loadbalancers(loadbalancers=[lb_id])["loadbalancer_set"][0]["is_applied"] == 0

    with socket.create_server(("127.0.0.1", 0)) as backend:  # master1's "apiserver"
        port = backend.getsockname()[1]
        backends = [{"resource_id": "i-master1", "port": port, "weight": 1},
                    {"resource_id": "i-node1", "port": port, "weight": 1}]  # fmt: skip
        assert sdk.add_backends_to_listener(listener_id, backends)["ret_code"] == 0
        shown = sdk.describe_loadbalancer_backends(loadbalancer_listener=listener_id)["loadbalancer_backend_set"]
        assert {b["resource_id"]: b["status"] for b in shown} == {"i-master1": "up", "i-node1": "down"}
    again = sdk.add_backends_to_listener(listener_id, backends[:1])
    assert again["ret_code"] == 1400  # the same instance and port twice
    update = sdk.update_loadbalancers([lb_id])
    assert wait_job(sdk, update["job_id"])["status"] == "successful"
    assert sdk.describe_loadbalancers(loadbalancers=[lb_id])["loadbalancer_set"][0]["is_applied"] == 1
    writes = [c["action"] for c in cloud.writes() if c["ret_code"] == 0]
    assert writes == [
        "CreateLoadBalancer",
        "AddLoadBalancerListeners",
        "AddLoadBalancerBackends",
        "UpdateLoadBalancers",
    ]


def test_bad_parameters_are_refused_with_1100_and_missing_resources_with_2100(cloud, sdk):
    assert sdk.create_loadbalancer(loadbalancer_name="neither")["ret_code"] == 1100  # no vxnet, no eips
    assert sdk.create_loadbalancer(vxnet="vxnet-lab", private_ip="10.9.9.9")["ret_code"] == 1100  # outside the vxnet
    assert sdk.create_loadbalancer(vxnet="vxnet-none")["ret_code"] == 2100
    assert sdk.create_loadbalancer(eips=["eip-none"])["ret_code"] == 2100
    assert sdk.update_loadbalancers(["lb-none"])["ret_code"] == 2100
    assert sdk.delete_loadbalancer_backends(["lbb-none"])["ret_code"] == 2100


def test_injected_faults_busy_then_ok_a_failed_job_and_a_slow_one(cloud, sdk):
    made = sdk.create_loadbalancer(eips=["eip-console"], loadbalancer_name="ksha-console")
    wait_job(sdk, made["job_id"])
    lb_id = made["loadbalancer_id"]
    cloud.inject(api.Fault("AddLoadBalancerListeners", ret_code=5100, times=2))
    listener = [{"listener_port": 30880, "listener_protocol": "http", "backend_protocol": "http",
                 "healthy_check_method": "http|/"}]  # fmt: skip
    answers = [sdk.add_listeners_to_loadbalancer(lb_id, listener)["ret_code"] for _ in range(3)]
    assert answers == [5100, 5100, 0]

    cloud.inject(api.Fault("UpdateLoadBalancers", job="failed"))
    failed = wait_job(sdk, sdk.update_loadbalancers([lb_id])["job_id"])
    assert failed["status"] == "failed" and failed["job_action"] == "UpdateLoadBalancers"
    assert sdk.describe_loadbalancers(loadbalancers=[lb_id])["loadbalancer_set"][0]["is_applied"] == 0

    cloud.inject(api.Fault("UpdateLoadBalancers", job_s=1.0))
    started = time.monotonic()
    assert wait_job(sdk, sdk.update_loadbalancers([lb_id])["job_id"])["status"] == "successful"
    assert time.monotonic() - started >= 1.0
    assert sdk.describe_loadbalancers(loadbalancers=[lb_id])["loadbalancer_set"][0]["is_applied"] == 1


def test_the_sdk_s_own_retry_sees_busy_answered_once_then_ok(cloud):
    server = api.serve(cloud)
    host, port = server.server_address
    try:
        sdk = APIConnection(KEY, SECRET, "lab1", host=host, port=port, protocol="http", retry_time=2)
        cloud.inject(api.Fault("DescribeLoadBalancers", ret_code=5100, times=1))
        assert sdk.describe_loadbalancers()["ret_code"] == 0
        assert [c["ret_code"] for c in cloud.calls] == [5100, 0]
    finally:
        server.shutdown()


@pytest.fixture
def with_listener(sdk):
    """An active internal load balancer with a TCP listener on 6443: (its ID, the listener's)."""
    made = sdk.create_loadbalancer(vxnet="vxnet-lab")
    wait_job(sdk, made["job_id"])
    lb_id = made["loadbalancer_id"]
    (listener_id,) = sdk.add_listeners_to_loadbalancer(
        lb_id, [{"listener_port": 6443, "listener_protocol": "tcp", "backend_protocol": "tcp"}]
    )["loadbalancer_listeners"]
    return lb_id, listener_id


def test_a_deleted_load_balancer_takes_its_listeners_and_backends_with_it(cloud, sdk, with_listener):
    lb_id, listener_id = with_listener
    sdk.add_backends_to_listener(listener_id, [{"resource_id": "i-master1", "port": 6443}])
    assert wait_job(sdk, sdk.delete_loadbalancers([lb_id])["job_id"])["status"] == "successful"
    assert sdk.describe_loadbalancers(loadbalancers=[lb_id])["loadbalancer_set"][0]["status"] == "deleted"
    assert sdk.describe_loadbalancer_listeners(loadbalancer=lb_id)["loadbalancer_listener_set"] == []
    assert cloud.backends == {}


def test_security_group_rules_wait_for_an_apply_job(cloud, sdk):
    rule = {"protocol": "tcp", "priority": 1, "action": "accept", "direction": 0, "val1": "6443", "val2": "6443"}
    assert sdk.add_security_group_rules("sg-lab", [rule])["ret_code"] == 0
    assert sdk.describe_security_groups(["sg-lab"])["security_group_set"][0]["is_applied"] == 0
    wait_job(sdk, sdk.apply_security_group("sg-lab")["job_id"])
    assert sdk.describe_security_groups(["sg-lab"])["security_group_set"][0]["is_applied"] == 1
    (shown,) = sdk.describe_security_group_rules("sg-lab")["security_group_rule_set"]
    assert (shown["protocol"], shown["val1"], shown["val2"]) == ("tcp", "6443", "6443")


def test_a_listener_modified_in_place_waits_for_an_update(cloud, sdk, with_listener):
    lb_id, listener_id = with_listener
    wait_job(sdk, sdk.update_loadbalancers([lb_id])["job_id"])
    changed = sdk.modify_loadbalancer_listener_attributes(
        listener_id, balance_mode="source", healthy_check_option="5|5|2|2"
    )
    assert changed["ret_code"] == 0, changed
    (shown,) = sdk.describe_loadbalancer_listeners(loadbalancer=lb_id)["loadbalancer_listener_set"]
    assert (shown["balance_mode"], shown["healthy_check_option"]) == ("source", "5|5|2|2")
    assert sdk.describe_loadbalancers(loadbalancers=[lb_id])["loadbalancer_set"][0]["is_applied"] == 0
    refused = sdk.send_request(
        "ModifyLoadBalancerListenerAttributes", {"loadbalancer_listener": listener_id, "balance_mode": "poll"}
    )
    assert refused["ret_code"] == 1100, refused
