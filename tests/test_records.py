"""Record value types: behaviour of RefRecord/LogRecord, and records read from tables
(built by the core directly in their slots)."""

from __future__ import annotations

import copy
import gc
import pickle
import subprocess
import sys

import pytest
from support import PURE, oid, random_merged_tables, simple_log
from support.oracle import BLOCK_REF

from reftable import LogRecord, RefRecord, RefValueType, Table, write_table_bytes
from reftable.records import FrozenInstanceError


def test_value_semantics():
    a = RefRecord.val1("refs/heads/a", 1, oid(1))
    b = RefRecord("refs/heads/a", 1, RefValueType.VAL1, oid(1))
    assert a == b and hash(a) == hash(b)
    assert a != RefRecord.val1("refs/heads/a", 2, oid(1))
    assert a != ("refs/heads/a", 1, 1, oid(1), None, None)
    assert RefRecord.val1("x", 1, oid(1).hex()) == RefRecord.val1("x", 1, oid(1))
    assert copy.copy(a) == a and pickle.loads(pickle.dumps(a)) == a
    lg = simple_log("refs/heads/a", 3)
    assert pickle.loads(pickle.dumps(lg)) == lg and hash(copy.deepcopy(lg)) == hash(lg)
    with pytest.raises(FrozenInstanceError):
        a.name = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del lg.message
    with pytest.raises(AttributeError):
        a.other = 1  # type: ignore[attr-defined]
    match a:
        case RefRecord(name, ui, vt, value):
            assert (name, ui, vt, value) == ("refs/heads/a", 1, 1, oid(1))
    assert LogRecord("r", 1).value_type == 1 and LogRecord("r", 1).message == ""
    assert repr(a).startswith("<RefRecord refs/heads/a @1 val1 ")


def test_records_read_equal_records_written():
    refs = [RefRecord.symref("HEAD", 1, "refs/heads/a"), RefRecord.val1("refs/heads/a", 1, oid(1)),
            RefRecord.val2("refs/tags/t", 1, oid(2), oid(3)), RefRecord.deletion("refs/x", 1),
            RefRecord.val1("refs/\u00e9t\u00e9", 1, oid(4))]
    logs = [simple_log("refs/heads/a", 2), simple_log("refs/heads/a", 1),
            LogRecord.deletion("refs/heads/b", 1)]
    t = Table.from_bytes(write_table_bytes(refs, logs, min_update_index=1,
                                           max_update_index=2))
    got = list(t.refs())
    assert got == refs and [hash(r) for r in got] == [hash(r) for r in refs]
    assert list(t.logs()) == logs
    assert all(type(r.value_type) is RefValueType for r in got)
    # records hold no references to other records: the collector need not track them
    # (the compiled core untracks them; pure Python cannot)
    if not PURE:
        assert not any(gc.is_tracked(r) for r in got)
        assert not any(gc.is_tracked(r) for r in t.logs())
    tuples = list(t.ref_tuples())
    assert tuples == [(r.name, r.update_index, int(r.value_type), r.value, r.target_value,
                       r.target) for r in refs]


def test_log_records_share_repeated_fields():
    logs = [simple_log("refs/heads/a", i) for i in range(5, 0, -1)]
    t = Table.from_bytes(write_table_bytes((), logs, min_update_index=1, max_update_index=5))
    got = list(t.logs())
    assert got == logs
    assert len({id(r.refname) for r in got}) == 1
    assert len({id(r.email) for r in got}) == 1


