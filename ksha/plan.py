"""Plans as data: the ordered steps of ``orch.ksha`` and ``orch.ksha.etcd_restore``.

Pure functions of the cluster model (``ksha.model.build``) and of the live facts the
runner gathered (which hosts recorded a bootstrapped etcd, the member list etcd
reports, the snapshots on the members). ``salt-run ksha.plan`` prints a plan; the
orchestration SLS files render its steps as they are, and decide nothing.

A step is a dict:

- ``id``: the state ID; ``state``: the orchestration state function (``salt.state``,
  ``salt.function``, ``ksha.inventory_valid``, ``test.fail_without_changes``, ...);
- ``target``: the minions (``[]`` for a step on the master); ``sls``, ``function``,
  ``pillar``: what runs there; ``why``: one line for the operator;
- ``args``: the state's arguments as Salt takes them (a list of one-key mappings), with
  ``failhard`` and a ``require`` of the step before: each step needs the one before it.
"""

from __future__ import annotations

PHASES = ("preflight", "common", "lb", "etcd", "control-plane", "nodes")
RESTORE_HINT = "salt-run state.orchestrate orch.ksha.etcd_restore"


def phases_until(until: str | None) -> tuple[str, ...]:
    """The phases a run with ``ksha_until: until`` goes through (none for an unknown phase)."""
    until = until or PHASES[-1]
    return PHASES[: PHASES.index(until) + 1] if until in PHASES else ()


class Steps:
    """Builds the chain of steps, each requiring the one before it."""

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.refused = False  # a step fails the run: no phase is planned after it

    def add(self, step_id, state, why, target=(), sls=(), function=None, pillar=None, extra=None) -> None:
        args: list[dict] = []
        if state == "salt.function":
            args.append({"name": function})
        if target:
            args += [{"tgt": ",".join(target)}, {"tgt_type": "list"}]
        if sls:
            args.append({"sls": list(sls)})
        if pillar:
            args.append({"pillar": pillar})
        args += [{k: v} for k, v in (extra or {}).items()]
        args.append({"failhard": True})
        if self.steps:
            before = self.steps[-1]
            args.append({"require": [{before["state"].split(".")[0]: before["id"]}]})
        self.steps.append(
            {
                "id": step_id,
                "state": state,
                "target": list(target),
                "sls": list(sls),
                "function": function,
                "pillar": pillar or {},
                "why": why,
                "args": args,
            }
        )

    def fail(self, step_id, message) -> None:
        """A step that fails the run here with `message` (a refusal or a problem found)."""
        self.refused = True
        self.add(step_id, "test.fail_without_changes", message, extra={"name": message, "comment": message})


def etcd_membership(members: list[str], recorded: dict[str, str], current: list[str] | None) -> dict:
    """What the etcd phase does with the live cluster (pure).

    members
        the members in pillar (``model["etcd"]["names"]``).
    recorded
        ``{minion: cluster ID}`` of the hosts whose grain ``ksha_etcd_cluster_id`` says the
        cluster was bootstrapped (set by ``ksha.etcd.healthy``).
    current
        the member names etcd reports, or None when no member answered.

    A member joins (one at a time) when it is in pillar but not in the cluster, or listed
    but its host lost its data (no grain: a replaced machine); a member leaves when it is
    in the cluster but no longer in pillar, removed from a member that stays.
    """
    bootstrapped = bool(recorded)
    out = {
        "bootstrapped": bootstrapped,
        "joining": [],
        "leaving": [],
        "remover": None,
        "problem": None,
    }
    if not bootstrapped:
        return out
    if current is None:
        out["problem"] = (
            f"the etcd cluster was bootstrapped (grain ksha_etcd_cluster_id on {', '.join(sorted(recorded))}) "
            f"but no member answers; if quorum is lost for good, restore it: {RESTORE_HINT}"
        )
        return out
    out["joining"] = [m for m in members if m not in current or m not in recorded]
    out["leaving"] = [m for m in current if m not in members]
    out["remover"] = next((m for m in members if m in recorded and m in current), None)
    if out["leaving"] and not out["remover"]:
        out["problem"] = (
            "every etcd member would change at once (none of ksha:groups:etcd is a running member); "
            "keep at least one running member in ksha:groups:etcd"
        )
    return out


