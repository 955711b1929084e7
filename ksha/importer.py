"""Import the seed installer's ``hosts.ini`` and ``common.yaml`` into a ``ksha`` pillar.

Connection data (``ansible_host``, ``ansible_ssh_pass``, become settings ...) never
goes into the pillar, which Salt sends to every minion; it goes into a salt-ssh
roster instead (:func:`to_roster`).
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ksha import flags
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
# Host variables that go into the pillar.
HOST_KEYS = ("ip", "access_ip")

# common.yaml keys ksha understands, as (pillar path) tuples.
COMMON_KEYS = {
    "kube_version": ("kubernetes", "version"),  # only a release of the version ksha deploys: to_pillar
    "kube_service_addresses": ("kubernetes", "service_cidr"),
    "kube_pods_subnet": ("kubernetes", "pod_cidr"),
    # kubespray's cluster_name is the DNS domain of services (cluster.local)
    "cluster_name": ("kubernetes", "cluster_domain"),
    "etcd_backup_dir": ("etcd", "backup", "dir"),
    "etcd_backup_period": ("etcd", "backup", "period_minutes"),
    "keep_backup_number": ("etcd", "backup", "keep"),
    "apiserver_loadbalancer_domain_name": ("loadbalancer", "domain"),
    # the installer's Docker settings, for the runtime ksha installs (containerd)
    "docker_registry_mirrors": ("containerd", "registry_mirrors"),
    "docker_insecure_registries": ("containerd", "insecure_registries"),
    "kube_proxy_mode": ("kubernetes", "kube_proxy", "mode"),
    "kube_network_plugin": ("network", "plugin"),
}


class InputError(Exception):
    """The input cannot be read as what it claims to be (exit code 2)."""


class OutputError(InputError):
    """An output path cannot be written (exit code 2, like unreadable input)."""


# Any variable whose name says it holds a secret; its value never appears in a message.
_SECRET_NAME = re.compile(r"pass|secret|token", re.IGNORECASE)
# A secret assignment in echoed text: the value is hidden to the end of the text, since an
# unquoted or unterminated value may run on past the next space.
_SECRET_ASSIGNMENT = re.compile(r"(?<![\w.-])([\w.-]*(?:pass|secret|token)[\w.-]*\s*=).*", re.IGNORECASE | re.DOTALL)
# A section header: [group], [group:children] or [group:vars], then optionally a comment.
_SECTION = re.compile(r"\[\s*([^:\]\s]+)(?::(\w+))?\s*\]\s*(?:[#;].*)?")
# A host line shlex would split on blanks only: no quotes, escapes or comments.
_PLAIN_LINE = re.compile(r"[^'\"\\#\s]+(?:[ \t]+[^'\"\\#\s]+)*")
# Passwords salt-ssh gets (as ``passwd``) from the inventory.
SECRET_VARS = ("ansible_ssh_pass", "ansible_password", *BECOME_PASSWORDS)
# Hosts a note names at most (a 20,000-host inventory gets a line, not a page).
NOTE_NAMES = 10


def is_secret(var: str) -> bool:
    return bool(_SECRET_NAME.search(var))


def mask(text: str) -> str:
    """``text`` with the value of every password-like ``key=value`` in it replaced by ``***``."""
    return _SECRET_ASSIGNMENT.sub(r"\1***", text)


def _shown(var: str, value: Any) -> str:
    return f"{var}=***" if is_secret(var) else f"{var}={value}"


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NOTE_NAMES])
    return f"{shown} and {len(names) - NOTE_NAMES} more" if len(names) > NOTE_NAMES else shown


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


def _value(text: str) -> str:
    """A value as Ansible reads it: a quoted Python string literal is unquoted; anything else is kept."""
    if text[:1] in ("'", '"'):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
        if isinstance(value, str):
            return value
    return text


def _split_host_line(line: str, where: str) -> list[str]:
    if _PLAIN_LINE.fullmatch(line):
        return line.split()  # what shlex returns for such a line, at a fraction of its cost
    try:
        return shlex.split(line, comments=True)
    except ValueError as exc:
        raise InputError(f"{where}: cannot parse {mask(line)!r}: {exc}") from None


def parse_hosts_ini(text: str, source: str = "hosts.ini") -> dict:
    """Parse an Ansible INI inventory, in one pass, as Ansible reads it.

    Returns ``{"hosts": {name: {var: value}}, "order": [names], "groups": {name: [hosts]},
    "children": {name: [groups]}, "group_vars": {group: {var: value}}, "source": source,
    "lines": {name: first line}, "var_lines": {name: {var: line}}, "group_var_lines": {group: {var: line}},
    "children_lines": {group: line of its first [group:children]}}``.
    Raises InputError on anything that is not such a file, and on a variable given two
    different values (Ansible would keep the last silently). No message shows a secret.
    """
    hosts: dict[str, dict[str, str]] = {}
    lines: dict[str, int] = {}
    var_lines: dict[str, dict[str, int]] = {}
    groups: dict[str, dict[str, None]] = {}  # insertion-ordered sets: membership tests in O(1)
    children: dict[str, dict[str, None]] = {}
    children_lines: dict[str, int] = {}
    group_vars: dict[str, dict[str, str]] = {}
    group_var_lines: dict[str, dict[str, int]] = {}
    section, kind = None, None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        where = f"{source}:{lineno}"
        if line[0] == "[":
            match = _SECTION.fullmatch(line)
            if not match:
                raise InputError(
                    f"{where}: malformed section header {mask(line)!r} "
                    "(expected [group], [group:children] or [group:vars], then optionally a # or ; comment)"
                )
            section, kind = match.group(1), match.group(2) or ""
            if kind not in ("", "children", "vars"):
                raise InputError(f"{where}: unknown section type {kind!r} in [{section}:{kind}]")
            if kind == "children":
                children.setdefault(section, {})
                children_lines.setdefault(section, lineno)
            elif kind == "vars":
                group_vars.setdefault(section, {})
                group_var_lines.setdefault(section, {})
            else:
                groups.setdefault(section, {})
            continue
        if section is None:
            raise InputError(f"{where}: {mask(line)!r} is outside any [section]; this is not an INI inventory")
        if kind == "vars":
            # Ansible: the key is what is left of the first '=', the value all that is right of it.
            var, sep, value = (part.strip() for part in line.partition("="))
            if not sep or not var:
                shown = "an empty name" if sep else repr(mask(line))
                raise InputError(f"{where}: expected name=value in [{section}:vars], got {shown}")
            _assign(
                group_vars[section],
                group_var_lines[section],
                var,
                _value(value),
                lineno,
                f"{where}: [{section}:vars] gives",
            )
            continue
        tokens = _split_host_line(line, where)
        if kind == "children":
            if len(tokens) != 1:
                raise InputError(f"{where}: a [{section}:children] line names one group, got {mask(line)!r}")
            children[section][tokens[0]] = None
            continue
        name = tokens[0]
        if "=" in name:
            raise InputError(f"{where}: expected a host name first, got {mask(name)!r}")
        if name not in hosts:
            hosts[name], var_lines[name], lines[name] = {}, {}, lineno
        variables, where_vars = hosts[name], var_lines[name]
        previous = ""
        for assignment in tokens[1:]:
            var, sep, value = assignment.partition("=")
            if sep and not var:
                raise InputError(f"{where}: expected key=value after the host name, got a value with no name")
            if not sep:
                if is_secret(previous.partition("=")[0]):
                    raise InputError(
                        f"{where}: expected key=value after the host name, got a word after "
                        f"{previous.partition('=')[0]}=; if the value has a space, quote it"
                    )
                raise InputError(f"{where}: expected key=value after the host name, got {mask(assignment)!r}")
            _assign(variables, where_vars, var, _value(value), lineno, f"{where}: host {name!r} is given")
            previous = assignment
        groups[section][name] = None
    if not hosts:
        raise InputError(f"{source}: defines no hosts; this is not an INI inventory")
    return {
        "hosts": hosts,
        "order": list(hosts),
        "groups": {group: list(members) for group, members in groups.items()},
        "children": {group: list(members) for group, members in children.items()},
        "group_vars": group_vars,
        "source": source,
        "lines": lines,
        "var_lines": var_lines,
        "group_var_lines": group_var_lines,
        "children_lines": children_lines,
    }


def _assign(variables: dict, where_vars: dict, var: str, value: str, lineno: int, context: str) -> None:
    """Set a variable; a second, different value for it is an error naming both lines."""
    if var in variables and variables[var] != value:
        raise InputError(
            f"{context} {_shown(var, value)} here but {_shown(var, variables[var])} on line {where_vars[var]}; "
            "give it one value"
        )
    variables[var] = value
    where_vars.setdefault(var, lineno)


def _group_order(inventory: dict) -> list[str]:
    """Groups with vars, in Ansible's precedence (lowest first): all, then by depth and name."""
    parents: dict[str, list[str]] = {}
    for parent, kids in inventory["children"].items():
        for kid in kids:
            parents.setdefault(kid, []).append(parent)
    depths: dict[str, int] = {"all": 0}

    def depth(group: str, seen: frozenset = frozenset()) -> int:
        if group not in depths:
            ups = [p for p in parents.get(group, []) if p not in seen and p != "all"]
            depths[group] = 1 + max((depth(p, seen | {group}) for p in ups), default=0)
        return depths[group]

    return sorted(inventory["group_vars"], key=lambda g: (depth(g), g))


