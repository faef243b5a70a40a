"""The platform: every file operation, reads included, through one seam, and Git's
lock-file protocol on top of it.

The twin of the compiled core's ``_sys`` layer. Tests may install a hook
(``_set_io_hook``): it is called with the operation's name (one of ``IO_OPS``) before
each call and returns an errno to inject (0: none); it may also count calls or end
the process (crash tests).
"""

from __future__ import annotations

import errno as _errno
import mmap
import os
import random
import stat
import time
from collections.abc import Callable
from typing import Any, Literal, Optional, Union

from ..errors import ApiError, FormatError, LockError, NotExistError, ReftableIOError

__all__ = [
    "IO_OPS", "LockFile", "_set_io_hook", "fsync_dir", "io_close", "io_fsync", "io_open",
    "io_rename", "io_unlink", "io_write", "open_table_file", "read_file",
]

IO_OPS = ("open", "write", "fsync", "rename", "unlink", "close",
          "open_read", "fstat", "mmap", "read", "close_read")
_MAX_WRITE = 1 << 30
# flags POSIX has and Windows lacks (and O_BINARY, which only Windows has)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_MAX_TIMEOUT_MS = 1 << 40

_hook: Optional[Callable[[str], int]] = None


def _set_io_hook(hook: Optional[Callable[[str], int]]) -> None:
    """Install (or with None remove) the I/O hook of tests: ``hook(op)`` runs before
    every file operation ``op`` and returns the errno to fail it with, or 0."""
    global _hook
    _hook = hook


def _hit(op: str) -> int:
    """The errno the hook injects into this call of ``op`` (0 without a hook)."""
    if _hook is None:
        return 0
    try:
        return int(_hook(op) or 0)
    except BaseException:
        return _errno.EINVAL  # a broken hook fails the call instead of passing silently


def _io_error(err: int, filename: Any = None, filename2: Any = None) -> ReftableIOError:
    exc = ReftableIOError(err, os.strerror(err), filename)
    if filename2 is not None:
        exc.filename2 = filename2
    return exc


# -- the seam: one function per system call, 0 or an errno -------------------------


def _sys_open(path: Any, flags: int, mode: int, op: str = "open") -> tuple[int, int]:
    err = _hit(op)
    if err:
        return -1, err
    try:
        return os.open(path, flags, mode), 0
    except OSError as e:
        return -1, e.errno or _errno.EIO


def _write_all(fd: int, data: Any) -> int:
    view = memoryview(data).cast("B")
    while len(view):
        err = _hit("write")
        if err:
            return err
        try:
            n = os.write(fd, view[:_MAX_WRITE])
        except OSError as e:
            if e.errno == _errno.EINTR:
                continue
            return e.errno or _errno.EIO
        if n == 0:
            return _errno.ENOSPC  # a regular file that accepts nothing is full
        view = view[n:]
    return 0


def _fsync(fd: int) -> int:
    while True:
        err = _hit("fsync")
        if err:
            return err
        try:
            os.fsync(fd)
            return 0
        except OSError as e:
            if e.errno != _errno.EINTR:
                return e.errno or _errno.EIO


def _rename(src: Any, dst: Any) -> int:
    err = _hit("rename")
    if err:
        return err
    try:
        os.rename(src, dst)
        return 0
    except OSError as e:
        return e.errno or _errno.EIO


def _unlink(path: Any) -> int:
    while True:
        err = _hit("unlink")
        if err:
            return err
        try:
            os.unlink(path)
            return 0
        except OSError as e:
            if e.errno != _errno.EINTR:
                return e.errno or _errno.EIO


def _close(fd: int, op: str = "close") -> int:
    # An injected fault still closes the fd (callers treat every close as final), and
    # EINTR is no error: the fd is released anyway (PEP 475 does the same).
    err = _hit(op)
    try:
        os.close(fd)
    except OSError as e:
        if not err and e.errno != _errno.EINTR:
            err = e.errno or _errno.EIO
    return err


# -- reading: tables are mapped, tables.list is read in one call ------------------------


