"""Type stub of the compiled core ``reftable._core`` (private; use the package API)."""

from collections.abc import Callable, Iterator
from typing import Any, Optional

BLOCK_TYPE_REF: int
BLOCK_TYPE_LOG: int
BLOCK_TYPE_OBJ: int
BLOCK_TYPE_INDEX: int

def encode_varint(value: int) -> bytes: ...
def decode_varint(data: Any, pos: int = 0) -> tuple[int, int]: ...
def varint_length(value: int) -> int: ...
def crc32(data: Any) -> int: ...

class WriterCore:
    hash_size: int
    version: int
    block_size: int
    restart_interval: int
    min_update_index: int
    max_update_index: int
    unpadded: bool
    index_objects: bool
    next: int
    bytes_emitted: int
    object_id_len: int
    total_blocks: int
    ref_count: int
    log_count: int
    closed: bool
    header_size: int
    def __init__(
        self,
        hash_size: int = 20,
        block_size: int = 4096,
        restart_interval: int = 16,
        index_objects: bool = True,
        unpadded: bool = False,
        min_update_index: int = 0,
        max_update_index: int = 0,
        sink: Optional[Callable[[bytes], Any]] = None,
    ) -> None: ...
    def set_limits(self, min_update_index: int, max_update_index: int) -> None: ...
    def take_output(self) -> bytes: ...
    def add_ref(
        self,
        name: bytes,
        update_index: int,
        value_type: int,
        value: Optional[bytes] = None,
        target_value: Optional[bytes] = None,
        target: Optional[bytes] = None,
    ) -> None: ...
    def add_log(
        self,
        refname: bytes,
        update_index: int,
        value_type: int,
        old_id: Optional[bytes] = None,
        new_id: Optional[bytes] = None,
        name: Optional[bytes] = None,
        email: Optional[bytes] = None,
        time: int = 0,
        tz_offset: int = 0,
        message: Optional[bytes] = None,
    ) -> None: ...
    def close(self) -> bool: ...
    def stats(self) -> dict[str, Any]: ...

class Block:
    offset: int
    typ: int
    header_off: int
    length: int
    restart_count: int
    restart_start: int
    full_size: int

class RecordIter(Iterator[tuple[Any, ...]]):
    def __iter__(self) -> RecordIter: ...
    def __next__(self) -> tuple[Any, ...]: ...
    def next_key(self) -> Optional[bytes]: ...

class TableCore:
    size: int
    path: Optional[str]
    version: int
    hash_size: int
    hash_id: int
    header_size: int
    footer_size: int
    block_size: int
    min_update_index: int
    max_update_index: int
    ref_index_offset: int
    obj_offset: int
    obj_index_offset: int
    log_offset: int
    log_index_offset: int
    object_id_len: int
    ref_present: bool
    obj_present: bool
    log_present: bool
    data_end: int
    released: bool
    def __init__(self, data: Any, path: Optional[str] = None) -> None: ...
    def release(self) -> None: ...
    def iter_section(self, typ: int) -> RecordIter: ...
    def iter_block(self, off: int, typ: int) -> RecordIter: ...
    def seek(self, typ: int, key: bytes) -> RecordIter: ...

# --- lock files (reftable/_lockfile.pxi) ---

def set_fault(op: str, nth: int, err: int = ...) -> None: ...
def set_crash(op: str, nth: int) -> None: ...
def clear_faults() -> None: ...
def io_counts() -> dict[str, int]: ...
def reset_io_counts() -> None: ...
def io_open(path: str, flags: int, mode: int = 0o666) -> int: ...
def io_write(fd: int, data: Any, path: Optional[str] = None) -> None: ...
def io_fsync(fd: int, path: Optional[str] = None) -> None: ...
def io_rename(src: str, dst: str) -> None: ...
def io_unlink(path: str, missing_ok: bool = False) -> None: ...
def io_close(fd: int, path: Optional[str] = None) -> None: ...
def fsync_dir(path: str) -> None: ...

class LockFile:
    @property
    def path(self) -> str: ...
    @property
    def lock_path(self) -> str: ...
    @property
    def committed(self) -> bool: ...
    @property
    def fd(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def __init__(self, path: str, timeout_ms: int = 100, mode: int = 0o666) -> None: ...
    def write(self, data: Any) -> None: ...
    def fsync(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> LockFile: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Any,
    ) -> bool: ...
