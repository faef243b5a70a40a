# Layer 4: one table. The reader checks the header and footer, loads blocks (keeping
# decoded ones for later seeks), iterates and seeks sections through their indexes,
# and keeps a Bloom filter of ref names for point lookups.

cdef class TableCore
cdef class RecordIter

cdef enum:
    LOG_BLOCK_CACHE = 8    # inflated log blocks kept per table (a reflog read re-seeks)


cdef int header_encode(unsigned char* p, int version, uint32_t block_size,
                       uint64_t min_update_index, uint64_t max_update_index) noexcept:
    """Write a file header; return its size."""
    memcpy(p, b"REFT", 4)
    p[4] = version
    put_be24(p + 5, block_size)
    put_be64(p + 8, min_update_index)
    put_be64(p + 16, max_update_index)
    if version == 2:
        put_be32(p + 24, HASH_ID_SHA256)
        return HEADER_SIZE_V2
    return HEADER_SIZE_V1


cdef uint32_t crc32_of(const unsigned char* p, size_t n) noexcept nogil:
    return <uint32_t>zlib_crc32(0, p, <unsigned int>n)


cdef enum:
    EDGE_HEAD = HEADER_SIZE_V2 + 1              # a header and the first block's type
    EDGE_TAIL = HEADER_SIZE_V2 + FOOTER_EXTRA   # the longest footer
    READ_WHOLE_MAX = 65536                      # smaller table files are read, not mapped
    PREAD_LOOKUPS = 8   # point lookups in a large table served by reads before it is mapped
    UNMAPPED_MAX = 64   # large tables held open unmapped at once; more are mapped at open


def open_table(path):
    """Open the table file at ``path`` (mapped, or read whole when small) and check its
    header and footer. ``NotExistError`` when it does not exist; ``FormatError`` for a
    file that is not a regular file or not a table."""
    cdef unsigned char head[EDGE_HEAD]
    cdef unsigned char tail[EDGE_TAIL]
    cdef int fd = -1
    cdef uint64_t size = 0
    cdef TableCore t
    global _unmapped_open
    data = sys_open_table_file(_os.fsencode(path), path, &size, _read_whole_max, &fd,
                               head, EDGE_HEAD, tail, EDGE_TAIL)
    if data is not None:
        return TableCore.__new__(TableCore, data, path)
    t = TableCore.__new__(TableCore, None, path)
    t._fd = fd  # mapped on first need (see _ensure_mapped)
    _unmapped_open += 1
    t.size = size
    t.mapped = True
    t._parse(head, tail)
    if _unmapped_open > _unmapped_max:
        # Each unmapped table holds a descriptor: a process with many handles (a
        # server's, say) maps the rest at once instead of running out of them.
        t._ensure_mapped()
    return t


cdef uint64_t _read_whole_max = READ_WHOLE_MAX
cdef Py_ssize_t _unmapped_open = 0    # large tables held open unmapped (a descriptor each)
cdef Py_ssize_t _unmapped_max = UNMAPPED_MAX


def _set_unmapped_max(Py_ssize_t n):
    """Tests: hold at most ``n`` large tables open unmapped; returns the previous limit."""
    global _unmapped_max
    old = _unmapped_max
    _unmapped_max = n
    return old


def _set_read_whole_max(uint64_t n):
    """Tests: read table files up to ``n`` bytes whole (0: none, so that every table
    takes the path of large ones); returns the previous limit."""
    global _read_whole_max
    old = _read_whole_max
    _read_whole_max = n
    return old