def _members(inventory: dict, group: str) -> set[str]:
    """The hosts of a group, through its [group:children] too."""
    found: set[str] = set()
    pending, seen = [group], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        found.update(inventory["groups"].get(current, ()))
        pending.extend(inventory["children"].get(current, ()))
    return found


def host_variables(inventory: dict) -> dict[str, dict[str, tuple[Any, int]]]:
    """Each host's variables as Ansible sees them, with the line each comes from.

    Group vars apply to a group's hosts ([all:vars] to every host), a deeper group's over a
    shallower one's, and the host's own variables over all of them.
    """
    layers = []
    for group in _group_order(inventory):
        values, where = inventory["group_vars"][group], inventory["group_var_lines"][group]
        if values:
            hosts = None if group == "all" else _members(inventory, group)
            layers.append((hosts, {var: (value, where[var]) for var, value in values.items()}))
    result = {}
    for name in inventory["order"]:
        merged: dict[str, tuple[Any, int]] = {}
        for hosts, layer in layers:
            if hosts is None or name in hosts:
                merged.update(layer)
        where = inventory["var_lines"][name]
        merged.update((var, (value, where[var])) for var, value in inventory["hosts"][name].items())
        result[name] = merged
    return result


def parse_common_yaml(text: str, source: str = "common.yaml") -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{where}: is not valid YAML: {mask(problem)}") from None
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
    source = inventory.get("source", "hosts.ini")
    effective = host_variables(inventory)
    hosts = []
    for name in inventory["order"]:
        variables = effective[name]
        entry: dict[str, Any] = {"name": name}
        ip = _first(variables, ("ip",))
        if ip is None:
            ip = _first(variables, ("ansible_host", "ansible_ssh_host"))
            if ip is not None:
                var = "ansible_host" if "ansible_host" in variables else "ansible_ssh_host"
                notes.append(
                    f"{source}:{variables[var][1]}: host {name}: no ip=, so {var} {ip} is taken as its cluster address"
                )
        if ip is not None:
            entry["ip"] = ip
        access_ip = _first(variables, ("access_ip",))
        if access_ip and access_ip != ip:
            entry["addresses"] = [access_ip]
        hosts.append(entry)
        own = inventory["var_lines"][name]
        ignored = sorted(v for v in own if v not in CONNECTION_VARS and v not in HOST_KEYS)
        if ignored:
            line = min(own[v] for v in ignored)
            notes.append(f"{source}:{line}: host {name}: variables not imported: {', '.join(ignored)}")
    for group in _group_order(inventory):
        where = inventory["group_var_lines"][group]
        ignored = sorted(v for v in where if v not in CONNECTION_VARS and v not in HOST_KEYS)
        if ignored:
            line = min(where[v] for v in ignored)
            notes.append(f"{source}:{line}: [{group}:vars]: variables not imported: {', '.join(ignored)}")

    groups: dict[str, list[str]] = {g: [] for g in KNOWN_GROUPS}
    for group, members in inventory["groups"].items():
        if group in ("all", *DERIVED_GROUPS):
            continue
        groups[group] = list(members)
    for group in inventory["children"]:
        if group not in DERIVED_GROUPS:
            line = inventory.get("children_lines", {}).get(group)
            where = f"{source}:{line}: " if line else ""
            notes.append(f"{where}group [{group}:children]: nested groups are not imported")

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
        if key == "kube_version" and key in common and not _deployable(common[key]):
            notes.append(
                f"common.yaml: kube_version {common[key]} not imported: this ksha deploys Kubernetes "
                f"{flags.version()} (ksha:kubernetes:version has its default)"
            )
        elif key in common:
            _set_path(ksha, path, common[key])
    unused = sorted(k for k in common if k not in COMMON_KEYS and k != "loadbalancer_apiserver")
    if unused:
        notes.append(f"common.yaml: settings not imported: {', '.join(unused)}")
    return ksha, notes