def ca_move_problem(
    key: str,
    ca_host: str | None,
    holders: list[str],
    ca_dir: str,
    what: str,
    issued: bool,
    silent: tuple = (),
    key_file: str = "ca.key",
) -> str | None:
    """Refuse a CA host that does not hold the CA key once the CA exists (pure).

    key
        the pillar key naming the CA host (``ksha:etcd:pki:ca_host``); ca_host: what the model
        resolved it to (its default is the first member, so removing that member moves it).
    holders
        the inventory hosts whose ``ca_dir`` holds the CA's private key now.
    issued
        whether the CA has issued certificates already (the cluster was bootstrapped).
    silent
        the hosts that did not answer where the key is (the key may be on one of them).
    key_file
        the CA key's file name in ``ca_dir``.

    The CA host's state would make a new CA there, and every certificate of that CA would
    change at once: members that trust only one of the two CAs cannot talk to each other.
    Before the first certificate there is nothing to keep.
    """
    if not ca_host or ca_host in holders or not (holders or issued):
        return None
    if not holders and silent:
        return (
            f"the {what} CA's key ({ca_dir}/{key_file}) is on none of the hosts that answered, and "
            f"{', '.join(silent)} did not answer: bring them up (the CA host may be among them) and run again"
        )
    if not holders:
        return (
            f"no host of the inventory holds the {what} CA's key ({ca_dir}/{key_file}), but the CA has issued "
            f"certificates: {ca_host} ({key}) would make a new CA and every {what} certificate would change at "
            f"once. Put {ca_dir} back on {ca_host} as it was (from the old CA host or its backup; docs/"
            "ARCHITECTURE.md, 'Moving a CA'), then run orch.ksha again; ksha never replaces a CA by itself"
        )
    return (
        f"{key} resolves to {ca_host}, but the {what} CA's key is on {', '.join(holders)} ({ca_dir}/{key_file}): "
        f"{ca_host} would make a new CA and every {what} certificate would change at once. Move the CA first: "
        f"copy {ca_dir} from {holders[0]} to {ca_host} as it is (docs/ARCHITECTURE.md, 'Moving a CA'), then run "
        f"orch.ksha again; or set {key} to a host that holds it"
    )


def file_probe(model: dict) -> list[str]:
    """The command (argv, no shell) that tells the plan what it needs of a host's files (pure):
    what ksha's clean states would remove, where the CA keys are, whether the host trusts the
    Kubernetes CA. For each of those files that exists, ``path:N``, N the lines carrying a
    ksha marker (grep -c; a missing file is an error line of its own). A line counts any
    component's marker: a file of one component never carries another's. Read with
    ``files_found``."""
    components = (model["loadbalancer"], model["etcd"], model["kubernetes"], model["nodes"])
    paths = [p for c in components for kind in ("marked", "owned") for p in c["leftovers"][kind]]
    cas = model["kubernetes"]["cas"]
    paths += [model["etcd"]["ca"]["key"], *(ca["key"] for ca in cas.values()), cas["kubernetes"]["installed"]]
    marks = [c["marker"] for c in components] + [model["nodes"]["containerd"]["marker"], model["etcd"]["backup_marker"]]
    markers = [arg for mark in marks for arg in ("-e", mark)]
    # LC_ALL=C: files_found reads grep's "No such file or directory", whatever the host's locale
    return ["env", "LC_ALL=C", "grep", "-cHF", *markers, "--", *paths]


def holders(files: dict, path: str) -> list[str]:
    """The hosts whose probe (``files_found``) lists ``path`` (pure)."""
    return [host for host, found in files.items() if found and path in found]


MISSING = ": No such file or directory"


