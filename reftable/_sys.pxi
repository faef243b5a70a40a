# Layer 1: the platform. Every file operation of the core, reads included, goes through
# the _sys_* wrappers below, and lock files (Git's lock-file protocol) are built on them.
#
# The wrappers behave like the syscalls they wrap (-1 and errno on failure). Tests can
# install a hook (``_set_io_hook``): it is called with the operation's name before each
# call and returns an errno to inject (0: none); it may also count calls or end the
# process (crash tests). Without a hook the wrappers are plain C calls. The GIL is
# released around the syscall itself.

cimport cython
from libc.errno cimport errno, EINTR, EEXIST, ENOENT, EINVAL, ENOSPC, EAGAIN
from libc.stdio cimport rename as c_rename
from posix.unistd cimport (write as c_write, read as c_read, pread as c_pread,
                           fsync as c_fsync, close as c_close, unlink as c_unlink, getpid)
from posix.fcntl cimport (open as c_open, O_CREAT, O_EXCL, O_WRONLY, O_RDONLY, O_CLOEXEC,
                          O_DIRECTORY, O_NONBLOCK)
from posix.stat cimport struct_stat, fstat as c_fstat, S_ISREG
from posix.mman cimport (mmap as c_mmap, munmap as c_munmap, madvise, PROT_READ,
                         MAP_PRIVATE, MAP_FAILED, MADV_DONTNEED)
from posix.time cimport clock_gettime, nanosleep, timespec, CLOCK_MONOTONIC
from posix.types cimport mode_t, off_t
from cpython.exc cimport PyErr_CheckSignals

cdef extern from *:
    """
    #include <errno.h>
    #include <stdint.h>
    #include <sys/mman.h>
    static inline void rt_set_errno(int e) { errno = e; }
    /* Ask for transparent huge pages under the 2 MiB-aligned interior of [p, p + n)
       (where the kernel offers them only on request): a large buffer filled once
       then takes one page fault per 2 MiB instead of one per 4 KiB. */
    static inline void rt_advise_huge(void *p, size_t n) {
    #ifdef MADV_HUGEPAGE
        const uintptr_t huge = (uintptr_t)1 << 21;
        uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
        uintptr_t b = ((uintptr_t)p + n) & ~(huge - 1);
        if (b > a)
            (void)madvise((void *)a, b - a, MADV_HUGEPAGE);  /* a hint: errors ignored */
    #endif
    }
    """
    void rt_set_errno(int e) noexcept nogil
    void rt_advise_huge(void* p, size_t n) noexcept nogil

import os as _os

from .errors import LockError

cdef enum:
    RT_IO_OPEN = 0       # creating or writing files
    RT_IO_WRITE = 1
    RT_IO_FSYNC = 2
    RT_IO_RENAME = 3
    RT_IO_UNLINK = 4
    RT_IO_CLOSE = 5
    RT_IO_OPEN_READ = 6  # reading tables and tables.list
    RT_IO_FSTAT = 7
    RT_IO_MMAP = 8
    RT_IO_READ = 9
    RT_IO_CLOSE_READ = 10

cdef enum:
    RT_MAX_WRITE = 1 << 30  # Linux writes at most ~2 GiB per call anyway

# Keeps timeout_ms * 1e6 far from int64 overflow (2^40 ms is ~35 years).
cdef int64_t RT_MAX_TIMEOUT_MS = (<int64_t>1) << 40

IO_OPS = ("open", "write", "fsync", "rename", "unlink", "close",
          "open_read", "fstat", "mmap", "read", "close_read")

cdef object _io_hook = None
cdef uint64_t _rng_state = 0            # backoff jitter; seeded lazily


def _set_io_hook(hook):
    """Install (or with None remove) the I/O hook of tests: ``hook(op)`` runs before
    every file operation ``op`` (a name of ``IO_OPS``) and returns the errno to fail
    it with, or 0."""
    global _io_hook
    _io_hook = hook


cdef int _hook_err(int op) noexcept:
    """The errno the hook injects into this call of ``op`` (0 without a hook)."""
    cdef object r
    if _io_hook is None:
        return 0
    try:
        r = _io_hook(IO_OPS[op])
        return <int>r if r else 0
    except BaseException:
        return EINVAL  # a broken hook fails the call instead of passing silently


