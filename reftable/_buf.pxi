# Layer 0: growable C buffers, Git's varint, big-endian integers, key comparison and
# the fixed sizes of the file format. Everything here is plain C (no Python objects).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int16_t, UINT64_MAX
from libc.string cimport memcpy, memcmp, memset, memchr
from libc.stdlib cimport malloc, calloc, realloc, free
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF, Py_XDECREF

from .errors import ApiError, EntryTooBigError, FormatError, NotExistError, ReftableIOError

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
    HASH_MAX = 32                # bytes of the longest object id (sha256)
    # File header: "REFT", version, block size (24 bits), min and max update index;
    # version 2 appends the hash id. The footer repeats the header, then five 64-bit
    # section offsets and a CRC-32.
    HEADER_SIZE_V1 = 24
    HEADER_SIZE_V2 = 28
    FOOTER_EXTRA = 44          # footer = header + 5 * 8 offsets + 4 CRC bytes
    BLOCK_HEADER_SIZE = 4      # type byte + 24-bit length

BLOCK_TYPE_REF = BLOCK_REF
BLOCK_TYPE_LOG = BLOCK_LOG
BLOCK_TYPE_OBJ = BLOCK_OBJ
BLOCK_TYPE_INDEX = BLOCK_INDEX


cdef inline int header_size_of(int hash_size) noexcept nogil:
    """Header size of a table of this hash size (SHA-1 tables are version 1)."""
    return HEADER_SIZE_V1 if hash_size == 20 else HEADER_SIZE_V2


def header_size(int hash_size=20):
    """Bytes of a table's file header for ``hash_size`` (20: 24, 32: 28)."""
    return header_size_of(hash_size)


def footer_size(int hash_size=20):
    """Bytes of a table's footer for ``hash_size`` (20: 68, 32: 72)."""
    return header_size_of(hash_size) + FOOTER_EXTRA


# ---------------------------------------------------------------------------
# Growable byte buffers (C memory, no Python objects in hot loops)

cdef struct Buf:
    unsigned char* p
    size_t len
    size_t cap


cdef int buf_reserve(Buf* b, size_t extra) except -1 nogil:
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
        with gil:
            raise MemoryError()
    b.p = p
    b.cap = cap
    return 0


cdef inline int buf_append(Buf* b, const unsigned char* data, size_t n) except -1 nogil:
    if b.len + n > b.cap:
        buf_reserve(b, n)
    if n:
        memcpy(b.p + b.len, data, n)
    b.len += n
    return 0


cdef inline int buf_set(Buf* b, const unsigned char* data, size_t n) except -1 nogil:
    b.len = 0
    return buf_append(b, data, n)


cdef inline void buf_free(Buf* b) noexcept nogil:
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
    """Compare keys as unsigned bytes: -1, 0 or 1 (normalised: callers use -2 as an
    error marker). A big-endian word at a time: keys share long prefixes
    (refs/heads/...), and a merge compares several per record."""
    cdef size_t n = alen if alen < blen else blen
    cdef size_t i = 0
    cdef uint64_t x, y
    while i + 8 <= n:
        x = get_be64(a + i)
        y = get_be64(b + i)
        if x != y:
            return -1 if x < y else 1
        i += 8
    while i < n:
        if a[i] != b[i]:
            return -1 if a[i] < b[i] else 1
        i += 1
    if alen < blen:
        return -1
    return 1 if alen > blen else 0


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