def files_found(ret) -> dict[str, int] | None:
    """``{path: marker lines}`` from a host's ``cmd.run_all`` of ``file_probe`` (pure); None
    when nothing is known: no answer, or an error other than a missing file (a file grep could
    not read may be ksha's keepalived.conf: it must not pass for absent)."""
    if not isinstance(ret, dict) or not isinstance(ret.get("stdout"), str) or ret.get("retcode") not in (0, 1, 2):
        return None
    errors = [line for line in str(ret.get("stderr") or "").splitlines() if line.strip()]
    if any(not line.endswith(MISSING) for line in errors) or (ret["retcode"] == 2 and not errors):
        return None
    found = {}
    for line in ret["stdout"].splitlines():
        path, sep, count = line.rpartition(":")
        if not sep or not count.isdigit():
            return None
        found[path] = int(count)
    return found


def with_leftovers(hosts: list[str], leftovers: dict, found: dict | None, recorded=()) -> list[str]:
    """The hosts among ``hosts`` that hold something a clean state removes (pure).

    leftovers
        the component's ``{"marked": [...], "owned": [...]}`` (``ksha.model``): files that count
        when they carry ksha's marker, files that are ksha's wherever they are.
    found
        ``{host: {path: marker lines} or None}`` as ``files_found`` read the probe; None when
        there was no probe. A host that did not answer is kept: cleaning a clean host changes
        nothing, skipping one that still runs ksha's keepalived would leave a second VIP holder.
    recorded
        hosts that count whatever their files say (etcd: the bootstrap grain).
    """
    if found is None:
        return list(hosts)

    def dirty(host):
        files = found.get(host)
        if files is None or host in recorded:
            return True
        return any(files.get(p, 0) > 0 for p in leftovers["marked"]) or any(p in files for p in leftovers["owned"])

    return [h for h in hosts if dirty(h)]


