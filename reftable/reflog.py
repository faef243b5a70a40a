"""Reflog semantics of Git's reftable backend (git/git ``refs/reftable-backend.c``).

A reflog lives in the stack as log records of its ref name. Beyond plain entries:

* **Existence markers**: a log record whose old and new ids are both null. ``git reflog
  expire`` writes one when it empties a reflog, and :func:`create_reflog` writes one
  for a ref without a reflog, so that the (empty) reflog keeps existing. Readers never
  see markers (:func:`read_reflog`), but they make :func:`reflog_exists` true and the
  ref appear in :func:`list_reflogs`.
* **Deleting entries** writes log tombstones carrying the update index of each entry
  they hide (a table of update index *n* may hold tombstones of older indexes).
* **Which updates log**: :class:`LogPolicy` is ``core.logAllRefUpdates`` (plus
  ``--create-reflog``), applied by a transaction given ``log_policy=``. A symref update
  whose target does not resolve writes no entry under a policy, as in Git.

Every writer here adds one table per reflog it changes, with the update index Git
would use, so a stack written by these functions holds the same records as Git's.
"""

from __future__ import annotations

import getpass
import re
import socket
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Optional

from ._value import replace
from .errors import ApiError, NotExistError
from .gitconfig import GitConfig
from .records import (
    LogRecord,
    LogValueType,
    NameLike,
    RefRecord,
    RefValueType,
    log_order,
    null_oid,
    ref_order,
    to_name,
)
from .refname import check_refname_format
from .writer import TableWriter, normalize_log_message

if TYPE_CHECKING:
    from .stack import Addition, Stack, StackSnapshot
    from .transaction import LogEntry, RefView

__all__ = [
    "LogPolicy",
    "EXPIRE_ALL",
    "is_existence_marker",
    "read_reflog",
    "reflog_exists",
    "list_reflogs",
    "create_reflog",
    "drop_reflog",
    "delete_reflog_entry",
    "expire_reflog",
    "rename_ref",
    "copy_ref",
    "identity_from_env",
    "parse_git_date",
    "should_autocreate_reflog",
    "reflog_message",
]

EXPIRE_ALL = 2**64 - 1
"""``--expire=all`` / ``--expire=now``: Git's ``TIME_MAX``, older than every entry."""

LogMode = Literal["false", "true", "always"]


def is_existence_marker(rec: LogRecord) -> bool:
    """True for a reflog existence marker: an update with null old and new ids."""
    return (rec.value_type == LogValueType.UPDATE and not any(rec.old_id or b"")
            and not any(rec.new_id or b""))


# -- reading ---------------------------------------------------------------------------

def read_reflog(stack: Stack | StackSnapshot, name: NameLike) -> list[LogRecord]:
    """The reflog of ``name``, newest first, existence markers hidden (what ``git reflog
    show`` lists). Empty when there is no reflog."""
    return [lg for lg in stack.logs(name) if not is_existence_marker(lg)]


def reflog_exists(stack: RefView, name: NameLike) -> bool:
    """``git reflog exists``: at least one live log record, a marker counts."""
    return next(iter(stack.logs(name)), None) is not None


def list_reflogs(stack: Stack | StackSnapshot) -> list[str]:
    """``git reflog list``: names with a reflog (markers count), in name order; names
    that are not well formed (one level allowed) are left out, as Git's iterator does."""
    out: list[str] = []
    last: Optional[str] = None
    for lg in stack.logs():
        if lg.refname == last:
            continue
        last = lg.refname
        if check_refname_format(last, allow_onelevel=True) is None:
            out.append(last)
    return out


# -- which updates write a log ----------------------------------------------------------

def should_autocreate_reflog(mode: LogMode, refname: str) -> bool:
    """Git's ``should_autocreate_reflog``: with ``always`` every ref, with ``true``
    branches, remote-tracking refs, notes and ``HEAD``."""
    if mode == "always":
        return True
    if mode == "true":
        return refname == "HEAD" or refname.startswith(
            ("refs/heads/", "refs/remotes/", "refs/notes/"))
    return False


