# Layer 2: blocks. A block is a type byte, a 24-bit length, prefix-compressed records
# and a restart table (24-bit offsets of the records that store their whole key, then
# a 16-bit count). Log blocks are deflated after their 4-byte header; the length is
# the inflated one.

cdef extern from "zlib.h" nogil:
    ctypedef struct z_stream:
        const unsigned char* next_in
        unsigned int avail_in
        unsigned long total_in
        unsigned char* next_out
        unsigned int avail_out
        unsigned long total_out
        const char* msg
        void* zalloc
        void* zfree
        void* opaque
    int Z_OK, Z_STREAM_END, Z_BUF_ERROR, Z_FINISH, Z_DEFLATED, Z_DEFAULT_STRATEGY
    int inflateInit(z_stream* s)
    int inflateReset(z_stream* s)
    int inflate(z_stream* s, int flush)
    int inflateEnd(z_stream* s)
    int deflateInit2(z_stream* s, int level, int method, int window_bits, int mem_level,
                     int strategy)
    int deflateReset(z_stream* s)
    int deflate(z_stream* s, int flush)
    int deflateEnd(z_stream* s)
    unsigned long compressBound(unsigned long n)
    unsigned long zlib_crc32 "crc32"(unsigned long crc, const unsigned char* p, unsigned int n)


# ---------------------------------------------------------------------------
# Writing one block

cdef struct BlockWriter:
    unsigned char* block      # block_size bytes
    uint32_t block_size
    uint32_t restart_interval
    int typ                   # 0: no block open
    uint32_t header_off       # file header inside this block (first block only)
    uint32_t next             # end of the records written so far
    uint32_t entries
    uint32_t* restarts        # MAX_RESTARTS offsets
    uint32_t restart_len
    Buf last                  # key of the last record


cdef int bw_alloc(BlockWriter* bw, uint32_t block_size, uint32_t restart_interval) except -1:
    memset(bw, 0, sizeof(BlockWriter))
    bw.block = <unsigned char*>malloc(block_size)
    bw.restarts = <uint32_t*>malloc(sizeof(uint32_t) * MAX_RESTARTS)
    bw.block_size = block_size
    bw.restart_interval = restart_interval
    if bw.block == NULL or bw.restarts == NULL:
        raise MemoryError()
    return 0


cdef void bw_free(BlockWriter* bw) noexcept:
    free(bw.block)
    free(bw.restarts)
    buf_free(&bw.last)
    bw.block = NULL
    bw.restarts = NULL


cdef void bw_init(BlockWriter* bw, int typ, uint32_t header_off) noexcept:
    bw.header_off = header_off
    bw.block[header_off] = typ
    bw.next = header_off + BLOCK_HEADER_SIZE
    bw.entries = 0
    bw.restart_len = 0
    bw.last.len = 0
    bw.typ = typ


cdef int bw_add(BlockWriter* bw, const unsigned char* key, size_t klen, int extra,
                const unsigned char* val, size_t vlen) except -1:
    """Append one record (key prefix-compressed against the previous one unless it is a
    restart point). Return 1, changing nothing, when it does not fit."""
    cdef size_t lastlen = bw.last.len
    cdef size_t prefix, suffix
    cdef uint64_t n, rlen
    cdef bint is_restart
    cdef unsigned char* p
    if klen == 0:
        raise ApiError("empty record key")
    if bw.entries % bw.restart_interval == 0:
        lastlen = 0
    prefix = common_prefix(bw.last.p, lastlen, key, klen)
    is_restart = prefix == 0
    suffix = klen - prefix
    n = <uint64_t>varint_size(prefix) + varint_size((<uint64_t>suffix << 3) | extra) + suffix + vlen
    rlen = bw.restart_len
    if rlen >= MAX_RESTARTS:
        is_restart = False
    if is_restart:
        rlen += 1
    if 2 + 3 * rlen + n > <uint64_t>(bw.block_size - bw.next):
        return 1
    p = bw.block + bw.next
    p += put_varint(p, prefix)
    p += put_varint(p, (<uint64_t>suffix << 3) | extra)
    memcpy(p, key + prefix, suffix)
    p += suffix
    if vlen:
        memcpy(p, val, vlen)
    if is_restart:
        bw.restarts[bw.restart_len] = bw.next
        bw.restart_len += 1
    bw.next += <uint32_t>n
    buf_set(&bw.last, key, klen)
    bw.entries += 1
    return 0


