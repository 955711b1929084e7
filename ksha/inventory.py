"""The ksha inventory: defaults, merging and the one validator.

Every consumer (the orchestration's preflight state, ``salt-run ksha.validate``
and the ``ksha`` CLI) calls :func:`validate` on the ``ksha`` pillar dict; none
of them checks anything on its own.

A finding names the pillar key it is about in Salt's colon notation, so
``ksha:hosts:1:ip`` is what ``salt '*' pillar.get ksha:hosts:1:ip`` shows.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ksha import checks
from ksha.checks.base import (
    ETCD_SOURCES,
    EXTERNAL_CHECKS,
    HOST_KEYS,
    KNOWN_GROUPS,
    LB_MODES,
    TOP_KEYS,
    Finding,
    Report,
    is_dns_name,
    is_int_in,
    is_port,
    is_rfc1123_label,
    parse_ip,
)

__all__ = [
    "DEFAULTS_FILE",
    "ETCD_SOURCES",
    "EXTERNAL_CHECKS",
    "HOST_KEYS",
    "KNOWN_GROUPS",
    "LB_MODES",
    "TOP_KEYS",
    "Finding",
    "has_errors",
    "host_names",
    "is_dns_name",
    "is_int_in",
    "is_port",
    "is_rfc1123_label",
    "load_defaults",
    "merge",
    "parse_ip",
    "summary",
    "validate",
]

# salt/ksha/defaults.yaml, the formula's: ksha/formula/ links to it, so a checkout and an
# installed wheel (which holds a copy) read the same file.
DEFAULTS_FILE = Path(__file__).resolve().parent / "formula" / "defaults.yaml"


# (inode, mtime, ctime, size) of defaults.yaml -> its parsed content: the master's ext_pillar
# reads the defaults for every pillar compile (each state run, each x509 state's file check),
# and parsing the YAML was most of a compile's time. An edited or replaced file is read again.
_DEFAULTS_CACHE: dict[tuple[int, int, int, int], dict] = {}


def load_defaults() -> dict:
    """The formula's defaults.yaml: the same file map.jinja imports (a copy the caller may change)."""
    stat = DEFAULTS_FILE.stat()
    key = (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
    parsed = _DEFAULTS_CACHE.get(key)
    if parsed is None:
        with DEFAULTS_FILE.open(encoding="utf-8") as fh:
            parsed = yaml.safe_load(fh)
        _DEFAULTS_CACHE.clear()
        _DEFAULTS_CACHE[key] = parsed
    return copy.deepcopy(parsed)


def merge(base: Any, over: Any) -> Any:
    """Recursive dict merge where `over` wins and lists are replaced.

    The same strategy as map.jinja's ``slsutil.merge(..., strategy='recurse')``.
    """
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base.get(key), value) if key in base else value
        return out
    return over


def host_names(ksha: dict) -> list[str]:
    return [h["name"] for h in ksha.get("hosts") or [] if isinstance(h, dict) and isinstance(h.get("name"), str)]


def validate(pillar_ksha: Any, defaults: dict | None = None) -> list[Finding]:
    """Check the ``ksha`` pillar value; return every problem found, errors first.

    `pillar_ksha` is the value under the ``ksha`` key (not the whole pillar).
    The defaults are merged first, so a missing optional key is never an error.
    The checks are the sections of :mod:`ksha.checks`, run in order.
    """
    report = Report()
    if pillar_ksha is None:
        report.error("ksha", "the pillar has no 'ksha' key; see pillar/ksha.sls.example")
        return report.findings
    if not isinstance(pillar_ksha, dict):
        report.error("ksha", f"must be a mapping, got {type(pillar_ksha).__name__}")
        return report.findings
    defaults = defaults if defaults is not None else load_defaults()
    return checks.run(pillar_ksha, merge(defaults, pillar_ksha), defaults)


def has_errors(findings: list[Finding]) -> bool:
    return any(f.level == "ERROR" for f in findings)


def summary(findings: list[Finding]) -> str:
    errors = sum(f.level == "ERROR" for f in findings)
    warnings = len(findings) - errors
    verdict = "invalid" if errors else "valid"
    return f"inventory {verdict}: {errors} error(s), {warnings} warning(s)"
