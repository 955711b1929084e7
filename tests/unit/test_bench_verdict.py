"""bench/verdict.py: a failed run never gives a passing figure; the last line says FAILED and the
exit code is 1. Pure data in (timestamps, records), no lab and no timing of this machine."""

import math

import pytest

from tests.conftest import load_bench_verdict

verdict = load_bench_verdict()

KILL = 100.0
END = 110.0  # the writer stops 10 s after the kill


def ticks(start, stop, step=0.01):
    """Acknowledgement times every `step` in [start, stop)."""
    return [start + i * step for i in range(int(round((stop - start) / step)))]


def normal_acks(resume_after=1.45):
    """Acks every 10 ms; the dying leader still acknowledges 50 ms after the kill; the writes
    resume `resume_after` s after the kill and go on to the end of the window."""
    return ticks(KILL - 2.0, KILL + 0.05) + ticks(KILL + resume_after, END)


# --- etcd: the write gap ------------------------------------------------------------------


def test_gap_of_a_normal_run_is_the_hole_around_the_kill():
    acks = normal_acks(resume_after=1.45)
    # last ack of the dying leader at +0.04, first after the election at +1.45
    assert verdict.write_gap(acks, KILL, END) == pytest.approx(1.41, abs=0.001)
    assert verdict.writes_resumed(acks, KILL, END)


def test_gap_of_writes_that_never_resume_runs_to_the_end_of_the_window():
    # The old gap (between acknowledgements only) was 0.01 s here: a passing figure.
    acks = ticks(KILL - 2.0, KILL + 0.05)
    assert verdict.write_gap(acks, KILL, END) == pytest.approx(END - (KILL + 0.04), abs=0.011)
    assert not verdict.writes_resumed(acks, KILL, END)


def test_gap_with_no_acknowledgement_at_all_is_the_whole_window():
    assert verdict.write_gap([], KILL, END) == pytest.approx(11.0)
    assert not verdict.writes_resumed([], KILL, END)


def test_writes_that_stop_again_before_the_end_did_not_resume():
    acks = ticks(KILL - 2.0, KILL + 0.05) + ticks(KILL + 1.5, KILL + 3.0)
    assert not verdict.writes_resumed(acks, KILL, END)
    assert verdict.write_gap(acks, KILL, END) == pytest.approx(END - (KILL + 2.99), abs=0.011)


# --- etcd: runs and the last line -----------------------------------------------------------


def etcd_normal(n=1, elected=1.33):
    acks = normal_acks()
    return verdict.etcd_run(f"run {n}", acks, KILL, END, KILL + elected, lost=0, writes=len(acks) + 6, given_up=0)


def test_etcd_normal_run_passes_with_the_election_first():
    run = etcd_normal()
    assert not run.failed
    line, code = verdict.etcd_summary([run], requested=1, boots=[24.0, 26.5, 28.0])
    assert code == 0
    assert line.startswith("runs=1 election_s=1.33 write_resume_s=1.41 lost_acked_writes=0 ")
    assert f"failed_writes=0/{run.requests}" in line
    assert line.endswith("bootstrap_s=26.5 failed_runs=0")
    assert "FAILED" not in line


def test_etcd_writes_never_resumed_is_a_failed_run():
    acks = ticks(KILL - 2.0, KILL + 0.05)
    run = verdict.etcd_run("run 1", acks, KILL, END, KILL + 1.33, lost=0, writes=len(acks))
    assert run.failed
    assert any("did not resume" in reason for reason in run.failures)
    line, code = verdict.etcd_summary([run], requested=1, boots=[26.5])
    assert code == 1
    assert line.endswith("failed_runs=1 FAILED")
    assert "write_resume_s=inf" in line and "election_s=inf" in line


def test_etcd_writer_that_raised_is_a_failed_run_even_if_the_gap_looks_good():
    # The writer died on Unanswered while the cluster went on: its acks stop at the kill.
    acks = ticks(KILL - 2.0, KILL + 0.05)
    run = verdict.etcd_run(
        "run 1", acks, KILL, END, KILL + 1.2, writer_error="Unanswered: 10.0.0.2: HTTP 503", lost=0, writes=len(acks)
    )
    assert run.failed
    assert any("writer died" in reason and "Unanswered" in reason for reason in run.failures)
    # Even a writer that died after the writes resumed fails the run.
    late = verdict.etcd_run("run 2", normal_acks(), KILL, END, KILL + 1.2, writer_error="KeyError: 'x'", lost=0)
    assert late.failed
    line, code = verdict.etcd_summary([run, late], requested=2, boots=[26.5])
    assert (code, line.endswith("failed_runs=2 FAILED")) == (1, True)


