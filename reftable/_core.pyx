# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The Cython core of reftable: varints, block and record codecs, table writer and
reader state machines, and lock-file primitives.

Bounds checks are disabled for speed, so every length, offset and count read from
disk is checked explicitly against what remains before it is used. Anything that does
not add up raises ``FormatError`` with the file path and the offset.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, UINT64_MAX
from libc.string cimport memcpy, memcmp, memset, memchr
from libc.stdlib cimport malloc, calloc, realloc, free
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

import zlib as _zlib

from .errors import ApiError, EntryTooBigError, FormatError

cdef extern from "Python.h":
    object PyLong_FromUnsignedLongLong(unsigned long long v)

# Block types, as they appear on disk.
cdef enum:
    BLOCK_REF = 0x72    # 'r'
    BLOCK_LOG = 0x67    # 'g'
    BLOCK_OBJ = 0x6F    # 'o'
    BLOCK_INDEX = 0x69  # 'i'

cdef enum:
    MAX_RESTARTS = 65535
    MAX_INDEX_LEVELS = 32   # a table of 2^64 bytes needs far fewer; bounds hostile loops
    HASH_ID_SHA1 = 0x73686131    # "sha1"
    HASH_ID_SHA256 = 0x73323536  # "s256"

BLOCK_TYPE_REF = BLOCK_REF
BLOCK_TYPE_LOG = BLOCK_LOG
BLOCK_TYPE_OBJ = BLOCK_OBJ
BLOCK_TYPE_INDEX = BLOCK_INDEX

cdef bytes _EMPTY = b""


# ---------------------------------------------------------------------------
# Growable byte buffers (C memory, no Python objects in hot loops)

cdef struct Buf:
    unsigned char* p
    size_t len
    size_t cap


cdef int buf_reserve(Buf* b, size_t extra) except -1:
    cdef size_t need = b.len + extra
    cdef size_t cap
    cdef unsigned char* p
    if need <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 64
    if cap < need:
        cap = need
    p = <unsigned char*>realloc(b.p, cap)
    if p == NULL:
        raise MemoryError()
    b.p = p
    b.cap = cap
    return 0


cdef inline int buf_append(Buf* b, const unsigned char* data, size_t n) except -1:
    if b.len + n > b.cap:
        buf_reserve(b, n)
    if n:
        memcpy(b.p + b.len, data, n)
    b.len += n
    return 0


cdef inline int buf_set(Buf* b, const unsigned char* data, size_t n) except -1:
    b.len = 0
    return buf_append(b, data, n)


cdef inline void buf_free(Buf* b) noexcept:
    free(b.p)
    b.p = NULL
    b.len = 0
    b.cap = 0


# ---------------------------------------------------------------------------
# Integers: Git's reftable varint and big-endian fixed widths

cdef inline int varint_size(uint64_t v) noexcept nogil:
    cdef int n = 1
    v >>= 7
    while v:
        v -= 1
        v >>= 7
        n += 1
    return n


cdef inline int put_varint(unsigned char* out, uint64_t v) noexcept nogil:
    """Write ``v`` (at most 10 bytes) and return the number of bytes written.

    Each continuation byte stores one less than it would in LEB128, so every value
    has exactly one encoding, most significant group first."""
    cdef unsigned char tmp[10]
    cdef int i = 9
    cdef int n
    tmp[i] = v & 0x7F
    v >>= 7
    while v:
        v -= 1
        i -= 1
        tmp[i] = 0x80 | (v & 0x7F)
        v >>= 7
    n = 10 - i
    memcpy(out, &tmp[i], n)
    return n


cdef inline int get_varint(const unsigned char* p, size_t avail, uint64_t* out) noexcept nogil:
    """Decode a varint from at most ``avail`` bytes. Return bytes consumed, or -1 when
    the input ends inside the varint, or -2 when the value does not fit 64 bits."""
    cdef size_t i = 0
    cdef uint64_t val
    if avail == 0:
        return -1
    val = p[0] & 0x7F
    while p[i] & 0x80:
        i += 1
        if i >= avail:
            return -1
        if val >= (<uint64_t>1 << 57) - 1:
            return -2
        val = ((val + 1) << 7) | (p[i] & 0x7F)
    out[0] = val
    return <int>(i + 1)


cdef inline uint32_t get_be16(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


cdef inline uint32_t get_be24(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0] << 16) | (<uint32_t>p[1] << 8) | p[2]


