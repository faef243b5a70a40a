"""Stack basics, ported from Git's t/unit-tests/u-reftable-stack.c (in our own words):
additions, outdated handles, auto-compaction policy, update-index checks, log message
normalisation, tombstones, hash ids, geometric segments, tables.list parsing."""

from __future__ import annotations

import os
from itertools import pairwise

import pytest
from support import log_update, oid
from support.fixtures import SCENARIOS, copy_fixture
from support.stacks import (
    add_ref,
    assert_clean,
    hold_lock,
    list_names,
    listing,
    open_stack,
    snapshot,
    write_n_ref_tables,
    write_ref,
)

from reftable import (
    ApiError,
    FormatError,
    LockError,
    LogRecord,
    NotExistError,
    OutdatedError,
    RefRecord,
    ReftableError,
    Table,
)
from reftable.stack import Stack, read_tables_list
from reftable.tables_list import parse_tables_list, suggest_compaction_segment


def fastlog(n: int, base: int) -> int:
    """floor(log_base(n)) for n >= 1, 0 for n == 0 (Git's fastlogN)."""
    if n == 0:
        return 0
    lg = 0
    while n:
        n //= base
        lg += 1
    return lg - 1


def symref_writer(name: str, target: str = "refs/heads/master"):
    return write_ref(lambda ui: RefRecord.symref(name, ui, target))


# -- adding ---------------------------------------------------------------------------


def test_open_creates_empty_tables_list(tmp_path):
    st = open_stack(tmp_path)
    assert listing(tmp_path) == ["tables.list"]
    assert (tmp_path / "tables.list").read_bytes() == b""
    assert st.names == [] and st.tables == []
    assert st.next_update_index() == 1
    assert st.read_ref("HEAD") is None
    assert list(st.refs()) == [] and list(st.logs()) == []


def test_open_missing_directory_is_not_exist(tmp_path):
    with pytest.raises(NotExistError):
        Stack.open(str(tmp_path / "nope"))


def test_open_of_a_stack_with_tables_checks_no_path(tmp_path, monkeypatch):
    """A short-lived reader pays for reading the list and mapping the tables, not for
    stat calls: only an empty view makes Stack.open look at the directory."""
    d = str(tmp_path / "s")
    os.makedirs(d)
    with Stack.open(d) as st:
        with st.transaction() as tx:
            tx.update("refs/heads/main", oid(1))
    looked: list[str] = []
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: looked.append(p) or real_exists(p))
    with Stack.open(d) as st:
        assert st.read_ref("refs/heads/main") is not None
    assert looked == []
    with Stack.open(str(tmp_path), create=False) as st:  # (no tables.list there)
        assert st.names == []
    assert looked  # an empty view: the list and the directory are checked


def test_add_one(tmp_path):
    old = os.umask(0o002)
    try:
        st = open_stack(tmp_path, permissions=0o660)
        st.add(symref_writer("HEAD"))
    finally:
        os.umask(old)
    rec = st.read_ref("HEAD")
    assert rec == RefRecord.symref("HEAD", 1, "refs/heads/master")
    assert len(st.tables) == 1
    assert st.names == list_names(tmp_path)
    # like Git: the configured permissions apply to tables.list and to the tables
    assert (tmp_path / "tables.list").stat().st_mode & 0o777 == 0o660
    assert (tmp_path / st.names[0]).stat().st_mode & 0o777 == 0o660
    t = st.tables[0]
    assert (t.min_update_index, t.max_update_index) == (1, 1)
    assert st.names[0].startswith("0x000000000001-0x000000000001-")
    assert st.next_update_index() == 2
    assert_clean(tmp_path)


def test_addition_goes_through_the_tables_list_lock(tmp_path):
    st = open_stack(tmp_path)
    seen = []

    def write(w):
        seen.append(sorted(os.listdir(tmp_path)))
        w.add_ref(RefRecord.val1("refs/heads/a", w.min_update_index, oid(1)))

    with st.new_addition() as add:
        assert (tmp_path / "tables.list.lock").exists()
        add.add_table(write)
        # the table has its final name already, but is not listed yet
        assert list_names(tmp_path) == []
        add.commit()
    assert "tables.list.lock" in seen[0]
    assert any(f.startswith(".tmp-") for f in seen[0])  # written under a temp name
    assert not (tmp_path / "tables.list.lock").exists()
    assert_clean(tmp_path)


def test_addition_is_exclusive(tmp_path):
    st1 = open_stack(tmp_path, lock_timeout_ms=0)
    st2 = open_stack(tmp_path, lock_timeout_ms=0)
    with st1.new_addition():
        with pytest.raises(LockError) as ei:
            st2.new_addition()
        assert ei.value.lock_path.endswith("tables.list.lock")
    # released when the first addition ends uncommitted
    with st2.new_addition() as add:
        add.commit()
    assert_clean(tmp_path)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), ApiError("api"), FormatError("fmt"),
                                 OSError(5, "EIO"), KeyboardInterrupt()])
