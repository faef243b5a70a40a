# Bulk record writing: RefRecord/LogRecord objects straight into a WriterCore.
# Included by _core.pyx after _reader.pxi (it uses the registered record layout).
#
# Per record this reads the slots directly and takes names as UTF-8 without a copy,
# instead of a Python loop of attribute reads, str.encode() and a method call.

from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from cpython.long cimport PyLong_AsUnsignedLongLong, PyLong_AsLong
from cpython.list cimport PyList_GET_ITEM
from cpython.object cimport Py_TYPE


cdef inline object _slot(object rec, Py_ssize_t off):
    cdef PyObject* v = (<PyObject**>((<char*><PyObject*>rec) + off))[0]
    if v == NULL:
        raise ApiError("record has an unset field")
    return <object>v


cdef inline const char* _utf8(object s, Py_ssize_t* n, list keep) except NULL:
    """UTF-8 of a str without a copy; surrogate escapes (undecodable bytes read from a
    table) go through an encode whose result ``keep`` holds alive."""
    cdef const char* p
    cdef bytes b
    if type(s) is bytes:
        n[0] = PyBytes_GET_SIZE(s)
        return PyBytes_AS_STRING(s)
    try:
        p = PyUnicode_AsUTF8AndSize(s, n)
        return p
    except UnicodeEncodeError:
        b = (<str>s).encode("utf-8", "surrogateescape")
        keep.append(b)
        n[0] = PyBytes_GET_SIZE(b)
        return PyBytes_AS_STRING(b)


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
    if type(records) is list and _fast_records:
        return _write_ref_list(w, <list>records)
    return _write_ref_iter(w, records)


cdef Py_ssize_t _write_ref_list(WriterCore w, list records) except -1:
    cdef Py_ssize_t i, n = len(records)
    for i in range(n):
        _prefetch_name(records, i + 8, n)
        _write_one_ref(w, <object>PyList_GET_ITEM(records, i))
    return n


cdef object _write_ref_iter(WriterCore w, records):
    cdef Py_ssize_t count = 0
    for rec in records:
        _write_one_ref(w, rec)
        count += 1
    return count


cdef int _write_one_ref(WriterCore w, object rec) except -1:
    cdef Py_ssize_t n, tl
    cdef int vt, hs = w.hash_size
    cdef const char* name
    cdef const char* tp
    cdef uint64_t ui
    cdef Buf* k = &w.keybuf
    cdef list keep = None
    if _fast_records and type(rec) is _RefCls:
        nm = _slot(rec, _ref_offs[0])
        ui_obj = _slot(rec, _ref_offs[1])
        vt_obj = _slot(rec, _ref_offs[2])
        value = _slot(rec, _ref_offs[3])
        tvalue = _slot(rec, _ref_offs[4])
        target = _slot(rec, _ref_offs[5])
    else:
        nm, ui_obj, vt_obj = rec.name, rec.update_index, rec.value_type
        value, tvalue, target = rec.value, rec.target_value, rec.target
    keep = []
    name = _utf8(nm, &n, keep)
    ui = PyLong_AsUnsignedLongLong(ui_obj)
    vt = <int>PyLong_AsLong(vt_obj)
    k.len = 0
    if vt == 1 or vt == 2:
        if type(value) is not bytes or PyBytes_GET_SIZE(value) != hs:
            raise ApiError("ref value must be an object id of the table's hash size")
        buf_append(k, <const unsigned char*>PyBytes_AS_STRING(value), hs)
        if vt == 2:
            if type(tvalue) is not bytes or PyBytes_GET_SIZE(tvalue) != hs:
                raise ApiError("peeled value must be an object id of the table's hash size")
            buf_append(k, <const unsigned char*>PyBytes_AS_STRING(tvalue), hs)
    elif vt == 3:
        if target is None:
            raise ApiError("symref needs a target")
        tp = _utf8(target, &tl, keep)
        buf_reserve(k, 10 + tl)
        k.len += put_varint(k.p + k.len, <uint64_t>tl)
        buf_append(k, <const unsigned char*>tp, tl)
    elif vt != 0:
        raise ApiError(f"invalid ref value type {vt}")
    w._add_ref_raw(<const unsigned char*>name, n, ui, vt, k.p, k.len)
    return 0