def test_records_work_without_the_core():
    # the package imports the core; the records module alone must not need it
    code = ("import sys, importlib.util\n"
            "sys.modules['reftable._core'] = None\n"
            f"spec = importlib.util.spec_from_file_location('records', "
            f"{str(__import__('reftable').records.__file__)!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "a = m.RefRecord.val1('x', 1, '00' * 20)\n"
            "assert a == m.RefRecord.val1('x', 1, bytes(20))\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_option_classes_behave_like_dataclasses():
    from reftable import LogEntry, StackOptions, WriteOptions
    from reftable._value import replace
    from reftable.stack import StackStats

    o = StackOptions(auto_compact=False)
    assert o == StackOptions(None, write=WriteOptions(), auto_compact=False)
    assert o != StackOptions() and replace(o, auto_compact=True) == StackOptions()
    assert repr(StackOptions()).startswith("StackOptions(hash=None, write=WriteOptions(")
    o.block_size = 1024  # not frozen
    with pytest.raises(TypeError):
        StackOptions(nonsense=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        hash(o)
    e = LogEntry("n", "e", "m")
    assert hash(e) == hash(LogEntry(name="n", email="e", message="m"))
    with pytest.raises(AttributeError):
        e.name = "x"  # type: ignore[misc]
    s = StackStats()
    assert s.last_fsync_error is None and "last_fsync_error" not in repr(s)
    assert WriteOptions(block_size=1024) == WriteOptions(block_size=1024)
    assert hash(WriteOptions()) == hash(WriteOptions())


def test_import_is_light():
    """Short-lived processes pay for every module imported: opening a stack and reading
    a ref must not pull in dataclasses (and with it inspect)."""
    code = ("import sys, reftable\n"
            "assert 'reftable.stack' not in sys.modules\n"
            "reftable.Stack, reftable.Table, reftable.LogEntry, reftable.TableWriter\n"
            "heavy = {'dataclasses', 'inspect', 'reftable.cli'} & set(sys.modules)\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ref_columns_match_records(tmp_path):
    from reftable import MergedTable

    refs = [RefRecord.symref("HEAD", 1, "refs/heads/a"), RefRecord.val1("refs/heads/a", 1, oid(1)),
            RefRecord.val2("refs/tags/t", 2, oid(2), oid(3)), RefRecord.deletion("refs/x", 2)]
    t = Table.from_bytes(write_table_bytes(refs, min_update_index=1, max_update_index=2))
    cols = t.ref_columns()
    assert cols.names == [r.name for r in refs]
    assert list(cols.value_types) == [r.value_type for r in refs]
    assert cols.update_indexes.tolist() == [r.update_index for r in refs]
    assert [cols.value(i) for i in range(len(refs))] == [r.value for r in refs]
    assert cols.values[20:40] == oid(1) and cols.values[:20] == bytes(20)
    assert cols.peeled == {2: oid(3)} and cols.targets == {0: "refs/heads/a"}
    assert t.ref_columns("refs/tags/").names == ["refs/tags/t"]
    newer = Table.from_bytes(write_table_bytes(
        [RefRecord.deletion("refs/heads/a", 3), RefRecord.val1("refs/heads/b", 3, oid(4))],
        min_update_index=3, max_update_index=3))
    m = MergedTable([t, newer])
    mc = m.ref_columns()
    assert mc.names == [r.name for r in m.refs()] == ["HEAD", "refs/heads/b", "refs/tags/t"]
    assert mc.value(1) == oid(4) and mc.peeled == {2: oid(3)}
    assert MergedTable([]).ref_columns().names == []


def test_ref_columns_across_blocks_and_prefixes():
    refs = [RefRecord.val1(f"refs/heads/{i:05d}", 1, oid(i)) for i in range(3000)]
    refs.insert(0, RefRecord.symref("HEAD", 1, "refs/heads/00000"))
    t = Table.from_bytes(write_table_bytes(refs, min_update_index=1, max_update_index=1,
                                           block_size=256))
    cols = t.ref_columns()
    assert cols.names == [r.name for r in refs] and cols.targets == {0: "refs/heads/00000"}
    assert cols.values == bytes(20) + b"".join(oid(i) for i in range(3000))
    sub = t.ref_columns("refs/heads/01")
    assert sub.names == [f"refs/heads/{i:05d}" for i in range(1000, 2000)]
    assert t._core.seek(BLOCK_REF, b"refs/heads/02999").ref_columns()[0] == \
        ["refs/heads/02999"]
    it = t._core.iter_section(BLOCK_REF)
    assert it.next_key() == b"HEAD"  # a key already decoded is part of the columns
    assert it.ref_columns()[0] == cols.names


def test_ref_columns_names_and_counts_over_many_batches():
    """The bulk readers decode a few hundred refs at a time: peeled ids and symref
    targets keep their positions across batches, in one table and merged."""
    from reftable import MergedTable

    refs = []
    for i in range(2500):
        name = f"refs/heads/{i:05d}"
        if i % 97 == 0:
            refs.append(RefRecord.symref(name, 1, f"refs/heads/{i + 1:05d}"))
        elif i % 89 == 0:
            refs.append(RefRecord.val2(name, 1, oid(i), oid(i + 1)))
        else:
            refs.append(RefRecord.val1(name, 1, oid(i)))
    t = Table.from_bytes(write_table_bytes(refs, min_update_index=1, max_update_index=1,
                                           block_size=1024))
    want_targets = {i: r.target for i, r in enumerate(refs) if r.target is not None}
    want_peeled = {i: r.target_value for i, r in enumerate(refs) if r.target_value}
    for cols in (t.ref_columns(), MergedTable([t]).ref_columns()):
        assert cols.names == [r.name for r in refs]
        assert cols.targets == want_targets and cols.peeled == want_peeled
        assert [cols.value(i) for i in range(len(refs))] == [r.value for r in refs]
    assert t.ref_names() == [r.name for r in refs] and t.count_refs() == len(refs)
    assert t.ref_names("refs/heads/01") == [r.name for r in refs[1000:2000]]
    assert t.count_refs("refs/heads/02") == 500
    sub = t.ref_columns("refs/heads/02")
    assert sub.targets == {i - 2000: v for i, v in want_targets.items() if i >= 2000}


@pytest.mark.skipif(PURE, reason="the compiled core's merge state lives in C arrays")
def test_merged_iter_init_failure_keeps_it_usable():
    from reftable import _core

    t = Table.from_bytes(write_table_bytes([RefRecord.val1("refs/heads/a", 1, oid(1))],
                                           min_update_index=1, max_update_index=1))
    m = _core.MergedIter([t._core.iter_section(BLOCK_REF, True)], BLOCK_REF)
    with pytest.raises(TypeError):
        m.__init__([object()], BLOCK_REF)
    assert [r.name for r in m] == ["refs/heads/a"]


def test_merged_order_compares_whole_keys_bytewise():
    """The merge compares keys a word at a time: prefixes, lengths around word sizes
    and bytes above 0x7f still sort as unsigned bytes."""
    from reftable import MergedTable

    names = sorted({"a", "ab", "abcdefgh", "abcdefgi", "abcdefgh\u00e9", "abcdefghZ",
                    "refs/heads/" + "x" * 13, "refs/heads/" + "x" * 14, "refs/heads/\u00ff",
                    "refs/heads/\u0100", "refs/heads/xxxxxxxx\u00e9a", "zz"},
                   key=lambda n: n.encode())
    tables = []
    for k in range(3):
        part = [RefRecord.val1(n, k + 1, oid(i)) for i, n in enumerate(names) if i % 3 != k]
        tables.append(Table.from_bytes(write_table_bytes(part, min_update_index=k + 1,
                                                         max_update_index=k + 1)))
    got = list(MergedTable(tables).refs())
    assert [r.name for r in got] == names
    # each name is in two tables: the newer one wins
    assert [r.update_index for r in got] == [3 if i % 3 != 2 else 2 for i in range(len(names))]


@pytest.mark.parametrize("kind", ["tiny", "long"])
def test_bulk_readers_whatever_the_record_sizes(kind):
    """The names list is sized from the table's bytes: tables of tiny records (more
    refs than expected) and of long ones (fewer) give every name once, in order."""
    from reftable import MergedTable

    if kind == "tiny":
        refs = [RefRecord.deletion(f"{i:04x}", 1) for i in range(5000)]
    else:
        refs = [RefRecord.symref(f"refs/heads/{'n' * 200}{i:04d}", 1, "t" * 300 + str(i))
                for i in range(700)]
    t = Table.from_bytes(write_table_bytes(refs, min_update_index=1, max_update_index=1))
    names = [r.name for r in refs]
    assert t.ref_names() == names and t.ref_columns().names == names
    assert MergedTable([t], suppress_deletions=False).ref_columns().names == names
    assert len(t.ref_columns().value_types) == len(refs) == t.count_refs()


@pytest.mark.parametrize("seed", range(4))
def test_merged_columns_equal_merged_records(seed):
    """Merged columns (merged without the GIL, in batches) hold exactly the records the
    merged iterator yields: newest wins, tombstones hide, prefixes stop."""
    from reftable import MergedTable

    tables = random_merged_tables(seed)
    for suppress in (True, False):
        m = MergedTable(tables, suppress_deletions=suppress)
        for prefix in ("", "refs/heads/", "refs/tags/1", "refs/zz"):
            want = list(m.refs(prefix))
            cols = m.ref_columns(prefix)
            assert cols.names == [r.name for r in want]
            assert list(cols.value_types) == [r.value_type for r in want]
            assert cols.update_indexes.tolist() == [r.update_index for r in want]
            assert [cols.value(i) for i in range(len(want))] == [r.value for r in want]
            assert cols.peeled == {i: r.target_value for i, r in enumerate(want)
                                   if r.target_value is not None}
            assert cols.targets == {i: r.target for i, r in enumerate(want)
                                    if r.target is not None}
            assert m.count_refs(prefix) == len(want)
        assert m.count_refs() == len(list(m.refs()))
