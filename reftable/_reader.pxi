# Table reader: header/footer checks, block loading, record decoding and seeking.
# Included by _core.pyx. Every offset and length read from the file is checked
# against the bounds of the table (or of the block) before it is used.

from libc.stdint cimport int16_t

cdef class TableCore
cdef class RecordIter

cdef extern from "<sys/mman.h>" nogil:
    int madvise(void* addr, size_t length, int advice)
    enum: MADV_DONTNEED

import mmap as _mmap_mod


cdef class Block:
    """One block of a table, decoded just enough to walk and search its records."""

    cdef object owner                  # keeps `data` alive (table or inflated bytes)
    cdef const unsigned char* data     # block start (file start for the first block)
    cdef readonly uint64_t offset      # file offset of the block
    cdef readonly int typ
    cdef readonly uint32_t header_off  # size of the file header inside this block
    cdef readonly uint32_t length      # block length, restart table included
    cdef readonly uint32_t restart_count
    cdef readonly uint32_t restart_start
    cdef readonly uint64_t full_size   # distance to the next block on disk
    cdef uint32_t rec_start


cdef class TableCore:
    """Validated view of one table's bytes (``bytes``, ``mmap`` or any buffer)."""

    cdef Py_buffer _pybuf
    cdef bint _has_buf
    cdef object _mv
    cdef const unsigned char* buf
    cdef readonly uint64_t size
    cdef readonly object path
    cdef readonly int version
    cdef readonly int hash_size
    cdef readonly uint32_t hash_id
    cdef readonly int header_size
    cdef readonly int footer_size
    cdef readonly uint32_t block_size
    cdef readonly uint64_t min_update_index
    cdef readonly uint64_t max_update_index
    cdef readonly uint64_t ref_index_offset
    cdef readonly uint64_t obj_offset
    cdef readonly uint64_t obj_index_offset
    cdef readonly uint64_t log_offset
    cdef readonly uint64_t log_index_offset
    cdef readonly int object_id_len
    cdef readonly bint ref_present
    cdef readonly bint obj_present
    cdef readonly bint log_present
    cdef readonly uint64_t data_end
    cdef readonly bint released
    cdef RecordIter _lookup_it
    cdef RecordIter _index_it
    cdef dict _block_cache
    cdef uint64_t* _bloom
    cdef uint64_t _bloom_mask
    cdef bint _bloom_off
    cdef uint64_t _lookups
    cdef bint _evict

    def __cinit__(self, data, path=None):
        self._has_buf = False
        self.buf = NULL
        PyObject_GetBuffer(data, &self._pybuf, PyBUF_SIMPLE)
        self._has_buf = True
        self.buf = <const unsigned char*>self._pybuf.buf
        self.size = <uint64_t>self._pybuf.len
        self._mv = memoryview(data)
        self.path = path
        self._block_cache = {}
        self._parse()

    def __dealloc__(self):
        free(self._bloom)
        if self._has_buf:
            PyBuffer_Release(&self._pybuf)
            self._has_buf = False

    cdef int _build_bloom(self) except -1:
        """Build an in-memory Bloom filter of the ref names, so that lookups of names
        the table does not hold (most lookups in a stack) cost a few hashes instead of
        a seek. Built only once a table has served enough lookups to pay for the scan;
        tables are immutable, so it never goes stale."""
        cdef Buf hashes
        cdef bint present = False
        cdef RecordIter it
        cdef Block blk
        cdef size_t n, i, nbits
        cdef uint64_t* bits
        hashes.p = NULL
        hashes.len = hashes.cap = 0
        self._bloom_off = True  # until built (also stays off for a corrupt table)
        self._section_start(BLOCK_REF, &present)
        try:
            if present:
                blk = self._read_block(0)
                if blk is None or blk.typ != BLOCK_REF:
                    return 0
                it = self._new_iter(BLOCK_REF)
                it._set_block(blk)
                while it._advance():
                    buf_reserve(&hashes, 8)
                    (<uint64_t*>(hashes.p + hashes.len))[0] = _hash_key(it.key.p, it.key.len)
                    hashes.len += 8
                    it._skip()
            n = hashes.len // 8
            nbits = 1024
            while nbits < n * 10:  # ~10 bits per name: about 1% false positives
                nbits *= 2
            bits = <uint64_t*>calloc(nbits // 64, 8)
            if bits == NULL:
                raise MemoryError()
            for i in range(n):
                _bloom_add(bits, nbits - 1, (<uint64_t*>hashes.p)[i])
            self._bloom = bits
            self._bloom_mask = nbits - 1
            self._bloom_off = False
        except FormatError:
            pass  # lookups go on without the filter and report the damage themselves
        finally:
            buf_free(&hashes)
        return 0

    def set_sequential_eviction(self, bint on):
        """For one pass over a large file-backed (mmap) table, e.g. compaction: drop
        the pages of blocks already read from memory, so that resident memory stays
        flat however large the table (the kernel re-reads them if touched again)."""
        if on and not isinstance(self._mv.obj, _mmap_mod.mmap):
            raise ValueError("eviction only applies to tables mapped from files")
        self._evict = on

    cdef void _evict_range(self, uint64_t start, uint64_t end) noexcept:
        # page-aligned: only whole pages below the start of the next block
        cdef uint64_t page = 4096
        cdef uint64_t a = start & ~(page - 1)
        cdef uint64_t b = end & ~(page - 1)
        if self._evict and b > a and self.buf != NULL:
            madvise(<void*>(self.buf + a), b - a, MADV_DONTNEED)

    def release(self):
        """Drop the reference to the underlying buffer (so an mmap can be closed).
        Iterators made from this table fail cleanly afterwards."""
        if self._has_buf:
            self._mv.release()
            PyBuffer_Release(&self._pybuf)
            self._has_buf = False
        self.buf = NULL
        self.released = True
        free(self._bloom)
        self._bloom = NULL
        self._bloom_off = True
        self._block_cache = {}
        self._lookup_it = None
        self._index_it = None

    cdef _err(self, msg, offset):
        return FormatError(msg, self.path, offset)

    cdef int _check_open(self) except -1:
        if self.released:
            raise ValueError("table is closed")
        return 0

    cdef int _parse(self) except -1:
        cdef const unsigned char* b = self.buf
        cdef const unsigned char* f
        cdef uint64_t field
        cdef uint32_t crc_stored, crc
        if self.size < 24:
            raise self._err(f"file of {self.size} bytes is too small for a reftable", 0)
        if memcmp(b, b"REFT", 4) != 0:
            raise self._err("bad magic: not a reftable", 0)
        self.version = b[4]
        if self.version == 1:
            self.header_size = 24
            self.footer_size = 68
            self.hash_id = HASH_ID_SHA1
        elif self.version == 2:
            self.header_size = 28
            self.footer_size = 72
        else:
            raise self._err(f"unsupported reftable version {self.version}", 4)
        if self.size < <uint64_t>(self.header_size + self.footer_size):
            raise self._err(f"truncated table: {self.size} bytes cannot hold header and footer", 0)
        self.block_size = get_be24(b + 5)
        if self.version == 2:
            self.hash_id = get_be32(b + 24)
        if self.hash_id == HASH_ID_SHA1:
            self.hash_size = 20
        elif self.hash_id == HASH_ID_SHA256:
            self.hash_size = 32
        else:
            raise self._err(f"unknown hash id 0x{self.hash_id:08x}", 24)
        self.min_update_index = get_be64(b + 8)
        self.max_update_index = get_be64(b + 16)
        self.data_end = self.size - self.footer_size
        f = b + self.data_end
        if memcmp(f, b, self.header_size) != 0:
            raise self._err("footer does not repeat the header (truncated or corrupt table)",
                            self.data_end)
        crc_stored = get_be32(f + self.footer_size - 4)
        crc = _zlib.crc32(self._mv[self.data_end:self.size - 4]) & 0xFFFFFFFF
        if crc != crc_stored:
            raise self._err(f"footer checksum mismatch (stored {crc_stored:08x}, computed {crc:08x})",
                            self.size - 4)
        f += self.header_size
        self.ref_index_offset = get_be64(f)
        field = get_be64(f + 8)
        self.obj_offset = field >> 5
        self.object_id_len = <int>(field & 0x1F)
        self.obj_index_offset = get_be64(f + 16)
        self.log_offset = get_be64(f + 24)
        self.log_index_offset = get_be64(f + 32)
        for name, value in (("ref index", self.ref_index_offset), ("obj", self.obj_offset),
                            ("obj index", self.obj_index_offset), ("log", self.log_offset),
                            ("log index", self.log_index_offset)):
            if value >= self.data_end and value != 0:
                raise self._err(f"{name} offset {value} points past the data", self.data_end)
        cdef int first = b[self.header_size] if self.data_end > <uint64_t>self.header_size else 0
        self.ref_present = first == BLOCK_REF
        self.obj_present = self.obj_offset > 0
        self.log_present = first == BLOCK_LOG or self.log_offset > 0
        if self.obj_present and (self.object_id_len < 2 or self.object_id_len > self.hash_size):
            raise self._err(f"bad abbreviated object id length {self.object_id_len}",
                            self.data_end + self.header_size + 8)
        return 0

    cdef int _block_type_at(self, uint64_t off) except -1:
        """Type byte of the block at ``off`` (0 past the data), read without loading
        the block: moving from one section into the next must not inflate a log block
        (slow, and a corrupt one would break reading the intact section before it)."""
        cdef uint32_t hoff = self.header_size if off == 0 else 0
        self._check_open()
        if off >= self.data_end or off + hoff >= self.data_end:
            return 0
        return self.buf[off + hoff]

    cdef Block _read_block(self, uint64_t off):
        """Load the block at ``off``; None at the end of the data."""
        cdef Block blk
        cdef uint32_t hoff, blen, count, i, r
        cdef int typ
        cdef const unsigned char* p
        cdef uint64_t src_off, want_len, consumed
        cdef bytes out, head
        self._check_open()
        if off >= self.data_end:
            return None
        blk = self._block_cache.get(off)
        if blk is not None:
            return blk
        hoff = self.header_size if off == 0 else 0
        if off + hoff + 4 > self.data_end:
            raise self._err("truncated block header", off)
        p = self.buf + off
        typ = p[hoff]
        if typ != BLOCK_REF and typ != BLOCK_LOG and typ != BLOCK_OBJ and typ != BLOCK_INDEX:
            raise self._err(f"unknown block type 0x{typ:02x}", off + hoff)
        blen = get_be24(p + hoff + 1)
        if blen < hoff + 4 + 2:
            raise self._err(f"bogus block length {blen}", off + hoff + 1)
        if self.block_size and blen > self.block_size:
            raise self._err(f"block length {blen} exceeds block size {self.block_size}",
                            off + hoff + 1)
        blk = Block.__new__(Block)
        blk.offset = off
        blk.typ = typ
        blk.header_off = hoff
        blk.length = blen
        blk.rec_start = hoff + 4
        if typ == BLOCK_LOG:
            src_off = off + hoff + 4
            want_len = blen - hoff - 4
            d = _zlib.decompressobj()
            # zlib never grows data by more than a few percent: bounding the input
            # keeps each inflate from copying the rest of the file into unused_data
            # (quadratic over a large log section)
            src = self._mv[src_off:min(self.data_end,
                                       src_off + want_len + (want_len >> 3) + 64)]
            try:
                out = d.decompress(src, want_len)
                if not d.eof and len(out) == want_len:
                    # the output is complete; the stream must end right here
                    if d.decompress(d.unconsumed_tail, 1):
                        raise self._err("log block inflates past its declared size", off)
            except _zlib.error as e:
                raise self._err(f"corrupt log block: {e}", off) from None
            if len(out) != want_len or not d.eof:
                raise self._err(
                    f"log block inflates to {len(out)} bytes, header says {want_len}", off)
            consumed = <uint64_t>len(src) - <uint64_t>len(d.unused_data)
            head = bytes(self._mv[off:off + hoff + 4])
            out = head + out
            blk.owner = out
            blk.data = <const unsigned char*>PyBytes_AS_STRING(out)
            blk.full_size = hoff + 4 + consumed
        else:
            if blen > self.data_end - off:
                raise self._err(f"block length {blen} runs past the end of the data", off)
            blk.owner = self
            blk.data = p
            # Padded blocks are followed by zeros up to the block size; otherwise the
            # next block starts right after this one.
            if self.block_size == 0 or (blen < self.block_size and off + blen < self.data_end
                                        and p[blen] != 0):
                blk.full_size = blen
            else:
                blk.full_size = self.block_size
        count = get_be16(blk.data + blen - 2)
        if <uint64_t>3 * count + 2 + hoff + 4 > blen:
            raise self._err(f"bogus restart count {count}", off + blen - 2)
        blk.restart_count = count
        blk.restart_start = blen - 2 - 3 * count
        # Decoded blocks are small and immutable: keep them for later seeks, up to a
        # bound. Not log blocks: they own their inflated bytes (memory must stay flat
        # when iterating a large log section).
        if typ != BLOCK_LOG and len(self._block_cache) < 65536:
            self._block_cache[off] = blk
        # restart offsets are validated when used (_restart), not all up front
        return blk

    cdef RecordIter _new_iter(self, int typ):
        cdef RecordIter it = RecordIter.__new__(RecordIter)
        it.table = self
        it.typ = typ
        it.done = True
        return it

    cdef uint64_t _section_start(self, int typ, bint* present):
        if typ == BLOCK_REF:
            present[0] = self.ref_present
            return 0
        if typ == BLOCK_OBJ:
            present[0] = self.obj_present
            return self.obj_offset
        present[0] = self.log_present
        return self.log_offset

    cdef uint64_t _index_offset(self, int typ):
        if typ == BLOCK_REF:
            return self.ref_index_offset
        if typ == BLOCK_OBJ:
            return self.obj_index_offset
        return self.log_index_offset

    def iter_section(self, int typ, bint records=False):
        """Iterate every record of the section of ``typ`` (a BLOCK_TYPE_* value)."""
        cdef bint present = False
        cdef uint64_t start = self._section_start(typ, &present)
        cdef RecordIter it = self._new_iter(typ)
        it.records = records
        cdef Block blk
        if not present:
            return it
        blk = self._read_block(start)
        if blk is None or blk.typ != typ:
            raise self._err(f"section does not start with a block of type {chr(typ)!r}", start)
        it._set_block(blk)
        return it

    def iter_block(self, uint64_t off, int typ, bint records=False):
        """Iterate the records of the single block at ``off`` (which must be ``typ``)."""
        cdef RecordIter it = self._new_iter(typ)
        it.records = records
        cdef Block blk = self._read_block(off)
        if blk is None or blk.typ != typ:
            raise self._err(f"expected a block of type {chr(typ)!r}", off)
        it._set_block(blk)
        it.one_block = True
        return it

    def seek(self, int typ, bytes key, bint records=False, bytes stop=None):
        """Return an iterator over the section of ``typ`` positioned at the first record
        whose key is ``>= key``; with ``stop``, it ends at the first key that does not
        start with ``stop``."""
        cdef RecordIter it = self._new_iter(typ)
        it.records = records
        if stop is not None:
            it._set_stop(<const unsigned char*>PyBytes_AS_STRING(stop), PyBytes_GET_SIZE(stop))
        self._seek_into(it, <const unsigned char*>PyBytes_AS_STRING(key),
                        PyBytes_GET_SIZE(key))
        return it

    def lookup(self, int typ, bytes key, bint records=True):
        """The record whose key is exactly ``key``, or None (a point lookup that
        builds nothing but the result)."""
        return self._lookup(typ, <const unsigned char*>PyBytes_AS_STRING(key),
                            PyBytes_GET_SIZE(key), records)

    cdef object _lookup(self, int typ, const unsigned char* kp, size_t klen,
                        bint records=True):
        cdef RecordIter it
        if typ == BLOCK_REF and not self._bloom_off:
            if self._bloom != NULL:
                if not _bloom_has(self._bloom, self._bloom_mask, _hash_key(kp, klen)):
                    return None
            else:
                self._lookups += 1
                if self._lookups >= 64 + self.data_end // 2048:
                    self._build_bloom()
        # The reusable iterator is taken out while in use: allocating objects can run
        # the garbage collector, and with it other threads that look up in this table.
        it = self._lookup_it
        self._lookup_it = None
        if it is None:
            it = self._new_iter(typ)
        try:
            it.typ = typ
            it.records = records
            it.has_stop = False
            it.one_block = False
            it.has_cur = False
            it.done = True
            self._seek_into(it, kp, klen)
            if not it._advance() or key_cmp(it.key.p, it.key.len, kp, klen) != 0:
                it.has_cur = False
                return None
            return it._make()
        finally:
            self._lookup_it = it

    cdef int _seek_into(self, RecordIter it, const unsigned char* kp, size_t klen) except -1:
        cdef bint present = False
        cdef uint64_t start = self._section_start(it.typ, &present)
        cdef uint64_t ioff = self._index_offset(it.typ)
        cdef RecordIter idx
        cdef Block blk, nb
        cdef int level
        cdef int typ = it.typ
        if not present:
            return 0
        if ioff:
            blk = None
            idx = self._index_it
            self._index_it = None  # taken out while in use (see _lookup)
            if idx is None:
                idx = self._new_iter(BLOCK_INDEX)
                idx.one_block = True
            try:
                for level in range(MAX_INDEX_LEVELS):
                    blk = self._read_block(ioff)
                    if blk is None:
                        raise self._err("index points past the data", ioff)
                    if blk.typ == typ:
                        break
                    if blk.typ != BLOCK_INDEX:
                        raise self._err(f"index points at a block of type {chr(blk.typ)!r}", ioff)
                    idx._set_block(blk)
                    idx._seek_in_block(kp, klen)
                    while idx.pos >= idx.block.restart_start:
                        # Past this index block: the top level of an index may span up to
                        # three blocks (Git stops adding levels below that).
                        if self._block_type_at(idx.block.offset + idx.block.full_size) != \
                                BLOCK_INDEX:
                            return 0      # the key is past every indexed block
                        nb = self._read_block(idx.block.offset + idx.block.full_size)
                        if nb is None or nb.typ != BLOCK_INDEX:
                            return 0      # the key is past every indexed block
                        idx._set_block(nb)
                        idx._seek_in_block(kp, klen)
                    ioff = idx._next_index_offset()
                else:
                    raise self._err("index nests too deeply (cycle?)", ioff)
            finally:
                self._index_it = idx
        else:
            blk = self._read_block(start)
            if blk is None or blk.typ != typ:
                raise self._err(f"section does not start with a block of type {chr(typ)!r}",
                                start)
            while True:
                if self._block_type_at(blk.offset + blk.full_size) != typ:
                    break
                nb = self._read_block(blk.offset + blk.full_size)
                if nb is None or nb.typ != typ:
                    break
                if _first_key_cmp(nb, kp, klen, self) > 0:
                    break
                blk = nb
        it._set_block(blk)
        it._seek_in_block(kp, klen)
        return 0


def merged_lookup(list cores, bytes key, bint suppress_deletions=True):
    """Point lookup of a ref over tables given oldest first: the newest record for
    ``key``, or None (also for a tombstone when deletions are suppressed)."""
    cdef Py_ssize_t i
    cdef TableCore c
    cdef const unsigned char* kp = <const unsigned char*>PyBytes_AS_STRING(key)
    cdef size_t klen = PyBytes_GET_SIZE(key)
    for i in range(len(cores) - 1, -1, -1):
        c = <TableCore>cores[i]
        r = c._lookup(BLOCK_REF, kp, klen)
        if r is not None:
            if suppress_deletions and r.value_type == 0:
                return None
            return r
    return None


cdef int _first_key_cmp(Block b, const unsigned char* kp, size_t klen,
                        TableCore t) except -2:
    """Compare the first key of block ``b`` (a restart point: no prefix) with a key."""
    cdef const unsigned char* p = b.data
    cdef uint32_t pos = b.rec_start, end = b.restart_start
    cdef uint64_t prefix, st, suffix
    cdef int n = get_varint(p + pos, end - pos, &prefix)
    if n < 0 or prefix != 0:
        raise t._err("first record of block does not start a full key", b.offset + pos)
    pos += n
    n = get_varint(p + pos, end - pos, &st)
    if n < 0:
        raise t._err("bad key varint", b.offset + pos)
    pos += n
    suffix = st >> 3
    if suffix > end - pos:
        raise t._err("first key runs past the block", b.offset + pos)
    return key_cmp(p + pos, <size_t>suffix, kp, klen)


cdef int _skip_value(TableCore t, int typ, int extra, const unsigned char* p, uint32_t pos,
                     uint32_t end, uint64_t boff) except? -1:
    """Return the position right after the value of a record whose key ends at pos."""
    cdef uint64_t v, cnt, i
    cdef int n, hs = t.hash_size
    if typ == BLOCK_REF:
        n = get_varint(p + pos, end - pos, &v)
        if n < 0:
            raise t._err("bad update index varint", boff + pos)
        pos += n
        if extra == 0:
            return pos
        if extra == 1 or extra == 2:
            if <uint64_t>extra * hs > end - pos:
                raise t._err("truncated object id", boff + pos)
            return pos + extra * hs
        if extra == 3:
            n = get_varint(p + pos, end - pos, &v)
            if n < 0 or v > end - pos - n:
                raise t._err("bad symref target length", boff + pos)
            return pos + n + <uint32_t>v
        raise t._err(f"unknown ref value type {extra}", boff + pos)
    if typ == BLOCK_LOG:
        if extra == 0:
            return pos
        if extra != 1:
            raise t._err(f"unknown log value type {extra}", boff + pos)
        if <uint64_t>2 * hs > end - pos:
            raise t._err("truncated log object ids", boff + pos)
        pos += 2 * hs
        for i in range(2):
            n = get_varint(p + pos, end - pos, &v)
            if n < 0 or v > end - pos - n:
                raise t._err("bad log string length", boff + pos)
            pos += n + <uint32_t>v
        n = get_varint(p + pos, end - pos, &v)
        if n < 0:
            raise t._err("bad log time varint", boff + pos)
        pos += n
        if end - pos < 2:
            raise t._err("truncated log timezone", boff + pos)
        pos += 2
        n = get_varint(p + pos, end - pos, &v)
        if n < 0 or v > end - pos - n:
            raise t._err("bad log message length", boff + pos)
        return pos + n + <uint32_t>v
    if typ == BLOCK_OBJ:
        cnt = extra
        if extra == 0:
            n = get_varint(p + pos, end - pos, &cnt)
            if n < 0:
                raise t._err("bad obj position count", boff + pos)
            pos += n
        if cnt > end - pos:
            raise t._err(f"obj record claims {cnt} positions", boff + pos)
        for i in range(cnt):
            n = get_varint(p + pos, end - pos, &v)
            if n < 0:
                raise t._err("bad obj position varint", boff + pos)
            pos += n
        return pos
    # index
    n = get_varint(p + pos, end - pos, &v)
    if n < 0:
        raise t._err("bad index offset varint", boff + pos)
    return pos + n


cdef inline uint32_t _restart(TableCore t, Block b, uint32_t i) except? 0:
    """Offset of restart point ``i`` of ``b``, checked to lie among the records."""
    cdef uint32_t r = get_be24(b.data + b.restart_start + 3 * i)
    if r < b.rec_start or r >= b.restart_start:
        raise t._err(f"bogus restart offset {r}", b.offset + b.restart_start + 3 * i)
    return r


# ---------------------------------------------------------------------------
# Record objects built directly in C.
#
# RefRecord and LogRecord are frozen, slotted dataclasses. Calling their __init__
# costs ~1 us per record (frozen dataclasses set fields through object.__setattr__),
# which would dominate iteration. When the classes are registered and their fields are
# plain slot descriptors, records are allocated with tp_alloc and their slots filled by
# offset, which is what __init__ ends up doing, minus the overhead.

from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.object cimport PyTypeObject
import types as _types

cdef extern from "Python.h":
    PyObject* PyType_GenericAlloc(PyTypeObject* t, Py_ssize_t n)
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
        int type
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member

cdef object _RefCls = None
cdef object _LogCls = None
cdef Py_ssize_t _ref_offs[6]
cdef Py_ssize_t _log_offs[10]
cdef bint _fast_records = False
cdef tuple _ref_vts = (0, 1, 2, 3)
cdef tuple _log_vts = (0, 1)


def register_record_types(refcls, logcls, ref_vts, log_vts):
    """Tell the core which classes to build for ref and log records (done once by
    ``reftable.records``)."""
    global _RefCls, _LogCls, _fast_records, _ref_vts, _log_vts
    cdef int i
    _RefCls = refcls
    _LogCls = logcls
    _ref_vts = tuple(ref_vts)
    _log_vts = tuple(log_vts)
    ok = True
    for cls, fields, n in ((refcls, ("name", "update_index", "value_type", "value",
                                     "target_value", "target"), 6),
                           (logcls, ("refname", "update_index", "value_type", "old_id",
                                     "new_id", "name", "email", "time", "tz_offset",
                                     "message"), 10)):
        if getattr(cls, "__dictoffset__", 1) != 0 or "__slots__" not in cls.__dict__:
            ok = False
            break
        for i in range(n):
            d = cls.__dict__.get(fields[i])
            if type(d) is not _types.MemberDescriptorType:
                ok = False
                break
            if cls is refcls:
                _ref_offs[i] = (<PyMemberDescrObject*>d).d_member.offset
            else:
                _log_offs[i] = (<PyMemberDescrObject*>d).d_member.offset
    _fast_records = ok
    return ok


cdef inline void _put_slot(PyObject* o, Py_ssize_t off, object v) noexcept:
    Py_INCREF(v)
    (<PyObject**>((<char*>o) + off))[0] = <PyObject*>v


cdef object _new_record(object cls, Py_ssize_t* offs, tuple values):
    cdef PyObject* o
    cdef object result
    cdef Py_ssize_t i
    if not _fast_records:
        return cls(*values)
    o = PyType_GenericAlloc(<PyTypeObject*>cls, 0)
    if o == NULL:
        raise MemoryError()
    result = <object>o
    Py_DECREF(result)
    for i in range(len(values)):
        _put_slot(o, offs[i], values[i])
    return result


cdef inline uint64_t _mix64(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= <uint64_t>0xff51afd7ed558ccdULL
    h ^= h >> 33
    h *= <uint64_t>0xc4ceb9fe1a85ec53ULL
    h ^= h >> 33
    return h


cdef inline uint64_t _hash_key(const unsigned char* p, size_t n) noexcept nogil:
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL ^ n
    cdef uint64_t w
    while n >= 8:
        memcpy(&w, p, 8)
        h = (h ^ w) * <uint64_t>0x100000001b3ULL
        h ^= h >> 29
        p += 8
        n -= 8
    w = 0
    if n:
        memcpy(&w, p, n)
    return _mix64(h ^ w)


cdef inline void _bloom_add(uint64_t* bits, uint64_t mask, uint64_t h) noexcept nogil:
    cdef uint64_t h2 = (h >> 32) | 1
    cdef uint64_t b
    cdef int i
    for i in range(4):
        b = (h + i * h2) & mask
        bits[b >> 6] |= (<uint64_t>1) << (b & 63)


cdef inline bint _bloom_has(const uint64_t* bits, uint64_t mask, uint64_t h) noexcept nogil:
    cdef uint64_t h2 = (h >> 32) | 1
    cdef uint64_t b
    cdef int i
    for i in range(4):
        b = (h + i * h2) & mask
        if not (bits[b >> 6] >> (b & 63)) & 1:
            return False
    return True


cdef uint64_t _keys_decoded = 0


def keys_decoded():
    """Record keys decoded by readers since :func:`reset_keys_decoded` (a work counter
    for tests that check scaling by counting operations instead of timing them)."""
    return _keys_decoded


def reset_keys_decoded():
    global _keys_decoded
    _keys_decoded = 0


cdef inline object _str(const unsigned char* p, size_t n):
    return PyUnicode_DecodeUTF8(<const char*>p, n, "surrogateescape")


cdef inline object _bytes(const unsigned char* p, size_t n):
    return PyBytes_FromStringAndSize(<const char*>p, n)


cdef class RecordIter:
    """Iterator over the records of one section (or one block) of a table.

    Yields record objects (``RefRecord``/``LogRecord``) when made with ``records=True``,
    else tuples:
      ref:   (name, update_index, value_type, value, target_value, target)
      log:   (refname, update_index, value_type, old_id, new_id, name, email, time,
              tz_offset, message)
      obj:   (prefix, [block offsets])
      index: (last_key, block offset)
    With a stop prefix, iteration ends at the first key not starting with it.
    """

    cdef TableCore table
    cdef Block block
    cdef int typ
    cdef uint32_t pos        # next unread byte (value of the current record once decoded)
    cdef Buf key             # key of the current record
    cdef Buf stop            # stop prefix
    cdef bint has_stop
    cdef bint done
    cdef bint one_block
    cdef bint records
    cdef bint has_cur        # a key is decoded and its value not consumed yet
    cdef int extra           # value type of the current record

    def __dealloc__(self):
        buf_free(&self.key)
        buf_free(&self.stop)

    def __iter__(self):
        return self

    cdef int _set_block(self, Block blk) except -1:
        self.block = blk
        self.pos = blk.rec_start
        self.key.len = 0
        self.done = False
        return 0

    cdef int _set_stop(self, const unsigned char* p, size_t n) except -1:
        buf_set(&self.stop, p, n)
        self.has_stop = n > 0
        return 0

    cdef int _decode_key(self, int* extra) except -1:
        """Decode the key at ``pos`` into ``key`` and advance ``pos`` past it."""
        global _keys_decoded
        _keys_decoded += 1
        cdef const unsigned char* p = self.block.data
        cdef uint32_t end = self.block.restart_start
        cdef uint64_t prefix, st, suffix
        cdef int n
        n = get_varint(p + self.pos, end - self.pos, &prefix)
        if n < 0:
            raise self.table._err("bad key prefix varint", self.block.offset + self.pos)
        self.pos += n
        n = get_varint(p + self.pos, end - self.pos, &st)
        if n < 0:
            raise self.table._err("bad key suffix varint", self.block.offset + self.pos)
        self.pos += n
        suffix = st >> 3
        extra[0] = <int>(st & 7)
        if prefix > self.key.len:
            raise self.table._err(
                f"key prefix {prefix} longer than previous key {self.key.len}",
                self.block.offset + self.pos)
        if suffix > end - self.pos:
            raise self.table._err(f"key suffix of {suffix} bytes runs past the block",
                                  self.block.offset + self.pos)
        if prefix + suffix == 0:
            raise self.table._err("empty record key", self.block.offset + self.pos)
        self.key.len = <size_t>prefix
        buf_append(&self.key, p + self.pos, <size_t>suffix)
        self.pos += <uint32_t>suffix
        return 0

    cdef int _at_end(self) except -1:
        """Move to the next block when this one is used up; true at the end."""
        cdef Block nb
        while True:
            if self.done:
                return 1
            self.table._check_open()
            if self.pos < self.block.restart_start:
                return 0
            if self.one_block:
                self.done = True
                return 1
            if self.table._block_type_at(self.block.offset + self.block.full_size) != self.typ:
                self.done = True
                return 1
            if self.table._evict:
                self.table._evict_range(self.block.offset,
                                        self.block.offset + self.block.full_size)
            nb = self.table._read_block(self.block.offset + self.block.full_size)
            if nb is None or nb.typ != self.typ:
                self.done = True
                return 1
            self._set_block(nb)

    cdef int _advance(self) except -1:
        """Decode the next record's key (value left unread). 0 at the end."""
        if self.has_cur:
            return 1
        if self._at_end():
            return 0
        self._decode_key(&self.extra)
        if self.has_stop and (self.key.len < self.stop.len or
                              memcmp(self.key.p, self.stop.p, self.stop.len) != 0):
            self.done = True
            return 0
        self.has_cur = True
        return 1

    cdef int _skip(self) except -1:
        """Consume the current record's value without building anything."""
        self.pos = _skip_value(self.table, self.typ, self.extra, self.block.data, self.pos,
                               self.block.restart_start, self.block.offset)
        self.has_cur = False
        return 0

    cdef object _make(self):
        """Build the current record (consuming its value)."""
        cdef object r
        if self.typ == BLOCK_REF:
            r = self._ref_value(self.extra)
        elif self.typ == BLOCK_LOG:
            r = self._log_value(self.extra)
        elif self.typ == BLOCK_OBJ:
            r = self._obj_value(self.extra)
        else:
            r = self._index_value()
        self.has_cur = False
        return r

    cdef int _seek_in_block(self, const unsigned char* kp, size_t klen) except -1:
        """Position before the first record of this block with key >= the given key
        (or at the block's end)."""
        cdef Block b = self.block
        cdef uint32_t lo = 0, hi = b.restart_count, mid, rpos, save
        cdef uint64_t prefix, st, suffix
        cdef int n, extra
        cdef const unsigned char* p = b.data
        cdef Buf tmp
        self.has_cur = False
        # Binary search for the first restart whose key is > the wanted key.
        while lo < hi:
            mid = lo + (hi - lo) // 2
            rpos = _restart(self.table, b, mid)
            n = get_varint(p + rpos, b.restart_start - rpos, &prefix)
            if n < 0 or prefix != 0:
                raise self.table._err("restart point does not start a full key", b.offset + rpos)
            rpos += n
            n = get_varint(p + rpos, b.restart_start - rpos, &st)
            if n < 0:
                raise self.table._err("bad key varint at restart point", b.offset + rpos)
            rpos += n
            suffix = st >> 3
            if suffix > b.restart_start - rpos:
                raise self.table._err("restart key runs past the block", b.offset + rpos)
            if key_cmp(p + rpos, <size_t>suffix, kp, klen) > 0:
                hi = mid
            else:
                lo = mid + 1
        self.pos = _restart(self.table, b, lo - 1) if lo > 0 else b.rec_start
        self.key.len = 0
        while self.pos < b.restart_start:
            save = self.pos
            self._decode_key(&extra)
            if key_cmp(self.key.p, self.key.len, kp, klen) >= 0:
                # Step back so that the next record returned is this one. The key
                # buffer can stay: decoding the record again keeps its first `prefix`
                # bytes, which it shares with the previous key, and re-adds the suffix.
                self.pos = save
                return 0
            self.pos = _skip_value(self.table, self.typ, extra, p, self.pos, b.restart_start,
                                   b.offset)
        return 0

    cdef uint64_t _next_index_offset(self) except? 0:
        cdef int extra, n
        cdef uint64_t v
        self._decode_key(&extra)
        n = get_varint(self.block.data + self.pos, self.block.restart_start - self.pos, &v)
        if n < 0:
            raise self.table._err("bad index offset varint", self.block.offset + self.pos)
        self.pos += n
        if v >= self.table.data_end:
            raise self.table._err(f"index record points at bogus offset {v}",
                                  self.block.offset + self.pos)
        return v

    def __next__(self):
        if not self._advance():
            raise StopIteration
        return self._make()

    def next_key(self):
        """Return the key of the next record without consuming it, or None."""
        if not self._advance():
            return None
        return _bytes(self.key.p, self.key.len)

    def count(self):
        """Consume the iterator and return how many records it had (no objects built)."""
        cdef Py_ssize_t n = 0
        while self._advance():
            self._skip()
            n += 1
        return n

    def names(self):
        """Consume the iterator and return the keys as ``str`` (ref sections: names)."""
        cdef list out = []
        while self._advance():
            out.append(_str(self.key.p, self.key.len))
            self._skip()
        return out

    cdef object _ref_value(self, int extra):
        cdef const unsigned char* p = self.block.data
        cdef uint32_t end = self.block.restart_start
        cdef uint64_t boff = self.block.offset
        cdef uint64_t delta, tl
        cdef int n, hs = self.table.hash_size
        cdef object value = None, target_value = None, target = None
        n = get_varint(p + self.pos, end - self.pos, &delta)
        if n < 0:
            raise self.table._err("bad update index varint", boff + self.pos)
        self.pos += n
        if delta > UINT64_MAX - self.table.min_update_index:
            raise self.table._err("update index overflows", boff + self.pos)
        if extra == 1 or extra == 2:
            if <uint64_t>extra * hs > end - self.pos:
                raise self.table._err("truncated object id", boff + self.pos)
            value = _bytes(p + self.pos, hs)
            self.pos += hs
            if extra == 2:
                target_value = _bytes(p + self.pos, hs)
                self.pos += hs
        elif extra == 3:
            n = get_varint(p + self.pos, end - self.pos, &tl)
            if n < 0 or tl > end - self.pos - n:
                raise self.table._err("bad symref target length", boff + self.pos)
            self.pos += n
            target = _str(p + self.pos, <size_t>tl)
            self.pos += <uint32_t>tl
        elif extra != 0:
            raise self.table._err(f"unknown ref value type {extra}", boff + self.pos)
        values = (_str(self.key.p, self.key.len),
                  PyLong_FromUnsignedLongLong(self.table.min_update_index + delta),
                  _ref_vts[extra] if self.records else extra, value, target_value, target)
        if self.records:
            return _new_record(_RefCls, _ref_offs, values)
        return values

    cdef object _log_value(self, int extra):
        cdef const unsigned char* p = self.block.data
        cdef uint32_t end = self.block.restart_start
        cdef uint64_t boff = self.block.offset
        cdef size_t kl = self.key.len
        cdef uint64_t ui, v, t
        cdef int n, hs = self.table.hash_size, i
        cdef int tz
        cdef object s0, s1
        if kl < 10 or self.key.p[kl - 9] != 0:
            raise self.table._err("log key lacks its update index suffix", boff + self.pos)
        ui = UINT64_MAX - get_be64(self.key.p + kl - 8)
        refname = _str(self.key.p, kl - 9)
        if extra == 0:
            values = (refname, PyLong_FromUnsignedLongLong(ui),
                      _log_vts[0] if self.records else 0, None, None, "", "", 0, 0, "")
        else:
            if extra != 1:
                raise self.table._err(f"unknown log value type {extra}", boff + self.pos)
            if <uint64_t>2 * hs > end - self.pos:
                raise self.table._err("truncated log object ids", boff + self.pos)
            old_id = _bytes(p + self.pos, hs)
            new_id = _bytes(p + self.pos + hs, hs)
            self.pos += 2 * hs
            n = get_varint(p + self.pos, end - self.pos, &v)
            if n < 0 or v > end - self.pos - n:
                raise self.table._err("bad log name length", boff + self.pos)
            self.pos += n
            s0 = _str(p + self.pos, <size_t>v)
            self.pos += <uint32_t>v
            n = get_varint(p + self.pos, end - self.pos, &v)
            if n < 0 or v > end - self.pos - n:
                raise self.table._err("bad log email length", boff + self.pos)
            self.pos += n
            s1 = _str(p + self.pos, <size_t>v)
            self.pos += <uint32_t>v
            n = get_varint(p + self.pos, end - self.pos, &t)
            if n < 0:
                raise self.table._err("bad log time varint", boff + self.pos)
            self.pos += n
            if end - self.pos < 2:
                raise self.table._err("truncated log timezone", boff + self.pos)
            tz = <int>(<int16_t>get_be16(p + self.pos))
            self.pos += 2
            n = get_varint(p + self.pos, end - self.pos, &v)
            if n < 0 or v > end - self.pos - n:
                raise self.table._err("bad log message length", boff + self.pos)
            self.pos += n
            message = _str(p + self.pos, <size_t>v)
            self.pos += <uint32_t>v
            values = (refname, PyLong_FromUnsignedLongLong(ui),
                      _log_vts[1] if self.records else 1, old_id, new_id, s0, s1,
                      PyLong_FromUnsignedLongLong(t), tz, message)
        if self.records:
            return _new_record(_LogCls, _log_offs, values)
        return values

    cdef object _obj_value(self, int extra):
        cdef const unsigned char* p = self.block.data
        cdef uint32_t end = self.block.restart_start
        cdef uint64_t boff = self.block.offset
        cdef uint64_t cnt = extra, v, last = 0, i
        cdef int n
        cdef list positions = []
        if extra == 0:
            n = get_varint(p + self.pos, end - self.pos, &cnt)
            if n < 0:
                raise self.table._err("bad obj position count", boff + self.pos)
            self.pos += n
        if cnt > end - self.pos:
            raise self.table._err(f"obj record claims {cnt} positions", boff + self.pos)
        for i in range(cnt):
            n = get_varint(p + self.pos, end - self.pos, &v)
            if n < 0:
                raise self.table._err("bad obj position varint", boff + self.pos)
            self.pos += n
            if i and v > UINT64_MAX - last:
                raise self.table._err("obj position overflows", boff + self.pos)
            last = v if i == 0 else last + v
            positions.append(PyLong_FromUnsignedLongLong(last))
        return (_bytes(self.key.p, self.key.len), positions)

    cdef object _index_value(self):
        cdef uint64_t v
        cdef int n = get_varint(self.block.data + self.pos, self.block.restart_start - self.pos, &v)
        if n < 0:
            raise self.table._err("bad index offset varint", self.block.offset + self.pos)
        self.pos += n
        return (_bytes(self.key.p, self.key.len), PyLong_FromUnsignedLongLong(v))


cdef class MergedIter:
    """k-way merge of the same section of several tables (given oldest first): for
    each key the newest table's record wins; with ``suppress_deletions`` tombstones
    are dropped after hiding older records. Shadowed records are skipped without
    building objects."""

    cdef list iters
    cdef Py_ssize_t n
    cdef int typ
    cdef bint suppress
    cdef Py_ssize_t* heap      # iterator indices, a binary heap by (key, newest first)
    cdef Py_ssize_t hlen
    cdef bint primed
    cdef Py_ssize_t pending    # the winner handed out last; consumed by the caller
    cdef Buf last              # its key

    def __cinit__(self):
        self.heap = NULL
        self.pending = -1

    def __dealloc__(self):
        free(self.heap)
        buf_free(&self.last)

    def __init__(self, iters, int typ, bint suppress_deletions=True):
        self.iters = list(iters)
        for it in self.iters:
            # _step and copy_to cast without checking, and copy_to decodes values by
            # self.typ after validating them by the iterator's own type
            if not isinstance(it, RecordIter) or (<RecordIter>it).typ != typ:
                raise TypeError("MergedIter needs RecordIters over one section type")
        self.n = len(self.iters)
        self.typ = typ
        self.suppress = suppress_deletions
        free(self.heap)
        self.heap = <Py_ssize_t*>malloc((self.n + 1) * sizeof(Py_ssize_t))
        if self.heap == NULL:
            raise MemoryError()
        self.hlen = 0
        self.primed = False
        self.pending = -1

    def __iter__(self):
        return self

    cdef inline bint _less(self, Py_ssize_t a, Py_ssize_t b) noexcept:
        cdef RecordIter x = <RecordIter>self.iters[a]
        cdef RecordIter y = <RecordIter>self.iters[b]
        cdef int c = key_cmp(x.key.p, x.key.len, y.key.p, y.key.len)
        if c:
            return c < 0
        return a > b  # same key: the newer table first

    cdef void _sift_down(self, Py_ssize_t pos) noexcept:
        cdef Py_ssize_t child, t
        cdef Py_ssize_t* h = self.heap
        while True:
            child = 2 * pos + 1
            if child >= self.hlen:
                return
            if child + 1 < self.hlen and self._less(h[child + 1], h[child]):
                child += 1
            if not self._less(h[child], h[pos]):
                return
            t = h[pos]
            h[pos] = h[child]
            h[child] = t
            pos = child

    cdef int _refill_top(self) except -1:
        """The top iterator's record was consumed: advance it and restore the heap."""
        cdef RecordIter it = <RecordIter>self.iters[self.heap[0]]
        if not it._advance():
            self.hlen -= 1
            self.heap[0] = self.heap[self.hlen]
        if self.hlen:
            self._sift_down(0)
        return 0

    cdef int _drop_shadowed(self) except -1:
        """Skip records of older tables with the key just handed out."""
        cdef RecordIter it
        while self.hlen:
            it = <RecordIter>self.iters[self.heap[0]]
            if key_cmp(it.key.p, it.key.len, self.last.p, self.last.len) != 0:
                return 0
            it._skip()
            self._refill_top()
        return 0

    cdef Py_ssize_t _step(self) except -2:
        """Leave the winning record current in its iterator; return its index or -1.
        The caller consumes it (builds or skips its value) before the next call."""
        cdef Py_ssize_t i
        cdef RecordIter it
        if not self.primed:
            self.primed = True
            for i in range(self.n):
                if (<RecordIter>self.iters[i])._advance():
                    self.heap[self.hlen] = i
                    self.hlen += 1
            i = self.hlen // 2
            while i > 0:
                i -= 1
                self._sift_down(i)
        if self.pending >= 0:
            self.pending = -1
            if self.hlen:
                self._refill_top()
                self._drop_shadowed()
        while self.hlen:
            i = self.heap[0]
            it = <RecordIter>self.iters[i]
            buf_set(&self.last, it.key.p, it.key.len)
            if self.suppress and it.extra == 0:
                it._skip()  # a tombstone: hides older records, shows nothing
                self._refill_top()
                self._drop_shadowed()
                continue
            self.pending = i
            return i
        return -1

    def __next__(self):
        cdef Py_ssize_t i = self._step()
        if i < 0:
            raise StopIteration
        return (<RecordIter>self.iters[i])._make()

    def count(self):
        cdef Py_ssize_t i, c = 0
        while True:
            i = self._step()
            if i < 0:
                return c
            (<RecordIter>self.iters[i])._skip()
            c += 1

    def copy_to(self, WriterCore w, bint drop_deletions=False, uint64_t min_update_index=0,
                uint64_t min_time=0, bint normalize_messages=False, progress=None):
        """Write every merged record into ``w`` without building Python objects
        (compaction). ``drop_deletions``: leave tombstones out (bottom of the stack).
        Log entries below ``min_update_index`` or older than ``min_time`` are expired.
        ``normalize_messages``: rewrite log messages the way Git's writer does when
        not in exact mode (one trailing newline), so compacted tables match Git's;
        messages with inner newlines are kept as they are.
        ``progress``: called with the number of records read so far, every 65536.
        Returns the number of records written."""
        cdef Buf val
        val.p = NULL
        val.len = val.cap = 0
        try:
            return self._copy_to(w, drop_deletions, min_update_index, min_time,
                                 normalize_messages, &val, progress)
        finally:
            buf_free(&val)

    cdef Py_ssize_t _copy_to(self, WriterCore w, bint drop_deletions, uint64_t min_update_index,
                             uint64_t min_time, bint normalize_messages, Buf* val,
                             object progress) except -1:
        cdef Py_ssize_t i, written = 0, seen = 0
        cdef RecordIter it
        cdef uint32_t start, end, vstart, mstart, mlen, keep
        cdef uint64_t delta, ui, t, v
        cdef int n, hs
        cdef const unsigned char* p
        while True:
            i = self._step()
            if i < 0:
                return written
            it = <RecordIter>self.iters[i]
            seen += 1
            if progress is not None and (seen & 0xFFFF) == 0:
                progress(seen)
            p = it.block.data
            start = it.pos
            end = _skip_value(it.table, it.typ, it.extra, p, start, it.block.restart_start,
                              it.block.offset)
            it.pos = end
            it.has_cur = False
            if drop_deletions and it.extra == 0:
                continue
            if self.typ == BLOCK_REF:
                n = get_varint(p + start, end - start, &delta)   # validated by _skip_value
                if delta > UINT64_MAX - it.table.min_update_index:
                    raise it.table._err("update index overflows", it.block.offset + start)
                ui = it.table.min_update_index + delta
                w._add_ref_raw(it.key.p, it.key.len, ui, it.extra, p + start + n,
                               end - start - n)
            else:
                if it.key.len < 10 or it.key.p[it.key.len - 9] != 0:
                    raise it.table._err("log key lacks its update index suffix",
                                        it.block.offset + start)
                ui = UINT64_MAX - get_be64(it.key.p + it.key.len - 8)
                if min_update_index and ui < min_update_index:
                    continue
                if (min_time or normalize_messages) and it.extra == 1:
                    # (the value was validated by _skip_value above)
                    hs = it.table.hash_size
                    vstart = start + 2 * hs
                    vstart = _skip_str(p, vstart, end)
                    vstart = _skip_str(p, vstart, end)
                    n = get_varint(p + vstart, end - vstart, &t)
                    if min_time and t < min_time:
                        continue
                    if normalize_messages:
                        mstart = vstart + n + 2          # message length varint
                        n = get_varint(p + mstart, end - mstart, &v)
                        mlen = <uint32_t>v
                        keep = mlen
                        while keep and p[mstart + n + keep - 1] == 0x0A:
                            keep -= 1
                        if keep + 1 != mlen and \
                                memchr(p + mstart + n, 0x0A, keep) == NULL:
                            val.len = 0
                            buf_append(val, p + start, mstart - start)
                            buf_reserve(val, 10)
                            val.len += put_varint(val.p + val.len, keep + 1)
                            buf_append(val, p + mstart + n, keep)
                            buf_append(val, <const unsigned char*>b"\n", 1)
                            w._add_log_raw(it.key.p, it.key.len, ui, 1, val.p, val.len)
                            written += 1
                            continue
                w._add_log_raw(it.key.p, it.key.len, ui, it.extra, p + start, end - start)
            written += 1


cdef inline uint32_t _skip_str(const unsigned char* p, uint32_t pos, uint32_t end) noexcept:
    # only used on values already validated by _skip_value
    cdef uint64_t v
    cdef int n = get_varint(p + pos, end - pos, &v)
    return pos + n + <uint32_t>v
