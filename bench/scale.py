"""orch.ksha against the number of workers, in the lab: 3 masters + 3 workers against 3 masters +
12 workers (15 lab hosts), in the same run.

Usage (root): .venv/bin/python bench/scale.py [--workers 3,12] [--plot docs/scale.svg]

For each worker count N, a fresh lab of 3 x (kube-master + etcd) and N x kube-node (a topology
hosts.ini in the seed's format; ksha_lab boots every host bare, the base only) and:

  cold   `salt-run state.orchestrate orch.ksha` from bare hosts (after `saltutil.sync_all` on the
         master, which is not timed): every phase, the nodes phase included, ksha:nodes:batch as
         in defaults.yaml (10: with 15 nodes, two of Salt's batches);
  noop   the same orchestration again at once: nothing to change.

Each figure is the wall time of the salt-run command (what the operator waits for), from this
machine. The client model: one salt-run at a time, run as root on the lab's master; no other
load. A run fails when an orchestration exits non-zero or fails a state, when the no-op
orchestration changes anything, or when the API (the real kubectl with admin.conf on master1,
through the LB) does not list every node Ready after the cold one. A failed run's figures are
+inf, and the last line says FAILED (exit code 1). Last line:

  workers=3,12 orch_s=X,Y ratio=Z noop_over_cold=A,B failed_runs=F

ratio = the largest size's cold time over the smallest's (goal, issue 13: <= 1.5, workers in
parallel); noop_over_cold = noop / cold for each size (goal <= 0.15); bench/verdict.py
scale_summary decides both lines (a goal is met only when no run failed). The line before the last says whether the goals were met. --plot writes an
SVG of the cold and no-op times against the worker count (docs/BENCHMARKS.md shows it). Each lab is
taken down after its size; none is left up.
"""

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import verdict  # bench/verdict.py, next to this script

from ksha_lab import core

