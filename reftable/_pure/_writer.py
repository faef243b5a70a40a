"""Table writer: blocks, restart points, index levels, the obj index and the footer.

The twin of the compiled core's ``_writer`` layer, byte-identical with it (and with
Git). Records go in through ``add_ref`` / ``add_log`` (or the bulk
``write_ref_records`` / ``write_log_records``) in key order; the table leaves through
``sink`` in chunks. Policy (option checks, ref names) lives in ``reftable.writer``.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate, islice, repeat
from operator import add, attrgetter, concat, getitem, lt, xor
from typing import Any, Optional

from ..errors import ApiError, EntryTooBigError
from . import _record
from ._buf import BE16, BE32, BE64, U64_MAX, encode_varint
from ._record import BLOCK_INDEX, BLOCK_LOG, BLOCK_OBJ, BLOCK_REF, log_key, normalize_message

__all__ = ["WriterCore", "write_log_records", "write_ref_records"]

MAX_RESTARTS = 65535
HASH_ID_SHA1 = 0x73686131
HASH_ID_SHA256 = 0x73323536
_SLOT = {BLOCK_REF: 0, BLOCK_OBJ: 1, BLOCK_LOG: 2, BLOCK_INDEX: 3}
_SECTIONS = ("ref", "obj", "log", "index")
# section statistics: one list per section, indexed by these
OFFSET, INDEX_OFFSET, BLOCKS, INDEX_BLOCKS, ENTRIES, RESTARTS, MAX_LEVEL = range(7)
_EMPTY = b""
# blocks this large could need more restart points than the table holds (a restart
# record takes at least 6 bytes): written one record at a time, which caps them
_BULK_MAX_BLOCK = 6 * MAX_RESTARTS
# fewer records go one at a time (block by block costs more to set up)
_BULK_MIN = 16


def record_head(shared: int, klen: int, extra: int) -> bytes:
    """The start of a record in a block: its key's prefix length shared with the key
    before it, then the suffix length << 3 | the value type, two varints."""
    return encode_varint(shared) + encode_varint(((klen - shared) << 3) | extra)


class _HeadRows(dict[int, list[bytes]]):
    """``record_head`` for one value type, by key length then shared prefix length
    (keys up to ``_ROW_MAX`` bytes; a table has keys of a few lengths)."""

    def __init__(self, extra: int) -> None:
        super().__init__()
        self.extra = extra
        self.sizes: dict[int, list[int]] = {}  # bytes of head and key suffix

    def __missing__(self, klen: int) -> list[bytes]:
        row = [record_head(shared, klen, self.extra) for shared in range(klen + 1)]
        self.sizes[klen] = [len(h) + klen - shared for shared, h in enumerate(row)]
        self[klen] = row
        return row


_ROW_MAX = 256
_HEADS = [_HeadRows(extra) for extra in range(8)]


def _head(shared: int, klen: int, extra: int) -> bytes:
    if klen <= _ROW_MAX:
        return _HEADS[extra][klen][shared]
    return record_head(shared, klen, extra)


# operator's functions, typed for bytes
_cat: Callable[[bytes, bytes], bytes] = concat  # type: ignore[assignment]
_cut: Callable[[bytes, slice], bytes] = getitem  # type: ignore[assignment]
_TAILS = [slice(i, None) for i in range(_ROW_MAX + 1)]  # key[shared:], by shared length


def _tail(shared: int) -> slice:
    return slice(shared, None)


class WriterCore:
    """Block-level state machine of a table writer, byte-compatible with Git."""

    def __init__(self, hash_size: int = 20, block_size: int = 4096,
                 restart_interval: int = 16, index_objects: bool = True,
                 unpadded: bool = False, min_update_index: int = 0,
                 max_update_index: int = 0,
                 sink: Optional[Callable[[bytes], Any]] = None) -> None:
        if hash_size == 20:
            self.version, self._hash_id = 1, HASH_ID_SHA1
        elif hash_size == 32:
            self.version, self._hash_id = 2, HASH_ID_SHA256
        else:
            raise ApiError(f"unsupported hash size {hash_size}")
        if block_size < 64 or block_size >= (1 << 24):
            raise ApiError(f"block size {block_size} outside [64, 2**24)")
        if restart_interval < 1 or restart_interval > MAX_RESTARTS:
            raise ApiError(f"restart interval {restart_interval} outside [1, 65535]")
        if not (0 <= min_update_index <= U64_MAX and 0 <= max_update_index <= U64_MAX):
            raise OverflowError("update index out of range")
        self.hash_size = hash_size
        self.block_size = block_size
        self.restart_interval = restart_interval
        self.index_objects = bool(index_objects)
        self.unpadded = bool(unpadded)
        self.min_update_index = min_update_index
        self.max_update_index = max_update_index
        self._sink = sink
        self._out = bytearray()
        self.next = 0
        self._pending_padding = 0
        self.bytes_emitted = 0
        # the block being filled
        self._btype = 0
        self._header_off = 0
        self._bnext = 0
        self._entries = 0
        self._parts: list[bytes] = []
        self._restarts: list[int] = []
        self._blast = _EMPTY
        self._wlast = _EMPTY
        self._idx: list[tuple[bytes, int]] = []   # (last key, offset) per block
        self._obj_ids: list[bytes] = []           # object ids of the ref section ...
        self._obj_offs: list[int] = []            # ... and the block each went into
        self._sec = [[0] * 7 for _ in range(4)]
        self.object_id_len = 0
        self.total_blocks = 0
        self.ref_count = 0
        self.log_count = 0
        self.closed = False
        self._limits_locked = False

    @property
    def header_size(self) -> int:
        return 24 if self.version == 1 else 28

    def set_limits(self, min_update_index: int, max_update_index: int) -> None:
        if self._limits_locked:
            raise ApiError("limits must be set before the first record")
        self.min_update_index = min_update_index
        self.max_update_index = max_update_index

    # -- output ---------------------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        self._out += data
        self.bytes_emitted += len(data)
        if len(self._out) >= (1 << 20):
            self._drain()

    def _drain(self) -> None:
        if self._sink is None or not self._out:
            return
        chunk = bytes(self._out)
        self._out.clear()
        self._sink(chunk)

    def _padded_write(self, data: bytes, padding: int) -> None:
        # Padding is held back until something follows, so the last block of the file
        # is never padded (Git does the same).
        if self._pending_padding:
            self._emit(bytes(self._pending_padding))
        self._pending_padding = padding
        self._emit(data)

    def _header(self) -> bytes:
        h = (b"REFT" + bytes((self.version,)) + self.block_size.to_bytes(3, "big")
             + BE64.pack(self.min_update_index) + BE64.pack(self.max_update_index))
        if self.version == 2:
            h += BE32.pack(self._hash_id)  # format v2 adds the hash id
        return h

    # -- blocks ----------------------------------------------------------------------

    def _bw_init(self, typ: int) -> None:
        self._header_off = self.header_size if self.next == 0 else 0
        self._bnext = self._header_off + 4
        self._entries = 0
        self._parts = []
        self._restarts = []
        self._blast = _EMPTY
        self._btype = typ

    def _bw_add(self, key: bytes, extra: int, val: bytes) -> bool:
        """Append one record to the open block; False (nothing changed) when it does
        not fit."""
        if not key:
            raise ApiError("empty record key")
        prefix = 0
        if self._entries % self.restart_interval:
            last = self._blast
            n = len(last) if len(last) < len(key) else len(key)
            x = int.from_bytes(last[:n], "big") ^ int.from_bytes(key[:n], "big")
            prefix = n - ((x.bit_length() + 7) >> 3)
        record = _head(prefix, len(key), extra) + key[prefix:] + val
        n = len(record)
        restarts = self._restarts
        rlen = len(restarts)
        is_restart = prefix == 0 and rlen < MAX_RESTARTS
        if is_restart:
            rlen += 1
        if 2 + 3 * rlen + n > self.block_size - self._bnext:
            return False
        if is_restart:
            restarts.append(self._bnext)
        self._parts.append(record)
        self._bnext += n
        self._blast = key
        self._entries += 1
        return True

    def _add(self, typ: int, key: bytes, extra: int, val: bytes) -> bool:
        """Add a record, starting a new block when the current one is full. False when
        it does not fit even an empty block."""
        if self._btype == 0:
            self._bw_init(typ)
        elif self._btype != typ:
            raise ApiError("record type does not match the section being written")
        if self._bw_add(key, extra, val):
            return True
        self._flush_block()
        self._bw_init(typ)
        return self._bw_add(key, extra, val)

    def _pack(self, typ: int, keys: list[bytes], extras: list[int], vals: list[bytes],
              too_big: Callable[[bytes, int, bytes], None],
              oids: Optional[list[bytes]] = None, pre: bytes = _EMPTY,
              vlen: int = -1) -> None:
        """Add many records of one section, checking key order; those before a key out
        of order are added. ``too_big`` handles a record that does not fit even an
        empty block (it may add a smaller one). ``oids``: the object id of every
        record, when each has exactly one (refs). ``pre``: bytes that start every
        value (left out of ``vals``); ``vlen``: the length of every value with them,
        when all have one (-1: unknown)."""
        if not keys:
            return
        if self._btype == 0:
            self._bw_init(typ)
        elif self._btype != typ:
            raise ApiError("record type does not match the section being written")
        n = len(keys)
        if not (self._wlast < keys[0] and all(map(lt, keys, islice(keys, 1, None)))):
            n = 0 if keys[0] <= self._wlast else 1 + next(
                i for i, ok in enumerate(map(lt, keys, islice(keys, 1, None))) if not ok)
        is_ref = typ == BLOCK_REF
        note = is_ref and self.index_objects
        marks = [(0, self.next)]  # (first record, block offset) of each block used
        done = 0
        try:
            while done < n:
                if self.block_size < _BULK_MAX_BLOCK and n - done >= _BULK_MIN:
                    k = self._pack_blocks(typ, keys, extras, vals, done, n, marks, pre, vlen)
                else:
                    k = self._pack_each(typ, keys, extras, vals, done, n, marks, pre)
                if k > done:
                    self._wlast = keys[k - 1]
                done = k
                if k < n:  # does not fit an empty block
                    self._wlast = _EMPTY
                    too_big(keys[k], extras[k], pre + vals[k])
                    self._wlast = keys[k]
                    done += 1
        finally:
            if is_ref:
                self.ref_count += done
            if note:
                marks.append((done, 0))
                for (a, off), (b, _) in zip(marks, marks[1:], strict=False):
                    if oids is not None:
                        self._obj_ids += oids[a:b]
                        self._obj_offs += repeat(off, b - a)
                    else:
                        for i in range(a, b):
                            self._note_ids(pre + vals[i], extras[i], off)
        if n < len(keys):
            raise ApiError("records must be added in strictly increasing key order")

    def _pack_blocks(self, typ: int, keys: list[bytes], extras: list[int], vals: list[bytes],
                     start: int, n: int, marks: list[tuple[int, int]], pre: bytes = _EMPTY,
                     vlen: int = -1) -> int:
        """Lay ``keys[start:n]`` (in order) out in blocks; returns the index of the
        first record not added: ``n``, or one that does not fit an empty block.

        Every record is first encoded as if it were not a restart point (its key
        prefix shared with the key before it), without a Python loop per record; then
        blocks are filled greedily one restart interval at a time, summing record
        sizes by bisection. Only restart points are encoded again (whole key)."""
        if start or n < len(keys):
            keys, extras, vals = keys[start:n], extras[start:n], vals[start:n]
        klens = list(map(len, keys))
        m = len(keys)
        klen = klens[0]
        one_len = klens.count(klen) == m  # keys of one length (the usual refs/heads/...)
        width = klen if one_len else max(klens)
        shared = common_prefixes(self._blast, keys,
                                 width if len(self._blast) <= width else None)
        by_row = False
        if width <= _ROW_MAX:
            tails = list(map(_cut, keys, map(_TAILS.__getitem__, shared)))
            if extras.count(extras[0]) == m:
                rows = _HEADS[extras[0]]
                if one_len:  # one row of heads
                    heads = list(map(rows[klen].__getitem__, shared))
                    lens = map(rows.sizes[klen].__getitem__, shared)
                    if vlen >= 0:  # and values of one length: record sizes by row
                        by_row = True
                        whead = rows[klen][0]  # a restart point's head, its whole size
                        whole = len(whead) + klen + vlen
                        rsizes = list(map([x + vlen for x in rows.sizes[klen]].__getitem__,
                                          shared))
                else:
                    heads = list(map(getitem, map(rows.__getitem__, klens), shared))
                    # (the rows now exist) bytes of head and key suffix
                    lens = map(getitem, map(rows.sizes.__getitem__, klens), shared)
            else:
                heads = list(map(getitem, map(getitem, map(_HEADS.__getitem__, extras), klens),
                                 shared))
                lens = map(add, map(len, heads), map(len, tails))
        else:
            tails = list(map(_cut, keys, map(_tail, shared)))
            heads = list(map(_head, shared, klens, extras))
            lens = map(add, map(len, heads), map(len, tails))
        if not by_row:
            rsizes = list(map(add, lens, map(len, vals)))
            if pre:
                rsizes = list(map(len(pre).__add__, rsizes))
        sizes = list(accumulate(rsizes, initial=0))  # bytes before record i
        # head, key suffix (and ``pre``) and value of each record
        step = 4 if pre else 3
        pieces = [pre] * (step * m)
        pieces[0::step] = heads
        pieces[1::step] = tails
        pieces[step - 1::step] = vals
        # a record that shares nothing with the key before it is a restart point even
        # between the regular ones, and costs a restart table entry more
        zeros = _zeros(shared)
        if not shared[0] and self._entries % self.restart_interval:
            zeros.insert(0, 0)
        costs = sizes
        if zeros:
            more = [0] * len(keys)
            for i in zeros:
                more[i] = 3
            costs = list(accumulate(map(add, rsizes, more), initial=0))
        ri = self.restart_interval
        bs = self.block_size
        out = self._parts
        restarts = self._restarts
        entries = self._entries
        bnext = self._bnext
        room = bs - bnext - 2 - 3 * len(restarts)
        j = 0
        while j < m:  # one block (or its end) at a time
            full = False
            limit = costs[j] + room
            most = bisect_right(costs, limit, j, m + 1) - 1  # records [j, most) might fit
            # restart points are due at `grid`, where a record takes `grows` bytes more
            # than as encoded (the whole key); `upto`: the bytes the first ones add to
            # the block, restart table entries included (records sharing nothing
            # have theirs in `costs`)
            g0 = j + (-entries) % ri
            grid = range(g0, most, ri)
            if by_row:  # one head and one size for every restart point
                wheads = [whead] * len(grid)
                grows = list(map(whole.__sub__, rsizes[g0:most:ri]))
            else:
                wheads = [_head(0, klens[g], extras[g]) for g in grid]
                grows = [len(h) + klens[g] + len(pre) + len(vals[g]) - rsizes[g]
                         for h, g in zip(wheads, grid, strict=True)]
            if costs is sizes:  # (records take in `costs` what they take in `sizes`)
                upto = list(accumulate(map((3).__add__, grows), initial=0))
            else:
                upto = list(accumulate([x + 3 + rsizes[g] - costs[g + 1] + costs[g]
                                        for x, g in zip(grows, grid, strict=True)],
                                       initial=0))
            # t restart points fit, with all the records before them
            t = bisect_right(list(map(add, costs[g0 + 1:most + 1:ri], upto[1:])), limit)
            hi = g0 + t * ri if g0 + t * ri < most else most
            k = bisect_right(costs, limit - upto[t], g0 + (t - 1) * ri + 1 if t else j,
                             hi + 1) - 1
            if k == j:
                if not entries:
                    break  # does not fit an empty block
                full = True
            else:
                blk = pieces[step * j:step * k]
                points: Iterable[int] = grid[:t]
                if t:
                    p = step * (g0 - j)
                    blk[p::step * ri] = wheads[:t]
                    blk[p + 1::step * ri] = keys[g0:k:ri]
                if zeros:
                    lone = zeros[bisect_left(zeros, j):bisect_left(zeros, k)]
                    if lone:
                        points = sorted(set(points).union(lone))
                base = bnext - sizes[j]
                grown = list(accumulate(grows[:t], initial=0))
                for g in points:  # restart offsets, after the growth of those before
                    restarts.append(base + sizes[g] + grown[min(t, (g - g0 + ri - 1) // ri)
                                                            if g > g0 else 0])
                out += blk
                bnext += sizes[k] - sizes[j] + grown[t]
                room -= costs[k] - costs[j] + upto[t]
                entries += k - j
                j = k
                self._blast = keys[k - 1]
                full = k < m
            if full:  # the next record starts a new block
                self._entries, self._bnext = entries, bnext
                self._flush_block()
                self._bw_init(typ)
                marks.append((start + j, self.next))
                out, restarts = self._parts, self._restarts
                entries, bnext = 0, self._bnext
                room = bs - bnext - 2
        self._entries, self._bnext = entries, bnext
        return start + j

    def _pack_each(self, typ: int, keys: list[bytes], extras: list[int], vals: list[bytes],
                   start: int, n: int, marks: list[tuple[int, int]],
                   pre: bytes = _EMPTY) -> int:
        """``_pack_blocks`` one record at a time: for a few records, and for blocks
        so large that their restart table could overflow (``_bw_add`` caps it)."""
        for i in range(start, n):
            ok = self._add(typ, keys[i], extras[i], pre + vals[i])
            if self.next != marks[-1][1]:
                marks.append((i, self.next))
            if not ok:
                return i
        return n

    def _note_ids(self, val: bytes, extra: int, off: int) -> None:
        hs = self.hash_size
        if extra == 1:
            self._obj_ids.append(val[-hs:])
            self._obj_offs.append(off)
        elif extra == 2:
            self._obj_ids += (val[-2 * hs:-hs], val[-hs:])
            self._obj_offs += (off, off)

    def _flush_block(self) -> None:
        typ = self._btype
        if typ == 0 or self._entries == 0:
            return
        restarts = self._restarts
        tail = b"".join([r.to_bytes(3, "big") for r in restarts]) + BE16.pack(len(restarts))
        bnext = self._bnext + len(tail)
        head = (self._header() if self.next == 0 else _EMPTY) + bytes((typ,)) + \
            bnext.to_bytes(3, "big")
        padding = 0
        if not self.unpadded and typ != BLOCK_LOG:
            padding = self.block_size - bnext
        st = self._sec[_SLOT[typ]]
        if st[BLOCKS] == 0 and self.next > 0:
            st[OFFSET] = self.next
        st[ENTRIES] += self._entries
        st[RESTARTS] += len(restarts)
        st[BLOCKS] += 1
        self.total_blocks += 1
        body = b"".join(self._parts)
        if typ == BLOCK_LOG:
            # deflated (level 9, like Git) after the block header, which keeps the
            # inflated length
            comp = zlib.compress(body + tail, 9)
            self._padded_write(head, 0)
            self._emit(comp)
            raw = len(head) + len(comp)
        else:
            raw = bnext
            self._padded_write(head + body + tail, padding)
        # one index record per block: its last key and where it starts
        self._idx.append((self._blast, self.next))
        self.next += padding + raw
        self._btype = 0

    def _finish_section(self) -> None:
        typ = self._btype
        before = self._sec[3][BLOCKS]
        threshold = 1 if self.unpadded else 3
        max_level = 0
        index_start = 0
        self._flush_block()
        # index levels until the top one has at most `threshold` entries; readers
        # start from the last (top) level
        while len(self._idx) > threshold:
            max_level += 1
            index_start = self.next
            old = self._idx
            self._idx = []
            self._bw_init(BLOCK_INDEX)
            for key, off in old:
                if not self._add(BLOCK_INDEX, key, 0, encode_varint(off)):
                    raise EntryTooBigError("index record does not fit a block")
            self._flush_block()
            if len(self._idx) >= len(old):
                # blocks so small that an index block holds one key: another level
                # would not shrink the index (it would loop forever)
                raise EntryTooBigError(
                    f"block size {self.block_size} too small to index these keys")
        self._idx = []
        st = self._sec[_SLOT[typ]]
        st[INDEX_BLOCKS] = self._sec[3][BLOCKS] - before
        st[INDEX_OFFSET] = index_start
        st[MAX_LEVEL] = max_level
        self._wlast = _EMPTY

    def _finish_public_section(self) -> None:
        typ = self._btype
        if typ == 0:
            return
        self._finish_section()
        if typ == BLOCK_REF and self.index_objects and self._sec[0][INDEX_BLOCKS] > 0:
            self._dump_obj_index()
        self._obj_ids = []
        self._obj_offs = []
        self._btype = 0

    def _dump_obj_index(self) -> None:
        ids = self._obj_ids
        offs = self._obj_offs
        hs = self.hash_size
        # sorted by id; the sort is stable, so equal ids keep their (ascending) offsets
        order = sorted(range(len(ids)), key=ids.__getitem__)
        sids = list(map(ids.__getitem__, order))
        soffs = list(map(offs.__getitem__, order))
        # shortest prefix length that tells every pair of neighbours apart (>= 2): one
        # byte more than the most any two different neighbours share
        shared = common_prefixes(sids[0], sids)[1:] if sids else _EMPTY
        dups = hs in shared
        if dups:
            shared = [c for c in shared if c != hs]
        id_len = max(1, max(shared, default=0)) + 1
        if id_len > 31:
            # the footer stores the length in 5 bits; only two SHA-256 ids sharing 31
            # bytes get here: leave the obj index out (readers then scan)
            return
        self.object_id_len = id_len
        self._wlast = _EMPTY
        self._bw_init(BLOCK_OBJ)
        if not dups:  # one block per id: the common case, without a loop per id
            varint = {off: encode_varint(off) for off in set(soffs)}
            cut = repeat(slice(0, id_len))
            for i in range(0, len(sids), _BATCH):  # in batches: bounded temporaries
                chunk = sids[i:i + _BATCH]
                self._pack(BLOCK_OBJ, list(map(_cut, chunk, cut)), [1] * len(chunk),
                           list(map(varint.__getitem__, soffs[i:i + _BATCH])),
                           self._obj_too_big)
            self._finish_section()
            return
        keys: list[bytes] = []
        extras: list[int] = []
        vals: list[bytes] = []
        enc: dict[int, bytes] = {}  # varints of block offsets (one per block)
        i = 0
        n = len(sids)
        while i < n:
            oid = sids[i]
            off = soffs[i]
            i += 1
            if i < n and sids[i] == oid:
                positions = [off]
                while i < n and sids[i] == oid:
                    if soffs[i] != positions[-1]:
                        positions.append(soffs[i])
                    i += 1
                cnt = len(positions)
                val = [encode_varint(cnt)] if cnt >= 8 else []
                last = 0
                for off in positions:
                    val.append(encode_varint(off - last))
                    last = off
                vals.append(b"".join(val))
                extras.append(cnt if cnt < 8 else 0)
            else:
                v = enc.get(off)
                if v is None:
                    v = enc[off] = encode_varint(off)
                vals.append(v)
                extras.append(1)
            keys.append(oid[:id_len])
        self._pack(BLOCK_OBJ, keys, extras, vals, self._obj_too_big)
        self._finish_section()

    def _obj_too_big(self, key: bytes, extra: int, val: bytes) -> None:
        # too many positions for one block: keep the key, drop the positions; readers
        # then fall back to scanning
        if not self._bw_add(key, 0, encode_varint(0)):
            raise EntryTooBigError("obj record does not fit a block")

    # -- records ---------------------------------------------------------------------

    def _check_order(self, key: bytes) -> None:
        if self._wlast and self._wlast >= key:
            raise ApiError("records must be added in strictly increasing key order")
        self._wlast = key

    def _add_ref_raw(self, name: bytes, update_index: int, value_type: int,
                     rest: bytes) -> None:
        """Add a ref whose value after the update index is already encoded (``rest``)."""
        hs = self.hash_size
        if self.closed:
            raise ApiError("writer is closed")
        if update_index < self.min_update_index or update_index > self.max_update_index:
            raise ApiError(
                f"ref update index {update_index} outside limits "
                f"[{self.min_update_index}, {self.max_update_index}]")
        if self._btype != 0 and self._btype != BLOCK_REF:
            raise ApiError("refs must be added before logs")
        if not name:
            raise ApiError("empty ref name")
        if (value_type == 1 and len(rest) != hs) or (value_type == 2 and len(rest) != 2 * hs):
            raise ApiError("ref value must be an object id of the table's hash size")
        if value_type < 0 or value_type > 3:
            raise ApiError(f"invalid ref value type {value_type}")
        self._check_order(name)
        self._limits_locked = True
        if not self._add(BLOCK_REF, name, value_type,
                         encode_varint(update_index - self.min_update_index) + rest):
            self._wlast = _EMPTY
            raise EntryTooBigError(f"ref record for {name!r} does not fit a block")
        self.ref_count += 1
        if self.index_objects and (value_type == 1 or value_type == 2):
            self._obj_ids.append(rest[:hs])
            self._obj_offs.append(self.next)
            if value_type == 2:
                self._obj_ids.append(rest[hs:])
                self._obj_offs.append(self.next)

    def _add_log_raw(self, key: bytes, update_index: int, value_type: int,
                     val: bytes) -> None:
        """Add a log record given its full key and encoded value."""
        if self.closed:
            raise ApiError("writer is closed")
        if update_index > self.max_update_index:
            raise ApiError(
                f"log update index {update_index} above limit {self.max_update_index}")
        if self._btype == BLOCK_REF:
            self._finish_public_section()
        # the log section follows the previous block directly: its padding is dropped
        self.next -= self._pending_padding
        self._pending_padding = 0
        self._check_order(key)
        self._limits_locked = True
        if not self._add(BLOCK_LOG, key, value_type, val):
            self._wlast = _EMPTY
            raise EntryTooBigError(f"log record for {key[:-9]!r} does not fit a block")
        self.log_count += 1

    def close(self) -> bool:
        """Finish the table: flush sections, write the footer. True when the table
        holds no record at all (it is still a valid table)."""
        if self.closed:
            raise ApiError("writer is already closed")
        self._finish_public_section()
        self.closed = True
        empty = self.next == 0
        self._pending_padding = 0
        if empty:
            self._padded_write(self._header(), 0)
        sec = self._sec
        footer = (self._header() + BE64.pack(sec[0][INDEX_OFFSET])
                  + BE64.pack((sec[1][OFFSET] << 5) | self.object_id_len)
                  + BE64.pack(sec[1][INDEX_OFFSET]) + BE64.pack(sec[2][OFFSET])
                  + BE64.pack(sec[2][INDEX_OFFSET]))
        footer += BE32.pack(zlib.crc32(footer) & 0xFFFFFFFF)
        self._padded_write(footer, 0)
        self._drain()
        return empty

    def stats(self) -> dict[str, Any]:
        """Per-section statistics, like Git's ``reftable_writer_stats``."""
        keys = ("offset", "index_offset", "blocks", "index_blocks", "entries", "restarts",
                "max_index_level")
        result: dict[str, Any] = {name: dict(zip(keys, self._sec[i], strict=False))
                                  for i, name in enumerate(_SECTIONS)}
        result["blocks"] = self.total_blocks
        result["object_id_len"] = self.object_id_len
        return result


