"""The stack: tables named by ``tables.list``, additions, compaction, cleaning.

Concurrency protocol (the same as Git's, including the July 2024 compaction fixes):

* ``tables.list`` is only ever replaced through its lock file ``tables.list.lock``:
  write the new list there, fsync, rename over the old one.
* An addition takes the ``tables.list`` lock, checks that the stack on disk is the one
  it loaded (else :class:`OutdatedError`), writes its table under a temporary name,
  renames it to its final name and appends it to the list.
* A compaction takes the ``tables.list`` lock, checks it is up to date, locks every
  table of its range (newest to oldest, creating ``<table>.lock``), then *releases*
  ``tables.list`` so that writers are not blocked while it merges. Afterwards it
  re-locks ``tables.list``, re-reads it and replaces its range only if the tables are
  still there, contiguous and in order; tables appended meanwhile are kept.
* Readers never take locks; a table removed by a concurrent compaction makes a reload
  retry with the newer ``tables.list``.

Threads: a handle's view is one immutable :class:`StackSnapshot`, replaced by a single
attribute assignment. Readers take the current snapshot once and use only it; a small
per-handle mutex orders the reads of ``tables.list`` and the installation of snapshots,
so that an older view never replaces a newer one. Every write decides from the list it
read under the ``tables.list`` lock, never from the shared view.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, Optional, TypeVar, overload

from ._closing import Closing
from ._impl import core as _core
from ._value import dataclass, field, replace
from .errors import (
    ApiError,
    FormatError,
    LockError,
    NotExistError,
    OutdatedError,
    ReftableError,
)
from .merged import MergedTable
from .records import HASH_SIZES, LogRecord, NameLike, OidLike, RefRecord
from .table import Table
from .tables_list import (
    MAX_LIST_SIZE,
    parse_table_name,
    parse_tables_list,
    serialize_tables_list,
    suggest_compaction_segment,
    table_name,
    temp_table_name,
    temp_table_pid,
)
from .transaction import LogEntry, LogPolicyLike, Transaction
from .writer import TableWriter, WriteOptions

__all__ = [
    "Stack",
    "StackSnapshot",
    "StackOptions",
    "StackStats",
    "Addition",
    "LogExpiry",
    "read_tables_list",
]

_T = TypeVar("_T")
_REF = _core.BLOCK_TYPE_REF
_LOG = _core.BLOCK_TYPE_LOG


def _read_list_file(path: str) -> Optional[bytes]:
    """The content of ``tables.list`` (None when missing); the core refuses anything
    but a regular file, so a FIFO planted there cannot hang the reader."""
    try:
        return _core.read_file(path, MAX_LIST_SIZE)
    except NotExistError:
        return None


def read_tables_list(directory: str) -> list[str]:
    """The table names of the stack in ``directory``, oldest first."""
    path = os.path.join(directory, "tables.list")
    data = _read_list_file(path)
    if data is None:
        raise NotExistError(f"{path}: no such file")
    return parse_tables_list(data, path)


class _Layout(Generic[_T]):
    """A layout field of :class:`WriteOptions` seen through ``StackOptions.write``:
    reading gives ``write.<name>``, setting replaces ``write`` by a copy with it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: Optional[type] = None) -> _Layout[_T]: ...
    @overload
    def __get__(self, obj: StackOptions, owner: Optional[type] = None) -> _T: ...
    def __get__(self, obj: Optional[StackOptions],
                owner: Optional[type] = None) -> _Layout[_T] | _T:
        if obj is None:
            return self
        value: _T = getattr(obj.write, self.name)
        return value

    def __set__(self, obj: StackOptions, value: _T) -> None:
        obj.write = replace(obj.write, **{self.name: value})


@dataclass
class StackOptions:
    """Options of a stack. ``hash`` None: taken from the tables (sha1 for a new one).

    ``write``: the layout of the tables the stack writes (:class:`WriteOptions`); its
    ``hash`` is not used, tables are written with the stack's. For callers of earlier
    versions, the layout fields (``block_size``, ``restart_interval``,
    ``index_objects``, ``unpadded``, ``exact_log_message``) are also accepted as
    keywords, and read or set as attributes: they go to ``write``. Passing both
    ``write`` and such keywords is a :class:`TypeError`. Every argument but ``hash``
    is keyword-only."""

    hash: Optional[str]
    write: WriteOptions
    auto_compact: bool
    geometric_factor: int
    lock_timeout_ms: int
    permissions: Optional[int]
    fsync: bool
    # fsync the directory after renames, so a committed update survives a crash right
    # after it returns (Git does not; it costs one more fsync per addition)
    fsync_directory: bool

    block_size = _Layout[int]()
    restart_interval = _Layout[int]()
    index_objects = _Layout[bool]()
    unpadded = _Layout[bool]()
    exact_log_message = _Layout[bool]()

    def __init__(self, hash: Optional[str] = None, *, write: Optional[WriteOptions] = None,
                 auto_compact: bool = True, geometric_factor: int = 2,
                 lock_timeout_ms: int = 100, permissions: Optional[int] = None,
                 fsync: bool = True, fsync_directory: bool = True,
                 block_size: Optional[int] = None, restart_interval: Optional[int] = None,
                 index_objects: Optional[bool] = None, unpadded: Optional[bool] = None,
                 exact_log_message: Optional[bool] = None) -> None:
        given = (("block_size", block_size), ("restart_interval", restart_interval),
                 ("index_objects", index_objects), ("unpadded", unpadded),
                 ("exact_log_message", exact_log_message))
        layout: dict[str, Any] = {k: v for k, v in given if v is not None}
        if write is None:
            write = WriteOptions(**layout)
        elif layout:
            raise TypeError(f"StackOptions: pass the table layout as write= or as keywords "
                            f"({', '.join(layout)}), not both")
        self.hash = hash
        self.write = write
        self.auto_compact = auto_compact
        self.geometric_factor = geometric_factor
        self.lock_timeout_ms = lock_timeout_ms
        self.permissions = permissions
        self.fsync = fsync
        self.fsync_directory = fsync_directory

    def write_options(self, hash: str, exact: Optional[bool] = None) -> WriteOptions:
        """``write`` for tables of ``hash``; ``exact`` (when given) replaces its
        ``exact_log_message``."""
        exact_log_message = self.write.exact_log_message if exact is None else exact
        return replace(self.write, hash=hash, exact_log_message=exact_log_message)


