"""Writing one table: :class:`TableWriter`.

The block layout, prefix compression, indexes and the obj section are produced by the
Cython core; this layer owns options, limits, record conversion and log message
normalisation. For the same records and options the output is byte-identical to Git's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import IO, Any, Optional, Union

from ._impl import core as _core
from .errors import ApiError
from .records import HASH_SIZES, LogRecord, RefRecord, _Frozen

__all__ = ["WriteOptions", "TableWriter", "write_table_bytes", "normalize_log_message"]


class WriteOptions(_Frozen):
    """How a table is laid out. The defaults are Git's. Immutable."""

    __slots__ = ("hash", "block_size", "restart_interval", "index_objects", "unpadded",
                 "exact_log_message")
    hash: str
    block_size: int
    restart_interval: int
    index_objects: bool
    unpadded: bool
    exact_log_message: bool

    def __init__(
        self,
        hash: str = "sha1",
        block_size: int = 4096,
        restart_interval: int = 16,
        index_objects: bool = True,
        unpadded: bool = False,
        exact_log_message: bool = False,
    ) -> None:
        if hash not in HASH_SIZES:
            raise ApiError(f"unknown hash {hash!r} (use 'sha1' or 'sha256')")
        if not 64 <= block_size < (1 << 24):
            raise ApiError(f"block size {block_size} outside [64, 2**24)")
        if not 1 <= restart_interval <= 65535:
            raise ApiError(f"restart interval {restart_interval} outside [1, 65535]")
        init = object.__setattr__
        init(self, "hash", hash)
        init(self, "block_size", block_size)
        init(self, "restart_interval", restart_interval)
        init(self, "index_objects", index_objects)
        init(self, "unpadded", unpadded)
        init(self, "exact_log_message", exact_log_message)

    @property
    def hash_size(self) -> int:
        return HASH_SIZES[self.hash]


def normalize_log_message(message: str) -> str:
    """Git's normalisation: one line, ending in exactly one newline."""
    out = _core.normalize_message(message.encode("utf-8", "surrogateescape"))
    if out is None:
        raise ApiError("log message spans several lines (use exact_log_message)")
    return out.decode("utf-8", "surrogateescape")


Sink = Union[IO[bytes], Callable[[bytes], Any]]


class TableWriter:
    """Write one reftable: set limits, add refs (sorted by name), then logs (sorted by
    ref name, newest update first), then :meth:`close`.

    Output goes to ``sink``: a binary file object or a callable taking ``bytes``.
    Use :meth:`create` to write a file at a path.
    """

    def __init__(
        self,
        sink: Sink,
        options: Optional[WriteOptions] = None,
        *,
        min_update_index: int = 0,
        max_update_index: int = 0,
        **kwargs: Any,
    ) -> None:
        if options is None:
            options = WriteOptions(**kwargs)
        elif kwargs:
            raise TypeError("pass either options or keyword options, not both")
        self.options = options
        write = sink.write if hasattr(sink, "write") else sink
        self._core = _core.WriterCore(
            hash_size=options.hash_size,
            block_size=options.block_size,
            restart_interval=options.restart_interval,
            index_objects=options.index_objects,
            unpadded=options.unpadded,
            min_update_index=min_update_index,
            max_update_index=max_update_index,
            sink=write,
        )
        self._file: Optional[IO[bytes]] = None
        self._closed = False
        self.empty = False

    @classmethod
    def create(
        cls, path: Union[str, os.PathLike[str]], options: Optional[WriteOptions] = None,
        **kwargs: Any
    ) -> TableWriter:
        """Write a table to ``path`` (created or truncated). Use as a context manager:
        the file is closed (and the table finished) on exit."""
        f = open(path, "wb")
        try:
            w = cls(f, options, **kwargs)
        except BaseException:
            f.close()
            raise
        w._file = f
        return w

    def set_limits(self, min_update_index: int, max_update_index: int) -> None:
        """Set the update-index range of the table; only before the first record."""
        if min_update_index < 0 or max_update_index < min_update_index:
            raise ApiError(f"bad update index limits [{min_update_index}, {max_update_index}]")
        self._core.set_limits(min_update_index, max_update_index)

    @property
    def min_update_index(self) -> int:
        return int(self._core.min_update_index)

    @property
    def max_update_index(self) -> int:
        return int(self._core.max_update_index)

    def add_ref(self, rec: RefRecord) -> None:
        self.add_refs((rec,))

    def add_refs(self, recs: Iterable[RefRecord]) -> None:
        """Add many refs (sorted by name); much faster than repeated :meth:`add_ref`."""
        _core.write_ref_records(self._core, recs)

    def add_log(self, rec: LogRecord) -> None:
        self.add_logs((rec,))

    def add_logs(self, recs: Iterable[LogRecord]) -> None:
        """Add log records in key order (ref name, then newest update first). Unless
        ``exact_log_message``, messages are normalised as Git does (see
        :func:`normalize_log_message`)."""
        _core.write_log_records(self._core, recs, not self.options.exact_log_message)

    def close(self) -> bool:
        """Finish the table. Returns True when it holds no records (Git then reports
        an empty table; the bytes written are still a valid table)."""
        if self._closed:
            return self.empty
        self._closed = True
        try:
            self.empty = bool(self._core.close())
        finally:
            if self._file is not None:
                self._file.close()
        return self.empty

    def stats(self) -> dict[str, Any]:
        return dict(self._core.stats())

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc_type is None:
            self.close()
        elif self._file is not None:
            self._closed = True
            self._file.close()


def write_table_bytes(
    refs: Iterable[RefRecord] = (),
    logs: Iterable[LogRecord] = (),
    options: Optional[WriteOptions] = None,
    *,
    min_update_index: int = 0,
    max_update_index: int = 0,
    **kwargs: Any,
) -> bytes:
    """Write a whole table in memory and return its bytes."""
    chunks: list[bytes] = []
    w = TableWriter(
        chunks.append, options, min_update_index=min_update_index,
        max_update_index=max_update_index, **kwargs
    )
    w.add_refs(refs)
    w.add_logs(logs)
    w.close()
    return b"".join(chunks)
