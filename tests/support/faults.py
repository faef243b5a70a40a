"""The stacks and scenarios of the fault-injection and crash tests: a small stack of
geometric tables, and an addition, an auto-compaction and a full compaction to run
on a copy of it with faults or crashes injected (``iofaults``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import iofaults

from reftable.stack import Stack, StackOptions
from reftable.transaction import LogEntry

from . import oid

#: The operations of the core's I/O layer that the scenarios exercise.
OPS = ("open", "write", "fsync", "rename", "unlink", "close")
LOG = LogEntry("T Ester", "t@example.com", "test", 1700000000, 0)


def view(directory: str) -> tuple[list, list]:
    """A stack's refs and logs."""
    with Stack.open(directory, StackOptions(auto_compact=False)) as st:
        return list(st.refs()), list(st.logs())


def make_template(directory: str, tables: int) -> None:
    """``tables`` tables of decreasing sizes (a geometric sequence: auto-compaction
    has nothing to do) and one deletion."""
    os.makedirs(directory)
    with Stack.open(directory, StackOptions(auto_compact=False)) as st:
        for t in range(tables):
            with st.transaction(log=LOG) as tx:
                # decreasing sizes keep the sequence geometric until the scenario runs
                for i in range(max(1, 2 ** (tables - t))):
                    tx.update(f"refs/heads/t{t}/b{i}", oid(t * 1000 + i))
            if t == 1:
                with st.transaction(log=LOG) as tx:
                    tx.delete("refs/heads/t0/b0")


def scenario_addition(directory: str) -> None:
    with Stack.open(directory, StackOptions(auto_compact=False)) as st:
        with st.transaction(log=LOG) as tx:
            tx.update("refs/heads/new", oid(99999))
            tx.delete("refs/heads/t1/b0")


def scenario_auto_compaction(directory: str) -> None:
    with Stack.open(directory, StackOptions(auto_compact=True)) as st:
        with st.transaction(log=LOG) as tx:
            for i in range(64):  # big enough to break the geometric sequence
                tx.update(f"refs/heads/big/{i}", oid(50000 + i))


def scenario_full_compaction(directory: str) -> None:
    with Stack.open(directory, StackOptions(auto_compact=False)) as st:
        st.compact_all()


SCENARIOS = {
    "addition": (scenario_addition, 4),
    "auto-compaction": (scenario_auto_compaction, 4),
    "full-compaction": (scenario_full_compaction, 4),
}


def count_calls(template: str, work: str, run: Callable[[str], None]) -> dict[str, int]:
    """The I/O calls per operation of ``run`` on a copy of ``template``."""
    shutil.copytree(template, work)
    iofaults.reset_io_counts()
    run(work)
    counts = dict(iofaults.io_counts())
    shutil.rmtree(work)
    return counts


def prepare(tmp_path: Path, name: str) -> tuple[Any, ...]:
    """A template stack for scenario ``name``, the views before and after running it
    without faults, and its I/O calls per operation."""
    run, ntables = SCENARIOS[name]
    template = str(tmp_path / "template")
    make_template(template, ntables)
    before = view(template)
    ok_dir = str(tmp_path / "ok")
    shutil.copytree(template, ok_dir)
    run(ok_dir)
    after = view(ok_dir)
    counts = count_calls(template, str(tmp_path / "count"), run)
    return run, ntables, template, ok_dir, before, after, counts
