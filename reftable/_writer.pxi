# Layer 5: the table writer. Records go in in key order and leave as blocks, index
# levels, the obj section and the footer, byte for byte as Git writes them.

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
    cdef BlockWriter bw        # the block being filled
    cdef Buf wlast             # last key added (order check)
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
    cdef z_stream _z
    cdef bint _z_ready
    cdef Buf zbuf
    cdef readonly int object_id_len
    cdef readonly uint64_t total_blocks
    cdef readonly uint64_t ref_count
    cdef readonly uint64_t log_count
    cdef readonly bint closed
    cdef bint limits_locked

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
        bw_free(&self.bw)
        bw_alloc(&self.bw, block_size, restart_interval)
        memset(self.sec, 0, sizeof(self.sec))

    def __dealloc__(self):
        bw_free(&self.bw)
        if self._z_ready:
            deflateEnd(&self._z)
        buf_free(&self.out)
        buf_free(&self.zbuf)
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
            return header_size_of(self.hash_size)

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
        return header_encode(p, self.version, self.block_size, self.min_update_index,
                             self.max_update_index)

    # -- blocks ---------------------------------------------------------------

    cdef void _bw_init(self, int typ) noexcept:
        bw_init(&self.bw, typ, header_size_of(self.hash_size) if self.next == 0 else 0)

    cdef int _add(self, int typ, const unsigned char* key, size_t klen, int extra,
                  const unsigned char* val, size_t vlen) except -1:
        """Add a record, starting a new block when the current one is full. Return 1
        when it does not fit even an empty block."""
        if self.bw.typ == 0:
            self._bw_init(typ)
        elif self.bw.typ != typ:
            raise ApiError("record type does not match the section being written")
        if bw_add(&self.bw, key, klen, extra, val, vlen) == 0:
            return 0
        self._flush_block()
        self._bw_init(typ)
        return bw_add(&self.bw, key, klen, extra, val, vlen)

    cdef int _flush_block(self) except -1:
        cdef uint32_t raw, blen, hs
        cdef int typ = self.bw.typ
        cdef uint64_t padding = 0
        cdef SecStats* st
        cdef IdxEnt ent
        if typ == 0 or self.bw.entries == 0:
            return 0
        blen = bw_finish(&self.bw)
        if not self.unpadded and typ != BLOCK_LOG:
            padding = self.block_size - blen
        st = &self.sec[slot_of(typ)]
        if st.blocks == 0 and self.next > 0:
            st.offset = self.next
        st.entries += self.bw.entries
        st.restarts += self.bw.restart_len
        st.blocks += 1
        self.total_blocks += 1
        if self.next == 0:
            self._write_header(self.bw.block)
        if typ == BLOCK_LOG:
            # Log blocks are deflated (level 9, like Git) after the 4-byte block
            # header; the header keeps the inflated length.
            hs = self.bw.header_off + BLOCK_HEADER_SIZE
            self._deflate(self.bw.block + hs, blen - hs)
            self._padded_write(self.bw.block, hs, 0)
            self._emit(self.zbuf.p, self.zbuf.len)
            raw = hs + <uint32_t>self.zbuf.len
        else:
            raw = blen
            self._padded_write(self.bw.block, raw, padding)
        # One index record per block: its last key and where it starts.
        ent.key_off = self.idx_keys.len
        ent.key_len = self.bw.last.len
        ent.offset = self.next
        buf_append(&self.idx_keys, self.bw.last.p, self.bw.last.len)
        buf_append(&self.idx_ents, <unsigned char*>&ent, sizeof(IdxEnt))
        self.idx_len += 1
        self.next += padding + raw
        self.bw.typ = 0
        return 0

    cdef int _deflate(self, const unsigned char* p, size_t n) except -1:
        """Deflate ``p`` into ``zbuf`` (one reused stream, level 9 as Git)."""
        cdef size_t bound
        if not self._z_ready:
            memset(&self._z, 0, sizeof(z_stream))
            if deflateInit2(&self._z, 9, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY) != Z_OK:
                raise MemoryError()
            self._z_ready = True
        elif deflateReset(&self._z) != Z_OK:
            raise MemoryError()
        bound = compressBound(n)
        self.zbuf.len = 0
        buf_reserve(&self.zbuf, bound)
        self._z.next_in = p
        self._z.avail_in = <unsigned int>n
        self._z.next_out = self.zbuf.p
        self._z.avail_out = <unsigned int>bound
        if deflate(&self._z, Z_FINISH) != Z_STREAM_END:
            raise MemoryError("deflate failed")
        self.zbuf.len = bound - self._z.avail_out
        return 0

    cdef int _finish_section(self) except -1:
        cdef int typ = self.bw.typ
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
                    vlen = index_encode(v, ents[i].offset)
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
        cdef int typ = self.bw.typ
        if typ == 0:
            return 0
        self._finish_section()
        if typ == BLOCK_REF and self.index_objects and self.sec[0].index_blocks > 0:
            self._dump_obj_index()
        self.obj_hashes.len = 0
        self.obj_ents.len = 0
        self.obj_blocks.len = 0
        self.obj_len = 0
        self.bw.typ = 0
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
        cdef int extra
        cdef Buf val, pos
        val.p = pos.p = NULL
        val.len = val.cap = pos.len = pos.cap = 0
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
                pos.len = 0
                for k in range(i, j):
                    off = blocks[ents[k].blk]
                    if pos.len == 0 or off != (<uint64_t*>pos.p)[pos.len // 8 - 1]:
                        buf_append(&pos, <const unsigned char*>&off, 8)
                obj_encode(&val, <const uint64_t*>pos.p, pos.len // 8, &extra)
                if self._add(BLOCK_OBJ, h, id_len, extra, val.p, val.len):
                    # Too many positions for one block: keep the key, drop positions;
                    # readers then fall back to scanning.
                    obj_encode(&val, NULL, 0, &extra)
                    if bw_add(&self.bw, h, id_len, extra, val.p, val.len):
                        raise EntryTooBigError("obj record does not fit a block")
                i = j
        finally:
            buf_free(&val)
            buf_free(&pos)
        self._finish_section()
        return 0

    # -- records --------------------------------------------------------------

    cdef int _check_order(self, const unsigned char* key, size_t klen) except -1:
        if self.wlast.len and key_cmp(self.wlast.p, self.wlast.len, key, klen) >= 0:
            raise ApiError("records must be added in strictly increasing key order")
        buf_set(&self.wlast, key, klen)
        return 0

    cdef int _add_ref(self, const unsigned char* name, size_t nlen,
                      const RefValue* v) except -1:
        cdef int hs = self.hash_size
        if self.closed:
            raise ApiError("writer is closed")
        if v.update_index < self.min_update_index or v.update_index > self.max_update_index:
            raise ApiError(
                f"ref update index {v.update_index} outside limits "
                f"[{self.min_update_index}, {self.max_update_index}]")
        if self.bw.typ != 0 and self.bw.typ != BLOCK_REF:
            raise ApiError("refs must be added before logs")
        if nlen == 0:
            raise ApiError("empty ref name")
        if v.value_type < 0 or v.value_type > 3:
            raise ApiError(f"invalid ref value type {v.value_type}")
        ref_encode(&self.scratch, v, self.min_update_index, hs)
        self._check_order(name, nlen)
        self.limits_locked = True
        if self._add(BLOCK_REF, name, nlen, v.value_type, self.scratch.p, self.scratch.len):
            self.wlast.len = 0
            raise EntryTooBigError(
                f"ref record for {_bytes(name, nlen)!r} does not fit a block")
        self.ref_count += 1
        if self.index_objects and (v.value_type == 1 or v.value_type == 2):
            self._note_oid(v.value)
            if v.value_type == 2:
                self._note_oid(v.target_value)
        return 0

    cdef int _add_log(self, const unsigned char* name, size_t nlen,
                      const LogValue* v) except -1:
        if self.closed:
            raise ApiError("writer is closed")
        if nlen == 0:
            raise ApiError("empty ref name")
        if v.update_index > self.max_update_index:
            raise ApiError(
                f"log update index {v.update_index} above limit {self.max_update_index}")
        if self.bw.typ == BLOCK_REF:
            self._finish_public_section()
        # The log section follows the previous block directly: its padding is dropped.
        self.next -= self.pending_padding
        self.pending_padding = 0
        log_key_encode(&self.keybuf, name, nlen, v.update_index)
        log_encode(&self.scratch, v, self.hash_size)
        self._check_order(self.keybuf.p, self.keybuf.len)
        self.limits_locked = True
        if self._add(BLOCK_LOG, self.keybuf.p, self.keybuf.len, v.value_type, self.scratch.p,
                     self.scratch.len):
            self.wlast.len = 0
            raise EntryTooBigError(
                f"log record for {_bytes(name, nlen)!r} does not fit a block")
        self.log_count += 1
        return 0

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
        put_be32(footer + p + 40, crc32_of(footer, p + 40))
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




# -- bulk input: record objects straight into a writer -------------------------------
#
# Per record this reads the slots directly and takes names as UTF-8 without a copy,
# instead of a Python loop of attribute reads, str.encode() and a method call.

from cpython.list cimport PyList_GET_ITEM

cdef extern from *:
    void __builtin_prefetch(const void* p) nogil


cdef inline void _prefetch_name(list records, Py_ssize_t i, Py_ssize_t n) noexcept:
    # Names are separate objects wherever the allocator put them: with a million
    # records, fetching each one is a cache miss. Ask for it a few records ahead.
    cdef PyObject* rec
    cdef PyObject* name
    if i < n:
        rec = PyList_GET_ITEM(records, i)
        if <object>Py_TYPE(<object>rec) is _RefCls:
            name = (<PyObject**>((<char*>rec) + _ref_offs[0]))[0]
            if name != NULL:
                __builtin_prefetch(name)
                __builtin_prefetch((<char*>name) + 64)


def write_ref_records(WriterCore w, records):
    """Add ``RefRecord`` objects (in name order) to ``w``; returns how many."""
    cdef Py_ssize_t i, n
    cdef RefValue v
    cdef const unsigned char* name
    cdef size_t nlen
    cdef list keep = []
    if type(records) is list and _fast_records:
        n = len(<list>records)
        for i in range(n):
            _prefetch_name(<list>records, i + 8, n)
            ref_from_object(<object>PyList_GET_ITEM(<list>records, i), &v, &name, &nlen,
                            w.hash_size, keep)
            w._add_ref(name, nlen, &v)
            if len(keep) > 1024:
                keep.clear()
        return n
    n = 0
    for rec in records:
        ref_from_object(rec, &v, &name, &nlen, w.hash_size, keep)
        w._add_ref(name, nlen, &v)
        if len(keep) > 1024:
            keep.clear()
        n += 1
    return n


def write_log_records(WriterCore w, records, bint normalize=False):
    """Add ``LogRecord`` objects (in key order) to ``w``; returns how many. With
    ``normalize``, messages get Git's treatment: one line, ending in one newline
    (a multi-line message is an ``ApiError``)."""
    cdef Py_ssize_t n = 0
    cdef LogValue v
    cdef const unsigned char* name
    cdef size_t nlen
    cdef list keep = []
    for rec in records:
        log_from_object(rec, &v, &name, &nlen, w.hash_size, keep)
        if normalize and v.value_type == 1 and not log_message_normalize(&v):
            raise ApiError("log message spans several lines (use exact_log_message)")
        w._add_log(name, nlen, &v)
        if len(keep) > 1024:
            keep.clear()
        n += 1
    return n
