"""Lab figures: warm `lab up`, boot to all minions answering, RAM of the running lab, teardown.

Usage (root): .venv/bin/python bench/lab.py [--topology seed] [--runs 3] [--cold]
--cold removes the cached base tree and wheelhouse first and times the build.
Prints one line per run and a last line with the medians:
  runs=N cold_build_s=X up_s=X minions_s=X lab_ram_mib=X down_s=X
"""

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from ksha.lab import base, core


def mem_used_mib() -> float:
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":")
        info[key] = int(value.split()[0])
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topology", default="seed")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()

    quiet = lambda message: None  # noqa: E731
    core.down(log=quiet)
    cold = float("nan")
    if args.cold:
        for path in list(core.CACHE.glob("base-*")) + list(core.CACHE.glob("wheels-*")):
            shutil.rmtree(path)
        t0 = time.monotonic()
        base.ensure_base(core.CACHE, quiet)
        cold = time.monotonic() - t0
        print(f"cold base build (debootstrap + wheelhouse + venv): {cold:.1f} s", flush=True)

    rows = []
    for run in range(1, args.runs + 1):
        idle = mem_used_mib()
        t0 = time.monotonic()
        core.up(args.topology, log=quiet)
        up_s = time.monotonic() - t0
        timings = json.loads((core.STATE / "timings.json").read_text())
        time.sleep(5)  # let the minions settle after their first jobs
        ram = mem_used_mib() - idle
        t1 = time.monotonic()
        core.down(log=quiet)
        down_s = time.monotonic() - t1
        rows.append((up_s, timings["minions"], ram, down_s))
        print(
            f"run {run}: up {up_s:.1f} s, minions {timings['minions']:.1f} s, lab RAM {ram:.0f} MiB, "
            f"down {down_s:.1f} s",
            flush=True,
        )
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(
        f"runs={len(rows)} cold_build_s={cold:.1f} up_s={med[0]:.1f} minions_s={med[1]:.1f} "
        f"lab_ram_mib={med[2]:.0f} down_s={med[3]:.1f}"
    )


if __name__ == "__main__":
    main()
