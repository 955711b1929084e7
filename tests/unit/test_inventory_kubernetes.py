"""ksha:kubernetes's checks: one row per finding, each naming the key and the fix."""

import pytest

from ksha import flags, inventory
from tests.conftest import edited

V = flags.version()


def findings(example, **edits):
    return [str(f) for f in inventory.validate(edited(example, **edits)) if f.key.startswith("ksha:kubernetes")]


# (case, pillar edits, the findings on ksha:kubernetes, each as "LEVEL key: start of the message")
CASES = [
    ("the example is valid", {}, []),
    ("a release of the pinned version", {"kubernetes:version": f"v{V}.3"}, []),
    (
        "another minor version",
        {"kubernetes:version": "v1.16.7"},
        [f"ERROR ksha:kubernetes:version: v1.16.7 is not a {V} release: this ksha deploys Kubernetes {V}"],
    ),
    (
        "not a version",
        {"kubernetes:version": "latest"},
        ["ERROR ksha:kubernetes:version: 'latest' is not a Kubernetes release version"],
    ),
    (
        "a short sha256",
        {"kubernetes:archive:sha256": "abc"},
        ["ERROR ksha:kubernetes:archive:sha256: must be the tarball's sha256 (64 hex digits"],
    ),
    (
        "a URL without a scheme",
        {"kubernetes:archive:url": "mirror.local/k.tgz"},
        ["ERROR ksha:kubernetes:archive:url: 'mirror.local/k.tgz' is not an http(s)://, salt:// or file:// URL"],
    ),
    (
        "not a CIDR",
        {"kubernetes:service_cidr": "10.233.0.0"},
        ["ERROR ksha:kubernetes:service_cidr: '10.233.0.0' is not a network in CIDR notation (e.g. 10.233.0.0/18)"],
    ),
    (
        "garbage network",
        {"kubernetes:pod_cidr": "pods"},
        ["ERROR ksha:kubernetes:pod_cidr: 'pods' is not a network in CIDR notation"],
    ),
    (
        "host bits set",
        {"kubernetes:service_cidr": "10.233.1.0/18"},
        ["ERROR ksha:kubernetes:service_cidr: 10.233.1.0/18 has host bits set: write the network, 10.233.0.0/18"],
    ),
    (
        "a service range too large for the apiserver",
        {"kubernetes:service_cidr": "10.0.0.0/8", "kubernetes:pod_cidr": "172.16.0.0/16"},
        ["ERROR ksha:kubernetes:service_cidr: 10.0.0.0/8 is too large: the apiserver takes at most 20 host bits"],
    ),
    (
        "pods overlap services",
        {"kubernetes:pod_cidr": "10.233.0.0/16"},
        ["ERROR ksha:kubernetes:pod_cidr: 10.233.0.0/16 overlaps ksha:kubernetes:service_cidr (10.233.0.0/18)"],
    ),
    (
        "the hosts' network as the pod network",
        {"kubernetes:pod_cidr": "192.168.0.0/16"},
        [
            "ERROR ksha:kubernetes:pod_cidr: 192.168.0.0/16 contains host 'master1', host 'master2', host 'master3', "
            "host 'node1', host 'node2', host 'node3', the LB address (ksha:loadbalancer:address): cluster networks "
            "must not hold host or LB addresses"
        ],
    ),
    (
        "a cluster domain with a blank",
        {"kubernetes:cluster_domain": "cluster local"},
        ["ERROR ksha:kubernetes:cluster_domain: 'cluster local' is not a valid DNS name"],
    ),
    (
        "a CA host that is no master",
        {"kubernetes:pki:ca_host": "node1"},
        [
            "ERROR ksha:kubernetes:pki:ca_host: 'node1' is not a kube-master: ksha:groups:kube-master lists "
            "master1, master2, master3; null means the first master (master1)"
        ],
    ),
    (
        "renewal never done",
        {"kubernetes:pki:days_remaining": 400},
        ["ERROR ksha:kubernetes:pki:days_remaining: 400 is not less than ksha:kubernetes:pki:days_valid (365)"],
    ),
    (
        "a certificate outliving its CA",
        {"kubernetes:pki:days_valid": 4000},
        ["ERROR ksha:kubernetes:pki:days_valid: 4000 is more than ksha:kubernetes:pki:ca_days_valid (3650)"],
    ),
    (
        "renew deadline not under the lease duration",
        {"kubernetes:leader_election": {"lease_duration_s": 10, "renew_deadline_s": 10, "retry_period_s": 2}},
        ["ERROR ksha:kubernetes:leader_election:renew_deadline_s: 10 s is not less than lease_duration_s (10 s)"],
    ),
    (
        "retry period too long for the deadline",
        {"kubernetes:leader_election": {"lease_duration_s": 15, "renew_deadline_s": 6, "retry_period_s": 5}},
        ["ERROR ksha:kubernetes:leader_election:retry_period_s: 5 s: renew_deadline_s (6 s) must be more than 1.2"],
    ),
    (
        "a lease duration out of range",
        {"kubernetes:leader_election": {"lease_duration_s": 0}},
        ["ERROR ksha:kubernetes:leader_election:lease_duration_s: 0 must be an integer from 2 to 600"],
    ),
    (
        "a known extra flag",
        {"kubernetes:apiserver:extra_args": {"audit-log-path": "/var/log/kube-audit.log", "v": 2}},
        [],
    ),
    (
        "an unknown extra flag, with a suggestion",
        {"kubernetes:apiserver:extra_args": {"audit-log-pth": "/x"}},
        [
            f"ERROR ksha:kubernetes:apiserver:extra_args:audit-log-pth: 'audit-log-pth' is not a kube-apiserver "
            f"flag of Kubernetes {V} (unknown or removed) (did you mean audit-log-path"
        ],
    ),
    (
        "a removed flag",
        {"kubernetes:apiserver:extra_args": {"insecure-port": 0}},
        ["ERROR ksha:kubernetes:apiserver:extra_args:insecure-port: 'insecure-port' is not a kube-apiserver flag"],
    ),
    (
        "a flag of another component",
        {"kubernetes:scheduler:extra_args": {"etcd-servers": "https://x:2379"}},
        ["ERROR ksha:kubernetes:scheduler:extra_args:etcd-servers: 'etcd-servers' is not a kube-scheduler flag"],
    ),
    (
        "a flag ksha sets",
        {"kubernetes:apiserver:extra_args": {"etcd-servers": "https://x:2379"}},
        [
            "ERROR ksha:kubernetes:apiserver:extra_args:etcd-servers: --etcd-servers is set by ksha from "
            "ksha:groups:etcd: change that instead"
        ],
    ),
    (
        "a flag with dashes",
        {"kubernetes:controller_manager:extra_args": {"--profiling": "false"}},
        ["ERROR ksha:kubernetes:controller_manager:extra_args:--profiling: write the flag's name without dashes"],
    ),
    (
        "a flag without a value",
        {"kubernetes:controller_manager:extra_args": {"profiling": None}},
        ["ERROR ksha:kubernetes:controller_manager:extra_args:profiling: must be the flag's value"],
    ),
    (
        "extra SANs: a name, an address, a bad one",
        {"kubernetes:apiserver:extra_sans": ["api.example.com", "10.1.2.3", "not a name"]},
        ["ERROR ksha:kubernetes:apiserver:extra_sans:2: 'not a name' is neither a DNS name nor an IP address"],
    ),
    (
        "anonymous requests refused: /readyz would answer 401 to every health check",
        {"kubernetes:apiserver:extra_args": {"anonymous-auth": False}},
        ["ERROR ksha:kubernetes:apiserver:extra_args:anonymous-auth: --anonymous-auth=false makes /readyz answer 401"],
    ),
    (
        "anonymous-auth left true is fine",
        {"kubernetes:apiserver:extra_args": {"anonymous-auth": "true"}},
        [],
    ),
    (
        "extra_args not a mapping",
        {"kubernetes:apiserver:extra_args": ["--v=2"]},
        ["ERROR ksha:kubernetes:apiserver:extra_args: must be a mapping, got ['--v=2']"],
    ),
    (
        "an unknown key in the section",
        {"kubernetes:apiserver:extra_flags": {"v": 2}},
        ["WARNING ksha:kubernetes:apiserver:extra_flags: unknown key, ignored (known keys: extra_sans, wait_ready_s,"],
    ),
]