def build(model: dict | None, live: dict | None = None, until: str | None = None) -> dict:
    """The steps of ``orch.ksha``.

    model
        the cluster model, or None when the pillar is not valid: then the plan is the
        preflight's validation alone, which fails and says why.
    live
        what the runner found on the hosts: ``{"recorded": {...}, "current": [...] or None,
        "ca_keys": [...], "silent": [...], "files": {host: {...} or None}}``. ``recorded``
        and ``current``: see ``etcd_membership``; ``ca_keys``, the hosts holding the etcd CA's
        key, ``silent`` the hosts that did not say (``ca_move_problem``), both needed when the
        etcd phase is planned; ``files``: see ``file_probe`` and ``with_leftovers`` (without
        it, every host that is not an LB host or an etcd member is cleaned, and the Kubernetes
        CA counts as not made yet).
    until
        the last phase to run (default: all).
    """
    steps = Steps()
    until = until or PHASES[-1]
    enabled = phases_until(until)
    if not enabled:
        steps.fail(
            "ksha-orchestration-until-names-a-phase",
            f"ksha_until: {until} is not a phase; use one of {', '.join(PHASES)}",
        )
        return {"until": until, "steps": steps.steps}
    steps.add(
        "ksha-preflight-inventory-valid",
        "ksha.inventory_valid",
        "the ksha pillar is valid and reaches every host (read-only, so it runs under test=True too)",
    )
    if model is None:
        return {"until": until, "steps": steps.steps}
    qingcloud = model["loadbalancer"]["qingcloud"]
    # qingcloud mode: ksha's load balancers are made before ksha.common points the LB domain at
    # them, in any run that reaches common; the unwanted are deleted last in the LB phase
    qc_present = qingcloud["present"] if "common" in enabled else None
    qc_absent = qingcloud["absent"] if "lb" in enabled else None
    if qc_present or qc_absent:
        steps.add(
            "ksha-preflight-qingcloud-api-answers",
            "ksha_qingcloud.api_answers",
            "QingCloud's API answers ksha's key, and what the LB phase would delete may go (read-only, on the "
            "master, before any host is touched)",
            extra={
                "connection": qingcloud["connection"],
                **({"unwanted": qc_absent["loadbalancers"], "address": qc_absent["address"]} if qc_absent else {}),
            },
        )
    release_problem = model["kubernetes"]["archive"]["problem"]
    if "control-plane" in enabled and model["kubernetes"]["masters"] and release_problem:
        steps.fail("ksha-preflight-kubernetes-release-checksum-set", release_problem)
        return {"until": until, "steps": steps.steps}
    node_problem = model["nodes"]["release"]["archive"]["problem"]
    if "nodes" in enabled and model["nodes"]["hosts"] and node_problem:
        steps.fail("ksha-preflight-kubernetes-node-release-checksum-set", node_problem)
        return {"until": until, "steps": steps.steps}
    everyone = [h["name"] for h in model["hosts"]]
    lb, etcd = model["loadbalancer"], model["etcd"]
    steps.add(
        "ksha-preflight-every-host-minion-responds",
        "salt.function",
        "every inventory host answers before anything changes",
        target=everyone,
        function="test.ping",
        extra={"expect_minions": True},
    )
    # ksha's minion-side code is execution and state modules only: syncing those two types
    # takes ~1 s each where saltutil.sync_all, which walks every type, takes ~5 s (and only
    # asks for a pillar refresh, without waiting for it). Neither reloads the minion's modules
    # (refresh=False): the pillar refresh after them does, once.
    steps.add(
        "ksha-preflight-custom-modules-synced",
        "salt.function",
        "ksha's execution modules on every host",
        target=everyone,
        function="saltutil.sync_modules",
        extra={"kwarg": {"refresh": False}},
    )
    steps.add(
        "ksha-preflight-custom-states-synced",
        "salt.function",
        "ksha's state modules on every host",
        target=everyone,
        function="saltutil.sync_states",
        extra={"kwarg": {"refresh": False}},
    )
    steps.add(
        "ksha-preflight-pillar-refreshed",
        "salt.function",
        "every host's pillar compiled anew and in use (the model; the CA host's signing policies), modules reloaded",
        target=everyone,
        function="saltutil.refresh_pillar",
        extra={"kwarg": {"wait": True}},
    )
    if lb["mode"] == "external":
        steps.add(
            "ksha-preflight-lb-address-reachable-from-every-host",
            "salt.state",
            "external mode: every host reaches the LB before the LB domain is pointed at it",
            target=lb["external_check"],
            sls=["ksha.loadbalancer.external"],
        )
    if qc_present:
        # before ksha.common points the LB domain at the load balancer: it exists and answers
        # first. A former keepalived LB goes after (the LB phase's clean): it serves until then,
        # and a failure here leaves it serving. (On QingCloud a keepalived VIP at the same
        # address is a VIP resource of the VxNet: CreateLoadBalancer at it is refused.)
        steps.add(
            "ksha-phase-lb-qingcloud-loadbalancers-present",
            "ksha_qingcloud.loadbalancers_present",
            "QingCloud's load balancers, listeners, backends and rules as the model has them, applied (on the master)",
            extra=qc_present,
        )
        steps.add(
            "ksha-phase-lb-reached-from-every-host",
            "salt.state",
            "every host reaches the load balancer before the LB domain is pointed at it",
            target=lb["external_check"],
            sls=["ksha.loadbalancer.external"],
            # under test=True the load balancer the step before would make is not there yet
            pillar={"ksha_lb_made_by_this_run": True},
        )
    if "common" in enabled:
        steps.add(
            "ksha-phase-common-applied",
            "salt.state",
            "base packages and the managed /etc/hosts block (cluster hosts, the LB domain)",
            target=everyone,
            sls=["ksha.common"],
        )
    found = (live or {}).get("files")
    if "lb" in enabled:
        _lb_clean_step(steps, lb, found)
        if lb["hosts"]:
            steps.add(
                "ksha-phase-lb-keepalived-haproxy-applied",
                "salt.state",
                "haproxy + keepalived holding the VIP on the LB hosts",
                target=lb["hosts"],
                sls=["ksha.loadbalancer"],
            )
        if qc_absent:
            # last: the hosts use the LB the pillar names now
            steps.add(
                "ksha-phase-lb-qingcloud-unwanted-absent",
                "ksha_qingcloud.loadbalancers_absent",
                "ksha's QingCloud load balancers the pillar no longer wants deleted, ksha's rules with them (on the master)",
                extra=qc_absent,
            )
    if "etcd" in enabled and etcd["names"]:
        if live is None or "recorded" not in live:
            raise ValueError("the etcd phase is planned from the live cluster: pass live")
        membership = etcd_membership(etcd["names"], live["recorded"], live["current"])
        ca_problem = ca_move_problem(
            "ksha:etcd:pki:ca_host", etcd["ca_host"], live["ca_keys"],
            model["config"]["etcd"]["pki"]["ca_dir"], "etcd", membership["bootstrapped"],
            tuple(live.get("silent", ())),
        )  # fmt: skip
        if ca_problem:
            steps.fail("ksha-phase-etcd-ca-stays-where-its-key-is", ca_problem)
        else:
            others = with_leftovers(etcd["others"], etcd["leftovers"], found, live["recorded"])
            _etcd_steps(steps, model, membership, others)
    if "control-plane" in enabled and model["kubernetes"]["masters"] and not steps.refused:
        _control_plane_steps(steps, model, found, tuple((live or {}).get("silent", ())))
    if "nodes" in enabled and not steps.refused:
        _node_steps(steps, model, found)
    return {"until": until, "steps": steps.steps}