cdef uint32_t bw_finish(BlockWriter* bw) noexcept:
    """Append the restart table and fill in the block length; return the length."""
    cdef uint32_t i
    for i in range(bw.restart_len):
        put_be24(bw.block + bw.next, bw.restarts[i])
        bw.next += 3
    put_be16(bw.block + bw.next, bw.restart_len)
    bw.next += 2
    put_be24(bw.block + bw.header_off + 1, bw.next)
    return bw.next


# ---------------------------------------------------------------------------
# Reading one block
#
# The readers below work on plain C views (no Python objects, no GIL needed) and report
# damage as an error code and a file offset; the object layer turns those into
# FormatError. Log blocks are inflated by the object layer only.

cdef enum:
    E_OK = 0
    E_TRUNC_HEADER
    E_BLOCK_TYPE
    E_BLOCK_LEN
    E_BLOCK_OVER_SIZE
    E_BLOCK_PAST_END
    E_RESTART_COUNT
    E_RESTART_OFFSET
    E_RESTART_KEY
    E_KEY_VARINT
    E_KEY_PREFIX
    E_KEY_PAST_END
    E_EMPTY_KEY
    E_UI_VARINT
    E_UI_OVERFLOW
    E_OID_TRUNC
    E_SYMREF_LEN
    E_REF_TYPE
    E_INDEX_VARINT
    E_INDEX_TARGET
    E_INDEX_BLOCK
    E_INDEX_DEPTH
    E_SECTION_START
    E_NEEDS_INFLATE      # not damage: a log block, which only the object layer reads
    E_OBJ_COUNT
    E_OBJ_VARINT
    E_OBJ_OVERFLOW
    E_OBJ_ORDER
    E_IO                 # reading an unmapped file failed; the error offset is the errno

_ERRORS = (
    "", "truncated block header", "unknown block type", "bogus block length",
    "block length exceeds the block size", "block runs past the end of the data",
    "bogus restart count", "bogus restart offset", "restart point does not start a full key",
    "bad key varint", "key prefix longer than the previous key",
    "key suffix runs past the block", "empty record key", "bad update index varint",
    "update index overflows", "truncated object id", "bad symref target length",
    "unknown ref value type", "bad index offset varint", "index record points at a bogus offset",
    "index points at a block of the wrong type", "index nests too deeply (cycle?)",
    "section does not start with a block of its type", "log block",
    "bad obj position count", "bad obj position varint", "obj position overflows",
    "obj record lists block offsets out of order (each once, ascending)",
    "I/O error",
)


cdef struct TableView:
    const unsigned char* buf
    uint64_t data_end
    uint32_t header_size
    uint32_t block_size
    int hash_size
    uint64_t min_update_index
    uint64_t ref_index_offset
    bint ref_present
    const uint64_t* bloom     # ref names (NULL until built)
    uint64_t bloom_mask
    # A file not mapped (yet) has no ``buf``: a point lookup then reads each block from
    # ``fd`` into ``scratch`` (``tv_scratch_size`` bytes), both set only in the lookup's own
    # copy of the view (see TableCore._ref_lookup); in any other view, blocks of an
    # unmapped file read as E_IO.
    int fd
    Buf* scratch


cdef struct BlockView:
    const unsigned char* data     # block start (file start for the first block)
    uint64_t offset
    int typ
    uint32_t header_off
    uint32_t length
    uint32_t rec_start
    uint32_t restart_count
    uint32_t restart_start
    uint64_t full_size


cdef inline int tv_block_type(const TableView* t, uint64_t off) noexcept nogil:
    """Type byte of the block at ``off`` (0 past the data), without loading it; -1 when
    the file is not mapped and reading the byte failed (see ``tv_block_may_be``)."""
    cdef uint32_t hoff = t.header_size if off == 0 else 0
    cdef unsigned char typ
    if off >= t.data_end or off + hoff >= t.data_end:
        return 0
    if t.buf != NULL:
        return t.buf[off + hoff]
    if t.scratch == NULL or sys_pread_block(t.fd, &typ, 1, off + hoff) != 0:
        return -1
    return typ


cdef inline bint tv_block_may_be(const TableView* t, uint64_t off, int typ) noexcept nogil:
    """Whether the block at ``off`` is of ``typ``, or unknown because reading its type
    failed: the caller then parses the block, which reports the error."""
    cdef int k = tv_block_type(t, off)
    return k == typ or k < 0