@dataclass(frozen=True)
class LogPolicy:
    """Which ref updates write a reflog entry (Git's ``should_write_log``).

    ``mode``: ``core.logAllRefUpdates`` (``"false"``, ``"true"``, ``"always"``; None when
    unset, which means ``"true"`` in a repository with a worktree and ``"false"`` in a
    bare one). A ref that already has a reflog always gets entries; ``force_create``
    (``--create-reflog``) logs every update. ``exists``: how to ask whether a name
    already has a reflog, when that is not the transaction's own stack (a repository
    routing ``worktrees/<id>/HEAD`` to another worktree's stack, as Git does); None
    asks the stack being written."""

    mode: Optional[LogMode] = None
    bare: bool = False
    force_create: bool = False
    exists: Optional[Callable[[str], bool]] = field(default=None, compare=False)

    @classmethod
    def from_config(cls, config: GitConfig, *, bare: Optional[bool] = None,
                    force_create: bool = False,
                    exists: Optional[Callable[[str], bool]] = None) -> LogPolicy:
        """From ``core.logAllRefUpdates`` (and ``core.bare`` unless ``bare`` is given)."""
        e = config.get_entry("core.logAllRefUpdates")
        mode: Optional[LogMode] = None
        if e is not None:
            if e.value is not None and e.value.lower() == "always":
                mode = "always"
            else:
                mode = "true" if config.get_bool("core.logAllRefUpdates", False) else "false"
        if bare is None:
            bare = config.get_bool("core.bare", False)
        return cls(mode, bare, force_create, exists)

    @property
    def effective_mode(self) -> LogMode:
        if self.mode is not None:
            return self.mode
        return "false" if self.bare else "true"

    def should_write(self, stack: RefView, refname: str) -> bool:
        """Whether an update of ``refname`` writes a reflog entry."""
        if self.force_create or should_autocreate_reflog(self.effective_mode, refname):
            return True
        if self.exists is not None:
            return self.exists(refname)
        return reflog_exists(stack, refname)


_SPACE_RUN = re.compile(r"[ \t\n\v\f\r]+")  # C isspace()


def reflog_message(message: Optional[str]) -> str:
    """Git's ``normalize_reflog_message`` for a message given to a ref update (``-m``):
    every run of whitespace becomes one space, leading and trailing whitespace goes.
    Transactions store messages as given; a caller mirroring a Git command passes them
    through this first."""
    if not message:
        return ""
    return _SPACE_RUN.sub(" ", message).strip(" ")


# -- identity --------------------------------------------------------------------------

_RAW_DATE = re.compile(r"@?(\d+)(?: ([+-])(\d\d)(\d\d))?")


def parse_git_date(text: str) -> tuple[int, int]:
    """``(seconds, tz)`` from Git's raw date forms ``@<epoch> <+hhmm>`` and
    ``<epoch> <+hhmm>`` (tz as Git's ``+hhmm`` integer, e.g. 200 or -930; 0 when
    missing). Other date formats are not supported (:class:`ValueError`)."""
    m = _RAW_DATE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"unsupported date format: {text!r} (use '@<epoch> +hhmm')")
    tz = 0
    if m.group(2):
        tz = int(m.group(3)) * 100 + int(m.group(4))
        if m.group(2) == "-":
            tz = -tz
    return int(m.group(1)), tz


def identity_from_env(env: Mapping[str, str], config: Optional[GitConfig] = None
                      ) -> tuple[str, str, int, int]:
    """The committer identity Git would log: ``(name, email, time, tz)`` from
    ``GIT_COMMITTER_NAME``/``EMAIL``/``DATE``, else ``user.name``/``user.email``, else
    the login name and ``login@hostname``; the time is now (local tz) without
    ``GIT_COMMITTER_DATE``."""
    from .transaction import local_tz_offset

    cfg = config or GitConfig()
    name = env.get("GIT_COMMITTER_NAME") or cfg.get("user.name")
    email = env.get("GIT_COMMITTER_EMAIL") or cfg.get("user.email") or env.get("EMAIL")
    if not name or not email:
        login = getpass.getuser()
        name = name or login
        email = email or f"{login}@{socket.gethostname()}"
    date = env.get("GIT_COMMITTER_DATE")
    if date:
        when, tz = parse_git_date(date)
    else:
        when = int(_time.time())
        tz = local_tz_offset(when)
    return name, email, when, tz


# -- writing -----------------------------------------------------------------------------

def _null(stack: Stack) -> bytes:
    return null_oid(stack.hash)


def _as_written(stack: Stack, rec: LogRecord) -> LogRecord:
    """``rec`` with the message Git's writer stores (tables here are written with exact
    messages, so that markers keep their empty one as in Git)."""
    if rec.is_deletion or stack.options.write.exact_log_message:
        return rec
    return replace(rec, message=normalize_log_message(rec.message))