def _lb_clean_step(steps: Steps, lb: dict, found: dict | None) -> None:
    lb_clean = with_leftovers(lb["clean"], lb["leftovers"], found)
    if lb_clean:
        steps.add(
            "ksha-phase-lb-other-hosts-cleaned",
            "salt.state",
            "ksha's haproxy/keepalived removed where the host is not an LB host (before the LB hosts' own: no two "
            "VIP holders)",
            target=lb_clean,
            sls=["ksha.loadbalancer.clean"],
        )


def _node_steps(steps: Steps, model: dict, found: dict | None) -> None:
    """`found`: the file probe's ``{host: files}`` (``files_found``), None when there was none."""
    nodes = model["nodes"]
    if nodes["hosts"]:
        _nodes_joined(steps, nodes, model["network"])
    # the hosts that are no node but hold ksha.node's units or ksha.containerd's config: their
    # pods go first (the API drains them; pods that refuse fail the run before the host is
    # touched), then their kubelet stops, then the API deletes their Node (deleted while its
    # kubelet runs, a Node registers again at once), then their files go: a run that fails
    # before that finds the host still leaving, and deletes the Node then
    leaving = with_leftovers(nodes["clean"]["hosts"], nodes["leftovers"], found)
    if not leaving:
        return
    api = [nodes["api_host"]] if nodes["api_host"] else []
    if api:
        steps.add(
            "ksha-phase-nodes-leaving-drained",
            "salt.state",
            f"{', '.join(leaving)} cordoned and drained through the API (kubectl drain, evictions: PodDisruptionBudgets "
            f"hold; at most ksha:nodes:drain_timeout_s, {nodes['drain_timeout_s']} s, then the pods still there fail "
            "the run, named)",
            target=api,
            sls=["ksha.node.drain"],
            pillar={"ksha_nodes_leaving": leaving},
        )
    steps.add(
        "ksha-phase-nodes-leaving-kubelets-stopped",
        "salt.state",
        "a former node's kube-proxy and kubelet stopped (only ksha's units)",
        target=leaving,
        sls=["ksha.node.stopped"],
    )
    if api:
        steps.add(
            "ksha-phase-nodes-leaving-deleted",
            "salt.state",
            f"the Nodes of {', '.join(leaving)} deleted from the API",
            target=api,
            sls=["ksha.node.delete"],
            pillar={"ksha_nodes_leaving": leaving},
        )
    steps.add(
        "ksha-phase-nodes-other-hosts-cleaned",
        "salt.state",
        "a former node's units, configuration, certificates, kubeconfigs and release removed, containerd stopped "
        "and its config.toml removed (only where ksha's units and config.toml are)",
        target=leaving,
        sls=["ksha.node.clean"],
    )