# The wrappers save errno inside the nogil block and set it again afterwards, so nothing
# that runs while the GIL is re-taken can clobber it.

cdef int _sys_open(const char* path, int flags, mode_t mode, int op=RT_IO_OPEN) noexcept:
    cdef int fd
    cdef int err = _hook_err(op)
    if err:
        rt_set_errno(err)
        return -1
    with nogil:
        fd = c_open(path, flags, mode)
        err = errno
    rt_set_errno(err)
    return fd


cdef ssize_t _sys_write(int fd, const void* buf, size_t n) noexcept:
    cdef ssize_t r
    cdef int err = _hook_err(RT_IO_WRITE)
    if err:
        rt_set_errno(err)
        return -1
    with nogil:
        r = c_write(fd, buf, n)
        err = errno
    rt_set_errno(err)
    return r


cdef ssize_t _sys_read(int fd, void* buf, size_t n) noexcept:
    cdef ssize_t r
    cdef int err = _hook_err(RT_IO_READ)
    if err:
        rt_set_errno(err)
        return -1
    with nogil:
        r = c_read(fd, buf, n)
        err = errno
    rt_set_errno(err)
    return r


cdef ssize_t _sys_pread(int fd, void* buf, size_t n, uint64_t off) noexcept:
    cdef ssize_t r
    cdef int err = _hook_err(RT_IO_READ)
    if err:
        rt_set_errno(err)
        return -1
    with nogil:
        r = c_pread(fd, buf, n, <off_t>off)
        err = errno
    rt_set_errno(err)
    return r


cdef int _sys_fstat(int fd, struct_stat* st) noexcept:
    cdef int err = _hook_err(RT_IO_FSTAT)
    if err:
        rt_set_errno(err)
        return -1
    return c_fstat(fd, st)


cdef void* _sys_mmap(int fd, size_t n) noexcept:
    cdef void* p
    cdef int err = _hook_err(RT_IO_MMAP)
    if err:
        rt_set_errno(err)
        return MAP_FAILED
    with nogil:
        p = c_mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0)
        err = errno
    rt_set_errno(err)
    return p


cdef int _sys_fsync(int fd) noexcept:
    cdef int r
    cdef int err = _hook_err(RT_IO_FSYNC)
    if err:
        rt_set_errno(err)
        return -1
    with nogil:
        r = c_fsync(fd)
        err = errno
    rt_set_errno(err)
    return r


cdef int _sys_rename(const char* src, const char* dst) noexcept:
    cdef int r
    cdef int err = _hook_err(RT_IO_RENAME)
    if err:
        rt_set_errno(err)
        return -1
    with nogil:
        r = c_rename(src, dst)
        err = errno
    rt_set_errno(err)
    return r


cdef int _sys_unlink(const char* path) noexcept:
    cdef int r
    cdef int err = _hook_err(RT_IO_UNLINK)
    if err:
        rt_set_errno(err)
        return -1
    with nogil:
        r = c_unlink(path)
        err = errno
    rt_set_errno(err)
    return r


cdef int _sys_close(int fd, int op=RT_IO_CLOSE) noexcept:
    # An injected fault still closes the fd: callers treat every close as final (Linux
    # releases the fd even when close fails), so skipping it would leak the fd.
    cdef int r, saved
    cdef int err = _hook_err(op)
    r = c_close(fd)
    saved = errno
    if err:
        rt_set_errno(err)
        return -1
    rt_set_errno(saved)
    return r


# Retry loops shared by the Python wrappers and LockFile. Each returns 0 or an errno.

cdef int _write_all(int fd, const unsigned char* p, size_t n) noexcept:
    cdef ssize_t w
    while n > 0:
        w = _sys_write(fd, p, n if n < <size_t>RT_MAX_WRITE else <size_t>RT_MAX_WRITE)
        if w < 0:
            if errno == EINTR:
                continue
            return errno
        if w == 0:
            return ENOSPC  # a regular file that accepts nothing is full (as Git assumes)
        p += w
        n -= <size_t>w
    return 0


