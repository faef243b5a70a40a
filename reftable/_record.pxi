# Layer 3: records. One encoder and one decoder per record type (ref, log, obj, index),
# used by the writer, the readers and compaction alike; and the Python record objects
# built from decoded values.
#
# Decoders take the bytes after a record's key and fill a C struct whose pointers point
# into the block; they check every length against the block's end and return the
# position after the value.

from cpython.object cimport PyTypeObject, Py_TYPE
from cpython.unicode cimport PyUnicode_DecodeUTF8, PyUnicode_AsUTF8AndSize
from cpython.long cimport PyLong_AsUnsignedLongLong, PyLong_AsLong
from cpython.tuple cimport PyTuple_New
import types as _types

cdef extern from "Python.h":
    PyObject* PyType_GenericAlloc(PyTypeObject* t, Py_ssize_t n)
    PyObject* _PyObject_GC_New(PyTypeObject* t)
    unsigned long PyType_GetFlags(PyTypeObject* t)
    unsigned long Py_TPFLAGS_HAVE_GC
    void PyObject_GC_UnTrack(void* o)
    void PyTuple_SET_ITEM(object t, Py_ssize_t i, PyObject* o)
    PyObject* PyTuple_GET_ITEM(object t, Py_ssize_t i)
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
        int type
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member


cdef struct RefValue:
    uint64_t update_index
    int value_type                    # 0 deletion, 1 id, 2 id + peeled, 3 symref
    const unsigned char* value        # hash_size bytes (types 1, 2)
    const unsigned char* target_value # hash_size bytes (type 2)
    const unsigned char* target       # symref target (type 3)
    size_t target_len


cdef struct LogValue:
    uint64_t update_index             # from the key
    int value_type                    # 0 deletion, 1 update
    const unsigned char* old_id
    const unsigned char* new_id
    const unsigned char* name
    size_t name_len
    const unsigned char* email
    size_t email_len
    uint64_t time
    int tz_offset
    const unsigned char* message
    size_t message_len
    bint message_newline              # a newline follows the message (normalised)


cdef inline int _get_str(TableCore t, const unsigned char* p, uint32_t* pos, uint32_t end,
                         uint64_t boff, const unsigned char** out, size_t* n,
                         const char* what) except -1:
    cdef uint64_t v
    cdef int k = get_varint(p + pos[0], end - pos[0], &v)
    if k < 0 or v > end - pos[0] - k:
        raise t._err(f"bad {what.decode()} length", boff + pos[0])
    out[0] = p + pos[0] + k
    n[0] = <size_t>v
    pos[0] += k + <uint32_t>v
    return 0


cdef inline int _put_str(Buf* s, const unsigned char* p, size_t n) except -1:
    buf_reserve(s, n + 10)
    s.len += put_varint(s.p + s.len, <uint64_t>n)
    buf_append(s, p, n)
    return 0


# -- ref ------------------------------------------------------------------------------
# value: varint(update_index - table's min_update_index), then by type: nothing,
# one id, two ids, or varint(length) + symref target.

cdef int ref_encode(Buf* s, const RefValue* v, uint64_t min_update_index,
                    int hash_size) except -1:
    s.len = 0
    buf_reserve(s, 10)
    s.len = put_varint(s.p, v.update_index - min_update_index)
    if v.value_type == 1 or v.value_type == 2:
        buf_append(s, v.value, hash_size)
        if v.value_type == 2:
            buf_append(s, v.target_value, hash_size)
    elif v.value_type == 3:
        _put_str(s, v.target, v.target_len)
    return 0


cdef inline int ref_value_decode(const unsigned char* p, uint32_t* pos, uint32_t end,
                                 int hash_size, uint64_t min_update_index, int extra,
                                 RefValue* v) noexcept nogil:
    """Decode the ref value at ``pos`` (advanced past it); an error code with ``pos``
    at the damage."""
    cdef uint64_t delta, tl
    cdef int n = get_varint(p + pos[0], end - pos[0], &delta)
    if n < 0:
        return E_UI_VARINT
    if delta > UINT64_MAX - min_update_index:
        return E_UI_OVERFLOW
    pos[0] += n
    v.update_index = min_update_index + delta
    v.value_type = extra
    v.value = v.target_value = v.target = NULL
    v.target_len = 0
    if extra == 1 or extra == 2:
        if <uint64_t>extra * hash_size > end - pos[0]:
            return E_OID_TRUNC
        v.value = p + pos[0]
        if extra == 2:
            v.target_value = p + pos[0] + hash_size
        pos[0] += extra * hash_size
    elif extra == 3:
        n = get_varint(p + pos[0], end - pos[0], &tl)
        if n < 0 or tl > end - pos[0] - n:
            return E_SYMREF_LEN
        v.target = p + pos[0] + n
        v.target_len = <size_t>tl
        pos[0] += n + <uint32_t>tl
    elif extra != 0:
        return E_REF_TYPE
    return E_OK


cdef inline uint32_t ref_decode(TableCore t, const unsigned char* p, uint32_t pos, uint32_t end,
                                uint64_t boff, int extra, RefValue* v) except? 0:
    cdef int err = ref_value_decode(p, &pos, end, t.hash_size, t.min_update_index, extra, v)
    if err != E_OK:
        raise_format(t, err, boff + pos)
    return pos