@dataclass
class StackStats:
    """Counters of compaction work, like Git's ``reftable_compaction_stats``."""

    attempts: int = 0  # compactions started
    failures: int = 0  # compactions that failed on a lock held by someone else
    bytes: int = 0  # bytes of input tables compacted
    entries_written: int = 0  # records written by compactions
    tables_added: int = 0
    # Failures after a commit point: the update is committed, so they are recorded
    # here instead of raised (auto-compaction, directory fsync, loading the new view).
    last_auto_compaction_error: Optional[BaseException] = field(default=None, repr=False)
    last_fsync_error: Optional[BaseException] = field(default=None, repr=False)
    last_reload_error: Optional[BaseException] = field(default=None, repr=False)


@dataclass(frozen=True)
class LogExpiry:
    """Reflog expiry for full compaction: drop entries older than ``time`` (seconds
    since the epoch) or with an update index below ``min_update_index`` (0 = off)."""

    time: int = 0
    min_update_index: int = 0


class Hooks:
    """Deterministic test hooks; each is called with the stack and context when set."""

    def __init__(self) -> None:
        # in reload(), after tables.list was read (with the names), before the new
        # view is built and installed
        self.after_list_read: Optional[Callable[..., None]] = None
        # in Addition.commit(), before the new list is made and written
        self.before_list_write: Optional[Callable[..., None]] = None
        # after the tables of a compaction were merged into a temp table, before
        # tables.list is locked again
        self.after_compaction_merge: Optional[Callable[..., None]] = None
        # after the table locks were taken and tables.list released
        self.after_compaction_locks: Optional[Callable[..., None]] = None


def _rand32() -> int:
    return random.getrandbits(32)


