"""reftable.Repository: discovery, config, routing, permissions, read-only opening."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from support.repos import add_worktree, git, git_env, make_repo

import reftable
from reftable import ConfigError, RepositoryError
from reftable.gitconfig import GitConfig
from reftable.repository import MAIN, Repository, discover, stack_options_from_config
from reftable.stack import Stack

A, B = "1" * 40, "2" * 40


@pytest.fixture(autouse=True)
def _env():
    with git_env():
        yield


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mode, p.stat().st_mtime_ns) for p in root.rglob("*")}


# -- discovery ----------------------------------------------------------------------


def test_discovers_work_tree_from_subdirectory_and_git_dir(tmp_path):
    g = make_repo(tmp_path / "w")
    (tmp_path / "w" / "sub" / "deeper").mkdir(parents=True)
    for start in ("w", "w/sub/deeper", "w/.git"):
        loc = discover(str(tmp_path / start))
        assert Path(loc.git_dir) == g and Path(loc.common_dir) == g
        assert loc.worktree_id is None
    assert discover(str(tmp_path / "w")).work_tree == str(tmp_path / "w")
    assert discover(str(tmp_path / "w/.git")).work_tree is None


def test_discovers_bare_gitfile_and_linked_worktree(tmp_path):
    bare = make_repo(tmp_path / "b.git", bare=True)
    with Repository.open(str(bare)) as repo:
        assert repo.is_bare and repo.work_tree is None
    g = make_repo(tmp_path / "sep")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / ".git").write_text("gitdir: ../sep/.git\n")
    with Repository.open(str(tmp_path / "work")) as repo:
        assert Path(repo.git_dir) == g and not repo.is_bare
    wt_git = add_worktree(g, tmp_path / "wt", "wt1")
    with Repository.open(str(tmp_path / "wt")) as repo:
        assert Path(repo.git_dir) == wt_git and Path(repo.common_dir) == g
        assert repo.worktree_id == "wt1" and repo.worktree_ids() == ["wt1"]


def test_not_a_repository_and_bad_gitfile(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(RepositoryError, match="not a git repository"):
        discover(str(tmp_path / "plain"), upwards=False)
    (tmp_path / "plain" / ".git").write_text("gitdir: ../nowhere\n")
    with pytest.raises(RepositoryError, match="not a git repository"):
        discover(str(tmp_path / "plain"))
    (tmp_path / "plain" / ".git").write_text("garbage\n")
    with pytest.raises(RepositoryError, match="invalid gitfile"):
        discover(str(tmp_path / "plain"))


def test_refuses_files_backend_naming_it(tmp_path):
    g = make_repo(tmp_path / "w")
    text = (g / "config").read_text().replace("refstorage = reftable", "refstorage = files")
    (g / "config").write_text(text)
    with pytest.raises(RepositoryError, match="'files' ref storage"):
        Repository.open(str(tmp_path / "w"))
    (g / "config").write_text("[core]\n\trepositoryformatversion = 0\n")
    with pytest.raises(RepositoryError, match="'files'"):
        Repository.open(str(tmp_path / "w"))
    r = git(tmp_path / "w", "for-each-ref")
    assert r.rc == 128 and "files" in r.err


# -- config ----------------------------------------------------------------------------


@pytest.mark.parametrize("key,value,message", [
    ("reftable.blockSize", "16777216", "cannot exceed 16MB"),
    ("reftable.restartInterval", "65536", "cannot exceed 65535"),
    ("reftable.geometricFactor", "256", "cannot exceed 255"),
    ("reftable.lockTimeout", "-2", "negative values other than -1"),
    ("reftable.blockSize", "x", "invalid unit"),
    ("reftable.indexObjects", "maybe", "bad boolean"),
])
def test_config_limits_are_errors(key, value, message):
    cfg = GitConfig().with_overrides([f"{key}={value}"])
    with pytest.raises(ConfigError, match=message):
        stack_options_from_config(cfg, hash="sha1", env={})


def test_config_to_stack_options():
    cfg = GitConfig().with_overrides([
        "reftable.blockSize=1k", "reftable.restartInterval=3", "reftable.indexObjects=no",
        "reftable.geometricFactor=3", "reftable.lockTimeout=-1", "core.fsync=none",
        "core.sharedRepository=group"])
    o = stack_options_from_config(cfg, hash="sha256", umask=0o077, env={})
    assert (o.hash, o.block_size, o.restart_interval, o.index_objects) == ("sha256", 1024, 3,
                                                                           False)
    assert (o.geometric_factor, o.lock_timeout_ms, o.fsync) == (3, -1, False)
    assert o.permissions == 0o660
    d = stack_options_from_config(GitConfig(), hash="sha1", env={
        "GIT_TEST_REFTABLE_AUTOCOMPACTION": "false"})
    assert (d.block_size, d.lock_timeout_ms, d.permissions, d.fsync, d.auto_compact) == (
        4096, 100, None, True, False)
    for value, fsync in [("-reference", False), ("objects", False), ("committed", True),
                         ("ref", True), ("all,-reference", True), ("none", False),
                         ("none,reference", True), ("added", True)]:
        opts = stack_options_from_config(GitConfig().with_overrides(
            [f"core.fsync={value}"]), hash="sha1", env={})
        assert opts.fsync is fsync, value


def test_worktree_config_only_with_the_extension(tmp_path):
    g = make_repo(tmp_path / "w")
    add_worktree(g, tmp_path / "wt", "x")
    (g / "worktrees" / "x" / "config.worktree").write_text("[reftable]\n\tblockSize = 2048\n")
    with Repository.open(str(tmp_path / "wt")) as repo:
        assert repo.options.block_size == 4096
    with open(g / "config", "a") as f:
        f.write("\tworktreeConfig = true\n")
    with Repository.open(str(tmp_path / "wt")) as repo:
        assert repo.options.block_size == 2048
    with Repository.open(str(tmp_path / "w")) as repo:
        assert repo.options.block_size == 4096


def test_overrides_and_lock_timeout(tmp_path):
    make_repo(tmp_path / "w", "[reftable]\n\tlockTimeout = 5000\n")
    with Repository.open(str(tmp_path / "w")) as repo:
        assert repo.options.lock_timeout_ms == 5000
    with Repository.open(str(tmp_path / "w"), lock_timeout_ms=0,
                         config_overrides=["reftable.blockSize=512"]) as repo:
        assert (repo.options.lock_timeout_ms, repo.options.block_size) == (0, 512)
    with git_env(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="reftable.restartInterval",
                 GIT_CONFIG_VALUE_0="7"), Repository.open(str(tmp_path / "w")) as repo:
        assert repo.options.restart_interval == 7


# -- routing --------------------------------------------------------------------------


@pytest.mark.parametrize("name,here,where", [
    ("HEAD", "wt", ("wt", "HEAD")),
    ("ORIG_HEAD", MAIN, (MAIN, "ORIG_HEAD")),
    ("refs/bisect/x", "wt", ("wt", "refs/bisect/x")),
    ("refs/worktree/x", "wt", ("wt", "refs/worktree/x")),
    ("refs/rewritten/x", "wt", ("wt", "refs/rewritten/x")),
    ("refs/heads/main", "wt", (MAIN, "refs/heads/main")),
    ("main-worktree/HEAD", "wt", (MAIN, "HEAD")),
    ("main-worktree/refs/bisect/x", "wt", (MAIN, "refs/bisect/x")),
    ("main-worktree/refs/heads/x", "wt", (MAIN, "main-worktree/refs/heads/x")),
    ("worktrees/other/HEAD", MAIN, ("other", "HEAD")),
    ("worktrees/other/refs/worktree/y", "wt", ("other", "refs/worktree/y")),
    ("worktrees/other/refs/heads/y", "wt", (MAIN, "worktrees/other/refs/heads/y")),
])
def test_route(tmp_path, name, here, where):
    make_repo(tmp_path / "w")
    with Repository.open(str(tmp_path / "w")) as repo:
        assert repo.route(name, worktree=here) == where


def test_worktree_head_write_stays_in_worktree(tmp_path):
    g = make_repo(tmp_path / "w")
    wt_git = add_worktree(g, tmp_path / "wt", "x")
    assert git(tmp_path / "w", "update-ref", "refs/heads/main", A).rc == 0
    assert git(tmp_path / "w", "symbolic-ref", "HEAD", "refs/heads/main").rc == 0
    assert not (wt_git / "reftable").exists()
    assert git(tmp_path / "wt", "update-ref", "--no-deref", "HEAD", B).rc == 0
    assert (wt_git / "reftable" / "tables.list").exists()
    assert git(tmp_path / "w", "rev-parse", "--verify", "HEAD").out == A + "\n"
    assert git(tmp_path / "wt", "rev-parse", "--verify", "HEAD").out == B + "\n"
    assert git(tmp_path / "w", "rev-parse", "--verify", "worktrees/x/HEAD").out == B + "\n"
    assert git(tmp_path / "wt", "rev-parse", "--verify", "main-worktree/HEAD").out == \
        A + "\n"
    # writes through the prefixes store the bare name (Git's documented behaviour)
    assert git(tmp_path / "w", "update-ref", "worktrees/x/refs/bisect/b", A).rc == 0
    assert git(tmp_path / "wt", "rev-parse", "--verify", "refs/bisect/b").out == A + "\n"
    st = Stack.open(str(wt_git / "reftable"), create=False)
    assert {r.name for r in st.refs()} == {"HEAD", "refs/bisect/b"}
    st.close()
    # ids never name a path outside <common>/worktrees
    with Repository.open(str(tmp_path / "w")) as repo:
        assert repo.route("worktrees/../HEAD") == ("..", "HEAD")
        assert repo.read_ref("worktrees/../HEAD") is None
        with pytest.raises(RepositoryError):
            repo.stack("..", for_write=True)
    # a worktree that does not exist cannot be written
    r = git(tmp_path / "w", "update-ref", "worktrees/nope/HEAD", A)
    assert r.rc == 128 and not (g / "worktrees" / "nope").exists()


def test_new_worktree_stack_gets_gits_directory_mode(tmp_path):
    g = make_repo(tmp_path / "w", "[core]\n\tsharedRepository = group\n")
    wt_git = add_worktree(g, tmp_path / "wt", "x")
    old = os.umask(0o077)
    try:
        assert git(tmp_path / "wt", "update-ref", "refs/bisect/x", A).rc == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((wt_git / "reftable").stat().st_mode) == 0o2770
    assert stat.S_IMODE((wt_git / "reftable" / "tables.list").stat().st_mode) == 0o660


# -- reading never writes ---------------------------------------------------------------


def test_reading_creates_nothing(tmp_path):
    g = make_repo(tmp_path / "w")
    add_worktree(g, tmp_path / "wt", "x")
    (g / "reftable" / "tables.list").unlink()
    before = snapshot(tmp_path)
    for path in ("w", "wt"):
        for args in (["for-each-ref", "--include-root-refs"], ["reflog", "list"],
                     ["rev-parse", "--verify", "-q", "HEAD"], ["symbolic-ref", "-q", "HEAD"],
                     ["reflog", "exists", "HEAD"]):
            assert git(tmp_path / path, *args).rc in (0, 1)
        for args in (["refs", "."], ["log", "."], ["stats", "."]):
            r = git(tmp_path / path, *args)
            assert r.rc == 0, (path, args, r)
    assert snapshot(tmp_path) == before


def test_stack_tools_refuse_a_directory_that_is_neither(tmp_path):
    (tmp_path / "plain").mkdir()
    r = git(None, "refs", str(tmp_path / "plain"))
    assert r.rc == 1 and "not a reftable stack" in r.err
    assert os.listdir(tmp_path / "plain") == []
    assert git(None, "-C", str(tmp_path), "dump", "plain").rc == 1


def test_stack_tools_on_a_repository_use_its_config(tmp_path):
    make_repo(tmp_path / "w", "[reftable]\n\tblockSize = 1024\n")
    r = git(tmp_path / "w", "update", ".", stdin=f"create refs/heads/a {A}\n".encode())
    assert r.rc == 0, r
    st = Stack.open(str(tmp_path / "w" / ".git" / "reftable"), create=False)
    assert st.tables[-1].block_size == 1024
    st.close()
    r = git(tmp_path / "w", "refs", ".")
    assert r.out == f"{A} refs/heads/a\n"
    assert "refs/heads/a" in git(tmp_path / "w", "dump", ".").out
    assert git(tmp_path / "w", "verify", ".").out == "ok\n"


def test_stack_open_without_create(tmp_path):
    st = Stack.open(str(tmp_path), create=False)
    assert st.names == [] and os.listdir(tmp_path) == []
    with st.transaction() as tx:
        tx.update("refs/heads/a", A)
    assert sorted(os.listdir(tmp_path))[-1] == "tables.list"
    st.close()
    with pytest.raises(reftable.NotExistError):
        Stack.open(str(tmp_path / "nope"), create=False)


@pytest.mark.parametrize("failure", ["expectation", "lock"])
def test_a_failure_on_one_stack_commits_nothing_on_the_others(tmp_path, failure):
    """Like Git's backend, a transaction over the main and a worktree stack locks and
    checks both, and writes both tables, before committing either: a failed
    expectation or a lock held elsewhere on one stack leaves the other unchanged (and
    no table or lock file behind)."""
    g = make_repo(tmp_path / "w")
    wt_git = add_worktree(g, tmp_path / "wt", "x")
    assert git(tmp_path / "w", "update-ref", "refs/heads/main", A).rc == 0
    assert git(tmp_path / "wt", "update-ref", "refs/bisect/b", A).rc == 0
    main_dir, wt_dir = g / "reftable", wt_git / "reftable"
    before = {d: sorted(os.listdir(d)) for d in (main_dir, wt_dir)}
    if failure == "lock":
        (wt_dir / "tables.list.lock").write_bytes(b"")
    with Repository.open(str(tmp_path / "w")) as repo:
        tx = repo.transaction("both")
        tx.update("refs/heads/main", B, expect=A)               # the main stack
        tx.update("worktrees/x/refs/bisect/b", B,               # the worktree's
                  expect=B if failure == "expectation" else A)
        with pytest.raises(reftable.ExpectationError if failure == "expectation"
                           else reftable.LockError):
            tx.commit()
        assert repo.resolve("refs/heads/main") == bytes.fromhex(A)
        assert repo.resolve("refs/bisect/b", worktree="x") == bytes.fromhex(A)
    if failure == "lock":
        (wt_dir / "tables.list.lock").unlink()
    assert {d: sorted(os.listdir(d)) for d in (main_dir, wt_dir)} == before


def test_threads_sharing_a_repository_write_across_stacks_in_any_order(tmp_path):
    """Two threads on one repository run transactions over the main and a worktree
    stack, naming them in opposite orders: the stacks are locked in one order, so
    neither waits for the other forever, and every update lands."""
    import threading

    g = make_repo(tmp_path / "w")
    add_worktree(g, tmp_path / "wt", "x")
    assert git(tmp_path / "wt", "update-ref", "refs/bisect/start", A).rc == 0
    rounds = 30
    errors: list[BaseException] = []
    with Repository.open(str(tmp_path / "w")) as repo:
        start = threading.Barrier(2)

        def work(t: int) -> None:
            try:
                start.wait()
                for i in range(rounds):
                    names = [f"refs/heads/t{t}-{i}", f"worktrees/x/refs/bisect/t{t}-{i}"]
                    with repo.transaction(f"t{t}") as tx:
                        for name in (names if t == 0 else names[::-1]):
                            tx.update(name, A)
            except BaseException as e:  # noqa: BLE001 -- reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in (0, 1)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not any(th.is_alive() for th in threads), "transactions deadlocked"
        assert errors == []
        for t in (0, 1):
            for i in range(rounds):
                assert repo.resolve(f"refs/heads/t{t}-{i}") == bytes.fromhex(A)
                assert repo.resolve(f"refs/bisect/t{t}-{i}", worktree="x") == bytes.fromhex(A)