def _open_regular(path: str) -> tuple[int, int]:
    """(fd, size) of a regular file opened for reading; a FIFO, directory or device
    named like one of our files is a ``FormatError`` at once (O_NONBLOCK: opening a
    FIFO must not wait for a writer)."""
    fd, err = _sys_open(os.fsencode(path), os.O_RDONLY | _NONBLOCK | _CLOEXEC, 0,
                        "open_read")
    if fd < 0:
        if err == _errno.ENOENT:
            raise NotExistError(f"{path}: no such file")
        raise _io_error(err, path)
    err = _hit("fstat")
    st = None
    if not err:
        try:
            st = os.fstat(fd)
        except OSError as e:
            err = e.errno or _errno.EIO
    if st is None:
        _close(fd, "close_read")
        raise _io_error(err, path)
    if not stat.S_ISREG(st.st_mode):
        _close(fd, "close_read")
        raise FormatError("not a regular file", path, 0)
    return fd, st.st_size


def _pread_all(fd: int, n: int, off: int) -> tuple[bytes, int]:
    """Exactly ``n`` bytes at ``off``: (bytes, 0), (b"", errno), or (short, -1) when the
    file ends first."""
    got = b""
    while len(got) < n:
        err = _hit("read")
        if err:
            return b"", err
        try:
            b = os.pread(fd, n - len(got), off + len(got))
        except OSError as e:
            if e.errno == _errno.EINTR:
                continue
            return b"", e.errno or _errno.EIO
        if not b:
            return got, -1
        got += b
    return got, 0


def open_table_file(path: str, whole_max: int, head_len: int,
                    tail_len: int) -> tuple[Union[bytes, mmap.mmap], bytes, bytes]:
    """Open a regular file for reading as a table, as the compiled core does: one of at
    most ``whole_max`` bytes is read whole (returned as bytes, with empty head and
    tail); a larger one is mapped read-only, and its first ``head_len`` and last
    ``tail_len`` bytes are read (rather than faulted in through the mapping)."""
    fd, size = _open_regular(path)
    if size == 0:
        _close(fd, "close_read")
        raise FormatError(f"file of {size} bytes is not a reftable", path, 0)
    if size <= whole_max:
        data, err = _pread_all(fd, size, 0)
        _close(fd, "close_read")
        if err < 0:
            raise FormatError("file shrank while it was opened", path, 0)
        if err:
            raise _io_error(err, path)
        return data, b"", b""
    head, err = _pread_all(fd, min(head_len, size), 0)
    tail = b""
    if not err:
        tail, err = _pread_all(fd, min(tail_len, size), size - min(tail_len, size))
    if err:
        _close(fd, "close_read")
        if err < 0:
            raise FormatError("file shrank while it was opened", path, 0)
        raise _io_error(err, path)
    err = _hit("mmap")
    m = None
    if not err:
        try:
            m = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        except OSError as e:
            err = e.errno or _errno.EIO
    _close(fd, "close_read")  # the mapping stays valid; a failed close changes nothing
    if m is None:
        raise _io_error(err, path)
    return m, head, tail


def read_file(path: str, limit: int) -> bytes:
    """The contents of the regular file ``path``, at most ``limit + 1`` bytes (so
    callers can tell a file over the limit). ``NotExistError`` when it does not exist."""
    fd, size = _open_regular(path)
    want = size if size <= limit else limit + 1
    chunks = []
    got = 0
    err = 0
    while got < want:
        err = _hit("read")
        if err:
            break
        try:
            b = os.read(fd, want - got)
        except OSError as e:
            if e.errno == _errno.EINTR:
                continue
            err = e.errno or _errno.EIO
            break
        if not b:
            break
        chunks.append(b)
        got += len(b)
    _close(fd, "close_read")
    if err:
        raise _io_error(err, path)
    return b"".join(chunks)


# -- Python-callable wrappers (used by the stack code) -------------------------------


def io_open(path: str, flags: int, mode: int = 0o666) -> int:
    """open(2); ``O_CLOEXEC`` is always added. Returns the fd."""
    fd, err = _sys_open(os.fsencode(path), flags | _CLOEXEC, mode)
    if fd < 0:
        raise _io_error(err, os.fspath(path))
    return fd