# -- key prefixes ---------------------------------------------------------------------------


def common_prefixes(first: bytes, keys: list[bytes],
                    width: Optional[int] = None) -> Sequence[int]:
    """How many leading bytes each of ``keys`` (in increasing order) shares with the
    key before it, the first one with ``first``. ``width``: the length of the longest
    of them all, when the caller knows it.

    All keys at once, one byte position (column) at a time: with the keys padded to
    one width, a column read as a big integer holds one byte lane per key; a lane of
    ``diff`` turns non-zero at the first column where its key differs from the key
    before it, and the lanes of ``acc`` count the columns before that."""
    rows = [first, *keys]
    m = len(keys)
    if width is None:  # (callers that know it pass the longest key's length)
        width = max(map(len, rows))
    flat = b"".join(rows)
    clamp = first_only = False
    if len(flat) - len(first) == m * width:  # keys of one length, maybe a shorter first
        first_only = len(first) < width
        flat = first.ljust(width, b"\0") + flat[len(first):]
    elif len(flat) != (m + 1) * width:
        # a padding NUL can match a NUL in the longer key: past the shorter key,
        # nothing is shared
        clamp = b"\0" in flat
        flat = b"".join(map(bytes.ljust, rows, repeat(width), repeat(b"\0")))
    if width > 255:  # a lane would overflow: one big integer per key instead
        ints = list(map(int.from_bytes, map(flat.__getitem__, map(  # type: ignore[arg-type]
            slice, range(0, len(flat), width), range(width, len(flat) + 1, width))),
            repeat("big")))
        shared: Sequence[int] = [width - ((x.bit_length() + 7) >> 3)
                                 for x in map(xor, ints, ints[1:])]
    else:
        low = (1 << (8 * m)) - 1
        ones = low // 255          # 0x01 in every lane
        lo7 = ones * 0x7F
        hi = ones << 7
        diff = acc = 0
        same = hi  # 0x80 in the lanes of keys equal to the key before so far
        for c in range(width):
            column = flat[c::width]
            if column.count(column[0]) <= m:  # (a column of one byte changes nothing)
                col = int.from_bytes(column, "big")  # lane i: rows[i]
                diff |= (col >> 8) ^ (col & low)  # lane i: rows[i] ^ rows[i + 1]
                same = (((diff & lo7) + lo7 | diff) & hi) ^ hi  # 0x80 where diff is 0
                if not same:
                    break
            acc += same >> 7
        shared = acc.to_bytes(m, "big")
    if clamp:
        shared = list(map(min, shared, map(len, rows)))
    elif first_only and shared[0] > len(first):
        if type(shared) is bytes:
            shared = bytes((len(first),)) + shared[1:]
        else:
            shared = [len(first), *shared[1:]]
    return shared


