"""The benchmarks' verdicts: what a run measured, whether it failed, and the summary line.

Pure functions, no lab import (tests/unit/test_bench_verdict.py feeds them). The rules:

- a run records its figures and the reasons it failed; a run with any reason is a failed run;
- a failed run enters every median as +inf: it can only make a figure worse, never better
  (a median stays finite while fewer than half the runs failed, but the line says FAILED);
- a run that was asked for and never recorded (the bench stopped on an error) is a failed run;
- the summary's last line ends with `failed_runs=N`, and with ` FAILED` when N > 0, and the
  exit code is 1 then (0 otherwise).
"""

import math
import statistics
from dataclasses import dataclass, field

INF = math.inf


@dataclass
class Run:
    """One run: `figures` maps a figure's name to seconds (None: not measured, counted as +inf;
    a figure that does not apply to the run is left out); `failures` says why the run failed."""

    label: str
    figures: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    failed_requests: int = 0
    requests: int = 0
    counts: dict = field(default_factory=dict)  # figures that are summed, not medians (None: unknown)

    @property
    def failed(self):
        return bool(self.failures)

    def value(self, name):
        """The figure as it enters a median: +inf for a failed run or a figure not measured."""
        value = self.figures.get(name)
        return INF if self.failed or value is None else value


def median(runs, name):
    """Median of `name` over the runs it applies to (+inf for failed runs); None if none applies."""
    values = [run.value(name) for run in runs if name in run.figures]
    return statistics.median(values) if values else None


def fmt(value, digits=2):
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def fraction(failed, total):
    """`failed/total (p%)`, the share of failed requests."""
    return f"{failed}/{total} ({100.0 * failed / total:.1f}%)" if total else f"{failed}/0 (-)"


def failed_runs(runs, requested):
    """Failed runs plus the runs asked for that were never recorded."""
    return sum(1 for run in runs if run.failed) + max(0, requested - len(runs))


def verdict(fields, runs, requested):
    """The last line and the exit code: `fields` is [(name, text)], printed `name=text` in order."""
    failed = failed_runs(runs, requested)
    line = " ".join(f"{name}={text}" for name, text in fields) + f" failed_runs={failed}"
    return (line + " FAILED", 1) if failed else (line, 0)


def run_line(run, figures):
    """A run's line: its figures, its failed-request fraction, and FAILED with the reasons."""
    text = f"{run.label}: {figures} ({run.failed_requests}/{run.requests} requests failed)"
    return text + (f" FAILED: {'; '.join(run.failures)}" if run.failed else "")


# --- LB failover (bench/failover.py) ----------------------------------------------------------


def outage(records):
    """Seconds from the first failed request's start to the start of the first success after the
    last failure; 0 when no request failed; +inf when no request succeeded after the last failure
    (the API never came back in the window) or no request was recorded."""
    if not records:
        return INF
    failed = [t for t, ok in records if not ok]
    if not failed:
        return 0.0
    after = [t for t, ok in records if ok and t > failed[-1]]
    return after[0] - failed[0] if after else INF


def lb_run(label, records, moves, takeover, settled, limit):
    """A failover run. `records` [(start, ok)] of the client's requests; `moves`: the scenario
    moves the VIP; `takeover`: fault -> VIP on another host (None: it did not move in `limit`);
    `settled`: requests succeeded for the settle time in a row before the limit."""
    failures = []
    figures = {"unavailable": outage(records)}
    if moves:
        figures["takeover"] = takeover
        if takeover is None:
            failures.append(f"the VIP did not move in {limit:.0f} s")
    if not records:
        failures.append("no request was recorded")
    elif math.isinf(figures["unavailable"]) or not settled:
        failures.append(f"the API was not back (requests succeeding in a row) in {limit:.0f} s")
    failed = sum(1 for _, ok in records if not ok)
    return Run(label, figures, failures, failed_requests=failed, requests=len(records))