cdef class TableCore:
    """Validated view of one table's bytes: a mapped file (``open_table``) or any
    buffer (``TableCore(data)``)."""

    cdef Py_buffer _pybuf
    cdef bint _has_buf
    cdef readonly bint mapped   # a (large) file of open_table: mapped, or on first need
    cdef int _fd                # its descriptor until it is mapped (and no lookup reads it)
    cdef int _preads            # point lookups served by reads so far
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
    cdef readonly uint64_t keys_read   # record keys decoded so far: the work done reading
    cdef TableView view        # what the C readers need (no GIL)
    cdef int _pins             # readers working without the GIL: unmapping waits for them
    cdef Buf _key              # scratch key of point lookups
    cdef Reuse _reuse          # for records built by point lookups
    cdef object _obj_damage    # (message, offset) when the footer's obj fields are bad
    cdef object _log_damage    # the same for the log fields
    cdef RecordIter _lookup_it
    cdef dict _block_cache
    cdef list _log_cache       # recently inflated log blocks, newest last
    cdef z_stream _z
    cdef bint _z_ready
    cdef uint64_t* _bloom
    cdef uint64_t _bloom_mask
    cdef bint _bloom_off
    cdef uint64_t _lookups
    cdef bint _evict

    def __cinit__(self, data=None, path=None):
        self.path = path
        self._fd = -1
        self._reuse = Reuse.__new__(Reuse)
        self._block_cache = {}
        self._log_cache = []
        if data is not None:
            PyObject_GetBuffer(data, &self._pybuf, PyBUF_SIMPLE)
            self._has_buf = True
            self.buf = <const unsigned char*>self._pybuf.buf
            self.size = <uint64_t>self._pybuf.len
            self._parse(self.buf, self.buf + self.size - min(self.size, <uint64_t>EDGE_TAIL))

    def __dealloc__(self):
        self._free()

    cdef void _free(self) noexcept:
        buf_free(&self._key)
        self.view.buf = NULL
        self.view.data_end = 0
        self.view.ref_present = False
        self.view.bloom = NULL
        free(self._bloom)
        self._bloom = NULL
        if self._has_buf:
            PyBuffer_Release(&self._pybuf)
            self._has_buf = False
        if self.mapped:
            if self.buf != NULL:
                sys_unmap(self.buf, self.size)
            self.mapped = False
        self._close_fd()
        if self._z_ready:
            inflateEnd(&self._z)
            self._z_ready = False
        self.buf = NULL

    cdef void _unpin(self) noexcept:
        self._pins -= 1
        if self._pins == 0:
            if self.released:
                self._free()
            elif self.buf != NULL:
                self._close_fd()  # mapped while a lookup read from it

    cdef void _close_fd(self) noexcept:
        global _unmapped_open
        if self._fd >= 0:
            _sys_close(self._fd, RT_IO_CLOSE_READ)
            self._fd = -1
            _unmapped_open -= 1

    cdef int _ensure_mapped(self) except -1:
        """Map a large table's file: everything but the first point lookups reads the
        mapping. Pinned while mapping (which lets other threads run): the descriptor
        stays open, and a thread that maps it too keeps only one mapping. The
        descriptor is closed when no lookup reads from it any more (``_unpin``)."""
        cdef const unsigned char* p
        if self.buf != NULL or self._fd < 0:
            return 0
        self._pins += 1
        try:
            p = sys_map_file(self._fd, self.size, self.path)
            if self.buf == NULL and not self.released:
                self.buf = p
                self.view.buf = p
            else:  # mapped by another thread meanwhile, or released
                sys_unmap(p, self.size)
        finally:
            self._unpin()
        return 0

    cdef z_stream* _zstream(self) except NULL:
        """The table's inflater, reset for a new stream (used with the GIL held)."""
        if not self._z_ready:
            memset(&self._z, 0, sizeof(z_stream))
            if inflateInit(&self._z) != Z_OK:
                raise MemoryError()
            self._z_ready = True
        elif inflateReset(&self._z) != Z_OK:
            raise MemoryError()
        return &self._z

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
                if blk is None or blk.v.typ != BLOCK_REF:
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
            self.view.bloom = bits
            self.view.bloom_mask = nbits - 1
            self._bloom_off = False
        except FormatError:
            pass  # lookups go on without the filter and report the damage themselves
        finally:
            buf_free(&hashes)
        return 0


    @property
    def file_mapped(self):
        """Whether a large table's file is mapped now (it is on first need)."""
        return self.mapped and self.buf != NULL

    def set_sequential_eviction(self, bint on):
        """For one pass over a large mapped table, e.g. compaction: drop the pages of
        blocks already read from memory, so that resident memory stays flat however
        large the table (the kernel re-reads them if touched again)."""
        if on and not self.mapped:
            raise ValueError("eviction only applies to tables mapped from files")
        self._evict = on

    cdef void _evict_range(self, uint64_t start, uint64_t end) noexcept:
        # page-aligned: only whole pages below the start of the next block
        cdef uint64_t page = 4096
        cdef uint64_t a = start & ~(page - 1)
        cdef uint64_t b = end & ~(page - 1)
        if self._evict and b > a and self.buf != NULL:
            sys_drop_pages(self.buf + a, b - a)

    def release(self):
        """Unmap the file or drop the buffer. Iterators made from this table fail
        cleanly afterwards; batch lookups running without the GIL finish first (the
        last one unmaps)."""
        if self._pins == 0:
            self._free()
        self.released = True
        self._bloom_off = True
        self._block_cache = {}
        self._log_cache = []
        self._lookup_it = None

    cdef _err(self, msg, offset):
        return FormatError(msg, self.path, offset)

    cdef int _check_released(self) except -1:
        if self.released:
            raise ValueError("table is closed")
        return 0

    cdef int _check_open(self) except -1:
        """Raise when released; map the file when not mapped yet (callers read the
        view's bytes, or copy the view for reading without the GIL)."""
        self._check_released()
        if self.buf == NULL and self._fd >= 0:
            self._ensure_mapped()
        return 0

    cdef int _parse(self, const unsigned char* b, const unsigned char* tail) except -1:
        """Check the header and footer. ``b`` holds the table's first
        ``min(size, EDGE_HEAD)`` bytes, ``tail`` its last ``min(size, EDGE_TAIL)``
        (copies of a mapped file's, read without touching the mapping)."""
        cdef const unsigned char* f
        cdef uint64_t field
        cdef uint32_t crc_stored, crc
        cdef int first
        if self.size < HEADER_SIZE_V1:
            raise self._err(f"file of {self.size} bytes is too small for a reftable", 0)
        if memcmp(b, b"REFT", 4) != 0:
            raise self._err("bad magic: not a reftable", 0)
        self.version = b[4]
        if self.version == 1:
            self.header_size = HEADER_SIZE_V1
            self.hash_id = HASH_ID_SHA1
        elif self.version == 2:
            self.header_size = HEADER_SIZE_V2
        else:
            raise self._err(f"unsupported reftable version {self.version}", 4)
        self.footer_size = self.header_size + FOOTER_EXTRA
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
        f = tail + EDGE_TAIL - self.footer_size  # (the size is over EDGE_TAIL here)
        if memcmp(f, b, self.header_size) != 0:
            raise self._err("footer does not repeat the header (truncated or corrupt table)",
                            self.data_end)
        crc_stored = get_be32(f + self.footer_size - 4)
        crc = crc32_of(f, self.footer_size - 4)
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
        if self.ref_index_offset >= self.data_end and self.ref_index_offset != 0:
            raise self._err(f"ref index offset {self.ref_index_offset} points past the data",
                            self.data_end)
        first = b[self.header_size] if self.data_end > <uint64_t>self.header_size else 0
        self.ref_present = first == BLOCK_REF
        self.obj_present = self.obj_offset > 0
        self.log_present = first == BLOCK_LOG or self.log_offset > 0
        # Damaged obj or log fields only make that section unreadable (as in Git): the
        # refs stay available, and the error comes when the section is read.
        fo = self.data_end + self.header_size
        for name, value in (("obj", self.obj_offset), ("obj index", self.obj_index_offset)):
            if value >= self.data_end and value != 0:
                self._obj_damage = (f"{name} offset {value} points past the data", fo + 8)
        if self.obj_present and (self.object_id_len < 2 or self.object_id_len > self.hash_size):
            self._obj_damage = (f"bad abbreviated object id length {self.object_id_len}", fo + 8)
        for name, value in (("log", self.log_offset), ("log index", self.log_index_offset)):
            if value >= self.data_end and value != 0:
                self._log_damage = (f"{name} offset {value} points past the data", fo + 24)
        self.view.buf = self.buf
        self.view.data_end = self.data_end
        self.view.header_size = self.header_size
        self.view.block_size = self.block_size
        self.view.hash_size = self.hash_size
        self.view.min_update_index = self.min_update_index
        self.view.ref_index_offset = self.ref_index_offset
        self.view.ref_present = self.ref_present
        return 0

    cdef int _block_type_at(self, uint64_t off) except -1:
        """Type byte of the block at ``off`` (0 past the data), read without loading
        the block: moving from one section into the next must not inflate a log block
        (slow, and a corrupt one would break reading the intact section before it)."""
        self._check_open()
        return tv_block_type(&self.view, off)

    cdef Block _read_block(self, uint64_t off):
        """Load the block at ``off``; None at the end of the data."""
        cdef Block blk
        cdef Py_ssize_t i
        self._check_open()
        if off >= self.data_end:
            return None
        blk = self._block_cache.get(off)
        if blk is not None:
            return blk
        for i in range(len(self._log_cache)):
            blk = <Block>self._log_cache[i]
            if blk.v.offset == off:
                return blk
        blk = block_parse(self, off)
        # Decoded blocks are small and immutable: keep them for later seeks, up to a
        # bound. Log blocks own their inflated bytes: only the last few are kept (memory
        # must stay flat when iterating a large log section).
        if blk.v.typ == BLOCK_LOG:
            if len(self._log_cache) >= LOG_BLOCK_CACHE:
                del self._log_cache[0]
            self._log_cache.append(blk)
        elif len(self._block_cache) < 65536:
            self._block_cache[off] = blk
        return blk

    cdef RecordIter _new_iter(self, int typ):
        cdef RecordIter it = RecordIter.__new__(RecordIter)
        it.table = self
        it.typ = typ
        it.done = True
        it.reuse = Reuse.__new__(Reuse)
        return it

    cdef uint64_t _section_start(self, int typ, bint* present) except? 0:
        """Where the section of ``typ`` starts; a damaged section's error is raised here."""
        if typ == BLOCK_OBJ and self._obj_damage is not None:
            raise self._err(self._obj_damage[0], self._obj_damage[1])
        if typ == BLOCK_LOG and self._log_damage is not None:
            raise self._err(self._log_damage[0], self._log_damage[1])
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
        if blk is None or blk.v.typ != typ:
            raise self._err(f"section does not start with a block of type {chr(typ)!r}", start)
        it._set_block(blk)
        return it

    def iter_block(self, uint64_t off, int typ, bint records=False):
        """Iterate the records of the single block at ``off`` (which must be ``typ``)."""
        cdef RecordIter it = self._new_iter(typ)
        it.records = records
        cdef Block blk = self._read_block(off)
        if blk is None or blk.v.typ != typ:
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
        if typ == BLOCK_REF:
            self._note_lookups(1)
            return self._ref_lookup(kp, klen, records)
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

    cdef int _note_lookups(self, uint64_t n) except -1:
        """Build the Bloom filter once the table has served enough lookups to pay for it
        (lookups then check it first, see tv_ref_lookup)."""
        if self._bloom == NULL and not self._bloom_off:
            self._lookups += n
            if self._lookups >= 64 + self.data_end // 2048:
                self._build_bloom()
        return 0

    def refs_for_many(self, list oids):
        """For each object id (raw bytes of the table's hash size), the refs (records,
        tombstones excluded) whose value or peeled value it is. The search runs without
        the GIL (and never takes it back before it is done: the matches of every id
        go into one batch, cut up afterwards)."""
        cdef Py_ssize_t n = len(oids), k, prev = 0
        cdef RefColumns c = new_columns(self.hash_size)
        cdef const unsigned char** ids = NULL
        cdef Py_ssize_t* ends = NULL
        cdef Buf key, positions
        cdef TableView view
        cdef uint64_t eoff = 0
        cdef int err = E_OK
        cdef int id_len = 0
        cdef bint present = False
        cdef list recs
        cdef uint64_t obj_off = self.obj_offset, obj_ioff = self.obj_index_offset
        for o in oids:
            if type(o) is not bytes or PyBytes_GET_SIZE(o) != self.hash_size:
                raise ValueError("object ids must be bytes of the table's hash size")
        self._check_open()
        if self.obj_present:
            self._section_start(BLOCK_OBJ, &present)  # raises when the obj section is damaged
            id_len = self.object_id_len
        key.p = positions.p = NULL
        key.len = key.cap = positions.len = positions.cap = 0
        ids = <const unsigned char**>malloc(sizeof(void*) * (n + 1))
        ends = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (n + 1))
        if ids == NULL or ends == NULL:
            free(ids)
            free(ends)
            raise MemoryError()
        for k in range(n):
            ids[k] = <const unsigned char*>PyBytes_AS_STRING(oids[k])
        view = self.view
        self._pins += 1
        try:
            with nogil:
                for k in range(n):
                    err = tv_refs_for(&view, ids[k], obj_off, obj_ioff, id_len, &key,
                                      &positions, c, &eoff)
                    if err != E_OK:
                        break
                    ends[k] = c.n  # the matches of ids[k] end here
            if err != E_OK:
                raise_format(self, err, eoff)
            recs = c.records()
            out = []
            for k in range(n):
                out.append(recs[prev:ends[k]])
                prev = ends[k]
            return out
        finally:
            self._unpin()
            free(ids)
            free(ends)
            buf_free(&key)
            buf_free(&positions)

    cdef object _ref_lookup(self, const unsigned char* kp, size_t klen, bint records):
        """Point lookup of a ref. The first ones in a table not mapped yet read their
        few blocks into a buffer of their own (a mapping costs a page fault per block,
        each mapping and later unmapping a run of pages a short-lived reader never
        uses); such a lookup is pinned, so the descriptor stays open while it reads,
        even if another thread maps or closes the table meanwhile (the reads let it
        run). Other lookups read the mapping, with the table's scratch key (only used
        inside the C lookup, which cannot be interrupted then)."""
        cdef TableView view
        cdef TableView* v = &self.view
        cdef Buf scratch, key
        cdef Buf* k = &self._key
        cdef bint reading = False
        cdef RefValue rv
        cdef bint found = False
        cdef uint64_t eoff = 0
        cdef int err
        self._check_released()
        if (self.buf == NULL and self._fd >= 0 and self._preads < PREAD_LOOKUPS
                and self.block_size):
            scratch.p = key.p = NULL
            scratch.len = scratch.cap = key.len = key.cap = 0
            view = self.view
            view.fd = self._fd
            view.scratch = &scratch
            v = &view
            k = &key
            reading = True
            self._preads += 1
            self._pins += 1
        else:
            self._check_open()  # (maps the file when not mapped yet)
        try:
            if reading:
                buf_reserve(&scratch, tv_scratch_size(self.block_size))
            err = tv_ref_lookup(v, kp, klen, k, &rv, &found, &eoff)
            if err != E_OK:
                raise_format(self, err, eoff)
            if not found:
                return None
            return ref_object(kp, klen, &rv, self.hash_size, records, self._reuse)
        finally:
            if reading:
                buf_free(&scratch)
                buf_free(&key)
                self._unpin()

    cdef int _seek_into(self, RecordIter it, const unsigned char* kp, size_t klen) except -1:
        cdef bint present = False
        cdef uint64_t start = self._section_start(it.typ, &present)
        cdef uint64_t boff = 0, eoff = 0
        cdef bint past = False
        cdef int err
        cdef Block blk, nb
        cdef int typ = it.typ
        cdef Buf key
        if not present:
            return 0
        self._check_open()
        key.p = NULL
        key.len = key.cap = 0
        try:
            err = tv_seek_block(&self.view, start, self._index_offset(typ), typ, kp, klen,
                                &key, &boff, &past, &eoff)
        finally:
            buf_free(&key)
        if err == E_NEEDS_INFLATE:
            # a log section without index: walk its blocks by their first keys
            blk = self._read_block(start)
            if blk is None or blk.v.typ != typ:
                raise self._err(f"section does not start with a block of type {chr(typ)!r}",
                                start)
            while self._block_type_at(blk.v.offset + blk.v.full_size) == typ:
                nb = self._read_block(blk.v.offset + blk.v.full_size)
                if block_first_key_cmp(self, nb, kp, klen) > 0:
                    break
                blk = nb
        elif err != E_OK:
            raise_format(self, err, eoff)
        elif past:
            return 0      # the key is past every indexed block
        else:
            blk = self._read_block(boff)
        it._set_block(blk)
        it._seek_in_block(kp, klen)
        return 0