def _nodes_joined(steps: Steps, nodes: dict, net: dict) -> None:
    # Salt's batch only when there is more than one batch: a batched salt.state is a
    # sequence of jobs, which a single batch would only slow down
    # (with a timeout per node's job: Salt 3008's batch fails a minion not returned within the
    # master's `timeout` plus gather_job_timeout, 15 s by default, while it still works)
    batch = {"batch": nodes["batch"], "timeout": nodes["batch_timeout_s"]} if len(nodes["batches"]) > 1 else {}
    steps.add(
        "ksha-phase-nodes-joined",
        "salt.state",
        f"on every node, {nodes['batch']} at a time: containerd with ksha's config.toml (checked by containerd "
        "before it is installed; a change restarts it), runc and the CNI plugins; the node release (checked by its "
        "sha256), the kubelet's and kube-proxy's certificates (their subjects fixed by the CA host's policies), "
        "kubeconfigs through the LB domain, configuration files and units; a change restarts what it changes",
        target=nodes["hosts"],
        sls=["ksha.containerd", "ksha.node"],
        extra=batch,
    )
    applied = net["host"] == nodes["roles_host"] and net["refs"]
    steps.add(
        "ksha-phase-nodes-roles-labelled",
        "salt.state",
        "every node's role labels (control-plane, worker) and the masters' NoSchedule taint, through the API "
        "(kubectl with admin.conf), once its kubelet has registered it"
        + (
            f"; the pod network's {len(net['refs'])} {net['plugin']} objects as rendered from the pod CIDR (created, "
            "replaced where they differ, deleted when no longer rendered)"
            if applied
            else ""
        ),
        target=[nodes["roles_host"]],
        sls=["ksha.node.roles", *(["ksha.network"] if applied else [])],
    )


def _control_plane_steps(steps: Steps, model: dict, probed: dict | None, silent: tuple) -> None:
    """`probed`: the file probe's ``{host: files}`` (``files_found``), None when there was none."""
    k8s = model["kubernetes"]
    found = probed or {}
    # both CAs' keys (a partial copy of ca_dir is refused too); the CA has issued certificates
    # once a host trusts kubernetes-ca
    issued = bool(holders(found, k8s["cas"]["kubernetes"]["installed"]))
    for name, ca in k8s["cas"].items():
        problem = ca_move_problem(
            "ksha:kubernetes:pki:ca_host", k8s["ca_host"], holders(found, ca["key"]),
            model["config"]["kubernetes"]["pki"]["ca_dir"], name, issued, silent, ca["key"].rsplit("/", 1)[1],
        )  # fmt: skip
        if problem:
            steps.fail("ksha-phase-control-plane-ca-stays-where-its-key-is", problem)
            return
    steps.add(
        "ksha-phase-control-plane-binaries-installed",
        "salt.state",
        f"the Kubernetes {k8s['version']} release on every master, checked by its sha256 before anything "
        f"changes, under {k8s['release_dir']} with its binaries linked into /usr/local/bin",
        target=k8s["masters"],
        sls=["ksha.kubernetes.install"],
    )
    steps.add(
        "ksha-phase-control-plane-ca-ready",
        "salt.state",
        "the Kubernetes CAs, kubernetes-ca and front-proxy-ca (their keys never leave this host)",
        target=[k8s["ca_host"]],
        sls=["ksha.kubernetes.ca"],
    )
    steps.add(
        "ksha-phase-control-plane-certificates-issued",
        "salt.state",
        "each master's certificates (kubeadm's names; the apiserver's SANs follow the masters and the LB) "
        "and kubeconfigs, signed on the CA host",
        target=k8s["masters"],
        sls=["ksha.kubernetes.pki"],
    )
    steps.add(
        "ksha-phase-control-plane-service-account-keys-published",
        "salt.function",
        "each master's service account public key into the Salt mine, stored before the next step (its "
        "private key stays on it)",
        target=k8s["masters"],
        function="ksha.publish_service_account_key",
        extra={"expect_minions": True},
    )
    steps.add(
        "ksha-phase-control-plane-service-account-keys-trusted",
        "salt.state",
        "every master's apiserver trusts the service account tokens of every master (sa.pub)",
        target=k8s["masters"],
        sls=["ksha.kubernetes.service_account"],
    )
    steps.add(
        "ksha-phase-control-plane-components-running",
        "salt.state",
        "kube-apiserver, kube-controller-manager and kube-scheduler on every master with the model's flags; a "
        "changed apiserver restarts one master at a time, every other apiserver ready first, itself ready and UP in "
        "haproxy after; a changed controller-manager or scheduler in place (leader election moves its lease)",
        target=k8s["masters"],
        sls=["ksha.kubernetes.service"],
    )
    # last: the masters' controllers hold the leases and their apiservers serve before a former
    # master's stop (the LB phase took it out of the backends already)
    cleaned = with_leftovers(k8s["clean"]["hosts"], k8s["leftovers"], probed)
    if cleaned:
        steps.add(
            "ksha-phase-control-plane-other-hosts-cleaned",
            "salt.state",
            "a former master's kube-apiserver, controller-manager and scheduler stopped, their units, "
            "certificates, keys and kubeconfigs removed (only where ksha's units are)",
            target=cleaned,
            sls=["ksha.kubernetes.clean"],
        )