def lb_error_run(label, moves, error):
    """A run that raised: nothing measured."""
    figures = {"unavailable": None} | ({"takeover": None} if moves else {})
    return Run(label, figures, [f"error: {error}"])


def lb_summary(results, configs, scenarios, requested_per_cell):
    """Table lines and (last line, exit code) of the failover bench.

    `results` maps (config, scenario) to its runs. Last line:
      scenarios=N vip_takeover_s=X worst_api_unavailable_s=Y worst_vs_anchor_ratio=Z failed_runs=F [FAILED]
    X: ksha's worst scenario median takeover ("-": no scenario moves the VIP); Y: ksha's worst
    scenario median outage; Z: Y over the anchor's median outage in that scenario ("nan" when
    the anchor's is 0, not measured or infinite: a ratio to a failed anchor means nothing)."""
    table = [
        f"{'scenario':15} {'config':6} {'vip_takeover_s':>15} {'unavailable_s':>14} {'failed_runs':>12}"
        f"   failed_requests (runs summed; medians of {requested_per_cell})"
    ]
    for scenario in scenarios:
        for config in configs:
            runs = results.get((config, scenario), [])
            failed = failed_runs(runs, requested_per_cell)
            requests = fraction(sum(r.failed_requests for r in runs), sum(r.requests for r in runs))
            table.append(
                f"{scenario:15} {config:6} {fmt(median(runs, 'takeover')):>15} "
                f"{fmt(median(runs, 'unavailable')):>14} {failed:>12}   {requests}"
            )
    all_runs = [run for runs in results.values() for run in runs]
    requested = requested_per_cell * len(configs) * len(scenarios)
    fields = [("scenarios", str(len(scenarios)))]
    if "ksha" in configs:
        ksha = {s: results.get(("ksha", s), []) for s in scenarios}
        takeovers = [m for m in (median(runs, "takeover") for runs in ksha.values()) if m is not None]
        downs = {s: median(runs, "unavailable") for s, runs in ksha.items()}
        worst = max(scenarios, key=lambda s: INF if downs[s] is None else downs[s])
        worst_down = INF if downs[worst] is None else downs[worst]
        anchor_down = median(results.get(("anchor", worst), []), "unavailable")
        ratio = worst_down / anchor_down if anchor_down and not math.isinf(anchor_down) else math.nan
        fields += [
            ("vip_takeover_s", fmt(max(takeovers)) if takeovers else "-"),
            ("worst_api_unavailable_s", fmt(worst_down)),
            ("worst_vs_anchor_ratio", fmt(ratio)),
        ]
    return table, verdict(fields, all_runs, requested)


# --- etcd through a leader loss (bench/etcd_failover.py) ---------------------------------------


def write_gap(acks, kill_at, window_end, lead=1.0):
    """The longest time without an acknowledged write in [kill_at - lead, window_end]: between
    two acknowledgements, from the window's start to the first, and from the last to the window's
    end (writes that never resume after the kill give about window_end - kill_at)."""
    points = sorted(t for t in acks if kill_at - lead <= t <= window_end)
    points = [kill_at - lead, *points, window_end]
    return max(b - a for a, b in zip(points, points[1:], strict=False))


def writes_resumed(acks, kill_at, window_end, tail=1.0):
    """Writes were acknowledged again after the kill and still were at the end of the window
    (the last acknowledgement after the kill and at most `tail` s before the window's end). A
    write that the dying leader acknowledged just after the kill is no resumption: the next
    ones stop, so the last one is far from the window's end."""
    last = max((t for t in acks if t <= window_end), default=None)
    return last is not None and last > kill_at and window_end - last <= tail


