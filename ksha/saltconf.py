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


# Salt 3008.4 leaves objects of its own to the garbage collector, which then logs a
# "[WARNING ] unclosed ... call ``destroy()``" line for each: the orchestrate runner one MasterEvent
# per salt.state/salt.function step (salt.utils.event), and every salt-run its Runner (salt.runner)
# and MasterMinions (salt.minion). ksha's own code closes what it opens (ksha.runner, not
# saltutil.runner). The master config of the lab and the README's quiet exactly these loggers, which
# hides their other warnings too (the --async notice of salt-run, a failed event publish); the
# functional tests keep them, to catch a leak of ksha's own.
QUIET_SALT_LOGGERS = {"salt.utils.event": "error", "salt.runner": "error", "salt.minion": "error"}
