"""A dulwich ``RefsContainer`` stored in a reftable stack.

>>> from dulwich.repo import Repo
>>> from reftable.contrib.dulwich import ReftableRefsContainer
>>> repo = Repo("path/to/repo")                  # a repository with refStorage=reftable
>>> repo.refs = ReftableRefsContainer.for_repo(repo)
>>> repo.refs[b"HEAD"]

Conversions at the boundary: dulwich names refs with ``bytes`` and object ids with
40 (or 64) hex digits as ``bytes``; the stack uses ``str`` names (undecodable bytes
kept as surrogate escapes, so every name round-trips) and raw object ids. Reflog
timezones are seconds east of UTC in dulwich and Git's ``+hhmm`` integer here.

Every compare-and-swap (``set_if_equals``, ``add_if_new``, ``remove_if_equals``) is
one :class:`reftable.transaction.Transaction`: its expectation is checked under the
``tables.list`` lock against the newest stack on disk, and a mismatch returns False
(never raises), as dulwich's containers do. Symrefs are followed as dulwich's
``DiskRefsContainer`` follows them (before locking): an update through ``HEAD``
updates the branch it points at and logs it under the branch's name.

Threads: one container may be shared by any number of threads (dulwich servers do).
Each call reads one consistent snapshot of the stack (reloaded first), writes are
transactions checked under the lock, and a compare-and-swap whose expectation does
not hold returns False, never raises, however the threads interleave. A held lock
(another process holding ``tables.list.lock`` past ``lock_timeout_ms``) raises
dulwich's ``FileLocked``, as dulwich's own containers do.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Optional, Union

from dulwich.errors import RefFormatError
from dulwich.file import FileLocked
from dulwich.object_format import ObjectFormat, get_object_format
from dulwich.object_store import BaseObjectStore, peel_sha
from dulwich.objects import ObjectID, valid_hexsha
from dulwich.reflog import Entry
from dulwich.refs import HEADREF, SYMREF, Ref, RefsContainer, SymrefLoop

from .._closing import Closing
from .._value import replace
from ..errors import ExpectationError, LockError, RefNameError
from ..records import HASH_SIZES, RefRecord, RefValueType, to_name, to_name_bytes
from ..stack import Stack, StackOptions, StackSnapshot
from ..transaction import ANY, LogEntry, Transaction

if TYPE_CHECKING:
    from dulwich.repo import Repo

__all__ = [
    "ReftableRefsContainer",
    "tz_seconds_to_git",
    "tz_git_to_seconds",
    "normalize_reflog_message",
    "split_identity",
]

Logger = Callable[
    [bytes, bytes, bytes, Optional[bytes], Optional[int], Optional[int], bytes], None
]
"""dulwich's reflog callback: (ref, old, new, committer, timestamp, timezone, message)."""

_MAX_SYMREF_DEPTH = 5  # as dulwich's RefsContainer.follow


