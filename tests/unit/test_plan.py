"""ksha/plan.py: the orchestration's steps and the etcd membership decisions, table-driven."""

import pytest

from ksha import model, plan

M = ["master1", "master2", "master3"]

# (case, members in pillar, recorded grains, members etcd reports, expected decision)
MEMBERSHIP = [
    (
        "never bootstrapped: bootstrap",
        M,
        {},
        None,
        {"bootstrapped": False, "joining": [], "leaving": [], "remover": None, "problem": None},
    ),
    (
        "bootstrapped and unchanged: converge only",
        M,
        {m: "c1" for m in M},
        M,
        {"bootstrapped": True, "joining": [], "leaving": [], "remover": "master1", "problem": None},
    ),
    (
        "two members added: both join, in pillar order",
        M + ["node1", "node2"],
        {m: "c1" for m in M},
        M,
        {"bootstrapped": True, "joining": ["node1", "node2"], "leaving": [], "remover": "master1", "problem": None},
    ),
    (
        "a wiped member (listed, grain gone): it joins again",
        M,
        {"master1": "c1", "master3": "c1"},
        M,
        {"bootstrapped": True, "joining": ["master2"], "leaving": [], "remover": "master1", "problem": None},
    ),
    (
        "a member removed from pillar: it leaves, removed from one that stays",
        ["master2", "master3"],
        {m: "c1" for m in M},
        M,
        {"bootstrapped": True, "joining": [], "leaving": ["master1"], "remover": "master2", "problem": None},
    ),
    (
        "replace one member by another: join, then leave",
        ["master2", "master3", "node1"],
        {m: "c1" for m in M},
        M,
        {"bootstrapped": True, "joining": ["node1"], "leaving": ["master1"], "remover": "master2", "problem": None},
    ),
]


@pytest.mark.parametrize("case, members, recorded, current, expected", MEMBERSHIP, ids=[c[0] for c in MEMBERSHIP])
def test_etcd_membership_paths(case, members, recorded, current, expected):
    assert plan.etcd_membership(members, recorded, current) == expected


REFUSALS = [
    ("bootstrapped but no member answers", M, {m: "c1" for m in M}, None, "no member answers; if quorum is lost"),
    (
        "every member replaced at once",
        ["node1", "node2", "node3"],
        {m: "c1" for m in M},
        M,
        "every etcd member would change at once",
    ),
]