def test_etcd_no_leader_seen_or_keys_not_read_back_fail_the_run():
    no_leader = verdict.etcd_run("run 1", normal_acks(), KILL, END, None, lost=0)
    unread = verdict.etcd_run("run 2", normal_acks(), KILL, END, KILL + 1.3, readback_error="TimeoutError: timed out")
    assert no_leader.failed and unread.failed
    line, code = verdict.etcd_summary([no_leader, unread], requested=2, boots=[26.5])
    assert code == 1 and "lost_acked_writes=-" in line and line.endswith("FAILED")


def test_etcd_one_failed_run_of_five_fails_the_bench_and_only_raises_the_medians():
    runs = [etcd_normal(n, elected) for n, elected in enumerate((1.33, 1.47, 1.11, 1.07), 1)]
    runs.append(verdict.etcd_run("run 5", ticks(KILL - 2.0, KILL + 0.05), KILL, END, KILL + 1.0, lost=0))
    line, code = verdict.etcd_summary(runs, requested=5, boots=[26.5])
    assert code == 1
    assert "election_s=1.33 " in line  # the failed run's 1.00 s is no figure: it counts as +inf
    assert line.endswith("failed_runs=1 FAILED")


def test_etcd_runs_not_done_are_failed_runs():
    line, code = verdict.etcd_summary([etcd_normal()], requested=5, boots=[26.5])
    assert code == 1 and line.endswith("failed_runs=4 FAILED")
    line, code = verdict.etcd_summary([], requested=5, boots=[])
    assert code == 1 and "election_s=- " in line and line.endswith("failed_runs=5 FAILED")


# --- LB failover ----------------------------------------------------------------------------


def requests(ok_from=None, fail_from=0.0, start=-1.0, step=0.05):
    """Requests every 50 ms from `start` (seconds after the fault), failing from `fail_from`
    until `ok_from` (None: never ok again), to 10 s or 6 s after `ok_from`, whichever is later."""
    stop = max(10.0, (ok_from or 0.0) + 6.0)
    out = []
    for i in range(int(round((stop - start) / step))):
        t = start + i * step
        out.append((t, not (fail_from <= t and (ok_from is None or t < ok_from))))
    return out


def test_outage():
    assert verdict.outage(requests(ok_from=1.65)) == pytest.approx(1.65, abs=0.051)
    assert verdict.outage([(0.0, True), (0.05, True)]) == 0.0
    assert verdict.outage(requests(ok_from=None)) == math.inf  # the old one gave 9.95 s
    assert verdict.outage([]) == math.inf


def lb(label, moves, takeover, ok_from, settled=True):
    return verdict.lb_run(label, requests(ok_from=ok_from), moves, takeover, settled, limit=90.0)


def lb_results(ksha_holder, anchor_holder=None):
    """holder-killed and backend-killed for both configurations, one run each."""
    return {
        ("ksha", "holder-killed"): [ksha_holder],
        ("ksha", "backend-killed"): [verdict.lb_run("b", [(0.0, True), (5.0, True)], False, None, True, 90.0)],
        ("anchor", "holder-killed"): [anchor_holder or lb("a", True, 3.21, 11.6)],
        ("anchor", "backend-killed"): [verdict.lb_run("b", [(0.0, True), (5.0, True)], False, None, True, 90.0)],
    }


SCEN = ["holder-killed", "backend-killed"]


def test_lb_normal_run_passes():
    run = lb("ksha holder-killed run 1", True, 0.58, 1.65)
    assert not run.failed
    table, (line, code) = verdict.lb_summary(lb_results(run), ["ksha", "anchor"], SCEN, 1)
    assert code == 0
    assert line == (
        "scenarios=2 vip_takeover_s=0.58 worst_api_unavailable_s=1.65 worst_vs_anchor_ratio=0.14 failed_runs=0"
    )
    assert "33/220 (15.0%)" in table[1]  # failed requests per scenario and configuration
    assert verdict.run_line(run, "x").endswith("(33/220 requests failed)")


