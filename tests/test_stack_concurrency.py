"""Several handles on one stack: outdated handles, iterators across reloads, and
deterministic races through the compaction hooks (Git's July 2024 fix "reftable/stack:
fix corruption on concurrent compaction", and what its tests could not reach: another
handle acting between "merged the locked tables" and "re-locked tables.list")."""

from __future__ import annotations

import os
import threading

import pytest
from support import log_update, oid
from support.stacks import (
    add_ref,
    assert_clean,
    compact_at_first_table_open,
    hold_lock,
    list_names,
    listing,
    open_stack,
    write_n_ref_tables,
    write_ref,
)

from reftable import (
    LockError,
    NotExistError,
    OutdatedError,
    RefRecord,
    write_table_bytes,
)
from reftable.errors import ExpectationError
from reftable.stack import Stack
from reftable.transaction import LogEntry

BRANCHES = [f"refs/heads/branch-{i:04d}" for i in range(100)]


def ref_values(st: Stack) -> dict[str, bytes | None]:
    return {r.name: r.value for r in st.refs()}


def three_tables(tmp_path, **kw) -> tuple[Stack, Stack]:
    st1 = open_stack(tmp_path, auto_compact=False, **kw)
    write_n_ref_tables(st1, 3)
    st2 = open_stack(tmp_path, auto_compact=False, **kw)
    return st1, st2


def base_values() -> dict[str, bytes | None]:
    return {BRANCHES[i]: oid(i) for i in range(3)}


# -- two handles -------------------------------------------------------------------------------


def test_concurrent_compaction_leaves_one_table(tmp_path):
    # Git's compaction_concurrent
    st1, st2 = three_tables(tmp_path)
    assert st1.compact_all() is True
    assert len(listing(tmp_path)) == 2  # tables.list and one table
    # the other handle is outdated: it cannot compact what it no longer sees
    with pytest.raises(OutdatedError):
        st2.compact_all()
    assert st2.stats.failures == 0
    assert ref_values(st2) == base_values()  # its old view still reads
    st2.reload()
    assert st2.compact_all() is False
    assert len(listing(tmp_path)) == 2
    st1.close()
    st2.close()
    assert len(listing(tmp_path)) == 2


def test_read_across_reload(tmp_path):
    # Git's read_across_reload: an iterator made before another handle compacted and
    # this one reloaded keeps returning the old view.
    st1 = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st1, 2)
    st1.add(lambda w: w.add_log(log_update(BRANCHES[0], w.min_update_index, oid(0), oid(1))))
    started = st1.refs()
    assert next(started).name == BRANCHES[0]
    unstarted = st1.refs()
    logs = st1.logs()
    old_tables = list(st1.tables)
    st2 = open_stack(tmp_path)
    assert len(st2.tables) == 3
    st2.compact_all()
    assert len(st2.tables) == 1
    for t in old_tables:
        assert not (tmp_path / os.path.basename(t.name)).exists()
    assert st1.reload() is True
    assert len(st1.tables) == 1
    assert next(started).name == BRANCHES[1]
    assert next(started, None) is None
    assert [r.name for r in unstarted] == BRANCHES[:2]
    assert [lg.refname for lg in logs] == [BRANCHES[0]]
    assert ref_values(st1) == {BRANCHES[0]: oid(0), BRANCHES[1]: oid(1)}


def test_reload_retries_when_a_table_vanishes_under_it(tmp_path, monkeypatch):
    # A reload that read tables.list just before another handle compacted the stack
    # finds a listed table gone; it must re-read the list and succeed.
    st1 = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st1, 2)
    st2 = open_stack(tmp_path, auto_compact=False)
    add_ref(st1, "refs/heads/x", oid(9))  # st2 must open this new table on reload
    # the compaction removes every table st2 is about to open
    fired = compact_at_first_table_open(monkeypatch, open_stack(tmp_path))
    assert st2.reload() is True
    assert fired
    assert st2.names == list_names(tmp_path) and len(st2.names) == 1
    assert ref_values(st2) == {**{b: oid(i) for i, b in enumerate(BRANCHES[:2])},
                               "refs/heads/x": oid(9)}


def test_reload_gives_up_when_the_list_stays_broken(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 1)
    other = open_stack(tmp_path)
    add_ref(other, "refs/heads/x", oid(1))
    os.unlink(tmp_path / other.names[-1])  # listed but gone for good
    with pytest.raises(NotExistError):
        st.reload(timeout=0.05)
    assert ref_values(st) == {BRANCHES[0]: oid(0)}


