# Layer 6: several tables as one. A k-way merge of one section of several tables, in
# which the newest table's record of a key wins; compaction copies merged records into
# a writer without building Python objects.

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



cdef object _to_name_bytes = None


def merged_lookup_many(list cores, names, bint suppress_deletions=True):
    """``merged_lookup`` of many names at once; the searching runs without the GIL, so
    threads looking up in the same tables run in parallel. The tables stay mapped
    until it is done, even if closed meanwhile.

    A name is ``bytes`` or ``str``: a ``str`` is searched as its UTF-8 form (no bytes
    object is made) and becomes the found record's name; anything else goes through
    ``records.to_name_bytes``. Work done holding the GIL is what two threads cannot
    share, hence no conversion per name in Python."""
    global _to_name_bytes
    cdef tuple held = tuple(names)  # the objects whose bytes are read without the GIL
    cdef list keep = []        # bytes made from names (kept alive until the end)
    cdef Py_ssize_t m = len(cores), n = len(held), i, k
    cdef TableView* views = NULL
    cdef const unsigned char** kps = NULL
    cdef size_t* klens = NULL
    cdef RefValue* vals = NULL
    cdef int* where = NULL
    cdef int* errs = NULL
    cdef uint64_t* eoffs = NULL
    cdef char* named = NULL    # the name is held[k] itself (an exact str)
    cdef unsigned char* ids = NULL  # copies of the found ids, 2 * HASH_MAX bytes a name
    cdef unsigned char* slot
    cdef Py_ssize_t pinned = 0
    cdef TableCore c
    cdef Buf key
    cdef bint found
    cdef int err
    cdef list out
    key.p = NULL
    key.len = key.cap = 0
    try:
        views = <TableView*>malloc(sizeof(TableView) * (m + 1))
        kps = <const unsigned char**>malloc(sizeof(void*) * (n + 1))
        klens = <size_t*>malloc(sizeof(size_t) * (n + 1))
        vals = <RefValue*>malloc(sizeof(RefValue) * (n + 1))
        where = <int*>malloc(sizeof(int) * (n + 1))
        errs = <int*>malloc(sizeof(int) * (n + 1))
        eoffs = <uint64_t*>malloc(sizeof(uint64_t) * (n + 1))
        named = <char*>malloc(n + 1)
        ids = <unsigned char*>malloc(2 * HASH_MAX * (n + 1))
        if not (views and kps and klens and vals and where and errs and eoffs and named
                and ids):
            raise MemoryError()
        for k in range(n):
            x = held[k]
            named[k] = type(x) is str
            if not named[k] and type(x) is not bytes:
                if _to_name_bytes is None:
                    from .records import to_name_bytes
                    _to_name_bytes = to_name_bytes
                x = _to_name_bytes(x)
                keep.append(x)
            kps[k] = _utf8(x, &klens[k], keep)
        for i in range(m):
            c = <TableCore>cores[i]
            c._check_open()
            c._note_lookups(n)
            views[i] = c.view
            c._pins += 1
            pinned += 1
        with nogil:
            for k in range(n):
                where[k] = -1
                errs[k] = E_OK
                i = m - 1
                while i >= 0:
                    err = tv_ref_lookup(&views[i], kps[k], klens[k], &key, &vals[k], &found,
                                        &eoffs[k])
                    if err != E_OK:
                        errs[k] = err
                        where[k] = <int>i
                        break
                    if found:
                        where[k] = <int>i
                        # Copy the ids while their block is in the cache: read back
                        # later, holding the GIL, they cost a cache miss each (that
                        # was most of the time two threads could not share).
                        slot = ids + 2 * HASH_MAX * k
                        if vals[k].value != NULL:
                            memcpy(slot, vals[k].value, views[i].hash_size)
                            vals[k].value = slot
                        if vals[k].target_value != NULL:
                            memcpy(slot + HASH_MAX, vals[k].target_value, views[i].hash_size)
                            vals[k].target_value = slot + HASH_MAX
                        break
                    i -= 1
        out = [None] * n
        for k in range(n):
            if where[k] < 0:
                continue
            c = <TableCore>cores[where[k]]
            if errs[k] != E_OK:
                raise_format(c, errs[k], eoffs[k])
            if suppress_deletions and vals[k].value_type == 0:
                continue
            x = held[k] if named[k] else _str(kps[k], klens[k])
            out[k] = ref_object_named(x, &vals[k], c.hash_size, True, c._reuse)
        return out
    finally:
        for i in range(pinned):
            (<TableCore>cores[i])._unpin()
        buf_free(&key)
        free(views)
        free(kps)
        free(klens)
        free(vals)
        free(where)
        free(errs)
        free(eoffs)
        free(named)
        free(ids)