def test_failing_write_callback_leaves_no_trace(tmp_path, exc):
    st = open_stack(tmp_path)
    add_ref(st, "refs/heads/main", oid(1))
    before = snapshot(tmp_path)

    def write(w):
        w.add_ref(RefRecord.val1("refs/heads/x", w.min_update_index, oid(2)))
        raise exc

    with pytest.raises(type(exc)):
        st.add(write)
    assert snapshot(tmp_path) == before
    assert st.next_update_index() == 2
    # and the stack is still usable
    add_ref(st, "refs/heads/y", oid(3))
    assert [r.name for r in st.refs()] == ["refs/heads/main", "refs/heads/y"]
    assert_clean(tmp_path)


def test_uncommitted_addition_is_discarded(tmp_path):
    st = open_stack(tmp_path)
    with st.new_addition() as add:
        name = add.add_table(write_ref(lambda ui: RefRecord.val1("refs/heads/a", ui, oid(1))))
        assert name is not None and (tmp_path / name).exists()
    assert listing(tmp_path) == ["tables.list"]
    assert st.read_ref("refs/heads/a") is None


def test_addition_commit_twice_is_api_error(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    with st.new_addition() as add:
        add.add_table(write_ref(lambda ui: RefRecord.val1("refs/heads/a", ui, oid(1))))
        add.commit()
        with pytest.raises(ApiError):
            add.commit()
        with pytest.raises(ApiError):
            add.add_table(write_ref(lambda ui: RefRecord.val1("refs/heads/b", ui, oid(2))))
    assert len(st.names) == 1


def test_addition_with_several_tables(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    with st.new_addition() as add:
        assert add.next_update_index == 1
        n1 = add.add_table(write_ref(lambda ui: RefRecord.val1("refs/heads/a", ui, oid(1))))
        assert add.next_update_index == 2
        n2 = add.add_table(write_ref(lambda ui: RefRecord.val1("refs/heads/b", ui, oid(2))))
        add.commit()
    assert st.names == [n1, n2]
    assert st.read_ref("refs/heads/b").update_index == 2


def test_second_handle_is_outdated_until_reload(tmp_path):
    st1 = open_stack(tmp_path)
    st2 = open_stack(tmp_path)
    st1.add(symref_writer("HEAD"))
    assert not st2.is_up_to_date()
    before = snapshot(tmp_path)
    with pytest.raises(OutdatedError):
        st2.add(write_ref(lambda ui: RefRecord.symref("refs/heads/b2", 2, "refs/heads/master")))
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "tables.list.lock").exists()
    assert st2.reload() is True
    assert st2.reload() is False  # nothing changed since
    assert st2.is_up_to_date()
    st2.add(write_ref(lambda ui: RefRecord.symref("refs/heads/b2", 2, "refs/heads/master")))
    assert st2.read_ref("refs/heads/b2").update_index == 2


def test_new_addition_reload_if_outdated(tmp_path):
    st1 = open_stack(tmp_path)
    st2 = open_stack(tmp_path)
    with st1.new_addition() as add:
        add.add_table(write_ref(lambda ui: RefRecord.val1("refs/heads/a", ui, oid(1))))
        add.commit()
    with pytest.raises(OutdatedError):
        st2.new_addition()
    with st2.new_addition(reload_if_outdated=True) as add:
        assert add.next_update_index == 2
        add.add_table(write_ref(lambda ui: RefRecord.val1("refs/heads/b", ui, oid(2))))
        add.commit()
    assert st2.read_ref("refs/heads/a") == RefRecord.val1("refs/heads/a", 1, oid(1))
    assert st2.read_ref("refs/heads/b") == RefRecord.val1("refs/heads/b", 2, oid(2))
    # st.add() takes the same flag
    st1.add(write_ref(lambda ui: RefRecord.val1("refs/heads/c", ui, oid(3))),
            reload_if_outdated=True)
    assert [r.name for r in st1.refs()] == ["refs/heads/a", "refs/heads/b", "refs/heads/c"]


def test_transaction_api_addition(tmp_path):
    st = open_stack(tmp_path)
    with st.new_addition() as add:
        add.add_table(symref_writer("HEAD"))
        add.commit()
    rec = st.read_ref("HEAD")
    assert rec.target == "refs/heads/master" and rec.update_index == 1


def test_update_index_check(tmp_path):
    st = open_stack(tmp_path)
    st.add(write_ref(lambda ui: RefRecord.symref("name1", 1, "master")))
    before = snapshot(tmp_path)

    def stale(w):
        w.set_limits(1, 1)
        w.add_ref(RefRecord.symref("name2", 1, "master"))

    with pytest.raises(ApiError):
        st.add(stale)
    assert snapshot(tmp_path) == before
    assert st.read_ref("name2") is None


def test_limits_after_a_record_is_api_error(tmp_path):
    st = open_stack(tmp_path)

    def write(w):
        w.add_ref(RefRecord.symref("HEAD", w.min_update_index, "master"))
        w.set_limits(1, 1)

    with st.new_addition() as add:
        with pytest.raises(ApiError):
            add.add_table(write)
    assert listing(tmp_path) == ["tables.list"]


def test_table_with_higher_update_index_moves_next_update_index(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)

    def write(w):
        w.set_limits(5, 7)
        w.add_ref(RefRecord.val1("refs/heads/a", 7, oid(1)))

    st.add(write)
    assert st.names[0].startswith("0x000000000005-0x000000000007-")
    assert st.next_update_index() == 8


def test_empty_addition_writes_nothing(tmp_path):
    st = open_stack(tmp_path)

    def nothing(w):
        w.set_limits(1, 1)

    st.add(nothing)
    assert listing(tmp_path) == ["tables.list"]
    assert st.names == []
    st2 = open_stack(tmp_path)
    assert st2.names == [] and st2.next_update_index() == 1
    # and it does not consume an update index
    add_ref(st2, "refs/heads/a", oid(1))
    assert st2.read_ref("refs/heads/a").update_index == 1
    assert_clean(tmp_path)


# -- reading ------------------------------------------------------------------------------


def test_add_refs_then_logs_and_compact(tmp_path):
    # Git's test_reftable_stack__add
    st = open_stack(tmp_path, exact_log_message=True, permissions=0o660, auto_compact=False)
    n = 2
    refs = [RefRecord.val1(f"branch{i:02d}", i + 1, oid(i)) for i in range(n)]
    logs = [LogRecord.update(f"branch{i:02d}", n + i + 1, b"\0" * 20, oid(i),
                             email="identity@invalid") for i in range(n)]
    for r in refs:
        st.add(write_ref(lambda ui, r=r: r))
    for lg in logs:
        st.add(lambda w, lg=lg: w.add_log(lg))
    assert len(st.names) == 4
    assert st.compact_all() is True
    assert len(st.names) == 1
    for r in refs:
        assert st.read_ref(r.name) == r
    for lg in logs:
        assert list(st.logs(lg.refname)) == [lg]
    # exact mode: the empty message was not normalised
    assert logs[0].message == ""
    assert (tmp_path / st.names[0]).stat().st_mode & 0o777 == 0o660
    assert (tmp_path / "tables.list").stat().st_mode & 0o777 == 0o660


@pytest.mark.parametrize("umask", [0o002, 0o022, 0o077])
def test_permissions_are_applied_exactly_like_git(tmp_path, umask):
    # Git chmods new tables and the tables.list lock file to default_permissions, so
    # the umask does not narrow them (shared repositories rely on it).
    old = os.umask(umask)
    try:
        st = open_stack(tmp_path, permissions=0o664, auto_compact=False)
        write_n_ref_tables(st, 2)
        for f in ["tables.list", *st.names]:
            assert (tmp_path / f).stat().st_mode & 0o777 == 0o664, (f, oct(umask))
        st.compact_all()
        for f in ["tables.list", *st.names]:
            assert (tmp_path / f).stat().st_mode & 0o777 == 0o664, (f, oct(umask))
    finally:
        os.umask(old)


def test_default_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        st = open_stack(tmp_path, auto_compact=False)
        write_n_ref_tables(st, 1)
    finally:
        os.umask(old)
    for f in ["tables.list", *st.names]:
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o640, f


def test_merged_iteration_across_tables(tmp_path):
    # Git's test_reftable_stack__iterator
    st = open_stack(tmp_path, auto_compact=False)
    n = 10
    refs = [RefRecord.val1(f"refs/heads/branch{i:02d}", i + 1, oid(i)) for i in range(n)]
    for r in refs:
        st.add(write_ref(lambda ui, r=r: r))
    logs = []
    for i in range(n):
        lg = log_update(f"refs/heads/branch{i:02d}", n + i + 1, b"\0" * 20, oid(i),
                        message="commit\n", email="johndoe@invalid")
        logs.append(lg)
        st.add(lambda w, lg=lg: w.add_log(lg))
    assert list(st.refs()) == refs
    assert list(st.refs("refs/heads/branch0")) == refs[:10]
    assert list(st.refs("refs/heads/branch05")) == [refs[5]]
    assert list(st.refs("refs/tags/")) == []
    assert list(st.logs()) == logs
    assert list(st.logs("refs/heads/branch03")) == [logs[3]]
    assert [r.name for r in st.refs_pointing_at(oid(4))] == ["refs/heads/branch04"]


def test_newer_tables_shadow_older(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    add_ref(st, "refs/heads/a", oid(1))
    add_ref(st, "refs/heads/a", oid(2))
    assert st.read_ref("refs/heads/a") == RefRecord.val1("refs/heads/a", 2, oid(2))
    assert st.refs_pointing_at(oid(1)) == []
    assert [r.name for r in st.refs_pointing_at(oid(2))] == ["refs/heads/a"]


def test_tombstones_hide_refs_and_logs_and_full_compaction_drops_them(tmp_path):
    # Git's test_reftable_stack__tombstone
    st = open_stack(tmp_path, auto_compact=False)
    st.add(write_ref(lambda ui: RefRecord.val1("branch", ui, oid(0))))
    st.add(write_ref(lambda ui: RefRecord.deletion("branch", ui)))
    # log keys use a constant update index; only the value type differs
    st.add(lambda w: w.add_log(LogRecord.update("branch", 1, b"\0" * 20, oid(0),
                                                email="identity@invalid")))
    st.add(lambda w: w.add_log(LogRecord.deletion("branch", 1)))
    assert st.read_ref("branch") is None
    assert list(st.refs()) == [] and list(st.logs("branch")) == [] and list(st.logs()) == []
    # the tombstones are in the tables
    assert st.tables[1].read_ref("branch").is_deletion
    assert [lg.is_deletion for lg in st.tables[3].logs()] == [True]
    st.compact_all()
    assert st.read_ref("branch") is None and list(st.logs("branch")) == []
    # everything cancelled out: nothing at all is left, not even a table of tombstones
    assert st.names == []
    assert listing(tmp_path) == ["tables.list"]


def test_full_compaction_drops_tombstones_but_keeps_live_records(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    add_ref(st, "refs/heads/gone", oid(1))
    add_ref(st, "refs/heads/kept", oid(2))
    st.add(write_ref(lambda ui: RefRecord.deletion("refs/heads/gone", ui)))
    st.compact_all()
    (t,) = st.tables
    assert [r.name for r in t.refs()] == ["refs/heads/kept"]
    assert not any(r.is_deletion for r in t.refs())


# -- log messages ----------------------------------------------------------------------------


def _log(msg: str, ui: int) -> LogRecord:
    return LogRecord.update("branch", ui, oid(2), oid(1), message=msg)


def test_log_message_normalisation(tmp_path):
    st = open_stack(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(ApiError):
        st.add(lambda w: w.add_log(_log("one\ntwo", 1)))
    assert snapshot(tmp_path) == before
    st.add(lambda w: w.add_log(_log("one", 1)))
    assert [lg.message for lg in st.logs("branch")] == ["one\n"]
    st.add(lambda w: w.add_log(_log("two\n", 2)))
    assert [lg.message for lg in st.logs("branch")] == ["two\n", "one\n"]
    # trailing newlines collapse to one
    st.add(lambda w: w.add_log(_log("three\n\n\n", 3)))
    assert next(st.logs("branch")).message == "three\n"


def test_exact_log_message_keeps_multi_line_messages(tmp_path):
    st = open_stack(tmp_path, exact_log_message=True)
    st.add(lambda w: w.add_log(_log("one\ntwo", 1)))
    st.add(lambda w: w.add_log(_log("no newline", 2)))
    assert [lg.message for lg in st.logs("branch")] == ["no newline", "one\ntwo"]
    # compaction never re-normalises what is stored
    st2 = open_stack(tmp_path)  # not exact, but only compacts
    st2.compact_all()
    assert [lg.message for lg in st2.logs("branch")] == ["no newline", "one\ntwo"]


# -- hash ids ---------------------------------------------------------------------------------


def test_hash_id_mismatch_is_format_error(tmp_path):
    st = open_stack(tmp_path)
    st.add(write_ref(lambda ui: RefRecord.symref("master", ui, "target")))
    with pytest.raises(FormatError):
        open_stack(tmp_path, hash="sha256")
    st_default = open_stack(tmp_path)
    assert st_default.hash == "sha1"
    assert st_default.read_ref("master") == RefRecord.symref("master", 1, "target")
    assert open_stack(tmp_path, hash="sha1").hash == "sha1"


def test_sha256_stack_refuses_sha1(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    st = open_stack(d, hash="sha256")
    assert st.hash == "sha256"
    add_ref(st, "refs/heads/a", oid(1, "sha256"))
    with pytest.raises(FormatError):
        open_stack(d, hash="sha1")
    st2 = open_stack(d)
    assert st2.hash == "sha256"
    assert st2.read_ref("refs/heads/a").value == oid(1, "sha256")
    assert st2.tables[0].version == 2


@pytest.mark.parametrize("first, second", [("sha256", None), ("sha256", "sha1"),
                                           ("sha1", "sha256")])
def test_handle_never_mixes_hashes_into_a_stack(tmp_path, first, second):
    # Both handles open the stack while it is empty; the first then writes tables of
    # its hash. The second handle must not append a table of another hash (that would
    # make the stack unreadable for everyone): its reload fails, nothing is written.
    st_other = open_stack(tmp_path, **({} if second is None else {"hash": second}))
    st_first = open_stack(tmp_path, hash=first)
    add_ref(st_first, "refs/heads/a", oid(1, first))
    before = snapshot(tmp_path)
    mine = st_other.hash
    with pytest.raises(FormatError):
        with st_other.transaction() as tx:
            tx.create("refs/heads/b", oid(2, mine))
    with pytest.raises(FormatError):
        st_other.add(write_ref(lambda ui: RefRecord.val1("refs/heads/c", ui, oid(3, mine))),
                     reload_if_outdated=True)
    with pytest.raises(FormatError):
        st_other.reload()
    assert snapshot(tmp_path) == before
    fresh = open_stack(tmp_path)
    assert fresh.hash == first and [r.name for r in fresh.refs()] == ["refs/heads/a"]


def test_empty_stack_takes_hash_from_options(tmp_path):
    assert open_stack(tmp_path).hash == "sha1"
    assert open_stack(tmp_path, hash="sha256").hash == "sha256"


@pytest.mark.skipif("sha256" not in SCENARIOS, reason="Git fixtures missing")
def test_git_sha256_fixture_refuses_sha1(tmp_path):
    d = copy_fixture("sha256", tmp_path / "st")
    before = snapshot(d)
    with pytest.raises(FormatError):
        open_stack(d, hash="sha1")
    assert open_stack(d).hash == "sha256"
    assert snapshot(d) == before


@pytest.mark.skipif("tiny" not in SCENARIOS, reason="Git fixtures missing")
def test_git_sha1_fixture_refuses_sha256(tmp_path):
    d = copy_fixture("tiny", tmp_path / "st")
    with pytest.raises(FormatError):
        open_stack(d, hash="sha256")


# -- geometric compaction policy ----------------------------------------------------------------


@pytest.mark.parametrize("sizes, factor, expected", [
    # Git's suggest_compaction_segment test
    ([512, 64, 17, 16, 9, 9, 9, 16, 2, 16], 2, (1, 10)),
    # the examples in Git's comments
    ([64, 32, 16, 8, 4, 3, 1], 2, (0, 6)),
    ([128, 32, 16, 8, 4, 3, 1], 2, (1, 6)),
    # only the tail breaks the sequence, and merging it does not cascade
    ([100, 10, 1, 1], 2, (2, 4)),
    ([1000, 100, 10, 3, 2], 2, (3, 5)),
    # merging the tail makes the next table too small as well: everything goes
    ([64, 32, 16, 8, 4, 2, 2], 2, (0, 7)),
    ([64, 32, 16, 8, 8], 2, (0, 5)),
    # a big table right behind a small one: everything up to it
    ([4, 1, 8], 2, (0, 3)),
    # factor 3 needs more than factor 2
    ([27, 9, 3, 1], 3, (0, 0)),
    ([10, 4, 1], 3, (0, 2)),
    ([10, 4, 1], 2, (0, 0)),
    ([50, 10, 4, 1], 3, (1, 3)),
    ([50, 10, 4, 1], 2, (0, 0)),
    ([200, 30, 3, 2], 3, (2, 4)),
    ([27, 9, 5, 2], 3, (0, 4)),
    ([27, 9, 5, 2], 2, (0, 3)),
    # factor 0 means the default (2)
    ([3, 2], 0, (0, 2)),
    ([4, 2], 0, (0, 0)),
])
def test_suggest_compaction_segment(sizes, factor, expected):
    assert suggest_compaction_segment(sizes, factor) == expected


@pytest.mark.parametrize("sizes", [[], [5], [64, 32, 16, 8, 4, 2], [2, 1], [1 << 40, 1],
                                   [64, 32, 16, 8, 4, 2, 1]])
def test_suggest_compaction_segment_nothing(sizes):
    start, end = suggest_compaction_segment(sizes, 2)
    assert start == end


@pytest.mark.parametrize("factor", [2, 3, 5])
def test_suggest_compaction_segment_restores_the_sequence(factor):
    # Property: merging the suggested segment always leaves a geometric sequence (each
    # table at least `factor` times the next), and nothing is suggested for one.
    import random

    rnd = random.Random(factor)
    for _ in range(2000):
        sizes = [rnd.choice([1, 2, 3, 5, 8, 40, 300, 5000]) for _ in range(rnd.randint(0, 9))]
        start, end = suggest_compaction_segment(sizes, factor)
        assert 0 <= start <= end <= len(sizes)
        geometric = all(a >= b * factor for a, b in pairwise(sizes))
        assert (start == end) == geometric, (sizes, start, end)
        merged = sizes[:start] + ([sum(sizes[start:end])] if end > start else []) + sizes[end:]
        assert all(a >= b * factor for a, b in pairwise(merged)), (sizes, start, end)


def test_auto_compaction_keeps_table_count_logarithmic(tmp_path):
    # Git's test_reftable_stack__auto_compaction
    st = open_stack(tmp_path, auto_compact=False)
    n = 100
    for i in range(n):
        st.add(write_ref(lambda ui, i=i: RefRecord.symref(f"branch{i:04d}", ui, "master")))
        st.auto_compact()
        assert i < 2 or len(st.tables) < 2 * fastlog(i, 2), (i, len(st.tables))
    assert st.stats.entries_written < n * fastlog(n, 2)
    assert [r.name for r in st.refs()] == [f"branch{i:04d}" for i in range(n)]
    assert_clean(tmp_path)


def test_auto_compaction_runs_after_commit_and_stays_logarithmic(tmp_path):
    st = open_stack(tmp_path)
    n = 100
    for i in range(n):
        add_ref(st, f"refs/heads/b{i:04d}", oid(i))
        assert i < 2 or len(st.tables) < 2 * fastlog(i, 2), (i, len(st.tables))
    sizes = st.table_sizes_for_compaction()
    assert all(a >= 2 * b for a, b in pairwise(sizes)), sizes
    assert st.stats.attempts > 0 and st.stats.failures == 0
    assert sum(1 for _ in st.refs()) == n
    assert_clean(tmp_path)


def test_auto_compaction_factor(tmp_path):
    st = open_stack(tmp_path, geometric_factor=5)
    n = 100
    for i in range(n):
        add_ref(st, f"refs/heads/branch{i:04d}", oid(i))
        assert i < 5 or len(st.tables) < 5 * fastlog(i, 5), (i, len(st.tables))
    sizes = st.table_sizes_for_compaction()
    assert all(a >= 5 * b for a, b in pairwise(sizes)), sizes


def test_addition_performs_auto_compaction(tmp_path):
    # Git's test_reftable_stack__add_performs_auto_compaction
    st = open_stack(tmp_path)
    n = 20
    for i in range(n + 1):
        st.options.auto_compact = i == n
        st.add(write_ref(lambda ui, i=i: RefRecord.symref(f"branch-{i:04d}", ui, "master")))
        assert len(st.tables) == (i + 1 if i != n else 1)
    assert st.stats.attempts == 1


def test_transaction_performs_auto_compaction(tmp_path):
    st = open_stack(tmp_path)
    n = 20
    for i in range(n + 1):
        st.options.auto_compact = i == n
        with st.transaction() as tx:
            tx.symref(f"refs/heads/branch{i:04d}", "refs/heads/master")
        assert len(st.tables) == (i + 1 if i != n else 1)


def test_auto_compaction_disabled(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 10)
    assert len(st.tables) == 10 and st.stats.attempts == 0


def test_auto_compaction_fails_gracefully(tmp_path):
    # Git's test_reftable_stack__auto_compaction_fails_gracefully: lock the one table
    st = open_stack(tmp_path)
    st.add(write_ref(lambda ui: RefRecord.val1("refs/heads/master", ui, oid(1))))
    assert len(st.tables) == 1
    assert (st.stats.attempts, st.stats.failures) == (0, 0)
    (tmp_path / (st.names[0] + ".lock")).write_bytes(b"")
    st.add(write_ref(lambda ui: RefRecord.val1("refs/heads/master", ui, oid(2))))
    assert len(st.tables) == 2
    assert (st.stats.attempts, st.stats.failures) == (1, 1)
    assert isinstance(st.stats.last_auto_compaction_error, LockError)
    assert st.read_ref("refs/heads/master").value == oid(2)
    assert_clean(tmp_path, allow=[st.names[0] + ".lock"])


def test_auto_compaction_with_every_table_locked(tmp_path):
    st = open_stack(tmp_path)
    write_n_ref_tables(st, 3)
    locks = [hold_lock(tmp_path / n) for n in st.names]
    add_ref(st, "refs/heads/new", oid(99))  # only the new table is not locked
    assert len(st.tables) == 4
    assert (st.stats.attempts, st.stats.failures) == (1, 1)
    for lk in locks:
        lk.rollback()
    assert_clean(tmp_path)


def test_auto_compaction_with_tables_list_locked_does_not_fail_addition(tmp_path, monkeypatch):
    # Another process takes tables.list.lock right after our addition committed: the
    # auto-compaction that follows cannot start, the addition still succeeds.
    st = open_stack(tmp_path, lock_timeout_ms=0)
    write_n_ref_tables(st, 2)
    held = []
    real = st._auto_compact

    def locked_then_compact(snap):
        held.append(hold_lock(tmp_path / "tables.list"))
        return real(snap)

    monkeypatch.setattr(st, "_auto_compact", locked_then_compact)
    add_ref(st, "refs/heads/x", oid(7))
    assert held, "auto-compaction did not run"
    assert len(st.tables) == 3
    assert (st.stats.attempts, st.stats.failures) == (1, 1)
    assert isinstance(st.stats.last_auto_compaction_error, LockError)
    assert st.read_ref("refs/heads/x").value == oid(7)
    held[0].rollback()
    assert_clean(tmp_path)


def test_auto_compact_with_tables_list_locked_raises_lock_error(tmp_path):
    st = open_stack(tmp_path, lock_timeout_ms=0, auto_compact=False)
    write_n_ref_tables(st, 3)
    before = snapshot(tmp_path)
    with hold_lock(tmp_path / "tables.list"):
        with pytest.raises(LockError):
            st.auto_compact()
    assert (st.stats.attempts, st.stats.failures) == (1, 1)
    assert snapshot(tmp_path) == before
    assert st.auto_compact() is True
    assert len(st.names) == 1


# -- tables.list parsing and hostile content --------------------------------------------------

N1 = "0x000000000001-0x000000000001-0123abcd.ref"
N2 = "0x000000000002-0x000000000003-fedcba98.ref"


def test_parse_tables_list_tolerates_empty_lines_but_not_a_missing_newline():
    assert parse_tables_list(f"{N1}\n\n{N2}\n".encode()) == [N1, N2]
    assert parse_tables_list(f"\n{N1}\n{N2}\n\n".encode()) == [N1, N2]
    assert parse_tables_list(b"") == []
    assert parse_tables_list(b"\n\n") == []
    # 16-digit update indexes are names too
    long = "0x0000000000000001-0x00000000000000ff-00000000.ref"
    assert parse_tables_list(long.encode() + b"\n") == [long]
    # Git's reader refuses a last line without its newline (a list cut short)
    for data in (f"{N1}\n\n{N2}", long, f"{N1}\n{N2}\n\n{N1[:10]}"):
        with pytest.raises(FormatError, match="no newline"):
            parse_tables_list(data.encode())


@pytest.mark.parametrize("line", [
    b"/etc/passwd",
    b"/tmp/0x000000000001-0x000000000001-0123abcd.ref",
    b"../0x000000000001-0x000000000001-0123abcd.ref",
    b"../x.ref",
    b"a/b.ref",
    b"sub/0x000000000001-0x000000000001-0123abcd.ref",
    b"0x000000000001-0x000000000001-0123abcd.ref\0",
    b"0x000000000001-0x000000000001-0123abcd.ref\0../../etc/passwd",
    b"0x000000000001-0x000000000001-0123abcd.ref\r",
    b" 0x000000000001-0x000000000001-0123abcd.ref",
    b"0x000000000001-0x000000000001-0123ABCD.ref",
    b"0x000000000001-0x000000000001-0123abcd.ref.lock",
    b".tmp-1-0123abcd.ref",
    b".",
    b"..",
    b"garbage",
    b"x" * 100_000,
    "0x000000000001-0x000000000001-0123abcé.ref".encode(),
])
def test_hostile_tables_list_entry_is_format_error(tmp_path, line):
    with pytest.raises(FormatError):
        parse_tables_list(N1.encode() + b"\n" + line + b"\n")


def test_duplicate_tables_list_entry_is_format_error():
    with pytest.raises(FormatError):
        parse_tables_list(f"{N1}\n{N2}\n{N1}\n".encode())


def test_huge_tables_list_is_format_error(tmp_path):
    data = (N1 + "\n").encode() + b"\n" * (17 << 20)
    with pytest.raises(FormatError):
        parse_tables_list(data)
    (tmp_path / "tables.list").write_bytes(data)
    with pytest.raises(FormatError):
        read_tables_list(str(tmp_path))


def test_read_tables_list_of_missing_list(tmp_path):
    with pytest.raises(NotExistError):
        read_tables_list(str(tmp_path))


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "subdir", "nul", "huge", "duplicate"])
def test_hostile_tables_list_never_opens_anything_outside(tmp_path, monkeypatch, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = open_stack(outside)
    add_ref(victim, "refs/heads/secret", oid(666))
    vname = victim.names[0]
    d = tmp_path / "stack"
    d.mkdir()
    st = open_stack(d)
    add_ref(st, "refs/heads/main", oid(1))
    (d / "sub").mkdir()
    os.link(outside / vname, d / "sub" / vname)
    mine = st.names[0]
    bad = {
        "absolute": str(outside / vname).encode(),
        "dotdot": f"../outside/{vname}".encode(),
        "subdir": f"sub/{vname}".encode(),
        "nul": vname.encode() + b"\0",
        "huge": b"0x" + b"0" * 5000 + b".ref",
        "duplicate": mine.encode(),
    }[kind]
    (d / "tables.list").write_bytes(mine.encode() + b"\n" + bad + b"\n")
    opened = []
    real_open = Table.open

    def spy(path):
        opened.append(os.path.realpath(path))
        return real_open(path)

    monkeypatch.setattr(Table, "open", staticmethod(spy))
    with pytest.raises(FormatError):
        st.reload()
    with pytest.raises(FormatError):
        Stack.open(str(d))
    with pytest.raises(FormatError):
        st.new_addition()
    assert not (d / "tables.list.lock").exists()
    assert all(p.startswith(os.path.realpath(d) + os.sep) for p in opened), opened
    assert all(os.path.dirname(p) == os.path.realpath(d) for p in opened), opened
    # the old view stays usable
    assert st.read_ref("refs/heads/main").value == oid(1)
    assert st.read_ref("refs/heads/secret") is None


def test_stack_tolerates_empty_lines_and_refuses_a_missing_newline(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 3)
    names = st.names
    (tmp_path / "tables.list").write_bytes(
        ("\n" + names[0] + "\n\n" + names[1] + "\n" + names[2]).encode())
    with pytest.raises(FormatError, match="no newline"):
        open_stack(tmp_path, auto_compact=False)
    with pytest.raises(FormatError):
        st.reload()
    assert st.names == names  # the old view stays usable
    (tmp_path / "tables.list").write_bytes(
        ("\n" + names[0] + "\n\n" + names[1] + "\n" + names[2] + "\n").encode())
    st2 = open_stack(tmp_path, auto_compact=False)
    assert st2.names == names
    assert [r.name for r in st2.refs()] == [f"refs/heads/branch-{i:04d}" for i in range(3)]
    # the next writer rewrites the list in canonical form
    add_ref(st2, "refs/heads/x", oid(9))
    assert (tmp_path / "tables.list").read_bytes() == "".join(
        n + "\n" for n in st2.names).encode()


def test_overlapping_update_index_ranges_are_format_error(tmp_path):
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 2)
    a, b = st.names
    (tmp_path / "tables.list").write_bytes(f"{b}\n{a}\n".encode())
    with pytest.raises(FormatError):
        st.reload()
    assert st.names == [a, b]
    assert sum(1 for _ in st.refs()) == 2


def test_reload_with_missing_table_fails_cleanly(tmp_path):
    # Git's test_reftable_stack__reload_with_missing_table, with a well-formed name
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 2)
    it = st.refs()
    assert next(it).name == "refs/heads/branch-0000"
    missing = "0x000000000003-0x000000000003-deadbeef.ref"
    (tmp_path / "tables.list").write_bytes(
        (st.names[0] + "\n" + st.names[1] + "\n" + missing + "\n").encode())
    with pytest.raises(NotExistError):
        st.reload(timeout=0.05)
    assert len(st.tables) == 2
    assert next(it).name == "refs/heads/branch-0001"
    assert next(it, None) is None
    assert st.read_ref("refs/heads/branch-0000").value == oid(0)
    assert not st.is_up_to_date()
    with pytest.raises(OutdatedError):
        add_ref(st, "refs/heads/x", oid(5))


def test_reload_with_garbage_entry_keeps_old_tables(tmp_path):
    # the same with Git's "garbage" line: we refuse it as a bad name before opening
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 2)
    it = st.refs()
    (tmp_path / "tables.list").write_bytes(
        (st.names[0] + "\n" + st.names[1] + "\ngarbage\n").encode())
    with pytest.raises(FormatError):
        st.reload()
    assert len(st.tables) == 2
    assert [r.name for r in it] == ["refs/heads/branch-0000", "refs/heads/branch-0001"]


def test_reload_when_tables_list_vanished(tmp_path):
    # Like Git, a missing tables.list is an empty stack (not an error).
    st = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st, 1)
    held = st.tables[0]
    os.unlink(tmp_path / "tables.list")
    assert not st.is_up_to_date()
    assert st.reload() is True
    assert st.names == [] and st.read_ref("refs/heads/branch-0000") is None
    assert held.read_ref("refs/heads/branch-0000") is not None  # old handles keep working