# -- seeking without Python objects (and without the GIL) ------------------------------

cdef int _scan_columns(const TableView* t, BlockView* b, uint32_t* pos, Buf* key,
                       const Buf* stop, bint has_stop, bint one_block, RefColumns c,
                       Py_ssize_t limit, bint* more, uint64_t* eoff) except -1 nogil:
    """Decode the rest of a ref section (from ``pos`` in ``b``) into ``c``, up to the
    first key without the ``stop`` prefix; ``more`` when it stopped after ``limit``
    records instead (``b``, ``pos`` and ``key`` then say where to go on)."""
    cdef int err, extra
    cdef RefValue rv
    cdef Py_ssize_t k
    more[0] = False
    for k in range(limit):
        if pos[0] >= b.restart_start:
            if one_block or not tv_block_may_be(t, b.offset + b.full_size, BLOCK_REF):
                return E_OK
            err = bv_parse(t, b.offset + b.full_size, b, eoff)
            if err != E_OK:
                return err
            pos[0] = b.rec_start
            key.len = 0
        err = bv_decode_key(b, pos, key, &extra, eoff)
        if err != E_OK:
            return err
        if has_stop and (key.len < stop.len or memcmp(key.p, stop.p, stop.len) != 0):
            return E_OK
        err = ref_value_decode(b.data, pos, b.restart_start, t.hash_size, t.min_update_index,
                               extra, &rv)
        if err != E_OK:
            eoff[0] = b.offset + pos[0]
            return err
        c.add(key.p, key.len, &rv)
    more[0] = True
    return E_OK