def io_write(fd: int, data: Any, path: Optional[str] = None) -> None:
    """Write all of ``data`` (bytes-like), retrying EINTR and short writes."""
    err = _write_all(fd, data)
    if err:
        raise _io_error(err, path)


def io_fsync(fd: int, path: Optional[str] = None) -> None:
    err = _fsync(fd)
    if err:
        raise _io_error(err, path)


def io_rename(src: str, dst: str) -> None:
    err = _rename(os.fsencode(src), os.fsencode(dst))
    if err:
        raise _io_error(err, os.fspath(src), os.fspath(dst))


def io_unlink(path: str, missing_ok: bool = False) -> None:
    err = _unlink(os.fsencode(path))
    if err and not (missing_ok and err == _errno.ENOENT):
        raise _io_error(err, os.fspath(path))


def io_close(fd: int, path: Optional[str] = None) -> None:
    """close(2). The fd is released even when this raises; never close it twice."""
    err = _close(fd)
    if err:
        raise _io_error(err, path)


def fsync_dir(path: str) -> None:
    """fsync a directory, so renames and unlinks in it are durable (where directories
    can be opened: not on Windows, whose renames need no directory sync)."""
    if os.name == "nt":
        return
    fd, err = _sys_open(os.fsencode(path), os.O_RDONLY | _DIRECTORY | _CLOEXEC, 0)
    if fd < 0:
        raise _io_error(err, os.fspath(path))
    err = _fsync(fd)
    if err == _errno.EINVAL:  # some filesystems cannot sync directories
        err = 0
    if err:
        _close(fd)
        raise _io_error(err, os.fspath(path))
    err = _close(fd)
    if err:
        raise _io_error(err, os.fspath(path))


# -- lock files ------------------------------------------------------------------------

_rng = random.Random()  # backoff jitter, to de-synchronise contending processes