def test_missing_tables_list_is_an_empty_stack_even_when_locked(tmp_path):
    open(tmp_path / "tables.list.lock", "w").close()  # someone is creating it
    st = open_stack(tmp_path, auto_compact=False, lock_timeout_ms=0)
    assert st.names == [] and list(st.refs()) == []


def test_reload_reuses_open_tables(tmp_path):
    st1 = open_stack(tmp_path, auto_compact=False)
    st2 = open_stack(tmp_path, auto_compact=False)
    write_n_ref_tables(st1, 2)
    st2.reload()
    first = st2.tables[0]
    add_ref(st1, "refs/heads/x", oid(9))
    assert st2.reload() is True
    assert st2.tables[0] is first and len(st2.tables) == 3


def test_closed_stack(tmp_path):
    st = open_stack(tmp_path)
    add_ref(st, "refs/heads/a", oid(1))
    with st:
        pass
    with pytest.raises(ApiError):
        st.reload()
    assert st.tables == []


def test_every_error_is_a_reftable_error(tmp_path):
    st = open_stack(tmp_path)
    for exc in (ApiError, FormatError, LockError, NotExistError, OutdatedError):
        assert issubclass(exc, ReftableError)
    with pytest.raises(ReftableError):
        st.add(write_ref(lambda ui: RefRecord.val1("b", 0, oid(1))))
