"""The stack's view under threads, deterministically: a reload that read an older
``tables.list`` must never be what a write builds on; plus the smaller view rules
(read-only opens, FIFO ``tables.list``, merged update index range)."""

from __future__ import annotations

import os
import threading

import pytest
from support import oid
from support.stacks import add_ref, assert_clean, list_names, open_stack

from reftable import MergedTable, RefRecord, Table, write_table_bytes
from reftable.errors import ApiError, FormatError, NotExistError
from reftable.stack import Stack, StackOptions


def _stale_reload_during(tmp_path, write_step):
    """Thread R starts a reload of ``st`` that reads an older tables.list and stops
    before installing it; the main thread then updates through ``st`` (its check
    under the lock reloads the newest list); while that write holds the lock, R
    finishes its reload. Returns (st, names the other handle committed)."""
    st = open_stack(tmp_path, auto_compact=False)
    other = open_stack(tmp_path, auto_compact=False)
    add_ref(other, "refs/heads/a", oid(1))  # st is outdated now
    read = threading.Event()
    resume = threading.Event()

    def stop_once(stack, names):
        if not read.is_set():
            read.set()
            resume.wait(30)

    st.hooks.after_list_read = stop_once
    r = threading.Thread(target=st.reload)  # reads [a], then waits
    r.start()
    assert read.wait(30)
    add_ref(other, "refs/heads/b", oid(2))  # now [a, b] on disk
    write_step(st, resume, r)
    r.join(30)
    assert not r.is_alive()
    return st, other.names


def _finish_reload(resume, r):
    resume.set()
    r.join(30)  # the stale reload is over before the list is written


def test_addition_builds_on_the_list_checked_under_the_lock(tmp_path):
    def write(st, resume, r):
        with st.new_addition(reload_if_outdated=True) as add:
            def fill(w):
                _finish_reload(resume, r)
                w.add_ref(RefRecord.val1("refs/heads/c", w.min_update_index, oid(3)))

            add.add_table(fill)
            add.commit()

    st, before = _stale_reload_during(tmp_path, write)
    on_disk = list_names(tmp_path)
    assert on_disk[:2] == before, "a committed table was dropped from tables.list"
    assert len(on_disk) == 3
    with Stack.open(str(tmp_path)) as fresh:
        assert {r.name for r in fresh.refs()} == {"refs/heads/a", "refs/heads/b",
                                                   "refs/heads/c"}
    assert st.names == on_disk  # the stale reload did not replace the newer view
    assert_clean(tmp_path)


def test_transaction_builds_on_the_list_checked_under_the_lock(tmp_path):
    def write(st, resume, r):
        st.hooks.before_list_write = lambda stack: _finish_reload(resume, r)
        with st.transaction() as tx:
            tx.verify("refs/heads/b", oid(2))  # checked under the lock: b is there
            tx.update("refs/heads/c", oid(3))

    st, before = _stale_reload_during(tmp_path, write)
    assert list_names(tmp_path)[:2] == before, "a committed table was dropped"
    assert st.read_ref("refs/heads/b").value == oid(2)
    assert st.read_ref("refs/heads/c").value == oid(3)
    assert_clean(tmp_path)


def test_compaction_uses_its_own_view_not_a_stale_reload(tmp_path):
    def write(st, resume, r):
        st.hooks.after_compaction_locks = lambda *a: _finish_reload(resume, r)
        st.reload()  # st's view: [a, b] (R still holds its read of [a])
        # tables.list is [t0?, a, b]: compact everything this handle sees
        st.compact_all()

    st, before = _stale_reload_during(tmp_path, write)
    assert len(list_names(tmp_path)) == 1
    with Stack.open(str(tmp_path)) as fresh:
        assert {r.name for r in fresh.refs()} == {"refs/heads/a", "refs/heads/b"}
    assert st.names == list_names(tmp_path)
    assert_clean(tmp_path)


def test_failure_after_commit_is_recorded_not_raised(tmp_path, monkeypatch):
    st = open_stack(tmp_path)
    add_ref(st, "refs/heads/a", oid(1))
    add_ref(st, "refs/heads/b", oid(2))

    def broken(snap):
        raise IndexError("list index out of range")

    monkeypatch.setattr(st, "_auto_compact", broken)
    add_ref(st, "refs/heads/c", oid(3))  # committed: must not raise
    assert isinstance(st.stats.last_auto_compaction_error, IndexError)
    assert st.read_ref("refs/heads/c").value == oid(3)

    def no_view(*a, **k):
        raise FormatError("simulated")

    monkeypatch.setattr(st, "_build", no_view)
    add_ref(st, "refs/heads/d", oid(4))
    assert isinstance(st.stats.last_reload_error, FormatError)
    monkeypatch.undo()
    st.reload()
    assert st.read_ref("refs/heads/d").value == oid(4)


