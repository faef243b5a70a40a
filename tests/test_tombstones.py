"""Many tombstones stay linear: reading and compacting a stack after a mass delete.

Scaling is checked by counting work (record keys decoded by the core), not by timing:
the work for 100k refs must be about ten times the work for 10k refs, and a small
constant times the number of records in the stack.
"""

from __future__ import annotations

import os

import pytest
from support import compiled_only, oid

from reftable.stack import Stack, StackOptions


def build(directory: str, n: int) -> int:
    """Create n refs, delete them all, re-create every tenth. Returns records written."""
    os.makedirs(directory)
    with Stack.open(directory, StackOptions(auto_compact=False)) as st:
        names = [f"refs/heads/topic/{i:07d}" for i in range(n)]
        with st.transaction() as tx:
            for i, name in enumerate(names):
                tx.update(name, oid(i))
        with st.transaction() as tx:
            for name in names:
                tx.delete(name)
        with st.transaction() as tx:
            for i in range(0, n, 10):
                tx.update(names[i], oid(n + i))
    return n + n + n // 10


def work(st, fn) -> int:
    """Record keys decoded by ``fn`` in the tables of ``st`` (a work count, not a time)."""
    tables = list(st.tables)
    before = sum(t._core.keys_read for t in tables)
    fn()
    return sum(t._core.keys_read for t in tables) - before


def measure(tmp_path, n: int) -> dict[str, int]:
    d = str(tmp_path / f"s{n}")
    records = build(d, n)
    out: dict[str, int] = {"records": records}
    with Stack.open(d, StackOptions(auto_compact=False)) as st:
        live = []
        out["iterate"] = work(st, lambda: live.extend(st.refs()))
        assert len(live) == (n + 9) // 10
        assert all(int(r.name.rsplit("/", 1)[1]) % 10 == 0 for r in live)
        out["prefix"] = work(st, lambda: list(st.refs("refs/heads/topic/0000")))
        out["count"] = work(st, lambda: st.merged.count_refs())
        # point lookups of deleted names: each is a seek, not a scan
        deleted = [f"refs/heads/topic/{i:07d}" for i in range(1, n, n // 100 or 1) if i % 10]
        out["lookups"] = work(st, lambda: [st.read_ref(x) for x in deleted]) // len(deleted)
        assert all(st.read_ref(x) is None for x in deleted)
        out["compact"] = work(st, st.compact_all)
        assert len(st.names) == 1
        assert [r.name for r in st.refs()] == [r.name for r in live]
        # after full compaction the tombstones are gone from disk
        assert st.tables[0].count_refs() == len(live)
    return out


# The counts are the compiled core's: the pure twin decodes whole blocks at once (and
# this test builds 100k-ref stacks, slow in pure Python).
@compiled_only
def test_tombstones_scale_linearly(tmp_path):
    small = measure(tmp_path, 10_000)
    big = measure(tmp_path, 100_000)
    for key in ("iterate", "count", "compact"):
        # linear in the number of records, with a small constant ...
        assert big[key] <= 3 * big["records"], (key, big)
        # ... and ten times the input costs about ten times the work
        assert big[key] <= 12 * small[key], (key, small[key], big[key])
    # a prefix that matches 1/100 of the names costs 1/100 of the work, not a scan
    assert big["prefix"] <= big["records"] / 30, big
    # one lookup decodes at most a few restart intervals per table, at any size
    assert big["lookups"] <= 3 * 3 * 16 * 3, big
    assert big["lookups"] <= 2 * small["lookups"] + 16, (small, big)


@pytest.mark.parametrize("n", [1, 2, 1000])
def test_everything_deleted(tmp_path, n):
    d = str(tmp_path / "s")
    os.makedirs(d)
    with Stack.open(d, StackOptions(auto_compact=False)) as st:
        with st.transaction() as tx:
            for i in range(n):
                tx.update(f"refs/heads/b{i}", oid(i))
        with st.transaction() as tx:
            for i in range(n):
                tx.delete(f"refs/heads/b{i}")
        assert list(st.refs()) == []
        assert st.read_ref("refs/heads/b0") is None
        st.compact_all()
        # only tombstones and nothing below them: the compacted table holds no refs
        assert list(st.refs()) == []
        assert all(t.count_refs() == 0 for t in st.tables)