cdef int tv_seek_in_block(const BlockView* b, int typ, const unsigned char* kp, size_t klen,
                          Buf* key, uint32_t* pos, uint32_t* after, int* extra_out,
                          uint64_t* eoff, const TableView* t) except -1 nogil:
    """In an index, ref or obj block: ``pos`` at the first record whose key is >= the wanted
    key, that key in ``key``, its value type in ``extra_out`` and ``after`` past it;
    ``pos == restart_start`` when there is none."""
    cdef uint32_t p, save
    cdef int err, extra
    cdef uint64_t off
    cdef RefValue rv
    err = bv_seek_restart(b, kp, klen, &p, eoff)
    if err != E_OK:
        return err
    key.len = 0
    while p < b.restart_start:
        save = p
        err = bv_decode_key(b, &p, key, &extra, eoff)
        if err != E_OK:
            return err
        if key_cmp(key.p, key.len, kp, klen) >= 0:
            pos[0] = save
            after[0] = p
            extra_out[0] = extra
            return E_OK
        if typ == BLOCK_INDEX:
            err = index_value_decode(b.data, &p, b.restart_start, &off)
        elif typ == BLOCK_OBJ:
            err = obj_value_decode(b.data, &p, b.restart_start, extra, NULL)
        else:
            err = ref_value_decode(b.data, &p, b.restart_start, t.hash_size,
                                   t.min_update_index, extra, &rv)
        if err != E_OK:
            eoff[0] = b.offset + p
            return err
    pos[0] = after[0] = p
    return E_OK


