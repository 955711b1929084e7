"""``ksha-lab …``: the systemd-nspawn lab from the command line (test equipment, not the product)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from ksha_lab import core
from ksha_lab.standins import apiservers as standin


def _lab() -> core.Lab:
    lab = core.Lab.load()
    if lab is None:
        raise core.LabError("no lab is up (ksha-lab up)")
    return lab


def cmd_up(args) -> int:
    core.up(args.topology, args.subnet)
    return cmd_status(args)


def cmd_base(args) -> int:
    """Build the hosts' base tree now (debootstrap + Salt), or find it cached: what `up` does
    first; `make setup` runs it so that the tests' first `up` finds it."""
    core.ensure_base()
    return 0


def cmd_down(args) -> int:
    core.down()
    return 0


def cmd_status(args) -> int:
    lab = _lab()
    names = list(lab.hosts)
    answered = lab.ping(names, timeout=3)
    rows = [("HOST", "ADDRESS", "BOOTED", "MINION", "ROLES")]
    for host in lab.hosts.values():
        rows.append(
            (
                host.name,
                host.ip,
                lab.system_state(host),
                "connected" if answered[host.name] else "-",
                ",".join(host.groups) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"\nbridge {core.BRIDGE} {lab.subnet}, salt-master {lab.master_ip}, LB address {lab.vip}")
    return 0


def cmd_exec(args) -> int:
    if not args.cmd:
        raise core.LabError("usage: ksha-lab exec HOST -- CMD [ARGS...]")
    lab = _lab()
    return subprocess.call(lab.exec_argv(lab.host(args.host), *args.cmd))


def _one(action):
    def handler(args) -> int:
        lab = _lab()
        host = lab.host(args.host)
        t0 = time.monotonic()
        action(lab, host)
        print(f"{args.host}: {handler.__name__} done in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        return 0

    handler.__name__ = action.__name__
    return handler


def start(lab: core.Lab, host: core.Host) -> None:
    lab.boot(host)


def stop(lab: core.Lab, host: core.Host) -> None:
    lab.stop(host)


def kill(lab: core.Lab, host: core.Host) -> None:
    lab.kill(host)


def partition(lab: core.Lab, host: core.Host) -> None:
    lab.partition(host)


def heal(lab: core.Lab, host: core.Host) -> None:
    lab.heal(host)


def wipe(lab: core.Lab, host: core.Host) -> None:
    lab.wipe(host)


def cmd_salt(args) -> int:
    """Run salt / salt-run / salt-key against the lab master."""
    lab = _lab()
    return subprocess.call(lab.salt_cmd(args.tool, *args.args))


def cmd_demo(args) -> int:
    """`make demo`: lab up, sync, the plan, orchestrate, status; the lab stays up."""
    lab = core.up(args.topology, args.subnet)
    masters = [h for h in lab.hosts.values() if "kube-master" in h.groups]
    steps = [
        ("salt-run", "saltutil.sync_all"),
        ("salt", "*", "saltutil.sync_all"),
        ("salt-run", "ksha.plan"),
        ("salt-run", "state.orchestrate", "orch.ksha"),
    ]
    for tool, *rest in steps:
        print(f"\n$ {tool} {' '.join(rest)}", flush=True)
        rc = subprocess.call(lab.salt_cmd(tool, *rest))
        if rc != 0:
            print(f"\n{tool} {' '.join(rest)} failed (exit {rc}); the lab is still up for a look.", file=sys.stderr)
            return rc
    print(
        "\nKubernetes binaries cannot be downloaded here: the kube-apiserver ksha runs on the masters is the\n"
        "lab's STAND-IN from its release tarball (test-only: TLS with the formula's certificate, /readyz while\n"
        "etcd is healthy), with the model's flags in ksha's unit on "
        + ", ".join(f"{h.name} {h.ip}:6443" for h in masters),
        flush=True,
    )
    standin.share_ca(lab, masters)
    # keepalived takes the VIP once its check has passed twice (about 2 s after it starts).
    deadline = time.monotonic() + 20
    while True:
        status = subprocess.run(lab.salt_cmd("salt-run", "ksha.status"), capture_output=True, text=True)
        if status.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    print("\n$ salt-run ksha.status", flush=True)
    print(status.stdout, end="", flush=True)
    if status.returncode != 0:
        print(f"\nksha.status reports a problem (exit {status.returncode}); the lab is still up.", file=sys.stderr)
        return status.returncode
    config = lab.master_dir
    print(
        "\nThe lab is up. Try:\n"
        "  .venv/bin/ksha-lab status\n"
        "  .venv/bin/ksha-lab exec master1 -- systemctl status salt-minion\n"
        f"  .venv/bin/salt -c {config} '*' ksha.roles\n"
        f"  .venv/bin/salt-run -c {config} state.orchestrate orch.ksha test=True\n"
        "Take it down with: .venv/bin/ksha-lab down   (or make lab-down)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ksha-lab",
        description="ksha's test lab (root): systemd-nspawn hosts with real systemd and Salt, on a private bridge.",
    )
    lsub = parser.add_subparsers(dest="command", required=True)

    def with_topology(p):
        p.add_argument("--topology", default="seed", help="seed (default), small, or a hosts.ini FILE")
        p.add_argument(
            "--subnet", default=core.DEFAULT_SUBNET, help=f"lab bridge network (default {core.DEFAULT_SUBNET})"
        )
        return p

    with_topology(lsub.add_parser("up", help="build/boot the lab and its salt-master")).set_defaults(func=cmd_up)
    with_topology(lsub.add_parser("demo", help="up, then sync and run orch.ksha")).set_defaults(func=cmd_demo)
    lsub.add_parser("base", help="build the hosts' base tree (cached; up does it first)").set_defaults(func=cmd_base)
    lsub.add_parser("down", help="stop and remove everything the lab made").set_defaults(func=cmd_down)
    lsub.add_parser("status", help="hosts, addresses, boot state, minions, roles").set_defaults(func=cmd_status)
    exec_ = lsub.add_parser("exec", help="run a command in a host: ksha-lab exec HOST -- CMD")
    exec_.add_argument("host")
    exec_.add_argument("cmd", nargs=argparse.REMAINDER)
    exec_.set_defaults(func=cmd_exec)
    for action, text in (
        (start, "boot a stopped or killed host"),
        (stop, "clean poweroff of a host"),
        (kill, "abrupt kill of a host's whole container"),
        (partition, "cut a host off the bridge"),
        (heal, "reconnect a partitioned host"),
        (wipe, "replace a host's machine: it boots again empty, same name and address"),
    ):
        p = lsub.add_parser(action.__name__, help=text)
        p.add_argument("host")
        p.set_defaults(func=_one(action))
    for tool in ("salt", "salt-run", "salt-key"):
        p = lsub.add_parser(tool, help=f"{tool} against the lab master")
        p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(func=cmd_salt, tool=tool)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        print("ERROR ksha-lab needs root (systemd-nspawn, mounts, bridges)", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except core.LabError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; `ksha-lab down` removes what was started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
