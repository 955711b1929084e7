"""Import the seed installer's ``hosts.ini`` and ``common.yaml`` into a ``ksha`` pillar.

Connection data (``ansible_host``, ``ansible_ssh_pass``, become settings ...) never
goes into the pillar, which Salt sends to every minion; it goes into a salt-ssh
roster instead (:func:`to_roster`).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from ksha.inventory import KNOWN_GROUPS

# Groups whose members are derived from other groups; not stored in the pillar.
DERIVED_GROUPS = ("k8s-cluster",)

# Ansible host variables that become salt-ssh roster keys.
ROSTER_KEYS = {
    "ansible_host": "host",
    "ansible_ssh_host": "host",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_ssh_pass": "passwd",
    "ansible_password": "passwd",
    "ansible_ssh_private_key_file": "priv",
    "ansible_become_user": "sudo_user",
}
BECOME_FLAGS = ("ansible_become", "ansible_sudo")
BECOME_PASSWORDS = ("ansible_become_pass", "ansible_become_password", "ansible_sudo_pass")
CONNECTION_VARS = (*ROSTER_KEYS, *BECOME_FLAGS, *BECOME_PASSWORDS, "ansible_connection")

# common.yaml keys ksha understands, as (pillar path) tuples.
COMMON_KEYS = {
    "kube_version": ("kubernetes", "version"),
    "etcd_backup_dir": ("etcd", "backup", "dir"),
    "etcd_backup_period": ("etcd", "backup", "period_minutes"),
    "keep_backup_number": ("etcd", "backup", "keep"),
    "apiserver_loadbalancer_domain_name": ("loadbalancer", "domain"),
}


class InputError(Exception):
    """The input cannot be read as what it claims to be (exit code 2)."""


def read_text(path: str | Path, what: str) -> str:
    """Read a text file, turning every way it can be unreadable into InputError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None
    if b"\0" in data:
        raise InputError(f"{what} {path}: is a binary file, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path}: is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise InputError(f"{what} {path}: is empty")
    return text


def parse_hosts_ini(text: str, source: str = "hosts.ini") -> dict:
    """Parse an Ansible INI inventory.

    Returns ``{"hosts": {name: {var: value}}, "order": [names], "groups": {name: [hosts]},
    "children": {name: [groups]}}``. Raises InputError on anything that is not such a file.
    """
    hosts: dict[str, dict[str, str]] = {}
    order: list[str] = []
    groups: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    section, kind = None, None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        where = f"{source}:{lineno}"
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise InputError(f"{where}: malformed section header {line!r} (expected [group])")
            section, _, kind = line[1:-1].strip().partition(":")
            if kind not in ("", "children", "vars"):
                raise InputError(f"{where}: unknown section type {kind!r} in {line!r}")
            if kind == "children":
                children.setdefault(section, [])
            elif kind == "":
                groups.setdefault(section, [])
            continue
        if section is None:
            raise InputError(f"{where}: {line!r} is outside any [section]; this is not an INI inventory")
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InputError(f"{where}: cannot parse {line!r}: {exc}") from None
        if kind == "vars":
            continue  # group vars carry no inventory structure ksha uses
        if kind == "children":
            if len(tokens) != 1:
                raise InputError(f"{where}: a [{section}:children] line names one group, got {line!r}")
            children[section].append(tokens[0])
            continue
        name, assignments = tokens[0], tokens[1:]
        if "=" in name:
            raise InputError(f"{where}: expected a host name first, got {name!r}")
        variables = hosts.setdefault(name, {})
        if name not in order:
            order.append(name)
        for assignment in assignments:
            var, sep, value = assignment.partition("=")
            if not sep or not var:
                raise InputError(f"{where}: expected key=value after the host name, got {assignment!r}")
            variables[var] = value
        if name not in groups[section]:
            groups[section].append(name)
    if not hosts:
        raise InputError(f"{source}: defines no hosts; this is not an INI inventory")
    return {"hosts": hosts, "order": order, "groups": groups, "children": children}


def parse_common_yaml(text: str, source: str = "common.yaml") -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{where}: is not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{source}: must be a YAML mapping of settings, got {type(data).__name__}")
    return data


def _set_path(tree: dict, path: tuple, value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def to_pillar(inventory: dict, common: dict | None = None) -> tuple[dict, list[str]]:
    """Build the ``ksha`` pillar value; also return notes on what was not imported."""
    common = common or {}
    notes: list[str] = []
    hosts = []
    for name in inventory["order"]:
        variables = inventory["hosts"][name]
        entry: dict[str, Any] = {"name": name}
        ip = variables.get("ip") or variables.get("ansible_host") or variables.get("ansible_ssh_host")
        if ip is not None:
            entry["ip"] = ip
        access_ip = variables.get("access_ip")
        if access_ip and access_ip != ip:
            entry["addresses"] = [access_ip]
        hosts.append(entry)
        ignored = sorted(v for v in variables if v not in CONNECTION_VARS and v not in ("ip", "access_ip"))
        if ignored:
            notes.append(f"host {name}: variables not imported: {', '.join(ignored)}")

    groups: dict[str, list[str]] = {g: [] for g in KNOWN_GROUPS}
    for group, members in inventory["groups"].items():
        if group in ("all", *DERIVED_GROUPS):
            continue
        groups[group] = list(members)
    for group in inventory["children"]:
        if group not in DERIVED_GROUPS:
            notes.append(f"group [{group}:children]: nested groups are not imported")

    ksha: dict[str, Any] = {"hosts": hosts, "groups": groups}
    lb = common.get("loadbalancer_apiserver")
    if isinstance(lb, dict):
        # The seed's LB is a pre-made (cloud) load balancer: ksha only points at it.
        ksha["loadbalancer"] = {"mode": "external", "address": lb.get("address"), "port": lb.get("port", 6443)}
    elif lb is not None:
        ksha["loadbalancer"] = {"mode": "external", "address": lb}
        notes.append("loadbalancer_apiserver: expected {address, port}; imported as the address")
    elif len(groups["kube-master"]) <= 1:
        ksha["loadbalancer"] = {"mode": "none"}
    for key, path in COMMON_KEYS.items():
        if key in common:
            _set_path(ksha, path, common[key])
    unused = sorted(k for k in common if k not in COMMON_KEYS and k != "loadbalancer_apiserver")
    if unused:
        notes.append(f"common.yaml: settings not imported: {', '.join(unused)}")
    return ksha, notes


def to_roster(inventory: dict) -> tuple[dict, list[str]]:
    """A salt-ssh roster with each host's connection data; also return notes."""
    roster: dict[str, dict] = {}
    notes: list[str] = []
    for name in inventory["order"]:
        variables = inventory["hosts"][name]
        entry: dict[str, Any] = {}
        if variables.get("ansible_connection") == "local":
            entry["host"] = "localhost"
        for var, key in ROSTER_KEYS.items():
            if var in variables and key not in entry:
                entry[key] = variables[var]
        entry.setdefault("host", variables.get("ip", name))
        if "port" in entry:
            try:
                entry["port"] = int(entry["port"])
            except ValueError:
                notes.append(f"host {name}: port {entry['port']!r} is not a number; kept as written")
        if any(str(variables.get(flag, "")).lower() in ("true", "yes", "1") for flag in BECOME_FLAGS):
            entry["sudo"] = True
        become_pass = next((variables[v] for v in BECOME_PASSWORDS if v in variables), None)
        if become_pass is not None:
            if "passwd" not in entry:
                entry["passwd"] = become_pass
            elif entry["passwd"] != become_pass:
                notes.append(
                    f"host {name}: salt-ssh uses one password for ssh and sudo; the become password was not kept"
                )
        roster[name] = entry
    return roster, notes


def import_files(hosts_ini: str | Path, common_yaml: str | Path | None = None) -> tuple[dict, dict, list[str]]:
    """Read and import the seed's files: (ksha pillar value, roster, notes)."""
    inventory = parse_hosts_ini(read_text(hosts_ini, "hosts.ini"), str(hosts_ini))
    common = parse_common_yaml(read_text(common_yaml, "common.yaml"), str(common_yaml)) if common_yaml else {}
    ksha, notes = to_pillar(inventory, common)
    roster, roster_notes = to_roster(inventory)
    return ksha, roster, notes + roster_notes


def load_pillar_file(path: str | Path) -> Any:
    """Read a pillar SLS/YAML file and return its ``ksha`` value (None when absent)."""
    text = read_text(path, "pillar file")
    if "{%" in text or "{{" in text:
        raise InputError(
            f"pillar file {path}: contains Jinja; the CLI reads plain YAML only. Validate templated "
            "pillar on the master with: salt-run ksha.validate"
        )
    data = parse_common_yaml(text, str(path))
    return data.get("ksha")


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False)


def write_roster(roster: dict, path: str | Path) -> None:
    """Write the roster readable by its owner only: it holds passwords."""
    target = Path(path)
    target.touch(mode=0o600, exist_ok=True)
    target.chmod(0o600)
    header = "# salt-ssh roster written by `ksha import`; it holds ssh passwords: keep it mode 0600.\n"
    target.write_text(header + dump_yaml(roster), encoding="utf-8")
