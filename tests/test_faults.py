"""Fault injection: make every I/O call of an addition, an auto-compaction and a full
compaction fail in turn, and check that nothing is lost or left behind.

For each scenario a dry run counts the calls per operation (open, write, fsync, rename,
unlink, close) through the core's injectable I/O layer; then, for every operation and
every N up to that count, a fresh copy of the stack runs the scenario with the N-th call
failing. Afterwards:

* the stack reloads and reads exactly the state before the operation (when it raised)
  or after it (when it reported success);
* no ``.lock`` file remains, and ``clean()`` leaves only ``tables.list`` and the tables
  it lists;
* running the scenario again without faults succeeds.
"""

from __future__ import annotations

import errno
import os
import shutil

import iofaults
import pytest
from support import compiled_only, counts_small_table_reads, oid
from support.faults import LOG, OPS, SCENARIOS, make_template, prepare, view

import reftable
from reftable._impl import core as _core
from reftable.stack import Stack, StackOptions


def leftovers(directory: str) -> list[str]:
    with Stack.open(directory, StackOptions(auto_compact=False)) as st:
        st.clean()
        listed = set(st.names)
    return sorted(e for e in os.listdir(directory) if e != "tables.list" and e not in listed)


def add_big_table(st: Stack, tag: str = "big") -> None:
    """A table over 64 KiB: the core maps it (smaller ones are read whole)."""
    with st.transaction() as tx:
        for i in range(2500):
            tx.update(f"refs/heads/{tag}/{i:05d}", oid(70000 + i))
    assert os.path.getsize(st.table_path(st.names[-1])) > 65536


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_io_call_can_fail(tmp_path, name):
    run, ntables, template, ok_dir, before, after, counts = prepare(tmp_path, name)
    if name == "full-compaction":
        assert after == before  # compaction never changes what is visible
    else:
        assert after != before
    with Stack.open(ok_dir) as st:
        # the scenarios really compact (or, for the plain addition, really do not)
        assert len(st.names) == {"addition": ntables + 2, "auto-compaction": 1,
                                 "full-compaction": 1}[name]

    assert counts["write"] > 0 and counts["fsync"] > 0 and counts["rename"] > 0

    walked = 0
    for op in OPS:
        for n in range(1, counts.get(op, 0) + 1):
            work = str(tmp_path / f"w-{op}-{n}")
            shutil.copytree(template, work)
            iofaults.set_fault(op, n, errno.ENOSPC if op == "write" else errno.EIO)
            raised = None
            try:
                run(work)
            except (reftable.ReftableError, OSError) as e:
                raised = e
            finally:
                iofaults.clear_faults()
            walked += 1
            state = view(work)
            if raised is not None:
                assert state == before, f"{op}#{n}: failed operation changed the stack"
            else:
                assert state == after, f"{op}#{n}: reported success but state differs"
            assert not [e for e in os.listdir(work) if e.endswith(".lock")], f"{op}#{n}"
            assert leftovers(work) == [], f"{op}#{n}: clean() left files behind"
            if raised is not None:
                run(work)  # a retry without faults succeeds
                assert view(work) == after, f"{op}#{n}: retry did not reach the expected state"
            shutil.rmtree(work)
    assert walked == sum(counts.get(op, 0) for op in OPS)


def test_disk_full_during_additions_is_clean(tmp_path):
    """ENOSPC on any write of an addition or compaction: a clean error, nothing lost."""
    d = str(tmp_path / "s")
    os.makedirs(d)
    committed: dict[str, bytes] = {}
    with Stack.open(d, StackOptions(auto_compact=True)) as st:
        for i in range(60):
            if i % 7 == 3:
                iofaults.set_fault("write", 1 + i % 3, errno.ENOSPC)
            try:
                with st.transaction(log=LOG) as tx:
                    tx.update(f"refs/heads/r{i}", oid(i))
                committed[f"refs/heads/r{i}"] = oid(i)
            except reftable.ReftableIOError as e:
                assert e.errno == errno.ENOSPC
            finally:
                iofaults.clear_faults()
        iofaults.set_fault("write", 2, errno.ENOSPC)
        with pytest.raises(reftable.ReftableIOError) as info:
            st.compact_all()
        iofaults.clear_faults()
        assert info.value.errno == errno.ENOSPC
    with Stack.open(d) as st:
        got = {r.name: r.value for r in st.refs()}
        assert got == committed
        assert st.clean() == []
    assert not [e for e in os.listdir(d) if e.endswith(".lock") or e.startswith(".tmp")]