cdef int _fsync_retry(int fd) noexcept:
    while _sys_fsync(fd) < 0:
        if errno != EINTR:
            return errno
    return 0


cdef int _close_fd(int fd) noexcept:
    # EINTR from close is not an error: the fd is released anyway and retrying could
    # close someone else's fd (PEP 475 treats it the same way).
    if _sys_close(fd) < 0 and errno != EINTR:
        return errno
    return 0


cdef int _unlink_retry(const char* path) noexcept:
    while _sys_unlink(path) < 0:
        if errno != EINTR:
            return errno
    return 0


cdef int _raise_io(int err, object filename, object filename2=None) except -1:
    exc = ReftableIOError(err, _os.strerror(err), filename)
    if filename2 is not None:
        exc.filename2 = filename2
    raise exc


cdef int _open_retry(const char* path, int flags, mode_t mode,
                     int op=RT_IO_OPEN) except? -2:
    """open(2) that retries EINTR (checking for signals); -1 and errno on failure."""
    cdef int fd, err
    while True:
        fd = _sys_open(path, flags, mode, op)
        if fd >= 0:
            return fd
        err = errno
        if err != EINTR:
            return -1
        PyErr_CheckSignals()


# ---------------------------------------------------------------------------
# Reading files: tables are mapped, tables.list is read in one call

cdef int _open_regular(bytes bpath, object path, uint64_t* size) except -1:
    """Open a file for reading and return its fd; a FIFO, directory or device named like
    one of our files is a ``FormatError`` at once (O_NONBLOCK: opening a FIFO must
    not wait for a writer)."""
    cdef struct_stat st
    cdef int err
    cdef int fd = _open_retry(bpath, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0, RT_IO_OPEN_READ)
    if fd < 0:
        err = errno
        if err == ENOENT:
            raise NotExistError(f"{path}: no such file")
        _raise_io(err, path)
    if _sys_fstat(fd, &st) < 0:
        err = errno
        _sys_close(fd, RT_IO_CLOSE_READ)
        _raise_io(err, path)
    if not S_ISREG(st.st_mode):
        _sys_close(fd, RT_IO_CLOSE_READ)
        raise FormatError("not a regular file", path, 0)
    size[0] = <uint64_t>st.st_size
    return fd


cdef int _pread_all(int fd, unsigned char* p, size_t n, uint64_t off) noexcept:
    """Read exactly ``n`` bytes at ``off``: 0, an errno, or -1 when the file ends first."""
    cdef ssize_t r
    while n > 0:
        r = _sys_pread(fd, p, n, off)
        if r < 0:
            if errno == EINTR:
                continue
            return errno
        if r == 0:
            return -1
        p += r
        n -= <size_t>r
        off += <uint64_t>r
    return 0


cdef object sys_open_table_file(bytes bpath, object path, uint64_t* size, uint64_t whole_max,
                                int* fd_out,
                                unsigned char* head, size_t head_len,
                                unsigned char* tail, size_t tail_len):
    """Open a regular file for reading as a table. One of at most ``whole_max`` bytes is
    read whole and returned (bytes): for a small file, one read costs less than a
    mapping and its page faults. For a larger one, None is returned with the file
    still open in ``fd_out[0]`` (map it with ``sys_map_file``, or read blocks with
    ``sys_pread_block``), its first ``head_len`` and last ``tail_len`` bytes read into
    ``head`` and ``tail``: a short-lived reader's few lookups cost less as reads than
    as page faults of a mapping (each maps and later unmaps a run of pages)."""
    cdef int err
    cdef bytes data
    cdef int fd = _open_regular(bpath, path, size)
    fd_out[0] = -1
    if size[0] == 0 or size[0] > <uint64_t>(<size_t>-1):
        _sys_close(fd, RT_IO_CLOSE_READ)
        raise FormatError(f"file of {size[0]} bytes is not a reftable", path, 0)
    if size[0] <= whole_max:
        data = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>size[0])
        err = _pread_all(fd, <unsigned char*>PyBytes_AS_STRING(data), <size_t>size[0], 0)
    else:
        data = None
        err = _pread_all(fd, head, head_len if head_len < size[0] else <size_t>size[0], 0)
        if tail_len > size[0]:
            tail_len = <size_t>size[0]
        if err == 0:
            err = _pread_all(fd, tail, tail_len, size[0] - tail_len)
    if err or data is not None:
        _sys_close(fd, RT_IO_CLOSE_READ)
        if err < 0:
            raise FormatError("file shrank while it was opened", path, 0)
        if err:
            _raise_io(err, path)
        return data
    fd_out[0] = fd
    return None