class _Turns:
    """Writers of one handle (threads) take turns here before taking
    ``tables.list.lock``, instead of failing on it after ``lock_timeout_ms``: that
    timeout is for other processes and handles. A thread that nests a second write
    does not wait for itself: its lock file then refuses it (LockError), as before.
    Not a reentrant lock: a turn may be given back from another thread (GC)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: Optional[int] = None

    def enter(self) -> bool:
        """Wait for our turn; False (no turn taken) when this thread has it already."""
        me = threading.get_ident()
        if self._owner == me:
            return False
        self._lock.acquire()
        self._owner = me
        return True

    def leave(self, taken: bool) -> None:
        if taken:
            self._owner = None
            self._lock.release()


class StackSnapshot:
    """One consistent view of a stack: the tables named by one version of
    ``tables.list``, open, oldest first, and their merged view. Never changes once
    made, so it may be used from any thread; iterators made from it keep reading it
    whatever happens to the stack afterwards.

    >>> snap = stack.snapshot()
    >>> snap.read_ref("HEAD"), snap.names, snap.next_update_index()
    """

    __slots__ = ("names", "tables", "merged", "_data", "_by_name", "_seq")

    def __init__(self, names: Sequence[str], tables: Sequence[Table], data: Optional[bytes],
                 seq: int = 0, merged: Optional[MergedTable] = None):
        self.names: tuple[str, ...] = tuple(names)
        self.tables: tuple[Table, ...] = tuple(tables)
        self.merged: MergedTable = MergedTable(self.tables) if merged is None else merged
        self._data = data  # the tables.list content it was made from
        self._by_name: dict[str, Table] = dict(zip(self.names, self.tables, strict=True))
        self._seq = seq  # order of the tables.list read it came from (see Stack._install)

    def next_update_index(self) -> int:
        """The update index the next addition on top of this view must use (at least)."""
        return (self.tables[-1].max_update_index + 1) if self.tables else 1

    def read_ref(self, name: NameLike) -> Optional[RefRecord]:
        return self.merged.read_ref(name)

    def refs(self, prefix: NameLike = "") -> Iterator[RefRecord]:
        return self.merged.refs(prefix)

    def logs(self, refname: Optional[NameLike] = None) -> Iterator[LogRecord]:
        return self.merged.logs(refname)

    def refs_pointing_at(self, oid: OidLike) -> list[RefRecord]:
        return self.merged.refs_for(oid)

    def __repr__(self) -> str:
        return f"<StackSnapshot {len(self.names)} tables>"


class _Closed:
    """Stands in for the merged view of a closed stack: every use is an ApiError."""

    def __getattr__(self, name: str) -> Any:
        raise ApiError("stack is closed")


_CLOSED = StackSnapshot((), (), None, 1 << 62, merged=_Closed())  # type: ignore[arg-type]
_EMPTY = StackSnapshot((), (), None)  # the view of a handle before its first load


class Stack(Closing):
    """A stack of tables in a directory, with ``tables.list`` naming them oldest first.

    Thread safety: one ``Stack`` may be shared by any number of threads. Reads,
    iteration, :meth:`reload`, transactions, additions, compaction, :meth:`clean` and
    :attr:`stats` may run from any thread at once. Readers never wait for writers: each
    read uses the handle's current :class:`StackSnapshot`, and iterators keep the
    snapshot they started on. Every write decides from the ``tables.list`` it read
    under the lock, so a concurrent reload never makes it lose an update. An
    :class:`Addition` (or transaction) object belongs to the thread that made it.
    :meth:`close` while other threads use the stack: calls made afterwards raise
    :class:`ApiError`; iterators already running finish on their snapshot.

    ``create``: create an empty ``tables.list`` when it is missing. With False a
    missing list is an empty stack and nothing on disk is created or changed by
    opening or reading (writes still create it).

    >>> with Stack.open(".git/reftable") as st:
    ...     st.read_ref("HEAD")
    """

    def __init__(self, directory: str, options: Optional[StackOptions] = None,
                 create: bool = True):
        self.directory = os.fspath(directory)
        self.options = options or StackOptions()
        self.list_path = os.path.join(self.directory, "tables.list")
        self.stats = StackStats()
        self.hooks = Hooks()
        # Orders reads of tables.list and installation of snapshots (held briefly,
        # never across an fsync or a merge); readers of data never take it.
        self._mutex = threading.Lock()
        self._turns = _Turns()
        self._seq = 0
        self._snap = _EMPTY
        self.reload()
        # A missing list reads as an empty stack: only then is the directory checked
        # (no stat on the way of a short-lived reader of a stack with tables).
        if not self._snap.names and not os.path.exists(self.list_path):
            if not os.path.isdir(self.directory):
                raise NotExistError(f"{self.directory}: no such directory")
            if create:
                self._create_list()
        h = self._snap.merged.hash
        if self.options.hash is None:
            self.hash = h or "sha1"
        else:
            if h is not None and h != self.options.hash:
                raise FormatError(
                    f"stack holds {h} tables but {self.options.hash} was requested",
                    self.directory)
            self.hash = self.options.hash

    @classmethod
    def open(cls, directory: str, options: Optional[StackOptions] = None, *,
             create: bool = True, **kwargs: Any) -> Stack:
        """Open the stack in ``directory``, creating ``tables.list`` when missing unless
        ``create`` is False (then a missing list is an empty stack and nothing is
        written: a reader never changes the directory; the first addition creates the
        list)."""
        if options is None:
            options = StackOptions(**kwargs)
        elif kwargs:
            raise TypeError("pass either options or keyword options, not both")
        return cls(directory, options, create)

    def _create_list(self) -> None:
        # An empty list, created through the lock so we never clobber a racing creator.
        try:
            lock = self._lock_list()
        except LockError:
            return  # someone else is creating or updating it
        with lock:
            if os.path.exists(self.list_path):
                return
            self._chmod_lock(lock)
            lock.commit()

    def _chmod_lock(self, lock: Any) -> None:
        # Like Git: the configured permissions apply exactly, not narrowed by the umask
        # (tables get the same chmod in _write_temp_table).
        if self.options.permissions is not None:
            os.chmod(lock.lock_path, self.options.permissions)

    def _mode(self) -> int:
        return self.options.permissions if self.options.permissions is not None else 0o666

    def _lock_list(self) -> Any:
        """Take ``tables.list.lock`` (waiting up to ``lock_timeout_ms``), or LockError."""
        return _core.LockFile(self.list_path, self.options.lock_timeout_ms, self._mode())

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Drop the handle's view; later calls raise :class:`ApiError`. Tables are not
        unmapped under iterators of other threads: a table's mapping goes away with
        the last snapshot or iterator that uses it."""
        with self._mutex:
            self._snap = _CLOSED

    @property
    def closed(self) -> bool:
        return self._snap is _CLOSED

    def __repr__(self) -> str:
        return f"<Stack {self.directory} {len(self._snap.names)} tables>"

    # -- the view ------------------------------------------------------------

    def snapshot(self) -> StackSnapshot:
        """The current view (one consistent version of the stack)."""
        snap = self._snap
        if snap is _CLOSED:
            raise ApiError("stack is closed")
        return snap

    @property
    def names(self) -> list[str]:
        """Table names of the current view, oldest first."""
        return list(self._snap.names)

    @property
    def tables(self) -> list[Table]:
        """Open tables of the current view, oldest first."""
        return list(self._snap.tables)

    @property
    def merged(self) -> MergedTable:
        """The merged view of the current snapshot."""
        return self._snap.merged

    # -- loading -------------------------------------------------------------

    def _read_list(self) -> tuple[int, bytes, list[str]]:
        """Read ``tables.list``: (read order, content, names). Reads are numbered
        under the mutex, so a higher number means a read at least as recent."""
        with self._mutex:
            self._seq += 1
            seq = self._seq
            data = _read_list_file(self.list_path)
        if data is None:
            return seq, b"", []  # like Git: no list yet is an empty stack
        snap = self._snap
        if data == snap._data:
            return seq, data, list(snap.names)  # unchanged: already validated
        return seq, data, parse_tables_list(data, self.list_path)

    def _build(self, names: Sequence[str], data: bytes, seq: int,
               known: Optional[Mapping[str, Table]] = None) -> StackSnapshot:
        """A snapshot of ``names``: tables of ``known`` or of the current view are
        reused, the others opened."""
        current = self._snap._by_name
        known = known or {}
        new: list[Table] = []
        opened: list[Table] = []
        try:
            for n in names:
                t = known.get(n) or current.get(n)
                if t is None:
                    t = Table.open(os.path.join(self.directory, n))
                    opened.append(t)
                new.append(t)
            cores = [t._core for t in new]
            for i in range(1, len(cores)):
                if cores[i].min_update_index <= cores[i - 1].max_update_index:
                    raise FormatError(
                        f"update index ranges overlap: {new[i - 1].name} and {new[i].name}",
                        self.list_path)
            snap = StackSnapshot(names, new, data, seq)
            # A handle keeps its hash (set when it was opened): if another process
            # filled an empty stack with tables of the other hash, writing ours next to
            # them would make the stack unreadable for everyone.
            have = getattr(self, "hash", None)
            h = snap.merged.hash
            if h is not None and have is not None and h != have:
                raise FormatError(f"stack holds {h} tables, this handle uses {have}",
                                  self.list_path)
        except BaseException:
            for t in opened:
                t.close()
            raise
        return snap

    def _install(self, snap: StackSnapshot, since: Optional[int] = None,
                 replaces: Optional[bytes] = None) -> bool:
        """Make ``snap`` the current view unless a newer one is installed already.

        A reloaded snapshot (``since`` None) wins over views from earlier reads. The
        list a write committed (``since``: the number of the read it validated under
        the lock, ``replaces``: that list) wins unless the current view came from a
        later read that saw something else than ``replaces``, which then is our list
        or a newer one."""
        with self._mutex:
            cur = self._snap
            if cur is _CLOSED:
                return False
            if since is None:
                ok = snap._seq > cur._seq
            else:
                ok = cur._seq <= since or cur._data == replaces
                if ok:
                    self._seq += 1
                    snap._seq = self._seq
            if ok:
                self._snap = snap
            return ok

    def _check_open(self) -> None:
        if self._snap is _CLOSED:
            raise ApiError("stack is closed")

    def reload(self, timeout: float = 3.0) -> bool:
        """Re-read ``tables.list`` and (re)open tables, reusing those already open.

        Cheap when nothing changed. When a listed table has vanished because a
        concurrent compaction replaced it, re-read the list and retry (for up to
        ``timeout`` seconds). On failure the previously loaded tables stay usable.
        Afterwards the view is at least as new as ``tables.list`` was when called.
        Returns True when the view changed."""
        self._check_open()
        deadline = time.monotonic() + timeout
        delay = 0.001
        changed = False
        while True:
            seq, data, names = self._read_list()
            if data == self._snap._data:
                return changed
            if self.hooks.after_list_read is not None:
                self.hooks.after_list_read(self, names)
            try:
                snap = self._build(names, data, seq)
            except NotExistError:
                # A table vanished: fine if tables.list moved on meanwhile.
                _, _, names2 = self._read_list()
                if names2 == names or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.1)
                continue
            if self._install(snap):
                return True
            # Another thread installed a view meanwhile, maybe from an older list (a
            # commit's): read again, so the view is not older than our read.
            changed = True
            if time.monotonic() > deadline:
                return True

    def _locked_view(self, expect: Optional[StackSnapshot],
                     reload: bool) -> tuple[int, bytes, StackSnapshot]:
        """For a writer holding the ``tables.list`` lock: read the list and return
        (read number, content, the view of exactly that list). The view is
        ``expect`` (default: the current one) when it names the same tables; else,
        with ``reload``, the list is loaded (and installed); else OutdatedError."""
        seq, data, names = self._read_list()
        snap = self._snap if expect is None else expect
        if snap is _CLOSED:
            raise ApiError("stack is closed")
        if list(snap.names) == names:
            return seq, data, snap
        if not reload:
            raise OutdatedError("stack changed on disk since it was loaded; reload and retry")
        snap = self._build(names, data, seq)
        self._install(snap)
        return seq, data, snap

    def _adopt(self, names: list[str], data: bytes, since: int, replaces: bytes,
               known: Mapping[str, Table]) -> Optional[StackSnapshot]:
        """After a commit: install the list this handle committed (tables of
        ``known`` reused). Never raises: the update is committed whatever happens
        here; a failure is recorded in ``stats.last_reload_error``. Returns the
        committed view, None when it could not be loaded."""
        try:
            try:
                snap = self._build(names, data, 0, known)
            except NotExistError:
                self.reload()  # a table vanished already (a racing compaction)
                return None
            self._install(snap, since, replaces)
            return snap
        except Exception as e:
            self.stats.last_reload_error = e
            return None

    def is_up_to_date(self) -> bool:
        """True when ``tables.list`` on disk names exactly the loaded tables."""
        _, _, names = self._read_list()
        return names == list(self._snap.names)

    # -- reading -------------------------------------------------------------

    def next_update_index(self) -> int:
        """The update index the next addition must use (at least)."""
        return self._snap.next_update_index()

    def read_ref(self, name: NameLike) -> Optional[RefRecord]:
        return self._snap.merged.read_ref(name)

    def read_refs(self, names: Iterable[NameLike]) -> list[Optional[RefRecord]]:
        """``read_ref`` of many names at once, without holding the GIL while searching."""
        return self.merged.read_refs(names)

    def refs(self, prefix: NameLike = "") -> Iterator[RefRecord]:
        return self._snap.merged.refs(prefix)

    def logs(self, refname: Optional[NameLike] = None) -> Iterator[LogRecord]:
        return self._snap.merged.logs(refname)

    def refs_pointing_at(self, oid: OidLike) -> list[RefRecord]:
        return self._snap.merged.refs_for(oid)

    def refs_for_many(self, oids: Iterable[OidLike]) -> list[list[RefRecord]]:
        """``refs_for`` of many object ids at once, without holding the GIL while searching."""
        return self.merged.refs_for_many(oids)

    def table_path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _count(self, **counts: int) -> None:
        """Add to the stats counters (under the mutex: threads share them)."""
        with self._mutex:
            for k, v in counts.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)

    # -- writing -------------------------------------------------------------

    def new_addition(self, reload_if_outdated: bool = False) -> Addition:
        """Lock ``tables.list`` for an addition (see :class:`Addition`)."""
        return Addition(self, reload_if_outdated)

    def add(self, write: Callable[[TableWriter], None], reload_if_outdated: bool = False) -> None:
        """Add one table written by ``write(writer)`` and commit it. The writer comes
        with its limits set to the stack's next update index (read under the lock);
        the callback may widen them upwards with ``writer.set_limits`` before adding
        records. An empty table adds nothing."""
        with self.new_addition(reload_if_outdated) as add:
            add.add_table(write)
            add.commit()

    def transaction(self, reload_if_outdated: bool = True,
                    log: Optional[LogEntry] = None,
                    log_policy: Optional[LogPolicyLike] = None) -> Transaction:
        """An atomic multi-ref update; see :class:`reftable.transaction.Transaction`.
        ``log``: reflog entry written for every update that does not bring its own;
        ``log_policy``: which updates log (:class:`reftable.reflog.LogPolicy`)."""
        return Transaction(self, reload_if_outdated, log, log_policy)

    def _write_temp_table(
        self,
        fill: Callable[[TableWriter], None],
        options: WriteOptions,
        min_ui: int,
        max_ui: int,
    ) -> tuple[Optional[str], int, int, Optional[bytes]]:
        """Write a table to a temp file; return (temp path or None when the table came
        out empty, min update index, max update index, the bytes of a small table or
        None). No file is left on error. The bytes let an addition load its table
        without reading the file back."""
        tmp = self.table_path(temp_table_name(os.getpid(), _rand32()))
        fd = _core.io_open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                           self._mode())
        ok = False
        try:
            if self.options.permissions is not None:
                os.chmod(tmp, self.options.permissions)
            chunks: Optional[list[bytes]] = []

            def sink(b: bytes) -> None:
                nonlocal chunks
                _core.io_write(fd, b, tmp)
                if chunks is not None:
                    chunks.append(b)
                    if len(chunks) > 1:  # more than one flush: not small, don't keep
                        chunks = None

            w = TableWriter(sink, options, min_update_index=min_ui, max_update_index=max_ui)
            fill(w)
            empty = w.close()
            min_ui, max_ui = w.min_update_index, w.max_update_index
            if not empty and self.options.fsync:
                _core.io_fsync(fd, tmp)
            ok = True
        finally:
            try:
                _core.io_close(fd, tmp)
            except ReftableError:
                ok = False
                raise
            finally:
                if not ok or (ok and empty):
                    _unlink_quiet(tmp)
        if empty:
            return None, min_ui, max_ui, None
        return tmp, min_ui, max_ui, None if chunks is None else b"".join(chunks)

    def _final_name(self, min_ui: int, max_ui: int) -> str:
        return table_name(min_ui, max_ui, _rand32())

    def _write_list(self, lock: Any, names: Sequence[str]) -> bytes:
        self._chmod_lock(lock)
        data = serialize_tables_list(names)
        lock.write(data)
        # LockFile.commit fsyncs before the rename
        return data

    def _fsync_dir(self) -> None:
        # Called after a commit, to make the rename durable. The new state is already
        # visible to everyone, so a failure here must not be reported as a failed
        # commit (callers would retry an update that happened); it is recorded.
        if self.options.fsync and self.options.fsync_directory:
            try:
                _core.fsync_dir(self.directory)
            except OSError as e:
                self.stats.last_fsync_error = e

    # -- compaction ----------------------------------------------------------

    def _sizes(self, snap: StackSnapshot) -> list[int]:
        # Git's table size already excludes the footer
        hash_size = HASH_SIZES[self.hash]
        overhead = _core.header_size(hash_size) - 1 + _core.footer_size(hash_size)
        return [t.size - overhead for t in snap.tables]

    def table_sizes_for_compaction(self) -> list[int]:
        """Table sizes without the (constant) header overhead, as Git counts them."""
        return self._sizes(self._snap)

    def auto_compact(self) -> bool:
        """Compact the smallest suffix that breaks the geometric sequence, best effort:
        tables locked by someone else are skipped. Returns True when it compacted."""
        return self._auto_compact(self.snapshot())

    def _auto_compact(self, snap: StackSnapshot) -> bool:
        if len(snap.tables) < 2:
            return False
        start, end = suggest_compaction_segment(self._sizes(snap),
                                                self.options.geometric_factor)
        if end - start <= 0:
            return False
        return self._compact_range_stats(snap, start, end - 1, None, best_effort=True)

    def compact(self, auto: bool = False, expire: Optional[LogExpiry] = None,
                progress: Optional[Callable[[int], Any]] = None) -> bool:
        """``auto``: :meth:`auto_compact`; else :meth:`compact_all`."""
        return self.auto_compact() if auto else self.compact_all(expire, progress)

    def compact_all(self, expire: Optional[LogExpiry] = None,
                    progress: Optional[Callable[[int], Any]] = None,
                    reload_if_outdated: bool = False) -> bool:
        """Merge every table into one, dropping tombstones and expired reflog entries.
        Raises :class:`LockError` when a table is locked by another process.
        ``progress`` is called with the number of records merged so far.

        When the stack changed on disk since this handle loaded it, Git's behaviour
        is an :class:`OutdatedError`; with ``reload_if_outdated`` the compaction
        instead takes every table that ``tables.list`` names under the lock (so busy
        writers cannot starve it)."""
        snap = self.snapshot()
        if not snap.tables and not reload_if_outdated:
            return False
        return self._compact_range_stats(snap, 0, len(snap.tables) - 1, expire,
                                         best_effort=False, progress=progress,
                                         whole=reload_if_outdated)

    def compact_range(self, first: int, last: int, expire: Optional[LogExpiry] = None) -> bool:
        """Compact tables ``first..last`` (inclusive, indices into :attr:`tables`)."""
        return self._compact_range_stats(self.snapshot(), first, last, expire,
                                         best_effort=False)

    def _compact_range_stats(self, snap: StackSnapshot, first: int, last: int,
                             expire: Optional[LogExpiry], best_effort: bool,
                             progress: Optional[Callable[[int], Any]] = None,
                             whole: bool = False) -> bool:
        try:
            return self._compact_range(snap, first, last, expire, best_effort, progress,
                                       whole)
        except LockError:
            self._count(failures=1)
            raise

    def _compact_range(self, snap: StackSnapshot, first: int, last: int,
                       expire: Optional[LogExpiry], best_effort: bool,
                       progress: Optional[Callable[[int], Any]] = None,
                       whole: bool = False) -> bool:
        """Compact ``snap``'s tables ``first..last``; ``snap`` must be what
        ``tables.list`` names under the lock (else OutdatedError). ``whole``: compact
        every table of the list read under the lock instead."""
        if not whole and (first > last or (expire is None and first == last)):
            return False
        if not whole and (last >= len(snap.tables) or first < 0):
            raise ApiError(f"compaction range [{first}, {last}] outside the stack")
        self._count(attempts=1)
        queued = self._turns.enter()
        try:
            list_lock: Any = self._lock_list()
        except BaseException:
            self._turns.leave(queued)
            raise
        table_locks: list[Any] = []
        tmp: Optional[str] = None
        new_path: Optional[str] = None
        committed = False
        try:
            _, _, locked = self._locked_view(snap, reload=whole)
            if whole:
                snap, first, last = locked, 0, len(locked.tables) - 1
                if first > last or (expire is None and first == last):
                    return False  # (the finally below releases the lock)
            # Lock the tables newest to oldest: a process that appended tables can
            # then still compact its own new tables while we hold older ones.
            for i in range(last, first - 1, -1):
                try:
                    table_locks.append(_core.LockFile(self.table_path(snap.names[i]), 0,
                                                      self._mode()))
                except LockError:
                    if best_effort and last - i >= 2:
                        first = i + 1  # compact just the newer tables we could lock
                        break
                    raise
            # Merging may take long: let writers append while we do it.
            list_lock.rollback()
            self._turns.leave(queued)
            queued = False
            if self.hooks.after_compaction_locks is not None:
                self.hooks.after_compaction_locks(self, first, last)

            names = list(snap.names[first:last + 1])
            tables = list(snap.tables[first:last + 1])
            min_ui = tables[0].min_update_index
            max_ui = tables[-1].max_update_index
            opts = self.options.write_options(self.hash, exact=True)
            tmp, _, _, _ = self._write_temp_table(
                lambda w: self._write_compacted(w, tables, first == 0, expire, progress),
                opts, min_ui, max_ui)
            if self.hooks.after_compaction_merge is not None:
                self.hooks.after_compaction_merge(self, first, last)

            queued = self._turns.enter()
            list_lock = self._lock_list()
            # Re-read tables.list: others may have appended (keep theirs) or, in
            # theory, replaced our tables (then give up rather than lose anything).
            seq, before, current = self._read_list()
            try:
                at = current.index(names[0])
            except ValueError:
                raise OutdatedError("compacted tables vanished from tables.list") from None
            if current[at:at + len(names)] != names:
                raise OutdatedError("compacted tables no longer contiguous in tables.list")
            new_list = list(current[:at])
            if tmp is not None:
                new_name = self._final_name(min_ui, max_ui)
                while new_name in current:
                    # Compacting one table keeps its update index range: should the
                    # random suffix repeat too, the rename would replace the old table
                    # and deleting the replaced tables would delete the new one.
                    new_name = self._final_name(min_ui, max_ui)
                new_path = self.table_path(new_name)
                _core.io_rename(tmp, new_path)
                tmp = None
                new_list.append(new_name)
            new_list.extend(current[at + len(names):])
            data = self._write_list(list_lock, new_list)
            list_lock.commit(self.options.fsync)
            committed = True
            # Committed: nothing below raises (failures are recorded in stats).
            self._fsync_dir()
            # The replaced tables are unreferenced now; remove them while we still hold
            # their locks so nobody else tries to compact them. Snapshots that use them
            # keep reading: their mappings stay valid after the unlink.
            for n in names:
                _unlink_quiet(self.table_path(n))
            self._adopt(new_list, data, seq, before, snap._by_name)
        finally:
            if not committed:
                if tmp is not None:
                    _unlink_quiet(tmp)
                if new_path is not None:
                    _unlink_quiet(new_path)
            for lk in table_locks:
                _rollback_quiet(lk)
            _rollback_quiet(list_lock)
            self._turns.leave(queued)
        return True

    def _write_compacted(self, w: TableWriter, tables: list[Table], bottom: bool,
                         expire: Optional[LogExpiry],
                         progress: Optional[Callable[[int], Any]] = None) -> None:
        # Records are copied block to block in the core: no Python object per record.
        self._count(bytes=sum(t.size for t in tables))
        core = w._core
        # One sequential pass: keep resident memory flat however large the inputs.
        for t in tables:
            t._set_eviction(True)
        refs = _core.MergedIter([t._core.iter_section(_REF) for t in tables], _REF, False)
        entries = refs.copy_to(core, bottom, 0, 0, False, progress)
        base = entries

        def log_progress(n: int) -> None:
            if progress is not None:
                progress(base + n)

        logs = _core.MergedIter([t._core.iter_section(_LOG) for t in tables], _LOG, False)
        # Like Git's compaction, re-apply the log message normalisation unless the
        # stack is in exact mode (so compacted tables are byte-identical to Git's).
        try:
            entries += logs.copy_to(core, bottom, expire.min_update_index if expire else 0,
                                    expire.time if expire else 0,
                                    not self.options.write.exact_log_message,
                                    log_progress if progress is not None else None)
        finally:
            for t in tables:
                t._set_eviction(False)
        self._count(entries_written=entries)

    # -- cleaning ------------------------------------------------------------

    def clean(self, stale_locks_older_than: Optional[float] = None) -> list[str]:
        """Remove leftovers of crashed or interrupted processes: ``.ref`` files that
        ``tables.list`` does not name and whose update indices are not above the
        stack's (so never a table a concurrent writer is about to add), and temp
        tables of processes that no longer exist. Holds the ``tables.list`` lock.

        A process killed while holding a lock leaves its ``.lock`` file behind, and
        that blocks writers (or compaction of that table) until removed. With
        ``stale_locks_older_than`` (seconds), lock files older than that are removed
        first: use it only when no process can legitimately hold a lock that long.
        Returns the names removed."""
        self._check_open()
        removed: list[str] = []
        if stale_locks_older_than is not None:
            now = time.time()
            for entry in sorted(os.listdir(self.directory)):
                if not entry.endswith(".lock"):
                    continue
                path = self.table_path(entry)
                try:
                    age = now - os.stat(path).st_mtime
                except FileNotFoundError:
                    continue
                if age >= stale_locks_older_than:
                    _unlink_quiet(path)
                    removed.append(entry)
        queued = self._turns.enter()
        try:
            return self._clean_locked(removed)
        finally:
            self._turns.leave(queued)

    def _clean_locked(self, removed: list[str]) -> list[str]:
        lock = self._lock_list()
        try:
            # what the list names under the lock, not the handle's (shared) view
            _, _, snap = self._locked_view(None, reload=True)
            listed = set(snap.names)
            max_ui = snap.tables[-1].max_update_index if snap.tables else 0
            for entry in sorted(os.listdir(self.directory)):
                path = self.table_path(entry)
                named = parse_table_name(entry)
                if named is not None and entry not in listed:
                    if _table_max_update_index(path, named[1]) <= max_ui:
                        _unlink_quiet(path)
                        removed.append(entry)
                    continue
                pid = temp_table_pid(entry)
                if pid is not None and not _pid_alive(pid):
                    _unlink_quiet(path)
                    removed.append(entry)
        finally:
            _rollback_quiet(lock)
        return removed