def test_transactions_of_two_handles_check_expectations_under_the_lock(tmp_path):
    st1 = open_stack(tmp_path)
    st2 = open_stack(tmp_path)
    with st1.transaction() as tx:
        tx.create("refs/heads/main", oid(1))
    st2.reload()
    assert st2.read_ref("refs/heads/main").value == oid(1)
    with st1.transaction() as tx:
        tx.update("refs/heads/main", oid(2), expect=oid(1))
    # st2 still believes main is at oid(1); the check happens after reloading under
    # the lock, so it sees oid(2) and refuses
    tx = st2.transaction()
    tx.update("refs/heads/main", oid(3), expect=oid(1))
    with pytest.raises(ExpectationError):
        tx.commit()
    assert open_stack(tmp_path).read_ref("refs/heads/main").value == oid(2)
    assert_clean(tmp_path)


def test_open_addition_blocks_writers_and_compaction_not_readers(tmp_path):
    st1, st2 = three_tables(tmp_path, lock_timeout_ms=0)
    with st2.new_addition() as add:
        add.add_table(write_ref(lambda ui: RefRecord.val1("refs/heads/x", ui, oid(7))))
        assert ref_values(st1) == base_values()
        assert st1.reload() is False
        with pytest.raises(LockError):
            st1.compact_all()
        with pytest.raises(LockError):
            add_ref(st1, "refs/heads/y", oid(8))
        add.commit()
    assert st1.stats.failures == 1
    st1.reload()
    assert ref_values(st1) == {**base_values(), "refs/heads/x": oid(7)}
    assert st1.compact_all() is True
    assert_clean(tmp_path)


def test_writer_waits_for_the_lock(tmp_path):
    st1 = open_stack(tmp_path, auto_compact=False)
    st2 = open_stack(tmp_path, auto_compact=False, lock_timeout_ms=60_000)
    errors = []
    done = threading.Event()

    def writer():
        try:
            with st2.transaction() as tx:
                tx.create("refs/heads/waiter", oid(2))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        done.set()

    with st1.new_addition() as add:
        add.add_table(write_ref(lambda ui: RefRecord.val1("refs/heads/first", ui, oid(1))))
        t = threading.Thread(target=writer)
        t.start()
        assert not done.is_set() or errors  # cannot finish while we hold the lock
        add.commit()
    t.join(60)
    assert not t.is_alive() and errors == []
    st1.reload()
    assert st1.read_ref("refs/heads/first").update_index == 1
    assert st1.read_ref("refs/heads/waiter").update_index == 2


def test_threads_with_their_own_handles(tmp_path):
    open_stack(tmp_path)
    n_threads, n_updates = 4, 25
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []
    committed: dict[int, list[bytes]] = {k: [] for k in range(n_threads)}

    def work(k: int) -> None:
        try:
            st = open_stack(tmp_path, lock_timeout_ms=10_000)
            barrier.wait(30)
            prev = None
            for i in range(n_updates):
                new = oid(1000 * k + i)
                tx = st.transaction(log=LogEntry("T", "t@example.com", f"t{k} {i}", 1))
                tx.update(f"refs/heads/t{k}", new, expect=prev)
                tx.commit()
                committed[k].append(new)
                prev = new
            st.close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    st = open_stack(tmp_path)
    for k in range(n_threads):
        assert st.read_ref(f"refs/heads/t{k}").value == committed[k][-1]
        logs = list(st.logs(f"refs/heads/t{k}"))
        assert [lg.new_id for lg in logs] == committed[k][::-1]
        assert [lg.old_id for lg in logs[:-1]] == committed[k][::-1][1:]
    ui = [lg.update_index for lg in st.logs()]
    assert len(set(ui)) == n_threads * n_updates  # one update index per transaction
    assert_clean(tmp_path)


# -- "reftable/stack: fix corruption on concurrent compaction" ----------------------------------