# -- log ------------------------------------------------------------------------------
# key: ref name, NUL, 64-bit big-endian (2^64 - 1 - update_index), so that the newest
# entry of a ref comes first. value (updates only): old id, new id, varint-prefixed
# name and email, varint time, 16-bit timezone offset, varint-prefixed message.

cdef int log_key_encode(Buf* k, const unsigned char* name, size_t n,
                        uint64_t update_index) except -1:
    k.len = 0
    buf_reserve(k, n + 9)
    memcpy(k.p, name, n)
    k.p[n] = 0
    put_be64(k.p + n + 1, UINT64_MAX - update_index)
    k.len = n + 9
    return 0


def log_key(bytes refname, uint64_t update_index):
    """The key of a log record: name, NUL, inverted update index."""
    cdef Buf k
    k.p = NULL
    k.len = k.cap = 0
    try:
        log_key_encode(&k, <const unsigned char*>PyBytes_AS_STRING(refname),
                       PyBytes_GET_SIZE(refname), update_index)
        return _bytes(k.p, k.len)
    finally:
        buf_free(&k)


cdef int log_key_decode(TableCore t, const unsigned char* key, size_t klen, uint64_t boff,
                        uint64_t* update_index) except -1:
    """Check a log key and return its update index (the name is ``klen - 9`` bytes)."""
    if klen < 10 or key[klen - 9] != 0:
        raise t._err("log key lacks its update index suffix", boff)
    update_index[0] = UINT64_MAX - get_be64(key + klen - 8)
    return 0


cdef bint log_message_normalize(LogValue* v) noexcept:
    """Git's normalisation of a message: one line ending in exactly one newline.
    False (``v`` unchanged) when the message has newlines inside."""
    cdef size_t keep = v.message_len
    while keep and v.message[keep - 1] == 10:
        keep -= 1
    if keep and memchr(v.message, 10, keep) != NULL:
        return False
    v.message_len = keep
    v.message_newline = True
    return True


def normalize_message(bytes message):
    """``message`` normalised as Git's writer does; None when it spans several lines."""
    cdef LogValue v
    v.message = <const unsigned char*>PyBytes_AS_STRING(message)
    v.message_len = PyBytes_GET_SIZE(message)
    if not log_message_normalize(&v):
        return None
    return message[:v.message_len] + b"\n"


cdef int log_encode(Buf* s, const LogValue* v, int hash_size) except -1:
    s.len = 0
    if v.value_type == 0:
        return 0
    buf_append(s, v.old_id, hash_size)
    buf_append(s, v.new_id, hash_size)
    _put_str(s, v.name, v.name_len)
    _put_str(s, v.email, v.email_len)
    buf_reserve(s, 12)
    s.len += put_varint(s.p + s.len, v.time)
    put_be16(s.p + s.len, <uint32_t>(<uint16_t>v.tz_offset))
    s.len += 2
    if v.message_newline:
        buf_reserve(s, 10)
        s.len += put_varint(s.p + s.len, <uint64_t>v.message_len + 1)
        buf_append(s, v.message, v.message_len)
        buf_append(s, <const unsigned char*>b"\n", 1)
    else:
        _put_str(s, v.message, v.message_len)
    return 0


cdef uint32_t log_decode(TableCore t, const unsigned char* p, uint32_t pos, uint32_t end,
                         uint64_t boff, int extra, LogValue* v) except? 0:
    cdef int n, hs = t.hash_size
    v.value_type = extra
    v.old_id = v.new_id = v.name = v.email = v.message = NULL
    v.name_len = v.email_len = v.message_len = 0
    v.time = 0
    v.tz_offset = 0
    v.message_newline = False
    if extra == 0:
        return pos
    if extra != 1:
        raise t._err(f"unknown log value type {extra}", boff + pos)
    if <uint64_t>2 * hs > end - pos:
        raise t._err("truncated log object ids", boff + pos)
    v.old_id = p + pos
    v.new_id = p + pos + hs
    pos += 2 * hs
    _get_str(t, p, &pos, end, boff, &v.name, &v.name_len, b"log name")
    _get_str(t, p, &pos, end, boff, &v.email, &v.email_len, b"log email")
    n = get_varint(p + pos, end - pos, &v.time)
    if n < 0:
        raise t._err("bad log time varint", boff + pos)
    pos += n
    if end - pos < 2:
        raise t._err("truncated log timezone", boff + pos)
    v.tz_offset = <int>(<int16_t>get_be16(p + pos))
    pos += 2
    _get_str(t, p, &pos, end, boff, &v.message, &v.message_len, b"log message")
    return pos


# -- obj ------------------------------------------------------------------------------
# key: an abbreviated object id. value: the count of block positions in the record's
# 3 value-type bits when it is 1..7, else a varint count; then the first position and
# the deltas to the next ones.

cdef int obj_encode(Buf* s, const uint64_t* positions, size_t count, int* extra) except -1:
    cdef size_t i
    s.len = 0
    buf_reserve(s, 10 * (count + 1))
    if count >= 8 or count == 0:
        s.len += put_varint(s.p + s.len, count)
    for i in range(count):
        s.len += put_varint(s.p + s.len, positions[i] - (positions[i - 1] if i else 0))
    extra[0] = <int>(count if 0 < count < 8 else 0)
    return 0