@pytest.mark.parametrize("case, members, recorded, current, problem", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_etcd_membership_refusals(case, members, recorded, current, problem):
    assert problem in plan.etcd_membership(members, recorded, current)["problem"]


@pytest.fixture
def cluster(example_ksha):
    example_ksha["loadbalancer"].update(mode="keepalived", address="192.168.0.100")
    return model.build(example_ksha)


def ids(result):
    return [step["id"] for step in result["steps"]]


def test_full_plan_from_bare_hosts(cluster):
    result = plan.build(cluster, {"recorded": {}, "current": None, "ca_keys": []})
    assert ids(result) == [
        "ksha-preflight-inventory-valid",
        "ksha-preflight-every-host-minion-responds",
        "ksha-preflight-custom-modules-synced",
        "ksha-preflight-custom-states-synced",
        "ksha-preflight-pillar-refreshed",
        "ksha-phase-common-applied",
        "ksha-phase-lb-other-hosts-cleaned",
        "ksha-phase-lb-keepalived-haproxy-applied",
        "ksha-phase-etcd-ca-ready",
        "ksha-phase-etcd-certificates-issued",
        "ksha-phase-etcd-members-bootstrapped",
        "ksha-phase-etcd-other-hosts-cleaned",
        "ksha-phase-etcd-cluster-healthy",
        "ksha-phase-control-plane-binaries-installed",
        "ksha-phase-control-plane-ca-ready",
        "ksha-phase-control-plane-certificates-issued",
        "ksha-phase-control-plane-service-account-keys-published",
        "ksha-phase-control-plane-service-account-keys-trusted",
        "ksha-phase-control-plane-components-running",
        "ksha-phase-control-plane-other-hosts-cleaned",  # no probe said the workers hold nothing of it
        "ksha-phase-nodes-joined",
        "ksha-phase-nodes-roles-labelled",
    ]
    assert result["steps"][-3]["target"] == ["node1", "node2", "node3"]
    assert result["steps"][-3]["sls"] == ["ksha.kubernetes.clean"]
    roles = result["steps"][-1]
    assert (roles["target"], roles["sls"]) == (["master1"], ["ksha.node.roles", "ksha.network"])
    runtime = result["steps"][-2]
    assert runtime["target"] == ["master1", "master2", "master3", "node1", "node2", "node3"]
    assert runtime["sls"] == ["ksha.containerd", "ksha.node"]
    assert not any("batch" in arg for arg in runtime["args"])  # one batch: no salt batch
    boot = result["steps"][10]
    assert boot["target"] == M and boot["sls"] == ["ksha.etcd"] and boot["pillar"] == {"ksha_etcd_bootstrap": True}
    # Salt's arguments: the target list, the sls, the pillar, failhard, and the step before it.
    assert boot["args"] == [
        {"tgt": "master1,master2,master3"},
        {"tgt_type": "list"},
        {"sls": ["ksha.etcd"]},
        {"pillar": {"ksha_etcd_bootstrap": True}},
        {"failhard": True},
        {"require": [{"salt": "ksha-phase-etcd-certificates-issued"}]},
    ]
    published = result["steps"][-6]
    assert published["args"][:4] == [
        {"name": "ksha.publish_service_account_key"},
        {"tgt": "master1,master2,master3"},
        {"tgt_type": "list"},
        {"expect_minions": True},
    ]
    assert result["steps"][1]["args"][-1] == {"require": [{"ksha": "ksha-preflight-inventory-valid"}]}
    assert result["steps"][0]["args"] == [{"failhard": True}]


def test_membership_changes_become_steps(cluster):
    live = {
        "recorded": {"master1": "c", "master3": "c"},
        "current": ["master1", "master2", "master3", "node9"],
        "ca_keys": ["master1"],
    }
    result = plan.build(cluster, live)
    etcd_ids = [i for i in ids(result) if i.startswith("ksha-phase-etcd")]
    assert etcd_ids == [
        "ksha-phase-etcd-ca-ready",
        "ksha-phase-etcd-master2-joined",
        "ksha-phase-etcd-members-removed",
        "ksha-phase-etcd-members-converged",
        "ksha-phase-etcd-other-hosts-cleaned",
        "ksha-phase-etcd-cluster-healthy",
    ]
    removed = next(s for s in result["steps"] if s["id"] == "ksha-phase-etcd-members-removed")
    assert removed["target"] == ["master1"] and removed["pillar"] == {"ksha_etcd_leaving": ["node9"]}


# (case, ksha:groups:etcd, recorded grains, hosts the certificates-issued step targets: None = no step)
CERTIFICATES_FIRST = [
    ("bootstrap: every member's and master's first", M, {}, M),
    ("running cluster, masters are the members: their own states issue them", M, {m: "c" for m in M}, None),
    ("running cluster, one master not a member: that master's", ["master1"], {"master1": "c"}, ["master2", "master3"]),
    ("bootstrap, one master not a member: members' and masters'", ["master1"], {}, M),
]


@pytest.mark.parametrize("case, members, recorded, issued", CERTIFICATES_FIRST, ids=[c[0] for c in CERTIFICATES_FIRST])
def test_certificates_issued_step_only_where_no_member_state_issues_them(example_ksha, case, members, recorded, issued):
    example_ksha["groups"]["etcd"] = members
    cluster = model.build(example_ksha)
    steps = plan.build(
        cluster,
        {"recorded": recorded, "current": members if recorded else None, "ca_keys": ["master1"] if recorded else []},
    )["steps"]
    found = [s["target"] for s in steps if s["id"] == "ksha-phase-etcd-certificates-issued"]
    assert found == ([issued] if issued else [])
    # right after the CA: the certificates, else the members' own states
    after_ca = steps[[s["id"] for s in steps].index("ksha-phase-etcd-ca-ready") + 1]["id"]
    first = "ksha-phase-etcd-members-bootstrapped" if not recorded else "ksha-phase-etcd-members-converged"
    assert after_ca == ("ksha-phase-etcd-certificates-issued" if issued else first)


MOVED = "ksha:etcd:pki:ca_host resolves to {ca_host}, but the etcd CA's key is on master1 (/etc/ksha/etcd-ca/ca.key)"
LOST = "no host of the inventory holds the etcd CA's key (/etc/ksha/etcd-ca/ca.key), but the CA has issued"
# (case, CA host the model resolved, hosts holding the CA key, CA issued certificates?, refusal or None)
CA_MOVES = [
    ("first run: no CA anywhere yet", "master1", [], False, None),
    ("the CA host holds the key", "master1", ["master1"], True, None),
    ("copied to the new CA host, the old copy still there", "master2", ["master1", "master2"], True, None),
    ("the first member removed: the default CA host moves, the key does not", "master2", ["master1"], True, MOVED),
    ("ca_host set to a member without the key", "master3", ["master1"], True, MOVED),
    ("a key elsewhere before any certificate: still refused", "master2", ["master1"], False, MOVED),
    ("the key holder left the inventory (or ca_dir changed)", "master2", [], True, LOST),
    ("no etcd member at all", None, ["master1"], True, None),
]
SILENT = "the etcd CA's key (/etc/ksha/etcd-ca/ca.key) is on none of the hosts that answered, and master1 did not"


@pytest.mark.parametrize("case, ca_host, holders, issued, refusal", CA_MOVES, ids=[c[0] for c in CA_MOVES])
def test_ca_move_problem(case, ca_host, holders, issued, refusal):
    problem = plan.ca_move_problem("ksha:etcd:pki:ca_host", ca_host, holders, "/etc/ksha/etcd-ca", "etcd", issued)
    if refusal is None:
        assert problem is None
    else:
        assert problem.startswith(refusal.format(ca_host=ca_host)), problem
        assert "docs/ARCHITECTURE.md, 'Moving a CA'" in problem


def test_ca_move_problem_when_hosts_did_not_answer():
    """The key may be on a host that is down: say so instead of 'no host holds it'."""
    problem = plan.ca_move_problem(
        "ksha:etcd:pki:ca_host", "master1", [], "/etc/ksha/etcd-ca", "etcd", True, ("master1",)
    )
    assert problem.startswith(SILENT), problem
    # a host that answered with the key settles it, whoever else is silent
    assert plan.ca_move_problem("k", "master1", ["master1"], "/d", "etcd", True, ("master2",)) is None


def test_a_ca_host_without_the_key_stops_the_etcd_phase_before_anything_of_it(example_ksha):
    """The seed's etcd without master1, whose CA key stays behind: refused before the CA step."""
    example_ksha["loadbalancer"].update(mode="keepalived", address="192.168.0.100")
    example_ksha["groups"]["etcd"] = ["master2", "master3", "node1"]
    cluster = model.build(example_ksha)
    live = {"recorded": {m: "c" for m in M}, "current": M, "ca_keys": ["master1"]}
    steps = plan.build(cluster, live)["steps"]
    etcd = [s for s in steps if s["id"].startswith("ksha-phase-etcd")]
    assert [s["id"] for s in etcd] == ["ksha-phase-etcd-ca-stays-where-its-key-is"]
    assert etcd[0]["state"] == "test.fail_without_changes"
    assert "resolves to master2, but the etcd CA's key is on master1" in etcd[0]["why"]
    # with the key copied over, the change goes ahead
    live["ca_keys"] = ["master1", "master2"]
    etcd = [(s["id"], s["target"]) for s in plan.build(cluster, live)["steps"] if s["id"].startswith("ksha-phase-etcd")]
    assert etcd[:3] == [
        ("ksha-phase-etcd-ca-ready", ["master2"]),
        ("ksha-phase-etcd-certificates-issued", ["master1"]),  # a master, no longer a member
        ("ksha-phase-etcd-node1-joined", ["node1"]),
    ]


def test_a_problem_stops_the_etcd_phase_before_anything_changes(cluster):
    result = plan.build(cluster, {"recorded": {"master1": "c"}, "current": None, "ca_keys": ["master1"]})
    last = result["steps"][-1]
    assert last["id"] == "ksha-phase-etcd-cluster-reachable"
    assert last["state"] == "test.fail_without_changes"
    assert "orch.ksha.etcd_restore" in dict(a for arg in last["args"] for a in arg.items())["name"]
    assert "ksha-phase-etcd-ca-ready" not in ids(result)


UNTIL = [
    ("preflight", "ksha-preflight-pillar-refreshed"),
    ("common", "ksha-phase-common-applied"),
    ("lb", "ksha-phase-lb-keepalived-haproxy-applied"),
    ("etcd", "ksha-phase-etcd-cluster-healthy"),
    ("control-plane", "ksha-phase-control-plane-other-hosts-cleaned"),
    ("nodes", "ksha-phase-nodes-roles-labelled"),
]


@pytest.mark.parametrize("until, last", UNTIL)
def test_until_stops_after_the_phase(cluster, until, last):
    assert ids(plan.build(cluster, {"recorded": {}, "current": None, "ca_keys": []}, until))[-1] == last


def test_until_an_unknown_phase_fails_first(cluster):
    result = plan.build(cluster, None, "kubesphere")
    assert ids(result) == ["ksha-orchestration-until-names-a-phase"]
    assert "ksha_until: kubesphere is not a phase; use one of preflight, common, lb, etcd" in result["steps"][0]["why"]


def test_an_invalid_pillar_plans_only_the_validation():
    assert ids(plan.build(None)) == ["ksha-preflight-inventory-valid"]


SNAPSHOTS = {
    "master1": [{"path": "/b/etcd-1.db", "mtime": 100}, {"path": "/b/etcd-3.db", "mtime": 300}],
    "master2": [{"path": "/b/etcd-2.db", "mtime": 200}],
    "master3": "etcdctl failed",
}

RESTORES = [
    ("newest on any member", None, None, ("master1", "/b/etcd-3.db", None)),
    ("newest of one member", "master2", None, ("master2", "/b/etcd-2.db", None)),
    ("a given snapshot", "master1", "/b/etcd-1.db", ("master1", "/b/etcd-1.db", None)),
    ("a source that is no member", "node1", None, ("node1", None, "source 'node1' is not an etcd member")),
    ("a snapshot that is not there", "master2", "/b/x.db", ("master2", "/b/x.db", "nothing to restore: /b/x.db on")),
]


@pytest.mark.parametrize("case, source, snapshot, expected", RESTORES, ids=[c[0] for c in RESTORES])
def test_restore_plan(cluster, case, source, snapshot, expected):
    result = plan.restore(cluster, SNAPSHOTS, source, snapshot)
    assert (result["source"], result["snapshot"]) == expected[:2]
    if expected[2]:
        assert expected[2] in result["problem"]
        assert ids(result) == ["ksha-etcd-restore-snapshot-chosen"]
        assert result["steps"][0]["state"] == "test.fail_without_changes"
    else:
        assert result["problem"] is None
        joined = [i for i in ids(result) if i.endswith("-joined")]
        assert joined == [f"ksha-etcd-restore-{m}-joined" for m in M if m != expected[0]]
        prepared = result["steps"][1]
        action = {
            "master1": {"restore": ["master1"], "move_aside": ["master2", "master3"]},
            "master2": {"restore": ["master2"], "move_aside": ["master1", "master3"]},
        }[expected[0]]
        action = {m: what for what, members in action.items() for m in members}
        assert prepared["target"] == M
        assert prepared["pillar"] == {
            "ksha_restore": {"source": expected[0], "snapshot": expected[1], "action": action}
        }


def test_describe_is_for_a_person(cluster):
    text = plan.describe(plan.build(cluster, {"recorded": {}, "current": None, "ca_keys": []})["steps"])
    assert "11. ksha-phase-etcd-members-bootstrapped\n    ksha.etcd on master1,master2,master3\n" in text
    assert "    pillar {'ksha_etcd_bootstrap': True}\n" in text


def test_restore_with_an_invalid_pillar_fails_and_says_so():
    result = plan.restore(None, {})
    assert "salt-run ksha.validate" in result["problem"]
    assert [(s["id"], s["state"]) for s in result["steps"]] == [
        ("ksha-etcd-restore-snapshot-chosen", "test.fail_without_changes")
    ]


def test_the_etcd_phase_is_never_planned_without_the_live_cluster(cluster):
    with pytest.raises(ValueError, match="pass live"):
        plan.build(cluster, None)
    assert ids(plan.build(cluster, None, "lb"))[-1] == "ksha-phase-lb-keepalived-haproxy-applied"


LB_LEFTOVERS = {"marked": ["/etc/keepalived/keepalived.conf"], "owned": ["/etc/sysctl.d/60-ksha-lb.conf"]}

# (case, what the probe found on node1 (None: no answer), recorded hosts, node1 cleaned)
LEFTOVERS = [
    ("nothing of ksha's: not cleaned", {}, (), False),
    ("the distro's config, no marker: not cleaned", {"/etc/keepalived/keepalived.conf": 0}, (), False),
    ("ksha's config, with the marker: cleaned", {"/etc/keepalived/keepalived.conf": 1}, (), True),
    ("a file only ksha writes, marker or not: cleaned", {"/etc/sysctl.d/60-ksha-lb.conf": 0}, (), True),
    ("a marker in a file the component does not own: not cleaned", {"/etc/other.conf": 3}, (), False),
    ("did not answer: cleaned (cleaning a clean host changes nothing)", None, (), True),
    ("recorded (etcd's bootstrap grain) whatever its files: cleaned", {}, ("node1",), True),
]


@pytest.mark.parametrize("case, found, recorded, cleaned", LEFTOVERS, ids=[c[0] for c in LEFTOVERS])
def test_which_hosts_are_cleaned(case, found, recorded, cleaned):
    probe = {"node1": found, "node2": {}}
    assert plan.with_leftovers(["node1", "node2"], LB_LEFTOVERS, probe, recorded) == (["node1"] if cleaned else [])


def test_without_a_probe_every_other_host_is_cleaned():
    assert plan.with_leftovers(["node1", "node2"], LB_LEFTOVERS, None) == ["node1", "node2"]


# (case, the cmd.run_all return of the probe, what is read from it)
GONE = "grep: /c.sh: No such file or directory"
PROBE_RETURNS = [
    ("files with and without the marker", {"retcode": 0, "stdout": "/a.conf:1\n/b.cfg:0"}, {"/a.conf": 1, "/b.cfg": 0}),
    ("no file has a marker", {"retcode": 1, "stdout": "/b.cfg:0"}, {"/b.cfg": 0}),
    (
        "some files missing (grep says 2, lists the rest)",
        {"retcode": 2, "stdout": "/a.conf:2", "stderr": GONE},
        {"/a.conf": 2},
    ),
    ("no file there", {"retcode": 2, "stdout": "", "stderr": f"{GONE}\n{GONE.replace('c.sh', 'd')}"}, {}),
    (
        "a file grep cannot read: not taken for absent",
        {"retcode": 2, "stdout": "/a.conf:0", "stderr": "grep: /etc/keepalived/keepalived.conf: Permission denied"},
        None,
    ),
    ("an error grep does not explain", {"retcode": 2, "stdout": "/a.conf:0", "stderr": ""}, None),
    ("a path with a colon", {"retcode": 0, "stdout": "/x:y.conf:1"}, {"/x:y.conf": 1}),
    ("the minion's error string", "'cmd.run_all' is not available.", None),
    ("grep not found", {"retcode": 127, "stdout": ""}, None),
    ("output that is not grep -c's", {"retcode": 0, "stdout": "something else"}, None),
]


@pytest.mark.parametrize("case, ret, found", PROBE_RETURNS, ids=[c[0] for c in PROBE_RETURNS])
def test_probe_returns_are_read(case, ret, found):
    assert plan.files_found(ret) == found


def test_the_probe_asks_for_every_file_a_clean_state_removes_and_every_marker(cluster):
    argv = plan.file_probe(cluster)
    assert argv[:4] == ["env", "LC_ALL=C", "grep", "-cHF"]  # no -s: an unreadable file must show as an error
    files = argv[argv.index("--") + 1 :]
    lb, etcd, cas = cluster["loadbalancer"], cluster["etcd"], cluster["kubernetes"]["cas"]
    for path in (lb["keepalived_conf"], lb["haproxy_cfg"], lb["check_script"], lb["sysctl_file"], etcd["unit_file"]):
        assert path in files
    # where the CA keys are, and whether a host trusts the Kubernetes CA
    for path in (
        etcd["ca"]["key"],
        cas["kubernetes"]["key"],
        cas["front-proxy"]["key"],
        cas["kubernetes"]["installed"],
    ):
        assert path in files
    # a former master: ksha's units
    for unit in cluster["kubernetes"]["unit_files"].values():
        assert unit in files
    # a former node: ksha's kubelet and kube-proxy units, containerd's config.toml
    nodes = cluster["nodes"]
    for path in (*nodes["unit_files"].values(), nodes["containerd"]["config_file"]):
        assert path in files
    assert argv[4:16] == ["-e", lb["marker"], "-e", etcd["marker"], "-e", cluster["kubernetes"]["marker"],
                          "-e", nodes["marker"], "-e", nodes["containerd"]["marker"], "-e", etcd["backup_marker"]]  # fmt: skip
    # a former member cleaned before ksha.etcd.clean removed the backup timer: its timer counts
    assert etcd["backup_files"]["timer"] in files and etcd["backup_files"]["timer"] in etcd["leftovers"]["marked"]


def test_clean_steps_only_where_something_is_left(cluster):
    """A converged cluster: no clean step. A former LB host and a former member: cleaned."""
    hosts = [h["name"] for h in cluster["hosts"]]
    live = {"recorded": {m: "c" for m in M}, "current": M, "ca_keys": ["master1"], "files": {h: {} for h in hosts}}
    assert not [i for i in ids(plan.build(cluster, live)) if i.endswith("-cleaned")]
    live["files"]["node1"] = {cluster["loadbalancer"]["keepalived_conf"]: 1, cluster["etcd"]["unit_file"]: 1}
    live["files"]["node2"] = None
    live["files"]["node3"] = {"/etc/systemd/system/kube-apiserver.service": 1}  # a former master
    live["files"]["master1"] = {"/etc/systemd/system/kube-apiserver.service": 1}  # a master: not cleaned
    steps = {s["id"]: s["target"] for s in plan.build(cluster, live)["steps"]}
    assert steps["ksha-phase-lb-other-hosts-cleaned"] == ["node1", "node2"]
    assert steps["ksha-phase-etcd-other-hosts-cleaned"] == ["node1", "node2"]
    assert steps["ksha-phase-control-plane-other-hosts-cleaned"] == ["node2", "node3"]
    # a unit of the same path without ksha's marker (0 marked lines) is not ksha's: left alone
    live["files"]["node3"] = {"/etc/systemd/system/kube-apiserver.service": 0}
    steps = {s["id"]: s["target"] for s in plan.build(cluster, live)["steps"]}
    assert steps["ksha-phase-control-plane-other-hosts-cleaned"] == ["node2"]
    # a former member cleaned by an older ksha: no etcd unit, its backup timer (ksha's) still there
    live["files"]["node3"] = {cluster["etcd"]["backup_files"]["timer"]: 1}
    steps = {s["id"]: s["target"] for s in plan.build(cluster, live)["steps"]}
    assert steps["ksha-phase-etcd-other-hosts-cleaned"] == ["node1", "node2", "node3"]


KEY = "/etc/ksha/kubernetes-ca/ca.key"
FP_KEY = "/etc/ksha/kubernetes-ca/front-proxy-ca.key"
TRUSTED = "/etc/kubernetes/pki/ca.crt"

# (case, the probe's {host: files} (Kubernetes CA key, CA certificate), ca_host, expected: steps or refusal text)
CONTROL_PLANE = [
    ("bare hosts: the CA is made on the first master", {}, None, "steps"),
    ("the keys where the CA host is", {"master1": [KEY, FP_KEY, TRUSTED], "master2": [TRUSTED]}, None, "steps"),
    ("ca_host moved off the key", {"master1": [KEY, FP_KEY, TRUSTED], "master2": [TRUSTED]}, "master2",
     "ksha:kubernetes:pki:ca_host resolves to master2, but the kubernetes CA's key is on master1"),
    ("certificates issued, no key anywhere", {"master2": [TRUSTED]}, None,
     "no host of the inventory holds the kubernetes CA's key (/etc/ksha/kubernetes-ca/ca.key)"),
    ("a partial copy: the front-proxy key stayed behind", {"master1": [FP_KEY, TRUSTED], "master2": [KEY, TRUSTED]},
     "master2", "the front-proxy CA's key is on master1 (/etc/ksha/kubernetes-ca/front-proxy-ca.key)"),
    ("no key among those that answered, the CA host silent", {"master2": [TRUSTED], "master1": None}, None,
     "master1 did not answer"),
]  # fmt: skip


@pytest.mark.parametrize("case, files, ca_host, expected", CONTROL_PLANE, ids=[c[0] for c in CONTROL_PLANE])
def test_control_plane_pki_steps_and_refusals(example_ksha, case, files, ca_host, expected):
    example_ksha["loadbalancer"].update(mode="keepalived", address="192.168.0.100")
    if ca_host:
        example_ksha.setdefault("kubernetes", {}).setdefault("pki", {})["ca_host"] = ca_host
    cluster = model.build(example_ksha)
    found = {h["name"]: {p: 0 for p in files.get(h["name"]) or []} for h in cluster["hosts"]}
    found.update({h: None for h, paths in files.items() if paths is None})
    silent = [h for h, paths in found.items() if paths is None]
    live = {"recorded": {m: "c" for m in M}, "current": M, "ca_keys": ["master1"], "silent": silent, "files": found}
    steps = plan.build(cluster, live)["steps"]
    control_plane = [s for s in steps if s["id"].startswith("ksha-phase-control-plane")]
    if expected == "steps":
        assert [(s["id"], s["target"], s["sls"]) for s in control_plane] == [
            ("ksha-phase-control-plane-binaries-installed", M, ["ksha.kubernetes.install"]),
            ("ksha-phase-control-plane-ca-ready", ["master1"], ["ksha.kubernetes.ca"]),
            ("ksha-phase-control-plane-certificates-issued", M, ["ksha.kubernetes.pki"]),
            ("ksha-phase-control-plane-service-account-keys-published", M, []),
            ("ksha-phase-control-plane-service-account-keys-trusted", M, ["ksha.kubernetes.service_account"]),
            ("ksha-phase-control-plane-components-running", M, ["ksha.kubernetes.service"]),
        ]
    else:
        [refusal] = control_plane
        assert refusal["id"] == "ksha-phase-control-plane-ca-stays-where-its-key-is"
        assert refusal["state"] == "test.fail_without_changes" and expected in refusal["why"]
        assert steps[-1] is refusal


def test_no_phase_is_planned_after_a_refusal(cluster):
    live = {"recorded": {"master1": "c"}, "current": None, "ca_keys": ["master1"]}
    assert ids(plan.build(cluster, live))[-1] == "ksha-phase-etcd-cluster-reachable"


# (case, until, sha256) -> the preflight's refusal (its step ID), or None: the run goes on. A
# release without its checksum is refused before any host is touched, unless the run stops
# before the control plane.
RELEASE = [
    ("no checksum, the whole run", None, None, "ksha-preflight-kubernetes-release-checksum-set"),
    ("no checksum, up to the control plane", "control-plane", None, "ksha-preflight-kubernetes-release-checksum-set"),
    ("no checksum, up to etcd only", "etcd", None, None),
    ("no checksum, up to preflight only", "preflight", None, None),
    ("a checksum", None, "ab" * 32, None),
]


@pytest.mark.parametrize("case, until, sha256, refusal", RELEASE, ids=[r[0] for r in RELEASE])
def test_a_release_without_its_checksum_is_refused_at_preflight(example_ksha, case, until, sha256, refusal):
    example_ksha["kubernetes"]["archive"]["sha256"] = sha256
    cluster = model.build(example_ksha)
    live = {"recorded": {}, "current": None, "ca_keys": [], "files": {}}
    steps = plan.build(cluster, live, until=until)["steps"]
    failing = [s for s in steps if s["state"] == "test.fail_without_changes"]
    if refusal is None:
        assert not failing, failing
        assert ("ksha-phase-control-plane-binaries-installed" in ids({"steps": steps})) == (
            until in (None, "control-plane")
        )
        return
    assert [s["id"] for s in steps] == ["ksha-preflight-inventory-valid", refusal]
    why = steps[-1]["why"]
    assert why.startswith("ksha:kubernetes:archive:sha256 is not set")
    assert "https://dl.k8s.io/v1.30.8/kubernetes-server-linux-amd64.tar.gz.sha256" in why


def test_a_mirror_url_is_never_shown_in_the_refusal(example_ksha):
    """A mirror's URL may carry credentials: the refusal names the key and upstream's checksum only."""
    example_ksha["kubernetes"]["archive"] = {"url": "https://user:s3cret@mirror.example/k.tar.gz", "sha256": None}
    [_, refusal] = plan.build(model.build(example_ksha), {"recorded": {}, "current": None, "ca_keys": []})["steps"]
    assert "s3cret" not in refusal["why"] and "mirror.example" not in refusal["why"]


QC = {"zone": "pek3a", "vxnet": "vxnet-hosts", "credentials_file": "/etc/salt/ksha-qingcloud.yaml"}
PRE = [
    "ksha-preflight-inventory-valid",
    "ksha-preflight-qingcloud-api-answers",
    "ksha-preflight-every-host-minion-responds",
    "ksha-preflight-custom-modules-synced",
    "ksha-preflight-custom-states-synced",
    "ksha-preflight-pillar-refreshed",
]
PRE_PLAIN = [s for s in PRE if "qingcloud" not in s]
# (case, ksha:loadbalancer, until, the steps up to the LB phase's end)
QINGCLOUD_STEPS = [
    (
        "qingcloud mode: the load balancer made and reached before the LB domain points at it, a former "
        "keepalived LB cleaned after; the console's (no eip) deleted if there",
        {"mode": "qingcloud", "address": "192.168.0.250", "qingcloud": QC},
        "lb",
        [
            *PRE,
            "ksha-phase-lb-qingcloud-loadbalancers-present",
            "ksha-phase-lb-reached-from-every-host",
            "ksha-phase-common-applied",
            "ksha-phase-lb-other-hosts-cleaned",
            "ksha-phase-lb-qingcloud-unwanted-absent",
        ],
    ),
    (
        "qingcloud mode with an eip: nothing of ksha's to delete",
        {"mode": "qingcloud", "address": "192.168.0.250", "qingcloud": {**QC, "eip": "eip-1"}},
        "lb",
        [
            *PRE,
            "ksha-phase-lb-qingcloud-loadbalancers-present",
            "ksha-phase-lb-reached-from-every-host",
            "ksha-phase-common-applied",
            "ksha-phase-lb-other-hosts-cleaned",
        ],
    ),
    (
        "switched away to keepalived, the key still set: ksha's load balancers deleted once the hosts use the VIP",
        {"mode": "keepalived", "address": "192.168.0.100", "qingcloud": QC},
        "lb",
        [
            *PRE,
            "ksha-phase-common-applied",
            "ksha-phase-lb-other-hosts-cleaned",
            "ksha-phase-lb-keepalived-haproxy-applied",
            "ksha-phase-lb-qingcloud-unwanted-absent",
        ],
    ),
    (
        "keepalived without a QingCloud key: the API is never asked",
        {"mode": "keepalived", "address": "192.168.0.100", "qingcloud": {**QC, "credentials_file": None}},
        "lb",
        [
            *PRE_PLAIN,
            "ksha-phase-common-applied",
            "ksha-phase-lb-other-hosts-cleaned",
            "ksha-phase-lb-keepalived-haproxy-applied",
        ],
    ),
    (
        "qingcloud mode, a run that stops after common: the LB domain points only at a load balancer made and "
        "reached; nothing deleted",
        {"mode": "qingcloud", "address": "192.168.0.250", "qingcloud": QC},
        "common",
        [
            *PRE,
            "ksha-phase-lb-qingcloud-loadbalancers-present",
            "ksha-phase-lb-reached-from-every-host",
            "ksha-phase-common-applied",
        ],
    ),
    (
        "qingcloud mode, a run that stops at the preflight asks no API",
        {"mode": "qingcloud", "address": "192.168.0.250", "qingcloud": QC},
        "preflight",
        PRE_PLAIN,
    ),
]


@pytest.mark.parametrize("case, lb, until, expected", QINGCLOUD_STEPS, ids=[c[0] for c in QINGCLOUD_STEPS])
def test_qingcloud_steps(example_ksha, case, lb, until, expected):
    example_ksha["loadbalancer"] = lb
    result = plan.build(model.build(example_ksha), {"recorded": {}, "current": None, "ca_keys": []}, until)
    assert ids(result) == expected


def test_the_qingcloud_steps_run_on_the_master_with_the_model_s_arguments_and_no_key(example_ksha):
    example_ksha["loadbalancer"] = {
        "mode": "qingcloud", "address": "192.168.0.250",
        "qingcloud": {**QC, "credentials_file": None, "access_key_id": "QYKEYID", "secret_access_key": "s3cret"},
    }  # fmt: skip
    cluster = model.build(example_ksha)
    steps = {s["id"]: s for s in plan.build(cluster, {"recorded": {}, "current": None, "ca_keys": []}, "lb")["steps"]}
    present = steps["ksha-phase-lb-qingcloud-loadbalancers-present"]
    assert present["target"] == [] and present["state"] == "ksha_qingcloud.loadbalancers_present"
    args = {k: v for arg in present["args"] for k, v in arg.items()}
    assert args["loadbalancers"] == cluster["loadbalancer"]["qingcloud"]["present"]["loadbalancers"]
    [internal] = args["loadbalancers"]
    assert internal["private_ip"] == "192.168.0.250" and internal["vxnet"] == "vxnet-hosts"
    backends = internal["listeners"][0]["backends"]
    assert [(b["host"], b["port"]) for b in backends] == [(m, 6443) for m in M]
    assert args["require"] == [{"salt": "ksha-preflight-pillar-refreshed"}] and args["failhard"] is True
    reach = steps["ksha-phase-lb-reached-from-every-host"]
    assert reach["sls"] == ["ksha.loadbalancer.external"] and reach["target"] == [h["name"] for h in cluster["hosts"]]
    assert reach["pillar"] == {"ksha_lb_made_by_this_run": True}
    absent = {k: v for arg in steps["ksha-phase-lb-qingcloud-unwanted-absent"]["args"] for k, v in arg.items()}
    assert absent["loadbalancers"] == ["ksha-kubesphere-console"] and absent["address"] == "192.168.0.250"
    # the preflight is given what the LB phase would delete, to refuse it before any host is touched
    pre = {k: v for arg in steps["ksha-preflight-qingcloud-api-answers"]["args"] for k, v in arg.items()}
    assert (pre["unwanted"], pre["address"]) == (absent["loadbalancers"], absent["address"])
    # each of the three gets the model's connection settings (the state reads only the key itself)
    connection = cluster["loadbalancer"]["qingcloud"]["connection"]
    assert connection == {"zone": "pek3a", "api": {"host": "api.qingcloud.com", "port": 443, "protocol": "https"},
                          "credentials_file": None}  # fmt: skip
    assert pre["connection"] == args["connection"] == absent["connection"] == connection
    assert "QYKEYID" not in repr(steps) and "s3cret" not in repr(steps)


def test_no_step_argument_is_one_salt_s_state_compiler_takes_for_its_own(example_ksha):
    """A state argument named as one of Salt's state keywords (``names``, ``fun``, ``state``,
    ``order`` ...) is taken by the state compiler, not given to the state: only the requisite and
    failhard the plan means to give it may be among them."""
    import salt.state

    reserved = (salt.state.STATE_INTERNAL_KEYWORDS | {"names"}) - {"failhard", "require"}
    example_ksha["loadbalancer"] = {"mode": "keepalived", "address": "192.168.0.100", "qingcloud": QC}
    steps = []
    for lb in (example_ksha["loadbalancer"], {"mode": "qingcloud", "address": "192.168.0.250", "qingcloud": QC}):
        example_ksha["loadbalancer"] = lb
        steps += plan.build(model.build(example_ksha), {"recorded": {}, "current": None, "ca_keys": []})["steps"]
    taken = {(s["id"], k) for s in steps for arg in s["args"] for k in arg if k in reserved}
    assert taken == set()