cdef inline bint _heap_less(Buf** keys, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    cdef int c = key_cmp(keys[a].p, keys[a].len, keys[b].p, keys[b].len)
    if c:
        return c < 0
    return a > b  # same key: the newer table first


cdef void _heap_sift_down(Py_ssize_t* h, Py_ssize_t hlen, Buf** keys,
                          Py_ssize_t pos) noexcept nogil:
    """Restore the heap of source indexes (by key, newest first) below ``pos``."""
    cdef Py_ssize_t child, t
    while True:
        child = 2 * pos + 1
        if child >= hlen:
            return
        if child + 1 < hlen and _heap_less(keys, h[child + 1], h[child]):
            child += 1
        if not _heap_less(keys, h[child], h[pos]):
            return
        t = h[pos]
        h[pos] = h[child]
        h[child] = t
        pos = child


cdef struct MergeSrc:
    # one table's ref iterator, detached from its RecordIter to run without the GIL:
    # its key (``keys[i]``, inside the RecordIter) is decoded, its value unread
    TableView view
    BlockView b
    uint32_t pos
    int extra
    const Buf* stop
    bint has_stop
    bint one_block
    uint64_t keys_read


cdef int _src_next(MergeSrc* s, Buf* key, bint* live, uint64_t* eoff) except -1 nogil:
    """Skip the current record's value, then decode the next key (``live`` false at the
    end of the section or of the stop prefix)."""
    cdef RefValue rv
    cdef int err = ref_value_decode(s.b.data, &s.pos, s.b.restart_start, s.view.hash_size,
                                    s.view.min_update_index, s.extra, &rv)
    if err != E_OK:
        eoff[0] = s.b.offset + s.pos
        return err
    return _src_key(s, key, live, eoff)


cdef int _src_key(MergeSrc* s, Buf* key, bint* live, uint64_t* eoff) except -1 nogil:
    cdef int err
    live[0] = False
    if s.pos >= s.b.restart_start:
        if s.one_block or not tv_block_may_be(&s.view, s.b.offset + s.b.full_size, BLOCK_REF):
            return E_OK
        err = bv_parse(&s.view, s.b.offset + s.b.full_size, &s.b, eoff)
        if err != E_OK:
            return err
        s.pos = s.b.rec_start
        key.len = 0
    err = bv_decode_key(&s.b, &s.pos, key, &s.extra, eoff)
    if err != E_OK:
        return err
    s.keys_read += 1
    if s.has_stop and (key.len < s.stop.len or memcmp(key.p, s.stop.p, s.stop.len) != 0):
        return E_OK
    live[0] = True
    return E_OK


cdef int _merge_columns(MergeSrc* srcs, Py_ssize_t* heap, Py_ssize_t* hlen, Buf** keys,
                        Buf* last, bint suppress, RefColumns c, Py_ssize_t limit,
                        bint* more, Py_ssize_t* bad, uint64_t* eoff) except -1 nogil:
    """The k-way merge of ``MergedIter`` over detached sources: add up to ``limit``
    visible refs to ``c`` (``more`` when it stopped there); on damage, the source in
    ``bad`` and an error code."""
    cdef Py_ssize_t k, i
    cdef MergeSrc* s
    cdef RefValue rv
    cdef bint live
    cdef int err
    more[0] = False
    k = 0
    while hlen[0]:
        i = heap[0]
        s = &srcs[i]
        bad[0] = i
        if k == limit:
            more[0] = True
            return E_OK
        buf_set(last, keys[i].p, keys[i].len)
        if not (suppress and s.extra == 0):  # (a tombstone hides older records only)
            err = ref_value_decode(s.b.data, &s.pos, s.b.restart_start, s.view.hash_size,
                                   s.view.min_update_index, s.extra, &rv)
            if err != E_OK:
                eoff[0] = s.b.offset + s.pos
                return err
            c.add(last.p, last.len, &rv)
            k += 1
            err = _src_key(s, keys[i], &live, eoff)
        else:
            err = _src_next(s, keys[i], &live, eoff)
        # the winner moved on, then every older record of the same key is dropped
        while True:
            if err != E_OK:
                return err
            if not live:
                hlen[0] -= 1
                heap[0] = heap[hlen[0]]
            _heap_sift_down(heap, hlen[0], keys, 0)
            if not hlen[0]:
                break
            i = heap[0]
            if key_cmp(keys[i].p, keys[i].len, last.p, last.len) != 0:
                break
            bad[0] = i
            err = _src_next(&srcs[i], keys[i], &live, eoff)
    return E_OK


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
    cdef Buf** keys            # the current key of each iterator (inside it: stable)
    cdef Py_ssize_t hlen
    cdef bint primed
    cdef Py_ssize_t pending    # the winner handed out last; consumed by the caller
    cdef Buf last              # its key

    def __cinit__(self):
        self.heap = NULL
        self.keys = NULL
        self.pending = -1

    def __dealloc__(self):
        free(self.heap)
        free(self.keys)
        buf_free(&self.last)

    def __init__(self, iters, int typ, bint suppress_deletions=True):
        cdef Py_ssize_t i
        cdef list its = list(iters)
        for it in its:
            # _step and copy_to cast without checking, and copy_to decodes values by
            # self.typ after validating them by the iterator's own type
            if not isinstance(it, RecordIter) or (<RecordIter>it).typ != typ:
                raise TypeError("MergedIter needs RecordIters over one section type")
        self.iters = its
        self.n = len(its)
        self.typ = typ
        self.suppress = suppress_deletions
        free(self.heap)
        free(self.keys)
        self.heap = <Py_ssize_t*>malloc((self.n + 1) * sizeof(Py_ssize_t))
        self.keys = <Buf**>malloc((self.n + 1) * sizeof(Buf*))
        if self.heap == NULL or self.keys == NULL:
            raise MemoryError()
        for i in range(self.n):
            self.keys[i] = &(<RecordIter>self.iters[i]).key
        self.hlen = 0
        self.primed = False
        self.pending = -1

    def __iter__(self):
        return self

    cdef inline void _sift_down(self, Py_ssize_t pos) noexcept:
        _heap_sift_down(self.heap, self.hlen, self.keys, pos)

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

    def ref_columns(self, bint packed=False):
        """Consume a merged ref iterator; the columns of ``RecordIter.ref_columns``."""
        if self.typ != BLOCK_REF:
            raise ValueError("ref_columns needs ref iterators")
        return self._collect(COLS_PACKED if packed else COLS_ALL)

    cdef object _collect(self, int mode):
        """Consume a merged ref iterator into a ``RefColumns`` of ``mode``; return its
        result. The merge runs without the GIL a batch at a time (the tables stay mapped
        until the end, even if closed meanwhile)."""
        cdef RecordIter it
        cdef RefColumns c
        cdef MergeSrc* srcs = NULL
        cdef Py_ssize_t i, bad = 0, pinned = 0
        cdef uint64_t eoff = 0
        cdef int err = E_OK
        cdef bint more = True
        if self._step() < 0:  # primes the heap: each live iterator has its key decoded
            return new_columns(20, mode).result()
        self.pending = -1
        it = <RecordIter>self.iters[self.heap[0]]
        c = new_columns(it.table.hash_size, mode)
        c.reserve(sum([(<RecordIter>x).table.data_end for x in self.iters]))
        srcs = <MergeSrc*>calloc(self.n + 1, sizeof(MergeSrc))
        if srcs == NULL:
            raise MemoryError()
        try:
            for i in range(self.n):
                it = <RecordIter>self.iters[i]
                it.table._check_open()
                it.table._pins += 1
                pinned += 1
                if it.block is not None:
                    srcs[i].b = it.block.v
                srcs[i].view = it.table.view
                srcs[i].pos = it.pos
                srcs[i].extra = it.extra
                srcs[i].stop = &it.stop
                srcs[i].has_stop = it.has_stop
                srcs[i].one_block = it.one_block
                it.done = True    # its state moves to srcs[i] (and keys[i])
                it.has_cur = False
            while more:
                with nogil:
                    err = _merge_columns(srcs, self.heap, &self.hlen, self.keys, &self.last,
                                         self.suppress, c, cols_batch(mode), &more, &bad,
                                         &eoff)
                if err != E_OK:
                    self.hlen = 0
                    raise_format((<RecordIter>self.iters[bad]).table, err, eoff)
                c.flush()
        finally:
            for i in range(pinned):
                it = <RecordIter>self.iters[i]
                it.table.keys_read += srcs[i].keys_read
                it.table._unpin()
            free(srcs)
        return c.result()

    def count(self):
        cdef Py_ssize_t i, c = 0
        if self.typ == BLOCK_REF:
            return self._collect(COLS_COUNT)
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
        return self._copy_to(w, drop_deletions, min_update_index, min_time,
                             normalize_messages, progress)

    cdef Py_ssize_t _copy_to(self, WriterCore w, bint drop_deletions, uint64_t min_update_index,
                             uint64_t min_time, bint normalize_messages,
                             object progress) except -1:
        cdef Py_ssize_t i, written = 0, seen = 0
        cdef RecordIter it
        cdef Block b
        cdef RefValue rv
        cdef LogValue lv
        while True:
            i = self._step()
            if i < 0:
                return written
            it = <RecordIter>self.iters[i]
            seen += 1
            if progress is not None and (seen & 0xFFFF) == 0:
                progress(seen)
            b = it.block
            it.has_cur = False
            if self.typ == BLOCK_REF:
                it.pos = ref_decode(it.table, b.v.data, it.pos, b.v.restart_start, b.v.offset,
                                    it.extra, &rv)
                if drop_deletions and rv.value_type == 0:
                    continue
                w._add_ref(it.key.p, it.key.len, &rv)
            else:
                log_key_decode(it.table, it.key.p, it.key.len, b.v.offset + it.pos,
                               &lv.update_index)
                it.pos = log_decode(it.table, b.v.data, it.pos, b.v.restart_start, b.v.offset,
                                    it.extra, &lv)
                if drop_deletions and lv.value_type == 0:
                    continue
                if min_update_index and lv.update_index < min_update_index:
                    continue
                if lv.value_type == 1:
                    if min_time and lv.time < min_time:
                        continue
                    if normalize_messages:
                        log_message_normalize(&lv)  # multi-line messages stay as they are
                w._add_log(it.key.p, it.key.len - 9, &lv)
            written += 1
