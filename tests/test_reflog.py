"""Reflog operations (reftable.reflog) beyond the Git lifecycle fixture."""

from __future__ import annotations

import pytest
from support import ZERO, oid
from support.stacks import assert_clean

from reftable import ApiError, LogEntry, NotExistError, RefConflictError, Stack
from reftable.gitconfig import GitConfig
from reftable.reflog import (
    EXPIRE_ALL,
    LogPolicy,
    copy_ref,
    create_reflog,
    delete_reflog_entry,
    drop_reflog,
    expire_reflog,
    identity_from_env,
    is_existence_marker,
    list_reflogs,
    parse_git_date,
    read_reflog,
    reflog_exists,
    reflog_message,
    rename_ref,
)

NULL = ZERO["sha1"]


def entry(msg: str, t: int = 1_700_000_000) -> LogEntry:
    return LogEntry("C O Mitter", "c@example.com", msg, t, 100)


@pytest.fixture
def st(tmp_path):
    with Stack.open(tmp_path, auto_compact=False, fsync=False) as s:
        yield s


def _history(st: Stack, name: str = "refs/heads/main", n: int = 3) -> None:
    for i in range(1, n + 1):
        with st.transaction() as tx:
            tx.update(name, oid(i), log=entry(f"step {i}", 1_700_000_000 + i))


def test_create_reflog_writes_a_hidden_marker(st):
    assert not reflog_exists(st, "refs/heads/x")
    assert create_reflog(st, "refs/heads/x") is True
    assert reflog_exists(st, "refs/heads/x")
    assert read_reflog(st, "refs/heads/x") == []
    assert list_reflogs(st) == ["refs/heads/x"]
    [marker] = st.logs("refs/heads/x")
    assert is_existence_marker(marker) and marker.message == ""  # as Git writes it
    assert marker.update_index == st.next_update_index() - 1
    tables = list(st.names)
    assert create_reflog(st, "refs/heads/x") is False  # exists: nothing written
    _history(st, "refs/heads/main", 1)
    assert create_reflog(st, "refs/heads/main") is False
    assert st.names[:len(tables)] == tables


def test_expire_empties_into_a_marker_and_keeps_the_reflog(st):
    _history(st)
    pruned = expire_reflog(st, "refs/heads/main", expire=1_700_000_002 + 1)
    assert pruned == {"refs/heads/main": 2}
    assert [lg.message for lg in read_reflog(st, "refs/heads/main")] == ["step 3\n"]
    assert expire_reflog(st, None, expire=EXPIRE_ALL) == {"refs/heads/main": 1}
    assert read_reflog(st, "refs/heads/main") == []
    assert reflog_exists(st, "refs/heads/main")
    # an expire of the empty reflog writes a new marker; the old one stays
    expire_reflog(st, "refs/heads/main", expire=EXPIRE_ALL)
    assert sum(1 for _ in st.logs("refs/heads/main")) == 2
    assert read_reflog(st, "refs/heads/main") == []
    with pytest.raises(NotExistError):
        expire_reflog(st, "refs/heads/none", expire=EXPIRE_ALL)


def test_expire_with_a_predicate_rewrite_and_updateref(st):
    _history(st, n=4)
    # drop the newest entry (as --expire-unreachable would for an unreachable tip)
    expire_reflog(st, "refs/heads/main", should_prune=lambda lg: lg.new_id == oid(4),
                  rewrite=True, update_ref=True)
    kept = read_reflog(st, "refs/heads/main")
    assert [lg.new_id for lg in kept] == [oid(3), oid(2), oid(1)]
    assert st.read_ref("refs/heads/main").value == oid(3)  # --updateref
    # drop the middle one: --rewrite makes the next entry start where the last kept ended
    expire_reflog(st, "refs/heads/main", should_prune=lambda lg: lg.new_id == oid(2),
                  rewrite=True)
    kept = read_reflog(st, "refs/heads/main")
    assert [(lg.old_id, lg.new_id) for lg in kept] == [(oid(1), oid(3)), (NULL, oid(1))]


def test_expire_dry_run_writes_nothing(st):
    _history(st)
    tables = list(st.names)
    assert expire_reflog(st, None, expire=EXPIRE_ALL, dry_run=True) == {"refs/heads/main": 3}
    assert st.names == tables and len(read_reflog(st, "refs/heads/main")) == 3