def _zeros(shared: Sequence[int]) -> list[int]:
    """Where ``shared`` is 0, past its first item."""
    if type(shared) is not bytes:
        return [i for i, c in enumerate(shared) if not c and i]
    found = []
    i = shared.find(0, 1)
    while i >= 0:
        found.append(i)
        i = shared.find(0, i + 1)
    return found


# -- record encoders -----------------------------------------------------------------------


def _ref_rest(hs: int, vt: int, value: Any, target_value: Any, target: Any) -> bytes:
    """The value of a ref record after its update index."""
    if vt == 1 or vt == 2:
        if type(value) is not bytes or len(value) != hs:
            raise ApiError("ref value must be an object id of the table's hash size")
        if vt == 1:
            return value
        if type(target_value) is not bytes or len(target_value) != hs:
            raise ApiError("peeled value must be an object id of the table's hash size")
        return value + target_value
    if vt == 3:
        if target is None:
            raise ApiError("symref needs a target")
        t = _utf8(target)
        return encode_varint(len(t)) + t
    if vt != 0:
        raise ApiError(f"invalid ref value type {vt}")
    return _EMPTY


def _log_value(hs: int, old_id: Any, new_id: Any, name: bytes, email: bytes, time: int,
               tz: int, message: bytes) -> bytes:
    for part in (old_id, new_id):
        if type(part) is not bytes or len(part) != hs:
            raise ApiError("log ids must be object ids of the table's hash size")
    return b"".join((old_id, new_id, encode_varint(len(name)), name,
                     encode_varint(len(email)), email, encode_varint(time),
                     BE16.pack(tz & 0xFFFF), encode_varint(len(message)), message))