cdef int obj_value_decode(const unsigned char* p, uint32_t* pos, uint32_t end, int extra,
                          Buf* positions) except -1 nogil:
    """Decode an obj value at ``pos`` (advanced past it); with a buffer, append the
    block positions to it (uint64_t each). An error code with ``pos`` at the damage."""
    cdef uint64_t cnt = extra, v, last = 0, i
    cdef int n
    if extra == 0:
        n = get_varint(p + pos[0], end - pos[0], &cnt)
        if n < 0:
            return E_OBJ_COUNT
        pos[0] += n
    if cnt > end - pos[0]:
        return E_OBJ_COUNT
    for i in range(cnt):
        n = get_varint(p + pos[0], end - pos[0], &v)
        if n < 0:
            return E_OBJ_VARINT
        if i and v > UINT64_MAX - last:
            return E_OBJ_OVERFLOW
        pos[0] += n
        last = v if i == 0 else last + v
        if positions != NULL:
            buf_append(positions, <const unsigned char*>&last, 8)
    return E_OK


cdef uint32_t obj_decode(TableCore t, const unsigned char* p, uint32_t pos, uint32_t end,
                         uint64_t boff, int extra, list positions) except? 0:
    """Check an obj value; with a list, append its positions to it."""
    cdef Buf buf
    cdef size_t i
    cdef int err
    buf.p = NULL
    buf.len = buf.cap = 0
    try:
        err = obj_value_decode(p, &pos, end, extra, &buf if positions is not None else NULL)
        if err != E_OK:
            raise_format(t, err, boff + pos)
        for i in range(buf.len // 8):
            positions.append(PyLong_FromUnsignedLongLong((<uint64_t*>buf.p)[i]))
    finally:
        buf_free(&buf)
    return pos


# -- index ----------------------------------------------------------------------------
# key: the last key of a block. value: varint offset of that block.

cdef inline int index_encode(unsigned char* out, uint64_t offset) noexcept:
    return put_varint(out, offset)


cdef inline int index_value_decode(const unsigned char* p, uint32_t* pos, uint32_t end,
                                   uint64_t* offset) noexcept nogil:
    cdef int n = get_varint(p + pos[0], end - pos[0], offset)
    if n < 0:
        return E_INDEX_VARINT
    pos[0] += n
    return E_OK


cdef uint32_t index_decode(TableCore t, const unsigned char* p, uint32_t pos, uint32_t end,
                           uint64_t boff, uint64_t* offset) except? 0:
    cdef int err = index_value_decode(p, &pos, end, offset)
    if err != E_OK:
        raise_format(t, err, boff + pos)
    return pos


cdef uint32_t record_skip(TableCore t, int typ, int extra, const unsigned char* p,
                          uint32_t pos, uint32_t end, uint64_t boff) except? 0:
    """Check the value of a record whose key ends at ``pos``; return the position
    after it."""
    cdef RefValue rv
    cdef LogValue lv
    cdef uint64_t off
    if typ == BLOCK_REF:
        return ref_decode(t, p, pos, end, boff, extra, &rv)
    if typ == BLOCK_LOG:
        return log_decode(t, p, pos, end, boff, extra, &lv)
    if typ == BLOCK_OBJ:
        return obj_decode(t, p, pos, end, boff, extra, None)
    return index_decode(t, p, pos, end, boff, &off)


# ---------------------------------------------------------------------------
# Record objects built directly in C.
#
# RefRecord and LogRecord are slotted classes. Calling their constructors would cost
# far more than decoding; when the classes are registered and their fields are plain
# slot descriptors, records are allocated with tp_alloc and their slots filled by
# offset, which is what the constructor ends up doing, minus the overhead (no tuple of
# arguments, no attribute lookups).

cdef object _RefCls = None
cdef object _LogCls = None
cdef Py_ssize_t _ref_offs[6]
cdef Py_ssize_t _log_offs[10]
cdef bint _fast_records = False
cdef bint _exact_records = False   # the slots are all of each object: allocate unzeroed
cdef tuple _ref_vts = (0, 1, 2, 3)
cdef tuple _ints = (0, 1, 2, 3)
cdef tuple _log_vts = (0, 1)
_REF_FIELDS = ("name", "update_index", "value_type", "value", "target_value", "target")
_LOG_FIELDS = ("refname", "update_index", "value_type", "old_id", "new_id", "name", "email",
               "time", "tz_offset", "message")


def register_record_types(refcls, logcls, ref_vts, log_vts):
    """Tell the core which classes to build for ref and log records (done once by
    ``reftable.records``)."""
    global _RefCls, _LogCls, _fast_records, _exact_records, _ref_vts, _log_vts
    cdef int i
    cdef Py_ssize_t* offs
    _RefCls = refcls
    _LogCls = logcls
    _ref_vts = tuple(ref_vts)
    _log_vts = tuple(log_vts)
    ok = exact = True
    for cls, fields in ((refcls, _REF_FIELDS), (logcls, _LOG_FIELDS)):
        if getattr(cls, "__dictoffset__", 1) != 0 or "__slots__" not in cls.__dict__:
            ok = False
            break
        offs = &_ref_offs[0] if cls is refcls else &_log_offs[0]
        for i in range(len(fields)):
            d = cls.__dict__.get(fields[i])
            if type(d) is not _types.MemberDescriptorType:
                ok = False
                break
            offs[i] = (<PyMemberDescrObject*>d).d_member.offset
        # the fields fill the whole object (nothing else to initialise) and it is a GC
        # type: records can then skip the zeroing and GC tracking of tp_alloc
        exact = exact and ok and cls.__itemsize__ == 0 and \
            PyType_GetFlags(<PyTypeObject*>cls) & Py_TPFLAGS_HAVE_GC and \
            cls.__basicsize__ == sizeof(PyObject) + len(fields) * sizeof(PyObject*) and \
            sorted([offs[i] for i in range(len(fields))]) == \
            [sizeof(PyObject) + i * sizeof(PyObject*) for i in range(len(fields))]
    _fast_records = ok
    _exact_records = ok and exact
    return ok


cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)