@pytest.mark.parametrize("case, edits, expected", CASES, ids=[c[0] for c in CASES])
def test_kubernetes_findings(example_ksha, case, edits, expected):
    found = findings(example_ksha, **edits)
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), line


MORE = [
    (
        "the Kubernetes CAs in the etcd CA's directory",
        {"kubernetes:pki:ca_dir": "/etc/ksha/etcd-ca/"},
        ["ERROR ksha:kubernetes:pki:ca_dir: '/etc/ksha/etcd-ca/' is ksha:etcd:pki:ca_dir too: the CAs' keys of the"],
    ),
    (
        "the Kubernetes certificates in etcd's certificate directory",
        {"kubernetes:pki:dir": "/etc/etcd/pki"},
        ["ERROR ksha:kubernetes:pki:dir: '/etc/etcd/pki' is ksha:etcd:pki:dir too: the certificates of the two PKIs"],
    ),
    (
        "a leading zero in the version",
        {"kubernetes:version": f"v{V}.08"},
        [f"ERROR ksha:kubernetes:version: 'v{V}.08' is not a Kubernetes release version"],
    ),
    (
        "a service range too small",
        {"kubernetes:service_cidr": "10.233.0.0/30"},
        ["ERROR ksha:kubernetes:service_cidr: 10.233.0.0/30 is too small for Services: use at least /28"],
    ),
    (
        "a pod network smaller than one node's range",
        {"kubernetes:pod_cidr": "10.233.64.0/25"},
        ["ERROR ksha:kubernetes:pod_cidr: 10.233.64.0/25 cannot hold one node's pod range (kube-controller-manager's"],
    ),
    (
        "a pod network with fewer node ranges than nodes",
        {"kubernetes:pod_cidr": "10.233.64.0/22"},
        ["ERROR ksha:kubernetes:pod_cidr: 10.233.64.0/22 holds 4 node ranges (kube-controller-manager's"],
    ),
    (
        "a smaller node mask from extra_args makes it fit",
        {
            "kubernetes:pod_cidr": "10.233.64.0/22",
            "kubernetes:controller_manager:extra_args": {"node-cidr-mask-size-ipv4": 26},
        },
        [],
    ),
    (
        "IPv6 services on IPv4 hosts",
        {"kubernetes:service_cidr": "fd00:10::/108"},
        ["ERROR ksha:kubernetes:service_cidr: fd00:10::/108 is IPv6 but the hosts' addresses are IPv4"],
    ),
    (
        "a value with a line break (a unit file injection)",
        {"kubernetes:apiserver:extra_args": {"v": "2\nExecStartPre=/bin/evil"}},
        ["ERROR ksha:kubernetes:apiserver:extra_args:v: '2\\nExecStartPre=/bin/evil' has a line break"],
    ),
    (
        "a flag contradicting one ksha sets",
        {"kubernetes:apiserver:extra_args": {"authorization-config": "/etc/kubernetes/authz.yaml"}},
        [
            "ERROR ksha:kubernetes:apiserver:extra_args:authorization-config: --authorization-config cannot go with "
            "--authorization-mode"
        ],
    ),
]


