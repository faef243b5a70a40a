"""Several threads reading one table and one stack at once get the right answers.

Lookups reuse per-table iterator state; allocation can run the garbage collector and so
switch threads in the middle of a lookup. A very low GC threshold makes such switches
frequent here.
"""

from __future__ import annotations

import gc
import os
import threading

import pytest
from support import oid

from reftable import MergedTable, RefRecord, RefValueType, Table, write_table_bytes
from reftable.stack import Stack, StackOptions


def _tables(n_tables: int, per: int) -> list[Table]:
    out = []
    for t in range(n_tables):
        recs = [RefRecord(f"refs/heads/t{t}/b{i:05d}", t + 1, RefValueType.VAL1,
                          oid(t * 100_000 + i)) for i in range(per)]
        out.append(Table.from_bytes(write_table_bytes(
            recs, min_update_index=t + 1, max_update_index=t + 1, block_size=1024)))
    return out


def test_concurrent_lookups_and_iteration():
    tables = _tables(4, 3000)
    merged = MergedTable(tables)
    errors: list[str] = []
    start = threading.Barrier(4)

    def worker(k: int) -> None:
        start.wait()
        for rep in range(3):
            for i in range(k, 3000, 7):
                t = (i + rep) % 4
                name = f"refs/heads/t{t}/b{i:05d}"
                rec = tables[t].read_ref(name)
                if rec is None or rec.name != name:
                    errors.append(f"table lookup {name}: {rec!r}")
                rec = merged.read_ref(name)
                if rec is None or rec.value != oid(t * 100_000 + i):
                    errors.append(f"merged lookup {name}: {rec!r}")
                if merged.read_ref(name + "-missing") is not None:
                    errors.append(f"phantom {name}")
            if sum(1 for _ in merged.refs("refs/heads/t1/")) != 3000:
                errors.append("prefix iteration")

    old = gc.get_threshold()
    gc.set_threshold(5, 1, 1)
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
    finally:
        gc.set_threshold(*old)
    assert not errors, errors[:5]


def test_batch_lookups_match_single_lookups(tmp_path):
    """read_refs (searching without the GIL) returns what read_ref returns, tombstones
    and shadowing included, for names in any table, none, or several."""
    d = str(tmp_path / "s")
    os.makedirs(d)
    with Stack.open(d, StackOptions(auto_compact=False)) as st:
        for t in range(4):
            with st.transaction() as tx:
                for i in range(t, 300, 3):
                    tx.update(f"refs/heads/b{i:04d}", oid(1000 * t + i))
                if t == 3:
                    tx.delete("refs/heads/b0000")
        names = [f"refs/heads/b{i:04d}" for i in range(0, 320)] + ["HEAD", "refs/heads/"]
        assert st.read_refs(names) == [st.read_ref(n) for n in names]
        assert st.read_refs([]) == []
        t = st.tables[0]
        assert t.read_refs(names) == [t.read_ref(n) for n in names]


def test_batch_lookups_take_names_of_every_kind():
    """read_refs takes str (searched as UTF-8 without a bytes copy, and handed back as
    the record's name), bytes, bytearray, memoryview, names with surrogate escapes
    (non-UTF-8 bytes) and any iterable; anything else is a TypeError."""
    names = ["refs/heads/caf\u00e9", "refs/heads/main", "refs/heads/x\udcff"]
    ordered = sorted(names, key=lambda n: n.encode("utf-8", "surrogateescape"))
    recs = [RefRecord(ordered[0], 1, RefValueType.VAL2, oid(1), oid(2)),
            RefRecord(ordered[1], 1, RefValueType.VAL1, oid(3)),
            RefRecord(ordered[2], 1, RefValueType.SYMREF, target="refs/heads/main")]
    t = Table.from_bytes(write_table_bytes(recs, min_update_index=1, max_update_index=1))
    merged = MergedTable([t])
    want = {r.name: r for r in recs}
    asked = ["refs/heads/main", b"refs/heads/caf\xc3\xa9", bytearray(b"refs/heads/x\xff"),
             memoryview(b"refs/heads/main"), "refs/heads/x\udcff", "refs/heads/caf\u00e9",
             "refs/heads/absent", b"refs/heads/absent"]
    expect = [want["refs/heads/main"], want["refs/heads/caf\u00e9"],
              want["refs/heads/x\udcff"], want["refs/heads/main"],
              want["refs/heads/x\udcff"], want["refs/heads/caf\u00e9"], None, None]
    for reader in (t, merged):
        assert reader.read_refs(asked) == expect
        assert reader.read_refs(tuple(asked)) == expect
        assert reader.read_refs(n for n in asked) == expect
        got = reader.read_refs(["refs/heads/main"])[0]
        assert got is not None and type(got.name) is str
        with pytest.raises(TypeError):
            reader.read_refs(["refs/heads/main", 7])


