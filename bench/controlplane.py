"""The control plane under change, in the lab: the API through the VIP while one orch.ksha restarts
every apiserver, and the controller-manager's leader takeover after its holder is killed.

Usage (root): .venv/bin/python bench/controlplane.py [--runs 3] [--deadline 2] [--keep]

Brings up the seed lab if it is not up and converges it with one orch.ksha (LB, etcd, the control
plane: ksha's units run the lab's STAND-INS of kube-apiserver, kube-controller-manager and
kube-scheduler, ksha_lab/standins, with the model's flags). Per run:

  rolling   the pillar's kubernetes.apiserver.extra_args changes (`v: 2`, then back on the next
            run), so every apiserver's unit changes, and one `salt-run state.orchestrate orch.ksha`
            applies it: the rolling restart, one master at a time. Meanwhile a client on this
            machine (the lab bridge) sends an HTTPS GET /readyz through the VIP every 50 ms, each
            with a --deadline (2 s) for connection, TLS and answer, the certificate verified
            with the cluster CA under the LB domain (bench/failover.py's client, the same model:
            one new TLS connection per request, no retries; kubectl would retry on its own).
  takeover  the master holding the kube-controller-manager Lease (the real kubectl with
            admin.conf on another master, `get lease`, every 0.1 s) has its controller-manager
            killed with SIGKILL and kept down (its unit stopped, as if the host were gone); the
            takeover is the kill -> another master's identity in the Lease. Then it is started
            again (a standby).

  rolling_unavailable  the longest stretch of failed requests during the orchestration (the
                       start of the first failure of a stretch -> the start of the next success);
  failed_requests      requests that failed / requests sent during the orchestrations;
  lease_takeover       kill -> another master holds the Lease.

A run fails when the orchestration failed or did not restart every master's apiserver (the
run would not measure a rolling restart), when the API was not back after it, or when no other
master held the Lease within 60 s; a failed run counts as +inf. Last line:
  runs=N rolling_max_unavailable_s=X failed_requests=a/b lease_takeover_s=Y failed_runs=F
X is the maximum over the runs, Y the median; FAILED and exit code 1 when a run failed. Goals
(issue 12): X <= 1.0, no failed request, Y <= lease duration + 2 x retry period; the line before
the last says whether they were met. The pillar is put back and the lab taken down at the end
unless --keep.
"""

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import verdict  # bench/verdict.py, next to this script
import yaml
from failover import DEADLINE, Client  # bench/failover.py's client model

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ksha_lab import core  # noqa: E402
from ksha_lab.standins import apiservers as standin  # noqa: E402

