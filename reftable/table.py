"""Reading one table: :class:`Table`.

A table is opened from a path (memory-mapped, zero copy; a file of at most 64 KiB is
read whole instead) or from bytes. Header and footer are validated on open; blocks are
validated as they are read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from itertools import chain, pairwise
from typing import Any, NamedTuple, Optional, Union

from ._closing import Closing
from ._impl import core as _core
from ._value import dataclass
from .records import (
    LogRecord,
    NameLike,
    OidLike,
    RefRecord,
    RefValueType,
    to_name_bytes,
    to_oid,
)

__all__ = ["Table", "RefColumns", "PackedRefColumns", "ref_from_tuple", "log_key"]

BLOCK_REF = _core.BLOCK_TYPE_REF
BLOCK_LOG = _core.BLOCK_TYPE_LOG
BLOCK_OBJ = _core.BLOCK_TYPE_OBJ

_RVT = tuple(RefValueType)


def ref_from_tuple(t: tuple[Any, ...]) -> RefRecord:
    return RefRecord(t[0], t[1], _RVT[t[2]], t[3], t[4], t[5])


class RefColumns(NamedTuple):
    """Every ref of a table or a merged view at once, column by column, for tools that
    want everything (no record object per ref). Position ``i`` of each column is the
    ``i``-th ref in name order."""

    names: list[str]
    value_types: bytes        # one RefValueType per ref
    update_indexes: memoryview  # unsigned 64-bit, one per ref
    values: bytes             # hash_size bytes per ref; zeros for symrefs and deletions
    peeled: dict[int, bytes]  # position -> peeled id (annotated tags)
    targets: dict[int, str]   # position -> target (symrefs)

    def value(self, i: int) -> Optional[bytes]:
        """The object id of ref ``i``, or None."""
        return _oid_at(self.value_types, self.values, i)


def _position(i: int, n: int) -> int:
    """``i`` as a list index of ``n`` items (negative from the end)."""
    j = i + n if i < 0 else i
    if not 0 <= j < n:
        raise IndexError(f"ref position {i} out of range for {n} refs")
    return j


def _oid_at(value_types: bytes, values: bytes, i: int) -> Optional[bytes]:
    """The object id of ref ``i`` of the columns, or None (symrefs and deletions)."""
    n = len(value_types)
    i = _position(i, n)
    if value_types[i] not in (RefValueType.VAL1, RefValueType.VAL2):
        return None
    size = len(values) // n
    return values[i * size:(i + 1) * size]


@dataclass(frozen=True)
class PackedRefColumns:
    """Every ref of a table or a merged view at once with no Python object per ref:
    the columns of :class:`RefColumns`, the names packed into one ``bytes``. Position
    ``i`` of each column is the ``i``-th ref in name order; name ``i`` is
    ``names_data[name_ends[i - 1]:name_ends[i]]`` (the first starts at 0), which
    :meth:`name_bytes` and :meth:`name` return. Immutable (compares by its columns)."""

    #: Every name's UTF-8, back to back, in name order.
    names_data: bytes
    #: Where each name ends in ``names_data`` (unsigned 64-bit, format ``Q``).
    name_ends: memoryview
    #: One RefValueType per ref.
    value_types: bytes
    #: Unsigned 64-bit (format ``Q``), one per ref.
    update_indexes: memoryview
    #: hash_size bytes per ref; zeros for symrefs and deletions.
    values: bytes
    #: Position -> peeled id (annotated tags).
    peeled: dict[int, bytes]
    #: Position -> target (symrefs).
    targets: dict[int, str]

    def __repr__(self) -> str:
        return f"<PackedRefColumns of {len(self)} refs, {len(self.names_data)} name bytes>"

    def __len__(self) -> int:
        """The number of refs."""
        return len(self.value_types)

    def name_bytes(self, i: int) -> bytes:
        """The name of ref ``i`` as stored (UTF-8)."""
        i = _position(i, len(self))
        return self.names_data[self.name_ends[i - 1] if i else 0:self.name_ends[i]]

    def name(self, i: int) -> str:
        """The name of ref ``i`` as ``str`` (bytes that are not UTF-8 as surrogate
        escapes, as every other API decodes names)."""
        return self.name_bytes(i).decode("utf-8", "surrogateescape")

    def names(self) -> list[str]:
        """Every name as ``str``: ``RefColumns.names`` (one object per ref: the cost
        that this class exists to avoid)."""
        data = self.names_data
        return [data[a:b].decode("utf-8", "surrogateescape")
                for a, b in pairwise(chain((0,), self.name_ends.tolist()))]

    def value(self, i: int) -> Optional[bytes]:
        """The object id of ref ``i``, or None."""
        return _oid_at(self.value_types, self.values, i)


def _columns(raw: tuple[Any, ...]) -> RefColumns:
    names, types, uis, ids, peeled, targets = raw
    return RefColumns(names, types, memoryview(uis).cast("Q"), ids, peeled, targets)


def _packed(raw: tuple[Any, ...]) -> PackedRefColumns:
    data, ends, types, uis, ids, peeled, targets = raw
    return PackedRefColumns(data, memoryview(ends).cast("Q"), types,
                            memoryview(uis).cast("Q"), ids, peeled, targets)


def log_key(refname: bytes, update_index: int) -> bytes:
    """The on-disk key of a log record: name, NUL, inverted update index."""
    return _core.log_key(refname, update_index)


class Table(Closing):
    """One reftable file (or buffer), read-only.

    Thread safety: lookups and iteration may run from several threads at once; each
    iterator belongs to one thread. :meth:`close` releases the table at once (its
    iterators raise afterwards): call it only when no other thread uses the table.

    >>> with Table.open(path) as t:
    ...     for ref in t.refs("refs/heads/"):
    ...         print(ref.name, ref.value.hex())
    """

    def __init__(self, data: Any, name: Optional[str] = None):
        self.name = name
        self._core = data if isinstance(data, _core.TableCore) else _core.TableCore(data, name)

    @classmethod
    def open(cls, path: Union[str, os.PathLike[str]]) -> Table:
        """Open and validate the table at ``path``: a file of at most 64 KiB is read
        whole; a larger one is memory-mapped on first need (its first few point lookups
        read just the blocks they use). ``NotExistError`` when there is none;
        ``FormatError`` when it is not a regular file or not a table."""
        p = os.fspath(path)
        return cls(_core.open_table(p), p)

    @classmethod
    def from_bytes(cls, data: bytes, name: Optional[str] = None) -> Table:
        return cls(data, name)

    def _set_eviction(self, on: bool) -> None:
        """Drop already-read pages during one sequential pass (mapped files only)."""
        if self._core.mapped:
            self._core.set_sequential_eviction(on)

    def close(self) -> None:
        self._core.release()

    def __repr__(self) -> str:
        return (
            f"<Table {self.name or '(bytes)'} v{self.version} {self.hash} "
            f"[{self.min_update_index}, {self.max_update_index}]>"
        )

    # -- header / footer -----------------------------------------------------

    @property
    def version(self) -> int:
        return int(self._core.version)

    @property
    def hash(self) -> str:
        return "sha1" if self._core.hash_size == 20 else "sha256"

    @property
    def hash_size(self) -> int:
        return int(self._core.hash_size)

    @property
    def block_size(self) -> int:
        return int(self._core.block_size)

    @property
    def min_update_index(self) -> int:
        return int(self._core.min_update_index)

    @property
    def max_update_index(self) -> int:
        return int(self._core.max_update_index)

    @property
    def object_id_len(self) -> int:
        return int(self._core.object_id_len) if self._core.obj_present else 0

    @property
    def size(self) -> int:
        return int(self._core.size)

    @property
    def sections(self) -> dict[str, dict[str, int]]:
        c = self._core
        return {
            "ref": {"present": int(c.ref_present), "offset": 0,
                    "index_offset": int(c.ref_index_offset)},
            "obj": {"present": int(c.obj_present), "offset": int(c.obj_offset),
                    "index_offset": int(c.obj_index_offset)},
            "log": {"present": int(c.log_present), "offset": int(c.log_offset),
                    "index_offset": int(c.log_index_offset)},
        }

    # -- refs ------------------------------------------------------------------

    def ref_tuples(self, start: NameLike = b"") -> Iterator[tuple[Any, ...]]:
        """Raw ref tuples ``(name, update_index, type, value, peeled, target)`` from the
        first name ``>= start`` on, deletions included (no record objects)."""
        key = to_name_bytes(start)
        if not key:
            return self._core.iter_section(BLOCK_REF)
        return self._core.seek(BLOCK_REF, key)

    def _ref_iter(self, prefix: bytes) -> Any:
        if not prefix:
            return self._core.iter_section(BLOCK_REF, True)
        return self._core.seek(BLOCK_REF, prefix, True, prefix)

    def refs(self, prefix: NameLike = "", *, include_deletions: bool = True) -> Iterator[RefRecord]:
        """Ref records in name order, optionally only those under ``prefix``."""
        it = self._ref_iter(to_name_bytes(prefix))
        if include_deletions:
            return it  # type: ignore[no-any-return]
        return (r for r in it if r.value_type != RefValueType.DELETION)

    def ref_names(self, prefix: NameLike = "") -> list[str]:
        """All ref names (tombstones included) without building records: the bulk path."""
        return self._ref_iter(to_name_bytes(prefix)).names()  # type: ignore[no-any-return]

    def ref_columns(self, prefix: NameLike = "") -> RefColumns:
        """All refs (tombstones included), optionally under ``prefix``, as columns: the
        fastest way to read everything."""
        return _columns(self._ref_iter(to_name_bytes(prefix)).ref_columns())

    def ref_columns_packed(self, prefix: NameLike = "") -> PackedRefColumns:
        """``ref_columns`` with the names packed into one ``bytes`` (no ``str`` per
        ref): the cheapest way to read everything. Decoded without the GIL, like
        ``ref_columns``."""
        return _packed(self._ref_iter(to_name_bytes(prefix)).ref_columns(True))

    def count_refs(self, prefix: NameLike = "") -> int:
        """Number of ref records (tombstones included), without building any."""
        return self._ref_iter(to_name_bytes(prefix)).count()  # type: ignore[no-any-return]

    def read_ref(self, name: NameLike) -> Optional[RefRecord]:
        """The record stored for ``name`` (possibly a deletion), or None."""
        key = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else \
            to_name_bytes(name)
        return self._core.lookup(BLOCK_REF, key)  # type: ignore[no-any-return]

    def read_refs(self, names: Iterable[NameLike]) -> list[Optional[RefRecord]]:
        """``read_ref`` of many names at once (deletions included); the search runs
        without the GIL, so other threads keep running."""
        return _core.merged_lookup_many([self._core], names, False)

    # -- logs ------------------------------------------------------------------

    def log_tuples(self, refname: Optional[NameLike] = None) -> Iterator[tuple[Any, ...]]:
        if refname is None:
            return self._core.iter_section(BLOCK_LOG)
        key = to_name_bytes(refname) + b"\0"
        return self._core.seek(BLOCK_LOG, key, False, key)

    def _log_iter(self, refname: Optional[NameLike]) -> Any:
        if refname is None:
            return self._core.iter_section(BLOCK_LOG, True)
        key = to_name_bytes(refname) + b"\0"
        return self._core.seek(BLOCK_LOG, key, True, key)

    def logs(self, refname: Optional[NameLike] = None) -> Iterator[LogRecord]:
        """Log records in key order (ref name, newest first); only ``refname``'s when
        given. Deletion records are included."""
        return self._log_iter(refname)  # type: ignore[no-any-return]

    def seek_log(self, refname: NameLike, update_index: int) -> Iterator[LogRecord]:
        """Logs from ``(refname, update_index)`` on (the same ref's older entries
        follow, then other refs)."""
        key = log_key(to_name_bytes(refname), update_index)
        return self._core.seek(BLOCK_LOG, key, True)

    # -- reverse index -----------------------------------------------------------

    def refs_for(self, oid: OidLike) -> list[RefRecord]:
        """Refs whose value or peeled value is ``oid``; uses the obj index when the
        table has one, else scans."""
        return self.refs_for_many([oid])[0]

    def refs_for_many(self, oids: Iterable[OidLike]) -> list[list[RefRecord]]:
        """``refs_for`` of many object ids at once; the search runs without the GIL."""
        raw = [to_oid(o, self.hash_size) for o in oids]
        return self._core.refs_for_many(raw)