def _etcd_steps(steps: Steps, model: dict, membership: dict, others: list[str]) -> None:
    etcd = model["etcd"]
    members = etcd["names"]
    if membership["problem"]:
        steps.fail("ksha-phase-etcd-cluster-reachable", membership["problem"])
        return
    steps.add(
        "ksha-phase-etcd-ca-ready",
        "salt.state",
        "the etcd CA (its key never leaves this host)",
        target=[etcd["ca_host"]],
        sls=["ksha.etcd.ca"],
    )
    # Before a bootstrap every member's certificates come first (a member that cannot get
    # its certificate fails the run before any member starts). In a running cluster the
    # members' own states issue theirs (ksha.etcd and ksha.etcd.join include ksha.etcd.pki,
    # so a renewed certificate restarts its member in the same run): this step is then for
    # the hosts that need etcd certificates and are not members (masters) only.
    issued_here = etcd["pki_hosts"]
    if membership["bootstrapped"]:
        issued_here = [h for h in etcd["pki_hosts"] if h not in members]
    if issued_here:
        steps.add(
            "ksha-phase-etcd-certificates-issued",
            "salt.state",
            "etcd certificates, signed on the CA host: "
            + ("members and masters" if not membership["bootstrapped"] else "masters that are not members"),
            target=issued_here,
            sls=["ksha.etcd.pki"],
        )
    if not membership["bootstrapped"]:
        steps.add(
            "ksha-phase-etcd-members-bootstrapped",
            "salt.state",
            "a new cluster: every member starts at once with the initial cluster",
            target=members,
            sls=["ksha.etcd"],
            pillar={"ksha_etcd_bootstrap": True},
        )
    else:
        for name in membership["joining"]:
            steps.add(
                f"ksha-phase-etcd-{name}-joined",
                "salt.state",
                f"{name} joins the running cluster (learner, then promoted)",
                target=[name],
                sls=["ksha.etcd.join"],
            )
        if membership["leaving"]:
            steps.add(
                "ksha-phase-etcd-members-removed",
                "salt.state",
                f"{', '.join(membership['leaving'])} removed from the cluster, refused if quorum would break",
                target=[membership["remover"]],
                sls=["ksha.etcd.leave"],
                pillar={"ksha_etcd_leaving": membership["leaving"]},
            )
        steps.add(
            "ksha-phase-etcd-members-converged",
            "salt.state",
            "settings, units and certificates; a changed member restarts, one at a time",
            target=members,
            sls=["ksha.etcd"],
        )
    if others:
        steps.add(
            "ksha-phase-etcd-other-hosts-cleaned",
            "salt.state",
            "a former member's etcd stopped and its data moved aside (only ksha's)",
            target=others,
            sls=["ksha.etcd.clean"],
        )
    steps.add(
        "ksha-phase-etcd-cluster-healthy",
        "salt.state",
        "wait until etcd is healthy, record the cluster ID",
        target=members,
        sls=["ksha.etcd.healthy"],
    )