def _add_exact(add: Addition, stack: Stack, write: Callable[[TableWriter], None]) -> None:
    add.add_table(write, stack.options.write_options(stack.hash, exact=True))


def _sort_logs(logs: list[LogRecord]) -> None:
    logs.sort(key=log_order)


def create_reflog(stack: Stack, name: NameLike) -> bool:
    """Make ``name``'s reflog exist (Git's ``create_reflog``): an existence marker when
    it has no reflog yet. Returns True when a marker was written."""
    n = to_name(name)
    with stack.new_addition(reload_if_outdated=True) as add:
        if reflog_exists(stack, n):
            return False
        ui = add.next_update_index
        marker = LogRecord(n, ui, LogValueType.UPDATE, _null(stack), _null(stack))
        _add_exact(add, stack, lambda w: w.add_logs([marker]))
        add.commit()
        return True


def drop_reflog(stack: Stack, name: NameLike) -> int:
    """``git reflog drop``: delete the whole reflog of ``name`` (markers included), one
    tombstone per entry; the reflog then no longer exists. Returns the number of
    entries deleted; :class:`NotExistError` when there is no reflog."""
    n = to_name(name)
    with stack.new_addition(reload_if_outdated=True) as add:
        tombstones = [LogRecord.deletion(n, lg.update_index) for lg in stack.logs(n)]
        if not tombstones:
            raise NotExistError(f"reflog could not be found: '{n}'")
        _add_exact(add, stack, lambda w: w.add_logs(tombstones))
        add.commit()
        return len(tombstones)


PrunePredicate = Callable[[LogRecord], bool]


def _expire_one(stack: Stack, name: str, should_prune: PrunePredicate, rewrite: bool,
                update_ref: bool, dry_run: bool) -> int:
    """Git's ``reftable_be_reflog_expire`` for one reflog: a table that rewrites every
    entry (tombstones for the pruned ones), plus a marker if none is left."""
    with stack.new_addition(reload_if_outdated=True) as add:
        ui = add.next_update_index
        entries = read_reflog(stack, name)
        out: list[LogRecord] = list(entries)
        last_new: Optional[bytes] = None
        pruned = 0
        for i in range(len(entries) - 1, -1, -1):  # oldest first, as Git decides
            lg = entries[i]
            if should_prune(lg):
                out[i] = LogRecord.deletion(name, lg.update_index)
                pruned += 1
                continue
            if rewrite and last_new is not None:
                out[i] = replace(lg, old_id=last_new)
            last_new = lg.new_id
            out[i] = _as_written(stack, out[i])
        refs: list[RefRecord] = []
        if update_ref and last_new is not None:
            cur = stack.read_ref(name)
            if cur is not None and cur.value_type != RefValueType.SYMREF and any(cur.value or b""):
                # (Git peels the object for an annotated tag; without an object
                # store the ref is written as a plain id)
                refs.append(RefRecord(name, ui, RefValueType.VAL1, last_new))
        if pruned == len(entries):
            null = _null(stack)
            out.insert(0, LogRecord(name, ui, LogValueType.UPDATE, null, null))
        if dry_run:
            return pruned

        def write(w: TableWriter) -> None:
            w.add_refs(refs)
            w.add_logs(out)

        _add_exact(add, stack, write)
        add.commit()
        return pruned


def expire_reflog(stack: Stack, name: Optional[NameLike] = None, *,
                  expire: Optional[int] = None,
                  should_prune: Optional[PrunePredicate] = None,
                  rewrite: bool = False, update_ref: bool = False,
                  dry_run: bool = False) -> dict[str, int]:
    """``git reflog expire`` for ``name`` (None: every reflog, as ``--all``): prune the
    entries older than ``expire`` (seconds since the epoch; :data:`EXPIRE_ALL` for
    ``--expire=all``/``now``) or for which ``should_prune(entry)`` is true (where a
    caller with an object store decides reachability, ``--expire-unreachable``).
    ``rewrite``/``update_ref``: Git's ``--rewrite``/``--updateref``. Each reflog gets
    its own table, even when nothing is pruned (as Git). Returns pruned counts by name;
    :class:`NotExistError` when a named reflog does not exist."""
    if name is None:
        names = list_reflogs(stack)
    else:
        n = to_name(name)
        if not reflog_exists(stack, n):
            raise NotExistError(f"reflog could not be found: '{n}'")
        names = [n]

    def prune(lg: LogRecord) -> bool:
        if expire is not None and lg.time < expire:
            return True
        return should_prune is not None and should_prune(lg)

    return {n: _expire_one(stack, n, prune, rewrite, update_ref, dry_run) for n in names}