def test_batch_lookups_in_threads_while_tables_close(tmp_path):
    """Threads doing batch lookups on one shared stack all get the right answers; a
    table closed meanwhile stays mapped until the lookups using it are done."""
    d = str(tmp_path / "s")
    os.makedirs(d)
    with Stack.open(d, StackOptions(auto_compact=False)) as st:
        for t in range(3):
            with st.transaction() as tx:
                for i in range(t, 3000, 3):
                    tx.update(f"refs/heads/b{i:05d}", oid(i))
        names = [f"refs/heads/b{i:05d}" for i in range(3000)]
        want = [oid(i) for i in range(3000)]
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                barrier.wait()
                for _ in range(5):
                    got = st.read_refs(names)
                    assert [r.value for r in got] == want
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        # closing a table under a pinned lookup: emulate by pinning through a lookup
        # that runs while another thread closes a private handle on the same files
        other = Stack.open(d)
        barrier2 = threading.Barrier(2)
        results: list[object] = []

        def reader() -> None:
            barrier2.wait()
            try:
                results.append(len(other.read_refs(names * 20)))
            except ValueError:
                results.append("closed")  # closed before the lookup started

        th = threading.Thread(target=reader)
        th.start()
        barrier2.wait()
        for t in other.tables:  # Stack.close() leaves tables to their last user
            t.close()
        th.join()
        assert results in ([60000], ["closed"])


@pytest.mark.parametrize("index_objects", [True, False])
def test_refs_for_many_matches_a_scan(tmp_path, index_objects):
    """refs_for_many (searching without the GIL, through the obj index or by scanning)
    finds exactly the refs a full scan finds, values and peeled values alike."""
    refs = []
    for i in range(2000):
        name = f"refs/heads/b{i:05d}"
        if i % 7 == 0:
            refs.append(RefRecord.val2(name, 1, oid(i % 50), oid(1000 + i % 30)))
        elif i % 11 == 0:
            refs.append(RefRecord.deletion(name, 1))
        else:
            refs.append(RefRecord.val1(name, 1, oid(i % 50)))
    t = Table.from_bytes(write_table_bytes(refs, min_update_index=1, max_update_index=1,
                                           block_size=512, index_objects=index_objects))
    assert (t.object_id_len > 0) == index_objects
    wanted = [oid(k) for k in range(50)] + [oid(1000 + k) for k in range(30)] + [oid(99999)]
    got = t.refs_for_many(wanted)
    for w, found in zip(wanted, got, strict=True):
        assert found == [r for r in refs if w in (r.value, r.target_value)]
    newer = Table.from_bytes(write_table_bytes(
        [RefRecord.deletion("refs/heads/b00001", 2), RefRecord.val1("refs/heads/b00002", 2,
                                                                    oid(3))],
        min_update_index=2, max_update_index=2))
    m = MergedTable([t, newer])
    live = list(m.refs())
    for w, found in zip(wanted, m.refs_for_many(wanted), strict=True):
        assert found == [r for r in live if w in (r.value, r.target_value)]
    assert m.refs_for(oid(3)) == [r for r in live if oid(3) in (r.value, r.target_value)]