cdef inline bint _is_ascii(const unsigned char* p, size_t n) noexcept nogil:
    cdef uint64_t w, acc = 0
    cdef size_t i = 0
    if n < 8:
        while i < n:
            acc |= p[i]
            i += 1
        return (acc & 0x80) == 0
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        acc |= w
        i += 8
    memcpy(&w, p + n - 8, 8)  # the tail: the last 8 bytes, overlapping the words read
    acc |= w
    return (acc & <uint64_t>0x8080808080808080ULL) == 0


cdef inline object _str(const unsigned char* p, size_t n):
    """Names are ASCII almost always: copy them into a compact str directly; anything
    else is decoded from UTF-8, undecodable bytes kept as surrogate escapes."""
    cdef object s
    if _is_ascii(p, n):
        s = PyUnicode_New(n, 127)
        memcpy(PyUnicode_DATA(s), p, n)
        return s
    return PyUnicode_DecodeUTF8(<const char*>p, n, "surrogateescape")


cdef inline object _bytes(const unsigned char* p, size_t n):
    return PyBytes_FromStringAndSize(<const char*>p, n)


cdef inline object _opt_bytes(const unsigned char* p, size_t n):
    return None if p == NULL else PyBytes_FromStringAndSize(<const char*>p, n)


cdef class Reuse:
    """Objects of the previous record, handed out again when the next record has the
    same value: in a table most refs share a few update indexes, and the entries of
    a reflog share their ref name, author, email and timezone."""

    cdef uint64_t ui
    cdef object ui_obj
    cdef int tz
    cdef object tz_obj
    cdef Buf refname, name, email
    cdef object refname_obj, name_obj, email_obj

    def __dealloc__(self):
        buf_free(&self.refname)
        buf_free(&self.name)
        buf_free(&self.email)

    cdef inline object update_index(self, uint64_t v):
        if self.ui_obj is None or self.ui != v:
            self.ui_obj = PyLong_FromUnsignedLongLong(v)
            self.ui = v
        return self.ui_obj

    cdef inline object tz_offset(self, int v):
        if self.tz_obj is None or self.tz != v:
            self.tz_obj = v
            self.tz = v
        return self.tz_obj

    cdef inline object text(self, int which, const unsigned char* p, size_t n):
        """The str of ``p`` (field ``which``: 0 ref name, 1 name, 2 email)."""
        cdef Buf* last = &self.refname if which == 0 else (&self.name if which == 1 else
                                                          &self.email)
        obj = self.refname_obj if which == 0 else (self.name_obj if which == 1 else
                                                   self.email_obj)
        if obj is not None and last.len == n and memcmp(last.p, p, n) == 0:
            return obj
        buf_set(last, p, n)
        obj = _str(p, n)
        if which == 0:
            self.refname_obj = obj
        elif which == 1:
            self.name_obj = obj
        else:
            self.email_obj = obj
        return obj


cdef inline void _put(PyObject* o, Py_ssize_t off, object v) noexcept:
    """Fill slot ``off`` (bytes from the object start) of a fresh object."""
    Py_INCREF(v)
    (<PyObject**>((<char*>o) + off))[0] = <PyObject*>v


cdef inline PyObject* _alloc(object cls) except NULL:
    """A new instance of a registered record class (a new reference) whose slots the
    caller fills, every one of them, before anything else runs. Its fields are strings,
    numbers and bytes: it cannot be part of a cycle, so the garbage collector need not
    track it. Where the slots are the whole object, its memory is left unzeroed."""
    cdef PyObject* o
    if _exact_records:
        o = _PyObject_GC_New(<PyTypeObject*>cls)
    else:
        o = PyType_GenericAlloc(<PyTypeObject*>cls, 0)
        if o != NULL:
            PyObject_GC_UnTrack(o)
    if o == NULL:
        raise MemoryError()
    return o


cdef inline object _done(PyObject* o):
    """Hand out a record whose slots are filled."""
    r = <object>o
    Py_DECREF(r)   # the cast took a reference of its own
    return r


cdef int _load_record_types() except -1:
    # reftable.records registers its classes when imported (the package imports it
    # lazily, so a caller of the core may come first)
    from . import records  # noqa: F401
    return 0


cdef inline object ref_object(const unsigned char* name, size_t nlen, const RefValue* v,
                       int hash_size, bint records, Reuse reuse):
    """A ``RefRecord`` (``records``) or a tuple of the same fields."""
    return ref_object_named(_str(name, nlen), v, hash_size, records, reuse)