cdef const unsigned char* sys_map_file(int fd, uint64_t size, object path) except NULL:
    """Map ``size`` bytes of the open file ``fd`` read-only (unmap with ``sys_unmap``)."""
    cdef void* p = _sys_mmap(fd, <size_t>size)
    if p == MAP_FAILED:
        _raise_io(errno, path)
    return <const unsigned char*>p


cdef int sys_pread_block(int fd, unsigned char* p, size_t n, uint64_t off) noexcept nogil:
    """``_pread_all`` for the C readers: they run without the GIL or, holding it, from
    code that never releases it; the wrapper takes it (re-entrantly) for the hook."""
    with gil:
        return _pread_all(fd, p, n, off)


cdef void sys_unmap(const unsigned char* p, uint64_t size) noexcept nogil:
    c_munmap(<void*>p, <size_t>size)


cdef void sys_drop_pages(const unsigned char* p, size_t n) noexcept nogil:
    """Tell the kernel that mapped pages already read are not needed any more."""
    madvise(<void*>p, n, MADV_DONTNEED)


def read_file(path, Py_ssize_t limit):
    """The contents of the regular file ``path``, at most ``limit + 1`` bytes (so callers
    can tell a file over the limit), in one read when it can. The size is taken from
    ``fstat``: meant for files replaced by rename, never written in place.
    ``NotExistError`` when it does not exist."""
    cdef bytes bpath = _os.fsencode(path)
    cdef uint64_t size = 0
    cdef int err = 0
    cdef ssize_t r
    cdef Py_ssize_t want, got = 0
    cdef int fd = _open_regular(bpath, path, &size)
    want = <Py_ssize_t>size if size <= <uint64_t>limit else limit + 1
    cdef bytes out = PyBytes_FromStringAndSize(NULL, want)  # filled in place
    cdef char* p = PyBytes_AS_STRING(out)
    while got < want:
        r = _sys_read(fd, p + got, want - got)
        if r < 0:
            if errno == EINTR:
                continue
            err = errno
            break
        if r == 0:
            break
        got += r
    _sys_close(fd, RT_IO_CLOSE_READ)
    if err:
        _raise_io(err, path)
    return out if got == want else out[:got]  # (shorter only if the file shrank)


# ---------------------------------------------------------------------------
# Python-callable wrappers through the same layer (used by the stack code)

def io_open(path, int flags, int mode=0o666):
    """open(2); ``O_CLOEXEC`` is always added (like ``os.open``). Returns the fd."""
    cdef bytes bpath = _os.fsencode(path)
    cdef int fd = _open_retry(bpath, flags | O_CLOEXEC, <mode_t>mode)
    cdef int err = errno
    if fd < 0:
        _raise_io(err, _os.fspath(path))
    return fd