def delete_reflog_entry(stack: Stack, name: NameLike, n: int, *, rewrite: bool = False,
                        update_ref: bool = False, dry_run: bool = False) -> bool:
    """``git reflog delete NAME@{n}``: delete the ``n``-th entry, newest first from 0
    (markers do not count). Like Git, this rewrites the reflog even when ``n`` is out of
    range. Returns True when an entry was deleted; :class:`NotExistError` when there
    is no reflog."""
    ref = to_name(name)
    if not reflog_exists(stack, ref):
        raise NotExistError(f"no reflog for '{ref}@{{{n}}}'")
    if n < 0:
        raise ApiError(f"bad reflog index {n}")
    # Git counts down from the oldest entry: the (count - n)-th one goes
    left = len(read_reflog(stack, ref)) - n

    def prune(_: LogRecord) -> bool:
        nonlocal left
        if left <= 0:
            return False
        left -= 1
        return left == 0

    return _expire_one(stack, ref, prune, rewrite, update_ref, dry_run) > 0


def _copy(stack: Stack, old: NameLike, new: NameLike, entry: LogEntry, delete_old: bool
          ) -> int:
    """Git's ``write_copy_table``: ``new`` gets ``old``'s value and reflog (all of it,
    markers included, same update indexes) plus an entry for its creation; a rename
    also deletes ``old`` and its reflog and logs the deletion on ``new`` (and on
    ``HEAD`` when HEAD points to ``old``), one update index earlier."""
    from .transaction import check_refs_available, local_tz_offset

    o, n = to_name(old), to_name(new)
    with stack.new_addition(reload_if_outdated=True) as add:
        cur = stack.read_ref(o)
        if cur is None:
            raise NotExistError(f"refname {o} not found")
        if cur.value_type == RefValueType.SYMREF:
            raise ApiError(f"refname {o} is a symbolic ref, copying it is not supported")
        if o == n:
            return 0
        check_refs_available(stack, {n}, {o} if delete_old else set())
        deletion_ui = add.next_update_index
        creation_ui = deletion_ui + 1 if delete_old else deletion_ui
        value = cur.value or _null(stack)
        null = _null(stack)
        when = int(_time.time()) if entry.time is None else entry.time
        tz = local_tz_offset(when) if entry.tz_offset is None else entry.tz_offset

        def log(refname: str, ui: int, old_id: bytes, new_id: bytes) -> LogRecord:
            return _as_written(stack, LogRecord(refname, ui, LogValueType.UPDATE, old_id,
                                                new_id, entry.name, entry.email, when, tz,
                                                entry.message))

        refs = [replace(cur, name=n, update_index=creation_ui)]
        logs: list[LogRecord] = []
        if delete_old:
            refs.append(RefRecord(o, deletion_ui, RefValueType.DELETION))
            logs.append(log(n, deletion_ui, value, null))
            head = stack.read_ref("HEAD")
            if head is not None and head.value_type == RefValueType.SYMREF and head.target == o:
                logs.append(log("HEAD", deletion_ui, value, null))
        logs.append(log(n, creation_ui, null, value))
        for lg in stack.logs(o):
            logs.append(_as_written(stack, replace(lg, refname=n)))
            if delete_old:
                logs.append(LogRecord.deletion(o, lg.update_index))
        refs.sort(key=ref_order)
        _sort_logs(logs)

        def write(w: TableWriter) -> None:
            w.set_limits(deletion_ui, creation_ui)
            w.add_refs(refs)
            w.add_logs(logs)

        _add_exact(add, stack, write)
        add.commit()
        return creation_ui


def rename_ref(stack: Stack, old: NameLike, new: NameLike, log_entry: LogEntry) -> int:
    """Rename a ref with its reflog, as Git's reftable backend does for ``git branch -m``
    (see :func:`_copy`); ``log_entry`` gives identity, time and message (Git's
    ``Branch: renamed <old> to <new>``). Updating symrefs that pointed to ``old``
    (``HEAD``) is the caller's business, as in Git. Returns the update index of the
    creation."""
    return _copy(stack, old, new, log_entry, delete_old=True)


def copy_ref(stack: Stack, old: NameLike, new: NameLike, log_entry: LogEntry) -> int:
    """Copy a ref with its reflog (``git branch -c``); see :func:`rename_ref`."""
    return _copy(stack, old, new, log_entry, delete_old=False)