@pytest.mark.parametrize("hook", ["after_compaction_locks", "after_compaction_merge"])
def test_fix_corruption_on_concurrent_compaction_keeps_appended_tables(tmp_path, hook):
    st1, st2 = three_tables(tmp_path)
    old = list(st1.names)
    appended = []

    def append(stack, first, last):
        assert (stack, first, last) == (st1, 0, 2)
        # tables.list is not locked now: another writer can append
        st2.reload()
        add_ref(st2, "refs/heads/new-1", oid(101))
        with st2.transaction() as tx:
            tx.create("refs/heads/new-2", oid(102))
            tx.update(BRANCHES[1], oid(103), expect=oid(1))
        appended.extend(st2.names[3:])

    setattr(st1.hooks, hook, append)
    assert st1.compact_all() is True
    assert len(appended) == 2
    names = list_names(tmp_path)
    # the compacted table replaces exactly our run; the appended tables follow in order
    assert names[1:] == appended
    assert names[0] not in old and names[0].startswith("0x000000000001-0x000000000003-")
    assert st1.names == names
    assert [t.min_update_index for t in st1.tables] == [1, 4, 5]
    want = {**base_values(), BRANCHES[1]: oid(103), "refs/heads/new-1": oid(101),
            "refs/heads/new-2": oid(102)}
    assert ref_values(st1) == want
    assert ref_values(open_stack(tmp_path)) == want
    st2.reload()
    assert ref_values(st2) == want
    assert_clean(tmp_path)


@pytest.mark.parametrize("hook", ["after_compaction_locks", "after_compaction_merge"])
def test_concurrent_compaction_of_an_overlapping_range_fails(tmp_path, hook):
    st1, st2 = three_tables(tmp_path, lock_timeout_ms=0)
    seen = []

    def contend(stack, first, last):
        st2.reload()
        for attempt in (st2.compact_all, lambda: st2.compact_range(1, 2),
                        lambda: st2.compact_range(0, 1), st2.auto_compact):
            with pytest.raises(LockError):
                attempt()
            seen.append(attempt)
        assert len(st2.names) == 3

    setattr(st1.hooks, hook, contend)
    assert st1.compact_all() is True
    assert len(seen) == 4
    assert (st2.stats.attempts, st2.stats.failures) == (4, 4)
    assert len(st1.names) == 1
    assert ref_values(open_stack(tmp_path)) == base_values()
    assert_clean(tmp_path)


def test_concurrent_compaction_of_a_disjoint_older_range(tmp_path):
    st1 = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st1, 4)
    st2 = open_stack(tmp_path, auto_compact=False)
    old = list(st1.names)

    def older(stack, first, last):
        assert (first, last) == (2, 3)
        st2.reload()
        assert st2.compact_range(0, 1) is True  # not locked by us

    st1.hooks.after_compaction_merge = older
    assert st1.compact_range(2, 3) is True
    names = list_names(tmp_path)
    assert len(names) == 2 and not set(names) & set(old)
    assert names[0].startswith("0x000000000001-0x000000000002-")
    assert names[1].startswith("0x000000000003-0x000000000004-")
    assert st1.names == names
    assert ref_values(st1) == {b: oid(i) for i, b in enumerate(BRANCHES[:4])}
    assert_clean(tmp_path)


def test_concurrent_compaction_of_tables_appended_meanwhile(tmp_path):
    # Locking newest to oldest lets a process compact the tables it appended while we
    # still hold the older ones.
    st1, st2 = three_tables(tmp_path)

    def append_and_compact(stack, first, last):
        st2.reload()
        write_n_ref_tables(st2, 3, start=3)
        assert st2.auto_compact() is True  # best effort: only its own new tables
        assert len(st2.names) == 4
        assert st2.names[:3] == st1.names

    st1.hooks.after_compaction_merge = append_and_compact
    assert st1.compact_all() is True
    names = list_names(tmp_path)
    assert len(names) == 2
    assert names[0].startswith("0x000000000001-0x000000000003-")
    assert names[1].startswith("0x000000000004-0x000000000006-")
    assert ref_values(st1) == {b: oid(i) for i, b in enumerate(BRANCHES[:6])}
    assert_clean(tmp_path)


def _rogue_rewrite(d, st: Stack, keep: list[str]) -> None:
    """Replace tables.list by ``keep`` plus, for the tables dropped, one table holding
    their refs (as a process that ignored our table locks would), and delete them."""
    dropped = [n for n in st.names if n not in keep]
    tables = [st.tables[st.names.index(n)] for n in dropped]
    recs = sorted((r for t in tables for r in t.refs()), key=lambda r: r.name)
    lo = min(t.min_update_index for t in tables)
    hi = max(t.max_update_index for t in tables)
    name = f"0x{lo:012x}-0x{hi:012x}-0badf00d.ref"
    (d / name).write_bytes(write_table_bytes(recs, min_update_index=lo, max_update_index=hi))
    new = sorted(keep + [name], key=lambda n: int(n.split("-")[0], 16))
    with hold_lock(d / "tables.list") as lk:
        lk.write("".join(n + "\n" for n in new).encode())
        lk.commit()
    for n in dropped:
        os.unlink(d / n)


