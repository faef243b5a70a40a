"""Git repository fixtures (``tests/data/repos``, see its README.md): made by Git 2.55
with reftable support; ``expected.json`` is what that Git showed."""

from __future__ import annotations

import json
import tarfile
from functools import cache
from pathlib import Path
from typing import Any, Optional

REPOS = Path(__file__).resolve().parent / "data" / "repos"


@cache
def load_repo_expected(scenario: str) -> dict[str, Any]:
    with open(REPOS / scenario / "expected.json", encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def extract_repo(scenario: str, dest: Path, prefix: Optional[str] = None) -> Path:
    """Extract the scenario's ``repo.tar`` (only members under ``prefix``/ when given)
    into ``dest``, keeping modes (Python's default filters drop setgid bits)."""
    with tarfile.open(REPOS / scenario / "repo.tar") as t:
        members = [m for m in t.getmembers()
                   if prefix is None or m.name == prefix or m.name.startswith(prefix + "/")]
        t.extractall(dest, members=members, filter="fully_trusted")
    return dest
