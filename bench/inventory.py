"""A large inventory: `ksha import` of a generated hosts.ini and `validate()` of its pillar.

Usage: .venv/bin/python bench/inventory.py [--hosts 20000] [--runs 3]

The hosts.ini has the seed's shape scaled up: 3 masters (kube-master + etcd) and N-3 workers,
each line with ansible_host, ip and ansible_ssh_pass (so the roster path is exercised). Per run:
  import_s     `ksha import --hosts-ini F --roster-out R` end to end (a subprocess: Python start,
               parse, pillar, validation, YAML out), wall time; the pillar and the roster are
               written to files under a temporary directory;
  validate_s   `ksha.inventory.validate()` of the imported pillar, in this process.
A run fails when the import does not exit 0, its pillar does not hold N hosts, or validate()
reports an error. Last line (medians):
  hosts=N runs=R import_s=X validate_s=Y failed_runs=F [FAILED]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.verdict import Run, fmt, median, verdict  # noqa: E402
from ksha import inventory  # noqa: E402

KSHA = Path(sys.executable).parent / "ksha"


def hosts_ini(n):
    names = [f"master{i}" for i in range(1, 4)] + [f"node{i}" for i in range(1, n - 2)]
    lines = ["[all]"]
    for index, name in enumerate(names):
        ip = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
        lines.append(f"{name} ansible_host={ip} ip={ip} ansible_ssh_pass=pw{index}")
    lines += ["", "[kube-master]", *names[:3], "", "[etcd]", *names[:3], "", "[kube-node]", *names[3:], ""]
    lines += ["[k8s-cluster:children]", "kube-node", "kube-master", ""]
    return "\n".join(lines)


def one_run(label, n, tmp):
    ini = tmp / "hosts.ini"
    ini.write_text(hosts_ini(n))
    # a pod network with a /24 node range for each of 20,000+ hosts (65,536), outside the hosts' 10.0.0.0/8
    (tmp / "common.yaml").write_text(
        "loadbalancer_apiserver:\n  address: 10.255.255.253\n  port: 6443\nkube_pods_subnet: 100.0.0.0/8\n"
    )
    run = Run(label)
    t0 = time.monotonic()
    with (tmp / "ksha.sls").open("w") as out:
        proc = subprocess.run(
            [str(KSHA), "import", "--hosts-ini", str(ini), "--common-yaml", str(tmp / "common.yaml"),
             "--roster-out", str(tmp / "roster")],
            stdout=out, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    run.figures["import_s"] = time.monotonic() - t0
    run.figures["validate_s"] = None
    if proc.returncode != 0:
        run.failures.append(f"ksha import exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
        return run
    ksha = yaml.safe_load((tmp / "ksha.sls").read_text())["ksha"]
    if len(ksha["hosts"]) != n:
        run.failures.append(f"the pillar holds {len(ksha['hosts'])} hosts, not {n}")
    t0 = time.monotonic()
    findings = inventory.validate(ksha)
    run.figures["validate_s"] = time.monotonic() - t0
    if inventory.has_errors(findings):
        run.failures.append(f"validate: {[str(f) for f in findings if f.level == 'ERROR'][:3]}")
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for number in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            run = one_run(f"run {number}", args.hosts, Path(tmp))
        runs.append(run)
        figures = " ".join(f"{name}={fmt(value)}" for name, value in run.figures.items())
        print(f"{run.label}: {figures}" + (f" FAILED: {'; '.join(run.failures)}" if run.failed else ""), flush=True)
    fields = [("hosts", str(args.hosts)), ("runs", str(len(runs)))]
    fields += [(name, fmt(median(runs, name))) for name in ("import_s", "validate_s")]
    line, code = verdict(fields, runs, args.runs)
    print(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