MASTERS = ["master1", "master2", "master3"]
LEASE = "kube-controller-manager"
LIMIT = 60.0  # a takeover not seen this long after the kill fails the run
ROLLING = "ksha-kubernetes-kube-apiserver-restarted-when-changed"
KUBECTL = ["/usr/local/bin/kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "--request-timeout=2s"]


class Bench:
    def __init__(self, lab, log, deadline):
        self.lab, self.log, self.deadline = lab, log, deadline
        self.ca_file = core.STATE / "bench-standin-ca.crt"
        self.pillar = lab.pillar_dir / "ksha.sls"
        self.original = self.pillar.read_text()

    def orchestrate(self):
        """One orch.ksha: (exit code, {state ID: return})."""
        rc, out = self.lab.salt_run_json("state.orchestrate", "orch.ksha", timeout=1800)
        data = out.get("data") if isinstance(out, dict) else None
        states = next(iter(data.values()), None) if isinstance(data, dict) and data else None
        if not isinstance(states, dict):  # a render error is a list
            return rc, {}
        return rc, {key.split("_|-")[1]: value for key, value in states.items()}

    def orchestrate_ok(self):
        rc, states = self.orchestrate()
        if rc != 0:
            failed = [k for k, v in states.items() if v.get("result") is False]
            raise RuntimeError(f"orch.ksha failed (exit {rc}): {', '.join(failed) or 'no state returned'}")
        return states

    def converge(self):
        rc, out = self.lab.salt_run_json("saltutil.sync_all")
        if rc != 0:
            raise RuntimeError(f"salt-run saltutil.sync_all failed (exit {rc}): {str(out)[-3000:]}")
        self.lab.salt_json("*", "saltutil.sync_all")
        self.orchestrate_ok()
        self.ca_file.write_bytes(standin.share_ca(self.lab, [self.lab.hosts[n] for n in MASTERS]))

    def set_verbosity(self, level):
        """The pillar with kubernetes.apiserver.extra_args {v: level} (None: the original)."""
        pillar = yaml.safe_load(self.original)
        if level is not None:
            kube = pillar["ksha"].setdefault("kubernetes", {})
            kube.setdefault("apiserver", {}).setdefault("extra_args", {})["v"] = level
        self.pillar.write_text(yaml.safe_dump(pillar))
        self.lab.salt_json("*", "saltutil.refresh_pillar", "wait=True")

    def restore(self):
        self.pillar.write_text(self.original)
        self.lab.salt_json("*", "saltutil.refresh_pillar", "wait=True")

    def restarted(self, minion_returns):
        """The masters whose apiserver the orchestration's components step restarted."""
        step = minion_returns.get("ksha-phase-control-plane-components-running") or {}
        per_minion = (step.get("changes") or {}).get("ret") or {}
        out = []
        for master, states in per_minion.items():
            for key, state in (states or {}).items():
                if ROLLING in key and (state.get("changes") or {}).get("restarted") == "kube-apiserver":
                    out.append(master)
        return out

    def holder(self, ask):
        """The master in the controller-manager Lease as the real kubectl on `ask` reads it (None:
        not read)."""
        out = self.lab.exec(self.lab.hosts[ask], *KUBECTL, "get", "lease", LEASE, "-n", "kube-system", "-o", "json")
        if out.returncode != 0:
            return None
        identity = json.loads(out.stdout)["spec"].get("holderIdentity") or ""
        return identity.rsplit("_", 1)[0] or None

    def rolling(self, level):
        """One orchestration that restarts every apiserver, under the client: (records, restarted)."""
        self.set_verbosity(level)
        with Client(self.lab.vip, 6443, standin.DOMAIN, str(self.ca_file), self.deadline) as client:
            time.sleep(1)
            t0 = time.monotonic()
            states = self.orchestrate_ok()
            time.sleep(2)  # the last restarted one back in haproxy, seen by the client
        return client.since(t0 - 1.0), self.restarted(states)

    def takeover(self):
        """Kill the Lease holder's controller-manager (kept down): seconds until another master
        holds the Lease (None: not within LIMIT); the holder is started again after."""
        before = self.holder("master1") or self.holder("master2")
        if before not in MASTERS:
            raise RuntimeError(f"the {LEASE} Lease is held by {before!r}, not a master")
        ask = next(m for m in MASTERS if m != before)
        pid = self.lab.exec(self.lab.hosts[before], "systemctl", "show", "-p", "MainPID", "--value", LEASE).stdout
        if not pid.strip().isdigit() or int(pid) == 0:  # kill -9 0 would kill the shell's own group
            raise RuntimeError(f"{LEASE} on {before} has no main process (MainPID {pid.strip()!r})")
        try:
            self.lab.exec(
                self.lab.hosts[before], "sh", "-c", f"kill -9 {pid.strip()}; systemctl stop {LEASE}", check=True
            )
            t0 = time.monotonic()
            while time.monotonic() - t0 < LIMIT:
                now = self.holder(ask)
                if now in MASTERS and now != before:
                    return time.monotonic() - t0
                time.sleep(0.1)
            return None
        finally:
            self.lab.exec(self.lab.hosts[before], "systemctl", "start", LEASE, check=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=DEADLINE, help="seconds a request may take")
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    args = parser.parse_args()
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    lab = core.Lab.load()
    if lab is None or not all(lab.nspawn_pid(h) for h in lab.hosts.values()):
        lab = core.up("seed", log=lambda m: None)
    bench = Bench(lab, log, args.deadline)
    runs, election, applied = [], None, None
    try:
        bench.converge()
        model = lab.salt_json("master1", "ksha.model").get("master1") or {}
        election = model["config"]["kubernetes"]["leader_election"]
        for run in range(1, args.runs + 1):
            label = f"run {run}"
            try:
                applied = 2 if run % 2 else None
                records, restarted = bench.rolling(applied)
                took = bench.takeover()
                record = verdict.controlplane_run(label, records, restarted, MASTERS, took, LIMIT)
            except Exception as err:  # noqa: BLE001 - the run is failed and counted; the next one goes on
                log(f"{label} stopped:\n{traceback.format_exc().rstrip()}")
                record = verdict.controlplane_run(label, [], None, MASTERS, None, LIMIT, error=err)
            runs.append(record)
            text = (
                f"rolling_unavailable {verdict.fmt(record.figures['rolling_unavailable'])} s, "
                f"lease_takeover {verdict.fmt(record.figures['takeover'])} s"
            )
            print(verdict.run_line(record, text), flush=True)
    except Exception:  # the runs not done count as failed runs; the summary still says so
        log(f"bench stopped:\n{traceback.format_exc().rstrip()}")
    finally:
        try:
            bench.restore()
            if applied is not None:  # the units may have v=2: converge them back to the pillar
                bench.orchestrate()
        finally:
            if not args.keep:
                core.down(log=lambda m: None)

    line, code = verdict.controlplane_summary(runs, args.runs)
    if election:
        bound = election["lease_duration_s"] + 2 * election["retry_period_s"]
        worst = max((r.value("rolling_unavailable") for r in runs), default=verdict.INF)
        takeover = verdict.median(runs, "takeover")
        met = [
            f"rolling_max_unavailable_s <= 1.0: {'met' if worst <= 1.0 else 'NOT met'}",
            f"failed_requests 0: {'met' if not sum(r.failed_requests for r in runs) else 'NOT met'}",
            f"lease_takeover_s <= {bound} (lease duration + 2 x retry period): "
            f"{'met' if takeover is not None and takeover <= bound else 'NOT met'}",
        ]
        print("goals: " + "; ".join(met), flush=True)
    print(f"client: HTTPS GET /readyz through the VIP every 50 ms, deadline {args.deadline:.1f} s", flush=True)
    print(line, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