MASTERS = 3
KUBECTL = ["/usr/local/bin/kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "--request-timeout=5s"]


def hosts_ini(workers: int) -> str:
    masters = [f"master{i}" for i in range(1, MASTERS + 1)]
    nodes = [f"node{i}" for i in range(1, workers + 1)]
    lines = [
        "[all]",
        *masters,
        *nodes,
        "",
        "[kube-master]",
        *masters,
        "",
        "[etcd]",
        *masters,
        "",
        "[kube-node]",
        *nodes,
    ]
    return "\n".join(lines) + "\n"


def failed_states(out) -> list[str]:
    """The orchestration's steps (and their minions' states) that did not succeed."""
    data = (out or {}).get("data", {}) if isinstance(out, dict) else {}
    steps = next(iter(data.values()), {}) if isinstance(data, dict) else {}
    if not isinstance(steps, dict) or not steps:
        return ["no orchestration result"]
    return [s.get("__id__", k) if isinstance(s, dict) else k for k, s in steps.items()
            if not isinstance(s, dict) or s.get("result") is not True]  # fmt: skip


def why(out, limit=600) -> str:
    """The failed steps' comments, with their minions' failed states (id: comment), shortened."""
    data = (out or {}).get("data", {}) if isinstance(out, dict) else {}
    steps = next(iter(data.values()), {}) if isinstance(data, dict) else {}
    if not isinstance(steps, dict):
        return str(steps)[:limit]
    parts = []
    for key, step in steps.items():
        if not isinstance(step, dict) or step.get("result") is True:
            continue
        minions = (step.get("changes") or {}).get("ret") or {}
        bad = {
            minion: {s.get("__id__", k): s.get("comment", "") for k, s in states.items() if isinstance(s, dict)
                     and s.get("result") is not True}
            for minion, states in minions.items() if isinstance(states, dict)
        }  # fmt: skip
        parts.append(
            f"{step.get('__id__', key)}: {step.get('comment', '')} {json.dumps({m: b for m, b in bad.items() if b})}"
        )
    return "; ".join(parts)[:limit]


def changed_steps(out) -> list[str]:
    data = (out or {}).get("data", {})
    steps = next(iter(data.values()), {})
    if not isinstance(steps, dict):
        return []
    return [s.get("__id__", k) for k, s in steps.items() if isinstance(s, dict) and changed(s.get("changes"))]


def changed(changes) -> bool:
    """Whether a step's changes hold any state's changes (a salt.state step nests its minions' returns)."""
    if not changes:
        return False
    ret = changes.get("ret") if isinstance(changes, dict) else None
    if not isinstance(ret, dict):
        return True
    return any(
        isinstance(state, dict) and state.get("changes")
        for minion in ret.values()
        if isinstance(minion, dict)
        for state in minion.values()
    )


def orchestrated(lab, what: str, run: verdict.Run) -> tuple[float, object]:
    """One `salt-run state.orchestrate orch.ksha`: (wall seconds, its output), the output None
    when it failed (the reason added to the run's failures)."""
    t0 = time.monotonic()
    rc, out = lab.salt_run_json("state.orchestrate", "orch.ksha", timeout=3600)
    seconds = time.monotonic() - t0
    bad = failed_states(out)
    if rc or bad:
        run.failures.append(f"{what} orch.ksha exited {rc}, failed: {why(out) or ', '.join(bad[:5])}")
        return seconds, None
    return seconds, out


def ready_nodes(lab) -> list[str]:
    out = lab.exec(lab.hosts["master1"], *KUBECTL, "get", "nodes", "-o", "json")
    if out.returncode:
        return []
    ready = []
    for item in json.loads(out.stdout)["items"]:
        conditions = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
        if conditions.get("Ready") == "True":
            ready.append(item["metadata"]["name"])
    return sorted(ready)


def one_size(workers: int) -> verdict.Run:
    run = verdict.Run(f"workers={workers}", figures={"cold": None, "noop": None})
    with tempfile.TemporaryDirectory() as tmp:
        topology = Path(tmp) / "hosts.ini"
        topology.write_text(hosts_ini(workers))
        lab = core.up(str(topology), log=lambda m: None)
    try:
        rc, _ = lab.salt_run_json("saltutil.sync_all")
        if rc:
            run.failures.append(f"saltutil.sync_all exited {rc}")
            return run
        cold, out = orchestrated(lab, "cold", run)
        if out is None:
            return run
        run.figures["cold"] = cold
        expected = sorted(lab.hosts)
        deadline = time.monotonic() + 60
        while ready_nodes(lab) != expected and time.monotonic() < deadline:
            time.sleep(1)
        if ready_nodes(lab) != expected:
            run.failures.append(f"not every node Ready after the cold orchestration: {ready_nodes(lab)}")
            return run
        noop, out = orchestrated(lab, "no-op", run)
        if out is None:
            return run
        moved = changed_steps(out)
        if moved:
            run.failures.append(f"the no-op orch.ksha changed: {', '.join(moved)}")
        run.figures["noop"] = noop
    finally:
        core.down(log=lambda m: None)
    return run


def plot(path: Path, sizes: list[int], runs: list[verdict.Run]) -> None:
    """An SVG of the cold and no-op orchestration times against the worker count (no dependency)."""
    width, height, pad = 560, 320, 50
    top = max([r.figures[k] for r in runs for k in ("cold", "noop") if r.figures.get(k)] + [1.0]) * 1.15
    span = max(sizes) - min(sizes) or 1

    def xy(n, s):
        return pad + (n - min(sizes)) / span * (width - 2 * pad), height - pad - s / top * (height - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             'font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
             f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">workers (+ 3 masters)</text>',
             f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">'
             "orch.ksha wall time (s)</text>"]  # fmt: skip
    for tick in range(0, int(top) + 1, max(10, int(top / 5) // 10 * 10)):
        _, y = xy(min(sizes), tick)
        parts.append(f'<text x="{pad - 6}" y="{y + 4}" text-anchor="end">{tick}</text>')
        parts.append(f'<line x1="{pad}" y1="{y}" x2="{width - pad}" y2="{y}" stroke="#ddd"/>')
    for n in sizes:
        x, _ = xy(n, 0)
        parts.append(f'<text x="{x}" y="{height - pad + 16}" text-anchor="middle">{n}</text>')
    for key, colour in (("cold", "#c0392b"), ("noop", "#2471a3")):
        points = [
            (n, r.figures.get(key)) for n, r in zip(sizes, runs, strict=True) if not r.failed and r.figures.get(key)
        ]
        if not points:
            continue
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(n, s) for n, s in points))
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for n, s in points:
            x, y = xy(n, s)
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
            parts.append(f'<text x="{x + 6:.1f}" y="{y - 6:.1f}" fill="{colour}">{s:.1f} s</text>')
        x, y = xy(points[-1][0], points[-1][1])
        label = "from bare hosts" if key == "cold" else "no-op rerun"
        parts.append(f'<text x="{x - 8:.1f}" y="{y + 18:.1f}" fill="{colour}" text-anchor="end">{label}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="3,12", help="worker counts, comma-separated (default 3,12)")
    parser.add_argument("--plot", type=Path, help="write an SVG of the times against the worker count")
    args = parser.parse_args()
    sizes = [int(n) for n in args.workers.split(",")]
    if len(set(sizes)) < 2 or min(sizes) < 1:
        parser.error("--workers: at least two different worker counts, each at least 1 (e.g. 3,12)")
    runs = []
    for workers in sizes:
        try:
            run = one_size(workers)
        except Exception as err:  # noqa: BLE001 - a size that raised is a failed run, reported
            traceback.print_exc()
            run = verdict.Run(f"workers={workers}", figures={"cold": None, "noop": None}, failures=[f"raised: {err}"])
            try:
                core.down(log=lambda m: None)
            except Exception:  # noqa: BLE001 - the summary is still printed
                traceback.print_exc()
        runs.append(run)
        print(
            f"{run.label} hosts={MASTERS + workers} cold_s={verdict.fmt(run.value('cold'), 1)} "
            f"noop_s={verdict.fmt(run.value('noop'), 1)}"
            + (f" FAILED: {'; '.join(run.failures)}" if run.failed else ""),
            flush=True,
        )
    if args.plot:
        plot(args.plot, sizes, runs)
    goals, (last, code) = verdict.scale_summary(sizes, runs)
    print(goals + ("" if "NOT" not in goals else " (see docs/BENCHMARKS.md)"))
    print(last)
    return code


if __name__ == "__main__":
    sys.exit(main())
