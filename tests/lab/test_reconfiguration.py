"""Phase 5 under change, in the lab: the control plane reconfigured from pillar while a client
asks the API through the VIP (issue 12's reconfiguration figures).

This module leaves the cluster changed; the lab's modules are ordered so that it runs after every
other module that uses the converged cluster (tests/lab/conftest.py, ``LAB_MODULES_LAST``), so
that no orchestration is spent putting it back unless a later test needs it.
"""

import functools
import subprocess
import time

import pytest

from ksha_lab.standins import apiservers
from tests.conftest import load_bench_verdict
from tests.lab.conftest import converged_lab, failed_states, wait_for
from tests.lab.test_control_plane import (
    ADMIN,
    CA_DIR,
    CONTROLLERS,
    LEAVES,
    MASTERS,
    PKI,
    PROBE,
    certificate,
    lease_holders,
    served_serial,
    start_probe,
    stop_probe,
)

FOREIGN_UNIT = "/etc/systemd/system/kube-apiserver.service"


@pytest.fixture(scope="module")
def reconf_lab(_lab_session):
    """The shared converged cluster."""
    lab, salt, _ = converged_lab()
    return lab, salt


def apiserver_backends(salt, lb_host):
    """{backend: state} of haproxy's apiserver backends, as `lb_host`'s haproxy reports them."""
    out = salt.salt(lb_host, "ksha_lb.backends", "backend=ksha-apiserver")[lb_host]
    return {b["name"]: b["state"] for b in out.get("backends", [])}