def _utf8(s: Any) -> bytes:
    """UTF-8 of a name; surrogate escapes (undecodable bytes read from a table) go
    back to the bytes they came from."""
    if type(s) is bytes:
        return s
    return s.encode("utf-8", "surrogateescape")  # type: ignore[no-any-return]


# -- bulk paths: record objects straight into a writer ---------------------------------------


def write_ref_records(w: WriterCore, records: Iterable[Any]) -> int:
    """Add ``RefRecord`` objects (in name order) to ``w``; returns how many. Records are
    encoded in batches and packed by ``WriterCore._pack``."""
    recs = records if type(records) is list else list(records)
    count = 0
    for i in range(0, len(recs), _BATCH):
        chunk = recs[i:i + _BATCH]
        fast = _plain_refs(w, chunk)
        if fast is None:
            _write_refs(w, chunk)
        else:
            _pack_refs(w, *fast)
        count += len(chunk)
    return count


_BATCH = 4096
_NAME, _UPDATE_INDEX, _VALUE_TYPE, _VALUE = map(
    attrgetter, ("name", "update_index", "value_type", "value"))


def _plain_refs(w: WriterCore, chunk: list[Any]) -> Optional[tuple[list[bytes], list[bytes],
                                                                   list[bytes], bytes]]:
    """(keys, values, object ids, bytes starting every value) of a batch of the common
    records (one object id, ``str`` names, update indexes within limits), with
    whole-batch checks run by the interpreter's C loops; None when any record is of
    another kind."""
    n = len(chunk)
    vts = list(map(_VALUE_TYPE, chunk))
    if vts.count(_record._ref_vts[1]) != n and vts.count(1) != n:
        return None
    oids = list(map(_VALUE, chunk))
    if set(map(type, oids)) != {bytes} or set(map(len, oids)) != {w.hash_size}:
        return None
    uis = list(map(_UPDATE_INDEX, chunk))
    lo = w.min_update_index
    same = uis.count(uis[0]) == n
    if (uis[0] if same else min(uis)) < lo or (uis[0] if same else max(uis)) > w.max_update_index:
        return None
    # every name encoded at once: joined by a newline (which no ref name holds; when
    # one does, the split finds more keys than records and the batch goes one by one)
    try:
        keys = "\n".join(map(_NAME, chunk)).encode().split(b"\n")  # (str names only)
    except TypeError:
        return None
    except UnicodeEncodeError:  # surrogate escapes: bytes read from a table
        if set(map(type, map(_NAME, chunk))) != {str}:
            return None
        keys = [n.encode("utf-8", "surrogateescape") for n in map(_NAME, chunk)]
    if len(keys) != n or not all(keys):
        return None
    if same:  # the update index's varint goes in as the ``pre`` of every value
        return keys, oids, oids, encode_varint(uis[0] - lo)
    vals = [encode_varint(u - lo) + v for u, v in zip(uis, oids, strict=True)]
    return keys, vals, oids, _EMPTY