cdef int tv_seek_block(const TableView* t, uint64_t start, uint64_t ioff, int typ,
                       const unsigned char* kp, size_t klen, Buf* key, uint64_t* block_off,
                       bint* past_end, uint64_t* eoff) except -1 nogil:
    """Offset of the block of the section of ``typ`` (first block at ``start``, index at
    ``ioff`` when nonzero) that holds the first key >= the wanted one; ``past_end``
    when every key is smaller. E_NEEDS_INFLATE for a log section without index (its
    blocks must be inflated to be compared)."""
    cdef BlockView b, nb
    cdef uint32_t pos, after
    cdef const unsigned char* fk
    cdef size_t fklen
    cdef int err, level, extra
    past_end[0] = False
    if ioff:
        for level in range(MAX_INDEX_LEVELS):
            if ioff >= t.data_end:
                eoff[0] = ioff
                return E_INDEX_TARGET
            err = bv_parse(t, ioff, &b, eoff)
            if b.typ == typ and (err == E_OK or err == E_NEEDS_INFLATE):
                block_off[0] = ioff
                return E_OK
            if err != E_OK:
                return err
            if b.typ != BLOCK_INDEX:
                eoff[0] = ioff
                return E_INDEX_BLOCK
            while True:
                err = tv_seek_in_block(&b, BLOCK_INDEX, kp, klen, key, &pos, &after, &extra,
                                       eoff, t)
                if err != E_OK:
                    return err
                if pos < b.restart_start:
                    break
                # past this index block: the top level of an index may span up to three
                # blocks (Git stops adding levels below that)
                if not tv_block_may_be(t, b.offset + b.full_size, BLOCK_INDEX):
                    past_end[0] = True
                    return E_OK
                err = bv_parse(t, b.offset + b.full_size, &b, eoff)
                if err != E_OK:
                    return err
            err = index_value_decode(b.data, &after, b.restart_start, &ioff)
            if err != E_OK:
                eoff[0] = b.offset + after
                return err
            if ioff >= t.data_end:
                eoff[0] = b.offset + after
                return E_INDEX_TARGET
        eoff[0] = ioff
        return E_INDEX_DEPTH
    if typ == BLOCK_LOG:
        return E_NEEDS_INFLATE
    err = bv_parse(t, start, &b, eoff)
    if err != E_OK:
        return err
    if b.typ != typ:
        eoff[0] = start
        return E_SECTION_START
    while tv_block_may_be(t, b.offset + b.full_size, typ):
        err = bv_parse(t, b.offset + b.full_size, &nb, eoff)
        if err == E_OK:
            err = bv_restart_key(&nb, nb.rec_start, &fk, &fklen, eoff)
        if err != E_OK:
            return err
        if key_cmp(fk, fklen, kp, klen) > 0:
            break
        b = nb
    block_off[0] = b.offset
    return E_OK


