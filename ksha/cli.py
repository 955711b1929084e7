"""The ``ksha`` command line.

Exit codes: 0 valid / done, 1 invalid inventory, 2 unreadable input, unwritable output
(``--roster-out``, stdout), a contradictory hosts.ini (a variable given two values) or a
usage error. No message shows a password.
"""

from __future__ import annotations

import argparse
import os
import sys

from ksha import __version__, importer, inventory, model

EXIT_OK, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


def _print_findings(findings: list[inventory.Finding]) -> None:
    for finding in findings:
        print(finding, file=sys.stderr)
    print(inventory.summary(findings), file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    if args.pillar:
        ksha = importer.load_pillar_file(args.pillar)
    else:
        ksha, _roster, notes = importer.import_files(args.hosts_ini, args.common_yaml)
        for note in notes:
            print(f"NOTE {note}", file=sys.stderr)
    findings = model.preflight_findings(ksha)
    _print_findings(findings)
    return EXIT_INVALID if inventory.has_errors(findings) else EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    roster_out = args.roster_out
    if roster_out is not None:  # before anything is read, written or printed
        importer.check_output_path(roster_out, "--roster-out", inputs=(args.hosts_ini, args.common_yaml))
    ksha, roster, notes = importer.import_files(args.hosts_ini, args.common_yaml, roster_kept=roster_out is not None)
    findings = inventory.validate(ksha)
    if roster_out is not None:
        importer.write_roster(roster, roster_out)
    for note in notes:
        print(f"NOTE {note}", file=sys.stderr)
    if roster_out is not None:
        print(f"NOTE roster with connection data written to {roster_out} (mode 0600)", file=sys.stderr)
    _write_stdout(
        "# ksha pillar imported by `ksha import`; see pillar/ksha.sls.example for every key.\n"
        + importer.dump_yaml({"ksha": ksha})
    )
    _print_findings(findings)
    return EXIT_INVALID if inventory.has_errors(findings) else EXIT_OK


def _write_stdout(text: str) -> None:
    """Print to stdout; a stdout that cannot take it (closed pipe, full disk) is an OutputError."""
    if sys.stdout is None:
        raise importer.OutputError("stdout: is closed")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        # What is still buffered is flushed again at exit: let that go to /dev/null, quietly.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise importer.OutputError(f"stdout: cannot write: {exc.strerror or exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ksha", description="Deploy and keep a highly-available KubeSphere cluster with Salt."
    )
    parser.add_argument("--version", action="version", version=f"ksha {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check an inventory; every problem is printed, one line each")
    source = validate.add_mutually_exclusive_group(required=True)
    source.add_argument("--hosts-ini", metavar="FILE", help="the seed installer's conf/hosts.ini")
    source.add_argument("--pillar", metavar="FILE", help="a pillar file with a top-level 'ksha:' key")
    validate.add_argument("--common-yaml", metavar="FILE", help="the seed installer's conf/common.yaml")
    validate.set_defaults(func=cmd_validate)

    imp = sub.add_parser("import", help="print the ksha pillar for a hosts.ini (and common.yaml)")
    imp.add_argument("--hosts-ini", metavar="FILE", required=True)
    imp.add_argument("--common-yaml", metavar="FILE")
    imp.add_argument("--roster-out", metavar="FILE", help="write a salt-ssh roster with the connection data")
    imp.set_defaults(func=cmd_import)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "common_yaml", None) and getattr(args, "pillar", None):
        parser.error("--common-yaml goes with --hosts-ini, not with --pillar")
    try:
        return args.func(args)
    except importer.InputError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return EXIT_UNREADABLE


if __name__ == "__main__":
    sys.exit(main())