def _table_max_update_index(path: str, named: int) -> int:
    """Max update index of a stray table: from its header, else ``named`` (the one
    its name says)."""
    try:
        with Table.open(path) as t:
            return t.max_update_index
    except ReftableError:
        return named


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unlink_quiet(path: str) -> None:
    try:
        _core.io_unlink(path, True)
    except OSError:
        pass


def _rollback_quiet(lock: Any) -> None:
    try:
        lock.rollback()
    except OSError:
        pass


class Addition(Closing):
    """Adding tables to a stack under the ``tables.list`` lock (Git's
    ``reftable_addition``). Use as a context manager; uncommitted work is discarded.

    :attr:`snapshot` is the view validated under the lock: the new tables go on top
    of exactly its tables, whatever other threads do to the stack's view meanwhile.
    An addition belongs to one thread; the stack it writes to may be shared.

    >>> with stack.new_addition() as add:
    ...     add.add_table(lambda w: (w.set_limits(ui, ui), w.add_ref(rec)))
    ...     add.commit()
    """

    def __init__(self, stack: Stack, reload_if_outdated: bool = False):
        stack._check_open()
        self.stack = stack
        self.new_tables: list[str] = []
        self._new_bytes: dict[str, bytes] = {}
        self._committed = False
        self._queued = stack._turns.enter()
        try:
            self._lock: Any = stack._lock_list()
        except BaseException:
            self._leave_queue()
            raise
        try:
            self._seq, self._base, self.snapshot = stack._locked_view(None, reload_if_outdated)
        except BaseException:
            _rollback_quiet(self._lock)
            self._leave_queue()
            raise
        self.next_update_index = self.snapshot.next_update_index()

    def add_table(self, write: Callable[[TableWriter], None],
                  options: Optional[WriteOptions] = None) -> Optional[str]:
        """Write one new table with ``write(writer)``; it must set limits with a min
        update index of at least :attr:`next_update_index`. Returns the table name, or
        None when the table came out empty (nothing is added then)."""
        if self._committed:
            raise ApiError("addition already committed")
        st = self.stack
        opts = options or st.options.write_options(st.hash)
        nui = self.next_update_index

        def fill(w: TableWriter) -> None:
            w.set_limits(nui, nui)
            write(w)
            if w.min_update_index < nui:
                raise ApiError(
                    f"table min update index {w.min_update_index} below the stack's next "
                    f"update index {nui}")

        tmp, lo, hi, data = st._write_temp_table(fill, opts, nui, nui)
        if tmp is None:
            return None
        name = st._final_name(lo, hi)
        try:
            _core.io_rename(tmp, st.table_path(name))
        except BaseException:
            _unlink_quiet(tmp)
            raise
        self.new_tables.append(name)
        if data is not None:
            self._new_bytes[name] = data
        self.next_update_index = hi + 1
        return name

    def commit(self) -> None:
        """Publish the new tables (append them to ``tables.list``), then auto-compact
        unless disabled. Once the list is committed nothing raises: failures of
        auto-compaction, of the directory fsync and of loading the new view are
        recorded in ``stack.stats`` (``last_auto_compaction_error``,
        ``last_fsync_error``, ``last_reload_error``)."""
        if self._committed:
            raise ApiError("addition already committed")
        st = self.stack
        if not self.new_tables:
            self.close()
            return
        if st.hooks.before_list_write is not None:
            st.hooks.before_list_write(st)
        names = list(self.snapshot.names) + self.new_tables
        try:
            data = st._write_list(self._lock, names)
            self._lock.commit(st.options.fsync)
        except BaseException:
            self.close()
            raise
        self._committed = True
        st._count(tables_added=len(self.new_tables))
        st._fsync_dir()
        # Our view becomes exactly what we committed (unless a newer one is there
        # already), without reading back the list or our own new tables.
        known = dict(self.snapshot._by_name)
        for name, raw in self._new_bytes.items():
            known[name] = Table(raw, st.table_path(name))
        snap = st._adopt(names, data, self._seq, self._base, known)
        # the next writer of this handle finds our list installed as its view
        self._leave_queue()
        if st.options.auto_compact and snap is not None:
            try:
                st._auto_compact(snap)
            except Exception as e:
                st.stats.last_auto_compaction_error = e

    def close(self) -> None:
        """Discard uncommitted tables and release the lock."""
        if not self._committed:
            for name in self.new_tables:
                _unlink_quiet(self.stack.table_path(name))
            self.new_tables = []
        _rollback_quiet(self._lock)
        self._leave_queue()

    def _leave_queue(self) -> None:
        queued, self._queued = self._queued, False
        self.stack._turns.leave(queued)

    def __del__(self) -> None:
        # an addition dropped without close(): give the other threads their turn
        # (its lock file is removed when the LockFile goes away)
        if getattr(self, "_queued", False):
            self._leave_queue()