cdef inline uint32_t get_be32(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint64_t get_be64(const unsigned char* p) noexcept nogil:
    return (<uint64_t>get_be32(p) << 32) | get_be32(p + 4)


cdef inline void put_be16(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = (v >> 8) & 0xFF
    p[1] = v & 0xFF


cdef inline void put_be24(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = (v >> 16) & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = v & 0xFF


cdef inline void put_be32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


cdef inline void put_be64(unsigned char* p, uint64_t v) noexcept nogil:
    put_be32(p, <uint32_t>(v >> 32))
    put_be32(p + 4, <uint32_t>v)


cdef inline size_t common_prefix(const unsigned char* a, size_t alen,
                                 const unsigned char* b, size_t blen) noexcept nogil:
    cdef size_t n = alen if alen < blen else blen
    cdef size_t i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


cdef inline int key_cmp(const unsigned char* a, size_t alen,
                        const unsigned char* b, size_t blen) noexcept nogil:
    cdef size_t n = alen if alen < blen else blen
    cdef int c = memcmp(a, b, n) if n else 0
    if c:
        return -1 if c < 0 else 1  # normalised: callers use -2 as an error marker
    if alen < blen:
        return -1
    if alen > blen:
        return 1
    return 0


def encode_varint(value):
    """Encode a non-negative integer below 2**64 as a reftable varint."""
    cdef unsigned char tmp[10]
    if value < 0 or value >= (1 << 64):
        raise OverflowError("varint value must be in [0, 2**64)")
    cdef int n = put_varint(tmp, <uint64_t>value)
    return PyBytes_FromStringAndSize(<char*>tmp, n)


def decode_varint(data, size_t pos=0):
    """Decode a varint from ``data`` at ``pos``; return ``(value, new_pos)``.

    Raises ``FormatError`` when the input ends early or the value overflows 64 bits."""
    cdef const unsigned char[:] view = data
    cdef uint64_t v = 0
    cdef int n
    cdef size_t size = view.shape[0]
    if pos > size:
        raise FormatError("varint position past end", offset=pos)
    n = get_varint(&view[0] + pos if size else NULL, size - pos, &v)
    if n == -1:
        raise FormatError("truncated varint", offset=pos)
    if n == -2:
        raise FormatError("varint overflows 64 bits", offset=pos)
    return PyLong_FromUnsignedLongLong(v), pos + n


def varint_length(value):
    """Number of bytes :func:`encode_varint` uses for ``value``."""
    return varint_size(<uint64_t>value)


def crc32(data):
    return _zlib.crc32(data) & 0xFFFFFFFF


# ---------------------------------------------------------------------------
# Writer

cdef struct IdxEnt:
    size_t key_off
    size_t key_len
    uint64_t offset


cdef struct SecStats:
    uint64_t offset
    uint64_t index_offset
    uint64_t blocks
    uint64_t index_blocks
    uint64_t entries
    uint64_t restarts
    int max_index_level


cdef struct ObjEnt:
    uint64_t pfx      # first 8 hash bytes, big-endian, for fast comparison
    uint32_t idx      # index of the hash in the hash store (= insertion order)
    uint32_t blk      # ordinal of the ref block the ref went into


cdef extern from *:
    int __builtin_clzll(unsigned long long x) nogil


cdef inline int slot_of(int typ) noexcept nogil:
    if typ == BLOCK_REF:
        return 0
    if typ == BLOCK_OBJ:
        return 1
    if typ == BLOCK_LOG:
        return 2
    return 3


cdef inline int objent_cmp(const ObjEnt* a, const ObjEnt* b, const unsigned char* hashes,
                           int hash_size) noexcept nogil:
    """Order by hash, then insertion order: a total order, so the sort need not be
    stable (and needs no scratch memory)."""
    cdef int c
    if a.pfx != b.pfx:
        return -1 if a.pfx < b.pfx else 1
    c = memcmp(hashes + <size_t>a.idx * hash_size + 8,
               hashes + <size_t>b.idx * hash_size + 8, hash_size - 8)
    if c:
        return c
    return -1 if a.idx < b.idx else (1 if a.idx > b.idx else 0)


cdef void _objent_sift(ObjEnt* a, size_t root, size_t n, const unsigned char* hashes,
                       int hs) noexcept nogil:
    cdef size_t child
    cdef ObjEnt t
    while 2 * root + 1 < n:
        child = 2 * root + 1
        if child + 1 < n and objent_cmp(&a[child], &a[child + 1], hashes, hs) < 0:
            child += 1
        if objent_cmp(&a[root], &a[child], hashes, hs) >= 0:
            return
        t = a[root]
        a[root] = a[child]
        a[child] = t
        root = child


cdef void _objent_heapsort(ObjEnt* a, size_t n, const unsigned char* hashes,
                           int hs) noexcept nogil:
    cdef size_t i
    cdef ObjEnt t
    i = n // 2
    while i > 0:
        i -= 1
        _objent_sift(a, i, n, hashes, hs)
    i = n
    while i > 1:
        i -= 1
        t = a[0]
        a[0] = a[i]
        a[i] = t
        _objent_sift(a, 0, i, hashes, hs)


cdef void objent_sort(ObjEnt* a, size_t n, const unsigned char* hashes,
                      int hs) noexcept nogil:
    """In-place introsort: quicksort with a median-of-three pivot, heapsort when the
    recursion gets too deep (so crafted ids cannot make it quadratic), insertion sort
    for short runs. Uses O(log n) stack and no heap memory."""
    cdef size_t lo = 0, hi = n, i, j, mid, k
    cdef int depth = 0
    cdef size_t m = n
    cdef ObjEnt pivot, t
    cdef size_t stack_lo[128]
    cdef size_t stack_hi[128]
    cdef int stack_depth[128]
    cdef int sp = 0
    while m > 1:
        depth += 2
        m >>= 1
    stack_lo[0] = 0
    stack_hi[0] = n
    stack_depth[0] = depth
    sp = 1
    while sp > 0:
        sp -= 1
        lo = stack_lo[sp]
        hi = stack_hi[sp]
        depth = stack_depth[sp]
        while hi - lo > 16:
            if depth == 0:
                _objent_heapsort(a + lo, hi - lo, hashes, hs)
                lo = hi
                break
            depth -= 1
            mid = lo + (hi - lo) // 2
            # median of three into a[mid]
            if objent_cmp(&a[mid], &a[lo], hashes, hs) < 0:
                t = a[mid]; a[mid] = a[lo]; a[lo] = t
            if objent_cmp(&a[hi - 1], &a[lo], hashes, hs) < 0:
                t = a[hi - 1]; a[hi - 1] = a[lo]; a[lo] = t
            if objent_cmp(&a[hi - 1], &a[mid], hashes, hs) < 0:
                t = a[hi - 1]; a[hi - 1] = a[mid]; a[mid] = t
            pivot = a[mid]
            i = lo
            j = hi - 1
            while True:
                while objent_cmp(&a[i], &pivot, hashes, hs) < 0:
                    i += 1
                while objent_cmp(&pivot, &a[j], hashes, hs) < 0:
                    j -= 1
                if i >= j:
                    break
                t = a[i]; a[i] = a[j]; a[j] = t
                i += 1
                j -= 1
            # [lo, j] <= pivot <= [j + 1, hi): push the larger part, loop on the smaller
            if j + 1 - lo < hi - (j + 1):
                stack_lo[sp] = j + 1
                stack_hi[sp] = hi
                stack_depth[sp] = depth
                sp += 1
                hi = j + 1
            else:
                stack_lo[sp] = lo
                stack_hi[sp] = j + 1
                stack_depth[sp] = depth
                sp += 1
                lo = j + 1
        # insertion sort of the short run
        i = lo + 1
        while i < hi:
            t = a[i]
            k = i
            while k > lo and objent_cmp(&a[k - 1], &t, hashes, hs) > 0:
                a[k] = a[k - 1]
                k -= 1
            a[k] = t
            i += 1


cdef class WriterCore:
    """Block-level state machine of a table writer, byte-compatible with Git.

    Records go in through ``add_ref`` / ``add_log`` in key order; the finished table
    leaves through ``sink`` (a callable taking ``bytes``) in chunks. Policy (option
    checks, log message normalisation, ref name checks) lives in ``reftable.writer``.
    """

    cdef readonly int hash_size
    cdef readonly int version
    cdef uint32_t hash_id
    cdef readonly uint32_t block_size
    cdef readonly uint32_t restart_interval
    cdef readonly uint64_t min_update_index
    cdef readonly uint64_t max_update_index
    cdef readonly bint unpadded
    cdef readonly bint index_objects
    cdef object sink
    cdef Buf out
    cdef readonly uint64_t next
    cdef uint64_t pending_padding
    cdef readonly uint64_t bytes_emitted
    # the block being filled
    cdef unsigned char* block
    cdef int btype
    cdef uint32_t bnext
    cdef uint32_t header_off
    cdef uint32_t entries
    cdef uint32_t* restarts
    cdef uint32_t restart_len
    cdef Buf blast
    cdef Buf wlast
    cdef Buf scratch
    cdef Buf keybuf
    # index records of the current section
    cdef Buf idx_keys
    cdef Buf idx_ents
    cdef size_t idx_len
    # object ids seen in ref records
    cdef Buf obj_hashes
    cdef Buf obj_ents
    cdef Buf obj_blocks
    cdef size_t obj_len
    cdef SecStats sec[4]
    cdef readonly int object_id_len
    cdef readonly uint64_t total_blocks
    cdef readonly uint64_t ref_count
    cdef readonly uint64_t log_count
    cdef readonly bint closed
    cdef bint limits_locked

    def __cinit__(self):
        self.block = NULL
        self.restarts = NULL

    def __init__(self, int hash_size=20, uint32_t block_size=4096,
                 uint32_t restart_interval=16, bint index_objects=True,
                 bint unpadded=False, uint64_t min_update_index=0,
                 uint64_t max_update_index=0, sink=None):
        if hash_size == 20:
            self.version = 1
            self.hash_id = HASH_ID_SHA1
        elif hash_size == 32:
            self.version = 2
            self.hash_id = HASH_ID_SHA256
        else:
            raise ApiError(f"unsupported hash size {hash_size}")
        if block_size < 64 or block_size >= (1 << 24):
            raise ApiError(f"block size {block_size} outside [64, 2**24)")
        if restart_interval < 1 or restart_interval > MAX_RESTARTS:
            raise ApiError(f"restart interval {restart_interval} outside [1, 65535]")
        self.hash_size = hash_size
        self.block_size = block_size
        self.restart_interval = restart_interval
        self.index_objects = index_objects
        self.unpadded = unpadded
        self.min_update_index = min_update_index
        self.max_update_index = max_update_index
        self.sink = sink
        self.block = <unsigned char*>malloc(block_size)
        self.restarts = <uint32_t*>malloc(sizeof(uint32_t) * MAX_RESTARTS)
        if self.block == NULL or self.restarts == NULL:
            raise MemoryError()
        memset(self.sec, 0, sizeof(self.sec))

    def __dealloc__(self):
        free(self.block)
        free(self.restarts)
        buf_free(&self.out)
        buf_free(&self.blast)
        buf_free(&self.wlast)
        buf_free(&self.scratch)
        buf_free(&self.keybuf)
        buf_free(&self.idx_keys)
        buf_free(&self.idx_ents)
        buf_free(&self.obj_hashes)
        buf_free(&self.obj_ents)
        buf_free(&self.obj_blocks)

    def set_limits(self, uint64_t min_update_index, uint64_t max_update_index):
        if self.limits_locked:
            raise ApiError("limits must be set before the first record")
        self.min_update_index = min_update_index
        self.max_update_index = max_update_index

    property header_size:
        def __get__(self):
            return 24 if self.version == 1 else 28

    # -- output ---------------------------------------------------------------

    cdef int _emit(self, const unsigned char* data, size_t n) except -1:
        buf_append(&self.out, data, n)
        self.bytes_emitted += n
        if self.out.len >= (1 << 20):
            self._drain()
        return 0

    cdef int _emit_zeros(self, size_t n) except -1:
        buf_reserve(&self.out, n)
        memset(self.out.p + self.out.len, 0, n)
        self.out.len += n
        self.bytes_emitted += n
        if self.out.len >= (1 << 20):
            self._drain()
        return 0

    cdef int _drain(self) except -1:
        cdef bytes chunk
        if self.sink is None or self.out.len == 0:
            return 0
        chunk = PyBytes_FromStringAndSize(<char*>self.out.p, self.out.len)
        self.out.len = 0
        self.sink(chunk)
        return 0

    def take_output(self):
        """Return (and forget) the bytes produced so far that no sink consumed."""
        cdef bytes chunk = PyBytes_FromStringAndSize(<char*>self.out.p, self.out.len)
        self.out.len = 0
        return chunk

    cdef int _padded_write(self, const unsigned char* data, size_t n, uint64_t padding) except -1:
        # Padding is held back until something follows, so the last block of the
        # file is never padded (Git does the same).
        if self.pending_padding:
            self._emit_zeros(self.pending_padding)
            self.pending_padding = 0
        self.pending_padding = padding
        self._emit(data, n)
        return 0

    cdef int _write_header(self, unsigned char* p) noexcept:
        memcpy(p, b"REFT", 4)
        p[4] = self.version
        put_be24(p + 5, self.block_size)
        put_be64(p + 8, self.min_update_index)
        put_be64(p + 16, self.max_update_index)
        if self.version == 2:
            # format v2 appends the hash id after the update indices
            put_be32(p + 24, self.hash_id)
            return 28
        return 24

    # -- blocks ---------------------------------------------------------------

    cdef void _bw_init(self, int typ) noexcept:
        self.header_off = (24 if self.version == 1 else 28) if self.next == 0 else 0
        self.block[self.header_off] = typ
        self.bnext = self.header_off + 4
        self.entries = 0
        self.restart_len = 0
        self.blast.len = 0
        self.btype = typ

    cdef int _bw_add(self, const unsigned char* key, size_t klen, int extra,
                     const unsigned char* val, size_t vlen) except -1:
        """Append one record to the open block. Return 1 (and change nothing) when it
        does not fit."""
        cdef size_t lastlen = self.blast.len
        cdef size_t prefix, suffix
        cdef uint64_t n, rlen
        cdef bint is_restart
        cdef unsigned char* p
        if klen == 0:
            raise ApiError("empty record key")
        if self.entries % self.restart_interval == 0:
            lastlen = 0
        prefix = common_prefix(self.blast.p, lastlen, key, klen)
        is_restart = prefix == 0
        suffix = klen - prefix
        n = <uint64_t>varint_size(prefix) + varint_size((<uint64_t>suffix << 3) | extra) + suffix + vlen
        rlen = self.restart_len
        if rlen >= MAX_RESTARTS:
            is_restart = False
        if is_restart:
            rlen += 1
        if 2 + 3 * rlen + n > <uint64_t>(self.block_size - self.bnext):
            return 1
        p = self.block + self.bnext
        p += put_varint(p, prefix)
        p += put_varint(p, (<uint64_t>suffix << 3) | extra)
        memcpy(p, key + prefix, suffix)
        p += suffix
        if vlen:
            memcpy(p, val, vlen)
        if is_restart:
            self.restarts[self.restart_len] = self.bnext
            self.restart_len += 1
        self.bnext += <uint32_t>n
        buf_set(&self.blast, key, klen)
        self.entries += 1
        return 0

    cdef int _add(self, int typ, const unsigned char* key, size_t klen, int extra,
                  const unsigned char* val, size_t vlen) except -1:
        """Add a record, starting a new block when the current one is full. Return 1
        when it does not fit even an empty block."""
        if self.btype == 0:
            self._bw_init(typ)
        elif self.btype != typ:
            raise ApiError("record type does not match the section being written")
        if self._bw_add(key, klen, extra, val, vlen) == 0:
            return 0
        self._flush_block()
        self._bw_init(typ)
        return self._bw_add(key, klen, extra, val, vlen)

    cdef int _flush_block(self) except -1:
        cdef uint32_t i, raw
        cdef int typ = self.btype
        cdef int hs
        cdef uint64_t padding = 0
        cdef SecStats* st
        cdef IdxEnt ent
        cdef bytes comp
        if typ == 0 or self.entries == 0:
            return 0
        for i in range(self.restart_len):
            put_be24(self.block + self.bnext, self.restarts[i])
            self.bnext += 3
        put_be16(self.block + self.bnext, self.restart_len)
        self.bnext += 2
        put_be24(self.block + self.header_off + 1, self.bnext)
        if not self.unpadded and typ != BLOCK_LOG:
            padding = self.block_size - self.bnext
        st = &self.sec[slot_of(typ)]
        if st.blocks == 0 and self.next > 0:
            st.offset = self.next
        st.entries += self.entries
        st.restarts += self.restart_len
        st.blocks += 1
        self.total_blocks += 1
        if self.next == 0:
            self._write_header(self.block)
        if typ == BLOCK_LOG:
            # Log blocks are deflated (level 9, like Git) after the 4-byte block
            # header; the header keeps the inflated length.
            hs = self.header_off + 4
            comp = _zlib.compress(
                PyBytes_FromStringAndSize(<char*>self.block + hs, self.bnext - hs), 9)
            self._padded_write(self.block, hs, 0)
            self._emit(<const unsigned char*>PyBytes_AS_STRING(comp), PyBytes_GET_SIZE(comp))
            raw = hs + <uint32_t>PyBytes_GET_SIZE(comp)
        else:
            raw = self.bnext
            self._padded_write(self.block, raw, padding)
        # One index record per block: its last key and where it starts.
        ent.key_off = self.idx_keys.len
        ent.key_len = self.blast.len
        ent.offset = self.next
        buf_append(&self.idx_keys, self.blast.p, self.blast.len)
        buf_append(&self.idx_ents, <unsigned char*>&ent, sizeof(IdxEnt))
        self.idx_len += 1
        self.next += padding + raw
        self.btype = 0
        return 0

    cdef int _finish_section(self) except -1:
        cdef int typ = self.btype
        cdef uint64_t before = self.sec[3].blocks
        cdef size_t threshold = 1 if self.unpadded else 3
        cdef int max_level = 0
        cdef uint64_t index_start = 0
        cdef Buf old_keys, old_ents
        cdef size_t old_len, i
        cdef IdxEnt* ents
        cdef unsigned char v[10]
        cdef int vlen
        cdef SecStats* st
        self._flush_block()
        # Write index levels until the top level has at most `threshold` entries;
        # readers start from the last (top) level.
        while self.idx_len > threshold:
            max_level += 1
            index_start = self.next
            old_keys = self.idx_keys
            old_ents = self.idx_ents
            old_len = self.idx_len
            self.idx_keys.p = NULL
            self.idx_keys.len = self.idx_keys.cap = 0
            self.idx_ents.p = NULL
            self.idx_ents.len = self.idx_ents.cap = 0
            self.idx_len = 0
            try:
                self._bw_init(BLOCK_INDEX)
                ents = <IdxEnt*>old_ents.p
                for i in range(old_len):
                    vlen = put_varint(v, ents[i].offset)
                    if self._add(BLOCK_INDEX, old_keys.p + ents[i].key_off, ents[i].key_len,
                                 0, v, vlen):
                        raise EntryTooBigError("index record does not fit a block")
                self._flush_block()
                if self.idx_len >= old_len:
                    # Blocks so small that an index block holds one key: another
                    # level would not shrink the index (it would loop forever).
                    raise EntryTooBigError(
                        f"block size {self.block_size} too small to index these keys")
            finally:
                buf_free(&old_keys)
                buf_free(&old_ents)
        self.idx_len = 0
        self.idx_keys.len = 0
        self.idx_ents.len = 0
        st = &self.sec[slot_of(typ)]
        st.index_blocks = self.sec[3].blocks - before
        st.index_offset = index_start
        st.max_index_level = max_level
        self.wlast.len = 0
        return 0

    cdef int _finish_public_section(self) except -1:
        cdef int typ = self.btype
        if typ == 0:
            return 0
        self._finish_section()
        if typ == BLOCK_REF and self.index_objects and self.sec[0].index_blocks > 0:
            self._dump_obj_index()
        self.obj_hashes.len = 0
        self.obj_ents.len = 0
        self.obj_blocks.len = 0
        self.obj_len = 0
        self.btype = 0
        return 0

    cdef int _note_oid(self, const unsigned char* oid) except -1:
        cdef ObjEnt e
        cdef uint64_t pfx = 0
        cdef int i
        for i in range(8):
            pfx = (pfx << 8) | oid[i]
        e.pfx = pfx
        e.idx = <uint32_t>self.obj_len
        if self.obj_len >= 0xFFFFFFFF:
            raise ApiError("too many object ids for the obj index")
        # Block offsets are shared by every ref of a block: keep one per block.
        if self.obj_blocks.len == 0 or \
                (<uint64_t*>self.obj_blocks.p)[self.obj_blocks.len // 8 - 1] != self.next:
            buf_append(&self.obj_blocks, <unsigned char*>&self.next, 8)
        e.blk = <uint32_t>(self.obj_blocks.len // 8 - 1)
        buf_append(&self.obj_hashes, oid, self.hash_size)
        buf_append(&self.obj_ents, <unsigned char*>&e, sizeof(ObjEnt))
        self.obj_len += 1
        return 0

    cdef int _dump_obj_index(self) except -1:
        cdef size_t n = self.obj_len
        cdef ObjEnt* ents = <ObjEnt*>self.obj_ents.p
        cdef const unsigned char* hashes = self.obj_hashes.p
        cdef const uint64_t* blocks = <const uint64_t*>self.obj_blocks.p
        cdef int hs = self.hash_size
        cdef size_t i, j, k, cnt, maxc = 1, c
        cdef const unsigned char* h
        cdef unsigned char key8[8]
        cdef uint64_t last, off
        cdef int id_len
        cdef Buf val
        val.p = NULL
        val.len = val.cap = 0
        if n > 1:
            with nogil:
                objent_sort(ents, n, hashes, hs)
        # Shortest prefix length that tells every pair of neighbours apart (>= 2).
        # The first 8 bytes (pfx) settle almost every pair without touching the hash
        # store, which sorted order visits at random.
        for i in range(1, n):
            if ents[i].pfx != ents[i - 1].pfx:
                c = <size_t>(__builtin_clzll(ents[i].pfx ^ ents[i - 1].pfx) >> 3)
            else:
                c = common_prefix(hashes + <size_t>ents[i - 1].idx * hs, hs,
                                  hashes + <size_t>ents[i].idx * hs, hs)
            if c < <size_t>hs and c > maxc:
                maxc = c
        id_len = <int>maxc + 1
        if id_len > 31:
            # The footer stores the length in 5 bits. Only two SHA-256 ids sharing 31
            # bytes get here (Git would write an unreadable table): leave the obj
            # index out; readers then scan.
            return 0
        self.object_id_len = id_len
        self._bw_init(BLOCK_OBJ)
        try:
            i = 0
            while i < n:
                if id_len <= 8:
                    put_be64(key8, ents[i].pfx)
                    h = key8
                else:
                    h = hashes + <size_t>ents[i].idx * hs
                j = i + 1
                while j < n and ents[j].pfx == ents[i].pfx and \
                        memcmp(hashes + <size_t>ents[j].idx * hs,
                               hashes + <size_t>ents[i].idx * hs, hs) == 0:
                    j += 1
                # distinct block offsets of this object id, ascending
                cnt = 0
                last = 0
                for k in range(i, j):
                    if cnt == 0 or blocks[ents[k].blk] != last:
                        cnt += 1
                        last = blocks[ents[k].blk]
                val.len = 0
                buf_reserve(&val, 10 * (cnt + 1))
                if cnt >= 8:
                    val.len += put_varint(val.p + val.len, cnt)
                cnt = 0
                last = 0
                for k in range(i, j):
                    off = blocks[ents[k].blk]
                    if cnt == 0:
                        val.len += put_varint(val.p + val.len, off)
                    elif off != last:
                        val.len += put_varint(val.p + val.len, off - last)
                    else:
                        continue
                    cnt += 1
                    last = off
                if self._add(BLOCK_OBJ, h, id_len, <int>(cnt if cnt < 8 else 0),
                             val.p, val.len):
                    # Too many positions for one block: keep the key, drop positions;
                    # readers then fall back to scanning.
                    val.len = put_varint(val.p, 0)
                    if self._bw_add(h, id_len, 0, val.p, val.len):
                        raise EntryTooBigError("obj record does not fit a block")
                i = j
        finally:
            buf_free(&val)
        self._finish_section()
        return 0

    # -- records --------------------------------------------------------------

    cdef int _check_order(self, const unsigned char* key, size_t klen) except -1:
        if self.wlast.len and key_cmp(self.wlast.p, self.wlast.len, key, klen) >= 0:
            raise ApiError("records must be added in strictly increasing key order")
        buf_set(&self.wlast, key, klen)
        return 0

    cdef int _add_ref_raw(self, const unsigned char* name, size_t nlen, uint64_t update_index,
                          int value_type, const unsigned char* rest, size_t rlen) except -1:
        """Add a ref whose value after the update index is already encoded (``rest``)."""
        cdef Buf* s = &self.scratch
        cdef int hs = self.hash_size
        if self.closed:
            raise ApiError("writer is closed")
        if update_index < self.min_update_index or update_index > self.max_update_index:
            raise ApiError(
                f"ref update index {update_index} outside limits "
                f"[{self.min_update_index}, {self.max_update_index}]")
        if self.btype != 0 and self.btype != BLOCK_REF:
            raise ApiError("refs must be added before logs")
        if nlen == 0:
            raise ApiError("empty ref name")
        if (value_type == 1 and rlen != <size_t>hs) or (value_type == 2 and rlen != <size_t>2 * hs):
            raise ApiError("ref value must be an object id of the table's hash size")
        if value_type < 0 or value_type > 3:
            raise ApiError(f"invalid ref value type {value_type}")
        s.len = 0
        buf_reserve(s, 10 + rlen)
        s.len = put_varint(s.p, update_index - self.min_update_index)
        buf_append(s, rest, rlen)
        self._check_order(name, nlen)
        self.limits_locked = True
        if self._add(BLOCK_REF, name, nlen, value_type, s.p, s.len):
            self.wlast.len = 0
            raise EntryTooBigError(
                f"ref record for {_bytes(name, nlen)!r} does not fit a block")
        self.ref_count += 1
        if self.index_objects and (value_type == 1 or value_type == 2):
            self._note_oid(rest)
            if value_type == 2:
                self._note_oid(rest + hs)
        return 0

    def add_ref(self, bytes name, uint64_t update_index, int value_type,
                bytes value=None, bytes target_value=None, bytes target=None):
        """Add a ref record. ``value_type``: 0 deletion, 1 id, 2 id + peeled, 3 symref."""
        cdef Buf* k = &self.keybuf
        cdef size_t tlen
        cdef int hs = self.hash_size
        k.len = 0
        if value_type == 1 or value_type == 2:
            if value is None or PyBytes_GET_SIZE(value) != hs:
                raise ApiError("ref value must be an object id of the table's hash size")
            buf_append(k, <const unsigned char*>PyBytes_AS_STRING(value), hs)
            if value_type == 2:
                if target_value is None or PyBytes_GET_SIZE(target_value) != hs:
                    raise ApiError("peeled value must be an object id of the table's hash size")
                buf_append(k, <const unsigned char*>PyBytes_AS_STRING(target_value), hs)
        elif value_type == 3:
            if target is None:
                raise ApiError("symref needs a target")
            tlen = PyBytes_GET_SIZE(target)
            buf_reserve(k, 10 + tlen)
            k.len += put_varint(k.p + k.len, tlen)
            buf_append(k, <const unsigned char*>PyBytes_AS_STRING(target), tlen)
        elif value_type != 0:
            raise ApiError(f"invalid ref value type {value_type}")
        self._add_ref_raw(<const unsigned char*>PyBytes_AS_STRING(name),
                          PyBytes_GET_SIZE(name), update_index, value_type, k.p, k.len)
        return None

    cdef int _add_log_raw(self, const unsigned char* key, size_t klen, uint64_t update_index,
                          int value_type, const unsigned char* val, size_t vlen) except -1:
        """Add a log record given its full key and encoded value."""
        if self.closed:
            raise ApiError("writer is closed")
        if update_index > self.max_update_index:
            raise ApiError(
                f"log update index {update_index} above limit {self.max_update_index}")
        if self.btype == BLOCK_REF:
            self._finish_public_section()
        # The log section follows the previous block directly: its padding is dropped.
        self.next -= self.pending_padding
        self.pending_padding = 0
        self._check_order(key, klen)
        self.limits_locked = True
        if self._add(BLOCK_LOG, key, klen, value_type, val, vlen):
            self.wlast.len = 0
            raise EntryTooBigError(
                f"log record for {_bytes(key, klen - 9)!r} does not fit a block")
        self.log_count += 1
        return 0

    def add_log(self, bytes refname, uint64_t update_index, int value_type,
                bytes old_id=None, bytes new_id=None, bytes name=None, bytes email=None,
                uint64_t time=0, int tz_offset=0, bytes message=None):
        """Add a log record (``value_type`` 0 deletion, 1 update). The message is
        stored exactly as given; normalisation is the caller's business."""
        cdef Buf* s = &self.scratch
        cdef Buf* k = &self.keybuf
        cdef size_t rlen = PyBytes_GET_SIZE(refname)
        cdef bytes part
        cdef size_t plen
        if rlen == 0:
            raise ApiError("empty ref name")
        if value_type != 0 and value_type != 1:
            raise ApiError(f"invalid log value type {value_type}")
        if tz_offset < -32768 or tz_offset > 32767:
            raise ApiError(f"timezone offset {tz_offset} does not fit 16 bits")
        k.len = 0
        buf_reserve(k, rlen + 9)
        memcpy(k.p, PyBytes_AS_STRING(refname), rlen)
        k.p[rlen] = 0
        put_be64(k.p + rlen + 1, UINT64_MAX - update_index)
        k.len = rlen + 9
        s.len = 0
        if value_type == 1:
            for part in (old_id, new_id):
                if part is None or PyBytes_GET_SIZE(part) != self.hash_size:
                    raise ApiError("log ids must be object ids of the table's hash size")
                buf_append(s, <const unsigned char*>PyBytes_AS_STRING(part), self.hash_size)
            for part in (name, email):
                if part is None:
                    part = _EMPTY
                plen = PyBytes_GET_SIZE(part)
                buf_reserve(s, plen + 10)
                s.len += put_varint(s.p + s.len, plen)
                buf_append(s, <const unsigned char*>PyBytes_AS_STRING(part), plen)
            buf_reserve(s, 12)
            s.len += put_varint(s.p + s.len, time)
            put_be16(s.p + s.len, <uint32_t>(<uint16_t>tz_offset))
            s.len += 2
            part = message if message is not None else _EMPTY
            plen = PyBytes_GET_SIZE(part)
            buf_reserve(s, plen + 10)
            s.len += put_varint(s.p + s.len, plen)
            buf_append(s, <const unsigned char*>PyBytes_AS_STRING(part), plen)
        self._add_log_raw(k.p, k.len, update_index, value_type, s.p, s.len)
        return None

    def close(self):
        """Finish the table: flush sections, write the footer. Return ``True`` when
        the table holds no record at all (it is still a valid table)."""
        cdef unsigned char footer[72]
        cdef unsigned char hdr[28]
        cdef int hl, p
        cdef bint empty
        if self.closed:
            raise ApiError("writer is already closed")
        self._finish_public_section()
        self.closed = True
        empty = self.next == 0
        self.pending_padding = 0
        if empty:
            hl = self._write_header(hdr)
            self._padded_write(hdr, hl, 0)
        p = self._write_header(footer)
        put_be64(footer + p, self.sec[0].index_offset)
        put_be64(footer + p + 8, (self.sec[1].offset << 5) | <uint64_t>self.object_id_len)
        put_be64(footer + p + 16, self.sec[1].index_offset)
        put_be64(footer + p + 24, self.sec[2].offset)
        put_be64(footer + p + 32, self.sec[2].index_offset)
        put_be32(footer + p + 40,
                 _zlib.crc32(PyBytes_FromStringAndSize(<char*>footer, p + 40)) & 0xFFFFFFFF)
        self._padded_write(footer, p + 44, 0)
        self._drain()
        return empty

    def stats(self):
        """Per-section statistics, like Git's ``reftable_writer_stats``."""
        names = ("ref", "obj", "log", "index")
        result = {}
        for i in range(4):
            result[names[i]] = {
                "offset": self.sec[i].offset,
                "index_offset": self.sec[i].index_offset,
                "blocks": self.sec[i].blocks,
                "index_blocks": self.sec[i].index_blocks,
                "entries": self.sec[i].entries,
                "restarts": self.sec[i].restarts,
                "max_index_level": self.sec[i].max_index_level,
            }
        result["blocks"] = self.total_blocks
        result["object_id_len"] = self.object_id_len
        return result


include "_reader.pxi"
include "_bulk.pxi"
include "_lockfile.pxi"
