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


cdef Block block_parse(TableCore t, uint64_t off):
    """Check the header of the block at ``off`` and make a ``Block`` of it (log blocks
    inflated). The caller checked ``off < t.data_end``."""
    cdef Block blk
    cdef uint32_t hoff = t.header_size if off == 0 else 0
    cdef uint32_t blen, count
    cdef int typ
    cdef const unsigned char* p
    if off + hoff + BLOCK_HEADER_SIZE > t.data_end:
        raise t._err("truncated block header", off)
    p = t.buf + off
    typ = p[hoff]
    if typ != BLOCK_REF and typ != BLOCK_LOG and typ != BLOCK_OBJ and typ != BLOCK_INDEX:
        raise t._err(f"unknown block type 0x{typ:02x}", off + hoff)
    blen = get_be24(p + hoff + 1)
    if blen < hoff + BLOCK_HEADER_SIZE + 2:
        raise t._err(f"bogus block length {blen}", off + hoff + 1)
    if t.block_size and blen > t.block_size:
        raise t._err(f"block length {blen} exceeds block size {t.block_size}", off + hoff + 1)
    blk = Block.__new__(Block)
    blk.offset = off
    blk.typ = typ
    blk.header_off = hoff
    blk.length = blen
    blk.rec_start = hoff + BLOCK_HEADER_SIZE
    if typ == BLOCK_LOG:
        _inflate_block(t, blk, p)
    else:
        if blen > t.data_end - off:
            raise t._err(f"block length {blen} runs past the end of the data", off)
        blk.owner = t
        blk.data = p
        # Padded blocks are followed by zeros up to the block size; otherwise the
        # next block starts right after this one.
        if t.block_size == 0 or (blen < t.block_size and off + blen < t.data_end
                                 and p[blen] != 0):
            blk.full_size = blen
        else:
            blk.full_size = t.block_size
    count = get_be16(blk.data + blen - 2)
    if <uint64_t>3 * count + 2 + hoff + BLOCK_HEADER_SIZE > blen:
        raise t._err(f"bogus restart count {count}", off + blen - 2)
    blk.restart_count = count
    blk.restart_start = blen - 2 - 3 * count
    # restart offsets are validated when used (block_restart), not all up front
    return blk


cdef extern from "Python.h":
    int _PyBytes_Resize(PyObject** b, Py_ssize_t n) except -1


cdef int _inflate_block(TableCore t, Block blk, const unsigned char* p) except -1:
    """Inflate a log block straight into a new bytes object (header copied in front).
    The buffer grows with the output, so a header claiming 16 MiB over a short stream
    costs what the stream really yields."""
    cdef uint32_t head = blk.header_off + BLOCK_HEADER_SIZE
    cdef uint64_t src_off = blk.offset + head
    cdef size_t size = blk.length if blk.length < head + 65536 else head + 65536
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
        memcpy(PyBytes_AS_STRING(<object>raw), p, head)
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
                                 f"{blk.length - head} (truncated)", blk.offset)
                msg = z.msg.decode("utf-8", "replace") if z.msg != NULL else f"zlib error {ret}"
                raise t._err(f"corrupt log block: {msg}", blk.offset)
            if size == blk.length:
                raise t._err("log block inflates past its declared size", blk.offset)
            size = size * 2 if size * 2 < blk.length else blk.length
            _PyBytes_Resize(&raw, size)
        if done != blk.length:
            raise t._err(f"log block inflates to {done - head} bytes, header says "
                         f"{blk.length - head}", blk.offset)
        out = <object>raw
    finally:
        Py_XDECREF(raw)
    blk.owner = out
    blk.data = <const unsigned char*>PyBytes_AS_STRING(out)
    blk.full_size = head + z.total_in
    return 0


cdef inline uint32_t block_restart(TableCore t, Block b, uint32_t i) except? 0:
    """Offset of restart point ``i`` of ``b``, checked to lie among the records."""
    cdef uint32_t r = get_be24(b.data + b.restart_start + 3 * i)
    if r < b.rec_start or r >= b.restart_start:
        raise t._err(f"bogus restart offset {r}", b.offset + b.restart_start + 3 * i)
    return r


cdef int block_decode_key(TableCore t, Block b, uint32_t* pos, Buf* key,
                          int* extra) except -1:
    """Decode the key at ``pos`` (prefix-compressed against ``key``, the previous one)
    into ``key``; advance ``pos`` to the record's value."""
    cdef const unsigned char* p = b.data
    cdef uint32_t end = b.restart_start
    cdef uint64_t prefix, st, suffix
    cdef int n
    n = get_varint(p + pos[0], end - pos[0], &prefix)
    if n < 0:
        raise t._err("bad key prefix varint", b.offset + pos[0])
    pos[0] += n
    n = get_varint(p + pos[0], end - pos[0], &st)
    if n < 0:
        raise t._err("bad key suffix varint", b.offset + pos[0])
    pos[0] += n
    suffix = st >> 3
    extra[0] = <int>(st & 7)
    if prefix > key.len:
        raise t._err(f"key prefix {prefix} longer than previous key {key.len}",
                     b.offset + pos[0])
    if suffix > end - pos[0]:
        raise t._err(f"key suffix of {suffix} bytes runs past the block", b.offset + pos[0])
    if prefix + suffix == 0:
        raise t._err("empty record key", b.offset + pos[0])
    key.len = <size_t>prefix
    buf_append(key, p + pos[0], <size_t>suffix)
    pos[0] += <uint32_t>suffix
    return 0


cdef int block_restart_key(TableCore t, Block b, uint32_t rpos,
                           const unsigned char** kp, size_t* klen) except -1:
    """The key stored whole at restart position ``rpos`` (a pointer into the block)."""
    cdef const unsigned char* p = b.data
    cdef uint64_t prefix, st, suffix
    cdef int n = get_varint(p + rpos, b.restart_start - rpos, &prefix)
    if n < 0 or prefix != 0:
        raise t._err("restart point does not start a full key", b.offset + rpos)
    rpos += n
    n = get_varint(p + rpos, b.restart_start - rpos, &st)
    if n < 0:
        raise t._err("bad key varint at restart point", b.offset + rpos)
    rpos += n
    suffix = st >> 3
    if suffix > b.restart_start - rpos:
        raise t._err("restart key runs past the block", b.offset + rpos)
    kp[0] = p + rpos
    klen[0] = <size_t>suffix
    return 0


cdef uint32_t block_seek_restart(TableCore t, Block b, const unsigned char* kp,
                                 size_t klen) except? 0:
    """Position of the last restart point whose key is <= the wanted key (the first
    record when there is none): a linear scan from there finds the key."""
    cdef uint32_t lo = 0, hi = b.restart_count, mid
    cdef const unsigned char* rk
    cdef size_t rlen
    while lo < hi:
        mid = lo + (hi - lo) // 2
        block_restart_key(t, b, block_restart(t, b, mid), &rk, &rlen)
        if key_cmp(rk, rlen, kp, klen) > 0:
            hi = mid
        else:
            lo = mid + 1
    return block_restart(t, b, lo - 1) if lo > 0 else b.rec_start


cdef int block_first_key_cmp(TableCore t, Block b, const unsigned char* kp,
                             size_t klen) except -2:
    """Compare the first key of ``b`` (always stored whole) with a key."""
    cdef const unsigned char* rk
    cdef size_t rlen
    block_restart_key(t, b, b.rec_start, &rk, &rlen)
    return key_cmp(rk, rlen, kp, klen)
