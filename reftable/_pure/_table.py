"""Table reader: header/footer checks, block loading, iteration and seeking.

The twin of the compiled core's ``_table`` layer. Every offset and length read from
the file is checked against the bounds of the table (or of the block) before use.
Blocks are copied out of the table's buffer once (a few KiB) so that decoding works on
``bytes``; blocks reached by seeks are kept, with their decoded keys, for later seeks.
"""

from __future__ import annotations

import mmap
import zlib
from bisect import bisect_left
from typing import Any, Optional, Union

from ..errors import FormatError
from ._block import Block, Entries, check_restarts, decode_entries
from ._buf import BE32, BE64, get_varint
from ._record import (
    BLOCK_INDEX,
    BLOCK_LOG,
    BLOCK_OBJ,
    BLOCK_REF,
    DECODERS,
    RawColumns,
    RawPacked,
    ref_columns,
    ref_values,
)
from ._sys import open_table_file

__all__ = ["RecordIter", "TableCore", "open_table"]

MAX_INDEX_LEVELS = 32  # a table of 2**64 bytes needs far fewer; bounds hostile loops
HASH_ID_SHA1 = 0x73686131    # "sha1"
HASH_ID_SHA256 = 0x73323536  # "s256"
_CACHE_BLOCKS = 4096  # seek cache bound (about 16 MiB of 4 KiB blocks)
_EDGE_HEAD = 29  # a v2 header and the first block's type
_EDGE_TAIL = 72  # a v2 footer
_READ_WHOLE_MAX = 65536  # smaller table files are read, not mapped

def open_table(path: str) -> TableCore:
    """Open the table file at ``path`` (mapped, or read whole when small) and check its
    header and footer. ``NotExistError`` when it does not exist; ``FormatError`` for a
    file that is not a regular file or not a table."""
    m, head, tail = open_table_file(path, _READ_WHOLE_MAX, _EDGE_HEAD, _EDGE_TAIL)
    if isinstance(m, bytes):
        return TableCore(m, path)
    try:
        return TableCore(m, path, mapped=True, edges=(head, tail))
    except BaseException:
        m.close()
        raise