def etcd_run(
    label,
    acks,
    kill_at,
    window_end,
    elected_at,
    writer_error=None,
    watch_error=None,
    lost=None,
    readback_error=None,
    writes=0,
    given_up=0,
    tail=1.0,
):
    """A leader-loss run. `acks`: times of the acknowledged writes; `elected_at`: when a survivor
    first named a new leader (None: not seen); `writer_error`/`watch_error`: what killed the
    writer/watcher thread (None: it ran to the end); `lost`: acknowledged keys missing when read
    back (None: not read back, `readback_error` says why); `writes`: writes sent; `given_up`:
    writes not acknowledged before the client's deadline."""
    failures = []
    if writer_error is not None:
        failures.append(f"the writer died: {writer_error}")
    if not writes_resumed(acks, kill_at, window_end, tail):
        last = max((t - kill_at for t in acks if t <= window_end), default=None)
        failures.append(
            f"writes did not resume after the kill (last acknowledged {fmt(last)} s after it, "
            f"window {window_end - kill_at:.1f} s)"
        )
    if watch_error is not None:
        failures.append(f"the leader watcher died: {watch_error}")
    if elected_at is None:
        failures.append("no survivor named a new leader in the window")
    if lost is None:
        failures.append(f"acknowledged writes not read back: {readback_error}")
    figures = {
        "elected": None if elected_at is None else elected_at - kill_at,
        "write_gap": write_gap(acks, kill_at, window_end),
    }
    return Run(label, figures, failures, failed_requests=given_up, requests=writes, counts={"lost": lost})


def etcd_summary(runs, requested, boots):
    """(last line, exit code) of the etcd bench. Last line, the election first (the headline:
    etcd's part, independent of the client model):
      runs=N election_s=E write_resume_s=X lost_acked_writes=L failed_writes=a/b bootstrap_s=B failed_runs=F [FAILED]
    election_s and write_resume_s are medians (failed runs as +inf); lost_acked_writes is summed,
    "-" when a run's writes were not read back; failed_writes: writes given up / writes sent."""
    lost = [run.counts.get("lost") for run in runs]
    fields = [
        ("runs", str(len(runs))),
        ("election_s", fmt(median(runs, "elected"))),
        ("write_resume_s", fmt(median(runs, "write_gap"))),
        ("lost_acked_writes", "-" if None in lost else str(sum(lost))),
        ("failed_writes", f"{sum(r.failed_requests for r in runs)}/{sum(r.requests for r in runs)}"),
        ("bootstrap_s", fmt(statistics.median(boots), 1) if boots else "-"),
    ]
    return verdict(fields, runs, requested)


# --- the lab (bench/lab.py) ---------------------------------------------------------------------


def lab_run(label, up_s=None, minions_s=None, ram_mib=None, down_s=None, error=None):
    figures = {"up": up_s, "minions": minions_s, "ram": ram_mib, "down": down_s}
    failures = [f"error: {error}"] if error is not None else []
    failures += [f"{name} not measured" for name, value in figures.items() if value is None and error is None]
    return Run(label, figures, failures)


def lab_summary(runs, requested, cold=None):
    """(last line, exit code), medians (failed runs as +inf); cold: the cold build's seconds (None: not built):
    runs=N cold_build_s=X up_s=X minions_s=X lab_ram_mib=X down_s=X failed_runs=F [FAILED]"""
    fields = [
        ("runs", str(len(runs))),
        ("cold_build_s", fmt(cold, 1)),
        ("up_s", fmt(median(runs, "up"), 1)),
        ("minions_s", fmt(median(runs, "minions"), 1)),
        ("lab_ram_mib", fmt(median(runs, "ram"), 0)),
        ("down_s", fmt(median(runs, "down"), 1)),
    ]
    return verdict(fields, runs, requested)


# --- the control plane (bench/controlplane.py) --------------------------------------------------


def longest_outage(records):
    """The longest stretch of failed requests: from a failed request's start (the first of a
    run of failures) to the start of the next success; 0 when none failed; +inf when the last
    failure has no success after it (the API was not back in the window) or nothing was recorded."""
    if not records:
        return INF
    longest, first_failed = 0.0, None
    for started, ok in sorted(records):
        if not ok and first_failed is None:
            first_failed = started
        elif ok and first_failed is not None:
            longest, first_failed = max(longest, started - first_failed), None
    return INF if first_failed is not None else longest