# -- reads go through the same layer ----------------------------------------------------

READ_OPS = ("open_read", "fstat", "read", "mmap", "close_read")


@compiled_only  # (the pure twin maps a large table when it opens it)
@counts_small_table_reads
def test_reads_are_counted(tmp_path):
    template = str(tmp_path / "s")
    make_template(template, 2)
    with Stack.open(template, StackOptions(auto_compact=False)) as st:
        add_big_table(st)
    iofaults.reset_io_counts()
    with Stack.open(template) as st:
        ntables = len(st.names)
        opened = iofaults.io_counts()
        st.read_ref("refs/heads/big/000100")
        looked_up = iofaults.io_counts()
        list(st.refs())
        iterated = iofaults.io_counts()
    closed = iofaults.io_counts()
    # tables.list is read with one read; small tables with one read each; the large
    # one's header and footer with one read each, and it stays open, not mapped
    assert opened["open_read"] == opened["fstat"] == ntables + 1
    assert opened["read"] == 1 + (ntables - 1) + 2
    assert opened["mmap"] == 0
    assert opened["close_read"] == ntables
    # a point lookup reads the blocks it needs (an index block, a ref block)
    assert looked_up["mmap"] == 0
    assert 2 <= looked_up["read"] - opened["read"] <= 4
    # iterating maps the file, which is then closed
    assert iterated["mmap"] == 1
    assert iterated["close_read"] == ntables + 1
    assert closed["close_read"] == ntables + 1
    assert closed["write"] == closed["open"] == 0


@counts_small_table_reads
def test_single_ref_addition_makes_gits_calls_only(tmp_path):
    """An addition on an open handle does Git's file operations and no more: take the
    lock, read the list under it, write + fsync + rename the table, write + fsync +
    rename the list (no directory fsync when off, as in Git). The committed view is
    made from the bytes written: no re-read of the list, no mapping of the new table."""
    d = str(tmp_path / "s")
    make_template(d, 2)
    with Stack.open(d, StackOptions(auto_compact=False, fsync_directory=False)) as st:
        iofaults.reset_io_counts()
        with st.transaction() as tx:
            tx.update("refs/heads/one-more", oid(99))
        counts = iofaults.io_counts()
        assert st.read_ref("refs/heads/one-more") is not None
    assert counts == dict.fromkeys(counts, 0) | {
        "open": 2, "write": 2, "fsync": 2, "close": 2, "rename": 2,
        "open_read": 1, "fstat": 1, "read": 1, "close_read": 1}


@pytest.mark.parametrize("op", ["open_read", "fstat", "read"])
def test_every_read_call_can_fail(tmp_path, op):
    """A failing read is a ReftableIOError; a handle whose reload fails keeps serving
    the tables it had, and the next reload succeeds."""
    d = str(tmp_path / "s")
    make_template(d, 2)
    iofaults.set_fault(op, 1, errno.EIO)
    with pytest.raises(reftable.ReftableIOError) as ei:
        Stack.open(d)
    assert ei.value.errno == errno.EIO
    iofaults.clear_faults()
    with Stack.open(d, StackOptions(auto_compact=False)) as st, \
            Stack.open(d, StackOptions(auto_compact=False)) as other:
        before = [r.name for r in st.refs()]
        with other.transaction() as tx:
            tx.update("refs/heads/other", oid(7))
        # the list is read first, then only the new tables are read
        iofaults.set_fault(op, 1, errno.EIO)
        with pytest.raises(reftable.ReftableIOError):
            st.reload()
        iofaults.clear_faults()
        assert [r.name for r in st.refs()] == before
        st.reload()
        assert "refs/heads/other" in [r.name for r in st.refs()]


