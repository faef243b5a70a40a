"""Merged (stacked) views over several tables: :class:`MergedTable`.

Tables are given oldest first. For every key the newest table that has it wins;
deletions (tombstones) hide older records and are dropped from the output unless
``suppress_deletions`` is False.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Optional

from ._impl import core as _core
from .errors import FormatError
from .records import LogRecord, NameLike, OidLike, RefRecord, to_name_bytes, to_oid
from .table import PackedRefColumns, RefColumns, Table, _columns, _packed, log_key

__all__ = ["MergedTable"]

_LOG = _core.BLOCK_TYPE_LOG
_REF = _core.BLOCK_TYPE_REF


class MergedTable:
    """A read-only view of several tables (oldest first) as one.

    Thread safety: a merged table never changes once made; any number of threads
    may look up and iterate in it at once. Each iterator belongs to one thread (do
    not call ``next`` on the same iterator from two threads). Closing one of its
    tables while other threads use it is not supported (a :class:`~reftable.stack.Stack`
    never does: it leaves its tables open while any snapshot uses them).
    """

    def __init__(self, tables: Iterable[Table], suppress_deletions: bool = True):
        self.tables: list[Table] = list(tables)
        self._cores = [t._core for t in self.tables]
        self.suppress_deletions = suppress_deletions
        sizes = {c.hash_size for c in self._cores}  # (one C attribute per table)
        if len(sizes) > 1:
            hashes = sorted({t.hash for t in self.tables})
            raise FormatError(f"tables of different hashes in one stack: {hashes}")
        self.hash = (self.tables[0].hash if self.tables else None)

    @property
    def min_update_index(self) -> int:
        """The lowest update index over all tables (as Git's merged table reports)."""
        return min((t.min_update_index for t in self.tables), default=0)

    @property
    def max_update_index(self) -> int:
        """The highest update index over all tables."""
        return max((t.max_update_index for t in self.tables), default=0)

    def _merge(self, typ: int, key: bytes, records: bool, stop: Optional[bytes]) -> Any:
        iters = [t._core.seek(typ, key, records, stop) if key else
                 t._core.iter_section(typ, records) for t in self.tables]
        return _core.MergedIter(iters, typ, self.suppress_deletions)

    def ref_tuples(self, start: NameLike = "") -> Iterator[tuple[Any, ...]]:
        """Merged raw ref tuples from the first name ``>= start`` on."""
        return self._merge(_REF, to_name_bytes(start), False, None)  # type: ignore

    def refs(self, prefix: NameLike = "") -> Iterator[RefRecord]:
        """Merged refs in name order (under ``prefix`` when given)."""
        p = to_name_bytes(prefix)
        return self._merge(_REF, p, True, p or None)  # type: ignore[no-any-return]

    def ref_columns(self, prefix: NameLike = "") -> RefColumns:
        """Merged refs (under ``prefix`` when given) as columns (see ``Table.ref_columns``)."""
        p = to_name_bytes(prefix)
        return _columns(self._merge(_REF, p, False, p or None).ref_columns())

    def ref_columns_packed(self, prefix: NameLike = "") -> PackedRefColumns:
        """Merged refs (under ``prefix`` when given) as packed columns (see
        ``Table.ref_columns_packed``): the merge of ``ref_columns``."""
        p = to_name_bytes(prefix)
        return _packed(self._merge(_REF, p, False, p or None).ref_columns(True))

    def count_refs(self, prefix: NameLike = "") -> int:
        p = to_name_bytes(prefix)
        return self._merge(_REF, p, False, p or None).count()  # type: ignore[no-any-return]

    def read_ref(self, name: NameLike) -> Optional[RefRecord]:
        """The newest record for ``name``; None when absent or deleted (unless
        deletions are not suppressed)."""
        return _core.merged_lookup(self._cores, to_name_bytes(name),  # type: ignore
                                   self.suppress_deletions)

    def read_refs(self, names: Iterable[NameLike]) -> list[Optional[RefRecord]]:
        """``read_ref`` of many names at once; the search runs without the GIL, so
        threads reading the same tables run in parallel."""
        return _core.merged_lookup_many(self._cores, names, self.suppress_deletions)

    def log_tuples(self, refname: Optional[NameLike] = None) -> Iterator[tuple[Any, ...]]:
        key = b"" if refname is None else to_name_bytes(refname) + b"\0"
        return self._merge(_LOG, key, False, key or None)  # type: ignore[no-any-return]

    def logs(self, refname: Optional[NameLike] = None) -> Iterator[LogRecord]:
        """Merged reflog entries (ref name ascending, newest first); only ``refname``'s
        when given."""
        key = b"" if refname is None else to_name_bytes(refname) + b"\0"
        return self._merge(_LOG, key, True, key or None)  # type: ignore[no-any-return]

    def seek_log(self, refname: NameLike, update_index: int) -> Iterator[LogRecord]:
        """Merged logs from ``(refname, update_index)`` on."""
        it: Iterator[LogRecord] = self._merge(
            _LOG, log_key(to_name_bytes(refname), update_index), True, None)
        return it

    def refs_for(self, oid: OidLike) -> list[RefRecord]:
        """Live refs (in the merged view) whose value or peeled value is ``oid``."""
        return self.refs_for_many([oid])[0]

    def refs_for_many(self, oids: Iterable[OidLike]) -> list[list[RefRecord]]:
        """``refs_for`` of many object ids at once: each table is searched without the
        GIL, then the candidates are looked up in the merged view (newer tables may
        have moved or deleted them)."""
        raw = [to_oid(o) for o in oids]
        names: list[set[str]] = [set() for _ in raw]
        for table in self.tables:
            for found, rs in zip(names, table.refs_for_many(raw), strict=True):
                found.update(r.name for r in rs)
        out = []
        for oid, found in zip(raw, names, strict=True):
            ordered = sorted(found)
            out.append([cur for cur in self.read_refs(ordered)
                        if cur is not None and (cur.value == oid or cur.target_value == oid)])
        return out