def _pack_refs(w: WriterCore, keys: list[bytes], vals: list[bytes], oids: list[bytes],
               pre: bytes) -> None:
    if w.closed:
        raise ApiError("writer is closed")
    if w._btype != 0 and w._btype != BLOCK_REF:
        raise ApiError("refs must be added before logs")
    w._limits_locked = True
    w._pack(BLOCK_REF, keys, [1] * len(keys), vals, _ref_too_big, oids, pre,
            -1 if not pre else len(pre) + w.hash_size)


def _write_refs(w: WriterCore, records: list[Any]) -> None:
    """Any records: each checked and encoded on its own, then packed."""
    hs = w.hash_size
    lo = w.min_update_index
    hi = w.max_update_index
    keys: list[bytes] = []
    extras: list[int] = []
    vals: list[bytes] = []

    def flush() -> None:
        if not keys:
            return
        if w.closed:
            raise ApiError("writer is closed")
        if w._btype != 0 and w._btype != BLOCK_REF:
            raise ApiError("refs must be added before logs")
        w._limits_locked = True
        w._pack(BLOCK_REF, keys, extras, vals, _ref_too_big)

    try:
        for rec in records:
            extra = int(rec.value_type)
            value = _ref_rest(hs, extra, rec.value, rec.target_value, rec.target)
            ui = rec.update_index
            if ui < lo or ui > hi:
                raise ApiError(f"ref update index {ui} outside limits [{lo}, {hi}]")
            key = _utf8(rec.name)
            if not key:
                raise ApiError("empty ref name")
            vals.append(encode_varint(ui - lo) + value)
            keys.append(key)
            extras.append(extra)
    finally:
        flush()  # what came before a bad record is added, as one at a time would


