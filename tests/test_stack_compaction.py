"""Compaction: full and range compaction, tombstones, reflog expiry, locked tables, the
July 2024 compaction fixes of Git's reftable library, I/O faults, clean(), and Git's
fixture stacks compacted by us."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import iofaults
import pytest
from support import ZERO, log_update, oid
from support.fixtures import SCENARIOS, copy_fixture, load_expected
from support.stacks import (
    add_ref,
    assert_clean,
    dead_pid,
    hold_lock,
    leftovers,
    list_names,
    listing,
    logs_json,
    open_stack,
    refs_json,
    snapshot,
    write_n_ref_tables,
    write_ref,
)

from reftable import (
    ApiError,
    LockError,
    LogRecord,
    RefRecord,
    ReftableError,
    ReftableIOError,
    Table,
    write_table_bytes,
)
from reftable.errors import OutdatedError
from reftable.stack import LogExpiry, Stack
from reftable.transaction import LogEntry

BRANCHES = [f"refs/heads/branch-{i:04d}" for i in range(100)]


def ref_names(st: Stack) -> list[str]:
    return [r.name for r in st.refs()]


# -- basics -------------------------------------------------------------------------------------


def test_compact_all_merges_into_one_table(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 5)
    old = list(st.names)
    old_bytes = sum(t.size for t in st.tables)
    assert st.compact_all() is True
    assert len(st.names) == 1
    (name,) = st.names
    assert name not in old
    assert name.startswith("0x000000000001-0x000000000005-")
    assert (st.tables[0].min_update_index, st.tables[0].max_update_index) == (1, 5)
    assert ref_names(st) == BRANCHES[:5]
    assert (st.stats.attempts, st.stats.failures) == (1, 0)
    assert st.stats.entries_written == 5
    assert st.stats.bytes == old_bytes
    assert listing(tmp_path) == sorted(["tables.list", name])


def test_compact_all_of_nothing_or_one_table_is_a_no_op(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    assert st.compact_all() is False
    write_n_ref_tables(st, 1)
    before = snapshot(tmp_path)
    assert st.compact_all() is False
    assert snapshot(tmp_path) == before
    assert st.auto_compact() is False


def test_compact_range_bounds(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 3)
    with pytest.raises(ApiError):
        st.compact_range(1, 3)
    with pytest.raises(ApiError):
        st.compact_range(-1, 1)
    assert st.compact_range(2, 1) is False
    assert st.compact_range(1, 1) is False
    assert len(st.names) == 3


def test_compact_range_in_the_middle(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 5)
    keep = st.names[0], st.names[4]
    st.compact_range(1, 3)
    assert len(st.names) == 3
    assert (st.names[0], st.names[2]) == keep
    assert st.names[1].startswith("0x000000000002-0x000000000004-")
    assert ref_names(st) == BRANCHES[:5]
    assert_clean(tmp_path)


def test_range_compaction_above_the_bottom_keeps_tombstones(tmp_path):
    # A tombstone in the range must keep hiding an older record outside the range.
    st = open_stack(tmp_path, auto_compact=False)
    add_ref(st, "refs/heads/a", oid(1))
    st.add(lambda w: w.add_log(log_update("refs/heads/a", 1, ZERO["sha1"], oid(1))))
    st.add(write_ref(lambda ui: RefRecord.deletion("refs/heads/a", ui)))
    st.add(lambda w: w.add_log(LogRecord.deletion("refs/heads/a", 1)))
    add_ref(st, "refs/heads/b", oid(2))
    assert st.read_ref("refs/heads/a") is None and list(st.logs()) == []
    st.compact_range(2, 4)
    assert len(st.names) == 3
    assert st.read_ref("refs/heads/a") is None
    assert list(st.logs()) == []
    assert ref_names(st) == ["refs/heads/b"]
    top = st.tables[2]
    assert [r.name for r in top.refs() if r.is_deletion] == ["refs/heads/a"]
    assert [lg.is_deletion for lg in top.logs()] == [True]
    # from the bottom, the tombstones go
    st.compact_all()
    (t,) = st.tables
    assert [r.name for r in t.refs()] == ["refs/heads/b"]
    assert list(t.logs()) == []


def test_compaction_result_empty_removes_the_range(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    add_ref(st, "refs/heads/a", oid(1))
    st.add(write_ref(lambda ui: RefRecord.deletion("refs/heads/a", ui)))
    add_ref(st, "refs/heads/b", oid(2))
    st.compact_range(0, 1)
    assert len(st.names) == 1 and st.names[0].startswith("0x000000000003-")
    assert ref_names(st) == ["refs/heads/b"]
    assert st.next_update_index() == 4
    assert_clean(tmp_path)


def test_compaction_keeps_logs_and_messages_verbatim(tmp_path):
    st = open_stack(tmp_path, auto_compact=False, exact_log_message=True)
    msgs = ["", "x", "multi\nline\n", "tail\n\n"]
    for i, m in enumerate(msgs):
        st.add(lambda w, i=i, m=m: w.add_log(
            log_update("refs/heads/a", w.min_update_index, oid(i), oid(i + 1), message=m)))
    before = logs_json(st)
    st.compact_all()
    assert logs_json(st) == before
    assert [lg.message for lg in st.logs()] == msgs[::-1]


# -- reflog expiry ------------------------------------------------------------------------------


def test_reflog_expire(tmp_path):
    # Git's test_reftable_stack__reflog_expire
    st = open_stack(tmp_path)
    n = 19
    for i in range(1, n + 1):
        lg = LogRecord.update(f"branch{i:02d}", i, ZERO["sha1"], oid(i),
                              email="identity@invalid", time=i)
        st.add(lambda w, lg=lg: w.add_log(lg))
    st.compact_all()
    assert st.compact_all(LogExpiry(time=10)) is True
    assert list(st.logs("branch09")) == []
    assert [lg.time for lg in st.logs("branch11")] == [11]
    assert st.compact_all(LogExpiry(min_update_index=15)) is True
    assert list(st.logs("branch14")) == []
    assert [lg.update_index for lg in st.logs("branch16")] == [16]
    assert sorted(lg.refname for lg in st.logs()) == [f"branch{i:02d}" for i in range(15, 20)]
    assert len(st.names) == 1


def test_reflog_expire_both_criteria_and_refs_untouched(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    for i in range(1, 11):
        st.add(lambda w, i=i: (
            w.add_ref(RefRecord.val1("refs/heads/x", w.min_update_index, oid(i))),
            w.add_log(log_update("refs/heads/x", w.min_update_index, oid(i - 1), oid(i),
                                 time=1000 + i))))
    st.compact_all(LogExpiry(time=1004, min_update_index=8))
    # time drops ui 1..3 (time 1001..1003), the index drops ui 1..7
    assert [lg.update_index for lg in st.logs("refs/heads/x")] == [10, 9, 8]
    assert st.read_ref("refs/heads/x").value == oid(10)


def test_reflog_expiry_of_a_single_table(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    st.add(lambda w: [w.add_log(log_update(f"refs/heads/{c}", 1, oid(0), oid(1), time=t))
                      for c, t in (("a", 5), ("b", 50))])
    old = st.names[0]
    assert st.compact_all(LogExpiry(time=10)) is True
    assert [lg.refname for lg in st.logs()] == ["refs/heads/b"]
    assert st.names != [old]
    assert_clean(tmp_path)


def test_compacted_table_never_reuses_a_replaced_name(tmp_path, monkeypatch):
    # Compacting one table (with reflog expiry) yields a table with the same update
    # index range, so only the random suffix tells the names apart. Should it repeat
    # (1 in 2**32), the new table must not take the old name: the rename would replace
    # the old table and the clean-up of the replaced tables would then delete the new.
    st = open_stack(tmp_path, auto_compact=False)
    st.add(lambda w: (
        w.add_ref(RefRecord.val1("refs/heads/a", 1, oid(1))),
        [w.add_log(log_update(f"refs/heads/{c}", 1, oid(0), oid(1), time=t))
         for c, t in (("a", 5), ("b", 50))]))
    (old,) = st.names
    real = st._final_name
    calls = []

    def colliding(lo, hi):
        calls.append((lo, hi))
        return old if len(calls) == 1 else real(lo, hi)

    monkeypatch.setattr(st, "_final_name", colliding)
    assert st.compact_all(LogExpiry(time=10)) is True
    assert calls and calls[0] == (1, 1)
    (new,) = st.names
    assert new != old and (tmp_path / new).exists()
    fresh = open_stack(tmp_path)
    assert ref_names(fresh) == ["refs/heads/a"]
    assert [lg.refname for lg in fresh.logs()] == ["refs/heads/b"]
    assert_clean(tmp_path)


# -- the July 2024 compaction series of Git's reftable library ---------------------------------


def test_fix_handle_locked_tables_during_auto_compaction(tmp_path):
    # "reftable/stack: handle locked tables during auto-compaction": with one table in
    # the middle locked, a best-effort compaction of the newer tables it could lock.
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 5)
    assert suggest_everything(st)
    old = list(st.names)
    with hold_lock(tmp_path / old[2]):
        assert st.auto_compact() is True
        assert (st.stats.attempts, st.stats.failures) == (1, 0)
        assert len(st.names) == 4
        # the locked table and everything older is untouched
        assert st.names[:3] == old[:3]
        assert st.names[3] not in old
        assert st.names[3].startswith("0x000000000004-0x000000000005-")
        for n in old[:3]:
            assert (tmp_path / n).exists()
        for n in old[3:]:
            assert not (tmp_path / n).exists()
        assert_clean(tmp_path, allow=[old[2] + ".lock"])
    assert ref_names(st) == BRANCHES[:5]


def suggest_everything(st: Stack) -> bool:
    from reftable.tables_list import suggest_compaction_segment

    return suggest_compaction_segment(st.table_sizes_for_compaction(), 2) == (0, len(st.names))


@pytest.mark.parametrize("locked", [0, 1, 2, 3, 4])
def test_auto_compaction_best_effort_for_every_locked_position(tmp_path, locked):
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 5)
    old = list(st.names)
    newer = 4 - locked  # tables newer than the locked one
    with hold_lock(tmp_path / old[locked]):
        if newer >= 2:
            assert st.auto_compact() is True
            assert st.names[:locked + 1] == old[:locked + 1]
            assert len(st.names) == locked + 2
            assert st.stats.failures == 0
        else:
            with pytest.raises(LockError):
                st.auto_compact()
            assert st.names == old
            assert st.stats.failures == 1
        assert st.stats.attempts == 1
        assert_clean(tmp_path, allow=[old[locked] + ".lock"])
    assert ref_names(st) == BRANCHES[:5]


@pytest.mark.parametrize("locked", [0, 1, 2])
def test_fix_update_stats_on_failed_full_compaction(tmp_path, locked):
    # "reftable/stack: update stats on failed full compaction": a full compaction with
    # a locked table fails with a lock error, counted as a failure; nothing changes.
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 3)
    lock_name = st.names[locked] + ".lock"
    with hold_lock(tmp_path / st.names[locked]):
        before = snapshot(tmp_path)
        with pytest.raises(LockError) as ei:
            st.compact_all()
        assert ei.value.lock_path.endswith(lock_name)
        assert (st.stats.attempts, st.stats.failures) == (1, 1)
        assert len(st.names) == 3
        assert snapshot(tmp_path) == before
        assert_clean(tmp_path, allow=[lock_name])
        with pytest.raises(LockError):
            st.compact_range(0, 2)
        assert st.stats.failures == 2
    assert st.compact_all() is True
    assert st.stats.failures == 2 and len(st.names) == 1


def test_full_compaction_with_tables_list_locked(tmp_path):
    st = open_stack(tmp_path, auto_compact=False, lock_timeout_ms=0)
    write_n_ref_tables(st, 3)
    with hold_lock(tmp_path / "tables.list"):
        before = snapshot(tmp_path)
        with pytest.raises(LockError):
            st.compact_all()
        assert snapshot(tmp_path) == before
    assert (st.stats.attempts, st.stats.failures) == (1, 1)


def test_fix_use_lock_file_when_adding_table_to_tables_list(tmp_path):
    # "reftable/stack: use lock_file when adding table to tables.list": the list is
    # replaced by renaming tables.list.lock, written while the lock is held.
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 1)
    ino = (tmp_path / "tables.list").stat().st_ino
    during = {}

    def write(w):
        during["lock"] = (tmp_path / "tables.list.lock").exists()
        w.add_ref(RefRecord.val1("refs/heads/x", w.min_update_index, oid(5)))

    with st.new_addition() as add:
        add.add_table(write)
        lock_ino = (tmp_path / "tables.list.lock").stat().st_ino
        add.commit()
    assert during["lock"] is True
    assert (tmp_path / "tables.list").stat().st_ino == lock_ino != ino
    assert not (tmp_path / "tables.list.lock").exists()


def _add_x(st: Stack) -> None:
    add_ref(st, "refs/heads/x", oid(42))


def _find_fault(op: str, run, make, want_suffix: str):
    """The n (1-based) for which failing the n-th ``op`` hits the file ending in
    ``want_suffix``; calls are counted with io_counts() on a dry run."""
    d, st = make()
    iofaults.reset_io_counts()
    run(st)
    total = iofaults.io_counts()[op]
    assert total > 0
    for n in range(1, total + 1):
        d, st = make()
        iofaults.set_fault(op, n)
        try:
            run(st)
        except ReftableIOError as e:
            if str(e.filename or "").endswith(want_suffix):
                return n
        finally:
            iofaults.clear_faults()
    raise AssertionError(f"no {op} on *{want_suffix} among {total} calls")


def test_fix_do_not_die_when_fsyncing_lock_file(tmp_path):
    # "reftable/stack: do not die when fsyncing lock file files": a failing fsync of
    # tables.list.lock makes the addition fail cleanly with an I/O error.
    counter = iter(range(1000))

    def make():
        d = tmp_path / f"s{next(counter)}"
        d.mkdir()
        st = open_stack(d, auto_compact=False)
        write_n_ref_tables(st, 2)
        return d, st

    n = _find_fault("fsync", _add_x, make, "tables.list.lock")
    d, st = make()
    before = snapshot(d)
    iofaults.set_fault("fsync", n, errno.EIO)
    with pytest.raises(ReftableIOError) as ei:
        _add_x(st)
    iofaults.clear_faults()
    assert ei.value.errno == errno.EIO
    assert snapshot(d) == before  # no lock, no new list, no stray table, no temp
    assert st.is_up_to_date() and st.read_ref("refs/heads/x") is None
    _add_x(st)  # the handle is still usable
    assert st.read_ref("refs/heads/x").value == oid(42)
    assert_clean(d)


# -- I/O faults at every step -----------------------------------------------------------------

OPS = ["open", "write", "fsync", "rename", "unlink", "close"]


def _fresh(tmp_path: Path, tag: str, tables: int = 3) -> tuple[Path, Stack]:
    d = tmp_path / tag
    d.mkdir()
    st = open_stack(d, auto_compact=False)
    write_n_ref_tables(st, tables)
    return d, st


def _check_after_fault(d: Path, st: Stack, want_refs: list[str], unlink_fault: bool) -> None:
    left = leftovers(d)
    assert left["locks"] == [] and left["temps"] == [] and left["missing"] == [], left
    if not unlink_fault:
        # replaced tables are only left behind when unlinking them failed
        assert left["unlisted"] == [], left
    fresh = open_stack(d)
    assert ref_names(fresh) == want_refs
    for n in fresh.names:
        Table.open(d / n).close()
    # the handle that saw the fault reflects what is on disk
    assert st.is_up_to_date()
    assert ref_names(st) == want_refs


@pytest.mark.parametrize("op", OPS)
def test_addition_survives_a_fault_at_every_call(tmp_path, op):
    d, st = _fresh(tmp_path, "dry", 1)
    iofaults.reset_io_counts()
    with st.transaction() as tx:
        tx.update("refs/heads/x", oid(9))
    total = iofaults.io_counts()[op]
    for n in range(1, total + 2):
        d, st = _fresh(tmp_path, f"{op}{n}", 1)
        iofaults.set_fault(op, n)
        try:
            with st.transaction() as tx:
                tx.update("refs/heads/x", oid(9))
            ok = True
        except ReftableError as e:
            assert isinstance(e, ReftableIOError), e
            ok = False
        finally:
            iofaults.clear_faults()
        committed = "refs/heads/x" in ref_names(open_stack(d))
        assert committed or not ok, (op, n)
        _check_after_fault(d, st, BRANCHES[:1] + (["refs/heads/x"] if committed else []),
                           op == "unlink")


@pytest.mark.parametrize("op", OPS)
def test_compaction_survives_a_fault_at_every_call(tmp_path, op):
    d, st = _fresh(tmp_path, "dry")
    iofaults.reset_io_counts()
    st.compact_all()
    total = iofaults.io_counts()[op]
    for n in range(1, total + 2):
        d, st = _fresh(tmp_path, f"{op}{n}")
        iofaults.set_fault(op, n)
        try:
            st.compact_all()
        except ReftableError as e:
            assert isinstance(e, ReftableIOError), e
        finally:
            iofaults.clear_faults()
        _check_after_fault(d, st, BRANCHES[:3], op == "unlink")
        assert len(list_names(d)) in (1, 3)


@pytest.mark.parametrize("op", ["write", "fsync", "close"])
def test_temp_table_errors_name_the_file(tmp_path, op):
    d, st = _fresh(tmp_path, "s", 1)
    # the first such call of an addition is on the temp table
    iofaults.set_fault(op, 1, errno.ENOSPC)
    with pytest.raises(ReftableIOError) as ei:
        _add_x(st)
    iofaults.clear_faults()
    assert ei.value.errno == errno.ENOSPC
    assert ei.value.filename is not None
    assert os.path.basename(ei.value.filename).startswith(".tmp-")
    assert_clean(d)


def _post_commit_fault(tmp_path, tag, run):
    """Fail the directory fsync that follows the commit of tables.list."""
    def make():
        d = tmp_path / f"{tag}{next(counter)}"
        d.mkdir()
        st = open_stack(d, auto_compact=False)
        write_n_ref_tables(st, 3)
        return d, st

    counter = iter(range(1000))
    d, st = make()
    iofaults.reset_io_counts()
    run(st)
    total = iofaults.io_counts()["fsync"]
    d, st = make()
    iofaults.set_fault("fsync", total)  # the last fsync is the directory's
    try:
        run(st)
        raised = None
    except ReftableIOError as e:
        raised = e
    finally:
        iofaults.clear_faults()
    return d, st, raised


def test_failed_directory_fsync_after_compaction_commit_leaves_no_garbage(tmp_path):
    d, st, raised = _post_commit_fault(tmp_path, "c", lambda st: st.compact_all())
    assert raised is None or os.path.realpath(raised.filename) == os.path.realpath(d)
    assert len(list_names(d)) == 1  # committed
    assert_clean(d)  # the replaced tables were still removed
    assert st.is_up_to_date() and len(st.names) == 1
    assert ref_names(st) == BRANCHES[:3]


def test_failed_directory_fsync_after_addition_commit_keeps_handle_current(tmp_path):
    d, st, raised = _post_commit_fault(tmp_path, "a", _add_x)
    assert raised is None or os.path.realpath(raised.filename) == os.path.realpath(d)
    assert len(list_names(d)) == 4  # committed
    assert st.is_up_to_date()  # the handle knows its own table
    assert st.read_ref("refs/heads/x").value == oid(42)
    add_ref(st, "refs/heads/y", oid(43))  # no OutdatedError
    assert_clean(d)


# -- clean ------------------------------------------------------------------------------------


def _stray_table(d: Path, name: str, lo: int, hi: int) -> None:
    data = write_table_bytes([RefRecord.val1("refs/heads/stray", hi, oid(hi))],
                             min_update_index=lo, max_update_index=hi)
    (d / name).write_bytes(data)


def test_clean_removes_leftovers_of_unclean_exits(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 4)  # max update index 4
    pid = dead_pid()
    low = "0x000000000001-0x000000000002-00000001.ref"
    same = "0x000000000004-0x000000000004-00000002.ref"
    corrupt = "0x000000000002-0x000000000002-00000003.ref"
    high = "0x000000000005-0x000000000005-00000004.ref"
    lying_low = "0x000000000001-0x000000000001-00000005.ref"  # header says 9
    dead_tmp = f".tmp-{pid}-0badc0de.ref"
    live_tmp = f".tmp-{os.getpid()}-0badc0de.ref"
    _stray_table(tmp_path, low, 1, 2)
    _stray_table(tmp_path, same, 4, 4)
    (tmp_path / corrupt).write_bytes(b"REFT garbage")
    _stray_table(tmp_path, high, 5, 5)
    _stray_table(tmp_path, lying_low, 9, 9)
    (tmp_path / dead_tmp).write_bytes(b"partial")
    (tmp_path / live_tmp).write_bytes(b"being written")
    (tmp_path / "README").write_text("not ours")
    (tmp_path / (st.names[0] + ".lock")).write_bytes(b"")
    listed = list(st.names)
    removed = st.clean()
    assert sorted(removed) == sorted([low, same, corrupt, dead_tmp])
    assert st.names == listed
    for n in (high, lying_low, live_tmp, "README", st.names[0] + ".lock", *listed):
        assert (tmp_path / n).exists(), n
    assert not (tmp_path / "tables.list.lock").exists()
    assert ref_names(st) == BRANCHES[:4]
    # the kept high table is exactly what a writer would add next: clean() must not race it
    assert st.clean() == []


def test_clean_never_removes_a_table_above_the_stack(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 2)
    # a concurrent writer (Git does not hold tables.list.lock while renaming its table
    # into place) has written its table but not yet listed it
    future = "0x000000000003-0x000000000003-12345678.ref"
    _stray_table(tmp_path, future, 3, 3)
    assert st.clean() == []
    assert (tmp_path / future).exists()
    # once listed, it is part of the stack
    (tmp_path / "tables.list").write_text("".join(n + "\n" for n in [*st.names, future]))
    st.reload()
    assert st.read_ref("refs/heads/stray").update_index == 3


def test_clean_of_empty_stack_keeps_everything(tmp_path):
    st = open_stack(tmp_path)
    _stray_table(tmp_path, "0x000000000001-0x000000000001-00000001.ref", 1, 1)
    assert st.clean() == []


def test_clean_waits_for_the_tables_list_lock(tmp_path):
    st = open_stack(tmp_path, lock_timeout_ms=0, auto_compact=False)
    write_n_ref_tables(st, 2)
    stray = "0x000000000001-0x000000000001-00000001.ref"
    _stray_table(tmp_path, stray, 1, 1)
    other = open_stack(tmp_path)
    with other.new_addition():
        with pytest.raises(LockError):
            st.clean()
    assert (tmp_path / stray).exists()
    assert st.clean() == [stray]


def test_clean_after_compaction_by_other_handles(tmp_path):
    # Git's compaction_concurrent_clean: st1 compacts while st2 still has the old
    # tables open; a third handle cleans; only tables.list and one table remain.
    st1 = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st1, 3)
    st2 = open_stack(tmp_path)
    it = st2.refs()
    st1.compact_all()
    st3 = open_stack(tmp_path)
    st3.clean()
    assert len(listing(tmp_path)) == 2
    assert [r.name for r in it] == BRANCHES[:3]  # st2's view is still readable
    st1.close()
    st2.close()


# -- Git's fixture stacks -----------------------------------------------------------------------

needs_fixtures = pytest.mark.skipif(not SCENARIOS, reason="Git fixtures missing")


def _apply(expected_refs, expected_logs, tx_result, changes, entry, hash):
    """Apply our transaction's changes to Git's merged view (JSON form)."""
    ui = tx_result
    refs = {r["name"]: r for r in expected_refs}
    logs = list(expected_logs)
    zero = ZERO[hash].hex()
    for name, new in changes:
        cur = refs.get(name)
        old = cur["value"] if cur is not None and "value" in cur else zero
        if new is None:
            refs.pop(name, None)
            # deleting a ref deletes its reflog (as Git does)
            logs = [lg for lg in logs if lg["refname"] != name]
            continue
        refs[name] = {"name": name, "update_index": ui, "type": "val1", "value": new.hex()}
        logs.append({"refname": name, "update_index": ui, "type": "update", "old_id": old,
                     "new_id": new.hex(), "name": entry.name,
                     "email": entry.email, "time": entry.time, "tz_offset": entry.tz_offset,
                     "message": entry.message + "\n"})
    refs_out = [refs[k] for k in sorted(refs, key=lambda n: n.encode("utf-8",
                                                                     "surrogateescape"))]
    logs.sort(key=lambda r: (r["refname"].encode("utf-8", "surrogateescape"),
                             -r["update_index"]))
    return refs_out, logs


@needs_fixtures
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_git_fixture_stack_updates_and_compaction(tmp_path, scenario):
    exp = load_expected(scenario)
    d = copy_fixture(scenario, tmp_path / "reftable")
    st = open_stack(d, auto_compact=False)
    assert st.hash == exp["hash"] and st.names == exp["tables_list"]
    want_refs, want_logs = exp["merged"]["refs"], exp["merged"]["logs"]
    assert refs_json(st) == want_refs
    assert logs_json(st) == want_logs
    entry = LogEntry("Py Reftable", "py@example.com", "pyreftable test", 1_800_000_000, -930)
    val1 = [r for r in want_refs if r["type"] == "val1"]
    for step in range(3):
        changes: list[tuple[str, bytes | None]] = [
            (f"refs/heads/pyreftable/new-{step}", oid(1000 + step, st.hash))]
        cur = {r["name"]: r for r in want_refs}
        if step == 1 and val1:
            changes.append((val1[0]["name"], oid(2000, st.hash)))
        if step == 2 and len(val1) > 1 and val1[-1]["name"] in cur:
            changes.append((val1[-1]["name"], None))
        with st.transaction(log=entry) as tx:
            for name, new in changes:
                c = cur.get(name)
                expect = bytes.fromhex(c["value"]) if c and "value" in c else None
                if new is None:
                    tx.delete(name, expect=expect)
                else:
                    tx.update(name, new, expect=expect)
        ui = st.tables[-1].max_update_index
        want_refs, want_logs = _apply(want_refs, want_logs, ui, changes, entry, st.hash)
        assert refs_json(st) == want_refs
        assert logs_json(st) == want_logs
    assert len(st.names) == len(exp["tables_list"]) + 3
    # Compaction re-normalises reflog messages like Git's does ("" becomes "\n").
    st.auto_compact()
    assert refs_json(st) == want_refs
    assert logs_json(st) in (want_logs, _normalised(want_logs))
    st.compact_all()
    assert len(st.names) == 1
    fresh = open_stack(d)
    assert refs_json(fresh) == want_refs
    assert logs_json(fresh) == _normalised(want_logs)  # expiry off: every entry is kept
    assert_clean(d)


@needs_fixtures
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_git_fixture_compact_all_keeps_merged_view(tmp_path, scenario):
    exp = load_expected(scenario)
    d = copy_fixture(scenario, tmp_path / "reftable")
    st = open_stack(d)
    st.compact_all()
    assert len(st.names) == 1
    (t,) = st.tables
    assert (t.min_update_index, t.max_update_index) == (
        exp["tables"][0]["min_update_index"], exp["tables"][-1]["max_update_index"])
    assert refs_json(st) == exp["merged"]["refs"]
    assert logs_json(st) == _normalised(exp["merged"]["logs"])  # as Git's compaction does
    # a compacted table holds no tombstones
    assert not any(r.is_deletion for r in t.refs())
    assert not any(lg.is_deletion for lg in t.logs())
    assert_clean(d)


def _normalised(logs):
    out = []
    for lg in logs:
        lg = dict(lg)
        if lg["type"] == "update":
            lg["message"] = lg["message"].rstrip("\n") + "\n"
        out.append(lg)
    return out


@pytest.mark.skipif(not {"many-tables", "packed"} <= set(SCENARIOS), reason="fixtures missing")
def test_many_tables_compacted_equals_git_pack_refs(tmp_path):
    packed = load_expected("packed")
    d = copy_fixture("many-tables", tmp_path / "reftable")
    st = open_stack(d)
    st.compact_all()
    assert refs_json(st) == packed["merged"]["refs"]
    # Git's compaction re-normalises reflog messages (an empty message becomes "\n");
    # ours copies them verbatim, so compare modulo that normalisation
    assert _normalised(logs_json(st)) == _normalised(packed["merged"]["logs"])
    (t,) = st.tables
    pt = packed["tables"][0]
    assert (t.min_update_index, t.max_update_index) == (pt["min_update_index"],
                                                        pt["max_update_index"])
    assert [r for r in refs_json(st)] == pt["refs"]
    # byte for byte: tests/test_git_compaction.py


def test_compact_all_outdated_by_another_writer(tmp_path):
    """A full compaction on a handle another writer made outdated: Git's error by
    default; with reload_if_outdated it compacts every table listed under the lock,
    the other writer's included (busy writers cannot starve ``pack_refs``)."""
    st = open_stack(tmp_path, auto_compact=False)
    other = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 3)
    other.reload()
    add_ref(other, "refs/heads/late", oid(99))  # st does not know this table
    with pytest.raises(OutdatedError):
        st.compact_all()
    assert st.compact_all(reload_if_outdated=True)
    assert len(list_names(tmp_path)) == 1
    other.reload()
    assert other.read_ref("refs/heads/late").value == oid(99)
    assert sorted(r.name for r in st.refs()) == sorted(r.name for r in other.refs())
    assert len(st.names) == 1
    assert_clean(tmp_path)