def test_lb_vip_never_moved_is_a_failed_run_not_a_zero():
    # The old median dropped the run: no run moved -> vip_takeover_s=0.00, a passing figure.
    run = lb("ksha holder-killed run 1", True, None, 1.65)
    assert run.failed and any("VIP did not move" in reason for reason in run.failures)
    assert "FAILED: the VIP did not move in 90 s" in verdict.run_line(run, "vip_takeover - s")
    _, (line, code) = verdict.lb_summary(lb_results(run), ["ksha", "anchor"], SCEN, 1)
    assert code == 1
    assert "vip_takeover_s=inf" in line and line.endswith("failed_runs=1 FAILED")


def test_lb_api_never_back_is_a_failed_run_not_a_finite_outage():
    run = lb("ksha holder-killed run 1", True, 0.58, None, settled=False)
    assert run.failed and any("API was not back" in reason for reason in run.failures)
    _, (line, code) = verdict.lb_summary(lb_results(run), ["ksha", "anchor"], SCEN, 1)
    assert code == 1
    assert "worst_api_unavailable_s=inf" in line and "worst_vs_anchor_ratio=inf" in line
    assert line.endswith("FAILED")


def test_lb_a_failed_anchor_run_fails_the_bench_and_gives_no_ratio():
    anchor = lb("anchor holder-killed run 1", True, None, None, settled=False)
    _, (line, code) = verdict.lb_summary(lb_results(lb("k", True, 0.58, 1.65), anchor), ["ksha", "anchor"], SCEN, 1)
    assert code == 1
    assert "worst_vs_anchor_ratio=nan" in line and line.endswith("failed_runs=1 FAILED")


def test_lb_runs_not_done_and_error_runs_are_failed_runs():
    results = lb_results(lb("k", True, 0.58, 1.65))
    results[("ksha", "holder-killed")].append(verdict.lb_error_run("k2", True, "RuntimeError: did not settle"))
    table, (line, code) = verdict.lb_summary(results, ["ksha", "anchor"], SCEN, 3)
    # ksha holder-killed: 1 error + 1 not done; the other three cells: 2 not done each
    assert code == 1 and line.endswith("failed_runs=8 FAILED")
    assert "vip_takeover_s=inf" in line  # median of (0.58, inf)


# --- the lab --------------------------------------------------------------------------------


def test_lab_summary():
    runs = [verdict.lab_run(f"run {n}", 11.2, 9.5, 856, 10.5) for n in (1, 2)]
    line, code = verdict.lab_summary(runs, 2)
    assert (line, code) == (
        "runs=2 cold_build_s=- up_s=11.2 minions_s=9.5 lab_ram_mib=856 down_s=10.5 failed_runs=0",
        0,
    )
    runs.append(verdict.lab_run("run 3", error="LabError: salt-master did not come up"))
    line, code = verdict.lab_summary(runs, 3)
    assert code == 1 and line.endswith("failed_runs=1 FAILED")


# --- the control plane ---------------------------------------------------------------------------

OK_RECORDS = [(t / 20, True) for t in range(200)]


def test_longest_outage_is_the_longest_run_of_failures():
    records = [(0.0, True), (0.05, False), (0.1, False), (0.15, True), (1.0, False), (1.5, True)]
    assert verdict.longest_outage(records) == 0.5
    assert verdict.longest_outage(OK_RECORDS) == 0.0
    assert verdict.longest_outage([(0.0, True), (0.05, False)]) == verdict.INF  # never back
    assert verdict.longest_outage([]) == verdict.INF


def test_controlplane_normal_run_passes():
    run = verdict.controlplane_run("run 1", OK_RECORDS, ["master2", "master1", "master3"],
                                   ["master1", "master2", "master3"], 16.4, 60)  # fmt: skip
    assert not run.failed and run.figures == {"rolling_unavailable": 0.0, "takeover": 16.4}
    line, code = verdict.controlplane_summary([run], 1)
    assert (line, code) == (
        "runs=1 rolling_max_unavailable_s=0.00 failed_requests=0/200 lease_takeover_s=16.40 failed_runs=0",
        0,
    )