cdef inline size_t tv_scratch_size(uint32_t block_size) noexcept nogil:
    """Bytes ``tv_read_block`` reads: a block and the byte after it (which tells
    padding from the next block), and at least a first block's headers (a hostile
    header may claim a tiny block size)."""
    return max(<size_t>block_size + 1, <size_t>(HEADER_SIZE_V2 + BLOCK_HEADER_SIZE))


cdef int tv_read_block(const TableView* t, uint64_t off, const unsigned char** out,
                       uint64_t* eoff) noexcept nogil:
    """Read the block at ``off`` of an unmapped file into the view's scratch buffer
    (``tv_scratch_size`` bytes, fewer at the end of the data)."""
    cdef uint64_t n = tv_scratch_size(t.block_size)
    cdef int err
    if t.scratch == NULL or t.block_size == 0:
        eoff[0] = EINVAL
        return E_IO
    if n > t.data_end - off:
        n = t.data_end - off
    err = sys_pread_block(t.fd, t.scratch.p, <size_t>n, off)
    if err < 0:  # the file ends early: table files never change, so it was cut
        eoff[0] = off
        return E_BLOCK_PAST_END
    if err:
        eoff[0] = <uint64_t>err
        return E_IO
    out[0] = t.scratch.p
    return E_OK


cdef int bv_parse(const TableView* t, uint64_t off, BlockView* b, uint64_t* eoff) noexcept nogil:
    """Check the header of the block at ``off`` (< data_end) and describe it in ``b``.
    E_NEEDS_INFLATE for a log block (its length and type are filled in)."""
    cdef uint32_t hoff = t.header_size if off == 0 else 0
    cdef const unsigned char* p = t.buf + off
    cdef int err
    if off + hoff + BLOCK_HEADER_SIZE > t.data_end:
        eoff[0] = off
        return E_TRUNC_HEADER
    if t.buf == NULL:
        err = tv_read_block(t, off, &p, eoff)
        if err != E_OK:
            return err
    b.offset = off
    b.typ = p[hoff]
    b.header_off = hoff
    b.length = get_be24(p + hoff + 1)
    b.rec_start = hoff + BLOCK_HEADER_SIZE
    b.data = p
    eoff[0] = off + hoff
    if b.typ != BLOCK_REF and b.typ != BLOCK_LOG and b.typ != BLOCK_OBJ and b.typ != BLOCK_INDEX:
        return E_BLOCK_TYPE
    eoff[0] = off + hoff + 1
    if b.length < hoff + BLOCK_HEADER_SIZE + 2:
        return E_BLOCK_LEN
    if t.block_size and b.length > t.block_size:
        return E_BLOCK_OVER_SIZE
    if b.typ == BLOCK_LOG:
        return E_NEEDS_INFLATE
    eoff[0] = off
    if b.length > t.data_end - off:
        return E_BLOCK_PAST_END
    # Padded blocks are followed by zeros up to the block size; otherwise the next
    # block starts right after this one.
    if t.block_size == 0 or (b.length < t.block_size and off + b.length < t.data_end
                             and p[b.length] != 0):
        b.full_size = b.length
    else:
        b.full_size = t.block_size
    return bv_restarts(b, eoff)


cdef inline int bv_restarts(BlockView* b, uint64_t* eoff) noexcept nogil:
    """Read the restart count at the end of the block (data and length set)."""
    cdef uint32_t count = get_be16(b.data + b.length - 2)
    if <uint64_t>3 * count + 2 + b.rec_start > b.length:
        eoff[0] = b.offset + b.length - 2
        return E_RESTART_COUNT
    b.restart_count = count
    b.restart_start = b.length - 2 - 3 * count
    return E_OK


cdef inline int bv_restart(const BlockView* b, uint32_t i, uint32_t* out,
                           uint64_t* eoff) noexcept nogil:
    """Offset of restart point ``i``, checked to lie among the records."""
    cdef uint32_t r = get_be24(b.data + b.restart_start + 3 * i)
    if r < b.rec_start or r >= b.restart_start:
        eoff[0] = b.offset + b.restart_start + 3 * i
        return E_RESTART_OFFSET
    out[0] = r
    return E_OK