def tz_seconds_to_git(seconds: int) -> int:
    """dulwich's timezone (seconds east of UTC) as Git's ``+hhmm`` integer:
    3600 -> 100, -19800 -> -530. Offsets that are not whole minutes are refused, as
    dulwich's ``format_timezone`` refuses them."""
    if seconds % 60:
        raise ValueError(f"timezone offset {seconds}s is not a whole number of minutes")
    sign = -1 if seconds < 0 else 1
    minutes = abs(seconds) // 60
    return sign * ((minutes // 60) * 100 + minutes % 60)


def tz_git_to_seconds(tz: int) -> int:
    """Git's ``+hhmm`` integer as seconds east of UTC: -530 -> -19800."""
    sign = -1 if tz < 0 else 1
    tz = abs(tz)
    return sign * ((tz // 100) * 3600 + (tz % 100) * 60)


def normalize_reflog_message(message: bytes) -> bytes:
    """Git's ``copy_reflog_msg`` (as dulwich's ``format_reflog_line``): runs of
    whitespace, newlines included, become one space; leading and trailing space go."""
    return b" ".join(message.split())


def split_identity(identity: bytes) -> tuple[str, str]:
    """``b"Name <email>"`` as ``("Name", "email")``; without ``<...>`` all is name."""
    lt = identity.find(b"<")
    gt = identity.find(b">", lt + 1) if lt >= 0 else -1
    if lt < 0 or gt < 0:
        name, email = identity.strip(), b""
    else:
        name, email = identity[:lt].strip(), identity[lt + 1:gt]
    return (name.decode("utf-8", "surrogateescape"), email.decode("utf-8", "surrogateescape"))


def _format_name(fmt: Union[ObjectFormat, str]) -> str:
    name = fmt if isinstance(fmt, str) else fmt.name
    name = name.lower()
    if name not in HASH_SIZES:
        raise ValueError(f"unsupported object format {name!r}")
    return name


def _is_zero(sha: bytes) -> bool:
    return len(sha) in (40, 64) and sha.count(b"0") == len(sha)


class ReftableRefsContainer(RefsContainer, Closing):
    """dulwich refs stored in a reftable :class:`~reftable.stack.Stack`.

    ``stack``: a :class:`Stack` (not closed by :meth:`close`) or the path of a stack
    directory (``.git/reftable``), which must exist; ``tables.list`` is created when
    missing. ``stack_options`` apply when a path is given.

    ``object_format``: dulwich's object format (or ``"sha1"``/``"sha256"``); taken
    from ``object_store`` when not given, else from the stack's tables (sha1 for a new
    stack). A stack holding the other hash is refused (``ValueError``).

    ``object_store``: when given, every written object id is peeled as Git does, and
    annotated tags are stored with their peeled id (``val2`` records), which
    :meth:`get_peeled` then returns without reading objects.

    Reflogs go into the stack (read them with :meth:`read_reflog` or
    ``Stack.logs``). Like dulwich's containers, an update writes a reflog entry only
    when a ``message`` is passed; ``always_log=True`` logs every update, as Git's
    ``core.logAllRefUpdates`` does. ``committer`` (``b"Name <email>"``) is used when
    the caller passes none; without it dulwich's ``get_user_identity`` of the default
    config is asked once. ``logger`` is dulwich's reflog callback, called in
    addition, with dulwich's semantics (only when a message is given).

    ``auto_reload``: reload the stack before every read so that writes of other
    processes (and other containers) are seen; turn off only for a private stack.

    Thread safety: one container may be shared by many threads (see the module docs).
    """

    def __init__(
        self,
        stack: Union[Stack, str, os.PathLike[str]],
        *,
        logger: Optional[Logger] = None,
        committer: Optional[bytes] = None,
        object_format: Union[ObjectFormat, str, None] = None,
        object_store: Optional[BaseObjectStore] = None,
        always_log: bool = False,
        auto_reload: bool = True,
        stack_options: Optional[StackOptions] = None,
    ) -> None:
        super().__init__(logger=logger)
        fmt: Optional[str] = None
        if object_format is not None:
            fmt = _format_name(object_format)
        elif object_store is not None:
            fmt = _format_name(object_store.object_format)
        if isinstance(stack, Stack):
            if stack_options is not None:
                raise TypeError("stack_options only apply when a path is given")
            if fmt is not None and stack.hash != fmt:
                raise ValueError(f"stack holds {stack.hash} ids, object format is {fmt}")
            self._stack = stack
            self._owns_stack = False
        else:
            options = stack_options or StackOptions()
            if fmt is not None and options.hash is not None and options.hash != fmt:
                raise ValueError(f"stack_options.hash {options.hash} != object format {fmt}")
            self._stack = _open_stack(os.fspath(stack), options, fmt)
            self._owns_stack = True
        self._committer = committer
        self._object_store = object_store
        self.always_log = always_log
        self.auto_reload = auto_reload
        self._hex_len = 2 * HASH_SIZES[self._stack.hash]

    @classmethod
    def for_repo(
        cls,
        repo: Repo,
        *,
        create: bool = True,
        committer: Optional[bytes] = None,
        always_log: bool = False,
        peel: bool = True,
        stack_options: Optional[StackOptions] = None,
    ) -> ReftableRefsContainer:
        """The container of ``repo``'s refs, opened through
        :class:`reftable.Repository`: the repository must use the reftable ref storage
        (``extensions.refStorage``, else :class:`~reftable.RepositoryError`), and its
        config gives the stack options (``reftable.*``, ``core.sharedRepository``,
        ``core.fsync``; ``stack_options`` replaces them). The container holds the
        common stack, so ``repo`` must not be a linked worktree (whose per-worktree
        refs live in their own stack: use :class:`reftable.Repository` there).
        ``create``: start ``tables.list`` when missing. With the repository's object
        store for peeling (unless ``peel`` is False) and its configured committer
        identity. Assign it to ``repo.refs``."""
        from ..repository import MAIN, RepoLocation, Repository

        git_dir, common = repo.controldir(), repo.commondir()
        if os.path.normpath(git_dir) != os.path.normpath(common):
            raise ValueError(f"{git_dir} is a linked worktree: its per-worktree refs are "
                             "not in the common stack; use reftable.Repository")
        location = RepoLocation(git_dir, common, None if repo.bare else repo.path, None)
        with Repository(location) as r:
            path = r.stack_dir(MAIN)
            options = stack_options or replace(r.options)
        if create:
            os.makedirs(path, exist_ok=True)
        if committer is None:
            from dulwich.repo import get_user_identity

            committer = get_user_identity(repo.get_config_stack(), kind="COMMITTER")
        return cls(path, committer=committer, object_format=repo.object_format,
                   object_store=repo.object_store if peel else None,
                   always_log=always_log, stack_options=options)

    # -- lifecycle -----------------------------------------------------------

    @property
    def stack(self) -> Stack:
        """The underlying stack."""
        return self._stack

    @property
    def object_format(self) -> ObjectFormat:
        return get_object_format(self._stack.hash)

    def close(self) -> None:
        """Close the stack if this container opened it."""
        if self._owns_stack:
            self._stack.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._stack.directory!r})"

    # -- conversions ---------------------------------------------------------

    def _hex(self, raw: bytes) -> ObjectID:
        return ObjectID(raw.hex().encode("ascii"))

    def _raw(self, sha: bytes) -> bytes:
        if len(sha) != self._hex_len or not valid_hexsha(sha):
            raise ValueError(f"{sha!r} is not a valid {self._stack.hash} object id")
        return bytes.fromhex(sha.decode("ascii"))

    @staticmethod
    def _ref(name: str) -> Ref:
        return Ref(to_name_bytes(name))

    @staticmethod
    def _contents(rec: Optional[RefRecord]) -> Optional[bytes]:
        """A record as dulwich's raw ref contents: hex id or ``ref: target``."""
        if rec is None:
            return None
        if rec.value_type == RefValueType.SYMREF:
            assert rec.target is not None
            return SYMREF + to_name_bytes(rec.target)
        assert rec.value is not None
        return rec.value.hex().encode("ascii")

    def _matches(self, rec: Optional[RefRecord], old_ref: bytes) -> bool:
        """dulwich's expectation: the raw contents equal ``old_ref``; a missing ref
        equals the zero id."""
        if rec is None:
            return _is_zero(old_ref)
        return self._contents(rec) == old_ref

    def _view(self) -> StackSnapshot:
        """The view one call reads from (reloaded first unless ``auto_reload`` is
        off): each call sees one consistent version of the stack, whatever other
        threads do meanwhile."""
        if self.auto_reload:
            self._stack.reload()
        return self._stack.snapshot()

    @staticmethod
    def _reader(snap: StackSnapshot) -> Callable[[bytes], Optional[RefRecord]]:
        return lambda name: snap.read_ref(to_name(name))

    def _peeled(self, sha: bytes) -> Optional[bytes]:
        """The raw peeled id of ``sha`` when it is an annotated tag (needs an object
        store); None otherwise or when the object is not there."""
        if self._object_store is None:
            return None
        try:
            _, peeled = peel_sha(self._object_store, ObjectID(sha))
        except KeyError:
            return None
        pid = peeled.id
        return None if pid == sha else self._raw(pid)

    def _identity(self) -> bytes:
        if self._committer is None:
            from dulwich.config import StackedConfig
            from dulwich.repo import get_user_identity

            self._committer = get_user_identity(StackedConfig.default(), kind="COMMITTER")
        return self._committer

    def _log_entry(
        self,
        committer: Optional[bytes],
        timestamp: Optional[int],
        timezone: Optional[int],
        message: Optional[bytes],
    ) -> Optional[LogEntry]:
        if message is None and not self.always_log:
            return None
        name, email = split_identity(committer if committer is not None else self._identity())
        text = normalize_reflog_message(message or b"").decode("utf-8", "surrogateescape")
        return LogEntry(name, email, text,
                        None if timestamp is None else int(timestamp),
                        None if timezone is None else tz_seconds_to_git(timezone))

    # -- writing through transactions ----------------------------------------

    def _run(self, fill: Callable[[Transaction], None], log: Optional[LogEntry]) -> bool:
        """Build and commit one transaction. A failed expectation returns False;
        a held lock raises dulwich's ``FileLocked``; a bad name ``RefFormatError``."""
        tx = self._stack.transaction(log=log)
        try:
            fill(tx)
            tx.commit()
        except ExpectationError:
            return False
        except RefNameError as e:
            raise RefFormatError(str(e)) from e
        except LockError as e:
            raise FileLocked(self._stack.list_path,
                             e.lock_path or self._stack.list_path + ".lock") from e
        finally:
            tx.abort()  # no-op after commit; discards on error
        return True

    def _expect(self, rec: Optional[RefRecord]) -> tuple[Any, Optional[str]]:
        """Transaction expectation (value, symref target) that ``rec`` is current."""
        if rec is None:
            return None, None
        if rec.value_type == RefValueType.SYMREF:
            return ANY, rec.target
        return rec.value, None

    def _put(self, tx: Transaction, name: str, new: bytes, expect: Any,
             expect_target: Optional[str]) -> None:
        """Queue setting ``name`` to dulwich contents ``new`` (hex id or symref)."""
        if new.startswith(SYMREF):
            target = to_name(new[len(SYMREF):])
            tx.symref(name, target, expect=expect, expect_target=expect_target)
            return
        raw = self._raw(new)
        peeled = self._peeled(new)
        tx.update(name, raw, expect=expect, peeled=peeled, expect_target=expect_target)

    def _check_df(self, snap: StackSnapshot, name: str) -> None:
        """Refuse a new ref whose name is a directory of, or inside, an existing ref
        (Git's D/F rule; dulwich's DiskRefsContainer raises OSError for these)."""
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if snap.read_ref(parent) is not None:
                raise NotADirectoryError(errno.ENOTDIR, f"ref {parent!r} exists", name)
        if next(iter(snap.refs(name + "/")), None) is not None:
            raise IsADirectoryError(errno.EISDIR, f"refs exist under {name!r}/", name)

    def _resolve(self, snap: StackSnapshot, name: Ref) -> Ref:
        """The last name of ``name``'s symref chain (``name`` itself for a loop)."""
        try:
            realnames, _ = self._follow_in(self._reader(snap), name)
            return realnames[-1]
        except (KeyError, IndexError, SymrefLoop):
            return name

    # -- dulwich API: reading --------------------------------------------------

    def allkeys(self) -> set[Ref]:
        """Every live ref name (symrefs included, dangling ones too)."""
        return {self._ref(rec.name) for rec in self._view().refs()}

    def subkeys(self, base: Ref) -> set[Ref]:
        """Names under ``base`` (a prefix of whole components), ``base/`` removed."""
        return self._subkeys(self._view(), base)

    @staticmethod
    def _subkeys(snap: StackSnapshot, base: bytes) -> set[Ref]:
        prefix = base.rstrip(b"/")
        if not prefix:
            return {Ref(to_name_bytes(rec.name).lstrip(b"/")) for rec in snap.refs()}
        start = len(prefix) + 1
        return {Ref(to_name_bytes(rec.name)[start:]) for rec in snap.refs(prefix + b"/")}

    def read_loose_ref(self, name: Ref) -> Optional[bytes]:
        """The ref's contents without following it: hex id, ``ref: target`` for a
        symref, None when missing. Reftable has no loose/packed split: every ref
        is read here."""
        return self._contents(self._view().read_ref(to_name(name)))

    def read_ref(self, refname: Ref) -> Optional[bytes]:
        return self.read_loose_ref(refname)

    def get_packed_refs(self) -> dict[Ref, ObjectID]:
        """Always empty: reftable has no packed-refs file, and every ref is returned
        by :meth:`read_loose_ref` (peeled ids come from :meth:`get_peeled`)."""
        return {}

    def get_peeled(self, name: Ref) -> Optional[ObjectID]:
        """The peeled id stored with an annotated tag (a ``val2`` record). None for
        every other ref: like Git's reftable backend, a plain record does not say
        whether the object is a tag, so callers peel it themselves."""
        rec = self._view().read_ref(to_name(name))
        if rec is None or rec.value_type != RefValueType.VAL2 or rec.target_value is None:
            return None
        return self._hex(rec.target_value)

    def get_symrefs(self) -> dict[Ref, Ref]:
        return {self._ref(rec.name): self._ref(rec.target)
                for rec in self._view().refs()
                if rec.value_type == RefValueType.SYMREF and rec.target is not None}

    def follow(self, name: Ref) -> tuple[list[Ref], Optional[ObjectID]]:
        """dulwich's ``follow`` (same depth limit) on one consistent view."""
        return self._follow_in(self._reader(self._view()), name)

    def _follow_in(self, lookup: Callable[[bytes], Optional[RefRecord]],
                   name: Ref) -> tuple[list[Ref], Optional[ObjectID]]:
        # As RefsContainer.follow: every ref read counts, the last one too.
        refnames: list[Ref] = []
        current = name
        depth = 0
        while True:
            refnames.append(current)
            rec = lookup(current)
            if rec is None:
                return refnames, None
            depth += 1
            if depth > _MAX_SYMREF_DEPTH:
                raise SymrefLoop(name, depth)
            if rec.value_type != RefValueType.SYMREF:
                assert rec.value is not None
                return refnames, self._hex(rec.value)
            assert rec.target is not None
            current = self._ref(rec.target)

    def as_dict(self, base: Optional[Ref] = None) -> dict[Ref, ObjectID]:
        """Resolved refs (under ``base``, relative to it) from one view of the stack;
        dangling symrefs and loops are left out, as in dulwich."""
        prefix = b"" if base is None else base.rstrip(b"/")
        recs = {to_name_bytes(r.name): r for r in self._view().refs()}
        out: dict[Ref, ObjectID] = {}
        for name in recs:
            if prefix and not name.startswith(prefix + b"/"):
                continue
            try:
                _, sha = self._follow_in(recs.get, Ref(name))
            except SymrefLoop:
                continue
            if sha is not None:
                out[Ref(name[len(prefix) + 1:] if prefix else name)] = sha
        return out

    def read_reflog(self, ref: bytes) -> Iterator[Entry]:
        """``ref``'s reflog, oldest first, as dulwich ``reflog.Entry`` tuples (what
        ``Repo.read_reflog`` yields for files-backed repositories)."""
        recs = [r for r in self._view().logs(to_name(ref)) if not r.is_deletion]
        for r in reversed(recs):
            assert r.old_id is not None and r.new_id is not None
            committer = f"{r.name} <{r.email}>".encode("utf-8", "surrogateescape")
            message = r.message.encode("utf-8", "surrogateescape")
            if message.endswith(b"\n"):
                message = message[:-1]
            yield Entry(self._hex(r.old_id), self._hex(r.new_id), committer, r.time,
                        tz_git_to_seconds(r.tz_offset), message)

    # -- dulwich API: writing ----------------------------------------------------

    def set_symbolic_ref(
        self,
        name: Ref,
        other: Ref,
        committer: Optional[bytes] = None,
        timestamp: Optional[int] = None,
        timezone: Optional[int] = None,
        message: Optional[bytes] = None,
    ) -> None:
        """Make ``name`` (not followed) a symref to ``other``. No reflog entry is
        written into the stack for it (see the module docs); ``logger`` is called as
        dulwich's DiskRefsContainer calls it."""
        self._check_refname(name)
        self._check_refname(other)
        snap = self._view()
        sname = to_name(name)
        cur = snap.read_ref(sname)
        if cur is None:
            self._check_df(snap, sname)
        if cur is None or cur.value_type != RefValueType.SYMREF or cur.target != to_name(other):

            def fill(tx: Transaction) -> None:
                tx.symref(sname, to_name(other))

            self._run(fill, None)
        sha = self.follow(name)[1]
        self._log(name, sha, sha, committer=committer, timestamp=timestamp,
                  timezone=timezone, message=message)

    def set_if_equals(
        self,
        name: Ref,
        old_ref: Optional[ObjectID],
        new_ref: ObjectID,
        committer: Optional[bytes] = None,
        timestamp: Optional[int] = None,
        timezone: Optional[int] = None,
        message: Optional[bytes] = None,
    ) -> bool:
        """Set the end of ``name``'s symref chain to ``new_ref`` (a hex id, or
        ``ref: target`` to make it a symref) if it holds ``old_ref`` (None: any; the
        zero id: missing), checked under the lock. Returns False on a mismatch."""
        self._check_refname(name)
        self._check_ref_value(new_ref)
        if not new_ref.startswith(SYMREF):
            self._raw(new_ref)
        snap = self._view()
        realname = self._resolve(snap, name)
        rname = to_name(realname)
        cur = snap.read_ref(rname)
        if old_ref is not None and not self._matches(cur, old_ref):
            return False
        if cur is not None and self._contents(cur) == new_ref:
            return True  # already there: nothing to write (as dulwich)
        if cur is None:
            self._check_df(snap, rname)
        expect, expect_target = (ANY, None) if old_ref is None else self._expect(cur)
        log = self._log_entry(committer, timestamp, timezone, message)

        def fill(tx: Transaction) -> None:
            self._put(tx, rname, new_ref, expect, expect_target)

        if not self._run(fill, log):
            return False
        self._log(realname, self._contents(cur) if cur is not None else None, new_ref,
                  committer=committer, timestamp=timestamp, timezone=timezone,
                  message=message)
        return True

    def add_if_new(
        self,
        name: Ref,
        ref: ObjectID,
        committer: Optional[bytes] = None,
        timestamp: Optional[int] = None,
        timezone: Optional[int] = None,
        message: Optional[bytes] = None,
    ) -> bool:
        """Create the end of ``name``'s symref chain with ``ref`` unless it exists
        (checked under the lock). Returns False when it exists."""
        self._check_refname(name)
        self._check_ref_value(ref)
        if not ref.startswith(SYMREF):
            self._raw(ref)
        snap = self._view()
        # a loop raises SymrefLoop, as dulwich
        realnames, contents = self._follow_in(self._reader(snap), name)
        if contents is not None:
            return False
        rname = to_name(realnames[-1])
        if snap.read_ref(rname) is not None:
            return False  # a symref at the end of an over-long chain
        self._check_df(snap, rname)
        log = self._log_entry(committer, timestamp, timezone, message)

        def fill(tx: Transaction) -> None:
            self._put(tx, rname, ref, None, None)

        if not self._run(fill, log):
            return False
        self._log(realnames[-1], None, ref, committer=committer, timestamp=timestamp,
                  timezone=timezone, message=message)
        return True

    def remove_if_equals(
        self,
        name: Ref,
        old_ref: Optional[ObjectID],
        committer: Optional[bytes] = None,
        timestamp: Optional[int] = None,
        timezone: Optional[int] = None,
        message: Optional[bytes] = None,
    ) -> bool:
        """Delete ``name`` (not followed) if it holds ``old_ref`` (None: any; the
        zero id: missing), checked under the lock. Deleting a missing ref succeeds."""
        self._check_refname(name)
        sname = to_name(name)
        cur = self._view().read_ref(sname)
        if old_ref is not None and not self._matches(cur, old_ref):
            return False
        if cur is None:
            return True
        expect, expect_target = (ANY, None) if old_ref is None else self._expect(cur)
        log = self._log_entry(committer, timestamp, timezone, message)

        def fill(tx: Transaction) -> None:
            tx.delete(sname, expect=expect, expect_target=expect_target)

        if not self._run(fill, log):
            return False
        self._log(name, self._contents(cur), None, committer=committer,
                  timestamp=timestamp, timezone=timezone, message=message)
        return True

    def import_refs(
        self,
        base: Ref,
        other: Mapping[Ref, Optional[ObjectID]],
        committer: Union[bytes, int, None] = None,
        timestamp: Union[bytes, int, None] = None,
        timezone: Union[bytes, int, None] = None,
        message: Optional[bytes] = None,
        prune: bool = False,
    ) -> None:
        """Set ``base/name`` for every entry of ``other`` (None values delete) in
        one atomic transaction; with ``prune`` also delete the other refs under
        ``base``. Unlike the base class (which ignores them) this honours the
        committer/timestamp/timezone given as ``bytes``/``int``."""
        base = Ref(base.rstrip(b"/"))
        snap = self._view()  # one view for all names
        to_delete = self._subkeys(snap, base) if prune else set()
        updates: dict[str, bytes] = {}
        for short, value in other.items():
            full = Ref(base + b"/" + short)
            if value is None:
                to_delete.add(short)
                continue
            to_delete.discard(short)
            self._check_refname(full)
            self._check_ref_value(value)
            updates[to_name(self._resolve(snap, full))] = value
        deletes = {to_name(base + b"/" + short) for short in to_delete} - set(updates)
        current = {n: snap.read_ref(n) for n in list(updates) + sorted(deletes)}
        for n, new in list(updates.items()):
            if current[n] is not None and self._contents(current[n]) == new:
                del updates[n]
            elif current[n] is None:
                self._check_df(snap, n)
        deletes = {n for n in deletes if current[n] is not None}
        if not updates and not deletes:
            return
        log = self._log_entry(
            committer if isinstance(committer, bytes) else None,
            int(timestamp) if timestamp is not None else None,
            int(timezone) if timezone is not None else None,
            message)

        def fill(tx: Transaction) -> None:
            for n, value in updates.items():
                self._put(tx, n, value, ANY, None)
            for n in sorted(deletes):
                tx.delete(n)

        self._run(fill, log)

    def add_packed_refs(self, new_refs: Mapping[Ref, Optional[ObjectID]]) -> None:
        """Set (or with None delete) the given refs, unconditionally and without
        following symrefs, in one atomic transaction (no reflog)."""
        if not new_refs:
            return
        for ref, target in new_refs.items():
            if ref == HEADREF:
                raise ValueError("cannot pack HEAD")
            self._check_refname(ref)
            if target is not None:
                self._check_ref_value(target)

        def fill(tx: Transaction) -> None:
            for ref, target in new_refs.items():
                if target is None:
                    tx.delete(to_name(ref))
                else:
                    self._put(tx, to_name(ref), target, ANY, None)

        self._run(fill, None)

    def pack_refs(self, all: bool = False) -> None:
        """Compact the stack into one table (``git pack-refs`` on a reftable
        repository does the same, whatever ``--all`` says)."""
        try:
            # under the lock, whatever tables.list names then: concurrent writers
            # (threads or processes) cannot make it fail as outdated
            self._stack.compact_all(reload_if_outdated=True)
        except LockError as e:
            raise FileLocked(self._stack.list_path,
                             e.lock_path or self._stack.list_path + ".lock") from e

def _open_stack(path: str, options: StackOptions, fmt: Optional[str]) -> Stack:
    """Open the stack at ``path`` for object format ``fmt`` (None: any)."""
    st = Stack.open(path, replace(options, hash=None) if fmt is not None else options)
    if fmt is None or st.hash == fmt:
        return st
    have = st.merged.hash
    st.close()
    if have is not None:
        raise ValueError(f"{path}: stack holds {have} ids, object format is {fmt}")
    return Stack.open(path, replace(options, hash=fmt))  # empty: fix its hash

