"""Helpers for tests of the repository layer: lay out repositories as Git does, run
the CLI in-process in the environment Git's fixtures were made in."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "HOME": "/nonexistent",
    "TZ": "UTC",
    "GIT_AUTHOR_NAME": "A U Thor",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "C O Mitter",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
    "GIT_COMMITTER_DATE": "1710000000 +0000",
}


@contextlib.contextmanager
def git_env(**extra: str) -> Iterator[None]:
    """The environment the fixtures were made in (plus ``extra``)."""
    saved = dict(os.environ)
    for k in list(os.environ):
        if k.startswith("GIT_"):
            del os.environ[k]
    os.environ.update(GIT_ENV)
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Result:
    def __init__(self, rc: int, out: str, err: str):
        self.rc, self.out, self.err = rc, out, err

    @property
    def lines(self) -> list[str]:
        return self.out.split("\n")[:-1] if self.out else []

    def __repr__(self) -> str:
        return f"Result(rc={self.rc}, out={self.out!r}, err={self.err!r})"


def git(path: Any, *args: str, stdin: bytes = b"") -> Result:
    """``python -m reftable -C PATH ARGS...`` in-process: (status, stdout, stderr)."""
    from reftable import cli

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="surrogateescape")
    inp = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8", errors="surrogateescape")
    err = io.StringIO()
    old = sys.stdout, sys.stdin, sys.stderr
    sys.stdout, sys.stdin, sys.stderr = out, inp, err
    try:
        argv = (["-C", str(path)] if path is not None else []) + list(args)
        rc = cli.main(argv)
    finally:
        sys.stdout, sys.stdin, sys.stderr = old
    out.flush()
    raw = out.buffer.getvalue()  # type: ignore[attr-defined]
    return Result(rc, raw.decode("utf-8", "surrogateescape"), err.getvalue())


def make_repo(path: Path, config: str = "", *, bare: bool = False,
              object_format: str = "sha1") -> Path:
    """A minimal reftable repository as ``git init --ref-format=reftable`` lays it out
    (``HEAD`` stub, ``refs/heads`` file, ``objects/``, ``reftable/``); returns the
    git dir. ``config``: extra config text."""
    git_dir = path if bare else path / ".git"
    (git_dir / "objects").mkdir(parents=True)
    (git_dir / "refs").mkdir()
    (git_dir / "refs" / "heads").write_text("repository uses alternate refs storage\n")
    (git_dir / "HEAD").write_text("ref: refs/heads/.invalid\n")
    (git_dir / "reftable").mkdir()
    (git_dir / "reftable" / "tables.list").write_bytes(b"")
    fmt = "" if object_format == "sha1" else f"\tobjectformat = {object_format}\n"
    (git_dir / "config").write_text(
        "[core]\n\trepositoryformatversion = 1\n"
        f"\tbare = {'true' if bare else 'false'}\n"
        f"[extensions]\n\trefstorage = reftable\n{fmt}" + config)
    return git_dir


def add_worktree(git_dir: Path, wt_path: Path, wt_id: str) -> Path:
    """A linked worktree ``wt_id`` at ``wt_path`` (relative paths, as the fixtures);
    no ``reftable/`` directory yet. Returns its git dir."""
    wt_git = git_dir / "worktrees" / wt_id
    wt_git.mkdir(parents=True)
    (wt_git / "HEAD").write_text("ref: refs/heads/.invalid\n")
    (wt_git / "refs").mkdir()
    (wt_git / "commondir").write_text("../..\n")
    wt_path.mkdir(parents=True)
    (wt_path / ".git").write_text(f"gitdir: {os.path.relpath(wt_git, wt_path)}\n")
    (wt_git / "gitdir").write_text(os.path.relpath(wt_path / ".git", wt_git) + "\n")
    return wt_git
