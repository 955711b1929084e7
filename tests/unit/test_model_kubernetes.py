"""ksha/model.py, the control plane: SANs, certificates, kubeconfigs, flags, signing policies.

Table-driven over variants of the seed's example pillar (6 hosts, 3 masters, external LB at
192.168.0.253, lb.kubesphere.local).
"""

import pytest

from ksha import flags, model
from tests.unit.test_model import variant

MASTERS = ["master1", "master2", "master3"]
SEED_SANS = [
    "DNS:master1", "DNS:master2", "DNS:master3", "DNS:lb.kubesphere.local", "DNS:localhost", "DNS:kubernetes",
    "DNS:kubernetes.default", "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local",
    "IP:192.168.0.1", "IP:192.168.0.2", "IP:192.168.0.3", "IP:192.168.0.253", "IP:127.0.0.1", "IP:10.233.0.1",
]  # fmt: skip


def k8s(example, **edits):
    return model.build(variant(example, **edits))


def apiserver_sans(cluster, host="master1"):
    cert = next(c for c in model.host(cluster, host)["certificates"]["kubernetes"] if c["id"] == "apiserver")
    return cert["sans"].split(", ")


# (case, pillar edits, SANs added (+) and removed (-) against the seed's)
SAN_CASES = [
    ("the seed", {}, [], []),
    (
        "a fourth master: its name and address on every master's certificate",
        {"groups:kube-master": [*MASTERS, "node3"]},
        ["DNS:node3", "IP:192.168.0.6"],
        [],
    ),
    (
        "master1 removed: gone from every certificate",
        {"groups:kube-master": ["master2", "master3"], "groups:etcd": ["master2", "master3", "node1"]},
        [],
        ["DNS:master1", "IP:192.168.0.1"],
    ),
    (
        "the LB moved and renamed",
        {"loadbalancer:address": "192.168.0.250", "loadbalancer:domain": "api.example.com"},
        ["DNS:api.example.com", "IP:192.168.0.250"],
        ["DNS:lb.kubesphere.local", "IP:192.168.0.253"],
    ),
    (
        "another service range and cluster domain: the first service IP and the FQDN follow",
        {"kubernetes:service_cidr": "10.96.0.0/12", "kubernetes:cluster_domain": "corp.internal"},
        ["IP:10.96.0.1", "DNS:kubernetes.default.svc.corp.internal"],
        ["IP:10.233.0.1", "DNS:kubernetes.default.svc.cluster.local"],
    ),
    (
        "extra SANs, a name and an address, and a duplicate once only",
        {"kubernetes:apiserver:extra_sans": ["k8s.example.com", "203.0.113.7", "localhost"]},
        ["DNS:k8s.example.com", "IP:203.0.113.7"],
        [],
    ),
]


@pytest.mark.parametrize("case, edits, added, removed", SAN_CASES, ids=[c[0] for c in SAN_CASES])
def test_apiserver_sans_follow_the_model_on_every_master(example_ksha, case, edits, added, removed):
    cluster = k8s(example_ksha, **edits)
    expected = sorted({s for s in SEED_SANS if s not in removed} | set(added))
    for master in cluster["kubernetes"]["masters"]:
        sans = apiserver_sans(cluster, master)
        assert len(sans) == len(set(sans)), sans
        assert sorted(sans) == expected, master


