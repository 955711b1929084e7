"""Lab figures: warm `lab up`, boot to all minions answering, RAM of the running lab, teardown.

Usage (root): .venv/bin/python bench/lab.py [--topology seed] [--runs 3] [--cold]
--cold removes the cached base tree and wheelhouse first and times the build.
Prints one line per run and a last line with the medians:
  runs=N cold_build_s=X up_s=X minions_s=X lab_ram_mib=X down_s=X failed_runs=F
A run that raised (or did not record the minions' boot time) is a failed run: it enters the
medians as +inf, the last line ends with FAILED and the exit code is 1.
"""

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

import verdict  # bench/verdict.py, next to this script

from ksha_lab import base, core


def mem_used_mib() -> float:
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":")
        info[key] = int(value.split()[0])
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topology", default="seed")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()

    quiet = lambda message: None  # noqa: E731
    core.down(log=quiet)
    cold = None
    if args.cold:
        for path in list(core.CACHE.glob("base-*")) + list(core.CACHE.glob("wheels-*")):
            shutil.rmtree(path)
        t0 = time.monotonic()
        base.ensure_base(core.CACHE, quiet)
        cold = time.monotonic() - t0
        print(f"cold base build (debootstrap + wheelhouse + venv): {cold:.1f} s", flush=True)

    runs = []
    for run in range(1, args.runs + 1):
        up_s = minions_s = ram = down_s = None
        try:
            idle = mem_used_mib()
            t0 = time.monotonic()
            core.up(args.topology, log=quiet)
            up_s = time.monotonic() - t0
            minions_s = json.loads((core.STATE / "timings.json").read_text()).get("minions")
            time.sleep(5)  # let the minions settle after their first jobs
            ram = mem_used_mib() - idle
            t1 = time.monotonic()
            core.down(log=quiet)
            down_s = time.monotonic() - t1
            record = verdict.lab_run(f"run {run}", up_s, minions_s, ram, down_s)
        except Exception as exc:
            print(traceback.format_exc().rstrip(), file=sys.stderr, flush=True)
            record = verdict.lab_run(f"run {run}", error=f"{type(exc).__name__}: {exc}")
            try:
                core.down(log=quiet)  # the next run starts from nothing, as the others
            except Exception:
                print(traceback.format_exc().rstrip(), file=sys.stderr, flush=True)
        runs.append(record)
        print(
            f"run {run}: up {verdict.fmt(up_s, 1)} s, minions {verdict.fmt(minions_s, 1)} s, "
            f"lab RAM {verdict.fmt(ram, 0)} MiB, down {verdict.fmt(down_s, 1)} s"
            + (f" FAILED: {'; '.join(record.failures)}" if record.failed else ""),
            flush=True,
        )
    line, code = verdict.lab_summary(runs, args.runs, cold)
    print(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