def _ref_too_big(key: bytes, extra: int, val: bytes) -> None:
    raise EntryTooBigError(f"ref record for {key!r} does not fit a block")


def write_log_records(w: WriterCore, records: Iterable[Any], normalize: bool = False) -> int:
    """Add ``LogRecord`` objects (in key order) to ``w``; returns how many. With
    ``normalize``, messages get Git's treatment: one line, ending in one newline (a
    multi-line message is an ``ApiError``)."""
    hs = w.hash_size
    count = 0
    for rec in records:
        refname = _utf8(rec.refname)
        ui = rec.update_index
        vt = int(rec.value_type)
        if not refname:
            raise ApiError("empty ref name")
        if vt != 0 and vt != 1:
            raise ApiError(f"invalid log value type {vt}")
        val = _EMPTY
        if vt == 1:
            tz = rec.tz_offset
            if tz < -32768 or tz > 32767:
                raise ApiError(f"timezone offset {tz} does not fit 16 bits")
            message = _utf8(rec.message)
            if normalize:
                norm = normalize_message(message)
                if norm is None:
                    raise ApiError("log message spans several lines (use exact_log_message)")
                message = norm
            val = _log_value(hs, rec.old_id, rec.new_id, _utf8(rec.name), _utf8(rec.email),
                             rec.time, tz, message)
        w._add_log_raw(log_key(refname, ui), ui, vt, val)
        count += 1
    return count
