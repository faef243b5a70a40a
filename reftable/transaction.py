"""Atomic multi-ref updates on a stack, with expected old values checked under the
``tables.list`` lock.

>>> with stack.transaction(log=LogEntry("C O Mitter", "c@example.com", "push")) as tx:
...     tx.update("refs/heads/main", new_id, expect=old_id)
...     tx.delete("refs/heads/topic")
...     tx.symref("HEAD", "refs/heads/main")

Refs are updated as named (no dereferencing of symrefs). All updates of one
transaction share one update index and land in one table, or nothing is written.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional, Protocol

from ._value import dataclass
from .errors import ApiError, ExpectationError, RefConflictError
from .records import (
    HASH_SIZES,
    LogRecord,
    LogValueType,
    NameLike,
    OidLike,
    RefRecord,
    RefValueType,
    log_order,
    null_oid,
    ref_order,
    to_name,
    to_oid,
)
from .refname import (
    check_delete_ref_name,
    check_symbolic_ref_name,
    check_symref_target,
    check_update_ref_name,
)

if TYPE_CHECKING:
    from .writer import TableWriter

__all__ = ["Transaction", "LogEntry", "ANY", "check_refs_available", "RefView",
           "LockedAddition", "TransactionTarget", "LogPolicyLike"]


# What a transaction needs from the layer below it, as protocols: this module never
# imports the stack (which makes transactions), so the two do not import each other.


class RefView(Protocol):
    """One consistent version of the refs and logs (a
    :class:`~reftable.stack.StackSnapshot`, or a :class:`~reftable.stack.Stack`'s
    current view)."""

    def read_ref(self, name: NameLike) -> Optional[RefRecord]: ...
    def refs(self, prefix: NameLike = "") -> Iterator[RefRecord]: ...
    def logs(self, refname: Optional[NameLike] = None) -> Iterator[LogRecord]: ...


class LockedAddition(Protocol):
    """An addition holding the ``tables.list`` lock (a
    :class:`~reftable.stack.Addition`): the view validated under the lock, and one
    new table written on top of exactly that view."""

    @property
    def snapshot(self) -> RefView: ...
    @property
    def next_update_index(self) -> int: ...
    def add_table(self, write: Callable[[TableWriter], None]) -> Optional[str]: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class TransactionTarget(Protocol):
    """Where a transaction commits (a :class:`~reftable.stack.Stack`)."""

    @property
    def hash(self) -> str: ...
    def new_addition(self, reload_if_outdated: bool = False) -> LockedAddition: ...


class LogPolicyLike(Protocol):
    """Which updates write a reflog entry (a :class:`~reftable.reflog.LogPolicy`)."""

    def should_write(self, view: RefView, refname: str) -> bool: ...


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()
"""Expectation that accepts any current state (no check)."""


def local_tz_offset(when: Optional[float] = None) -> int:
    """The local timezone offset in Git's ``+hhmm`` integer form (e.g. -930)."""
    t = _time.localtime(when)
    minutes = (t.tm_gmtoff or 0) // 60
    sign = -1 if minutes < 0 else 1
    minutes = abs(minutes)
    return sign * ((minutes // 60) * 100 + minutes % 60)


def check_refs_available(stack: RefView, created: set[str],
                         deleted: set[str]) -> None:
    """Git's directory/file rule: ``a/b`` cannot exist beside ``a``. Raise
    :class:`RefConflictError` if creating ``created`` (while deleting ``deleted``)
    breaks it, against ``stack`` as it is read now (call it under the lock)."""
    for name in sorted(created):
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in created or (parent not in deleted and
                                     stack.read_ref(parent) is not None):
                raise RefConflictError(f"{name}: '{parent}' exists; cannot create "
                                       f"'{name}'", name)
        for child in stack.refs(name + "/"):
            if child.name not in deleted:
                raise RefConflictError(f"{name}: '{child.name}' exists; cannot create "
                                       f"'{name}'", name)


@dataclass(frozen=True)
class LogEntry:
    """Who/when/why of a reflog entry. ``time`` None means now."""

    name: str = ""
    email: str = ""
    message: str = ""
    time: Optional[int] = None
    tz_offset: Optional[int] = None


@dataclass
class _Update:
    name: str
    kind: str  # "update", "delete", "verify", "symref"
    new: Optional[bytes] = None
    peeled: Optional[bytes] = None
    target: Optional[str] = None
    expect: Any = ANY  # ANY, None (must not exist), or raw oid
    expect_target: Optional[str] = None
    log: Optional[LogEntry] = None


class Transaction:
    """Collects ref updates and commits them atomically (see module docs).

    A transaction belongs to one thread; the stack may be shared. Expectations are
    checked against the view read under the ``tables.list`` lock, never against the
    stack's shared view (which other threads may reload meanwhile)."""

    def __init__(self, stack: TransactionTarget, reload_if_outdated: bool = True,
                 log: Optional[LogEntry] = None,
                 log_policy: Optional[LogPolicyLike] = None):
        """``log``: the entry for updates without their own. ``log_policy``: which
        updates write it, as Git's ``core.logAllRefUpdates`` decides (see
        :class:`reftable.reflog.LogPolicy`; a symref whose target does not resolve is
        not logged then); None logs every update that has an entry."""
        self.stack = stack
        self.reload_if_outdated = reload_if_outdated
        self.default_log = log
        self.log_policy = log_policy
        self._updates: dict[str, _Update] = {}
        self._log_only: dict[str, tuple[bytes, bytes, LogEntry, bool]] = {}
        self._done = False

    # -- building ------------------------------------------------------------

    def _oid(self, oid: OidLike) -> bytes:
        return to_oid(oid, HASH_SIZES[self.stack.hash])

    def _expect(self, expect: Any) -> Any:
        if expect is ANY or expect is None:
            return expect
        return self._oid(expect)

    def _add(self, u: _Update) -> None:
        if self._done:
            raise ApiError("transaction already finished")
        if u.name in self._updates:
            raise ApiError(f"{u.name}: more than one update in one transaction")
        self._updates[u.name] = u

    def _target(self, expect_target: Optional[NameLike]) -> Optional[str]:
        return None if expect_target is None else to_name(expect_target)

    def update(self, name: NameLike, new: OidLike, expect: Any = ANY,
               peeled: Optional[OidLike] = None, log: Optional[LogEntry] = None,
               expect_target: Optional[NameLike] = None) -> None:
        """Set ``name`` to ``new`` (with ``peeled`` for annotated tags). ``expect``:
        ANY (no check), None (must not exist) or the current object id;
        ``expect_target``: ``name`` must currently be a symref to this ref."""
        self._add(_Update(check_update_ref_name(name), "update", self._oid(new),
                          None if peeled is None else self._oid(peeled),
                          expect=self._expect(expect), log=log,
                          expect_target=self._target(expect_target)))

    def create(self, name: NameLike, new: OidLike, peeled: Optional[OidLike] = None,
               log: Optional[LogEntry] = None) -> None:
        """Create ``name``; fails if it exists."""
        self.update(name, new, expect=None, peeled=peeled, log=log)

    def delete(self, name: NameLike, expect: Any = ANY, log: Optional[LogEntry] = None,
               expect_target: Optional[NameLike] = None) -> None:
        """Delete ``name``: a ref tombstone, and tombstones for its reflog entries (as
        Git deletes a ref's reflog with it). ``log`` is accepted for symmetry and
        ignored: the reflog goes away."""
        self._add(_Update(check_delete_ref_name(name), "delete", expect=self._expect(expect),
                          log=log, expect_target=self._target(expect_target)))

    def verify(self, name: NameLike, expect: Any = None,
               expect_target: Optional[NameLike] = None) -> None:
        """Only check that ``name`` is at ``expect`` (None: does not exist; ANY: no
        check of the value) and, with ``expect_target``, a symref to that ref."""
        self._add(_Update(check_delete_ref_name(name), "verify", expect=self._expect(expect),
                          expect_target=self._target(expect_target)))

    def symref(self, name: NameLike, target: NameLike, expect: Any = ANY,
               expect_target: Optional[NameLike] = None,
               log: Optional[LogEntry] = None) -> None:
        """Make ``name`` a symbolic ref to ``target``. ``expect_target``: the current
        symref target it must have. With ``log``, a reflog entry of ``name`` records
        the move between the object ids the old and new targets resolve to (like
        Git's ``checkout: moving from ...``)."""
        self._add(_Update(check_symbolic_ref_name(name), "symref",
                          target=check_symref_target(target),
                          expect=self._expect(expect),
                          expect_target=self._target(expect_target), log=log))

    def log(self, name: NameLike, old: OidLike, new: OidLike, entry: LogEntry,
            force: bool = False) -> None:
        """Write a reflog entry for ``name`` without changing the ref (for example
        HEAD's entry when a branch is updated through it). Under a log policy the
        entry is written only where the policy logs, unless ``force`` (``git reflog
        write``)."""
        n = to_name(name)
        if self._done:
            raise ApiError("transaction already finished")
        if n in self._log_only:
            raise ApiError(f"{n}: more than one log-only entry in one transaction")
        self._log_only[n] = (self._oid(old), self._oid(new), entry, force)

    # -- committing ----------------------------------------------------------

    def _check(self, u: _Update, cur: Optional[RefRecord]) -> None:
        if u.expect_target is not None:
            is_target = cur is not None and cur.value_type == RefValueType.SYMREF
            if not is_target or cur.target != u.expect_target:  # type: ignore[union-attr]
                have = "missing" if cur is None else repr(cur)
                raise ExpectationError(
                    f"{u.name}: expected symref to {u.expect_target}, found {have}", u.name)
        if u.expect is ANY:
            return
        if u.expect is None:
            if cur is not None:
                raise ExpectationError(f"{u.name}: expected to be missing, found {cur!r}", u.name)
            return
        if cur is None or cur.value != u.expect:
            have = "missing" if cur is None else repr(cur)
            raise ExpectationError(f"{u.name}: expected {u.expect.hex()}, found {have}", u.name)

    def _check_conflicts(self, st: RefView, writes: list[_Update]) -> None:
        # against the stack as read under the lock
        check_refs_available(st, {u.name for u in writes if u.kind != "delete"},
                             {u.name for u in writes if u.kind == "delete"})

    def _logs(self, st: RefView, name: str) -> bool:
        return self.log_policy is None or self.log_policy.should_write(st, name)

    def _resolve(self, st: RefView, name: Optional[str]) -> Optional[bytes]:
        """The object id ``name`` resolves to through symrefs, or None."""
        for _ in range(6):
            if name is None:
                return None
            cur = st.read_ref(name)
            if cur is None:
                return None
            if cur.value_type != RefValueType.SYMREF:
                return cur.value
            name = cur.target
        return None

    def commit(self) -> int:
        """Check every expectation under the lock and write one table. Returns the
        update index used (0 when there was nothing to write)."""
        add, ui = self._prepare()
        if add is None:
            return ui
        try:
            add.commit()
            return ui
        finally:
            add.close()

    def _prepare(self) -> tuple[Optional[LockedAddition], int]:
        """Take the lock, check every expectation and write the table, uncommitted:
        (the addition to commit, then close; the update index), or (None, 0) when
        there is nothing to write (the lock is released then)."""
        if self._done:
            raise ApiError("transaction already finished")
        self._done = True
        writes = [u for u in self._updates.values() if u.kind != "verify"]
        zero = null_oid(self.stack.hash)
        add = self.stack.new_addition(self.reload_if_outdated)
        try:
            # Everything is read from the view validated under the lock (never from
            # the stack's shared view, which other threads may reload meanwhile).
            st = add.snapshot
            current = {u.name: st.read_ref(u.name) for u in self._updates.values()}
            for u in self._updates.values():
                self._check(u, current[u.name])
            self._check_conflicts(st, writes)
            if not writes and not self._log_only:
                add.close()
                return None, 0
            ui = add.next_update_index
            refs: list[RefRecord] = []
            logs: list[LogRecord] = []
            now = int(_time.time())

            def entry_record(name: str, old: bytes, new: bytes, entry: LogEntry) -> LogRecord:
                when = now if entry.time is None else entry.time
                tz = local_tz_offset(when) if entry.tz_offset is None else entry.tz_offset
                return LogRecord(name, ui, LogValueType.UPDATE, old, new, entry.name,
                                 entry.email, when, tz, entry.message)

            for u in writes:
                cur = current[u.name]
                entry = u.log or self.default_log
                if u.kind == "update":
                    assert u.new is not None
                    if u.peeled is None:
                        refs.append(RefRecord(u.name, ui, RefValueType.VAL1, u.new))
                    else:
                        refs.append(RefRecord(u.name, ui, RefValueType.VAL2, u.new, u.peeled))
                    if entry is not None and self._logs(st, u.name):
                        old = cur.value if cur is not None and cur.value is not None else zero
                        logs.append(entry_record(u.name, old, u.new, entry))
                elif u.kind == "delete":
                    refs.append(RefRecord(u.name, ui, RefValueType.DELETION))
                    # the reflog goes with the ref
                    for lg in st.logs(u.name):
                        logs.append(LogRecord(u.name, lg.update_index, LogValueType.DELETION))
                else:
                    refs.append(RefRecord(u.name, ui, RefValueType.SYMREF, target=u.target))
                    if entry is not None and self._logs(st, u.name):
                        old_id = self._resolve(st, u.name) or zero
                        t = self._updates.get(u.target or "")
                        target_id: Optional[bytes]
                        if self.log_policy is not None:
                            # Git resolves the target in the store as it is and logs
                            # nothing for a dangling (unborn) target
                            target_id = self._resolve(st, u.target)
                        elif t is not None and t.kind in ("update", "delete"):
                            target_id = t.new or zero  # the target as this leaves it
                        else:
                            target_id = self._resolve(st, u.target) or zero
                        if target_id is not None:
                            logs.append(entry_record(u.name, old_id, target_id, entry))
            for name, (old_id, new_id, entry, force) in self._log_only.items():
                if (name not in self._updates or self._updates[name].kind == "verify") \
                        and (force or self._logs(st, name)):
                    logs.append(entry_record(name, old_id, new_id, entry))
            refs.sort(key=ref_order)
            logs.sort(key=log_order)

            def write(w: TableWriter) -> None:
                # (reflog tombstones keep the lower update index of the entries they
                # hide: only a log's upper bound is checked, as in Git)
                w.add_refs(refs)
                w.add_logs(logs)

            add.add_table(write)
            return add, ui
        except BaseException:
            add.close()
            raise

    def abort(self) -> None:
        self._done = True
        self._updates.clear()
        self._log_only.clear()

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc_type is None and not self._done:
            self.commit()
        else:
            self.abort()