def controlplane_run(label, records, restarted, expected, takeover, limit, error=None):
    """One run of the control-plane bench. `records` [(start, ok)] of the client's requests
    through the VIP during one orch.ksha that changes every apiserver's flags; `restarted`: the
    masters whose apiserver that run restarted (None: the run's output was not read), `expected`
    all of them; `takeover`: the controller-manager lease holder's kill -> another master holds
    the lease (None: not within `limit` s); `error`: what stopped the run."""
    failures = [f"error: {error}"] if error is not None else []
    figures = {"rolling_unavailable": longest_outage(records), "takeover": takeover}
    if error is None:
        if not records:
            failures.append("no request was recorded")
        elif math.isinf(figures["rolling_unavailable"]):
            failures.append("the API was not back after the rolling restart")
        if restarted is None or sorted(restarted) != sorted(expected):
            failures.append(
                f"not every apiserver was restarted (restarted: {', '.join(sorted(restarted or [])) or 'none'})"
            )
        if takeover is None:
            failures.append(f"no other master held the controller-manager lease within {limit:.0f} s")
    failed = sum(1 for _, ok in records if not ok)
    return Run(label, figures, failures, failed_requests=failed, requests=len(records))


def controlplane_summary(runs, requested):
    """(last line, exit code) of the control-plane bench:
      runs=N rolling_max_unavailable_s=X failed_requests=a/b lease_takeover_s=Y failed_runs=F [FAILED]
    X: the longest outage of any run (a maximum, not a median; a failed run makes it inf); a/b:
    requests that failed / requests sent during the rolling restarts, every run summed; Y: the
    median takeover (failed runs as +inf)."""
    worst = max((run.value("rolling_unavailable") for run in runs), default=None)
    fields = [
        ("runs", str(len(runs))),
        ("rolling_max_unavailable_s", fmt(worst)),
        ("failed_requests", f"{sum(r.failed_requests for r in runs)}/{sum(r.requests for r in runs)}"),
        ("lease_takeover_s", fmt(median(runs, "takeover"))),
    ]
    return verdict(fields, runs, requested)


# --- orch.ksha against the worker count (bench/scale.py) --------------------------------------

SCALE_GOAL_RATIO = 1.5
SCALE_GOAL_NOOP = 0.15


def scale_summary(sizes, runs):
    """The goals line, and (last line, exit code), of bench/scale.py. `sizes`: the worker counts,
    each with its run (figures ``cold`` and ``noop``). Last line:
      workers=A,B orch_s=X,Y ratio=Z noop_over_cold=a,b failed_runs=F [FAILED]
    Z: the cold time of the largest size over the smallest's (inf when either failed; nan with
    one size: no ratio). A goal is met only when no run failed."""
    by_size = dict(zip(sizes, runs, strict=True))
    small, large = min(sizes), max(sizes)
    cold = [run.value("cold") for run in runs]
    share = [run.value("noop") / run.value("cold") if not run.failed else INF for run in runs]
    if small == large:
        ratio = math.nan
    elif by_size[small].failed or by_size[large].failed:
        ratio = INF
    else:
        ratio = by_size[large].value("cold") / by_size[small].value("cold")
    clean = not any(run.failed for run in runs)
    ratio_met = clean and ratio <= SCALE_GOAL_RATIO
    noop_met = clean and all(s <= SCALE_GOAL_NOOP for s in share)
    goals = (
        f"goals: cold({large})/cold({small}) <= {SCALE_GOAL_RATIO} {'met' if ratio_met else 'NOT met'}; "
        f"no-op/cold <= {SCALE_GOAL_NOOP} {'met' if noop_met else 'NOT met'}"
        + ("" if clean else " (a run failed: no goal is met)")
    )
    fields = [
        ("workers", ",".join(map(str, sizes))),
        ("orch_s", ",".join(fmt(c, 1) for c in cold)),
        ("ratio", fmt(ratio)),
        ("noop_over_cold", ",".join(fmt(s) for s in share)),
    ]
    return goals, verdict(fields, runs, len(sizes))
