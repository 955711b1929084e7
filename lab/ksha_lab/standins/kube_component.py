"""STAND-IN for a Kubernetes component binary (kube-apiserver, kube-controller-manager,
kube-scheduler), for the lab only: the release binaries cannot be downloaded here. It is not
the component. The lab's release tarball (ksha_lab/standins/release.py) carries one copy per
component, named and placed as upstream's kubernetes/server/bin/<component>, with the
component's name, version and flag names (ksha/data/kubernetes-flags.yaml, the pinned
version's command-line reference) written in front of this text.

What it does, as the real binary would:
- ``--version`` prints ``Kubernetes <version>`` and exits 0;
- a flag that is not in the version's reference is refused: ``Error: unknown flag: --<name>``
  on stderr, exit 1 (cobra's message and code);
- anything else: it says it is a stand-in that does not serve (yet) and exits 1, so that
  nothing mistakes it for a running component.

Runs with the container's Python 3 standard library only.
"""

import sys


def parse(argv, known):
    """{flag: value or None}, or the first unknown flag's name (a str)."""
    flags = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            continue  # the components take no positional arguments that matter here
        name, eq, value = arg.lstrip("-").partition("=")
        long_name = {"h": "help", "v": "v"}.get(name, name) if not arg.startswith("--") else name
        if long_name not in known:
            return arg.split("=", 1)[0]
        if not eq and i < len(argv) and not argv[i].startswith("-"):
            value, i = argv[i], i + 1
        flags[long_name] = value if (eq or value) else None
    return flags


def main(component, version, known, argv):
    flags = parse(argv, set(known))
    if isinstance(flags, str):
        print(f"Error: unknown flag: {flags}", file=sys.stderr)
        return 1
    if "version" in flags and flags["version"] in (None, "true", "raw"):
        print(f"Kubernetes {version}")
        return 0
    print(
        f"{component} {version}: ksha-lab STAND-IN; every flag is one of {version}'s, but this stand-in does not serve",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(COMPONENT, VERSION, KNOWN_FLAGS, sys.argv[1:]))  # noqa: F821 - written in front by release.py