def test_delete_entry_counts_newest_first(st):
    _history(st, n=4)
    assert delete_reflog_entry(st, "refs/heads/main", 1) is True
    assert [lg.message for lg in read_reflog(st, "refs/heads/main")] == \
        ["step 4\n", "step 2\n", "step 1\n"]
    assert delete_reflog_entry(st, "refs/heads/main", 0) is True
    assert delete_reflog_entry(st, "refs/heads/main", 5) is False  # out of range
    assert len(read_reflog(st, "refs/heads/main")) == 2
    with pytest.raises(NotExistError):
        delete_reflog_entry(st, "refs/heads/none", 0)
    with pytest.raises(ApiError):
        delete_reflog_entry(st, "refs/heads/main", -1)


def test_drop_removes_the_reflog_and_its_marker(st):
    _history(st)
    create_reflog(st, "refs/heads/empty")
    assert drop_reflog(st, "refs/heads/main") == 3
    assert drop_reflog(st, "refs/heads/empty") == 1
    assert not reflog_exists(st, "refs/heads/main")
    assert not reflog_exists(st, "refs/heads/empty")
    assert st.read_ref("refs/heads/main").value == oid(3)  # the ref stays
    with pytest.raises(NotExistError):
        drop_reflog(st, "refs/heads/main")


def test_list_reflogs_skips_malformed_names(st):
    with st.transaction() as tx:
        tx.symref("refs/heads/a..b", "refs/heads/main", log=entry("odd"))
        tx.update("refs/heads/main", oid(1), log=entry("one"))
    with st.transaction() as tx:
        tx.update("HEAD", oid(1), log=entry("h"))
    assert list_reflogs(st) == ["HEAD", "refs/heads/main"]
    assert reflog_exists(st, "refs/heads/a..b")


def test_rename_moves_value_and_reflog(st):
    _history(st, "refs/heads/topic", 2)
    with st.transaction() as tx:
        tx.symref("HEAD", "refs/heads/topic")
    ui = rename_ref(st, "refs/heads/topic", "refs/heads/new", entry("Branch: renamed"))
    assert st.read_ref("refs/heads/topic") is None
    assert st.read_ref("refs/heads/new").value == oid(2)
    assert st.read_ref("refs/heads/new").update_index == ui
    assert not reflog_exists(st, "refs/heads/topic")
    log = read_reflog(st, "refs/heads/new")
    assert [(lg.update_index, lg.old_id, lg.new_id) for lg in log] == [
        (ui, NULL, oid(2)), (ui - 1, oid(2), NULL), (2, oid(1), oid(2)), (1, NULL, oid(1))]
    # HEAD pointed to the old name: it logs the deletion as well (the symref itself is
    # the caller's to update)
    [head] = read_reflog(st, "HEAD")
    assert (head.update_index, head.old_id, head.new_id) == (ui - 1, oid(2), NULL)
    assert st.read_ref("HEAD").target == "refs/heads/topic"


def test_copy_keeps_the_source(st):
    _history(st, "refs/heads/a", 2)
    ui = copy_ref(st, "refs/heads/a", "refs/heads/b", entry("Branch: copied"))
    assert st.read_ref("refs/heads/a").value == st.read_ref("refs/heads/b").value == oid(2)
    assert len(read_reflog(st, "refs/heads/a")) == 2
    assert [lg.update_index for lg in read_reflog(st, "refs/heads/b")] == [ui, 2, 1]
    assert copy_ref(st, "refs/heads/a", "refs/heads/a", entry("x")) == 0


def test_rename_refusals(st):
    _history(st, "refs/heads/a", 1)
    _history(st, "refs/heads/dir/x", 1)
    with st.transaction() as tx:
        tx.symref("refs/heads/sym", "refs/heads/a")
    with pytest.raises(NotExistError):
        rename_ref(st, "refs/heads/none", "refs/heads/b", entry("m"))
    with pytest.raises(ApiError, match="symbolic ref"):
        rename_ref(st, "refs/heads/sym", "refs/heads/b", entry("m"))
    with pytest.raises(RefConflictError):
        rename_ref(st, "refs/heads/a", "refs/heads/dir", entry("m"))
    # renaming a/ into a/x is fine: a goes away in the same table
    rename_ref(st, "refs/heads/a", "refs/heads/a/x", entry("m"))
    assert st.read_ref("refs/heads/a/x").value == oid(1)
    assert_clean(st.directory)