cdef int _scan_for_oid(const TableView* t, BlockView* b, bint whole_section,
                       const unsigned char* oid, Buf* key, RefColumns out,
                       uint64_t* eoff) except -1 nogil:
    """Add to ``out`` the refs of block ``b`` (and the blocks after it, with
    ``whole_section``) whose value or peeled value is ``oid``."""
    cdef uint32_t pos = b.rec_start
    cdef int err, extra
    cdef int hs = t.hash_size
    cdef RefValue rv
    key.len = 0
    while True:
        if pos >= b.restart_start:
            if not whole_section or not tv_block_may_be(t, b.offset + b.full_size, BLOCK_REF):
                return E_OK
            err = bv_parse(t, b.offset + b.full_size, b, eoff)
            if err != E_OK:
                return err
            pos = b.rec_start
            key.len = 0
        err = bv_decode_key(b, &pos, key, &extra, eoff)
        if err != E_OK:
            return err
        err = ref_value_decode(b.data, &pos, b.restart_start, hs, t.min_update_index, extra,
                               &rv)
        if err != E_OK:
            eoff[0] = b.offset + pos
            return err
        if (rv.value != NULL and memcmp(rv.value, oid, hs) == 0) or \
                (rv.target_value != NULL and memcmp(rv.target_value, oid, hs) == 0):
            out.add(key.p, key.len, &rv)


