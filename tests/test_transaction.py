"""Transactions: atomic multi-ref updates with expectations checked under the lock,
ref-name checks, reflog entries, peeled tags and symrefs."""

from __future__ import annotations

import time

import pytest
from support import ZERO, oid
from support.stacks import assert_clean, open_stack, snapshot

from reftable import ApiError, OutdatedError, RefNameError, RefValueType
from reftable.errors import ExpectationError
from reftable.stack import Stack
from reftable.transaction import ANY, LogEntry, local_tz_offset

ENTRY = LogEntry("C O Mitter", "committer@example.com", "push", 1_700_000_000, 130)


@pytest.fixture
def st(tmp_path) -> Stack:
    s = open_stack(tmp_path, auto_compact=False)
    with s.transaction() as tx:
        tx.create("refs/heads/main", oid(1))
        tx.create("refs/heads/topic", oid(2))
        tx.symref("HEAD", "refs/heads/main")
        tx.update("refs/tags/v1", oid(3), peeled=oid(4))
    return s


def values(st: Stack) -> dict[str, tuple]:
    return {r.name: (int(r.value_type), r.value, r.target_value, r.target) for r in st.refs()}


def test_one_table_per_transaction(st, tmp_path):
    assert len(st.names) == 1
    t = st.tables[0]
    assert (t.min_update_index, t.max_update_index) == (1, 1)
    assert [r.name for r in t.refs()] == ["HEAD", "refs/heads/main", "refs/heads/topic",
                                          "refs/tags/v1"]
    assert {r.update_index for r in t.refs()} == {1}
    with st.transaction() as tx:
        tx.update("refs/heads/main", oid(5), expect=oid(1))
        tx.delete("refs/heads/topic", expect=oid(2))
        tx.create("refs/heads/new", oid(6))
    assert len(st.names) == 2
    assert {r.update_index for r in st.tables[1].refs()} == {2}
    assert st.read_ref("refs/heads/main").value == oid(5)
    assert st.read_ref("refs/heads/topic") is None
    assert st.tables[1].read_ref("refs/heads/topic").is_deletion
    assert st.read_ref("refs/heads/new").value == oid(6)
    assert_clean(tmp_path)


def test_commit_returns_the_update_index(st):
    tx = st.transaction()
    tx.update("refs/heads/main", oid(7))
    assert tx.commit() == 2
    tx = st.transaction()
    tx.verify("refs/heads/main", oid(7))
    assert tx.commit() == 0  # nothing to write


def test_verify_only_transaction_writes_nothing(st, tmp_path):
    before = snapshot(tmp_path)
    with st.transaction() as tx:
        tx.verify("refs/heads/main", oid(1))
        tx.verify("refs/heads/missing")
    assert snapshot(tmp_path) == before


def test_any_expectation(st):
    with st.transaction() as tx:
        tx.update("refs/heads/main", oid(8), expect=ANY)
        tx.delete("refs/heads/topic", expect=ANY)
        tx.update("refs/heads/brand-new", oid(9))
    assert st.read_ref("refs/heads/main").value == oid(8)
    assert st.read_ref("refs/heads/topic") is None


def _fail_cases():
    return {
        "update-wrong-old": lambda tx: tx.update("refs/heads/main", oid(9), expect=oid(2)),
        "update-missing": lambda tx: tx.update("refs/heads/nope", oid(9), expect=oid(1)),
        "update-must-not-exist": lambda tx: tx.update("refs/heads/main", oid(9), expect=None),
        "create-exists": lambda tx: tx.create("refs/heads/main", oid(9)),
        "create-symref-exists": lambda tx: tx.create("HEAD", oid(9)),
        "delete-wrong-old": lambda tx: tx.delete("refs/heads/topic", expect=oid(1)),
        "delete-missing": lambda tx: tx.delete("refs/heads/nope", expect=oid(1)),
        "delete-must-not-exist": lambda tx: tx.delete("refs/heads/topic", expect=None),
        "verify-wrong": lambda tx: tx.verify("refs/heads/main", oid(2)),
        "verify-missing-but-exists": lambda tx: tx.verify("refs/heads/main"),
        "verify-exists-but-missing": lambda tx: tx.verify("refs/heads/nope", oid(1)),
        "verify-peeled-is-not-the-value": lambda tx: tx.verify("refs/tags/v1", oid(4)),
        "symref-wrong-target": lambda tx: tx.symref("HEAD", "refs/heads/topic",
                                                    expect_target="refs/heads/topic"),
        "symref-target-of-non-symref": lambda tx: tx.symref(
            "refs/heads/main", "refs/heads/topic", expect_target="refs/heads/main"),
        "symref-target-missing": lambda tx: tx.symref("refs/heads/x", "refs/heads/main",
                                                      expect_target="refs/heads/main"),
        "symref-oid-of-symref": lambda tx: tx.symref("HEAD", "refs/heads/topic",
                                                     expect=oid(1)),
        "symref-must-not-exist": lambda tx: tx.symref("HEAD", "refs/heads/topic",
                                                      expect=None),
    }