def io_write(int fd, data, path=None):
    """Write all of ``data`` (any C-contiguous bytes-like), retrying EINTR and short
    writes. ``path`` only names the file in the error."""
    cdef Py_buffer view
    cdef int err
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        err = _write_all(fd, <const unsigned char*>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    if err:
        _raise_io(err, path)


def io_fsync(int fd, path=None):
    cdef int err = _fsync_retry(fd)
    if err:
        _raise_io(err, path)


def io_rename(src, dst):
    cdef bytes bsrc = _os.fsencode(src)
    cdef bytes bdst = _os.fsencode(dst)
    cdef int err
    if _sys_rename(bsrc, bdst) < 0:
        err = errno
        _raise_io(err, _os.fspath(src), _os.fspath(dst))


def io_unlink(path, bint missing_ok=False):
    cdef bytes bpath = _os.fsencode(path)
    cdef int err = _unlink_retry(bpath)
    if err and not (missing_ok and err == ENOENT):
        _raise_io(err, _os.fspath(path))


def io_close(int fd, path=None):
    """close(2). The fd is released even when this raises; never close it twice."""
    cdef int err = _close_fd(fd)
    if err:
        _raise_io(err, path)


def fsync_dir(path):
    """fsync a directory, so renames and unlinks in it are durable."""
    cdef bytes bpath = _os.fsencode(path)
    cdef int fd = _open_retry(bpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
    cdef int err = errno
    if fd < 0:
        _raise_io(err, _os.fspath(path))
    err = _fsync_retry(fd)
    # Some filesystems cannot sync directories (EINVAL); there is nothing more to do.
    if err == EINVAL:
        err = 0
    if err:
        _close_fd(fd)
        _raise_io(err, _os.fspath(path))
    err = _close_fd(fd)
    if err:
        _raise_io(err, _os.fspath(path))


# ---------------------------------------------------------------------------
# Lock files

cdef inline int64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline void _sleep_ns(int64_t ns) noexcept nogil:
    # An EINTR just ends the sleep early; the caller checks signals and retries.
    cdef timespec ts
    if ns <= 0:
        return
    ts.tv_sec = ns // 1000000000
    ts.tv_nsec = ns % 1000000000
    nanosleep(&ts, NULL)


cdef uint64_t _rng_next(uint64_t seed) noexcept:
    # splitmix64: cheap, and good enough to de-synchronise contending processes.
    global _rng_state
    cdef uint64_t z
    if _rng_state == 0:
        _rng_state = seed | 1
    _rng_state += <uint64_t>0x9E3779B97F4A7C15
    z = _rng_state
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


@cython.auto_pickle(False)
@cython.no_gc_clear  # __dealloc__ needs _block, even when collected in a cycle
cdef class LockFile:
    """Git's lock-file protocol: ``path + ".lock"`` is created exclusively; write the new
    content to it, then :meth:`commit` renames it over ``path`` or :meth:`rollback`
    removes it.

    Symlinks are not followed (like Git's ``LOCK_NO_DEREF``, which reftable uses). A
    relative ``path`` is made absolute at creation, as Git does, so a later ``chdir``
    cannot make commit or cleanup act on another file.

    ``timeout_ms``: how long to retry while the lock exists (0 = fail at once, negative
    = wait forever). ``mode`` is the creation mode of the lock file, before the umask.
    A lock still held when the object is freed is rolled back, unless it was inherited
    across ``fork`` (it belongs to the parent).
    """

    cdef readonly str path
    cdef readonly str lock_path
    cdef readonly bint committed
    cdef int _fd
    cdef bint _fd_open
    cdef bint _lock_exists  # we created lock_path and have not removed or renamed it
    cdef bytes _bpath
    cdef bytes _block
    cdef long _owner        # pid that took the lock

    def __cinit__(self, *args, **kwargs):
        self._fd = -1

    def __init__(self, path, long long timeout_ms=100, int mode=0o666):
        cdef int fd, err
        cdef int64_t backoff, cap, wait, now, deadline = 0
        cdef int flags = O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC
        if self.path is not None:
            raise ApiError("LockFile is already initialised")
        p = _os.fspath(path)
        if not isinstance(p, str):
            raise TypeError(f"path must be str or os.PathLike[str], not {type(p).__name__}")
        if not _os.path.isabs(p):
            p = _os.path.join(_os.getcwd(), p)
        lock_path = p + ".lock"
        self._bpath = _os.fsencode(p)
        self._block = _os.fsencode(lock_path)

        if timeout_ms > RT_MAX_TIMEOUT_MS:
            timeout_ms = RT_MAX_TIMEOUT_MS
        # Jittered exponential backoff from 1 ms, capped at a quarter of the timeout so
        # the last attempt is not far from the deadline, and at 100 ms.
        backoff = 1000000
        cap = 100000000
        if timeout_ms > 0:
            cap = min(cap, max(timeout_ms * 1000000 // 4, backoff))
            deadline = _now_ns() + timeout_ms * 1000000
        while True:
            fd = _sys_open(self._block, flags, <mode_t>mode)
            if fd >= 0:
                break
            err = errno
            if err == EINTR:
                PyErr_CheckSignals()
                continue
            if err != EEXIST:
                _raise_io(err, lock_path)
            now = _now_ns()
            if timeout_ms == 0 or (timeout_ms > 0 and now >= deadline):
                raise LockError(f"unable to lock {p}: {lock_path} exists", lock_path=lock_path)
            wait = <int64_t>(backoff * (750 + _rng_next(<uint64_t>now ^ getpid()) % 500) // 1000)
            if timeout_ms > 0 and wait > deadline - now:
                wait = deadline - now
            with nogil:
                _sleep_ns(wait)
            PyErr_CheckSignals()  # waiting forever must stay interruptible
            backoff = min(backoff * 2, cap)

        self._fd = fd
        self._fd_open = True
        self._lock_exists = True
        self._owner = getpid()
        self.path = p
        self.lock_path = lock_path

    @property
    def fd(self):
        """The lock file's descriptor, or -1 once closed."""
        return self._fd if self._fd_open else -1

    @property
    def closed(self):
        return not self._fd_open

    def __repr__(self):
        state = "committed" if self.committed else ("closed" if not self._fd_open else "open")
        return f"<LockFile {self.lock_path!r} {state}>"

    cdef int _check_writable(self) except -1:
        if self.path is None:
            raise ApiError("LockFile is not initialised")
        if self.committed:
            raise ApiError(f"{self.lock_path}: lock already committed")
        if not self._fd_open:
            raise ApiError(f"{self.lock_path}: lock file is closed")
        return 0

    cdef void _close(self) noexcept:
        # Release the fd and ignore errors: used when the content is being discarded.
        if self._fd_open:
            self._fd_open = False
            _close_fd(self._fd)
            self._fd = -1

    cdef int _remove(self) noexcept:
        """Unlink the lock file if we still own one; 0 or the errno of the failure."""
        cdef int err
        if not self._lock_exists:
            return 0
        err = _unlink_retry(self._block)
        if err == 0 or err == ENOENT:  # already gone is fine: rollback is idempotent
            self._lock_exists = False
            return 0
        return err

    def write(self, data):
        """Write all of ``data`` (bytes-like) to the lock file."""
        cdef Py_buffer view
        cdef int err
        self._check_writable()
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            err = _write_all(self._fd, <const unsigned char*>view.buf, <size_t>view.len)
        finally:
            PyBuffer_Release(&view)
        if err:
            _raise_io(err, self.lock_path)

    def fsync(self):
        cdef int err
        self._check_writable()
        err = _fsync_retry(self._fd)
        if err:
            _raise_io(err, self.lock_path)

    def commit(self, bint fsync=True):
        """fsync (unless ``fsync=False``), close and rename the lock file over ``path``.

        On any failure the lock file is removed (``path`` keeps its old content) and
        ``ReftableIOError`` is raised; should that removal fail too, :meth:`rollback`
        retries it.
        """
        cdef int err = 0
        cdef bint renaming = False
        self._check_writable()
        if fsync:
            err = _fsync_retry(self._fd)
        if err:
            self._close()
        else:
            self._fd_open = False  # released even if close fails
            err = _close_fd(self._fd)
            self._fd = -1
        if not err:
            renaming = True
            if _sys_rename(self._block, self._bpath) < 0:
                err = errno
        if err:
            self._remove()
            if renaming:
                _raise_io(err, self.lock_path, self.path)
            _raise_io(err, self.lock_path)
        self._lock_exists = False
        self.committed = True

    def rollback(self):
        """Close and remove the lock file. Idempotent, a no-op after commit; raises only
        if the lock file exists and cannot be removed (a second call retries)."""
        cdef int err
        if self.committed:
            return
        self._close()
        err = self._remove()
        if err:
            _raise_io(err, self.lock_path)

    def close(self):
        """Roll back unless committed."""
        self.rollback()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.rollback()
        else:
            # Do not mask the exception in flight; a failed removal is retried on dealloc.
            try:
                self.rollback()
            except ReftableIOError:
                pass
        return False

    def __dealloc__(self):
        # Must not raise. A forked child must not remove its parent's lock.
        if self._owner != 0 and self._owner != getpid():
            return
        self._close()
        if not self.committed and self._block is not None:
            self._remove()