@pytest.mark.parametrize("case, edits, expected", MORE, ids=[c[0] for c in MORE])
def test_kubernetes_findings_networks_and_values(example_ksha, case, edits, expected):
    test_kubernetes_findings(example_ksha, case, edits, expected)


def test_ipv6_cluster_networks_on_ipv6_hosts(example_ksha):
    for index, host in enumerate(example_ksha["hosts"]):
        host["ip"] = f"fd00::{index + 1}"
    example_ksha["loadbalancer"]["address"] = "fd00::100"
    ok = {"kubernetes:service_cidr": "fd00:10::/108", "kubernetes:pod_cidr": "fd00:20::/56"}
    assert findings(example_ksha, **ok) == []
    too_wide = findings(example_ksha, **{**ok, "kubernetes:pod_cidr": "fd00:20::/40"})
    assert [f.split(": ", 1)[0] for f in too_wide] == ["ERROR ksha:kubernetes:pod_cidr"]
    assert "is more than 16 bits larger than one node's range" in too_wide[0]
    ipv4_pods = findings(example_ksha, **{**ok, "kubernetes:pod_cidr": "10.233.64.0/18"})
    assert ipv4_pods == [
        "ERROR ksha:kubernetes:pod_cidr: 10.233.64.0/18 is IPv4 but the hosts' addresses are IPv6: ksha deploys "
        "single-stack clusters; use an IPv6 network"
    ]
