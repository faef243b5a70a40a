"""Every interleaving of two handles at each step of the compaction protocol.

Handle A compacts (auto, full, or a range in the middle of the stack). At each point
where another process can act (before A starts, after A locked its tables and released
tables.list, after A merged into its temp table, after A committed), handle B does one
operation: append a table, auto-compact, compact everything, compact a range, clean, or
delete refs. For every combination the outcome must be one the protocol allows:

* A either succeeds or fails with LockError / OutdatedError (never anything else);
* B either succeeds or fails with LockError / OutdatedError;
* the stack then reads exactly the model: every ref either handle committed, with the
  newest value; nothing lost, nothing resurrected;
* every listed table opens; after clean() only tables.list and listed tables remain,
  and no lock file is left.
"""

from __future__ import annotations

import itertools
import os

import pytest
from support import oid

from reftable import LockError, OutdatedError
from reftable.stack import Stack, StackOptions

OPTS = StackOptions(auto_compact=False)


class Model:
    def __init__(self) -> None:
        self.refs: dict[str, bytes] = {}
        self.counter = 0

    def update(self, st: Stack, names: list[str]) -> None:
        with st.transaction(reload_if_outdated=True) as tx:
            for n in names:
                self.counter += 1
                tx.update(n, oid(self.counter))
        for n in names:  # only after the commit succeeded
            self.refs[n] = st.read_ref(n).value  # type: ignore[union-attr]

    def delete(self, st: Stack, names: list[str]) -> None:
        with st.transaction(reload_if_outdated=True) as tx:
            for n in names:
                tx.delete(n)
        for n in names:
            self.refs.pop(n, None)


def setup_stack(d: str, model: Model) -> None:
    with Stack.open(d, OPTS) as st:
        # sizes that break the geometric sequence, so auto-compaction has work
        for t in range(6):
            model.update(st, [f"refs/heads/t{t}/r{i}" for i in range(1 + (t % 3) * 5)])
        model.delete(st, ["refs/heads/t0/r0"])


B_OPS = ["append", "auto", "full", "range", "clean", "delete"]
POINTS = ["before", "after_locks", "after_merge", "after_commit"]
A_OPS = ["auto", "full", "range"]


def b_operation(d: str, op: str, model: Model) -> None:
    with Stack.open(d, OPTS) as b:
        try:
            if op == "append":
                model.update(b, ["refs/heads/b/new", "refs/heads/t1/r0"])
            elif op == "auto":
                b.auto_compact()
            elif op == "full":
                b.compact_all()
            elif op == "range":
                if len(b.names) >= 3:
                    b.compact_range(len(b.names) - 3, len(b.names) - 1)
            elif op == "clean":
                b.clean()
            elif op == "delete":
                model.delete(b, ["refs/heads/t2/r0"])
        except (LockError, OutdatedError):
            pass


def a_operation(a: Stack, op: str) -> None:
    if op == "auto":
        a.auto_compact()
    elif op == "full":
        a.compact_all()
    else:
        a.compact_range(1, len(a.names) - 2)


@pytest.mark.parametrize("a_op,point,b_op", list(itertools.product(A_OPS, POINTS, B_OPS)))
def test_interleaving(tmp_path, a_op, point, b_op):
    d = str(tmp_path / "stack")
    os.makedirs(d)
    model = Model()
    setup_stack(d, model)
    a = Stack.open(d, OPTS)
    fired = []

    def hook(stack, first, last, _p=point):
        if not fired:
            fired.append(_p)
            b_operation(d, b_op, model)

    if point == "before":
        b_operation(d, b_op, model)
    elif point == "after_locks":
        a.hooks.after_compaction_locks = hook
    elif point == "after_merge":
        a.hooks.after_compaction_merge = hook
    try:
        a_operation(a, a_op)
    except (LockError, OutdatedError):
        pass
    if point == "after_commit":
        b_operation(d, b_op, model)
    a.close()

    with Stack.open(d, OPTS) as st:
        got = {r.name: r.value for r in st.refs()}
        assert got == model.refs, f"{a_op}/{point}/{b_op}"
        for t in st.tables:
            assert t.count_refs() >= 0  # every listed table opens and decodes
        st.clean()
        listed = set(st.names)
    left = sorted(set(os.listdir(d)) - listed - {"tables.list"})
    assert left == [], f"{a_op}/{point}/{b_op}: {left}"