def _deployable(version: Any) -> bool:
    """A release of the Kubernetes minor version ksha deploys (e.g. the seed's v1.16.7 is not)."""
    return isinstance(version, str) and version.lstrip("v").startswith(flags.version() + ".")


def _first(variables: dict[str, tuple[Any, int]], names: tuple[str, ...]) -> Any:
    return next((variables[n][0] for n in names if n in variables), None)


def to_roster(inventory: dict) -> tuple[dict, list[str]]:
    """A salt-ssh roster with each host's connection data (group vars included); also return notes.

    A note about a value from a ``[group:vars]`` line is made once for that line, naming the hosts.
    """
    roster: dict[str, dict] = {}
    found: dict[tuple[int, str], list[str]] = {}  # (line, problem): hosts
    source = inventory.get("source", "hosts.ini")
    for name, located in host_variables(inventory).items():
        variables = {var: value for var, (value, _) in located.items()}
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
                port_var = next(v for v in ROSTER_KEYS if ROSTER_KEYS[v] == "port" and v in located)
                problem = f"port {entry['port']!r} is not a number; kept as written"
                found.setdefault((located[port_var][1], problem), []).append(name)
        if any(str(variables.get(flag, "")).lower() in ("true", "yes", "1") for flag in BECOME_FLAGS):
            entry["sudo"] = True
        become_var = next((v for v in BECOME_PASSWORDS if v in variables), None)
        if become_var is not None:
            if "passwd" not in entry:
                entry["passwd"] = variables[become_var]
            elif entry["passwd"] != variables[become_var]:
                problem = "salt-ssh uses one password for ssh and sudo; the become password was not kept"
                found.setdefault((located[become_var][1], problem), []).append(name)
        roster[name] = entry
    notes = [
        f"{source}:{line}: {'host' if len(names) == 1 else 'hosts'} {_names(names)}: {problem}"
        for (line, problem), names in sorted(found.items())
    ]
    return roster, notes


