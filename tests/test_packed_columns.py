"""``ref_columns_packed``: the columns of ``ref_columns`` with the names as one ``bytes``
and their end offsets. It must hold exactly what ``ref_columns`` (and the record
iterators) hold, for one table and merged, on both cores."""

from __future__ import annotations

from itertools import accumulate

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import branch_refs, oid, random_merged_tables, simple_log, write
from support.fixtures import SCENARIOS, case_id, stack_dir, table_cases, table_path
from support.oracle import BLOCK_REF

from reftable import MergedTable, RefRecord, RefValueType, Table
from reftable.stack import read_tables_list
from reftable.table import PackedRefColumns, RefColumns

PREFIXES = ("", "refs/", "refs/heads/", "refs/tags/", "HEAD", "refs/zz")


def assert_same(packed: PackedRefColumns, cols: RefColumns) -> None:
    """Every column and helper of ``packed`` agrees with ``cols``."""
    n = len(cols.names)
    assert len(packed) == n
    assert packed.names() == cols.names
    assert [packed.name(i) for i in range(n)] == cols.names
    raw = [name.encode("utf-8", "surrogateescape") for name in cols.names]
    assert [packed.name_bytes(i) for i in range(n)] == raw
    assert packed.names_data == b"".join(raw)
    assert packed.name_ends.format == "Q" and packed.update_indexes.format == "Q"
    assert packed.name_ends.tolist() == list(accumulate(map(len, raw)))
    assert packed.value_types == cols.value_types
    assert packed.update_indexes.tolist() == cols.update_indexes.tolist()
    assert packed.values == cols.values
    assert packed.peeled == cols.peeled and packed.targets == cols.targets
    assert [packed.value(i) for i in range(n)] == [cols.value(i) for i in range(n)]


def assert_records(packed: PackedRefColumns, refs: list[RefRecord]) -> None:
    """``packed`` holds ``refs``, in order."""
    assert packed.names() == [r.name for r in refs]
    assert list(packed.value_types) == [r.value_type for r in refs]
    assert packed.update_indexes.tolist() == [r.update_index for r in refs]
    assert [packed.value(i) for i in range(len(refs))] == [r.value for r in refs]
    assert packed.peeled == {i: r.target_value for i, r in enumerate(refs)
                             if r.target_value is not None}
    assert packed.targets == {i: r.target for i, r in enumerate(refs) if r.target is not None}


def table_of(refs: list[RefRecord], **opts) -> Table:
    uis = [r.update_index for r in refs] or [1]
    return Table.from_bytes(write(refs, min_ui=min(uis), max_ui=max(uis), **opts))


# -- Git's tables -------------------------------------------------------------------------


@pytest.mark.parametrize("case", table_cases(), ids=case_id)
def test_packed_equals_columns_for_git_tables(case):
    with Table.open(table_path(*case)) as t:
        for prefix in PREFIXES:
            assert_same(t.ref_columns_packed(prefix), t.ref_columns(prefix))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_packed_equals_columns_for_git_stacks(scenario):
    d = stack_dir(scenario)
    tables = [Table.open(d / name) for name in read_tables_list(str(d))]
    try:
        for suppress in (True, False):
            m = MergedTable(tables, suppress_deletions=suppress)
            for prefix in PREFIXES:
                packed = m.ref_columns_packed(prefix)
                assert_same(packed, m.ref_columns(prefix))
                assert_records(packed, list(m.refs(prefix)))
    finally:
        for t in tables:
            t.close()


# -- made here ----------------------------------------------------------------------------


def test_symrefs_peeled_and_deletions():
    refs = [RefRecord.symref("HEAD", 1, "refs/heads/a"), RefRecord.val1("refs/heads/a", 1, oid(1)),
            RefRecord.val2("refs/tags/t", 2, oid(2), oid(3)), RefRecord.deletion("refs/x", 2)]
    t = table_of(refs)
    packed = t.ref_columns_packed()
    assert packed.names_data == b"HEADrefs/heads/arefs/tags/trefs/x"
    assert packed.name_ends.tolist() == [4, 16, 27, 33]
    assert list(packed.value_types) == [RefValueType.SYMREF, RefValueType.VAL1,
                                        RefValueType.VAL2, RefValueType.DELETION]
    assert packed.values == bytes(20) + oid(1) + oid(2) + bytes(20)
    assert packed.peeled == {2: oid(3)} and packed.targets == {0: "refs/heads/a"}
    assert packed.value(0) is None and packed.value(2) == oid(2) and packed.value(-1) is None
    assert packed.name(-1) == "refs/x" and packed.name_bytes(-4) == b"HEAD"
    for bad in (4, -5):
        with pytest.raises(IndexError):
            packed.name(bad)
        with pytest.raises(IndexError):
            packed.value(bad)
    assert_records(packed, refs)
    assert_records(t.ref_columns_packed("refs/tags/"), refs[2:3])
    assert_same(packed, t.ref_columns())