def test_closed_stack_refuses_calls_but_running_iterators_finish(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    for i in range(3):
        add_ref(st, f"refs/heads/r{i}", oid(i))
    it = st.refs()
    assert next(it).name == "refs/heads/r0"
    st.close()
    assert [r.name for r in it] == ["refs/heads/r1", "refs/heads/r2"]
    for call in (lambda: st.read_ref("refs/heads/r0"), st.refs, st.reload,
                 st.compact_all, st.new_addition, st.snapshot, st.clean):
        with pytest.raises(ApiError):
            call()
    assert st.names == [] and st.tables == []


# -- read-only opens ----------------------------------------------------------------


def test_open_without_create_changes_nothing(tmp_path):
    st = Stack.open(str(tmp_path), create=False)
    assert os.listdir(tmp_path) == []
    assert st.names == [] and st.read_ref("HEAD") is None and list(st.refs()) == []
    st.reload()
    assert os.listdir(tmp_path) == []
    add_ref(st, "refs/heads/a", oid(1))  # an explicit write still works
    assert st.read_ref("refs/heads/a").value == oid(1)
    with pytest.raises(NotExistError):
        Stack.open(str(tmp_path / "missing"), create=False)
    assert Stack.open(str(tmp_path), StackOptions(), create=False).names == st.names


# -- a FIFO named tables.list ---------------------------------------------------------


def test_fifo_tables_list_is_a_format_error_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "tables.list")
    with pytest.raises(FormatError, match="not a regular file"):
        Stack.open(str(tmp_path))
    os.unlink(tmp_path / "tables.list")
    os.mkdir(tmp_path / "tables.list")
    with pytest.raises(FormatError, match="not a regular file"):
        Stack.open(str(tmp_path))


# -- merged update index range --------------------------------------------------------


def test_merged_update_index_range_spans_every_table():
    def table(lo, hi):
        recs = [RefRecord.val1(f"refs/heads/x{lo}", lo, oid(lo))]
        return Table.from_bytes(write_table_bytes(recs, min_update_index=lo,
                                                  max_update_index=hi))

    # not ordered by update index (MergedTable does not require it), as Git computes
    m = MergedTable([table(5, 9), table(1, 3), table(4, 4)])
    assert (m.min_update_index, m.max_update_index) == (1, 9)
    assert (MergedTable([]).min_update_index, MergedTable([]).max_update_index) == (0, 0)


# -- threads of one handle take turns on tables.list.lock ------------------------------


def test_threads_of_one_handle_wait_for_each_other_not_for_the_timeout(tmp_path):
    # lock_timeout_ms=0: another process holding the lock fails us at once, but a
    # thread of the same handle waits for its turn instead of raising LockError
    st = open_stack(tmp_path, lock_timeout_ms=0, auto_compact=False)
    outcome = []

    def second():
        try:
            add_ref(st, "refs/heads/b", oid(2))
            outcome.append("ok")
        except Exception as e:
            outcome.append(e)

    with st.new_addition() as add:
        add.add_table(lambda w: w.add_ref(RefRecord.val1("refs/heads/a",
                                                         w.min_update_index, oid(1))))
        t = threading.Thread(target=second)
        t.start()
        t.join(0.2)
        assert t.is_alive() and outcome == []  # waiting for its turn, not failed
        add.commit()
    t.join(30)
    assert outcome == ["ok"]
    assert st.read_ref("refs/heads/a").value == oid(1)
    assert st.read_ref("refs/heads/b").value == oid(2)
    assert_clean(tmp_path)


def test_a_nested_write_in_the_same_thread_still_gets_a_lock_error(tmp_path):
    from reftable.errors import LockError

    st = open_stack(tmp_path, lock_timeout_ms=0)
    with st.new_addition():
        with pytest.raises(LockError):
            st.new_addition()
        with pytest.raises(LockError):
            st.clean()
    add_ref(st, "refs/heads/a", oid(1))  # the turn was given back


def test_an_addition_dropped_without_close_gives_the_turn_back(tmp_path):
    import gc

    st = open_stack(tmp_path, lock_timeout_ms=0)
    st.new_addition()  # never closed
    gc.collect()
    done = []
    t = threading.Thread(target=lambda: done.append(add_ref(st, "refs/heads/a", oid(1))))
    t.start()
    t.join(30)
    assert done == [None] and st.read_ref("refs/heads/a") is not None
