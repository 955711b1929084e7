"""Salt master settings a ksha checkout needs when it is a file root.

The checkout root is a file root (for ``orch/`` and ``_modules/`` ...), so the
master must not serve or walk the virtualenv, git data, tests or lab state.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FILE_IGNORE_REGEX = [
    r"/\.venv($|/)",
    r"/\.git($|/)",
    r"/\.lab($|/)",
    r"/tests($|/)",
    r"/bench($|/)",
    r"/docs($|/)",
    r"/__pycache__($|/)",
    r"\.egg-info($|/)",
]


def file_roots(repo: Path = REPO) -> dict:
    return {"base": [str(repo), str(repo / "salt")]}