def test_master_certificates_have_kubeadms_names_subjects_and_cas(example_ksha):
    cluster = k8s(example_ksha)
    certs = {c["id"]: c for c in model.host(cluster, "master2")["certificates"]["kubernetes"]}
    assert {i: (c["path"], c["cn"], c["o"], c["ca"], c["policy"]) for i, c in certs.items()} == {
        "apiserver": ("/etc/kubernetes/pki/apiserver", "kube-apiserver", None, "kubernetes", "ksha_kube_apiserver__master2"),
        "apiserver-kubelet-client": ("/etc/kubernetes/pki/apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                     "system:masters", "kubernetes", "ksha_kube_client__master2"),
        "front-proxy-client": ("/etc/kubernetes/pki/front-proxy-client", "front-proxy-client", None, "front-proxy",
                               "ksha_kube_front_proxy_client__master2"),
        "admin-client": ("/etc/kubernetes/pki/admin-client", "kubernetes-admin", "system:masters", "kubernetes",
                         "ksha_kube_client__master2"),
        "controller-manager-client": ("/etc/kubernetes/pki/controller-manager-client",
                                      "system:kube-controller-manager", None, "kubernetes", "ksha_kube_client__master2"),
        "scheduler-client": ("/etc/kubernetes/pki/scheduler-client", "system:kube-scheduler", None, "kubernetes",
                             "ksha_kube_client__master2"),
    }  # fmt: skip
    # the apiserver's etcd client certificate comes from the etcd CA, as before
    assert [c["id"] for c in model.host(cluster, "master2")["certificates"]["etcd"]][-1] == "apiserver-client"
    # workers hold none of the control plane's
    assert model.host(cluster, "node1")["certificates"]["kubernetes"] == []
    assert model.host(cluster, "node1")["kubeconfigs"] == {} and model.host(cluster, "node1")["flags"] == {}


def test_kubeconfigs_admin_through_the_lb_components_to_their_own_apiserver(example_ksha):
    cluster = k8s(example_ksha)
    confs = model.host(cluster, "master3")["kubeconfigs"]
    assert {n: (c["path"], c["server"], c["user"]) for n, c in confs.items()} == {
        "admin": ("/etc/kubernetes/admin.conf", "https://lb.kubesphere.local:6443", "kubernetes-admin"),
        "controller-manager": (
            "/etc/kubernetes/controller-manager.conf",
            "https://192.168.0.3:6443",
            "system:kube-controller-manager",
        ),
        "scheduler": ("/etc/kubernetes/scheduler.conf", "https://192.168.0.3:6443", "system:kube-scheduler"),
    }
    assert all(c["ca"] == "/etc/kubernetes/pki/ca.crt" for c in confs.values())


def test_apiserver_flags_carry_the_model(example_ksha):
    cluster = k8s(example_ksha, **{"groups:etcd": ["master1", "master2", "node1"]})
    flags_of = model.host(cluster, "master2")["flags"]["kube-apiserver"]
    assert flags_of["advertise-address"] == flags_of["bind-address"] == "192.168.0.2"
    assert flags_of["etcd-servers"] == "https://192.168.0.1:2379,https://192.168.0.2:2379,https://192.168.0.4:2379"
    assert flags_of["etcd-certfile"] == "/etc/kubernetes/pki/apiserver-etcd-client.crt"
    assert flags_of["etcd-cafile"] == "/etc/etcd/pki/ca.crt"
    assert flags_of["service-cluster-ip-range"] == "10.233.0.0/18"
    assert flags_of["endpoint-reconciler-type"] == "lease" and flags_of["authorization-mode"] == "Node,RBAC"
    assert flags_of["service-account-issuer"] == "https://kubernetes.default.svc.cluster.local"


def test_leader_election_and_extra_args(example_ksha):
    cluster = k8s(
        example_ksha,
        **{
            "kubernetes:leader_election": {"lease_duration_s": 30, "renew_deadline_s": 20, "retry_period_s": 4},
            "kubernetes:controller_manager:extra_args": {"concurrent-deployment-syncs": 10, "profiling": False},
        },
    )
    cm = model.host(cluster, "master1")["flags"]["kube-controller-manager"]
    assert (cm["leader-elect-lease-duration"], cm["leader-elect-renew-deadline"], cm["leader-elect-retry-period"]) == (
        "30s",
        "20s",
        "4s",
    )
    assert cm["concurrent-deployment-syncs"] == "10" and cm["profiling"] == "false"
    assert cm["cluster-cidr"] == "10.233.64.0/18" and cm["kubeconfig"] == "/etc/kubernetes/controller-manager.conf"


def test_every_flag_ksha_sets_is_in_the_pinned_reference_and_refused_as_extra(example_ksha):
    """ksha's own flags exist in the pinned version (the stand-ins refuse unknown ones, as the real
    binaries do), and the validator refuses each in extra_args (flags.MANAGED)."""
    cluster = k8s(example_ksha)
    for component, own in model.host(cluster, "master1")["flags"].items():
        assert set(own) <= set(flags.MANAGED[component]), component
        assert set(flags.MANAGED[component]) <= flags.known(component), component


def test_release_and_ca_host(example_ksha):
    cluster = k8s(example_ksha, **{"kubernetes:archive": {"url": "http://mirror/k.tar.gz", "sha256": "a" * 64}})
    kube = cluster["kubernetes"]
    version = kube["version"]
    assert kube["archive"] == {"url": "http://mirror/k.tar.gz", "sha256": "a" * 64, "problem": None}
    assert kube["release_links"]["kube-apiserver"] == {
        "link": "/usr/local/bin/kube-apiserver",
        "target": f"/opt/kubernetes-{version}/kubernetes/server/bin/kube-apiserver",
    }
    assert kube["ca_host"] == "master1"
    upstream = k8s(example_ksha)["kubernetes"]["archive"]["url"]
    assert upstream == f"https://dl.k8s.io/{version}/kubernetes-server-linux-amd64.tar.gz"
    assert k8s(example_ksha, **{"kubernetes:pki:ca_host": "master3"})["kubernetes"]["ca_host"] == "master3"


def test_kube_signing_policies_name_their_ca_and_the_masters(example_ksha):
    policies = k8s(example_ksha, **{"groups:kube-master": ["master2", "master3", "node1"]})["signing_policies"]
    kube = policies["kubernetes"]
    ca, front_proxy = "/etc/ksha/kubernetes-ca/ca.crt", "/etc/ksha/kubernetes-ca/front-proxy-ca.crt"
    masters = {p: v for p, v in kube.items() if p.split("__")[0] in model.KUBE_POLICIES}  # the nodes': test_model_nodes
    assert {p: (v["minions"], v["signing_cert"], v["extendedKeyUsage"]) for p, v in masters.items()} == {
        **{f"ksha_kube_apiserver__{m}": (m, ca, "serverAuth") for m in ("master2", "master3", "node1")},
        **{f"ksha_kube_client__{m}": (m, ca, "clientAuth") for m in ("master2", "master3", "node1")},
        **{
            f"ksha_kube_front_proxy_client__{m}": (m, front_proxy, "clientAuth")
            for m in ("master2", "master3", "node1")
        },
    }


def test_scheduler_reads_its_kubeconfig_and_leader_election_from_its_configuration(example_ksha):
    cluster = k8s(example_ksha, **{"kubernetes:leader_election": {"lease_duration_s": 20}})
    master = model.host(cluster, "master2")
    scheduler = master["flags"]["kube-scheduler"]
    # next to --config the scheduler ignores --kubeconfig, and leader-elect flags would override the file
    assert "kubeconfig" not in scheduler and not [f for f in scheduler if f.startswith("leader-elect")]
    assert scheduler["config"] == "/etc/kubernetes/kube-scheduler.yaml"
    written = master["units"]["kube-scheduler"]["configuration"]
    assert written["path"] == scheduler["config"]
    configuration = written["content"]
    assert configuration["clientConnection"] == {"kubeconfig": "/etc/kubernetes/scheduler.conf"}
    election = configuration["leaderElection"]
    assert (election["leaseDuration"], election["renewDeadline"], election["retryPeriod"]) == ("20s", "10s", "2s")
    assert model.host(cluster, "node1")["units"] == {}
    assert master["units"]["kube-controller-manager"]["configuration"] is None


@pytest.mark.parametrize(
    "cidr, first", [("10.233.0.0/18", "10.233.0.1"), ("10.96.0.0/12", "10.96.0.1"), ("fd00:10::/108", "fd00:10::1")]
)
def test_first_service_ip(cidr, first):
    assert model.first_ip(cidr) == first


def test_every_kubernetes_path_follows_the_pki_dir(example_ksha):
    cluster = k8s(example_ksha, **{"kubernetes:pki:dir": "/srv/k8s/pki"})
    master = model.host(cluster, "master1")
    paths = [c["path"] for c in master["certificates"]["kubernetes"]]
    paths += [c["path"] for c in master["certificates"]["etcd"] if c["id"] == "apiserver-client"]
    assert paths and all(p.startswith("/srv/k8s/pki/") for p in paths), paths
    flag_values = [v for component in master["flags"].values() for v in component.values()]
    assert not [v for v in flag_values if v.startswith("/etc/kubernetes/pki")]
    assert master["flags"]["kube-apiserver"]["etcd-certfile"] == "/srv/k8s/pki/apiserver-etcd-client.crt"
    assert "/srv/k8s/pki" in cluster["etcd"]["cert_dirs"]


def test_the_apiserver_unit_runs_the_models_flags_and_watches_the_files_they_name(example_ksha):
    m = model.build(variant(example_ksha, **{"kubernetes:apiserver:extra_args": {"audit-log-path": "/var/log/a.log"}}))
    master2 = model.host(m, "master2")
    assert list(master2["units"]) == ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    unit = master2["units"]["kube-apiserver"]
    assert unit["path"] == "/etc/systemd/system/kube-apiserver.service"
    given = master2["flags"]["kube-apiserver"]
    assert unit["exec_start"] == ["/usr/local/bin/kube-apiserver"] + [f"--{k}={v}" for k, v in sorted(given.items())]
    assert unit["binary"] == m["kubernetes"]["release_links"]["kube-apiserver"]["link"]
    # the unit and every file ksha's flags name; never a file of extra_args (a log would restart it for ever)
    assert unit["watched"][0] == unit["path"]
    assert set(unit["watched"][1:]) == {given[f] for f in model.APISERVER_FILE_FLAGS}
    assert "/var/log/a.log" not in unit["watched"]
    assert {"/etc/kubernetes/pki/apiserver.crt", "/etc/kubernetes/pki/sa.pub", "/etc/etcd/pki/ca.crt"} <= set(
        unit["watched"]
    )
    # only the apiserver tells systemd it is ready, and only its restart rolls
    assert (unit["type"], unit["rolling"]) == ("notify", True)
    assert unit["description"] == "Kubernetes API server (ksha master master2)"
    assert model.host(m, "node1")["units"] == {}
    # the unit's own timeouts, which the rolling restart's budget counts
    assert (m["kubernetes"]["apiserver"]["stop_timeout_s"], m["kubernetes"]["apiserver"]["start_timeout_s"]) == (
        15,
        120,
    )


def test_the_controller_manager_and_scheduler_units_watch_their_kubeconfigs_and_restart_in_place(example_ksha):
    master3 = model.host(model.build(example_ksha), "master3")
    cm, sched = master3["units"]["kube-controller-manager"], master3["units"]["kube-scheduler"]
    for component, unit in (("kube-controller-manager", cm), ("kube-scheduler", sched)):
        given = master3["flags"][component]
        assert unit["exec_start"] == [f"/usr/local/bin/{component}"] + [f"--{k}={v}" for k, v in sorted(given.items())]
        assert (unit["type"], unit["rolling"]) == ("simple", False)
        assert unit["path"] == f"/etc/systemd/system/{component}.service"
        assert unit["watched"][0] == unit["path"]
    kc = master3["kubeconfigs"]
    assert {
        "/etc/kubernetes/controller-manager.conf",
        kc["controller-manager"]["cert"],
        kc["controller-manager"]["key"],
        "/etc/kubernetes/pki/sa.key",
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/pki/front-proxy-ca.crt",
    } == set(cm["watched"][1:])
    assert {
        "/etc/kubernetes/kube-scheduler.yaml",
        "/etc/kubernetes/scheduler.conf",
        kc["scheduler"]["cert"],
        kc["scheduler"]["key"],
        kc["scheduler"]["ca"],
    } == set(sched["watched"][1:])
    # the scheduler's configuration file names the kubeconfig its unit watches
    assert sched["configuration"]["content"]["clientConnection"]["kubeconfig"] == "/etc/kubernetes/scheduler.conf"


def test_how_long_haproxy_takes_to_see_a_restarted_apiserver_up(example_ksha):
    """keepalived mode: a DOWN server is checked every downinter (2 x inter), then rise checks every
    fastinter (inter / 2); other modes have no haproxy of ksha's to wait for."""
    keepalived = variant(example_ksha, **{"loadbalancer:mode": "keepalived", "loadbalancer:address": "192.168.0.100"})
    assert model.build(keepalived)["loadbalancer"]["settle_s"] == (1000 + 2 * 250) / 1000
    slow = variant(keepalived, **{"loadbalancer:haproxy:check_inter_ms": 2000, "loadbalancer:haproxy:check_rise": 3})
    assert model.build(slow)["loadbalancer"]["settle_s"] == (4000 + 3 * 1000) / 1000
    assert model.build(example_ksha)["loadbalancer"]["settle_s"] == 0  # external mode
    # and to see a stopped one DOWN: its next check (inter), then fall checks at fastinter
    assert model.build(keepalived)["loadbalancer"]["down_s"] == (500 + 2 * 250) / 1000
    assert model.build(slow)["loadbalancer"]["down_s"] == (2000 + 2 * 1000) / 1000
    assert model.build(example_ksha)["loadbalancer"]["down_s"] == 0


@pytest.mark.parametrize(
    "option, down_s, settle_s",
    [
        ("10|5|2|5", 2 * (10 + 5) + 10, (5 + 1) * 10),  # QingCloud's default: 40 s down, 60 s up
        ("2|5|2|2", 2 * (2 + 5) + 2, (2 + 1) * 2),  # the lab's
    ],
)
def test_how_long_qingcloud_takes_to_see_an_apiserver_down_and_up(example_ksha, option, down_s, settle_s):
    """qingcloud mode: ksha sets the load balancer's checks, so the rolling restart waits for them."""
    qc = variant(
        example_ksha,
        **{"loadbalancer:mode": "qingcloud", "loadbalancer:address": "192.168.0.250",
           "loadbalancer:qingcloud": {"zone": "pek3a", "vxnet": "vxnet-a", "healthy_check_option": option,
                                    "credentials_file": "/etc/salt/qc.yaml"}},
    )  # fmt: skip
    lb = model.build(qc)["loadbalancer"]
    assert (lb["down_s"], lb["settle_s"]) == (down_s, settle_s)


def test_masters_outside_etcd_get_etcdctl_for_the_rolling_lock(example_ksha):
    m = model.build(variant(example_ksha, **{"groups:etcd": ["master1", "master2", "node1"]}))
    assert m["kubernetes"]["etcdctl_hosts"] == ["master3"]
    assert model.build(example_ksha)["kubernetes"]["etcdctl_hosts"] == []
    assert model.settings(example_ksha, "Debian")["etcd"]["client_pkgs"] == ["etcd-client"]
    assert model.settings(example_ksha, "RedHat")["etcd"]["client_pkgs"] == ["etcd"]


# an argument -> the same as one word of systemd's ExecStart (systemd.service(5): quoting, specifiers, variables)
QUOTED = [
    ("--v=2", "--v=2"),
    ("--feature-gates=A=true,B=false", "--feature-gates=A=true,B=false"),
    ("--x=50%", "--x=50%%"),
    ("--x=$HOME", "--x=$$HOME"),
    ("--x=a b", '"--x=a b"'),
    ('--x=say "hi"', '"--x=say \\"hi\\""'),
    ("--x=a\\b", '"--x=a\\\\b"'),
    ("--x=a;b", '"--x=a;b"'),
]


@pytest.mark.parametrize("arg, word", QUOTED)
def test_systemd_quoted(arg, word):
    assert model.systemd_quoted(arg) == word


def test_a_former_master_is_cleaned_of_what_ksha_wrote_for_a_master_only(example_ksha):
    m = model.build(example_ksha)
    clean, k8s = m["kubernetes"]["clean"], m["kubernetes"]
    assert clean["hosts"] == ["node1", "node2", "node3"]
    # the components stop in reverse: the apiserver last, the controllers' client gone first
    assert clean["components"] == ["kube-scheduler", "kube-controller-manager", "kube-apiserver"]
    master = model.host(m, "master1")
    held = {f"{c['path']}.{ext}" for certs in master["certificates"].values() for c in certs for ext in ("crt", "key")}
    written = held | {k8s["service_account"]["key"], k8s["service_account"]["pub"], k8s["scheduler_config"]}
    written |= {kc["path"] for kc in master["kubeconfigs"].values()}
    # every file of a master's under the Kubernetes directories; etcd's own certificates are etcd's clean's
    assert set(clean["files"]) == {f for f in written if f.startswith("/etc/kubernetes/")}
    assert k8s["cas"]["kubernetes"]["installed"] not in clean["files"]  # the CA certificates stay (the nodes')
    assert clean["links"] == [link["link"] for link in k8s["release_links"].values()]
    assert clean["release_dir"] == "/opt/kubernetes-v1.30.8"
    assert k8s["leftovers"] == {"marked": list(k8s["unit_files"].values()), "owned": []}


def test_every_host_that_is_not_a_master_gets_the_clean_in_its_highstate(example_ksha):
    m = model.build(example_ksha)
    node1 = model.host(m, "node1")
    assert "kubernetes-clean" in node1["roles"] and node1["states"][-3:] == [
        "ksha.kubernetes.clean",
        "ksha.containerd",
        "ksha.node",
    ]
    assert "ksha.kubernetes.clean" not in model.host(m, "master1")["states"]