@pytest.mark.parametrize("case", sorted(_fail_cases()))
def test_failed_expectation_leaves_the_stack_untouched(st, tmp_path, case):
    before = snapshot(tmp_path)
    view = values(st)
    tx = st.transaction(log=ENTRY)
    tx.update("refs/heads/unrelated", oid(42))  # a good update in the same transaction
    _fail_cases()[case](tx)
    with pytest.raises(ExpectationError) as ei:
        tx.commit()
    assert ei.value.refname is not None and ei.value.refname != "refs/heads/unrelated"
    assert snapshot(tmp_path) == before
    assert values(st) == view
    with pytest.raises(ApiError):
        tx.commit()  # finished
    # the stack is still fine for the next writer
    with st.transaction() as tx2:
        tx2.create("refs/heads/after", oid(43))
    assert st.read_ref("refs/heads/unrelated") is None
    assert_clean(tmp_path)


def test_expectation_failure_in_context_manager(st, tmp_path):
    before = snapshot(tmp_path)
    with pytest.raises(ExpectationError):
        with st.transaction() as tx:
            tx.update("refs/heads/main", oid(9), expect=oid(3))
    assert snapshot(tmp_path) == before


def test_exception_in_with_block_aborts(st, tmp_path):
    before = snapshot(tmp_path)
    with pytest.raises(KeyError):
        with st.transaction() as tx:
            tx.update("refs/heads/main", oid(9))
            raise KeyError("boom")
    assert snapshot(tmp_path) == before
    with pytest.raises(ApiError):
        tx.update("refs/heads/main", oid(9))


def test_abort(st, tmp_path):
    before = snapshot(tmp_path)
    tx = st.transaction()
    tx.update("refs/heads/main", oid(9))
    tx.abort()
    with pytest.raises(ApiError):
        tx.commit()
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("second", ["update", "delete", "verify", "symref", "create"])
def test_duplicate_ref_in_one_transaction_is_api_error(st, second):
    tx = st.transaction()
    tx.update("refs/heads/main", oid(9))
    with pytest.raises(ApiError):
        {"update": lambda: tx.update("refs/heads/main", oid(10)),
         "delete": lambda: tx.delete("refs/heads/main"),
         "verify": lambda: tx.verify("refs/heads/main", oid(1)),
         "symref": lambda: tx.symref("refs/heads/main", "refs/heads/topic"),
         "create": lambda: tx.create("refs/heads/main", oid(10))}[second]()
    # bytes and str name the same ref
    with pytest.raises(ApiError):
        tx.update(b"refs/heads/main", oid(10))


# Names every write refuses (bad for check-ref-format *and* not safe)
BAD_NAMES = ["", "refs/heads/", "/refs/heads/a", "refs//heads/a", "refs/heads/./a",
             "refs/heads/../../a", "@", "refs/heads/a\0b", "FETCH_HEAD", "MERGE_HEAD",
             ".", "..", "refs/"]