class LockFile:
    """Git's lock-file protocol: ``path + ".lock"`` is created exclusively (``O_EXCL``);
    write the new content to it, then :meth:`commit` (fsync, rename over ``path``) or
    :meth:`rollback` (remove it).

    Symlinks are not followed. A relative ``path`` is made absolute at creation, so a
    later ``chdir`` cannot make commit or cleanup act on another file. ``timeout_ms``:
    how long to retry while the lock exists (0 = fail at once, negative = forever).
    A lock still held when the object is freed is rolled back, unless it was inherited
    across ``fork`` (it belongs to the parent).
    """

    __slots__ = ("_path", "_lock_path", "_committed", "_fd", "_fd_open", "_lock_exists",
                 "_bpath", "_block", "_owner")

    def __init__(self, path: str, timeout_ms: int = 100, mode: int = 0o666) -> None:
        self._fd_open = False
        self._lock_exists = False
        self._committed = False
        self._owner = 0
        if getattr(self, "_path", None) is not None:
            raise ApiError("LockFile is already initialised")
        p = os.fspath(path)
        if not isinstance(p, str):
            raise TypeError(f"path must be str or os.PathLike[str], not {type(p).__name__}")
        if not os.path.isabs(p):
            p = os.path.join(os.getcwd(), p)
        lock_path = p + ".lock"
        self._bpath = os.fsencode(p)
        self._block = os.fsencode(lock_path)
        timeout_ms = min(timeout_ms, _MAX_TIMEOUT_MS)
        # jittered exponential backoff from 1 ms, capped at a quarter of the timeout
        # (the last attempt is not far from the deadline) and at 100 ms
        backoff = 1_000_000
        cap = 100_000_000
        deadline = 0
        if timeout_ms > 0:
            cap = min(cap, max(timeout_ms * 1_000_000 // 4, backoff))
            deadline = time.monotonic_ns() + timeout_ms * 1_000_000
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | _CLOEXEC
        while True:
            fd, err = _sys_open(self._block, flags, mode)
            if fd >= 0:
                break
            if err == _errno.EINTR:
                continue
            if err != _errno.EEXIST:
                raise _io_error(err, lock_path)
            now = time.monotonic_ns()
            if timeout_ms == 0 or (timeout_ms > 0 and now >= deadline):
                raise LockError(f"unable to lock {p}: {lock_path} exists", lock_path=lock_path)
            wait = backoff * (750 + _rng.randrange(500)) // 1000
            if timeout_ms > 0:
                wait = min(wait, deadline - now)
            time.sleep(wait / 1e9)
            backoff = min(backoff * 2, cap)
        self._fd = fd
        self._fd_open = True
        self._lock_exists = True
        self._owner = os.getpid()
        self._path = p
        self._lock_path = lock_path

    @property
    def path(self) -> str:
        return self._path

    @property
    def lock_path(self) -> str:
        return self._lock_path

    @property
    def committed(self) -> bool:
        return self._committed

    @property
    def fd(self) -> int:
        """The lock file's descriptor, or -1 once closed."""
        return self._fd if self._fd_open else -1

    @property
    def closed(self) -> bool:
        return not self._fd_open

    def __repr__(self) -> str:
        state = "committed" if self._committed else ("open" if self._fd_open else "closed")
        return f"<LockFile {self._lock_path!r} {state}>"

    def _check_writable(self) -> None:
        if getattr(self, "_path", None) is None:
            raise ApiError("LockFile is not initialised")
        if self._committed:
            raise ApiError(f"{self._lock_path}: lock already committed")
        if not self._fd_open:
            raise ApiError(f"{self._lock_path}: lock file is closed")

    def _close(self) -> None:
        # release the fd, ignoring errors: the content is being discarded
        if self._fd_open:
            self._fd_open = False
            _close(self._fd)
            self._fd = -1

    def _remove(self) -> int:
        """Unlink the lock file if we still own one; 0 or the errno of the failure."""
        if not self._lock_exists:
            return 0
        err = _unlink(self._block)
        if err == 0 or err == _errno.ENOENT:  # already gone: rollback is idempotent
            self._lock_exists = False
            return 0
        return err

    def write(self, data: Any) -> None:
        """Write all of ``data`` (bytes-like) to the lock file."""
        self._check_writable()
        err = _write_all(self._fd, data)
        if err:
            raise _io_error(err, self._lock_path)

    def fsync(self) -> None:
        self._check_writable()
        err = _fsync(self._fd)
        if err:
            raise _io_error(err, self._lock_path)

    def commit(self, fsync: bool = True) -> None:
        """fsync (unless ``fsync=False``), close and rename the lock file over ``path``.
        On any failure the lock file is removed and ``ReftableIOError`` raised."""
        self._check_writable()
        renaming = False
        err = _fsync(self._fd) if fsync else 0
        if err:
            self._close()
        else:
            self._fd_open = False  # released even if close fails
            err = _close(self._fd)
            self._fd = -1
        if not err:
            renaming = True
            err = _rename(self._block, self._bpath)
        if err:
            self._remove()
            if renaming:
                raise _io_error(err, self._lock_path, self._path)
            raise _io_error(err, self._lock_path)
        self._lock_exists = False
        self._committed = True

    def rollback(self) -> None:
        """Close and remove the lock file. Idempotent, a no-op after commit; raises only
        if the lock file exists and cannot be removed (a second call retries)."""
        if self._committed:
            return
        self._close()
        err = self._remove()
        if err:
            raise _io_error(err, self._lock_path)

    def close(self) -> None:
        """Roll back unless committed."""
        self.rollback()

    def __enter__(self) -> LockFile:
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Any) -> Literal[False]:
        if exc_type is None:
            self.rollback()
        else:
            try:  # do not mask the exception in flight; __del__ retries the removal
                self.rollback()
            except ReftableIOError:
                pass
        return False

    def __getstate__(self) -> Any:
        raise TypeError("LockFile cannot be pickled")

    def __del__(self) -> None:
        # must not raise; a forked child must not remove its parent's lock
        if getattr(self, "_owner", 0) in (0, os.getpid()) and hasattr(self, "_block"):
            try:
                self._close()
                if not self._committed:
                    self._remove()
            except Exception:  # at interpreter shutdown, modules may be gone
                pass