def unwritten_secrets_note(inventory: dict) -> str | None:
    """The note for an import whose roster is not written: which hosts' passwords went nowhere."""
    found: list[tuple[str, int]] = []
    for name, located in host_variables(inventory).items():
        lines = [located[v][1] for v in SECRET_VARS if v in located]
        if lines:
            found.append((name, min(lines)))
    if not found:
        return None
    line = min(where for _, where in found)
    return (
        f"{inventory.get('source', 'hosts.ini')}:{line}: ssh/become passwords of {len(found)} host(s) "
        f"({_names([name for name, _ in found])}) were not written anywhere (the pillar never holds them); "
        "to keep them in a salt-ssh roster, add --roster-out FILE"
    )


def import_files(
    hosts_ini: str | Path, common_yaml: str | Path | None = None, *, roster_kept: bool = True
) -> tuple[dict, dict, list[str]]:
    """Read and import the seed's files: (ksha pillar value, roster, notes).

    ``roster_kept=False`` (the roster is not written anywhere) adds a note naming the hosts
    whose passwords are therefore lost.
    """
    inventory = parse_hosts_ini(read_text(hosts_ini, "hosts.ini"), str(hosts_ini))
    common = parse_common_yaml(read_text(common_yaml, "common.yaml"), str(common_yaml)) if common_yaml else {}
    ksha, notes = to_pillar(inventory, common)
    roster, roster_notes = to_roster(inventory)
    notes += roster_notes
    if not roster_kept:
        note = unwritten_secrets_note(inventory)
        if note:
            notes.append(note)
    return ksha, roster, notes


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


# libyaml's emitter when PyYAML has it: the same text, several times faster for big inventories.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_DUMPER, default_flow_style=False, sort_keys=False)


def check_output_path(path: str | Path, what: str, inputs: list[str | Path] | tuple = ()) -> None:
    """Refuse, before anything is written, a path a file cannot be written to (OutputError, exit 2)."""
    if str(path) == "":
        raise OutputError(f"{what} '': is empty; give a file name")
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{what} {path}: is a directory; give a file name")
    real = Path(os.path.realpath(target))
    directory = real.parent
    if not directory.exists():
        raise OutputError(f"{what} {path}: directory {target.parent} does not exist")
    if not directory.is_dir():
        raise OutputError(f"{what} {path}: {target.parent} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: directory {target.parent} is not writable")
    if real.exists():
        if not real.is_file():
            raise OutputError(f"{what} {path}: exists and is not a regular file")
        for source in inputs:
            if source and Path(source).exists() and os.path.samefile(real, source):
                raise OutputError(f"{what} {path}: is also an input file; it would be overwritten")


def write_roster(roster: dict, path: str | Path) -> None:
    """Write the roster readable by its owner only (it holds passwords), all at once: a new
    file in the same directory, mode 0600 from the start, renamed over the old one."""
    header = "# salt-ssh roster written by `ksha import`; it holds ssh passwords: keep it mode 0600.\n"
    real = Path(os.path.realpath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", dir=real.parent)  # mode 0600
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(header + dump_yaml(roster))
        os.replace(tmp, real)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise OutputError(f"roster {path}: cannot write: {exc.strerror or exc}") from None
