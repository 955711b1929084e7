"""ksha-lab's host lifecycle: stop/boot, partition/heal (kill/boot: the etcd and LB kill tests)."""

import time


def _ping(lab, src, dst_ip):
    return lab.exec(src, "ping", "-c", "1", "-W", "1", dst_ip).returncode == 0


def _wait(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_host_goes_away_and_comes_back_with_its_minion(lab):
    """A clean stop, then a boot. (The lab's kill, then a boot, is what test_etcd.py's and
    test_loadbalancer.py's kill tests do, with the same checks.)"""
    node3 = lab.hosts["node3"]
    lab.stop(node3)
    assert lab.nspawn_pid(node3) is None
    assert lab.ping(["node3"], timeout=2) == {"node3": False}
    assert not _ping(lab, lab.hosts["node1"], node3.ip)

    lab.boot(node3)
    assert _wait(lambda: lab.ping(["node3"], timeout=2)["node3"], 90), "minion did not come back"
    assert lab.system_state(node3, wait=True) == "running"
    assert _ping(lab, lab.hosts["node1"], node3.ip)


def test_partition_cuts_a_host_off_and_heal_restores_it(lab):
    node1, node2 = lab.hosts["node1"], lab.hosts["node2"]
    assert _ping(lab, node1, node2.ip)
    lab.partition(node2)
    try:
        assert not _ping(lab, node1, node2.ip)
        assert not _ping(lab, node2, node1.ip)
        assert lab.ping(["node2"], timeout=3) == {"node2": False}
    finally:
        lab.heal(node2)
    assert _wait(lambda: _ping(lab, node1, node2.ip), 15)
    assert _wait(lambda: lab.ping(["node2"], timeout=3)["node2"], 90)