# Names Git refuses to write an object id under but accepts for deletion and as a
# symref's name (refname_is_safe): ``git symbolic-ref refs/heads/a..b ...`` works.
UNSAFE_VALUE_NAMES = ["refs/heads/a..b", "refs/heads/a.lock", "refs/heads/x.lock/y",
                      "refs/heads/a b", "refs/heads/a~1", "refs/heads/a^", "refs/heads/a:b",
                      "refs/heads/a?", "refs/heads/a*", "refs/heads/a[", "refs/heads/a\\b",
                      "refs/heads/.hidden", "refs/heads/a.", "refs/heads/a@{1}",
                      "refs/heads/a\x01", "refs/heads/a\x7f", "refs/heads/a\n"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_ref_names_are_refused(st, tmp_path, name):
    tx = st.transaction()
    with pytest.raises(RefNameError):
        tx.update(name, oid(1))
    with pytest.raises(RefNameError):
        tx.delete(name)
    with pytest.raises(RefNameError):
        tx.verify(name)
    with pytest.raises(RefNameError):
        tx.symref(name, "refs/heads/main")
    with pytest.raises(RefNameError):
        tx.create(name, oid(1))


@pytest.mark.parametrize("name", UNSAFE_VALUE_NAMES)
def test_value_writes_need_well_formed_names(st, name):
    """Git's split: an object id needs check-ref-format's rule, a symref's name and a
    deletion only need a safe name; a symref's target must be well formed."""
    tx = st.transaction()
    with pytest.raises(RefNameError):
        tx.update(name, oid(1))
    with pytest.raises(RefNameError):
        tx.symref("refs/heads/ok", name)
    tx.delete(name)
    tx.abort()
    with st.transaction() as tx:
        tx.symref(name, "refs/heads/main")
    assert st.read_ref(name).target == "refs/heads/main"


@pytest.mark.parametrize("name", ["foo", "main", "FOO1", "Foo-Bar",
                                  "main-worktree/HEAD", "x/y"])
def test_one_level_names_take_object_ids(st, name):
    """``git update-ref foo OID`` works (check-ref-format --allow-onelevel); the same
    names are not safe as symref names."""
    with st.transaction() as tx:
        tx.update(name, oid(5))
    assert st.read_ref(name).value == oid(5)
    with pytest.raises(RefNameError):
        st.transaction().symref(name, "refs/heads/main")


@pytest.mark.parametrize("name", ["HEAD", "ORIG_HEAD", "refs/heads/a.b", "refs/heads/a@b",
                                  "refs/heads/feature/x-1", "refs/heads/ünïcödé",
                                  "refs/tags/v1.0", "refs/heads/" + "x" * 200])
def test_good_ref_names(st, name):
    with st.transaction() as tx:
        tx.update(name, oid(77))
    assert st.read_ref(name).value == oid(77)


def test_ref_names_as_bytes_and_oids_as_hex(st):
    with st.transaction() as tx:
        tx.update(b"refs/heads/bytes", oid(5).hex(), expect=None)
    assert st.read_ref("refs/heads/bytes").value == oid(5)
    with st.transaction() as tx:
        tx.update("refs/heads/bytes", oid(6), expect=oid(5).hex())
    assert st.read_ref(b"refs/heads/bytes").value == oid(6)


def test_bad_object_ids(st):
    tx = st.transaction()
    with pytest.raises(ValueError):
        tx.update("refs/heads/main", b"\1" * 32)  # SHA-256 size in a SHA-1 stack
    with pytest.raises(ValueError):
        tx.update("refs/heads/main", "zz" * 20)
    with pytest.raises(ValueError):
        tx.update("refs/heads/main", oid(1), expect="1234")


def test_sha256_transactions(tmp_path):
    st = open_stack(tmp_path, hash="sha256")
    with st.transaction(log=ENTRY) as tx:
        tx.create("refs/heads/main", oid(1, "sha256"), peeled=oid(2, "sha256"))
    rec = st.read_ref("refs/heads/main")
    assert rec.value == oid(1, "sha256") and rec.target_value == oid(2, "sha256")
    (lg,) = st.logs()
    assert lg.old_id == ZERO["sha256"] and lg.new_id == oid(1, "sha256")
    with pytest.raises(ValueError):
        st.transaction().update("refs/heads/x", oid(1))  # SHA-1 size


# -- reflogs --------------------------------------------------------------------------------------


def test_reflog_old_ids_come_from_the_current_values(st):
    with st.transaction(log=ENTRY) as tx:
        tx.update("refs/heads/main", oid(10))  # was oid(1)
        tx.delete("refs/heads/topic")  # was oid(2); its reflog goes with it
        tx.create("refs/heads/fresh", oid(11))  # did not exist
        tx.update("refs/tags/v1", oid(12))  # was a peeled tag at oid(3)
        tx.update("HEAD", oid(13))  # was a symref: no old object id
    ui = st.next_update_index() - 1
    logs = {lg.refname: lg for lg in st.logs()}
    zero = ZERO["sha1"]
    assert (logs["refs/heads/main"].old_id, logs["refs/heads/main"].new_id) == (oid(1), oid(10))
    assert "refs/heads/topic" not in logs  # deleting a ref deletes its reflog, as in Git
    assert (logs["refs/heads/fresh"].old_id, logs["refs/heads/fresh"].new_id) == (zero, oid(11))
    assert logs["refs/tags/v1"].old_id == oid(3)
    assert logs["HEAD"].old_id == zero
    for lg in logs.values():
        assert lg.update_index == ui
        assert (lg.name, lg.email, lg.time, lg.tz_offset) == (ENTRY.name, ENTRY.email,
                                                              ENTRY.time, ENTRY.tz_offset)
        assert lg.message == "push\n"  # normalised: one line ending in a newline


def test_old_id_is_read_under_the_lock(tmp_path):
    st1 = open_stack(tmp_path)
    st2 = open_stack(tmp_path)
    with st1.transaction() as tx:
        tx.create("refs/heads/main", oid(1))
    # st2 never loaded that table; its log entry must still name oid(1) as old value
    with st2.transaction(log=ENTRY) as tx:
        tx.update("refs/heads/main", oid(2))
    (lg,) = st2.logs("refs/heads/main")
    assert lg.old_id == oid(1)


def test_per_update_log_entry_and_default(st):
    mine = LogEntry("Me", "me@example.com", "mine", 1_600_000_000, -930)
    with st.transaction(log=ENTRY) as tx:
        tx.update("refs/heads/main", oid(10), log=mine)
        tx.update("refs/heads/topic", oid(11))
    logs = {lg.refname: lg for lg in st.logs()}
    assert (logs["refs/heads/main"].name, logs["refs/heads/main"].tz_offset) == ("Me", -930)
    assert logs["refs/heads/main"].message == "mine\n"
    assert logs["refs/heads/topic"].name == ENTRY.name


def test_no_log_without_log_entry_and_symrefs_log_resolved_ids(st):
    assert list(st.logs()) == []
    with st.transaction() as tx:
        tx.update("refs/heads/other", oid(9))
    assert list(st.logs()) == []  # no entry without a LogEntry
    with st.transaction(log=ENTRY) as tx:
        tx.symref("refs/heads/alias", "refs/heads/main")
        tx.update("refs/heads/main", oid(10))
    logs = {lg.refname: lg for lg in st.logs()}
    assert sorted(logs) == ["refs/heads/alias", "refs/heads/main"]
    # the symref's entry records what it resolved to before and after (read under the
    # lock, before this transaction's own updates)
    assert logs["refs/heads/alias"].old_id == ZERO["sha1"]


def test_log_time_defaults_to_now_and_local_timezone(st):
    before = int(time.time())
    with st.transaction(log=LogEntry("N", "n@example.com", "now")) as tx:
        tx.update("refs/heads/main", oid(10))
    after = int(time.time())
    (lg,) = st.logs()
    assert before <= lg.time <= after
    assert lg.tz_offset == local_tz_offset(lg.time)


def test_multi_line_log_message(tmp_path):
    st = open_stack(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(ApiError):
        with st.transaction(log=LogEntry("A", "a@b", "one\ntwo", 1, 0)) as tx:
            tx.update("refs/heads/main", oid(1))
    assert snapshot(tmp_path) == before
    exact = open_stack(tmp_path, exact_log_message=True)
    with exact.transaction(log=LogEntry("A", "a@b", "one\ntwo", 1, 0)) as tx:
        tx.update("refs/heads/main", oid(1))
    assert [lg.message for lg in exact.logs()] == ["one\ntwo"]


@pytest.mark.parametrize("offset", [-930, 0, 100, 1400, -1200])
def test_timezones_round_trip(tmp_path, offset):
    st = open_stack(tmp_path)
    with st.transaction(log=LogEntry("A", "a@b", "m", 1, offset)) as tx:
        tx.update("refs/heads/main", oid(1))
    assert next(st.logs()).tz_offset == offset


# -- peeled tags and symrefs ---------------------------------------------------------------------


def test_peeled_tags(st):
    rec = st.read_ref("refs/tags/v1")
    assert rec.value_type == RefValueType.VAL2
    assert (rec.value, rec.peeled) == (oid(3), oid(4))
    assert [r.name for r in st.refs_pointing_at(oid(4))] == ["refs/tags/v1"]
    assert [r.name for r in st.refs_pointing_at(oid(3))] == ["refs/tags/v1"]
    with st.transaction() as tx:
        tx.update("refs/tags/v1", oid(5), expect=oid(3), peeled=oid(6))  # expect the tag
    rec = st.read_ref("refs/tags/v1")
    assert (rec.value, rec.target_value) == (oid(5), oid(6))
    assert st.refs_pointing_at(oid(4)) == []
    st.compact_all()
    assert st.read_ref("refs/tags/v1").target_value == oid(6)


def test_symrefs(st):
    head = st.read_ref("HEAD")
    assert head.value_type == RefValueType.SYMREF and head.target == "refs/heads/main"
    assert head.value is None
    with st.transaction() as tx:
        tx.symref("HEAD", "refs/heads/topic", expect_target="refs/heads/main")
    assert st.read_ref("HEAD").target == "refs/heads/topic"
    # a dangling symref is fine, and a symref can be replaced by a value
    with st.transaction() as tx:
        tx.symref("refs/heads/dangling", "refs/heads/nowhere", expect=None)
    with st.transaction() as tx:
        tx.update("HEAD", oid(9))
    assert st.read_ref("HEAD").value == oid(9)
    assert st.read_ref("refs/heads/dangling").target == "refs/heads/nowhere"


def test_outdated_handle_without_reload(tmp_path):
    st1 = open_stack(tmp_path)
    st2 = open_stack(tmp_path)
    with st1.transaction() as tx:
        tx.create("refs/heads/a", oid(1))
    before = snapshot(tmp_path)
    tx = st2.transaction(reload_if_outdated=False)
    tx.create("refs/heads/b", oid(2))
    with pytest.raises(OutdatedError):
        tx.commit()
    assert snapshot(tmp_path) == before
    with st2.transaction() as tx:  # reload_if_outdated is the default
        tx.create("refs/heads/b", oid(2))
    assert {r.name for r in st2.refs()} == {"refs/heads/a", "refs/heads/b"}


def test_many_refs_in_one_transaction(tmp_path):
    st = open_stack(tmp_path)
    names = [f"refs/heads/b{i:05d}" for i in range(2000)]
    with st.transaction(log=ENTRY) as tx:
        for i, n in enumerate(reversed(names)):  # any order in, sorted on disk
            tx.create(n, oid(i))
    assert len(st.names) == 1
    assert [r.name for r in st.refs()] == names
    assert sum(1 for _ in st.logs()) == 2000


def test_delete_removes_the_reflog_with_tombstones(st):
    with st.transaction(log=ENTRY) as tx:
        tx.update("refs/heads/topic", oid(20))
    before = [lg.update_index for lg in st.logs("refs/heads/topic")]
    assert before
    with st.transaction(log=ENTRY) as tx:
        tx.delete("refs/heads/topic")
    assert list(st.logs("refs/heads/topic")) == []
    top = st.tables[-1]
    tomb = [lg for lg in top.logs("refs/heads/topic")]
    assert [lg.update_index for lg in tomb] == sorted(before, reverse=True)
    assert all(lg.is_deletion for lg in tomb)


def test_symref_update_logs_the_move_between_resolved_ids(st):
    with st.transaction(log=ENTRY) as tx:
        tx.update("refs/heads/a", oid(30))
        tx.update("refs/heads/b", oid(31))
        tx.symref("HEAD", "refs/heads/a")
    with st.transaction() as tx:
        tx.symref("HEAD", "refs/heads/b", expect_target="refs/heads/a", log=ENTRY)
    (lg, *_) = st.logs("HEAD")
    assert (lg.old_id, lg.new_id) == (oid(30), oid(31))


def test_log_only_entry(st):
    with st.transaction() as tx:
        tx.update("refs/heads/a", oid(40), log=ENTRY)
        tx.log("HEAD", oid(39), oid(40), ENTRY)
    (lg, *_) = st.logs("HEAD")
    assert (lg.old_id, lg.new_id) == (oid(39), oid(40))


def test_directory_file_conflicts_are_refused_under_the_lock(st):
    from reftable import RefConflictError

    with st.transaction() as tx:
        tx.update("refs/heads/dir/leaf", oid(50))
    with pytest.raises(RefConflictError):
        with st.transaction() as tx:
            tx.update("refs/heads/dir", oid(51))
    with pytest.raises(RefConflictError):
        with st.transaction() as tx:
            tx.update("refs/heads/dir/leaf/deeper", oid(52))
    # deleting the blocker in the same transaction makes room
    with st.transaction() as tx:
        tx.delete("refs/heads/dir/leaf")
        tx.update("refs/heads/dir", oid(53))
    assert st.read_ref("refs/heads/dir").value == oid(53)