cdef inline object ref_object_named(object nm, const RefValue* v, int hash_size,
                                    bint records, Reuse reuse):
    """``ref_object`` with the name given as a ``str`` already."""
    cdef PyObject* o
    if records and _RefCls is None:
        _load_record_types()
    ui = reuse.update_index(v.update_index)
    value = _opt_bytes(v.value, hash_size)
    peeled = _opt_bytes(v.target_value, hash_size)
    target = None if v.target == NULL else _str(v.target, v.target_len)
    if not records:
        return (nm, ui, <object>PyTuple_GET_ITEM(_ints, v.value_type), value, peeled, target)
    if not _fast_records:
        return _RefCls(nm, ui, _ref_vts[v.value_type], value, peeled, target)
    o = _alloc(_RefCls)
    _put(o, _ref_offs[0], nm)
    _put(o, _ref_offs[1], ui)
    _put(o, _ref_offs[2], _ref_vts[v.value_type])
    _put(o, _ref_offs[3], value)
    _put(o, _ref_offs[4], peeled)
    _put(o, _ref_offs[5], target)
    return _done(o)


cdef object log_object(const unsigned char* key, size_t klen, const LogValue* v,
                       int hash_size, bint records, Reuse reuse):
    """A ``LogRecord`` (``records``) or a tuple of the same fields."""
    cdef PyObject* o
    if records and _LogCls is None:
        _load_record_types()
    refname = reuse.text(0, key, klen - 9)
    ui = reuse.update_index(v.update_index)
    if v.value_type == 0:
        old_id = new_id = None
        who = email = message = ""
        t = tz = 0
    else:
        old_id = _bytes(v.old_id, hash_size)
        new_id = _bytes(v.new_id, hash_size)
        who = reuse.text(1, v.name, v.name_len)
        email = reuse.text(2, v.email, v.email_len)
        t = PyLong_FromUnsignedLongLong(v.time)
        tz = reuse.tz_offset(v.tz_offset)
        message = _str(v.message, v.message_len)
    if not records:
        return (refname, ui, v.value_type, old_id, new_id, who, email, t, tz, message)
    if not _fast_records:
        return _LogCls(refname, ui, _log_vts[v.value_type], old_id, new_id, who, email, t,
                       tz, message)
    o = _alloc(_LogCls)
    _put(o, _log_offs[0], refname)
    _put(o, _log_offs[1], ui)
    _put(o, _log_offs[2], _log_vts[v.value_type])
    _put(o, _log_offs[3], old_id)
    _put(o, _log_offs[4], new_id)
    _put(o, _log_offs[5], who)
    _put(o, _log_offs[6], email)
    _put(o, _log_offs[7], t)
    _put(o, _log_offs[8], tz)
    _put(o, _log_offs[9], message)
    return _done(o)


cdef struct ColExtra:
    Py_ssize_t i          # position of the ref in the batch
    size_t start          # its bytes in the extras buffer
    size_t n
    bint target           # a symref target (else a peeled id)


cdef enum:
    COLS_ALL = 0          # every column
    COLS_NAMES = 1        # names only
    COLS_COUNT = 2        # nothing but the count
    COLS_PACKED = 3       # every column, the names as one bytes object and end offsets
    COLS_BATCH = 512      # records decoded without the GIL between two flushes
    COLS_BATCH_RAW = 8192 # the same when a flush makes no object per record (packed, count):
                          # each flush takes the GIL back, which costs threads a hand-over


cdef extern from "Python.h":
    int PyList_Append(object l, object x) except -1
    list PyList_New(Py_ssize_t n)
    void PyList_SET_ITEM(object l, Py_ssize_t i, object x)   # steals a reference
    void Py_SET_SIZE(object o, Py_ssize_t n)


cdef PyObject* _new_bytes(Py_ssize_t n) except NULL:
    """An uninitialised bytes object of ``n`` bytes, as an owned pointer."""
    o = PyBytes_FromStringAndSize(NULL, n)
    Py_INCREF(o)
    return <PyObject*>o


cdef inline void _advise_huge(PyObject* b) noexcept:
    """A result column about to be filled: huge pages for it where the kernel has them
    (fresh pages faulted in one at a time cost about as much as decoding)."""
    rt_advise_huge(PyBytes_AS_STRING(<object>b), <size_t>PyBytes_GET_SIZE(<object>b))


