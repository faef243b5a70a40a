"""A Git repository's refs, as Git's reftable backend (``refs/reftable-backend.c``)
sees them.

>>> with Repository.open("path/to/worktree") as repo:
...     repo.resolve("HEAD")                      # object id, through symrefs
...     with repo.transaction(message="reset: moving to HEAD~1") as tx:
...         tx.update("refs/heads/main", new_id, expect=old_id)

* **Discovery** as ``git -C PATH`` finds the repository (``setup.c``): a work tree
  (upwards to its ``.git``), a ``.git`` directory, a ``.git`` *file* (``gitdir:
  ...``: separate git dirs, submodules, linked worktrees, whose ``commondir`` names the
  shared repository), a bare repository. A repository whose ``extensions.refStorage``
  is not ``reftable`` is refused (:class:`RepositoryError`).
* **Config** (``config``, ``config.worktree`` with ``extensions.worktreeConfig``, the
  global and system files, ``GIT_CONFIG_PARAMETERS``/``GIT_CONFIG_COUNT`` overrides)
  for what the reftable backend honours: ``reftable.*`` write options, the lock
  timeout, ``core.sharedRepository``, ``core.logAllRefUpdates``, ``core.fsync``, the
  object format. Values outside Git's limits raise :class:`ConfigError` as Git dies.
* **Routing** (Git's ``backend_for``): per-worktree refs (root refs such as ``HEAD``,
  ``refs/bisect/``, ``refs/worktree/``, ``refs/rewritten/``) live in the current
  worktree's stack, ``main-worktree/<ref>`` and ``worktrees/<id>/<ref>`` name another
  worktree's, everything else is in the common stack. Unlike Git 2.55, a write through
  ``main-worktree/``/``worktrees/<id>/`` stores the ref under its bare name (what Git's
  documentation says; Git keeps the prefix, so reading that name misses the write).
* **Opening never writes**: stacks are opened with ``create=False``; the first write
  creates ``tables.list`` (and a linked worktree's ``reftable/`` directory, with the
  mode Git gives directories).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Optional, cast

from . import _value
from ._closing import Closing
from .errors import ApiError, ConfigError, ReftableIOError, RepositoryError
from .gitconfig import GitConfig, SharedRepository
from .records import (
    HASH_SIZES,
    LogRecord,
    NameLike,
    RefRecord,
    RefValueType,
    ref_order,
    to_name,
    to_name_bytes,
)
from .reflog import LogPolicy, identity_from_env, reflog_message
from .refname import (
    check_delete_ref_name,
    check_refname_format,
    check_symbolic_ref_name,
    check_update_ref_name,
    is_root_ref,
    parse_worktree_ref,
)
from .stack import Stack, StackOptions
from .transaction import ANY, LockedAddition, LogEntry, Transaction
from .writer import WriteOptions

__all__ = [
    "Repository",
    "RepositoryTransaction",
    "discover",
    "RepoLocation",
    "stack_options_from_config",
    "REV_PARSE_RULES",
]

MAIN = ""
"""Key of the common stack (which also holds the main worktree's per-worktree refs)."""

REV_PARSE_RULES = ("{}", "refs/{}", "refs/tags/{}", "refs/heads/{}", "refs/remotes/{}",
                   "refs/remotes/{}/HEAD")
"""Git's ``ref_rev_parse_rules``: the full names a short name is tried as, in order."""

_MAX_SYMREF_DEPTH = 5  # Git's SYMREF_MAXDEPTH
_HEX = re.compile(r"[0-9a-f]+")


# -- discovery ---------------------------------------------------------------------


@dataclass(frozen=True)
class RepoLocation:
    """Where a repository's parts are: ``git_dir`` (this worktree's), ``common_dir``
    (shared), ``work_tree`` (None when bare or when found from inside the git dir),
    ``worktree_id`` (None for the main worktree)."""

    git_dir: str
    common_dir: str
    work_tree: Optional[str]
    worktree_id: Optional[str]


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _common_dir(git_dir: str) -> str:
    text = _read_text(os.path.join(git_dir, "commondir"))
    if text is None:
        return git_dir
    rel = text.rstrip("\n")
    return os.path.normpath(os.path.join(git_dir, rel))


def is_git_directory(path: str) -> bool:
    """Git's ``is_git_directory``: a ``HEAD`` file, and ``objects/`` and ``refs/`` in
    the (common) directory."""
    if not os.path.isfile(os.path.join(path, "HEAD")):
        return False
    common = _common_dir(path)
    return (os.path.isdir(os.path.join(common, "objects"))
            and os.path.isdir(os.path.join(common, "refs")))


def _read_gitfile(path: str) -> str:
    text = _read_text(path)
    if text is None or not text.startswith("gitdir: "):
        raise RepositoryError(f"invalid gitfile format: {path}")
    target = text[len("gitdir: "):].rstrip("\n").rstrip("\r")
    git_dir = os.path.normpath(os.path.join(os.path.dirname(path), target))
    if not is_git_directory(git_dir):
        raise RepositoryError(f"not a git repository: {git_dir} (named by {path})")
    return git_dir


def _location(git_dir: str, work_tree: Optional[str]) -> RepoLocation:
    common = _common_dir(git_dir)
    wt_id = None
    if os.path.normpath(common) != os.path.normpath(git_dir):
        wt_id = os.path.basename(os.path.normpath(git_dir))
    return RepoLocation(git_dir, common, work_tree, wt_id)


def discover(path: str = ".", *, upwards: bool = True) -> RepoLocation:
    """Find the repository at or above ``path`` the way ``git -C PATH`` does (``setup.c``
    ``setup_git_directory_gently``): each directory from ``path`` upwards is tried as a
    work tree (its ``.git`` directory or ``gitdir:`` file), then as a git directory
    (bare repositories, or ``path`` inside a ``.git``). :class:`RepositoryError` when
    there is none ("not a git repository"). ``upwards`` False: only ``path`` itself."""
    start = os.path.abspath(path)
    if not os.path.isdir(start):
        raise RepositoryError(f"cannot change to '{path}': No such directory")
    d = start
    while True:
        dotgit = os.path.join(d, ".git")
        if os.path.isfile(dotgit):
            return _location(_read_gitfile(dotgit), d)
        if os.path.isdir(dotgit) and is_git_directory(dotgit):
            return _location(dotgit, d)
        if is_git_directory(d):
            return _location(d, None)
        parent = os.path.dirname(d)
        if parent == d or not upwards:
            raise RepositoryError(
                f"not a git repository (or any of the parent directories): {path}")
        d = parent


# -- config --------------------------------------------------------------------------


def _global_config_paths(env: Mapping[str, str]) -> list[str]:
    paths: list[str] = []
    if not env.get("GIT_CONFIG_NOSYSTEM"):
        paths.append(env.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig")
    if "GIT_CONFIG_GLOBAL" in env:
        paths.append(env["GIT_CONFIG_GLOBAL"])
    else:
        xdg = env.get("XDG_CONFIG_HOME")
        home = env.get("HOME")
        if xdg:
            paths.append(os.path.join(xdg, "git", "config"))
        elif home:
            paths.append(os.path.join(home, ".config", "git", "config"))
        if home:
            paths.append(os.path.join(home, ".gitconfig"))
    return [p for p in paths if p and p != "/dev/null"]


def _current_umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no other way to read it: set and restore at once
    os.umask(mask)
    return mask


_FSYNC_WORDS = {
    "loose-object": {"loose-object"},
    "pack": {"pack"},
    "pack-metadata": {"pack-metadata"},
    "commit-graph": {"commit-graph"},
    "index": {"index"},
    "reference": {"reference"},
    "objects": {"loose-object", "pack"},
    "derived-metadata": {"pack-metadata", "commit-graph"},
    "committed": {"loose-object", "pack", "reference"},
    "added": {"loose-object", "pack", "reference", "index"},
    "all": {"loose-object", "pack", "pack-metadata", "commit-graph", "index", "reference"},
}
_FSYNC_DEFAULT = {"pack", "pack-metadata", "commit-graph"}


def _fsync_references(cfg: GitConfig) -> bool:
    """Whether ``core.fsync`` makes Git fsync the ref store (``parse_fsync_components``:
    the last value counts; each starts from Git's default, ``-word`` removes, any
    other word adds every component it is a prefix of, ``none`` clears). Unset, refs
    are fsynced: Git's default leaves them out, which this library does not do."""
    value = cfg.get("core.fsync")
    if value is None:
        return True
    added: set[str] = set()
    removed: set[str] = set()
    base = set(_FSYNC_DEFAULT)
    for word in (w.strip() for w in value.split(",")):
        if not word:
            continue
        if word == "none":
            base, added, removed = set(), set(), set()
            continue
        neg = word.startswith("-")
        word = word[1:] if neg else word
        named = set().union(*(c for n, c in _FSYNC_WORDS.items() if n.startswith(word)))
        (removed if neg else added).update(named)
    return "reference" in (base - removed) | added


def stack_options_from_config(cfg: GitConfig, *, hash: str, umask: Optional[int] = None,
                              env: Optional[Mapping[str, str]] = None) -> StackOptions:
    """:class:`StackOptions` as Git's reftable backend derives them from ``cfg``
    (``reftable_be_config``), with its limits: :class:`ConfigError` for a block size
    above 16777215, a restart interval above 65535, a geometric factor above 255 or
    a lock timeout below -1. ``umask`` (default: the process's) gives, with
    ``core.sharedRepository``, the mode of the files written."""
    env = os.environ if env is None else env
    layout: dict[str, Any] = {}
    block_size = cfg.get_ulong("reftable.blockSize", 0)
    if block_size > 16777215:
        raise ConfigError("reftable block size cannot exceed 16MB")
    if block_size:
        layout["block_size"] = block_size
    restart = cfg.get_ulong("reftable.restartInterval", 0)
    if restart > 65535:
        raise ConfigError("reftable block size cannot exceed 65535")  # (Git's wording)
    if restart:
        layout["restart_interval"] = restart
    layout["index_objects"] = cfg.get_bool("reftable.indexObjects", True)
    opts = StackOptions(hash=hash, write=WriteOptions(hash, **layout))
    factor = cfg.get_ulong("reftable.geometricFactor", 0)
    if factor > 255:
        raise ConfigError("reftable geometric factor cannot exceed 255")
    if factor:
        opts.geometric_factor = factor
    timeout = cfg.get_int64("reftable.lockTimeout", 100)
    if timeout < -1:
        raise ConfigError("reftable lock timeout does not support negative values other "
                          "than -1")
    opts.lock_timeout_ms = timeout
    shared = SharedRepository.from_config(cfg)
    if shared.is_shared:
        mask = _current_umask() if umask is None else umask
        opts.permissions = shared.file_mode(0o666, mask)
    opts.fsync = _fsync_references(cfg)
    auto = env.get("GIT_TEST_REFTABLE_AUTOCOMPACTION")
    if auto is not None:
        from .gitconfig import parse_bool

        opts.auto_compact = parse_bool(auto, "GIT_TEST_REFTABLE_AUTOCOMPACTION")
    return opts


# -- the repository -----------------------------------------------------------------


class Repository(Closing):
    """A repository's ref store: one stack per worktree, routed as Git routes refs.

    Open with :meth:`open` (discovery) or :meth:`at` (a known location). Reads go to
    the stacks as they are on disk (each call reloads what changed); writes go through
    :meth:`transaction`.

    Thread safety: a repository may be shared by threads. Reads and transactions run
    from any thread; each worktree's stack is one shared :class:`~reftable.stack.Stack`
    handle (see its rules), and a transaction over several stacks locks them in one
    order. A :class:`RepositoryTransaction` belongs to the thread that made it.
    :meth:`close` only when no other thread uses the repository."""

    def __init__(self, location: RepoLocation, *,
                 config_overrides: Optional[list[str]] = None,
                 env: Optional[Mapping[str, str]] = None,
                 lock_timeout_ms: Optional[int] = None,
                 umask: Optional[int] = None):
        self.location = location
        self.env: Mapping[str, str] = dict(os.environ if env is None else env)
        self.git_dir = location.git_dir
        self.common_dir = location.common_dir
        self.work_tree = location.work_tree
        self.worktree_id = location.worktree_id
        self.config = self._read_config(config_overrides or [])
        self.ref_storage = (self.config.get("extensions.refStorage") or "files").lower()
        if self.ref_storage != "reftable":
            raise RepositoryError(
                f"{self.common_dir}: the repository uses the '{self.ref_storage}' ref "
                "storage format, not 'reftable'")
        self.hash = (self.config.get("extensions.objectFormat") or "sha1").lower()
        if self.hash not in HASH_SIZES:
            raise RepositoryError(f"unknown object format '{self.hash}'")
        self.is_bare = self.work_tree is None and self.config.get_bool(
            "core.bare", True)
        self.shared = SharedRepository.from_config(self.config)
        self._umask = umask
        self.options = stack_options_from_config(self.config, hash=self.hash, umask=umask,
                                                 env=self.env)
        if lock_timeout_ms is not None:
            self.options.lock_timeout_ms = lock_timeout_ms
        self.log_policy = LogPolicy.from_config(self.config, bare=self.is_bare)
        self._stacks: dict[str, Stack] = {}

    @classmethod
    def open(cls, path: str = ".", **kwargs: Any) -> Repository:
        """Discover the repository at or above ``path`` (see :func:`discover`)."""
        return cls(discover(path), **kwargs)

    def _read_config(self, overrides: list[str]) -> GitConfig:
        repo_cfg = os.path.join(self.common_dir, "config")
        base = GitConfig.read(_global_config_paths(self.env) + [repo_cfg])
        if base.get_bool("extensions.worktreeConfig", False):
            base = GitConfig.read(_global_config_paths(self.env) + [
                repo_cfg, os.path.join(self.git_dir, "config.worktree")])
        return GitConfig.from_environ(self.env, base).with_overrides(overrides)

    def __repr__(self) -> str:
        wt = f" worktree {self.worktree_id}" if self.worktree_id else ""
        return f"<Repository {self.git_dir}{wt}>"

    def close(self) -> None:
        for st in self._stacks.values():
            st.close()
        self._stacks.clear()

    # -- stacks --------------------------------------------------------------

    @property
    def current(self) -> str:
        """Key of this worktree's stack (:data:`MAIN` in the main worktree)."""
        return self.worktree_id or MAIN

    def stack_dir(self, key: str) -> str:
        """The reftable directory of worktree ``key`` (:data:`MAIN`: the common one)."""
        if key == MAIN:
            return os.path.join(self.common_dir, "reftable")
        return os.path.join(self.common_dir, "worktrees", key, "reftable")

    def worktree_ids(self) -> list[str]:
        """The linked worktrees' ids (folders of ``<common>/worktrees``), sorted."""
        try:
            names = os.listdir(os.path.join(self.common_dir, "worktrees"))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n for n in names
                      if os.path.isdir(os.path.join(self.common_dir, "worktrees", n)))

    def stack(self, key: str = MAIN, *, for_write: bool = False) -> Stack:
        """The stack of worktree ``key``, reloaded. For reading, a missing directory or
        ``tables.list`` is an empty stack and nothing is created; ``for_write``
        creates a linked worktree's ``reftable/`` directory (with Git's directory
        mode) and raises :class:`RepositoryError` when the worktree does not exist."""
        path = self.stack_dir(key)
        if key in (".", "..") or "/" in key or "\0" in key:
            # (no such worktree id: never a path outside <common>/worktrees)
            if for_write:
                raise RepositoryError(f"no worktree '{key}'")
            return cast(Stack, _NoStack(self.hash))
        if for_write and not os.path.isdir(path):
            if key == MAIN or not os.path.isdir(os.path.dirname(path)):
                raise RepositoryError(f"{path}: no such reftable directory"
                                      + (f" (no worktree '{key}')" if key else ""))
            self._mkdir(path)
        st = self._stacks.get(key)
        if st is None:
            if not os.path.isdir(path):
                return cast(Stack, _NoStack(self.hash))  # (not cached: may appear)
            st = Stack.open(path, _value.replace(self.options), create=False)
            won = self._stacks.setdefault(key, st)  # (atomic: threads race to open it)
            if won is not st:
                st.close()
                st = won
                st.reload()
        else:
            st.reload()
        return st

    def _mkdir(self, path: str) -> None:
        try:
            os.mkdir(path, 0o777)
            if self.shared.is_shared:
                mask = _current_umask() if self._umask is None else self._umask
                os.chmod(path, self.shared.dir_mode(mask))
        except FileExistsError:
            pass
        except OSError as e:
            raise ReftableIOError(e.errno or 0, e.strerror or str(e), path) from e

    # -- routing ---------------------------------------------------------------

    def route(self, name: NameLike, *, worktree: Optional[str] = None) -> tuple[str, str]:
        """``(stack key, name in that stack)`` of ref ``name`` as seen from worktree
        ``worktree`` (default: this one). See the module docs."""
        n = to_name(name)
        here = self.current if worktree is None else worktree
        kind, wt, bare = parse_worktree_ref(n)
        if kind == "current":
            return here, n
        if kind == "main":
            return MAIN, bare
        if kind == "other":
            assert wt is not None
            return wt, (bare or n)
        return MAIN, n

    # -- reading ---------------------------------------------------------------

    def read_ref(self, name: NameLike, *, worktree: Optional[str] = None
                 ) -> Optional[RefRecord]:
        """The record of ``name`` (no symref following), or None."""
        key, stored = self.route(name, worktree=worktree)
        return self.stack(key).read_ref(stored)

    def resolve_ref(self, name: NameLike, *, worktree: Optional[str] = None
                    ) -> tuple[Optional[str], Optional[bytes], bool]:
        """Git's ``refs_resolve_ref_unsafe`` without ``RESOLVE_REF_READING``:
        ``(final name, object id or None, was a symref)``. Symrefs are followed (each
        target seen from the worktree whose stack holds the symref); the final name is
        None for a symref loop or an unsafe name."""
        n = to_name(name)
        here = self.current if worktree is None else worktree
        is_symref = False
        for _ in range(_MAX_SYMREF_DEPTH + 1):
            if check_refname_format(n, allow_onelevel=True) is not None:
                return None, None, is_symref
            key, stored = self.route(n, worktree=here)
            rec = self.stack(key).read_ref(stored)
            if rec is None:
                return n, None, is_symref
            if rec.value_type != RefValueType.SYMREF:
                return n, rec.value, is_symref
            is_symref = True
            here = key
            n = rec.target or ""
        return None, None, is_symref

    def resolve(self, name: NameLike, *, worktree: Optional[str] = None) -> Optional[bytes]:
        """The object id ``name`` resolves to (through symrefs), or None."""
        n = to_name(name)
        if n in ("FETCH_HEAD", "MERGE_HEAD"):
            return self._read_pseudoref(n)
        return self.resolve_ref(n, worktree=worktree)[1]

    def _read_pseudoref(self, name: str) -> Optional[bytes]:
        text = _read_text(os.path.join(self.git_dir, name))
        if not text:
            return None
        hexlen = 2 * HASH_SIZES[self.hash]
        head = text[:hexlen]
        if len(head) == hexlen and _HEX.fullmatch(head):
            return bytes.fromhex(head)
        return None

    def dwim_ref(self, name: NameLike) -> Optional[tuple[str, bytes]]:
        """Git's ``repo_dwim_ref``: the first of :data:`REV_PARSE_RULES` that names an
        existing ref: ``(full name, object id)``."""
        n = to_name(name)
        for rule in REV_PARSE_RULES:
            full = rule.format(n)
            oid = self.resolve(full)
            if oid is not None:
                return full, oid
        return None

    def rev_parse(self, name: NameLike) -> Optional[bytes]:
        """``git rev-parse --verify -q NAME`` for ref names and full object ids
        (``@`` is ``HEAD``); None when it does not resolve. Revision syntax
        (``~``, ``^``, ``@{...}``, abbreviated ids) is not supported."""
        n = to_name(name)
        hexlen = 2 * HASH_SIZES[self.hash]
        if len(n) == hexlen and _HEX.fullmatch(n.lower()):
            return bytes.fromhex(n)
        if n == "@":
            n = "HEAD"
        if not n:
            return None
        found = self.dwim_ref(n)
        return None if found is None else found[1]

    def dwim_log(self, name: NameLike) -> Optional[str]:
        """Git's ``repo_dwim_log``: the full name whose reflog ``name`` means (a rule
        that names an existing ref with a reflog, or the reflog of its symref target),
        or None."""
        n = to_name(name)
        for rule in REV_PARSE_RULES:
            full = rule.format(n)
            final, oid, _ = self.resolve_ref(full)
            if final is None or oid is None:
                continue
            if self.reflog_exists(full):
                return full
            if final != full and self.reflog_exists(final):
                return final
        return None

    def _visible(self) -> list[tuple[str, bool]]:
        """The stacks this worktree sees: ``(key, per-worktree refs only)``."""
        if self.current == MAIN:
            return [(MAIN, False)]
        return [(self.current, False), (MAIN, True)]

    def refs(self, prefix: str = "") -> Iterator[RefRecord]:
        """Every ref this worktree sees, by name, as Git's merged iterator yields them:
        this worktree's stack shadows the common one, whose per-worktree refs (the
        main worktree's) are left out; ``main-worktree/``/``worktrees/`` names are
        left out."""
        merged: dict[bytes, RefRecord] = {}
        for key, shared_only in reversed(self._visible()):
            for rec in self.stack(key).refs(prefix):
                kind = parse_worktree_ref(rec.name)[0]
                if kind in ("main", "other"):
                    continue
                if shared_only and kind != "shared":
                    continue
                merged[ref_order(rec)] = rec
        for k in sorted(merged):
            yield merged[k]

    def for_each_ref(self, patterns: tuple[str, ...] = (), include_root_refs: bool = False
                     ) -> Iterator[tuple[RefRecord, bytes]]:
        """``git for-each-ref [--include-root-refs] [PATTERN...]``: ``(record, object
        id)`` pairs in name order; broken refs (dangling symrefs, bad names) are
        skipped as Git skips them."""
        for rec in self.refs():
            name = rec.name
            if not name.startswith("refs/"):
                if not (include_root_refs and (name == "HEAD" or is_root_ref(name))):
                    continue
            if patterns and not any(match_ref_pattern(p, name) for p in patterns):
                continue
            if check_refname_format(name, allow_onelevel=True) is not None:
                continue
            if rec.value_type == RefValueType.SYMREF:
                oid = self.resolve(name)
                if oid is None:
                    continue
            else:
                oid = rec.value or b""
            yield rec, oid

    # -- reflogs -----------------------------------------------------------------

    def reflog_exists(self, name: NameLike) -> bool:
        from .reflog import reflog_exists

        key, stored = self.route(name)
        return reflog_exists(self.stack(key), stored)

    def read_reflog(self, name: NameLike) -> list[LogRecord]:
        """The reflog of ``name`` (no dwim), newest first, markers hidden."""
        from .reflog import read_reflog

        key, stored = self.route(name)
        return read_reflog(self.stack(key), stored)

    def reflog_show(self, name: NameLike) -> Optional[list[LogRecord]]:
        """The entries ``git reflog show NAME`` lists, newest first: the reflog
        :meth:`dwim_log` finds, without markers and entries to the null id (``log -g``
        walks commits). Empty when ``name`` resolves but has no reflog; None when it
        does not resolve at all (Git: "unknown revision")."""
        full = self.dwim_log(name)
        if full is None:
            return None if self.rev_parse(name) is None else []
        return [lg for lg in self.read_reflog(full) if any(lg.new_id or b"")]

    def list_reflogs(self, worktree: Optional[str] = None) -> list[str]:
        """``git reflog list`` from worktree ``worktree`` (default: this one)."""
        from .reflog import list_reflogs

        here = self.current if worktree is None else worktree
        visible = [(MAIN, False)] if here == MAIN else [(here, False), (MAIN, True)]
        names: set[str] = set()
        for key, shared_only in visible:
            for n in list_reflogs(self.stack(key)):
                kind = parse_worktree_ref(n)[0]
                if kind in ("main", "other") or (shared_only and kind != "shared"):
                    continue
                names.add(n)
        return sorted(names, key=to_name_bytes)

    def all_worktree_reflogs(self) -> list[str]:
        """Every reflog of every worktree, named as seen from this one (Git's
        ``reflog expire --all``): other worktrees' per-worktree reflogs get their
        ``main-worktree/`` or ``worktrees/<id>/`` prefix."""
        out = list(self.list_reflogs())
        for key in [MAIN] + self.worktree_ids():
            if key == self.current:
                continue
            for n in self.list_reflogs(key):
                if parse_worktree_ref(n)[0] != "current":
                    continue
                out.append(f"main-worktree/{n}" if key == MAIN else f"worktrees/{key}/{n}")
        return out

    def write_stack_for(self, name: NameLike) -> tuple[Stack, str]:
        """The stack (opened for writing) and stored name of ``name``."""
        key, stored = self.route(name)
        return self.stack(key, for_write=True), stored

    # -- writing -----------------------------------------------------------------

    def log_entry(self, message: str = "") -> LogEntry:
        """A reflog entry with the committer identity and date Git would use
        (``GIT_COMMITTER_*``, ``user.*``) and the message as Git normalizes it
        (whitespace runs collapsed)."""
        name, email, when, tz = identity_from_env(self.env, self.config)
        return LogEntry(name, email, reflog_message(message), when, tz)

    def transaction(self, message: str = "", *, create_reflog: bool = False,
                    log: bool = True) -> RepositoryTransaction:
        """A ref transaction over every stack it touches; see
        :class:`RepositoryTransaction`. ``message``: the reflog message; ``log``
        False writes no reflog entries at all."""
        return RepositoryTransaction(self, self.log_entry(message) if log else None,
                                     create_reflog)


class _NoStack:
    """The reading side of a stack whose directory does not exist (a linked worktree
    that never had a per-worktree ref, or one that does not exist): empty."""

    def __init__(self, hash: str):
        self.hash = hash
        self.names: list[str] = []
        self.directory = ""

    def read_ref(self, name: NameLike) -> Optional[RefRecord]:
        return None

    def refs(self, prefix: NameLike = "") -> Iterator[RefRecord]:
        return iter(())

    def logs(self, refname: Optional[NameLike] = None) -> Iterator[LogRecord]:
        return iter(())


# -- wildmatch for for-each-ref patterns --------------------------------------------


def _glob_regex(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
                continue
        elif c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def match_ref_pattern(pattern: str, name: str) -> bool:
    """``for-each-ref``'s pattern rule: ``name`` is ``pattern``, is below it (the next
    character a ``/``, or the pattern ends with one), or matches it as a glob where
    ``*`` does not cross ``/``."""
    if name.startswith(pattern) and (len(name) == len(pattern) or pattern.endswith("/")
                                     or name[len(pattern)] == "/"):
        return True
    if not any(c in pattern for c in "*?[\\"):
        return False
    return re.fullmatch(_glob_regex(pattern), name, re.S) is not None


# -- transactions across stacks -------------------------------------------------------


class _StackTransaction(Transaction):
    """A stack's share of a repository transaction: symref targets are resolved in
    the repository (a worktree's ``HEAD`` points into the common stack)."""

    def __init__(self, repo: Repository, key: str, stack: Stack,
                 log_policy: Optional[LogPolicy]):
        super().__init__(stack, True, None, log_policy)
        self._repo = repo
        self._key = key

    def _resolve(self, *args: Any) -> Optional[bytes]:
        # The name is the last argument (a snapshot-taking variant of the base
        # method passes the locked view first; the repository reads under the lock).
        name: Optional[str] = args[-1]
        if name is None:
            return None
        return self._repo.resolve(name, worktree=self._key)


@dataclass
class _Op:
    kind: str  # update, delete, verify, symref
    name: str
    new: Optional[bytes] = None
    expect: Any = ANY
    target: Optional[str] = None
    no_deref: bool = False
    expect_target: Optional[str] = None


class RepositoryTransaction:
    """Ref updates over a repository's stacks, as ``git update-ref`` makes them.

    Names are routed (:meth:`Repository.route`). Unless ``no_deref``, an update or
    delete of a symref goes to the ref it points to, and the symref gets a log-only
    entry; an update of the ref the current ``HEAD`` points to also logs ``HEAD``.
    Which updates write reflog entries follows ``core.logAllRefUpdates``
    (``create_reflog``: every one, as ``--create-reflog``). Each stack touched gets one
    table. As in Git, all of them are locked and checked, and their tables written,
    before the first is committed: a lock held elsewhere or a failed expectation on
    any stack commits nothing. The commits themselves follow one another (a crash or
    an I/O error between two can leave the first committed, as in Git)."""

    def __init__(self, repo: Repository, entry: Optional[LogEntry], create_reflog: bool):
        self.repo = repo
        self.entry = entry
        self.create_reflog = create_reflog
        self._ops: list[_Op] = []
        self._done = False

    def _oid(self, oid: Any) -> bytes:
        from .records import to_oid

        return to_oid(oid, HASH_SIZES[self.repo.hash])

    def _expect(self, expect: Any) -> Any:
        return expect if expect is ANY or expect is None else self._oid(expect)

    def update(self, name: NameLike, new: Any, expect: Any = ANY, *,
               no_deref: bool = False) -> None:
        """Set ``name`` to ``new``; ``expect``: ANY, None (must not exist) or an id. A
        null ``new`` deletes, as in Git. Names are checked by Git's rule for the
        operation (:mod:`reftable.refname`) as given, before routing."""
        oid = self._oid(new)
        if not any(oid):
            self.delete(name, expect, no_deref=no_deref)
            return
        self._ops.append(_Op("update", check_update_ref_name(name), oid,
                             self._expect(expect), no_deref=no_deref))

    def create(self, name: NameLike, new: Any, *, no_deref: bool = False) -> None:
        self.update(name, new, None, no_deref=no_deref)

    def delete(self, name: NameLike, expect: Any = ANY, *, no_deref: bool = False,
               expect_target: Optional[NameLike] = None) -> None:
        """Delete ``name`` (its reflog goes with it); ``expect_target``: it must be a
        symref to that ref (and is then not dereferenced)."""
        self._ops.append(_Op("delete", check_delete_ref_name(name), None, self._expect(expect),
                             no_deref=no_deref or expect_target is not None,
                             expect_target=None if expect_target is None
                             else to_name(expect_target)))

    def verify(self, name: NameLike, expect: Any = None, *,
               expect_target: Optional[NameLike] = None) -> None:
        """Check ``name`` without changing it: at ``expect`` (None: missing), or with
        ``expect_target`` a symref to that ref."""
        self._ops.append(_Op("verify", check_delete_ref_name(name), None,
                             ANY if expect_target is not None else self._expect(expect),
                             expect_target=None if expect_target is None
                             else to_name(expect_target)))

    def symref(self, name: NameLike, target: NameLike, expect: Any = ANY, *,
               expect_target: Optional[NameLike] = None) -> None:
        """Make ``name`` (never dereferenced) a symbolic ref to ``target``; ``expect``
        (ANY, None: must not exist, or an id) and ``expect_target`` check its current
        state."""
        self._ops.append(_Op("symref", check_symbolic_ref_name(name), None,
                             self._expect(expect),
                             target=to_name(target), no_deref=True,
                             expect_target=None if expect_target is None
                             else to_name(expect_target)))

    def __enter__(self) -> RepositoryTransaction:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and not self._done:
            self.commit()
        self._done = True

    def commit(self) -> dict[str, int]:
        """Write everything; returns the update index used per stack key."""
        if self._done:
            raise ApiError("transaction already finished")
        self._done = True
        repo = self.repo
        policy = replace(repo.log_policy, force_create=self.create_reflog)
        by_key: dict[str, _StackTransaction] = {}
        order: list[str] = []

        def tx_for(name: str) -> tuple[_StackTransaction, str]:
            key, stored = repo.route(name)
            tx = by_key.get(key)
            if tx is None:
                stack = repo.stack(key, for_write=True)
                tx = _StackTransaction(repo, key, stack, policy if self.entry else None)
                by_key[key] = tx
                order.append(key)
            return tx, stored

        head_final, _, head_is_symref = repo.resolve_ref("HEAD")
        head_target = head_final if head_is_symref else None
        logged: set[tuple[str, str]] = set()
        null = b"\0" * HASH_SIZES[repo.hash]

        def log_only(name: str, old: bytes, new: bytes, entry: LogEntry) -> None:
            key, stored = repo.route(name)
            if (key, stored) in logged:
                return
            logged.add((key, stored))
            tx_for(name)[0].log(stored, old, new, entry)

        for op in self._ops:
            name = op.name
            via: list[str] = []
            if op.kind in ("update", "delete") and not op.no_deref:
                final, _, is_symref = repo.resolve_ref(name)
                if is_symref and final is not None:
                    via.append(name)
                    name = final
            tx, stored = tx_for(name)
            entry = self.entry
            if op.kind == "update":
                assert op.new is not None
                tx.update(stored, op.new, expect=op.expect, log=entry)
            elif op.kind == "delete":
                tx.delete(stored, expect=op.expect, expect_target=op.expect_target)
            elif op.kind == "verify":
                tx.verify(stored, op.expect, expect_target=op.expect_target)
            else:
                tx.symref(stored, op.target or "", expect=op.expect,
                          expect_target=op.expect_target, log=entry)
            if entry is None or op.kind == "verify":
                continue
            old = repo.resolve(name) or null
            if op.kind == "symref":
                target_id = repo.resolve(op.target or "")
                if target_id is not None and head_target is not None and name == head_target:
                    log_only("HEAD", old, target_id, entry)
                continue
            new = op.new if op.kind == "update" else null
            assert new is not None
            logged.add(repo.route(name))
            for sym in via:
                log_only(sym, old, new, entry)
            if head_target is not None and name == head_target:
                # (Git's reftable backend: updating HEAD's referent logs HEAD too)
                log_only("HEAD", old, new, entry)
        # Like Git's backend: every stack is locked and checked, and its table written,
        # before any is committed, so a lock held elsewhere or a failed expectation
        # changes nothing. Threads sharing the repository take turns per stack: stacks
        # are locked in one order (their keys sorted), and committed in the reverse
        # order, since a commit's auto-compaction takes its stack's turn again. While
        # it waits, this thread holds only stacks that come earlier, which any thread
        # holding that turn would have had to take first: no two wait for each other.
        prepared: list[tuple[str, Optional[LockedAddition], int]] = []
        try:
            for key in sorted(order):
                add, ui = by_key[key]._prepare()
                prepared.append((key, add, ui))
            for _, add, _ in reversed(prepared):
                if add is not None:
                    add.commit()
        finally:
            for _, add, _ in prepared:
                if add is not None:
                    add.close()
        return {key: ui for key, _, ui in prepared}