cdef int tv_refs_for(const TableView* t, const unsigned char* oid, uint64_t obj_offset,
                     uint64_t obj_index_offset, int id_len, Buf* key, Buf* positions,
                     RefColumns out, uint64_t* eoff) except -1 nogil:
    """The refs of one table whose value or peeled value is ``oid``: through the obj
    index when the table has one (``id_len`` > 0), else by scanning."""
    cdef BlockView b
    cdef uint64_t boff = 0, prev = 0
    cdef bint past = False
    cdef uint32_t pos, after
    cdef int err, extra
    cdef size_t i
    cdef const uint64_t* offs
    if not t.ref_present:
        return E_OK
    if id_len:
        err = tv_seek_block(t, obj_offset, obj_index_offset, BLOCK_OBJ, oid, id_len, key,
                            &boff, &past, eoff)
        if err != E_OK or past:
            return err
        err = bv_parse(t, boff, &b, eoff)
        if err == E_OK and b.typ != BLOCK_OBJ:
            eoff[0] = boff
            err = E_INDEX_BLOCK
        if err == E_OK:
            err = tv_seek_in_block(&b, BLOCK_OBJ, oid, id_len, key, &pos, &after, &extra,
                                   eoff, t)
        if err != E_OK:
            return err
        if pos >= b.restart_start or key_cmp(key.p, key.len, oid, id_len) != 0:
            return E_OK  # the obj index lists every id of the table: none matches
        positions.len = 0
        err = obj_value_decode(b.data, &after, b.restart_start, extra, positions)
        if err != E_OK:
            eoff[0] = b.offset + after
            return err
        offs = <const uint64_t*>positions.p
        for i in range(positions.len // 8):
            # Git writes each block offset once, ascending. A repeated offset would
            # rescan the same block once per repeat (a small obj block could make
            # that take hours and return millions of refs).
            if i and offs[i] <= prev:
                eoff[0] = b.offset + pos
                return E_OBJ_ORDER
            prev = offs[i]
            if offs[i] >= t.data_end:
                eoff[0] = b.offset + pos
                return E_INDEX_TARGET
            err = bv_parse(t, offs[i], &b, eoff)
            if err == E_OK and b.typ != BLOCK_REF:
                eoff[0] = offs[i]
                err = E_INDEX_BLOCK
            if err == E_OK:
                err = _scan_for_oid(t, &b, False, oid, key, out, eoff)
            if err != E_OK:
                return err
        if positions.len:
            return E_OK
        # a record without positions: too many to list, so scan
    err = bv_parse(t, 0, &b, eoff)
    if err != E_OK:
        return err
    return _scan_for_oid(t, &b, True, oid, key, out, eoff)


cdef int tv_ref_lookup(const TableView* t, const unsigned char* kp, size_t klen, Buf* key,
                       RefValue* out, bint* found, uint64_t* eoff) except -1 nogil:
    """Point lookup of a ref name in one table: ``found`` and its value (pointers into
    the table), or an error code."""
    cdef BlockView b
    cdef uint64_t boff = 0
    cdef bint past = False
    cdef uint32_t pos, after
    cdef int err, extra
    found[0] = False
    if not t.ref_present:
        return E_OK
    if t.bloom != NULL and not _bloom_has(t.bloom, t.bloom_mask, _hash_key(kp, klen)):
        return E_OK
    err = tv_seek_block(t, 0, t.ref_index_offset, BLOCK_REF, kp, klen, key, &boff, &past, eoff)
    if err != E_OK or past:
        return err
    err = bv_parse(t, boff, &b, eoff)
    if err == E_OK and b.typ != BLOCK_REF:
        eoff[0] = boff
        err = E_INDEX_BLOCK
    if err == E_OK:
        err = tv_seek_in_block(&b, BLOCK_REF, kp, klen, key, &pos, &after, &extra, eoff, t)
    if err != E_OK or pos >= b.restart_start or key_cmp(key.p, key.len, kp, klen) != 0:
        return err
    err = ref_value_decode(b.data, &after, b.restart_start, t.hash_size, t.min_update_index,
                           extra, out)
    if err != E_OK:
        eoff[0] = b.offset + after
        return err
    found[0] = True
    return E_OK


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
    cdef Reuse reuse         # objects shared with the previous record

    def __dealloc__(self):
        buf_free(&self.key)
        buf_free(&self.stop)

    def __iter__(self):
        return self

    cdef int _set_block(self, Block blk) except -1:
        self.block = blk
        self.pos = blk.v.rec_start
        self.key.len = 0
        self.done = False
        return 0

    cdef int _set_stop(self, const unsigned char* p, size_t n) except -1:
        buf_set(&self.stop, p, n)
        self.has_stop = n > 0
        return 0

    cdef inline int _decode_key(self, int* extra) except -1:
        self.table.keys_read += 1
        return block_decode_key(self.table, self.block, &self.pos, &self.key, extra)

    cdef int _at_end(self) except -1:
        """Move to the next block when this one is used up; true at the end."""
        cdef Block nb
        while True:
            if self.done:
                return 1
            self.table._check_open()
            if self.pos < self.block.v.restart_start:
                return 0
            if self.one_block:
                self.done = True
                return 1
            if self.table._block_type_at(self.block.v.offset + self.block.v.full_size) != self.typ:
                self.done = True
                return 1
            if self.table._evict:
                self.table._evict_range(self.block.v.offset,
                                        self.block.v.offset + self.block.v.full_size)
            nb = self.table._read_block(self.block.v.offset + self.block.v.full_size)
            if nb is None or nb.v.typ != self.typ:
                self.done = True
                return 1
            self._set_block(nb)

    cdef int _advance(self) except -1:
        """Decode the next record's key (value left unread). 0 at the end."""
        cdef uint64_t eoff = 0
        cdef int err
        if self.has_cur:
            return 1
        # (the common case inline: one more record in the current block)
        if self.done or self.table.released or self.pos >= self.block.v.restart_start:
            if self._at_end():
                return 0
        self.table.keys_read += 1
        err = bv_decode_key(&self.block.v, &self.pos, &self.key, &self.extra, &eoff)
        if err != E_OK:
            raise_format(self.table, err, eoff)
        if self.has_stop and (self.key.len < self.stop.len or
                              memcmp(self.key.p, self.stop.p, self.stop.len) != 0):
            self.done = True
            return 0
        self.has_cur = True
        return 1

    cdef int _skip(self) except -1:
        """Consume the current record's value without building anything."""
        self.pos = record_skip(self.table, self.typ, self.extra, self.block.v.data, self.pos,
                               self.block.v.restart_start, self.block.v.offset)
        self.has_cur = False
        return 0

    cdef object _make(self):
        """Build the current record (consuming its value)."""
        cdef object r
        cdef RefValue rv
        cdef LogValue lv
        cdef uint64_t off
        cdef list positions
        cdef TableCore t = self.table
        cdef Block b = self.block
        if self.typ == BLOCK_REF:
            self.pos = ref_decode(t, b.v.data, self.pos, b.v.restart_start, b.v.offset, self.extra,
                                  &rv)
            r = ref_object(self.key.p, self.key.len, &rv, t.hash_size, self.records, self.reuse)
        elif self.typ == BLOCK_LOG:
            log_key_decode(t, self.key.p, self.key.len, b.v.offset + self.pos, &lv.update_index)
            self.pos = log_decode(t, b.v.data, self.pos, b.v.restart_start, b.v.offset, self.extra,
                                  &lv)
            r = log_object(self.key.p, self.key.len, &lv, t.hash_size, self.records, self.reuse)
        elif self.typ == BLOCK_OBJ:
            positions = []
            self.pos = obj_decode(t, b.v.data, self.pos, b.v.restart_start, b.v.offset, self.extra,
                                  positions)
            r = (_bytes(self.key.p, self.key.len), positions)
        else:
            self.pos = index_decode(t, b.v.data, self.pos, b.v.restart_start, b.v.offset, &off)
            r = (_bytes(self.key.p, self.key.len), PyLong_FromUnsignedLongLong(off))
        self.has_cur = False
        return r

    cdef int _seek_in_block(self, const unsigned char* kp, size_t klen) except -1:
        """Position before the first record of this block with key >= the given key
        (or at the block's end)."""
        cdef Block b = self.block
        cdef uint32_t save
        cdef int extra
        self.has_cur = False
        self.pos = block_seek_restart(self.table, b, kp, klen)
        self.key.len = 0
        while self.pos < b.v.restart_start:
            save = self.pos
            self._decode_key(&extra)
            if key_cmp(self.key.p, self.key.len, kp, klen) >= 0:
                # Step back so that the next record returned is this one. The key
                # buffer can stay: decoding the record again keeps its first `prefix`
                # bytes, which it shares with the previous key, and re-adds the suffix.
                self.pos = save
                return 0
            self.pos = record_skip(self.table, self.typ, extra, b.v.data, self.pos,
                                   b.v.restart_start, b.v.offset)
        return 0

    def __next__(self):
        if self.typ == BLOCK_REF:
            return self._next_ref()
        if not self._advance():
            raise StopIteration
        return self._make()

    cdef object _next_ref(self):
        """``__next__`` of a ref iterator, the common case (one more record in the
        current block) decoded inline."""
        cdef Block blk = self.block
        cdef TableCore t = self.table
        cdef RefValue rv
        cdef uint64_t eoff = 0
        cdef uint32_t pos = self.pos
        cdef int err, extra
        if self.has_cur or self.done or t.released or pos >= blk.v.restart_start:
            if not self._advance():
                raise StopIteration
            return self._make()
        err = bv_decode_key(&blk.v, &pos, &self.key, &extra, &eoff)
        if err == E_OK:
            t.keys_read += 1
            if self.has_stop and (self.key.len < self.stop.len or
                                  memcmp(self.key.p, self.stop.p, self.stop.len) != 0):
                self.pos = pos
                self.done = True
                raise StopIteration
            err = ref_value_decode(blk.v.data, &pos, blk.v.restart_start, t.hash_size,
                                   t.min_update_index, extra, &rv)
            if err != E_OK:
                eoff = blk.v.offset + pos
        if err != E_OK:
            raise_format(t, err, eoff)
        self.pos = pos
        return ref_object(self.key.p, self.key.len, &rv, t.hash_size, self.records, self.reuse)

    def next_key(self):
        """Return the key of the next record without consuming it, or None."""
        if not self._advance():
            return None
        return _bytes(self.key.p, self.key.len)

    def count(self):
        """Consume the iterator and return how many records it had (no objects built)."""
        cdef Py_ssize_t n = 0
        if self.typ == BLOCK_REF:
            return self._collect(COLS_COUNT)
        while self._advance():
            self._skip()
            n += 1
        return n

    def ref_columns(self, bint packed=False):
        """Consume a ref iterator; return the columns of ``RefColumns.result``
        (``COLS_PACKED`` when ``packed``: names as bytes and end offsets). The records
        are decoded without the GIL."""
        if self.typ != BLOCK_REF:
            raise ValueError("ref_columns needs a ref iterator")
        return self._collect(COLS_PACKED if packed else COLS_ALL)

    def names(self):
        """Consume the iterator and return the keys as ``str`` (ref sections: names)."""
        cdef list out = []
        if self.typ == BLOCK_REF:
            return self._collect(COLS_NAMES)
        while self._advance():
            out.append(_str(self.key.p, self.key.len))
            self._skip()
        return out

    cdef object _collect(self, int mode):
        """Consume a ref iterator into a ``RefColumns`` of ``mode``; return its result.
        Batches of records are decoded without the GIL (the table stays mapped until
        the end, even if closed meanwhile), then turned into objects with it."""
        cdef RefValue rv
        cdef Block b
        cdef BlockView bv
        cdef TableView view
        cdef TableCore t = self.table
        cdef RefColumns c = new_columns(t.hash_size, mode)
        cdef uint32_t pos
        cdef uint64_t eoff = 0
        cdef int err = E_OK
        cdef bint more = True
        if self.has_cur:  # a key already decoded (next_key): its record comes first
            b = self.block
            self.pos = ref_decode(t, b.v.data, self.pos, b.v.restart_start, b.v.offset,
                                  self.extra, &rv)
            self.has_cur = False
            c.add(self.key.p, self.key.len, &rv)
            c.flush()  # (its key is counted already)
        if not self._at_end():
            c.reserve(t.data_end - self.block.v.offset)
            bv = self.block.v
            view = t.view
            pos = self.pos
            t._pins += 1
            try:
                while more:
                    with nogil:
                        err = _scan_columns(&view, &bv, &pos, &self.key, &self.stop,
                                            self.has_stop, self.one_block, c, cols_batch(mode),
                                            &more, &eoff)
                    t.keys_read += c.n
                    if err != E_OK:
                        break
                    c.flush()
            finally:
                t._unpin()
        self.done = True
        if err != E_OK:
            raise_format(t, err, eoff)
        return c.result()
