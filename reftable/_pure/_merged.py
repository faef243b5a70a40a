"""Merged iteration over the same section of several tables, and compaction's copy.

The twin of the compiled core's ``_merged`` layer: a k-way merge (a heap of
``(key, -table)``, so that for equal keys the newest table comes first), where
shadowed records and tombstones are skipped without building anything, and
``copy_to`` moves encoded values straight into a writer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from heapq import heapify, heappop, heapreplace
from typing import Any, Optional, Union

from ._buf import BE64, U64_MAX, encode_varint, get_varint
from ._record import BLOCK_REF, RawColumns, RawPacked, ref_columns
from ._table import RecordIter, TableCore
from ._writer import WriterCore

__all__ = ["MergedIter", "merged_lookup", "merged_lookup_many"]


def merged_lookup(cores: list[TableCore], key: bytes, suppress_deletions: bool = True) -> Any:
    """Point lookup of a ref over tables given oldest first: the newest record for
    ``key``, or None (also for a tombstone when deletions are suppressed)."""
    for c in reversed(cores):
        r = c.lookup(BLOCK_REF, key)
        if r is not None:
            if suppress_deletions and r.value_type == 0:
                return None
            return r
    return None


def merged_lookup_many(cores: list[TableCore], names: Iterable[Any],
                       suppress_deletions: bool = True) -> list[Any]:
    """``merged_lookup`` of many names (``str`` or ``bytes``, converted like
    ``records.to_name_bytes``) at once."""
    from ..records import to_name_bytes

    return [merged_lookup(cores, to_name_bytes(n), suppress_deletions) for n in names]


class MergedIter:
    """k-way merge of the same section of several tables (given oldest first): for each
    key the newest table's record wins; with ``suppress_deletions`` tombstones are
    dropped after hiding older records."""

    def __init__(self, iters: Any, typ: int, suppress_deletions: bool = True) -> None:
        self.iters: list[RecordIter] = list(iters)
        for it in self.iters:
            if not isinstance(it, RecordIter) or it.typ != typ:
                raise TypeError("MergedIter needs RecordIters over one section type")
        self.typ = typ
        self.suppress = suppress_deletions
        self._winners = self._merge()

    def _merge(self) -> Iterator[RecordIter]:
        """Yield the iterator holding each winning record as its current one; the
        consumer builds or skips it before asking for the next."""
        iters = self.iters
        suppress = self.suppress
        heap = [(it.keys[it.i], -n) for n, it in enumerate(iters) if it._advance()]
        heapify(heap)
        while heap:
            key, neg = heap[0]
            it = iters[-neg]
            if suppress and it.extras[it.i] == 0:
                it.i += 1  # a tombstone: hides older records, shows nothing
            else:
                yield it
            if it.i < it.n and it.stop is None:
                heapreplace(heap, (it.keys[it.i], neg))
            elif it._advance():
                heapreplace(heap, (it.keys[it.i], neg))
            else:
                heappop(heap)
            # skip the records of older tables with the same key
            while heap and heap[0][0] == key:
                neg = heap[0][1]
                old = iters[-neg]
                old.i += 1
                if old._advance():
                    heapreplace(heap, (old.keys[old.i], neg))
                else:
                    heappop(heap)

    def __iter__(self) -> MergedIter:
        return self

    def __next__(self) -> Any:
        return next(self._winners)._make()

    def ref_columns(self, packed: bool = False) -> Union[RawColumns, RawPacked]:
        """Consume a merged ref iterator; its records as columns (see
        ``RecordIter.ref_columns``)."""
        if self.typ != BLOCK_REF:
            raise ValueError("ref_columns needs ref iterators")
        hash_size = self.iters[0].table.hash_size if self.iters else 20
        return ref_columns(self._tuples(), hash_size, packed)

    def _tuples(self) -> Iterator[tuple[Any, ...]]:
        for it in self._winners:
            i = it.i
            it.i = i + 1
            blk = it.blk
            assert blk is not None
            yield it._dec(it.table, blk.data, it.keys[i], it.extras[i], it.vstarts[i],
                          blk.offset, False)

    def count(self) -> int:
        c = 0
        for it in self._winners:
            it.i += 1
            c += 1
        return c

    def copy_to(self, w: WriterCore, drop_deletions: bool = False, min_update_index: int = 0,
                min_time: int = 0, normalize_messages: bool = False,
                progress: Optional[Callable[[int], Any]] = None) -> int:
        """Write every merged record into ``w`` without building record objects
        (compaction). ``drop_deletions``: leave tombstones out. Log entries below
        ``min_update_index`` or older than ``min_time`` are expired.
        ``normalize_messages``: one trailing newline on single-line messages, as
        Git's writer does. ``progress`` is called with the number of records read so
        far, every 65536. Returns the number of records written."""
        written = seen = 0
        is_ref = self.typ == BLOCK_REF
        for it in self._winners:
            seen += 1
            if progress is not None and (seen & 0xFFFF) == 0:
                progress(seen)
            i = it.i
            it.i = i + 1
            extra = it.extras[i]
            if drop_deletions and extra == 0:
                continue
            blk = it.blk
            assert blk is not None
            d = blk.data
            start = it.vstarts[i]
            end = it.vends[i]
            key = it.keys[i]
            t = it.table
            if is_ref:
                delta, p = get_varint(d, start, end)  # validated when decoded
                ui = t.min_update_index + delta
                if ui > U64_MAX:
                    raise t.err("update index overflows", blk.offset + start)
                w._add_ref_raw(key, ui, extra, d[p:end])
                written += 1
                continue
            kl = len(key)
            if kl < 10 or key[kl - 9] != 0:
                raise t.err("log key lacks its update index suffix", blk.offset + start)
            ui = U64_MAX - BE64.unpack_from(key, kl - 8)[0]
            if min_update_index and ui < min_update_index:
                continue
            val = d[start:end]
            if (min_time or normalize_messages) and extra == 1:
                p = 2 * t.hash_size
                for _ in range(2):
                    n, p = get_varint(val, p, len(val))
                    p += n
                when, p = get_varint(val, p, len(val))
                if min_time and when < min_time:
                    continue
                if normalize_messages:
                    mstart = p + 2
                    mlen, p = get_varint(val, mstart, len(val))
                    msg = val[p:p + mlen]
                    kept = msg.rstrip(b"\n")
                    if len(kept) + 1 != mlen and b"\n" not in kept:
                        val = val[:mstart] + encode_varint(len(kept) + 1) + kept + b"\n"
            w._add_log_raw(key, ui, extra, val)
            written += 1
        return written