def test_a_fourth_master_then_master1_out_then_every_certificate_renewed_the_api_never_fails(reconf_lab, lab_pillar):
    """Three changes, each by orch.ksha up to the control plane, while node2 asks the API through
    the VIP every 50 ms, the apiservers restarting one at a time each time:

    1. node1 joins the masters (one orch.ksha): every apiserver certificate names it, haproxy
       sends to it.
    2. master1, the Kubernetes CA host, leaves the masters: refused by the plan, naming the key,
       until the CA has moved to master2 the documented way (its directory copied as it is).
       Then one orch.ksha: master1 is cleaned of ksha's control plane (its CA certificates
       kept), no backend, in no certificate; the CA is the same. ksha.kubernetes.clean leaves
       node3's kube-apiserver unit and key alone (not ksha's: no marker) and changes nothing
       on master1 the second time.
    3. Every Kubernetes certificate renewed (days_valid 366, so every 365-day certificate has
       fewer days left than days_remaining 365) by the PKI and service states of the masters'
       highstate, on all three at once, and served.

    The LB hosts stay master1-3 throughout (named in the pillar: by default they are the masters,
    and the VIP would move with master1; the LB tests move it): what changes is the control
    plane, the backends and the certificates. Each step restarts the apiservers one at a time:
    no request may fail. The requests, failures and longest outage of each step are printed."""
    lab, salt = reconf_lab
    ip = {name: host.ip for name, host in lab.hosts.items()}
    apiservers.share_ca(lab, [lab.hosts[m] for m in MASTERS])
    ca_before = (lab.hosts["master1"].root / f"{PKI}/ca.crt".lstrip("/")).read_bytes()
    probe_host, node3 = lab.hosts["node2"], lab.hosts["node3"]
    copied_ca = lab.hosts["master2"].root / CA_DIR.lstrip("/")
    foreign = {FOREIGN_UNIT: "[Service]\nExecStart=/bin/true\n", f"{PKI}/apiserver.key": "not ksha's key\n"}
    made = [d for d in ("etc/kubernetes", "etc/kubernetes/pki") if not (node3.root / d).exists()]
    windows = {}  # step -> (start, end), epoch seconds as the probe's host records them

    def apply(step, change):
        t0 = time.time()
        # up to the control plane: what changes is the masters, the backends and the certificates
        # of the control plane (the nodes' phase follows the pillar alone: tests/lab/test_nodes.py)
        rc, states = lab_pillar.apply(change, until="control-plane")
        windows[step] = (t0, time.time())
        assert rc == 0, (step, failed_states(states))
        return states

    def four(ksha):
        ksha["groups"]["kube-master"] = [*MASTERS, "node1"]
        ksha["loadbalancer"]["hosts"] = MASTERS

    def without_master1(ksha):
        ksha["groups"]["kube-master"] = ["master2", "master3", "node1"]
        ksha["loadbalancer"]["hosts"] = MASTERS

    def ca_moved(ksha):
        without_master1(ksha)
        ksha["kubernetes"].setdefault("pki", {})["ca_host"] = "master2"

    def renewed(ksha):
        ca_moved(ksha)
        ksha["kubernetes"]["pki"].update(days_valid=366, days_remaining=365)

    def names(masters):
        return {f"DNS:{m}" for m in masters} | {f"IP Address:{ip[m]}" for m in masters}

    start_probe(lab, probe_host)
    try:
        assert wait_for(lambda: lab.exec(probe_host, "grep", "-c", " 200", PROBE).stdout.strip() not in ("", "0"), 10)

        # 1. node1 becomes the fourth master
        apply("node1 added", four)
        masters = [*MASTERS, "node1"]
        for name in masters:
            _, sans, _ = certificate(lab, name)
            assert names(masters) <= sans, (name, names(masters) - sans)
        backends = functools.partial(apiserver_backends, salt, "master1")
        assert wait_for(lambda: backends() == dict.fromkeys(masters, "UP"), 15), backends()
        ready = lab.exec(lab.hosts["node1"], *ADMIN, "get", "--raw", "/readyz")
        assert (ready.returncode, ready.stdout.strip()) == (0, "ok"), ready.stderr

        # 2. master1 out: refused while it holds the CA keys and ca_host (null) would become master2
        lab_pillar.edit(without_master1)
        rc, plan, proc = salt.run("ksha.plan", "output=data")
        steps = [s["id"] for s in plan["steps"] if s["id"].startswith("ksha-phase-control-plane")]
        assert steps == ["ksha-phase-control-plane-ca-stays-where-its-key-is"], plan
        [refusal] = [s["why"] for s in plan["steps"] if s["id"] == steps[0]]
        assert "ksha:kubernetes:pki:ca_host resolves to master2, but the kubernetes CA's key is on master1" in refusal
        # the CA moved (ARCHITECTURE.md, 'Moving a CA'), then one orch.ksha
        subprocess.run(
            f"tar -C {lab.hosts['master1'].root} -c {CA_DIR.lstrip('/')} | tar -C {lab.hosts['master2'].root} -x",
            shell=True, check=True,
        )  # fmt: skip
        for path, text in foreign.items():
            (node3.root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (node3.root / path.lstrip("/")).write_text(text)
        states = apply("master1 out", ca_moved)
        # node3's unit has no marker: the plan cleans master1 only
        assert list(states["ksha-phase-control-plane-other-hosts-cleaned"]["changes"]["ret"]) == ["master1"]
        masters = ["master2", "master3", "node1"]
        for name in masters:
            _, sans, _ = certificate(lab, name)
            assert names(masters) <= sans and not names(["master1"]) & sans, (name, sans)
            assert (lab.hosts[name].root / f"{PKI}/ca.crt".lstrip("/")).read_bytes() == ca_before, name
        # master1 is no backend any more; it still runs the LB and holds the VIP
        assert wait_for(lambda: backends() == dict.fromkeys(masters, "UP"), 15), backends()
        assert lab.exec(lab.hosts["master1"], "systemctl", "is-active", "keepalived").stdout.strip() == "active"
        master1 = lab.hosts["master1"]
        model = salt.salt("master1", "ksha.model")["master1"]["kubernetes"]
        for component in model["clean"]["components"]:
            assert lab.exec(master1, "systemctl", "is-active", component).stdout.strip() != "active", component
            assert not (master1.root / model["unit_files"][component].lstrip("/")).exists(), component
        left = [f for f in [*model["clean"]["files"], *model["clean"]["links"], model["clean"]["release_dir"]]
                if lab.exec(master1, "test", "-e", f).returncode == 0]  # fmt: skip
        assert left == [], left
        assert lab.exec(master1, "test", "-e", f"{PKI}/ca.crt").returncode == 0  # the CA certificates stay
        again = salt.salt("master1,node3", "state.apply", "ksha.kubernetes.clean", timeout=300)
        assert not failed_states(again), failed_states(again)
        assert not [(m, s) for m, r in again.items() for s in r.values() if s["changes"]], again
        assert all((node3.root / path.lstrip("/")).read_text() == text for path, text in foreign.items())

        # 3. every Kubernetes certificate renewed by the states a master's highstate runs for them
        before = {m: {leaf: certificate(lab, m, leaf)[0] for leaf in LEAVES} for m in masters}
        lab_pillar.edit(renewed)
        lab_pillar.ran("control-plane")
        t0 = time.time()
        out = salt.salt(",".join(masters), "state.apply", "ksha.kubernetes.pki,ksha.kubernetes.service", timeout=900)
        windows["certificates renewed"] = (t0, time.time())
        assert not failed_states(out), failed_states(out)
        for name in masters:
            after = {leaf: certificate(lab, name, leaf) for leaf in LEAVES}
            assert all(after[leaf][0] != before[name][leaf] and after[leaf][2] > 365 for leaf in LEAVES), (name, after)
            assert served_serial(lab, name) == after["apiserver"][0], name
        # the controllers' leases are held by the masters left (master1's, if it led, moved)
        assert wait_for(
            lambda: {(lease_holders(lab, "master2").get(c) or "?").split("_")[0] for c in CONTROLLERS} <= set(masters),
            60,
        ), lease_holders(lab, "master2")
        time.sleep(1)
    finally:
        samples = stop_probe(lab, probe_host)
        # the original pillar's CA host is master1 again, which kept its copy
        subprocess.run(["rm", "-rf", str(copied_ca)], check=True)
        for path in foreign:
            (node3.root / path.lstrip("/")).unlink(missing_ok=True)
        for directory in reversed(made):
            if (node3.root / directory).exists():  # made in step 2: a failure before it made none
                (node3.root / directory).rmdir()
    verdict = load_bench_verdict()
    figures = {}
    for step, (start, end) in windows.items():
        during = [(t, code == "200") for t, code in samples if start <= t <= end]
        figures[step] = (end - start, len(during), sum(1 for _, ok in during if not ok), verdict.longest_outage(during))
    print(
        "reconfigurations under a probe through the VIP: "
        + "; ".join(
            f"{step}: {s:.1f} s, {n} requests, {bad} failed, longest outage {o:.2f} s"
            for step, (s, n, bad, o) in figures.items()
        )  # fmt: skip
    )
    assert list(figures) == ["node1 added", "master1 out", "certificates renewed"]
    assert all(n > 20 for _, n, _, _ in figures.values()), figures
    # the apiservers restart one at a time: no request fails, in a step or between them (each
    # failure: seconds since the probe started, curl's status code)
    failed = [(round(t - samples[0][0], 2), code) for t, code in samples if code != "200"]
    assert not failed, (failed, windows)
