"""Git's fixtures, made by Git 2.55 with reftable support: stacks with the
``expected.json`` Git showed for them, and whole repositories (their README.md
documents every key).

Both are found relative to the repository root: ``../shared/fixtures/{git,repos}``
beside the clone, else the copies in ``tests/data/{git,repos}`` that the sdist ships.
Where neither exists, the lists of scenarios are empty, and a test (or a test module,
at import) that asks for a fixture by name is skipped.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Any, NoReturn, Optional

import pytest

#: The repository (or unpacked sdist) root.
ROOT = Path(__file__).resolve().parents[2]


def _root(kind: str) -> Optional[Path]:
    for d in (ROOT.parent / "shared" / "fixtures" / kind, ROOT / "tests" / "data" / kind):
        if d.is_dir() and any((p / "expected.json").is_file() for p in d.iterdir()):
            return d
    return None


#: Git's stacks (``<scenario>/reftable/`` and ``<scenario>/expected.json``), or None.
GIT_FIXTURES = _root("git")
#: Git's repositories (``<scenario>/repo.tar`` and ``<scenario>/expected.json``), or None.
REPO_FIXTURES = _root("repos")


def _missing(what: str) -> NoReturn:
    pytest.skip(f"Git's fixture {what} not found (../shared/fixtures, tests/data)",
                allow_module_level=True)


def _scenarios(root: Optional[Path]) -> list[str]:
    if root is None:
        return []
    return sorted(p.name for p in root.iterdir() if (p / "expected.json").is_file())


# -- stacks -------------------------------------------------------------------------------

#: Every stack scenario by name.
SCENARIOS = _scenarios(GIT_FIXTURES)


def scenario_dir(scenario: str) -> Path:
    if GIT_FIXTURES is None:
        _missing("stacks")
    return GIT_FIXTURES / scenario


@functools.cache
def load_expected(scenario: str) -> dict[str, Any]:
    with open(scenario_dir(scenario) / "expected.json", encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def stack_dir(scenario: str) -> Path:
    """The scenario's ``reftable/`` directory (read-only: copy it to write)."""
    return scenario_dir(scenario) / "reftable"


def table_path(scenario: str, index: int) -> Path:
    return stack_dir(scenario) / load_expected(scenario)["tables"][index]["file"]


def table_cases() -> list[tuple[str, int]]:
    """(scenario, table index) for every table of every scenario."""
    return [(s, i) for s in SCENARIOS for i in range(len(load_expected(s)["tables"]))]


def case_id(case: tuple[str, int]) -> str:
    return f"{case[0]}-t{case[1]}"


def copy_fixture(scenario: str, dst: Path) -> Path:
    """Copy a scenario's ``reftable/`` directory to ``dst`` and make it writable
    (the originals are read-only and must never be modified)."""
    shutil.copytree(stack_dir(scenario), dst)
    os.chmod(dst, 0o755)
    for p in dst.iterdir():
        os.chmod(p, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    return dst


# -- repositories -------------------------------------------------------------------------

#: Every repository scenario by name.
REPO_SCENARIOS = _scenarios(REPO_FIXTURES)


@functools.cache
def load_repo_expected(scenario: str) -> dict[str, Any]:
    if REPO_FIXTURES is None:
        _missing("repositories")
    with open(REPO_FIXTURES / scenario / "expected.json", encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def extract_repo(scenario: str, dest: Path, prefix: Optional[str] = None) -> Path:
    """Extract the scenario's ``repo.tar`` (only members under ``prefix``/ when given)
    into ``dest``, keeping modes (Python's default filters drop setgid bits)."""
    if REPO_FIXTURES is None:
        _missing("repositories")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(REPO_FIXTURES / scenario / "repo.tar") as t:
        members = [m for m in t.getmembers()
                   if prefix is None or m.name == prefix or m.name.startswith(prefix + "/")]
        t.extractall(dest, members=members, filter="fully_trusted")
    return dest