class TableCore:
    """Validated view of one table's bytes: a mapped file (``open_table``) or any
    buffer. ``keys_read`` counts the record keys decoded so far (the work done; the
    twin decodes whole blocks)."""

    def __init__(self, data: Any, path: Optional[str] = None, mapped: bool = False,
                 edges: Optional[tuple[bytes, bytes]] = None) -> None:
        self.mapped = mapped  # owns the mmap ``data`` (open_table)
        self.keys_read = 0
        self.reuse: dict[int, tuple[bytes, str]] = {}
        self._mv = memoryview(data).cast("B")
        self.size = len(self._mv)
        self.path = path
        self.released = False
        self._cache: dict[int, Block] = {}
        self._evict = False
        try:
            self._parse(*(edges or (bytes(self._mv[:_EDGE_HEAD]),
                                    bytes(self._mv[-_EDGE_TAIL:]))))
        except BaseException:
            self.release()  # the caller may close the mmap now
            raise

    def err(self, msg: str, offset: int) -> FormatError:
        return FormatError(msg, self.path, offset)

    def _parse(self, head: bytes, tail: bytes) -> None:
        """Check the header and footer: ``head`` and ``tail`` are the first and last
        bytes of the table (up to _EDGE_HEAD and _EDGE_TAIL)."""
        size = self.size
        if size < 24:
            raise self.err(f"file of {size} bytes is too small for a reftable", 0)
        if head[:4] != b"REFT":
            raise self.err("bad magic: not a reftable", 0)
        self.version = head[4]
        if self.version == 1:
            self.header_size, self.footer_size, self.hash_id = 24, 68, HASH_ID_SHA1
        elif self.version == 2:
            self.header_size, self.footer_size = 28, 72
        else:
            raise self.err(f"unsupported reftable version {self.version}", 4)
        hsz = self.header_size
        if size < hsz + self.footer_size:
            raise self.err(f"truncated table: {size} bytes cannot hold header and footer", 0)
        self.block_size = int.from_bytes(head[5:8], "big")
        if self.version == 2:
            self.hash_id = BE32.unpack_from(head, 24)[0]
        if self.hash_id == HASH_ID_SHA1:
            self.hash_size = 20
        elif self.hash_id == HASH_ID_SHA256:
            self.hash_size = 32
        else:
            raise self.err(f"unknown hash id 0x{self.hash_id:08x}", 24)
        self.min_update_index = BE64.unpack_from(head, 8)[0]
        self.max_update_index = BE64.unpack_from(head, 16)[0]
        self.data_end = end = size - self.footer_size
        footer = tail[-self.footer_size:]
        if footer[:hsz] != head[:hsz]:
            raise self.err("footer does not repeat the header (truncated or corrupt table)", end)
        crc_stored = BE32.unpack_from(footer, self.footer_size - 4)[0]
        crc = zlib.crc32(footer[:-4]) & 0xFFFFFFFF
        if crc != crc_stored:
            raise self.err(f"footer checksum mismatch (stored {crc_stored:08x}, "
                           f"computed {crc:08x})", size - 4)
        (self.ref_index_offset, field, self.obj_index_offset, self.log_offset,
         self.log_index_offset) = (BE64.unpack_from(footer, hsz + 8 * i)[0] for i in range(5))
        self.obj_offset = field >> 5
        self.object_id_len = field & 0x1F
        if self.ref_index_offset >= end and self.ref_index_offset != 0:
            raise self.err(f"ref index offset {self.ref_index_offset} points past the data", end)
        first = head[hsz] if end > hsz else 0
        self.ref_present = first == BLOCK_REF
        self.obj_present = self.obj_offset > 0
        self.log_present = first == BLOCK_LOG or self.log_offset > 0
        # Damaged obj or log fields only make that section unreadable (as in Git): the
        # refs stay available, and the error comes when the section is read.
        self._damage: dict[int, tuple[str, int]] = {}
        fo = end + hsz
        for name, value in (("obj", self.obj_offset), ("obj index", self.obj_index_offset)):
            if value >= end and value != 0:
                self._damage[BLOCK_OBJ] = (f"{name} offset {value} points past the data", fo + 8)
        if self.obj_present and not 2 <= self.object_id_len <= self.hash_size:
            self._damage[BLOCK_OBJ] = (
                f"bad abbreviated object id length {self.object_id_len}", fo + 8)
        for name, value in (("log", self.log_offset), ("log index", self.log_index_offset)):
            if value >= end and value != 0:
                self._damage[BLOCK_LOG] = (f"{name} offset {value} points past the data",
                                           fo + 24)

    # -- lifetime ----------------------------------------------------------------------

    def release(self) -> None:
        """Drop the reference to the underlying buffer (so an mmap can be closed).
        Iterators made from this table fail cleanly afterwards."""
        if not self.released:
            obj = self._mv.obj
            self._mv.release()
            if self.mapped and isinstance(obj, mmap.mmap):
                obj.close()
        self.released = True
        self._cache = {}

    def _check_open(self) -> None:
        if self.released:
            raise ValueError("table is closed")

    def set_sequential_eviction(self, on: bool) -> None:
        """For one pass over a large mapped table (compaction): drop the pages of
        blocks already read, so resident memory stays flat."""
        if on and not self.mapped:
            raise ValueError("eviction only applies to tables mapped from files")
        self._evict = on

    def _evict_range(self, start: int, end: int) -> None:
        a = start & ~4095
        b = end & ~4095  # whole pages below the start of the next block only
        m = self._mv.obj
        if b > a and isinstance(m, mmap.mmap) and hasattr(m, "madvise"):
            m.madvise(mmap.MADV_DONTNEED, a, b - a)

    # -- blocks --------------------------------------------------------------------------

    def _block_type_at(self, off: int) -> int:
        """Type byte of the block at ``off`` (0 past the data), without loading it."""
        self._check_open()
        hoff = self.header_size if off == 0 else 0
        if off + hoff >= self.data_end:
            return 0
        return self._mv[off + hoff]

    def _read_block(self, off: int, keep: bool = False) -> Optional[Block]:
        """Load the block at ``off``; None at the end of the data. ``keep``: cache it
        (seeks do; sequential scans do not, so memory stays flat)."""
        self._check_open()
        if off >= self.data_end:
            return None
        blk = self._cache.get(off)
        if blk is not None:
            return blk
        mv = self._mv
        end = self.data_end
        hoff = self.header_size if off == 0 else 0
        if off + hoff + 4 > end:
            raise self.err("truncated block header", off)
        typ = mv[off + hoff]
        if typ not in DECODERS:
            raise self.err(f"unknown block type 0x{typ:02x}", off + hoff)
        blen = int.from_bytes(mv[off + hoff + 1:off + hoff + 4], "big")
        if blen < hoff + 4 + 2:
            raise self.err(f"bogus block length {blen}", off + hoff + 1)
        if self.block_size and blen > self.block_size:
            raise self.err(f"block length {blen} exceeds block size {self.block_size}",
                           off + hoff + 1)
        if typ == BLOCK_LOG:
            src_off = off + hoff + 4
            want = blen - hoff - 4
            d = zlib.decompressobj()
            # zlib never grows data by more than a few percent: bounding the input keeps
            # each inflate from copying the rest of the file into unused_data
            src = mv[src_off:min(end, src_off + want + (want >> 3) + 64)]
            try:
                out = d.decompress(src, want)
                if not d.eof and len(out) == want and d.decompress(d.unconsumed_tail, 1):
                    raise self.err("log block inflates past its declared size", off)
            except zlib.error as e:
                raise self.err(f"corrupt log block: {e}", off) from None
            if len(out) != want or not d.eof:
                raise self.err(f"log block inflates to {len(out)} bytes, header says {want}",
                               off)
            data = bytes(mv[off:src_off]) + out
            full = hoff + 4 + len(src) - len(d.unused_data)
        else:
            if blen > end - off:
                raise self.err(f"block length {blen} runs past the end of the data", off)
            data = bytes(mv[off:off + blen])
            # padded blocks are followed by zeros up to the block size; otherwise the
            # next block starts right after this one
            if self.block_size == 0 or (blen < self.block_size and off + blen < end
                                        and mv[off + blen] != 0):
                full = blen
            else:
                full = self.block_size
        count = (data[blen - 2] << 8) | data[blen - 1]
        if 3 * count + 2 + hoff + 4 > blen:
            raise self.err(f"bogus restart count {count}", off + blen - 2)
        blk = Block(off, typ, hoff, blen, data, full, count)
        if keep and typ != BLOCK_LOG:
            if len(self._cache) >= _CACHE_BLOCKS:
                self._cache.clear()
            self._cache[off] = blk
        return blk

    def _entries(self, blk: Block) -> Entries:
        """Decoded keys of a block, kept with the block (seeks)."""
        ents = blk.ents
        if ents is None:
            if not blk.checked:
                check_restarts(self, blk)
            ents = blk.ents = decode_entries(self, blk)
            self.keys_read += len(ents[0])
        return ents

    def _section(self, typ: int) -> tuple[bool, int, int]:
        """(present, start offset, index offset) of the section of ``typ``; a damaged
        section's error is raised here."""
        damage = self._damage.get(typ)
        if damage is not None:
            raise self.err(*damage)
        if typ == BLOCK_REF:
            return self.ref_present, 0, self.ref_index_offset
        if typ == BLOCK_OBJ:
            return self.obj_present, self.obj_offset, self.obj_index_offset
        return self.log_present, self.log_offset, self.log_index_offset

    # -- iteration -------------------------------------------------------------------------

    def iter_section(self, typ: int, records: bool = False) -> RecordIter:
        """Iterate every record of the section of ``typ`` (a BLOCK_TYPE_* value)."""
        it = RecordIter(self, typ, records)
        present, start, _ = self._section(typ)
        if present:
            blk = self._read_block(start)
            if blk is None or blk.typ != typ:
                raise self.err(f"section does not start with a block of type {chr(typ)!r}",
                               start)
            it._set_block(blk, 0)
        return it

    def iter_block(self, off: int, typ: int, records: bool = False) -> RecordIter:
        """Iterate the records of the single block at ``off`` (which must be ``typ``)."""
        it = RecordIter(self, typ, records)
        blk = self._read_block(off)
        if blk is None or blk.typ != typ:
            raise self.err(f"expected a block of type {chr(typ)!r}", off)
        it.one_block = True
        it._set_block(blk, 0)
        return it

    def seek(self, typ: int, key: bytes, records: bool = False,
             stop: Optional[bytes] = None) -> RecordIter:
        """An iterator over the section of ``typ`` from the first record whose key is
        ``>= key``; with ``stop``, it ends at the first key not starting with it."""
        it = RecordIter(self, typ, records)
        it.stop = stop or None
        found = self._find(typ, key)
        if found is not None:
            it._set_block(found[0], found[1])
        return it

    def lookup(self, typ: int, key: bytes, records: bool = True) -> Any:
        """The record whose key is exactly ``key``, or None."""
        found = self._find(typ, key)
        if found is None:
            return None
        blk, i = found
        ents = blk.ents
        assert ents is not None
        if i >= len(ents[0]) or ents[0][i] != key:
            return None
        return DECODERS[typ](self, blk.data, key, ents[1][i], ents[2][i], blk.offset, records)

    def refs_for_many(self, oids: list[bytes]) -> list[list[Any]]:
        """For each object id (raw bytes of the table's hash size), the ref records
        (tombstones excluded) whose value or peeled value it is."""
        hs = self.hash_size
        for o in oids:
            if type(o) is not bytes or len(o) != hs:
                raise ValueError("object ids must be bytes of the table's hash size")
        self._check_open()
        if self.obj_present:
            self._section(BLOCK_OBJ)  # raises when the obj section is damaged
        return [self._refs_for(o) for o in oids]

    def _refs_for(self, oid: bytes) -> list[Any]:
        """Through the obj index when the table has one, else by scanning."""
        if not self.ref_present:
            return []
        if self.obj_present:
            key = oid[:self.object_id_len]
            found = self._find(BLOCK_OBJ, key)
            if found is None:
                return []
            blk, i = found
            keys, extras, vstarts, _ = self._entries(blk)
            if i >= len(keys) or keys[i] != key:
                return []  # the index lists every id in the table: none matches
            _, positions = DECODERS[BLOCK_OBJ](self, blk.data, key, extras[i], vstarts[i],
                                               blk.offset, False)
            if positions:
                out = []
                prev = -1
                for off in positions:
                    # Git writes each block offset once, ascending: a repeated offset
                    # would rescan the same block once per repeat
                    if off <= prev:
                        raise self.err(f"obj record for {key.hex()} lists block offsets "
                                       "out of order (each once, ascending)", self.obj_offset)
                    prev = off
                    out += [r for r in self.iter_block(off, BLOCK_REF, True)
                            if r.value == oid or r.target_value == oid]
                return out
            # a record without positions: too many to list, so scan
        return [r for r in self.iter_section(BLOCK_REF, True)
                if r.value == oid or r.target_value == oid]

    def _find(self, typ: int, key: bytes) -> Optional[tuple[Block, int]]:
        """The block holding the first record ``>= key`` and its position there (the
        end of that block when the key is past its records); None when the section is
        absent or the key is past every indexed block."""
        present, start, ioff = self._section(typ)
        if not present:
            return None
        blk: Optional[Block]
        if ioff:
            for _ in range(MAX_INDEX_LEVELS):
                blk = self._read_block(ioff, True)
                if blk is None:
                    raise self.err("index points past the data", ioff)
                if blk.typ == typ:
                    break
                if blk.typ != BLOCK_INDEX:
                    raise self.err(f"index points at a block of type {chr(blk.typ)!r}", ioff)
                keys, _, vstarts, _ = self._entries(blk)
                j = bisect_left(keys, key)
                while j >= len(keys):
                    # past this index block: the top level may span up to three blocks
                    nxt = blk.offset + blk.full_size
                    if self._block_type_at(nxt) != BLOCK_INDEX:
                        return None
                    nb = self._read_block(nxt, True)
                    if nb is None:
                        return None
                    blk = nb
                    keys, _, vstarts, _ = self._entries(blk)
                    j = bisect_left(keys, key)
                ioff = get_varint(blk.data, vstarts[j], blk.restart_start)[0]
                if ioff >= self.data_end:
                    raise self.err(f"index record points at bogus offset {ioff}", blk.offset)
            else:
                raise self.err("index nests too deeply (cycle?)", ioff)
        else:
            blk = self._read_block(start, True)
            if blk is None or blk.typ != typ:
                raise self.err(f"section does not start with a block of type {chr(typ)!r}",
                               start)
            while True:
                nxt = blk.offset + blk.full_size
                if self._block_type_at(nxt) != typ:
                    break
                nb = self._read_block(nxt, True)
                if nb is None or nb.typ != typ:
                    break
                first = self._entries(nb)[0]
                if not first:
                    raise self.err("block without records", nb.offset)
                if first[0] > key:
                    break
                blk = nb
        assert blk is not None
        return blk, bisect_left(self._entries(blk)[0], key)