def test_packed_columns_are_immutable_values():
    t = table_of([RefRecord.val1("refs/heads/a", 1, oid(1))])
    packed = t.ref_columns_packed()
    with pytest.raises(AttributeError):
        packed.names_data = b""
    with pytest.raises(AttributeError):
        del packed.values
    assert packed == t.ref_columns_packed() != MergedTable([]).ref_columns_packed()
    assert repr(packed) == "<PackedRefColumns of 1 refs, 12 name bytes>"


def test_names_that_are_not_utf8_decode_as_everywhere_else():
    """A name's bytes are kept as stored; ``name`` decodes them as ``ref_columns`` does
    (undecodable bytes as surrogate escapes)."""
    raw = sorted([b"refs/heads/caf\xe9", b"refs/heads/\xff\xfe", b"refs/heads/\xc3\xa9t\xc3\xa9",
                  b"refs/heads/\xed\xa0\x80", b"refs/heads/plain"])
    names = [r.decode("utf-8", "surrogateescape") for r in raw]
    t = table_of([RefRecord.val1(n, 1, oid(i)) for i, n in enumerate(names)])
    for packed in (t.ref_columns_packed(), MergedTable([t]).ref_columns_packed()):
        assert packed.names_data == b"".join(raw)
        assert [packed.name_bytes(i) for i in range(len(raw))] == raw
        assert packed.names() == names == [r.name for r in t.refs()]
        assert_same(packed, t.ref_columns())
    assert t.ref_columns_packed(b"refs/heads/caf\xe9").names() == ["refs/heads/caf\udce9"]
    assert t.ref_columns_packed("refs/heads/\u00e9").names() == ["refs/heads/\u00e9t\u00e9"]


def test_sha256():
    refs = [RefRecord.val1(f"refs/heads/{i:04d}", 1, oid(i, "sha256")) for i in range(300)]
    refs.append(RefRecord.val2("refs/tags/v1", 1, oid(7, "sha256"), oid(8, "sha256")))
    t = table_of(refs, hash="sha256")
    packed = t.ref_columns_packed()
    assert len(packed.values) == 32 * len(refs) and packed.value(5) == oid(5, "sha256")
    assert packed.peeled == {300: oid(8, "sha256")}
    assert_records(packed, refs)
    assert_same(packed, t.ref_columns())
    # (both classes share value(): negative positions count from the end)
    assert packed.value(-1) == t.ref_columns().value(-1) == oid(7, "sha256")
    assert_same(MergedTable([t]).ref_columns_packed("refs/tags/"),
                MergedTable([t]).ref_columns("refs/tags/"))


def test_empty():
    logs_only = Table.from_bytes(write(logs=[simple_log("refs/heads/a", 1)]))
    a = table_of([RefRecord.val1("refs/heads/a", 1, oid(1))])
    gone = table_of([RefRecord.deletion("refs/heads/a", 2)])
    for packed in (logs_only.ref_columns_packed(), a.ref_columns_packed("refs/tags/"),
                   MergedTable([]).ref_columns_packed(),
                   MergedTable([logs_only]).ref_columns_packed(),
                   MergedTable([a, gone]).ref_columns_packed()):
        assert len(packed) == 0 and packed.names() == [] and packed.names_data == b""
        assert packed.name_ends.tolist() == [] and packed.update_indexes.tolist() == []
        assert packed.values == packed.value_types == b""
        assert packed.peeled == {} and packed.targets == {}
        with pytest.raises(IndexError):
            packed.name(0)


@pytest.mark.parametrize("kind", ["tiny", "long", "batches"])
def test_whatever_the_record_sizes(kind):
    """The output is sized from the table's bytes: more refs than expected (tiny
    records), names far longer than their prefix-compressed records (grown as it goes),
    and many batches with symrefs and peeled ids at positions across them."""
    if kind == "tiny":
        refs = [RefRecord.deletion(f"{i:04x}", 1) for i in range(5000)]
    elif kind == "long":
        refs = [RefRecord.val1(f"refs/heads/{'n' * 900}{i:05d}", 1, oid(i)) for i in range(3000)]
    else:
        refs = [RefRecord.symref(f"refs/heads/{i:05d}", 1, f"refs/heads/{i + 1:05d}")
                if i % 97 == 0 else RefRecord.val2(f"refs/heads/{i:05d}", 1, oid(i), oid(i + 1))
                if i % 89 == 0 else RefRecord.val1(f"refs/heads/{i:05d}", 1, oid(i))
                for i in range(2500)]
    t = table_of(refs, block_size=1024)
    assert_records(t.ref_columns_packed(), refs)
    assert_records(MergedTable([t], suppress_deletions=False).ref_columns_packed(), refs)
    assert_same(t.ref_columns_packed("refs/heads/01"), t.ref_columns("refs/heads/01"))


