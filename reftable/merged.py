"""Merged (stacked) views over several tables: :class:`MergedTable`.

Tables are given oldest first. For every key the newest table that has it wins;
deletions (tombstones) hide older records and are dropped from the output unless
``suppress_deletions`` is False.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Optional

from . import _core
from .errors import FormatError
from .records import LogRecord, NameLike, OidLike, RefRecord, to_name, to_name_bytes, to_oid
from .table import Table, log_from_tuple, log_key, ref_from_tuple

__all__ = ["MergedTable", "merge_tuples"]

_LOG = _core.BLOCK_TYPE_LOG


def _ref_key(t: tuple[Any, ...]) -> Any:
    return t[0]


def _log_key(t: tuple[Any, ...]) -> Any:
    return (t[0], -t[1])


def merge_tuples(
    iters: Sequence[Iterator[tuple[Any, ...]]],
    key: Callable[[tuple[Any, ...]], Any],
    suppress_deletions: bool = True,
) -> Iterator[tuple[Any, ...]]:
    """k-way merge of sorted record iterators given oldest first; newest wins per key."""
    heap: list[tuple[Any, int, tuple[Any, ...]]] = []
    for i, it in enumerate(iters):
        for t in it:
            heap.append((key(t), -i, t))
            break
    heapq.heapify(heap)
    while heap:
        k, negi, t = heap[0]
        it = iters[-negi]
        nxt = next(it, None)
        if nxt is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (key(nxt), negi, nxt))
        # drop the same key from older tables
        while heap and heap[0][0] == k:
            _, negj, _ = heap[0]
            it2 = iters[-negj]
            n2 = next(it2, None)
            if n2 is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (key(n2), negj, n2))
        if suppress_deletions and t[2] == 0:
            continue
        yield t


class MergedTable:
    """A read-only view of several tables (oldest first) as one."""

    def __init__(self, tables: Iterable[Table], suppress_deletions: bool = True):
        self.tables: list[Table] = list(tables)
        self.suppress_deletions = suppress_deletions
        hashes = {t.hash for t in self.tables}
        if len(hashes) > 1:
            raise FormatError(f"tables of different hashes in one stack: {sorted(hashes)}")
        self.hash = hashes.pop() if hashes else None

    @property
    def min_update_index(self) -> int:
        return self.tables[0].min_update_index if self.tables else 0

    @property
    def max_update_index(self) -> int:
        return self.tables[-1].max_update_index if self.tables else 0

    def ref_tuples(self, start: NameLike = "") -> Iterator[tuple[Any, ...]]:
        return merge_tuples([t.ref_tuples(start) for t in self.tables], _ref_key,
                            self.suppress_deletions)

    def refs(self, prefix: NameLike = "") -> Iterator[RefRecord]:
        """Merged refs in name order (under ``prefix`` when given)."""
        pfx = to_name(prefix)
        for t in self.ref_tuples(pfx):
            if pfx and not t[0].startswith(pfx):
                break
            yield ref_from_tuple(t)

    def read_ref(self, name: NameLike) -> Optional[RefRecord]:
        """The newest record for ``name``; None when absent or deleted (unless
        deletions are not suppressed)."""
        n = to_name(name)
        for table in reversed(self.tables):
            rec = table.read_ref(n)
            if rec is not None:
                if rec.value_type == 0 and self.suppress_deletions:
                    return None
                return rec
        return None

    def log_tuples(self, refname: Optional[NameLike] = None) -> Iterator[tuple[Any, ...]]:
        return merge_tuples([t.log_tuples(refname) for t in self.tables], _log_key,
                            self.suppress_deletions)

    def logs(self, refname: Optional[NameLike] = None) -> Iterator[LogRecord]:
        """Merged reflog entries (ref name ascending, newest first); only ``refname``'s
        when given."""
        name = None if refname is None else to_name(refname)
        for t in self.log_tuples(refname):
            if name is not None and t[0] != name:
                break
            yield log_from_tuple(t)

    def seek_log(self, refname: NameLike, update_index: int) -> Iterator[LogRecord]:
        key = log_key(to_name_bytes(refname), update_index)
        iters = [t._core.seek(_LOG, key) for t in self.tables]
        for t in merge_tuples(iters, _log_key, self.suppress_deletions):
            yield log_from_tuple(t)

    def refs_for(self, oid: OidLike) -> list[RefRecord]:
        """Live refs (in the merged view) whose value or peeled value is ``oid``."""
        raw = to_oid(oid)
        names = set()
        for table in self.tables:
            for rec in table.refs_for(raw):
                names.add(rec.name)
        out = []
        for name in sorted(names):
            rec = self.read_ref(name)
            if rec is not None and (rec.value == raw or rec.target_value == raw):
                out.append(rec)
        return out
