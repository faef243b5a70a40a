"""The Git verbs of the CLI beyond what the repository fixtures cover: option parsing
and exit statuses, for-each-ref patterns and formats, rev-parse's short names,
update-ref's modes and --stdin protocol, symbolic-ref, reflog subcommands."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from support.repos import add_worktree, git, git_env, make_repo

from reftable import Stack
from reftable.repository import Repository

A, B, C = "1" * 40, "2" * 40, "3" * 40
Z = "0" * 40


@pytest.fixture
def w(tmp_path):
    with git_env():
        make_repo(tmp_path / "w")
        yield tmp_path / "w"


def ok(path, *args, stdin=b""):
    r = git(path, *args, stdin=stdin)
    assert r.rc == 0, (args, r)
    return r.out


def test_usage_errors_exit_129(w):
    assert git(w, "update-ref", "-X", "refs/heads/a", A).rc == 129
    assert git(w, "update-ref", "refs/heads/a").rc == 129
    assert git(w, "symbolic-ref", "--bogus", "HEAD").rc == 129
    assert git(w, "check-ref-format").rc == 129
    assert git(w, "for-each-ref", "--sort=refname").rc == 129
    assert git(w, "--lock-timeout").rc == 129


def test_check_ref_format_needs_no_repository(tmp_path):
    assert git(tmp_path, "check-ref-format", "refs/heads/x").rc == 0
    assert git(tmp_path, "check-ref-format", "HEAD").rc == 1
    assert git(tmp_path, "check-ref-format", "--allow-onelevel", "HEAD").rc == 0
    assert git(tmp_path, "check-ref-format", "refs/heads/a..b").rc == 1
    assert git(tmp_path, "check-ref-format", "--refspec-pattern", "refs/heads/*").rc == 0
    r = git(tmp_path, "check-ref-format", "--normalize", "//refs//heads/x")
    assert (r.rc, r.out) == (0, "refs/heads/x\n")


def test_not_a_repository_is_fatal(tmp_path):
    r = git(tmp_path, "for-each-ref")
    assert r.rc == 128 and "not a git repository" in r.err


def test_for_each_ref_patterns_formats_and_root_refs(w):
    ok(w, "update-ref", "--stdin", stdin=(
        f"create refs/heads/main {A}\ncreate refs/heads/main-x {B}\n"
        f"create refs/heads/dir/a {B}\ncreate refs/tags/v1 {C}\ncreate ORIG_HEAD {A}\n"
        f"create NOT_ROOT {A}\n").encode())
    ok(w, "symbolic-ref", "HEAD", "refs/heads/main")
    ok(w, "symbolic-ref", "refs/heads/dangling", "refs/heads/nothing")
    fmt = "--format=%(refname)"
    assert ok(w, "for-each-ref", fmt).split() == [
        "refs/heads/dir/a", "refs/heads/main", "refs/heads/main-x", "refs/tags/v1"]
    assert ok(w, "for-each-ref", "--include-root-refs", fmt).split()[:2] == [
        "HEAD", "ORIG_HEAD"]
    assert ok(w, "for-each-ref", fmt, "refs/heads/main").split() == ["refs/heads/main"]
    assert ok(w, "for-each-ref", fmt, "refs/heads/").split()[:1] == ["refs/heads/dir/a"]
    assert ok(w, "for-each-ref", fmt, "refs/heads/m*").split() == [
        "refs/heads/main", "refs/heads/main-x"]
    assert ok(w, "for-each-ref", fmt, "refs/*").split() == []  # '*' stops at '/'
    assert ok(w, "for-each-ref", "--count=1", fmt).split() == ["refs/heads/dir/a"]
    assert ok(w, "for-each-ref", "--format=%(objectname:short)%%%(symref)%0a",
              "refs/heads/main") == "1111111%\n\n"
    r = git(w, "for-each-ref", "--format=%(bogus)")
    assert r.rc == 128


def test_default_format_reads_object_types(w):
    body = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nx\n"
    raw = b"commit %d\0" % len(body) + body
    import hashlib

    oid = hashlib.sha1(raw).hexdigest()
    obj = w / ".git" / "objects" / oid[:2]
    obj.mkdir()
    (obj / oid[2:]).write_bytes(zlib.compress(raw))
    ok(w, "update-ref", "refs/heads/main", oid)
    assert ok(w, "for-each-ref") == f"{oid} commit\trefs/heads/main\n"


def test_rev_parse_short_names_in_gits_order(w):
    ok(w, "update-ref", "--stdin", stdin=(
        f"create refs/heads/x {A}\ncreate refs/tags/x {B}\ncreate refs/remotes/o/HEAD {C}\n"
        f"create refs/heads/y {C}\n").encode())
    assert ok(w, "rev-parse", "--verify", "x") == B + "\n"  # tags before heads
    assert ok(w, "rev-parse", "--verify", "heads/x") == A + "\n"  # refs/NAME
    assert ok(w, "rev-parse", "--verify", "o") == C + "\n"  # refs/remotes/NAME/HEAD
    assert ok(w, "rev-parse", "--verify", "y") == C + "\n"
    assert ok(w, "rev-parse", "--verify", A) == A + "\n"
    r = git(w, "rev-parse", "--verify", "-q", "nope")
    assert (r.rc, r.out, r.err) == (1, "", "")
    assert git(w, "rev-parse", "--verify", "nope").rc == 128


def test_update_ref_deref_old_values_and_delete(w):
    ok(w, "update-ref", "refs/heads/main", A)
    ok(w, "symbolic-ref", "HEAD", "refs/heads/main")
    ok(w, "update-ref", "-m", "via head", "HEAD", B, A)
    assert ok(w, "rev-parse", "--verify", "refs/heads/main") == B + "\n"
    assert ok(w, "symbolic-ref", "HEAD") == "refs/heads/main\n"
    assert git(w, "update-ref", "HEAD", C, A).rc == 128  # stale old value
    assert git(w, "update-ref", "refs/heads/new", A, "").rc == 0  # "" = must not exist
    assert git(w, "update-ref", "refs/heads/new", B, "").rc == 128
    ok(w, "update-ref", "--no-deref", "HEAD", C)
    assert git(w, "symbolic-ref", "-q", "HEAD").rc == 1
    ok(w, "update-ref", "-d", "refs/heads/new", A)
    ok(w, "update-ref", "refs/heads/new", A)
    ok(w, "update-ref", "-d", "refs/heads/new", Z)  # a null old value: any
    assert git(w, "rev-parse", "--verify", "-q", "refs/heads/new").rc == 1
    assert git(w, "update-ref", "-d", "refs/heads/main", A).rc == 1  # wrong old value


def test_update_ref_reflogs_follow_config_and_identity(w, monkeypatch):
    with git_env(GIT_COMMITTER_NAME="X Y", GIT_COMMITTER_EMAIL="x@y",
                 GIT_COMMITTER_DATE="1700000000 +0130"):
        ok(w, "update-ref", "-m", "one", "refs/heads/main", A)
        ok(w, "update-ref", "-m", "tag", "refs/tags/t", A)
        ok(w, "update-ref", "--create-reflog", "-m", "forced", "refs/custom/c", A)
    with Repository.open(str(w)) as repo:
        lg = repo.read_reflog("refs/heads/main")[0]
        assert (lg.name, lg.email, lg.time, lg.tz_offset, lg.message) == (
            "X Y", "x@y", 1700000000, 130, "one\n")
        assert not repo.reflog_exists("refs/tags/t")
        assert repo.reflog_exists("refs/custom/c")
    (w / ".git" / "config").write_text((w / ".git" / "config").read_text()
                                       + "[core]\n\tlogAllRefUpdates = false\n"
                                       + "[user]\n\tname = Conf\n\temail = c@f\n")
    with git_env(GIT_COMMITTER_DATE="1700000100 +0000"):
        monkeypatch.delenv("GIT_COMMITTER_NAME")
        monkeypatch.delenv("GIT_COMMITTER_EMAIL")
        ok(w, "update-ref", "refs/heads/other", A)
        ok(w, "update-ref", "-m", "two", "refs/heads/main", B)
    with Repository.open(str(w)) as repo:
        assert not repo.reflog_exists("refs/heads/other")
        assert repo.read_reflog("refs/heads/main")[0].name == "Conf"


def test_update_ref_stdin_protocol(w):
    ok(w, "update-ref", "--stdin", stdin=f"create refs/heads/a {A}\n".encode())
    out = ok(w, "update-ref", "--stdin", stdin=(
        f"start\nupdate refs/heads/a {B} {A}\ncreate \"refs/heads/q\\101\" {C}\n"
        f"verify refs/heads/nope\nprepare\ncommit\n").encode())
    assert out == "start: ok\nprepare: ok\ncommit: ok\n"
    assert ok(w, "rev-parse", "--verify", "refs/heads/qA") == C + "\n"
    r = git(w, "update-ref", "--stdin", stdin=f"verify refs/heads/a {A}\n".encode())
    assert r.rc == 128
    assert git(w, "update-ref", "--stdin", stdin=b"frob refs/heads/a\n").rc == 128
    assert git(w, "update-ref", "--stdin", stdin=f"create refs/heads/b {Z}\n".encode()).rc \
        == 128
    ok(w, "update-ref", "--stdin", "-z", stdin=(
        f"update refs/heads/a\0{C}\0\0delete refs/heads/qA\0{C}\0").encode())
    assert ok(w, "rev-parse", "--verify", "refs/heads/a") == C + "\n"
    assert git(w, "rev-parse", "--verify", "-q", "refs/heads/qA").rc == 1
    # option no-deref applies to the next command only
    ok(w, "symbolic-ref", "refs/heads/s", "refs/heads/a")
    ok(w, "update-ref", "--stdin", stdin=f"option no-deref\nupdate refs/heads/s {A}\n".encode())
    assert git(w, "symbolic-ref", "-q", "refs/heads/s").rc == 1
    assert ok(w, "rev-parse", "--verify", "refs/heads/a") == C + "\n"


def test_symbolic_ref(w):
    ok(w, "update-ref", "refs/heads/main", A)
    assert git(w, "symbolic-ref", "HEAD", "main").rc == 128  # HEAD outside refs/
    assert git(w, "symbolic-ref", "refs/heads/s", "refs/heads/a..b").rc == 128
    ok(w, "symbolic-ref", "-m", "move", "HEAD", "refs/heads/main")
    ok(w, "symbolic-ref", "refs/heads/s", "HEAD")
    assert ok(w, "symbolic-ref", "refs/heads/s") == "refs/heads/main\n"  # recursive
    assert ok(w, "symbolic-ref", "--no-recurse", "refs/heads/s") == "HEAD\n"
    assert ok(w, "symbolic-ref", "--short", "HEAD") == "main\n"
    assert git(w, "symbolic-ref", "refs/heads/main").rc == 128
    assert git(w, "symbolic-ref", "-q", "refs/heads/main").rc == 1
    ok(w, "symbolic-ref", "-d", "refs/heads/s")
    assert git(w, "symbolic-ref", "-q", "refs/heads/s").rc == 1
    assert git(w, "symbolic-ref", "-d", "HEAD").rc == 128


def test_reflog_subcommands(w):
    with git_env(GIT_COMMITTER_DATE="1700000000 +0000"):
        ok(w, "update-ref", "-m", "first", "refs/heads/main", A)
    with git_env(GIT_COMMITTER_DATE="1700000600 +0000"):
        ok(w, "update-ref", "-m", "second", "refs/heads/main", B)
        ok(w, "update-ref", "-m", "third", "refs/heads/main", C)
    assert ok(w, "reflog", "show", "--format=%H %gs %gd", "main").split("\n")[:-1] == [
        f"{C} third main@{{0}}", f"{B} second main@{{1}}", f"{A} first main@{{2}}"]
    assert ok(w, "reflog", "main") == (f"{C[:7]} main@{{0}}: third\n"
                                       f"{B[:7]} main@{{1}}: second\n"
                                       f"{A[:7]} main@{{2}}: first\n")
    assert ok(w, "reflog", "list") == "refs/heads/main\n"
    ok(w, "reflog", "delete", "refs/heads/main@{1}")
    assert ok(w, "reflog", "show", "--format=%gs", "main") == "third\nfirst\n"
    assert git(w, "reflog", "delete", "nope@{0}").rc == 1
    ok(w, "reflog", "expire", "--expire=1700000300", "refs/heads/main")
    assert ok(w, "reflog", "show", "--format=%gs", "main") == "third\n"
    ok(w, "reflog", "expire", "--expire=all", "--all")
    assert ok(w, "reflog", "show", "main") == ""
    assert git(w, "reflog", "exists", "refs/heads/main").rc == 0  # marker kept
    ok(w, "reflog", "drop", "refs/heads/main")
    assert git(w, "reflog", "exists", "refs/heads/main").rc == 1
    assert git(w, "reflog", "drop", "refs/heads/main").rc == 1
    assert git(w, "reflog", "exists", "bad..name").rc == 128
    assert git(w, "reflog", "expire", "--expire=yesterday-ish", "--all").rc == 128


def test_reflog_expire_all_reaches_other_worktrees(w):
    add_worktree(w / ".git", w.parent / "wt", "x")
    ok(w, "update-ref", "-m", "m", "refs/heads/main", A)
    ok(w.parent / "wt", "update-ref", "-m", "wt", "HEAD", B)
    assert ok(w, "reflog", "exists", "worktrees/x/HEAD") == ""
    assert ok(w, "reflog", "show", "--format=%gs", "worktrees/x/HEAD") == "wt\n"
    ok(w, "reflog", "expire", "--expire=all", "--single-worktree", "--all")
    assert ok(w, "reflog", "show", "--format=%gs", "worktrees/x/HEAD") == "wt\n"
    ok(w, "reflog", "expire", "--expire=all", "--all")
    assert ok(w, "reflog", "show", "--format=%gs", "worktrees/x/HEAD") == ""


def test_lock_timeout_option_reaches_the_stacks(w, monkeypatch):
    seen = []
    real = Stack.open.__func__  # type: ignore[attr-defined]

    def spy(cls, directory, options=None, **kw):
        seen.append(options.lock_timeout_ms)
        return real(cls, directory, options, **kw)

    monkeypatch.setattr(Stack, "open", classmethod(spy))
    ok(w, "--lock-timeout", "7", "update-ref", "refs/heads/a", A)
    ok(w, "-c", "reftable.lockTimeout=9", "update-ref", "refs/heads/b", A)
    assert seen == [7, 9]


def test_update_ref_reports_a_held_lock(w):
    lock = Path(w / ".git" / "reftable" / "tables.list.lock")
    lock.write_bytes(b"")
    r = git(w, "--lock-timeout=0", "update-ref", "refs/heads/a", A)
    assert r.rc == 128 and "refs/heads/a" in r.err


def test_pseudorefs_are_read_from_their_files(w):
    (w / ".git" / "FETCH_HEAD").write_text(f"{A}\t\tbranch 'main' of somewhere\n")
    assert ok(w, "rev-parse", "--verify", "FETCH_HEAD") == A + "\n"
    assert git(w, "rev-parse", "--verify", "-q", "MERGE_HEAD").rc == 1
    r = git(w, "update-ref", "FETCH_HEAD", B)
    assert r.rc == 128 and "pseudoref" in r.err


def test_update_ref_stdin_symref_commands(w):
    ok(w, "update-ref", "--stdin", stdin=(
        f"create refs/heads/a {A}\ncreate refs/heads/b {B}\n"
        "symref-create refs/heads/s refs/heads/a\n").encode())
    assert ok(w, "symbolic-ref", "refs/heads/s") == "refs/heads/a\n"
    # wrong old target, then the right one
    assert git(w, "update-ref", "--stdin", stdin=(
        b"symref-update refs/heads/s refs/heads/b ref refs/heads/b\n")).rc == 128
    ok(w, "update-ref", "--stdin", stdin=b"symref-verify refs/heads/s refs/heads/a\n")
    ok(w, "update-ref", "--stdin", stdin=(
        b"symref-update refs/heads/s refs/heads/b ref refs/heads/a\n"))
    assert ok(w, "symbolic-ref", "refs/heads/s") == "refs/heads/b\n"
    # -z: optional parts only when present
    ok(w, "update-ref", "--stdin", "-z", stdin=(
        b"symref-update refs/heads/t\0refs/heads/a\0oid\0" + Z.encode() + b"\0"
        b"symref-verify refs/heads/nope\0"
        b"symref-delete refs/heads/s\0refs/heads/b\0"))
    assert ok(w, "symbolic-ref", "refs/heads/t") == "refs/heads/a\n"
    assert git(w, "symbolic-ref", "-q", "refs/heads/s").rc == 1
    assert git(w, "update-ref", "--stdin", stdin=(
        b"symref-create refs/heads/t refs/heads/b\n")).rc == 128  # exists
    assert git(w, "update-ref", "--stdin", stdin=(
        b"symref-delete refs/heads/t refs/heads/b\n")).rc == 128  # wrong target