@compiled_only  # (the pure twin maps a large table when it opens it)
@pytest.mark.parametrize("op", ["read", "mmap"])
def test_a_large_tables_failed_read_leaves_it_usable(tmp_path, op):
    """A large table is read block by block for its first lookups and mapped on first
    iteration: either failing is a ReftableIOError, and the next use succeeds."""
    d = str(tmp_path / "s")
    make_template(d, 1)
    with Stack.open(d, StackOptions(auto_compact=False)) as st:
        add_big_table(st)
    with Stack.open(d) as st:
        iofaults.set_fault(op, 1, errno.EIO)
        with pytest.raises(reftable.ReftableIOError) as ei:
            if op == "read":
                st.read_ref("refs/heads/big/00007")
            else:
                list(st.refs())
        iofaults.clear_faults()
        assert ei.value.errno == errno.EIO
        assert st.read_ref("refs/heads/big/00007").value == oid(70007)
        assert len(list(st.refs())) > 2500


def newest_table(directory: str, big: bool) -> str:
    """The path of the newest table of a fresh stack: a large one (mapped) when
    ``big``, else a small one (read whole)."""
    make_template(directory, 1)
    with Stack.open(directory, StackOptions(auto_compact=False)) as st:
        if big:
            add_big_table(st)
        return st.table_path(st.names[-1])


@counts_small_table_reads
@pytest.mark.parametrize(("big", "nth"), [(False, 1), (True, 1), (True, 2)])
def test_table_reads_can_fail(tmp_path, big, nth):
    """A small table is read whole with one read, a large one's header and footer with
    one read each (not faulted in through its mapping): a failing read is a
    ReftableIOError, and the next open works."""
    path = newest_table(str(tmp_path / "s"), big)
    iofaults.reset_io_counts()
    with reftable.Table.open(path) as t:
        assert t.count_refs() > 0
    assert iofaults.io_counts()["read"] == (2 if big else 1)
    assert iofaults.io_counts()["mmap"] == (1 if big else 0)
    iofaults.set_fault("read", nth, errno.EIO)
    with pytest.raises(reftable.ReftableIOError) as ei:
        reftable.Table.open(path)
    iofaults.clear_faults()
    assert ei.value.errno == errno.EIO
    with reftable.Table.open(path) as t:
        assert t.count_refs() > 0


@pytest.mark.parametrize("big", [False, True])
def test_table_that_shrinks_while_opened(tmp_path, big):
    """A table cut short between its fstat and the reads of its bytes is a
    FormatError, not a read of stale or missing bytes."""
    path = newest_table(str(tmp_path / "s"), big)

    def shrink(op):
        if op == "read":
            os.truncate(path, 10)
        return 0

    _core._set_io_hook(shrink)
    try:
        with pytest.raises(reftable.FormatError, match="shrank"):
            reftable.Table.open(path)
    finally:
        iofaults.install()


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_non_regular_file_named_like_a_table(tmp_path, kind):
    """A FIFO, directory or device in place of a table is a FormatError at once: never
    a hang (opening a FIFO waits for a writer) nor a raw OSError."""
    d = tmp_path / "s"
    d.mkdir()
    name = "0x000000000001-0x000000000001-00000000.ref"
    p = d / name
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "directory":
        p.mkdir()
    else:
        os.symlink("/dev/null", p)
    with pytest.raises(reftable.FormatError, match="not a regular file"):
        reftable.Table.open(str(p))
    (d / "tables.list").write_text(name + "\n")
    with pytest.raises(reftable.FormatError):
        Stack.open(str(d))
    os.remove(d / "tables.list")
    os.mkfifo(d / "tables.list")
    with pytest.raises(reftable.FormatError):
        Stack.open(str(d))