def restore(
    model: dict | None, snapshots: dict[str, list[dict]], source: str | None = None, snapshot: str | None = None
) -> dict:
    """The steps of ``orch.ksha.etcd_restore`` (pure).

    snapshots
        ``{member: [{"path", "mtime"}, ...]}`` as ``ksha_etcd.snapshots`` found them.
    source, snapshot
        restore this snapshot of this member; default the newest on any member.
    """
    members = model["etcd"]["names"] if model else []
    plan = {"members": members, "source": source, "snapshot": snapshot, "problem": None, "steps": []}
    steps = Steps()
    if model is None:
        plan["problem"] = "the ksha pillar is not valid: salt-run ksha.validate says why"
    elif not members:
        plan["problem"] = "ksha:groups:etcd is empty: nothing to restore"
    elif source and source not in members:
        plan["problem"] = f"source {source!r} is not an etcd member (ksha:groups:etcd)"
    else:
        candidates = [
            (row["mtime"], minion, row["path"])
            for minion, rows in snapshots.items()
            if (not source or minion == source) and isinstance(rows, list)
            for row in rows
            if not snapshot or row["path"] == snapshot
        ]
        if not candidates:
            where = f"{snapshot} on {source}" if snapshot else "no snapshot on any member"
            plan["problem"] = f"nothing to restore: {where} (ksha:etcd:backup:dir)"
        else:
            _, plan["source"], plan["snapshot"] = max(candidates)
    if plan["problem"]:
        steps.fail("ksha-etcd-restore-snapshot-chosen", plan["problem"])
        plan["steps"] = steps.steps
        return plan
    steps.add(
        "ksha-etcd-restore-snapshot-chosen",
        "test.succeed_without_changes",
        "the snapshot to restore",
        extra={"name": f"restoring {plan['snapshot']} from {plan['source']} onto {', '.join(members)}"},
    )
    steps.add(
        "ksha-etcd-restore-every-member-stopped-and-prepared",
        "salt.state",
        "etcd stopped everywhere; the snapshot becomes a one-member cluster on its host, other data moved aside",
        target=members,
        sls=["ksha.etcd.restore"],
        pillar={
            "ksha_restore": {
                "source": plan["source"],
                "snapshot": plan["snapshot"],
                # what each member does: the source restores the snapshot, the others rejoin it later
                "action": {m: "restore" if m == plan["source"] else "move_aside" for m in members},
            }
        },
    )
    for name in members:
        if name != plan["source"]:
            steps.add(
                f"ksha-etcd-restore-{name}-joined",
                "salt.state",
                f"{name} joins the restored cluster",
                target=[name],
                sls=["ksha.etcd.join"],
            )
    steps.add(
        "ksha-etcd-restore-cluster-healthy",
        "salt.state",
        "wait until etcd is healthy, record the new cluster ID",
        target=members,
        sls=["ksha.etcd.healthy"],
    )
    plan["steps"] = steps.steps
    return plan


def describe(steps: list[dict]) -> str:
    """The steps, one block each, for a person."""
    lines = []
    for number, step in enumerate(steps, 1):
        what = step["function"] or ", ".join(step["sls"]) or step["state"]
        where = ",".join(step["target"]) or "master"
        lines.append(f"{number:2}. {step['id']}")
        lines.append(f"    {what} on {where}")
        if step["pillar"]:
            lines.append(f"    pillar {step['pillar']}")
        lines.append(f"    why: {step['why']}")
    return "\n".join(lines)
