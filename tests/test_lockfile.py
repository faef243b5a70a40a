"""Lock files and the injectable I/O layer of the Cython core (reftable/_lockfile.pxi)."""

from __future__ import annotations

import errno
import gc
import multiprocessing
import os
import stat
import sys
import threading
import time

import iofaults
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reftable._impl import core as _core
from reftable.errors import ApiError, LockError, ReftableError, ReftableIOError

LockFile = _core.LockFile


def _wait_for(predicate, timeout=10.0):
    """Poll until predicate() holds; used only to observe another thread's progress."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.001)


def _files(d):
    return sorted(os.listdir(d))


# --- the basic protocol ---------------------------------------------------------------


def test_create_and_commit(tmp_path):
    target = tmp_path / "tables.list"
    lf = LockFile(str(target))
    assert lf.path == str(target)
    assert lf.lock_path == str(target) + ".lock"
    assert os.path.exists(lf.lock_path)
    assert lf.fd >= 0 and not lf.closed and not lf.committed
    lf.write(b"hello ")
    lf.write(memoryview(b"world"))
    lf.commit()
    assert target.read_bytes() == b"hello world"
    assert lf.committed and lf.closed and lf.fd == -1
    assert _files(tmp_path) == ["tables.list"]
    lf.rollback()  # no-op after commit
    lf.close()
    assert target.read_bytes() == b"hello world"


def test_commit_replaces_old_content(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with LockFile(str(target)) as lf:
        assert target.read_bytes() == b"old"  # untouched until commit
        lf.write(bytearray(b"new"))
        lf.commit()
    assert target.read_bytes() == b"new"
    assert _files(tmp_path) == ["f"]


def test_relative_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lf = LockFile("rel")
    assert lf.path == str(tmp_path / "rel")
    monkeypatch.chdir("/")
    lf.write(b"x")
    lf.commit()  # still lands next to the lock, not in the new cwd
    assert (tmp_path / "rel").read_bytes() == b"x"


def test_rollback(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    lf = LockFile(str(target))
    lf.write(b"new")
    lf.rollback()
    assert lf.closed and not lf.committed and lf.fd == -1
    assert _files(tmp_path) == ["f"]
    assert target.read_bytes() == b"old"
    lf.rollback()  # idempotent
    with pytest.raises(ApiError):
        lf.write(b"more")
    with pytest.raises(ApiError):
        lf.commit()


def test_rollback_when_lock_already_removed(tmp_path):
    lf = LockFile(str(tmp_path / "f"))
    os.unlink(lf.lock_path)
    lf.rollback()  # never raises for an already-gone lock
    assert _files(tmp_path) == []


def test_context_manager_rolls_back_on_exception(tmp_path):
    target = tmp_path / "f"
    with pytest.raises(RuntimeError, match="boom"):
        with LockFile(str(target)) as lf:
            lf.write(b"partial")
            raise RuntimeError("boom")
    assert lf.closed and not lf.committed
    assert _files(tmp_path) == []


def test_context_manager_without_commit_rolls_back(tmp_path):
    with LockFile(str(tmp_path / "f")) as lf:
        lf.write(b"x")
    assert lf.closed
    assert _files(tmp_path) == []


def test_close_without_commit(tmp_path):
    lf = LockFile(str(tmp_path / "f"))
    lf.write(b"x")
    lf.close()
    assert lf.closed and not lf.committed
    assert _files(tmp_path) == []


def test_dealloc_removes_lock(tmp_path):
    lf = LockFile(str(tmp_path / "f"))
    lf.write(b"x")
    del lf
    gc.collect()
    assert _files(tmp_path) == []
    # and a new lock can be taken at once
    LockFile(str(tmp_path / "f"), timeout_ms=0).rollback()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_remove_parent_lock(tmp_path):
    lf = LockFile(str(tmp_path / "f"))
    pid = os.fork()
    if pid == 0:  # child: dropping the inherited object must leave the lock alone
        code = 1
        try:
            del lf
            gc.collect()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.path.exists(lf.lock_path)
    lf.rollback()


def test_pathlike_and_double_init(tmp_path):
    lf = LockFile(tmp_path / "f")
    assert lf.path == str(tmp_path / "f")
    with pytest.raises(ApiError):
        lf.__init__(str(tmp_path / "g"))
    lf.rollback()
    with pytest.raises(TypeError):
        LockFile(b"/tmp/bytes-path")


@settings(max_examples=25, deadline=None)
@given(chunks=st.lists(st.binary(max_size=5000), max_size=8))
def test_written_chunks_land_exactly(tmp_path_factory, chunks):
    target = tmp_path_factory.mktemp("hyp") / "f"
    with LockFile(str(target)) as lf:
        for c in chunks:
            lf.write(c)
        lf.commit()
    assert target.read_bytes() == b"".join(chunks)
    assert not os.path.exists(str(target) + ".lock")


# --- contention -----------------------------------------------------------------------


def test_timeout_zero_fails_at_once(tmp_path):
    target = str(tmp_path / "f")
    held = LockFile(target)
    iofaults.reset_io_counts()
    with pytest.raises(LockError) as ei:
        LockFile(target, timeout_ms=0)
    assert ei.value.lock_path == target + ".lock"
    assert str(ei.value) == f"unable to lock {target}: {target}.lock exists"
    assert isinstance(ei.value, ReftableError)
    assert iofaults.io_counts()["open"] == 1  # a single attempt, no retry
    held.rollback()


def test_timeout_waits_then_fails(tmp_path):
    target = str(tmp_path / "f")
    held = LockFile(target)
    iofaults.reset_io_counts()
    start = time.monotonic()
    with pytest.raises(LockError) as ei:
        LockFile(target, timeout_ms=200)
    waited = time.monotonic() - start
    assert waited >= 0.19
    assert ei.value.lock_path == target + ".lock"
    assert iofaults.io_counts()["open"] >= 3  # retried with backoff
    held.rollback()
    assert _files(tmp_path) == []


def _acquire_in_thread(target, timeout_ms):
    """Start a thread that waits for the lock on target; returns (thread, result dict)."""
    result = {}

    def waiter():
        try:
            lf = LockFile(target, timeout_ms=timeout_ms)
            lf.write(b"waiter")
            lf.commit()
            result["ok"] = True
        except BaseException as e:  # reported to the main thread
            result["error"] = e

    t = threading.Thread(target=waiter)
    t.start()
    return t, result


@pytest.mark.parametrize("timeout_ms", [10_000, -1])
def test_succeeds_when_released(tmp_path, timeout_ms):
    target = str(tmp_path / "f")
    held = LockFile(target)
    iofaults.reset_io_counts()
    t, result = _acquire_in_thread(target, timeout_ms)
    # Release only once the waiter has seen the lock held at least twice.
    _wait_for(lambda: iofaults.io_counts()["open"] >= 2)
    assert t.is_alive() and not result
    held.write(b"holder")
    held.commit()
    t.join(10)
    assert not t.is_alive()
    assert result == {"ok": True}
    assert open(target, "rb").read() == b"waiter"
    assert _files(tmp_path) == ["f"]


def _count_worker(target, n):
    for _ in range(n):
        with LockFile(target, timeout_ms=-1) as lf:
            with open(target, "rb") as f:
                value = int(f.read() or b"0")
            lf.write(b"%d" % (value + 1))
            lf.commit()


def test_multiprocess_counter(tmp_path):
    target = str(tmp_path / "counter")
    with open(target, "wb") as f:
        f.write(b"0")
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    procs, per_proc = 4, 50
    workers = [ctx.Process(target=_count_worker, args=(target, per_proc)) for _ in range(procs)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
    assert all(p.exitcode == 0 for p in workers)
    assert open(target, "rb").read() == b"%d" % (procs * per_proc)
    assert _files(tmp_path) == ["counter"]


# --- modes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("umask", "mode", "expected"),
    [(0o022, 0o666, 0o644), (0o077, 0o666, 0o600), (0o022, 0o600, 0o600), (0, 0o640, 0o640)],
)
def test_mode_and_umask(tmp_path, umask, mode, expected):
    target = tmp_path / "f"
    old = os.umask(umask)
    try:
        lf = LockFile(str(target), mode=mode)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(lf.lock_path).st_mode) == expected
    lf.commit()
    assert stat.S_IMODE(os.stat(target).st_mode) == expected


# --- injected faults ------------------------------------------------------------------


def _assert_failed_commit(tmp_path, target, exc, err):
    assert exc.errno == err
    assert exc.filename == str(target) + ".lock"
    assert target.read_bytes() == b"old"
    assert _files(tmp_path) == ["f"]


@pytest.mark.parametrize("op", ["fsync", "close", "rename"])
def test_commit_fault_removes_lock(tmp_path, op):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    lf = LockFile(str(target))
    lf.write(b"new")
    iofaults.set_fault(op, 1, errno.EIO)
    with pytest.raises(ReftableIOError) as ei:
        lf.commit()
    assert isinstance(ei.value, OSError)
    _assert_failed_commit(tmp_path, target, ei.value, errno.EIO)
    assert lf.closed and not lf.committed and lf.fd == -1
    if op == "rename":
        assert ei.value.filename2 == str(target)
    lf.rollback()  # nothing left to do, and no error
    with pytest.raises(ApiError):
        lf.commit()


def test_commit_fault_inside_context_manager(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    iofaults.set_fault("fsync", 1)
    with pytest.raises(ReftableIOError) as ei:
        with LockFile(str(target)) as lf:
            lf.write(b"new")
            lf.commit()
    _assert_failed_commit(tmp_path, target, ei.value, errno.EIO)


def test_write_fault_enospc(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    iofaults.set_fault("write", 2, errno.ENOSPC)
    with pytest.raises(ReftableIOError) as ei:
        with LockFile(str(target)) as lf:
            lf.write(b"first")  # call 1 succeeds
            lf.write(b"second")  # call 2 fails
            lf.commit()
    _assert_failed_commit(tmp_path, target, ei.value, errno.ENOSPC)
    assert "No space left" in str(ei.value)


def test_write_fault_then_explicit_rollback(tmp_path):
    lf = LockFile(str(tmp_path / "f"))
    iofaults.set_fault("write", 1, errno.ENOSPC)
    with pytest.raises(ReftableIOError) as ei:
        lf.write(b"x")
    assert ei.value.errno == errno.ENOSPC
    assert not lf.closed  # the caller decides; the lock is still held
    lf.rollback()
    assert _files(tmp_path) == []


def test_fault_fires_once(tmp_path):
    iofaults.set_fault("fsync", 1)
    lf = LockFile(str(tmp_path / "f"))
    with pytest.raises(ReftableIOError):
        lf.fsync()
    lf.fsync()  # the fault was consumed
    lf.commit()
    assert _files(tmp_path) == ["f"]


def test_clear_faults(tmp_path):
    iofaults.set_fault("open", 1, errno.EACCES)
    iofaults.clear_faults()
    LockFile(str(tmp_path / "f")).rollback()


@pytest.mark.parametrize("err", [errno.EACCES, errno.EROFS, errno.EMFILE])
def test_open_fault_is_io_error_not_lock_error(tmp_path, err):
    iofaults.set_fault("open", 1, err)
    with pytest.raises(ReftableIOError) as ei:
        LockFile(str(tmp_path / "f"), timeout_ms=-1)
    assert not isinstance(ei.value, LockError)
    assert ei.value.errno == err
    assert ei.value.filename == str(tmp_path / "f.lock")
    assert _files(tmp_path) == []


def test_open_real_error(tmp_path):
    with pytest.raises(ReftableIOError) as ei:
        LockFile(str(tmp_path / "missing" / "f"))
    assert ei.value.errno == errno.ENOENT
    assert ei.value.filename == str(tmp_path / "missing" / "f.lock")


def test_unlink_fault_during_rollback_is_retried(tmp_path):
    lf = LockFile(str(tmp_path / "f"))
    iofaults.set_fault("unlink", 1, errno.EIO)
    with pytest.raises(ReftableIOError) as ei:
        lf.rollback()
    assert ei.value.errno == errno.EIO
    assert ei.value.filename == lf.lock_path
    assert lf.closed and os.path.exists(lf.lock_path)
    lf.rollback()  # retries the unlink
    assert _files(tmp_path) == []


def test_unlink_fault_while_cleaning_up_failed_commit(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    lf = LockFile(str(target))
    lf.write(b"new")
    iofaults.set_fault("rename", 1, errno.EXDEV)
    iofaults.set_fault("unlink", 1, errno.EIO)
    with pytest.raises(ReftableIOError) as ei:
        lf.commit()
    assert ei.value.errno == errno.EXDEV  # the original failure is reported
    assert os.path.exists(lf.lock_path)
    lf.rollback()
    _assert_failed_commit(tmp_path, target, ei.value, errno.EXDEV)


def test_unlink_fault_in_exit_does_not_mask_exception(tmp_path):
    iofaults.set_fault("unlink", 1)
    with pytest.raises(KeyError):
        with LockFile(str(tmp_path / "f")) as lf:
            raise KeyError("original")
    assert os.path.exists(lf.lock_path)
    del lf
    gc.collect()  # dealloc retries the removal
    assert _files(tmp_path) == []


def test_io_counts(tmp_path):
    assert iofaults.io_counts() == dict.fromkeys(_core.IO_OPS, 0)
    lf = LockFile(str(tmp_path / "f"))
    lf.write(b"a")
    lf.write(b"b")
    lf.commit()
    assert iofaults.io_counts() == dict.fromkeys(_core.IO_OPS, 0) | {
        "open": 1,
        "write": 2,
        "fsync": 1,
        "rename": 1,
        "unlink": 0,
        "close": 1,
    }
    LockFile(str(tmp_path / "g")).rollback()
    counts = iofaults.io_counts()
    assert (counts["open"], counts["close"], counts["unlink"]) == (2, 2, 1)
    iofaults.reset_io_counts()
    assert sum(iofaults.io_counts().values()) == 0


def test_fault_counts_from_set_fault_call(tmp_path):
    LockFile(str(tmp_path / "a")).commit()  # one earlier fsync does not count
    iofaults.set_fault("fsync", 2)
    LockFile(str(tmp_path / "b")).commit()
    with pytest.raises(ReftableIOError):
        LockFile(str(tmp_path / "c")).commit()
    assert _files(tmp_path) == ["a", "b"]


# --- the io_* wrappers ----------------------------------------------------------------


def test_io_wrappers_roundtrip(tmp_path):
    tmp = str(tmp_path / "tmp")
    dst = str(tmp_path / "dst")
    fd = _core.io_open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    assert not os.get_inheritable(fd)  # O_CLOEXEC is always added
    data = os.urandom(3 << 20)
    _core.io_write(fd, data)
    _core.io_write(fd, bytearray(b"tail"))
    _core.io_fsync(fd)
    _core.io_close(fd)
    _core.io_rename(tmp, dst)
    _core.fsync_dir(str(tmp_path))
    assert open(dst, "rb").read() == data + b"tail"
    _core.io_unlink(dst)
    _core.io_unlink(dst, missing_ok=True)
    assert _files(tmp_path) == []


def test_io_wrapper_errors_carry_filename(tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(ReftableIOError) as ei:
        _core.io_open(missing, os.O_RDONLY)
    assert (ei.value.errno, ei.value.filename) == (errno.ENOENT, missing)
    with pytest.raises(ReftableIOError) as ei:
        _core.io_unlink(missing)
    assert (ei.value.errno, ei.value.filename) == (errno.ENOENT, missing)
    with pytest.raises(ReftableIOError) as ei:
        _core.io_rename(missing, str(tmp_path / "x"))
    assert ei.value.errno == errno.ENOENT
    assert (ei.value.filename, ei.value.filename2) == (missing, str(tmp_path / "x"))
    with pytest.raises(ReftableIOError) as ei:
        _core.fsync_dir(missing)
    assert (ei.value.errno, ei.value.filename) == (errno.ENOENT, missing)


def test_io_fd_wrapper_faults(tmp_path):
    path = str(tmp_path / "f")
    fd = _core.io_open(path, os.O_WRONLY | os.O_CREAT)
    iofaults.set_fault("write", 1, errno.ENOSPC)
    with pytest.raises(ReftableIOError) as ei:
        _core.io_write(fd, b"x", path)
    assert (ei.value.errno, ei.value.filename) == (errno.ENOSPC, path)
    iofaults.set_fault("fsync", 1)
    with pytest.raises(ReftableIOError) as ei:
        _core.io_fsync(fd, path)
    assert (ei.value.errno, ei.value.filename) == (errno.EIO, path)
    iofaults.set_fault("close", 1)
    with pytest.raises(ReftableIOError) as ei:
        _core.io_close(fd, path)
    assert ei.value.filename == path
    with pytest.raises(OSError) as ei2:  # the fd was released anyway
        os.fstat(fd)
    assert ei2.value.errno == errno.EBADF
    iofaults.set_fault("unlink", 1, errno.EPERM)
    with pytest.raises(ReftableIOError) as ei:
        _core.io_unlink(path, missing_ok=True)  # only ENOENT is tolerated
    assert (ei.value.errno, ei.value.filename) == (errno.EPERM, path)
    iofaults.set_fault("fsync", 2)  # fsync_dir: open, fsync (call 1 ok) ... call 2 fails
    _core.fsync_dir(str(tmp_path))
    with pytest.raises(ReftableIOError):
        _core.fsync_dir(str(tmp_path))


def test_io_write_bad_fd():
    with pytest.raises(ReftableIOError) as ei:
        _core.io_write(-1, b"x", "somefile")
    assert (ei.value.errno, ei.value.filename) == (errno.EBADF, "somefile")


@pytest.mark.skipif(sys.platform != "linux", reason="/dev/full is Linux")
def test_real_enospc():
    fd = _core.io_open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(ReftableIOError) as ei:
            _core.io_write(fd, b"x" * 100, "/dev/full")
        assert ei.value.errno == errno.ENOSPC
    finally:
        _core.io_close(fd)