@pytest.mark.parametrize("value,mode,bare,expect", [
    (None, "true", False, {"refs/heads/x", "refs/remotes/o/x", "refs/notes/x", "HEAD"}),
    (None, "false", True, set()),
    ("true", "true", True, {"refs/heads/x", "refs/remotes/o/x", "refs/notes/x", "HEAD"}),
    ("false", "false", False, set()),
    ("always", "always", False, {"refs/heads/x", "refs/remotes/o/x", "refs/notes/x", "HEAD",
                                 "refs/tags/x", "refs/x", "FOO_HEAD"}),
    ("ALWAYS", "always", False, {"refs/heads/x", "refs/remotes/o/x", "refs/notes/x",
                                 "HEAD", "refs/tags/x", "refs/x", "FOO_HEAD"}),
])
def test_log_policy_modes(st, value, mode, bare, expect):
    text = f"[core]\n\tbare = {str(bare).lower()}\n"
    if value is not None:
        text += f"\tlogAllRefUpdates = {value}\n"
    policy = LogPolicy.from_config(GitConfig.parse(text))
    assert policy.effective_mode == mode
    names = {"refs/heads/x", "refs/remotes/o/x", "refs/notes/x", "HEAD", "refs/tags/x",
             "refs/x", "FOO_HEAD"}
    assert {n for n in names if policy.should_write(st, n)} == expect
    create_reflog(st, "refs/tags/x")  # a ref with a reflog is always logged
    assert policy.should_write(st, "refs/tags/x")
    assert LogPolicy(mode, bare, force_create=True).should_write(st, "refs/x")


def test_policy_in_transactions(st):
    """Tags are not logged under core.logAllRefUpdates=true; --create-reflog logs
    anyway; a dangling symref target logs nothing; tx.log(force=True) always logs."""
    policy = LogPolicy("true")
    with st.transaction(log=entry("m"), log_policy=policy) as tx:
        tx.update("refs/heads/main", oid(1))
        tx.update("refs/tags/v1", oid(1))
        tx.symref("HEAD", "refs/heads/unborn")
        tx.log("refs/custom/x", NULL, oid(1), entry("skipped"))
        tx.log("refs/custom/forced", NULL, oid(1), entry("forced"), force=True)
    assert list_reflogs(st) == ["refs/custom/forced", "refs/heads/main"]
    with st.transaction(log=entry("m"), log_policy=LogPolicy("true", force_create=True)) as tx:
        tx.update("refs/tags/v2", oid(2))
    assert reflog_exists(st, "refs/tags/v2")
    with st.transaction(log=entry("to main"), log_policy=policy) as tx:
        tx.symref("HEAD", "refs/heads/main")
    [head] = read_reflog(st, "HEAD")
    assert (head.old_id, head.new_id, head.message) == (NULL, oid(1), "to main\n")
    # without a policy (the default) every update with an entry is logged, as before
    with st.transaction(log=entry("m")) as tx:
        tx.update("refs/tags/v3", oid(3))
        tx.symref("refs/heads/s", "refs/heads/unborn2")
    assert reflog_exists(st, "refs/tags/v3") and reflog_exists(st, "refs/heads/s")


def test_identity_from_env(monkeypatch):
    cfg = GitConfig.parse("[user]\n\tname = Cfg Name\n\temail = cfg@example.com\n")
    env = {"GIT_COMMITTER_NAME": "C O Mitter", "GIT_COMMITTER_EMAIL": "committer@example.com",
           "GIT_COMMITTER_DATE": "@1700000960 +0200"}
    assert identity_from_env(env, cfg) == ("C O Mitter", "committer@example.com",
                                           1700000960, 200)
    name, email, when, _ = identity_from_env({"GIT_COMMITTER_DATE": "1710000000 -0930"}, cfg)
    assert (name, email, when) == ("Cfg Name", "cfg@example.com", 1710000000)
    assert parse_git_date("1710000000 -0930") == (1710000000, -930)
    assert parse_git_date("@5") == (5, 0)
    with pytest.raises(ValueError):
        parse_git_date("2024-01-01")
    name, email, when, _ = identity_from_env({})
    assert name and "@" in email and when > 1_700_000_000


def test_reflog_message_is_normalised_as_git_does():
    assert reflog_message("  commit:\t two\n\nlines  ") == "commit: two lines"
    assert reflog_message(None) == reflog_message("") == reflog_message(" \n") == ""


def test_policy_can_ask_another_store_whether_a_reflog_exists(st):
    """Git writes ``worktrees/x/HEAD`` under that literal name but asks the worktree's
    own stack whether ``HEAD`` has a reflog: ``exists=`` lets a repository say so."""
    asked = []

    def exists(name: str) -> bool:
        asked.append(name)
        return name == "worktrees/x/HEAD"

    policy = LogPolicy("true", exists=exists)
    with st.transaction(log=entry("m"), log_policy=policy) as tx:
        tx.update("worktrees/x/HEAD", oid(1))
        tx.update("worktrees/x/ORIG_HEAD", oid(1))
    assert list_reflogs(st) == ["worktrees/x/HEAD"]
    assert asked == ["worktrees/x/HEAD", "worktrees/x/ORIG_HEAD"]
