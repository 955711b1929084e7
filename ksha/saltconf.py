"""The Salt master settings ksha needs, shared by the lab and the functional tests.

``salt/`` is the one file root: it holds the formula (``salt/ksha``), ``top.sls``,
the orchestration (``salt/orch``) and the custom modules (``salt/_modules``,
``_states``, ``_runners``, ``_pillar``). Nothing else of the checkout (a
virtualenv, git data, tests) is under it, so the master never walks them.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def file_roots(repo: Path = REPO) -> dict:
    return {"base": [str(repo / "salt")]}