cdef int _put_str(Buf* s, const char* p, Py_ssize_t n) except -1:
    buf_reserve(s, n + 10)
    s.len += put_varint(s.p + s.len, <uint64_t>n)
    buf_append(s, <const unsigned char*>p, n)
    return 0


def write_log_records(WriterCore w, records, bint normalize=False):
    """Add ``LogRecord`` objects (in key order) to ``w``; returns how many. With
    ``normalize``, messages get Git's treatment: one line, ending in one newline
    (a multi-line message is an ``ApiError``)."""
    cdef Py_ssize_t count = 0, n, ln, mlen, keepn
    cdef int vt, hs = w.hash_size
    cdef long tz
    cdef const char* rp
    cdef const char* mp
    cdef const char* sp
    cdef uint64_t ui, t
    cdef Buf* s = &w.scratch
    cdef Buf* k = &w.keybuf
    cdef list keep = []
    cdef bint fast = _fast_records
    for rec in records:
        if fast and type(rec) is _LogCls:
            refname = _slot(rec, _log_offs[0])
            ui_obj = _slot(rec, _log_offs[1])
            vt_obj = _slot(rec, _log_offs[2])
        else:
            refname, ui_obj, vt_obj = rec.refname, rec.update_index, rec.value_type
        if len(keep) > 1024:
            keep.clear()
        rp = _utf8(refname, &n, keep)
        ui = PyLong_AsUnsignedLongLong(ui_obj)
        vt = <int>PyLong_AsLong(vt_obj)
        if n == 0:
            raise ApiError("empty ref name")
        if vt != 0 and vt != 1:
            raise ApiError(f"invalid log value type {vt}")
        k.len = 0
        buf_reserve(k, n + 9)
        memcpy(k.p, rp, n)
        k.p[n] = 0
        put_be64(k.p + n + 1, UINT64_MAX - ui)
        k.len = n + 9
        s.len = 0
        if vt == 1:
            if fast and type(rec) is _LogCls:
                old_id = _slot(rec, _log_offs[3])
                new_id = _slot(rec, _log_offs[4])
                who = _slot(rec, _log_offs[5])
                email = _slot(rec, _log_offs[6])
                t_obj = _slot(rec, _log_offs[7])
                tz_obj = _slot(rec, _log_offs[8])
                message = _slot(rec, _log_offs[9])
            else:
                old_id, new_id, who, email = rec.old_id, rec.new_id, rec.name, rec.email
                t_obj, tz_obj, message = rec.time, rec.tz_offset, rec.message
            for part in (old_id, new_id):
                if type(part) is not bytes or PyBytes_GET_SIZE(part) != hs:
                    raise ApiError("log ids must be object ids of the table's hash size")
                buf_append(s, <const unsigned char*>PyBytes_AS_STRING(part), hs)
            sp = _utf8(who, &ln, keep)
            _put_str(s, sp, ln)
            sp = _utf8(email, &ln, keep)
            _put_str(s, sp, ln)
            t = PyLong_AsUnsignedLongLong(t_obj)
            tz = PyLong_AsLong(tz_obj)
            if tz < -32768 or tz > 32767:
                raise ApiError(f"timezone offset {tz} does not fit 16 bits")
            buf_reserve(s, 12)
            s.len += put_varint(s.p + s.len, t)
            put_be16(s.p + s.len, <uint32_t>(<uint16_t>tz))
            s.len += 2
            mp = _utf8(message, &mlen, keep)
            if normalize:
                keepn = mlen
                while keepn and mp[keepn - 1] == 10:
                    keepn -= 1
                if keepn and memchr(mp, 10, keepn) != NULL:
                    raise ApiError("log message spans several lines (use exact_log_message)")
                buf_reserve(s, keepn + 11)
                s.len += put_varint(s.p + s.len, <uint64_t>(keepn + 1))
                buf_append(s, <const unsigned char*>mp, keepn)
                buf_append(s, <const unsigned char*>b"\n", 1)
            else:
                _put_str(s, mp, mlen)
        w._add_log_raw(k.p, k.len, ui, vt, s.p, s.len)
        count += 1
    return count