cdef inline int bv_restart_key(const BlockView* b, uint32_t rpos, const unsigned char** kp,
                               size_t* klen, uint64_t* eoff) noexcept nogil:
    """The key stored whole at restart position ``rpos`` (a pointer into the block)."""
    cdef uint64_t prefix, st, suffix
    cdef int n = get_varint(b.data + rpos, b.restart_start - rpos, &prefix)
    eoff[0] = b.offset + rpos
    if n < 0 or prefix != 0:
        return E_RESTART_KEY
    rpos += n
    n = get_varint(b.data + rpos, b.restart_start - rpos, &st)
    if n < 0:
        return E_RESTART_KEY
    rpos += n
    suffix = st >> 3
    if suffix > b.restart_start - rpos:
        return E_RESTART_KEY
    kp[0] = b.data + rpos
    klen[0] = <size_t>suffix
    return E_OK


cdef int bv_seek_restart(const BlockView* b, const unsigned char* kp, size_t klen,
                         uint32_t* pos, uint64_t* eoff) noexcept nogil:
    """Position of the last restart point whose key is <= the wanted key (the first
    record when there is none): a linear scan from there finds the key."""
    cdef uint32_t lo = 0, hi = b.restart_count, mid, r
    cdef const unsigned char* rk
    cdef size_t rlen
    cdef int err
    while lo < hi:
        mid = lo + (hi - lo) // 2
        err = bv_restart(b, mid, &r, eoff)
        if err == E_OK:
            err = bv_restart_key(b, r, &rk, &rlen, eoff)
        if err != E_OK:
            return err
        if key_cmp(rk, rlen, kp, klen) > 0:
            hi = mid
        else:
            lo = mid + 1
    if lo == 0:
        pos[0] = b.rec_start
        return E_OK
    return bv_restart(b, lo - 1, pos, eoff)


cdef inline int bv_decode_key(const BlockView* b, uint32_t* pos, Buf* key, int* extra,
                              uint64_t* eoff) except -1 nogil:
    """Decode the key at ``pos`` (prefix-compressed against ``key``, the previous one)
    into ``key``; advance ``pos`` to the record's value. An error code, or -1 with a
    MemoryError."""
    cdef const unsigned char* p = b.data
    cdef uint32_t at = pos[0], end = b.restart_start
    cdef uint64_t prefix, st, suffix
    cdef uint64_t w0, w1
    cdef int n, m
    if at + 2 <= end and p[at] < 0x80 and p[at + 1] < 0x80:  # both varints one byte
        prefix = p[at]
        st = p[at + 1]
        n = m = 1
    else:
        n = get_varint(p + at, end - at, &prefix)
        if n < 0:
            eoff[0] = b.offset + at
            return E_KEY_VARINT
        m = get_varint(p + at + n, end - at - n, &st)
        if m < 0:
            eoff[0] = b.offset + at
            return E_KEY_VARINT
    suffix = st >> 3
    eoff[0] = b.offset + at
    if prefix > key.len:
        return E_KEY_PREFIX
    if suffix > end - at - n - m:
        return E_KEY_PAST_END
    if prefix + suffix == 0:
        return E_EMPTY_KEY
    at += n + m
    extra[0] = <int>(st & 7)
    if suffix <= 16 and prefix + 16 <= key.cap and at + 16 <= b.length:
        # a short suffix: copied as two words (the bytes after it still lie in the
        # block, and the key buffer has room for them)
        memcpy(&w0, p + at, 8)
        memcpy(&w1, p + at + 8, 8)
        memcpy(key.p + prefix, &w0, 8)
        memcpy(key.p + prefix + 8, &w1, 8)
        key.len = <size_t>(prefix + suffix)
    else:
        key.len = <size_t>prefix
        buf_append(key, p + at, <size_t>suffix)
    pos[0] = at + <uint32_t>suffix
    return E_OK



cdef class Block:
    """One block of a table, decoded just enough to walk and search its records."""

    cdef object owner                  # keeps the data alive (table or inflated bytes)
    cdef BlockView v

    @property
    def offset(self):
        return self.v.offset

    @property
    def typ(self):
        return self.v.typ

    @property
    def length(self):
        return self.v.length

    @property
    def restart_count(self):
        return self.v.restart_count

    @property
    def full_size(self):
        return self.v.full_size


cdef inline int raise_format(TableCore t, int err, uint64_t off) except -1:
    if err == E_IO:
        _raise_io(<int>off, t.path)
    raise t._err(_ERRORS[err], off)


