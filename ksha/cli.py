"""The ``ksha`` command line.

Exit codes: 0 valid / done, 1 invalid inventory, 2 unreadable input or usage error.
"""

from __future__ import annotations

import argparse
import sys

from ksha import __version__, importer, inventory

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
    findings = inventory.validate(ksha)
    _print_findings(findings)
    return EXIT_INVALID if inventory.has_errors(findings) else EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    ksha, roster, notes = importer.import_files(args.hosts_ini, args.common_yaml)
    for note in notes:
        print(f"NOTE {note}", file=sys.stderr)
    sys.stdout.write("# ksha pillar imported by `ksha import`; see pillar/ksha.sls.example for every key.\n")
    sys.stdout.write(importer.dump_yaml({"ksha": ksha}))
    if args.roster_out:
        importer.write_roster(roster, args.roster_out)
        print(f"NOTE roster with connection data written to {args.roster_out} (mode 0600)", file=sys.stderr)
    findings = inventory.validate(ksha)
    _print_findings(findings)
    return EXIT_INVALID if inventory.has_errors(findings) else EXIT_OK


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