@pytest.mark.parametrize(
    "records, restarted, takeover, reason",
    [
        (OK_RECORDS, ["master1", "master2"], 16.0, "not every apiserver was restarted (restarted: master1, master2)"),
        (OK_RECORDS, None, 16.0, "not every apiserver was restarted (restarted: none)"),
        (OK_RECORDS, ["master1", "master2", "master3"], None, "no other master held the controller-manager lease"),
        ([*OK_RECORDS, (11.0, False)], ["master1", "master2", "master3"], 16.0, "the API was not back"),
        ([], ["master1", "master2", "master3"], 16.0, "no request was recorded"),
    ],
)
def test_controlplane_run_that_did_not_measure_what_it_says_fails(records, restarted, takeover, reason):
    run = verdict.controlplane_run("run 1", records, restarted, ["master1", "master2", "master3"], takeover, 60)
    assert run.failed and any(f.startswith(reason) for f in run.failures), run.failures
    good = verdict.controlplane_run("run 2", OK_RECORDS, ["master1", "master2", "master3"],
                                    ["master1", "master2", "master3"], 15.0, 60)  # fmt: skip
    line, code = verdict.controlplane_summary([good, run], 2)
    assert code == 1 and line.endswith("failed_runs=1 FAILED")
    assert "rolling_max_unavailable_s=inf" in line  # a maximum: the failed run makes it inf


def test_controlplane_runs_not_done_are_failed_runs():
    error = verdict.controlplane_run("run 1", [], None, ["master1"], None, 60, error="orch.ksha failed")
    assert error.failures == ["error: orch.ksha failed"]
    line, code = verdict.controlplane_summary([error], 3)
    assert code == 1 and "failed_runs=3 FAILED" in line


# --- bench/scale.py ---------------------------------------------------------------------------


def scale_run(workers, cold, noop, failures=()):
    return verdict.Run(f"workers={workers}", {"cold": cold, "noop": noop}, list(failures))


@pytest.mark.parametrize(
    "sizes, runs, goals, last, code",
    [
        ([3, 12], [scale_run(3, 60.0, 6.0), scale_run(12, 84.0, 9.0)],
         "goals: cold(12)/cold(3) <= 1.5 met; no-op/cold <= 0.15 met",
         "workers=3,12 orch_s=60.0,84.0 ratio=1.40 noop_over_cold=0.10,0.11 failed_runs=0", 0),
        # the order of --workers does not turn the ratio upside down
        ([12, 3], [scale_run(12, 120.0, 30.0), scale_run(3, 60.0, 30.0)],
         "goals: cold(12)/cold(3) <= 1.5 NOT met; no-op/cold <= 0.15 NOT met",
         "workers=12,3 orch_s=120.0,60.0 ratio=2.00 noop_over_cold=0.25,0.50 failed_runs=0", 0),
        # a failed size: its figures inf, no goal met, FAILED, exit 1
        ([3, 12], [scale_run(3, 60.0, 6.0), scale_run(12, 84.0, None, ["the no-op orch.ksha changed: x"])],
         "goals: cold(12)/cold(3) <= 1.5 NOT met; no-op/cold <= 0.15 NOT met (a run failed: no goal is met)",
         "workers=3,12 orch_s=60.0,inf ratio=inf noop_over_cold=0.10,inf failed_runs=1 FAILED", 1),
        # a middle size failing fails the line, though the ends have figures
        ([3, 6, 12], [scale_run(3, 60.0, 6.0), scale_run(6, None, None, ["raised"]), scale_run(12, 84.0, 9.0)],
         "goals: cold(12)/cold(3) <= 1.5 NOT met; no-op/cold <= 0.15 NOT met (a run failed: no goal is met)",
         "workers=3,6,12 orch_s=60.0,inf,84.0 ratio=1.40 noop_over_cold=0.10,inf,0.11 failed_runs=1 FAILED", 1),
    ],
)  # fmt: skip
def test_scale_summary(sizes, runs, goals, last, code):
    assert verdict.scale_summary(sizes, runs) == (goals, (last, code))