cdef Block block_parse(TableCore t, uint64_t off):
    """Check the header of the block at ``off`` and make a ``Block`` of it (log blocks
    inflated). The caller checked ``off < t.data_end``."""
    cdef Block blk = Block.__new__(Block)
    cdef uint64_t eoff = 0
    cdef int err = bv_parse(&t.view, off, &blk.v, &eoff)
    if err == E_NEEDS_INFLATE:
        _inflate_block(t, blk)
        err = bv_restarts(&blk.v, &eoff)
    else:
        blk.owner = t
    if err != E_OK:
        raise_format(t, err, eoff)
    return blk


cdef extern from "Python.h":
    int _PyBytes_Resize(PyObject** b, Py_ssize_t n) except -1


cdef int _inflate_block(TableCore t, Block blk) except -1:
    """Inflate a log block straight into a new bytes object (header copied in front).
    The buffer grows with the output, so a header claiming 16 MiB over a short stream
    costs what the stream really yields."""
    cdef BlockView* b = &blk.v
    cdef uint32_t head = b.header_off + BLOCK_HEADER_SIZE
    cdef uint64_t src_off = b.offset + head
    cdef size_t size = b.length if b.length < head + 65536 else head + 65536
    cdef size_t done = head
    cdef z_stream* z = t._zstream()
    cdef uint64_t avail = t.data_end - src_off if src_off < t.data_end else 0
    cdef int ret
    cdef PyObject* raw
    out = PyBytes_FromStringAndSize(NULL, size)
    raw = <PyObject*>out
    Py_INCREF(out)
    out = None                 # `raw` holds the only reference: it may be resized
    try:
        memcpy(PyBytes_AS_STRING(<object>raw), b.data, head)
        z.next_in = t.buf + src_off
        # (a block is far below 4 GiB; zlib stops reading at the stream's end)
        z.avail_in = <unsigned int>(avail if avail < 0xFFFFFFFF else 0xFFFFFFFF)
        while True:
            z.next_out = <unsigned char*>PyBytes_AS_STRING(<object>raw) + done
            z.avail_out = <unsigned int>(size - done)
            ret = inflate(z, Z_FINISH)
            done = size - z.avail_out
            if ret == Z_STREAM_END:
                break
            if (ret != Z_BUF_ERROR and ret != Z_OK) or z.avail_out != 0:
                if ret == Z_BUF_ERROR or ret == Z_OK:
                    raise t._err(f"log block inflates to {done - head} bytes, header says "
                                 f"{b.length - head} (truncated)", b.offset)
                msg = z.msg.decode("utf-8", "replace") if z.msg != NULL else f"zlib error {ret}"
                raise t._err(f"corrupt log block: {msg}", b.offset)
            if size == b.length:
                raise t._err("log block inflates past its declared size", b.offset)
            size = size * 2 if size * 2 < b.length else b.length
            _PyBytes_Resize(&raw, size)
        if done != b.length:
            raise t._err(f"log block inflates to {done - head} bytes, header says "
                         f"{b.length - head}", b.offset)
        out = <object>raw
    finally:
        Py_XDECREF(raw)
    blk.owner = out
    b.data = <const unsigned char*>PyBytes_AS_STRING(out)
    b.full_size = head + z.total_in
    return 0


# The same readers for the object layer: damage raises FormatError.

cdef inline int block_decode_key(TableCore t, Block b, uint32_t* pos, Buf* key,
                                 int* extra) except -1:
    cdef uint64_t eoff
    cdef int err = bv_decode_key(&b.v, pos, key, extra, &eoff)
    if err != E_OK:
        raise_format(t, err, eoff)
    return 0


cdef uint32_t block_seek_restart(TableCore t, Block b, const unsigned char* kp,
                                 size_t klen) except? 0:
    cdef uint64_t eoff
    cdef uint32_t pos = 0
    cdef int err = bv_seek_restart(&b.v, kp, klen, &pos, &eoff)
    if err != E_OK:
        raise_format(t, err, eoff)
    return pos


cdef int block_first_key_cmp(TableCore t, Block b, const unsigned char* kp,
                             size_t klen) except -2:
    """Compare the first key of ``b`` (always stored whole) with a key."""
    cdef const unsigned char* rk
    cdef size_t rlen
    cdef uint64_t eoff
    cdef int err = bv_restart_key(&b.v, b.v.rec_start, &rk, &rlen, &eoff)
    if err != E_OK:
        raise_format(t, err, eoff)
    return key_cmp(rk, rlen, kp, klen)