cdef class RefColumns:
    """Builds refs column by column. ``add`` (no GIL) collects a batch in C buffers that
    are reused from batch to batch (so that they stay in the cache and cost no fresh
    pages): names back to back, value types, update indexes, object ids, and the rare
    peeled ids and symref targets (copied: the batch does not point into any table).
    ``flush`` (GIL held) moves a batch into the result's objects; ``result`` returns them.
    ``records`` instead makes ``RefRecord`` objects of an unflushed batch.
    ``COLS_PACKED`` keeps the names as collected: their bytes back to back in one
    ``bytes`` and their end offsets in another (no ``str`` per ref)."""

    cdef Buf names, ends, types, uis, ids, extras, extra_data
    cdef int hash_size
    cdef int mode
    cdef Py_ssize_t n        # records in the batch
    cdef Py_ssize_t total    # records flushed
    cdef Py_ssize_t cap      # records the output bytes objects have room for
    cdef Py_ssize_t slots    # records the batch buffers (ends, types, uis, ids) hold
    cdef Py_ssize_t est      # records expected
    cdef Py_ssize_t listed   # length the names list was made with (est when made)
    cdef Py_ssize_t data_cap # name bytes out_data has room for (COLS_PACKED)
    cdef uint64_t data_len   # name bytes flushed (COLS_PACKED)
    cdef list out_names
    cdef PyObject* out_types
    cdef PyObject* out_uis
    cdef PyObject* out_ids
    cdef PyObject* out_data  # COLS_PACKED: the names, back to back
    cdef PyObject* out_ends  # COLS_PACKED: their end offsets (native uint64)
    cdef dict peeled, targets

    def __cinit__(self):
        self.out_types = self.out_uis = self.out_ids = self.out_data = self.out_ends = NULL

    def __dealloc__(self):
        buf_free(&self.names)
        buf_free(&self.ends)
        buf_free(&self.types)
        buf_free(&self.uis)
        buf_free(&self.ids)
        buf_free(&self.extras)
        buf_free(&self.extra_data)
        Py_XDECREF(self.out_types)
        Py_XDECREF(self.out_uis)
        Py_XDECREF(self.out_ids)
        Py_XDECREF(self.out_data)
        Py_XDECREF(self.out_ends)

    cdef int reserve(self, uint64_t data_bytes) except -1:
        """Size the result for about ``data_bytes`` of ref blocks (it grows as needed)."""
        cdef uint64_t est = data_bytes // 32 + 16
        self.est = <Py_ssize_t>est
        if (self.mode == COLS_ALL or self.mode == COLS_PACKED) and self.cap < self.est:
            self._grow(self.est)
        if self.mode == COLS_PACKED and self.data_cap < <Py_ssize_t>est * 32:
            self._grow_data(<Py_ssize_t>est * 32)   # (most names take fewer bytes)
        return 0

    cdef int _grow(self, Py_ssize_t cap) except -1:
        # realloc: a large result grows in place (mremap), without copying or faulting
        # its pages in again
        if self.out_types == NULL:
            self.out_types = _new_bytes(cap)
            self.out_uis = _new_bytes(cap * 8)
            self.out_ids = _new_bytes(cap * self.hash_size)
            if self.mode == COLS_PACKED:
                self.out_ends = _new_bytes(cap * 8)
        else:
            _PyBytes_Resize(&self.out_types, cap)
            _PyBytes_Resize(&self.out_uis, cap * 8)
            _PyBytes_Resize(&self.out_ids, cap * self.hash_size)
            if self.mode == COLS_PACKED:
                _PyBytes_Resize(&self.out_ends, cap * 8)
        if cap > self.cap:
            _advise_huge(self.out_types)
            _advise_huge(self.out_uis)
            _advise_huge(self.out_ids)
            if self.mode == COLS_PACKED:
                _advise_huge(self.out_ends)
        self.cap = cap
        return 0

    cdef int _grow_data(self, Py_ssize_t cap) except -1:
        if self.out_data == NULL:
            self.out_data = _new_bytes(cap)
        else:
            _PyBytes_Resize(&self.out_data, cap)
        if cap > self.data_cap:
            _advise_huge(self.out_data)
        self.data_cap = cap
        return 0

    cdef int _more_slots(self) except -1 nogil:
        cdef size_t k = <size_t>(self.slots * 2 if self.slots else COLS_BATCH)
        buf_reserve(&self.ends, k * sizeof(size_t) - self.ends.len)
        buf_reserve(&self.types, k - self.types.len)
        buf_reserve(&self.uis, k * 8 - self.uis.len)
        buf_reserve(&self.ids, k * <size_t>self.hash_size - self.ids.len)
        self.slots = <Py_ssize_t>k
        return 0

    cdef int add(self, const unsigned char* name, size_t nlen,
                 const RefValue* v) except -1 nogil:
        cdef Py_ssize_t i = self.n
        cdef int hs = self.hash_size
        cdef unsigned char* id_at
        cdef ColExtra e
        if self.mode == COLS_COUNT:
            self.n += 1
            return 0
        if i >= self.slots:
            self._more_slots()
        buf_append(&self.names, name, nlen)
        (<size_t*>self.ends.p)[i] = self.names.len
        if self.mode == COLS_NAMES:
            self.n += 1
            return 0
        self.types.p[i] = <unsigned char>v.value_type
        (<uint64_t*>self.uis.p)[i] = v.update_index
        id_at = self.ids.p + i * hs
        if v.value == NULL:
            memset(id_at, 0, hs)
        elif hs == 20:
            memcpy(id_at, v.value, 20)   # (a constant size: no call)
        else:
            memcpy(id_at, v.value, hs)
        if v.target_value != NULL or v.target != NULL:
            e.i = i
            e.target = v.target != NULL
            e.start = self.extra_data.len
            e.n = v.target_len if e.target else <size_t>hs
            buf_append(&self.extra_data, v.target if e.target else v.target_value, e.n)
            buf_append(&self.extras, <const unsigned char*>&e, sizeof(ColExtra))
        self.n += 1
        return 0

    cdef int flush(self) except -1:
        """Move the batch into the result and empty it."""
        cdef const size_t* ends = <const size_t*>self.ends.p
        cdef const ColExtra* ex = <const ColExtra*>self.extras.p
        cdef size_t start = 0
        cdef Py_ssize_t i, m = self.n, at = self.total, nd
        cdef uint64_t* out_ends
        if self.out_names is None:
            # made as long as expected, its slots filled in order (unfilled ones are
            # NULL, which the list's traversal and deallocation allow); result() cuts
            # it to the records found. Growing it by appends would copy it repeatedly.
            self.listed = self.est if self.mode == COLS_ALL or self.mode == COLS_NAMES else 0
            self.out_names = PyList_New(self.listed)
            self.peeled = {}
            self.targets = {}
        if self.mode == COLS_ALL or self.mode == COLS_NAMES:
            for i in range(m):
                s = _str(self.names.p + start, ends[i] - start)
                if at + i < self.listed:
                    Py_INCREF(s)
                    PyList_SET_ITEM(self.out_names, at + i, s)
                else:
                    PyList_Append(self.out_names, s)
                start = ends[i]
        if (self.mode == COLS_ALL or self.mode == COLS_PACKED) and m:
            if at + m > self.cap:
                self._grow(max(2 * self.cap, at + m, 1024))
            memcpy(PyBytes_AS_STRING(<object>self.out_types) + at, self.types.p, m)
            memcpy(PyBytes_AS_STRING(<object>self.out_uis) + at * 8, self.uis.p, m * 8)
            memcpy(PyBytes_AS_STRING(<object>self.out_ids) + at * self.hash_size, self.ids.p,
                   m * self.hash_size)
            for i in range(<Py_ssize_t>(self.extras.len // sizeof(ColExtra))):
                if ex[i].target:
                    self.targets[at + ex[i].i] = _str(self.extra_data.p + ex[i].start, ex[i].n)
                else:
                    self.peeled[at + ex[i].i] = _bytes(self.extra_data.p + ex[i].start, ex[i].n)
        if self.mode == COLS_PACKED and m:
            nd = <Py_ssize_t>(self.data_len + self.names.len)
            if self.out_data == NULL or nd > self.data_cap:
                self._grow_data(max(2 * self.data_cap, nd))
            memcpy(PyBytes_AS_STRING(<object>self.out_data) + self.data_len, self.names.p,
                   self.names.len)
            out_ends = <uint64_t*>PyBytes_AS_STRING(<object>self.out_ends) + at
            for i in range(m):
                out_ends[i] = self.data_len + ends[i]
            self.data_len = <uint64_t>nd
        self.total += m
        self.n = 0
        self.names.len = self.extras.len = self.extra_data.len = 0
        return 0

    cdef list records(self):
        """The refs of the batch as ``RefRecord`` objects (few: the matches of a reverse
        lookup)."""
        cdef list out = []
        cdef const size_t* ends = <const size_t*>self.ends.p
        cdef const ColExtra* ex = <const ColExtra*>self.extras.p
        cdef size_t nex = self.extras.len // sizeof(ColExtra), x = 0, start = 0
        cdef Py_ssize_t i
        cdef RefValue v
        cdef Reuse reuse = Reuse.__new__(Reuse)
        for i in range(self.n):
            v.value_type = self.types.p[i]
            v.update_index = (<const uint64_t*>self.uis.p)[i]
            v.value = self.ids.p + i * self.hash_size if v.value_type in (1, 2) else NULL
            v.target_value = v.target = NULL
            v.target_len = 0
            while x < nex and ex[x].i == i:
                if ex[x].target:
                    v.target = self.extra_data.p + ex[x].start
                    v.target_len = ex[x].n
                else:
                    v.target_value = self.extra_data.p + ex[x].start
                x += 1
            out.append(ref_object(self.names.p + start, ends[i] - start, &v, self.hash_size,
                                  True, reuse))
            start = ends[i]
        return out

    cdef object result(self):
        """The columns (``COLS_ALL``: ``(names, value types, update indexes (native
        uint64), object ids (hash_size bytes each, zeros where none), {position: peeled
        id}, {position: symref target})``; ``COLS_PACKED``: the same with the names list
        replaced by two columns, ``(names' UTF-8 back to back, each name's end offset in
        it (native uint64), ...)``), the names (``COLS_NAMES``) or the count."""
        self.flush()
        if self.total < self.listed:
            Py_SET_SIZE(self.out_names, self.total)  # the unfilled tail: capacity only
        if self.mode == COLS_COUNT:
            return self.total
        if self.mode == COLS_NAMES:
            return self.out_names
        if self.out_types == NULL:
            cols = (b"", b"", b"", self.peeled, self.targets)
            head = (b"", b"") if self.mode == COLS_PACKED else (self.out_names,)
            return head + cols
        self._grow(self.total)
        cols = (<object>self.out_types, <object>self.out_uis, <object>self.out_ids,
                self.peeled, self.targets)
        Py_DECREF(<object>self.out_types)   # the tuple holds them now
        Py_DECREF(<object>self.out_uis)
        Py_DECREF(<object>self.out_ids)
        self.out_types = self.out_uis = self.out_ids = NULL
        if self.mode != COLS_PACKED:
            return (self.out_names,) + cols
        self._grow_data(<Py_ssize_t>self.data_len)
        head = (<object>self.out_data, <object>self.out_ends)
        Py_DECREF(<object>self.out_data)
        Py_DECREF(<object>self.out_ends)
        self.out_data = self.out_ends = NULL
        return head + cols


cdef inline Py_ssize_t cols_batch(int mode) noexcept nogil:
    """Records to decode without the GIL between two flushes in ``mode``."""
    return COLS_BATCH_RAW if mode == COLS_PACKED or mode == COLS_COUNT else COLS_BATCH


cdef RefColumns new_columns(int hash_size, int mode=COLS_ALL):
    cdef RefColumns c = RefColumns.__new__(RefColumns)
    c.hash_size = hash_size
    c.mode = mode
    return c


# -- record objects in: the writer's side ---------------------------------------------

cdef inline object _slot(object rec, Py_ssize_t off):
    cdef PyObject* v = (<PyObject**>((<char*><PyObject*>rec) + off))[0]
    if v == NULL:
        raise ApiError("record has an unset field")
    return <object>v


cdef inline const unsigned char* _utf8(object s, size_t* n, list keep) except NULL:
    """UTF-8 of a str without a copy; surrogate escapes (undecodable bytes read from a
    table) go through an encode whose result ``keep`` holds alive."""
    cdef const char* p
    cdef Py_ssize_t sn
    cdef bytes b
    if type(s) is bytes:
        n[0] = PyBytes_GET_SIZE(s)
        return <const unsigned char*>PyBytes_AS_STRING(s)
    try:
        p = PyUnicode_AsUTF8AndSize(s, &sn)
        n[0] = <size_t>sn
        return <const unsigned char*>p
    except UnicodeEncodeError:
        b = (<str>s).encode("utf-8", "surrogateescape")
        keep.append(b)
        n[0] = PyBytes_GET_SIZE(b)
        return <const unsigned char*>PyBytes_AS_STRING(b)


cdef inline const unsigned char* _oid(object o, int hash_size, str what) except NULL:
    if type(o) is not bytes or PyBytes_GET_SIZE(o) != hash_size:
        raise ApiError(f"{what} must be an object id of the table's hash size")
    return <const unsigned char*>PyBytes_AS_STRING(o)


cdef int ref_from_object(object rec, RefValue* v, const unsigned char** name, size_t* nlen,
                         int hash_size, list keep) except -1:
    """Read a ``RefRecord`` (or any object with its fields) into ``v``."""
    if _fast_records and type(rec) is _RefCls:
        nm = _slot(rec, _ref_offs[0])
        ui = _slot(rec, _ref_offs[1])
        vt = _slot(rec, _ref_offs[2])
        value = _slot(rec, _ref_offs[3])
        tvalue = _slot(rec, _ref_offs[4])
        target = _slot(rec, _ref_offs[5])
    else:
        nm, ui, vt = rec.name, rec.update_index, rec.value_type
        value, tvalue, target = rec.value, rec.target_value, rec.target
    name[0] = _utf8(nm, nlen, keep)
    v.update_index = PyLong_AsUnsignedLongLong(ui)
    v.value_type = <int>PyLong_AsLong(vt)
    v.value = v.target_value = v.target = NULL
    v.target_len = 0
    if v.value_type == 1 or v.value_type == 2:
        v.value = _oid(value, hash_size, "ref value")
        if v.value_type == 2:
            v.target_value = _oid(tvalue, hash_size, "peeled value")
    elif v.value_type == 3:
        if target is None:
            raise ApiError("symref needs a target")
        v.target = _utf8(target, &v.target_len, keep)
    elif v.value_type != 0:
        raise ApiError(f"invalid ref value type {v.value_type}")
    return 0


cdef int log_from_object(object rec, LogValue* v, const unsigned char** name, size_t* nlen,
                         int hash_size, list keep) except -1:
    """Read a ``LogRecord`` (or any object with its fields) into ``v``."""
    cdef long tz
    cdef bint fast = _fast_records and type(rec) is _LogCls
    if fast:
        refname = _slot(rec, _log_offs[0])
        ui = _slot(rec, _log_offs[1])
        vt = _slot(rec, _log_offs[2])
    else:
        refname, ui, vt = rec.refname, rec.update_index, rec.value_type
    name[0] = _utf8(refname, nlen, keep)
    v.update_index = PyLong_AsUnsignedLongLong(ui)
    v.value_type = <int>PyLong_AsLong(vt)
    v.message_newline = False
    if v.value_type == 0:
        return 0
    if v.value_type != 1:
        raise ApiError(f"invalid log value type {v.value_type}")
    if fast:
        old_id = _slot(rec, _log_offs[3])
        new_id = _slot(rec, _log_offs[4])
        who = _slot(rec, _log_offs[5])
        email = _slot(rec, _log_offs[6])
        t = _slot(rec, _log_offs[7])
        tz_obj = _slot(rec, _log_offs[8])
        message = _slot(rec, _log_offs[9])
    else:
        old_id, new_id, who, email = rec.old_id, rec.new_id, rec.name, rec.email
        t, tz_obj, message = rec.time, rec.tz_offset, rec.message
    v.old_id = _oid(old_id, hash_size, "log old id")
    v.new_id = _oid(new_id, hash_size, "log new id")
    v.name = _utf8(who, &v.name_len, keep)
    v.email = _utf8(email, &v.email_len, keep)
    v.time = PyLong_AsUnsignedLongLong(t)
    tz = PyLong_AsLong(tz_obj)
    if tz < -32768 or tz > 32767:
        raise ApiError(f"timezone offset {tz} does not fit 16 bits")
    v.tz_offset = <int>tz
    v.message = _utf8(message, &v.message_len, keep)
    return 0