class RecordIter:
    """Iterator over the records of one section (or one block) of a table; yields
    record objects (``records=True``) or tuples (see ``_record``). With a stop prefix,
    iteration ends at the first key not starting with it."""

    __slots__ = ("table", "typ", "records", "stop", "one_block", "done", "blk", "keys",
                 "extras", "vstarts", "vends", "i", "n", "_dec", "_built", "_base")

    def __init__(self, table: TableCore, typ: int, records: bool) -> None:
        self.table = table
        self.typ = typ
        self.records = records
        self.stop: Optional[bytes] = None
        self.one_block = False
        self.done = True
        self.blk: Optional[Block] = None
        self.keys: list[bytes] = []
        self.extras: list[int] = []
        self.vstarts: list[int] = []
        self.vends: list[int] = []
        self.i = self.n = 0
        self._dec = DECODERS[typ]
        self._built: Optional[list[Any]] = None  # records of the block from _base on
        self._base = 0

    def _set_block(self, blk: Block, i: int) -> None:
        ents = blk.ents
        if ents is None:
            ents = decode_entries(self.table, blk)
            self.table.keys_read += len(ents[0])
        self.blk = blk
        self.keys, self.extras, self.vstarts, self.vends = ents
        self.i = i
        self.n = len(self.keys)
        self.done = False
        self._built = None

    def _advance(self) -> bool:
        """Make a record current (``keys[i]``), moving to the next block as needed.
        False at the end."""
        while self.i >= self.n:
            if self.done:
                return False
            t = self.table
            t._check_open()
            blk = self.blk
            assert blk is not None
            nxt = blk.offset + blk.full_size
            if self.one_block or t._block_type_at(nxt) != self.typ:
                self.done = True
                return False
            if t._evict:
                t._evict_range(blk.offset, nxt)
            nb = t._read_block(nxt)
            if nb is None or nb.typ != self.typ:
                self.done = True
                return False
            self._set_block(nb, 0)
        if self.stop is not None and not self.keys[self.i].startswith(self.stop):
            self.done = True
            self.n = self.i
            return False
        return True

    def _make(self) -> Any:
        """Build the current record and move past it."""
        i = self.i
        self.i = i + 1
        blk = self.blk
        assert blk is not None
        return self._dec(self.table, blk.data, self.keys[i], self.extras[i], self.vstarts[i],
                         blk.offset, self.records)

    def __iter__(self) -> RecordIter:
        return self

    def __next__(self) -> Any:
        i = self.i
        if i >= self.n or self.stop is not None:
            if not self._advance():
                raise StopIteration
            i = self.i
        self.i = i + 1
        blk = self.blk
        assert blk is not None
        if self.typ != BLOCK_REF:
            return self._dec(self.table, blk.data, self.keys[i], self.extras[i],
                             self.vstarts[i], blk.offset, self.records)
        # refs: build the rest of the block in one loop, then hand them out
        built = self._built
        if built is None or i < self._base:
            n = self.n
            if self.stop is not None:  # stop where the prefix ends (else the next block)
                stop = self.stop
                n = i + 1
                while n < self.n and self.keys[n].startswith(stop):
                    n += 1
            built = self._built = ref_values(self.table, blk.data, self.keys[i:n],
                                             self.extras[i:n], self.vstarts[i:n],
                                             blk.offset, self.records)
            self._base = i
        return built[i - self._base]

    def next_key(self) -> Optional[bytes]:
        """The key of the next record without consuming it, or None."""
        return self.keys[self.i] if self._advance() else None

    def count(self) -> int:
        """Consume the iterator and return how many records it had."""
        c = 0
        while self._advance():
            if self.stop is None:
                c += self.n - self.i
                self.i = self.n
            else:
                self.i += 1
                c += 1
        return c

    def ref_columns(self, packed: bool = False) -> Union[RawColumns, RawPacked]:
        """Consume a ref iterator; return its records as columns (see
        ``_record.ref_columns``; ``packed``: the names as bytes and end offsets)."""
        if self.typ != BLOCK_REF:
            raise ValueError("ref_columns needs a ref iterator")
        records = self.records
        self.records = False
        self._built = None
        try:
            return ref_columns(self, self.table.hash_size, packed)
        finally:
            self.records = records
            self.done = True

    def names(self) -> list[str]:
        """Consume the iterator and return the keys as ``str``."""
        out: list[str] = []
        while self._advance():
            if self.stop is None:
                out.extend(k.decode("utf-8", "surrogateescape")
                           for k in self.keys[self.i:self.n])
                self.i = self.n
            else:
                out.append(self.keys[self.i].decode("utf-8", "surrogateescape"))
                self.i += 1
        return out