def test_a_key_already_read_comes_first():
    refs = [RefRecord.val1(f"refs/heads/{i:04d}", 1, oid(i)) for i in range(1500)]
    t = table_of(refs, block_size=256)
    it = t._core.iter_section(BLOCK_REF)
    assert it.next_key() == b"refs/heads/0000"
    data, ends, *rest = it.ref_columns(True)
    assert data == b"".join(r.name.encode() for r in refs)
    assert rest == list(t._core.iter_section(BLOCK_REF).ref_columns()[1:])


@pytest.mark.parametrize("seed", range(3))
def test_merged_shadowing_deletions_and_prefixes(seed):
    tables = random_merged_tables(seed)
    for suppress in (True, False):
        m = MergedTable(tables, suppress_deletions=suppress)
        for prefix in ("", "refs/heads/", "refs/tags/1", "refs/zz"):
            packed = m.ref_columns_packed(prefix)
            assert_records(packed, list(m.refs(prefix)))
            assert_same(packed, m.ref_columns(prefix))


# -- property -----------------------------------------------------------------------------

_NAME = st.lists(st.sampled_from(["refs/", "heads/", "tags/", "a", "\u00e9", "\udcff", "\U0001f600",
                                  "z"]), min_size=1, max_size=6).map("".join)


@st.composite
def _ref(draw, name: str, ui: int, hash: str) -> RefRecord:
    kind = draw(st.sampled_from(RefValueType))
    i = draw(st.integers(0, 50))
    if kind == RefValueType.DELETION:
        return RefRecord.deletion(name, ui)
    if kind == RefValueType.VAL1:
        return RefRecord.val1(name, ui, oid(i, hash))
    if kind == RefValueType.VAL2:
        return RefRecord.val2(name, ui, oid(i, hash), oid(i + 1, hash))
    return RefRecord.symref(name, ui, draw(_NAME))


@st.composite
def _stack(draw) -> tuple[list[list[RefRecord]], str]:
    hash = draw(st.sampled_from(["sha1", "sha256"]))
    out = []
    for ui in range(1, draw(st.integers(1, 3)) + 1):
        names = draw(st.sets(_NAME, max_size=40))
        refs = [draw(_ref(n, ui, hash)) for n in names]
        out.append(sorted(refs, key=lambda r: r.name.encode("utf-8", "surrogateescape")))
    return out, hash


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_stack(), st.sampled_from(["", "refs/", "refs/heads/", "a", "\udcff"]),
       st.sampled_from([256, 4096]))  # (256: a 6-part name and two sha256 ids fit)
def test_property_packed_equals_columns_and_records(stack, prefix, block_size):
    layers, hash = stack
    tables = [Table.from_bytes(write(refs, min_ui=ui, max_ui=ui, hash=hash,
                                     block_size=block_size))
              for ui, refs in enumerate(layers, 1)]
    for t, refs in zip(tables, layers, strict=True):
        p = prefix.encode("utf-8", "surrogateescape")
        assert_records(t.ref_columns_packed(prefix),
                       [r for r in refs if r.name.encode("utf-8", "surrogateescape")
                        .startswith(p)])
    for suppress in (True, False):
        m = MergedTable(tables, suppress_deletions=suppress)
        packed = m.ref_columns_packed(prefix)
        assert_records(packed, list(m.refs(prefix)))
        assert_same(packed, m.ref_columns(prefix))


# -- threads ------------------------------------------------------------------------------


def test_threads_share_a_table_and_a_merged_view():
    """Threads reading packed columns of one table and one merged view at once (the
    decoding runs without the GIL, in batches) all get the single-threaded result."""
    import gc
    import threading

    tables = [table_of([RefRecord.val1(f"refs/heads/t{k}/{i:05d}", k + 1, oid(i))
                        for i in range(k, 4000, 3)], block_size=1024) for k in range(3)]
    merged = MergedTable(tables)
    want_t, want_m = tables[0].ref_columns_packed(), merged.ref_columns_packed()
    start = threading.Barrier(3)
    got: list[bool] = []

    def work() -> None:
        start.wait()
        got.extend(tables[0].ref_columns_packed() == want_t and
                   merged.ref_columns_packed() == want_m for _ in range(5))

    old = gc.get_threshold()
    gc.set_threshold(5, 1, 1)  # thread switches at allocations, between batches
    try:
        threads = [threading.Thread(target=work) for _ in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        gc.set_threshold(*old)
    assert got == [True] * 15


def test_results_spanning_several_batches():
    """Packed columns and counts are decoded in batches of thousands of refs without the
    GIL (names-only and full columns in smaller ones): results over several batches,
    of one table and merged, agree with the records."""
    old = branch_refs(20_000, ui=1)
    new = branch_refs(20_000, ui=2)[::3]  # shadows every third ref
    tables = [table_of(old), table_of(new)]
    assert_records(tables[0].ref_columns_packed(), old)
    assert tables[0].count_refs() == 20_000
    m = MergedTable(tables)
    want = list(m.refs())
    assert_records(m.ref_columns_packed(), want)
    assert_same(m.ref_columns_packed(), m.ref_columns())
    assert m.count_refs() == len(want) == 20_000