@pytest.mark.parametrize("gone", ["all", "first", "middle", "last"])
def test_compaction_whose_tables_vanished_gives_up(tmp_path, gone):
    st1 = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st1, 4)
    run = st1.names[1:4]
    keep = {"all": [st1.names[0]], "first": [st1.names[0], *run[1:]],
            "middle": [st1.names[0], run[0], run[2]],
            "last": [st1.names[0], *run[:2]]}[gone]
    temps = []

    def vanish(stack, first, last):
        temps.extend(f for f in os.listdir(tmp_path) if f.startswith(".tmp-"))
        _rogue_rewrite(tmp_path, st1, keep)

    st1.hooks.after_compaction_merge = vanish
    with pytest.raises(OutdatedError):
        st1.compact_range(1, 3)
    assert len(temps) == 1
    assert not (tmp_path / temps[0]).exists()  # our merged temp table is gone
    assert st1.stats.failures == 0
    want = {b: oid(i) for i, b in enumerate(BRANCHES[:4])}
    assert ref_values(open_stack(tmp_path)) == want  # nothing lost
    assert_clean(tmp_path)
    st1.reload()
    assert ref_values(st1) == want
    assert st1.compact_all() is True
    assert ref_values(st1) == want


def test_compaction_cannot_relock_tables_list(tmp_path):
    st1, _ = three_tables(tmp_path, lock_timeout_ms=0)
    before = list_names(tmp_path)
    held = []

    def grab(stack, first, last):
        held.append(hold_lock(tmp_path / "tables.list"))

    st1.hooks.after_compaction_merge = grab
    with pytest.raises(LockError):
        st1.compact_all()
    assert (st1.stats.attempts, st1.stats.failures) == (1, 1)
    assert list_names(tmp_path) == before
    held[0].rollback()
    assert_clean(tmp_path)  # no temp table, no table locks left
    st1.hooks.after_compaction_merge = None
    assert st1.compact_all() is True


# -- every action of another handle at each compaction hook -------------------------------------


def _act_add(st2):
    add_ref(st2, "refs/heads/other", oid(500))
    return {"refs/heads/other": oid(500)}, 1


def _act_update(st2):
    with st2.transaction() as tx:
        tx.update(BRANCHES[1], oid(501), expect=oid(1))
    return {BRANCHES[1]: oid(501)}, 1


def _act_delete(st2):
    with st2.transaction() as tx:
        tx.delete(BRANCHES[0], expect=oid(0))
    return {BRANCHES[0]: None}, 1


def _act_compact_all(st2):
    with pytest.raises(LockError):
        st2.compact_all()
    return {}, 0


def _act_auto_compact(st2):
    try:
        st2.auto_compact()
    except LockError:
        pass
    return {}, 0


def _act_add_and_compact_new(st2):
    write_n_ref_tables(st2, 2, start=10)
    assert st2.compact_range(3, 4) is True
    return {BRANCHES[10]: oid(10), BRANCHES[11]: oid(11)}, 1


def _act_clean(st2):
    st2.clean()
    return {}, 0


def _act_read(st2):
    assert ref_values(st2) == base_values()
    return {}, 0


ACTIONS = {f.__name__[5:]: f for f in (_act_add, _act_update, _act_delete, _act_compact_all,
                                       _act_auto_compact, _act_add_and_compact_new,
                                       _act_clean, _act_read)}


@pytest.mark.parametrize("hook", ["after_compaction_locks", "after_compaction_merge"])
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_interleaving_at_compaction_hooks(tmp_path, hook, action):
    st1, st2 = three_tables(tmp_path, lock_timeout_ms=0)
    effect = {}

    def act(stack, first, last):
        st2.reload()
        changes, tables = ACTIONS[action](st2)
        effect.update(changes=changes, tables=tables)

    setattr(st1.hooks, hook, act)
    assert st1.compact_all() is True
    want = {**base_values(), **effect["changes"]}
    want = {k: v for k, v in want.items() if v is not None}
    names = list_names(tmp_path)
    assert len(names) == 1 + effect["tables"]
    assert names[0].startswith("0x000000000001-0x000000000003-")
    assert st1.names == names
    assert ref_values(st1) == want
    for st in (open_stack(tmp_path), st2):
        st.reload()
        assert ref_values(st) == want
    assert_clean(tmp_path)
