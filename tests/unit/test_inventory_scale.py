"""The validator is linear in the hosts: 20,000 hosts validate (no timing assert: correctness at that size)."""

from ksha import inventory

N = 20_000


def big(example_ksha):
    for i in range(N):
        example_ksha["hosts"].append({"name": f"w{i}", "ip": f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"})
        example_ksha["groups"]["kube-node"].append(f"w{i}")
    # a pod range for every node: 65,536 /26 ranges, outside the hosts' 10.0.0.0/8
    example_ksha["kubernetes"].update(
        pod_cidr="100.64.0.0/10", controller_manager={"extra_args": {"node-cidr-mask-size-ipv4": 26}}
    )
    return example_ksha


def test_20000_hosts_in_kube_node_are_valid(example_ksha):
    assert inventory.validate(big(example_ksha)) == []


def test_20000_hosts_every_problem_once_and_messages_stay_short(example_ksha):
    ksha = big(example_ksha)
    ksha["hosts"][N + 5]["ip"] = "10.0.0.1"  # w1's address again (the last host)
    ksha["groups"]["kube-node"].append("w5")  # listed twice
    ksha["groups"]["kube-node"].append("w99999")  # not defined
    ksha["groups"]["etcd"] = ["master1", "master2", "master3", "w7", "w8"]  # etcd on workers
    found = [str(f) for f in inventory.validate(ksha)]
    assert found[:3] == [
        f"ERROR ksha:hosts:{N + 5}:ip: host 'w{N - 1}': address 10.0.0.1 is also used by host 'w1'",
        f"ERROR ksha:groups:kube-node:{N + 3}: host 'w5' is listed twice",
        f"ERROR ksha:groups:kube-node:{N + 4}: host 'w99999' is not defined in ksha:hosts (defined: master1, "
        f"master2, master3, node1, node2, node3, w0, w1, w2, w3, ... ({N + 6} in all))",
    ]
    assert [f.split(" is ")[0] for f in found[3:]] == [
        "WARNING ksha:groups:etcd:3: host 'w7'",
        "WARNING ksha:groups:etcd:4: host 'w8'",
    ]
    assert all(len(line) < 300 for line in found)
