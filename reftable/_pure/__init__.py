"""The pure-Python twin of the compiled core ``reftable._core``.

Same interface (``reftable/_core.pyi``), same bytes written, same errors; used when the
compiled module is absent or ``REFTABLE_PURE_PYTHON=1`` (see ``reftable._impl``). One
module per layer of the core, as msgpack's ``fallback.py`` mirrors its extension:

* ``_buf``: varints and fixed-width integers
* ``_block``: blocks and their prefix-compressed keys
* ``_record``: record codecs, one per record type, and record objects
* ``_table``: the table reader (checks, seeks, iteration)
* ``_writer``: the table writer (blocks, indexes, obj index, footer)
* ``_merged``: merged iteration and compaction's copy
* ``_sys``: file I/O through one seam, and lock files
"""

from ._block import Block
from ._buf import crc32, decode_varint, encode_varint, varint_length
from ._merged import MergedIter, merged_lookup
from ._record import BLOCK_INDEX, BLOCK_LOG, BLOCK_OBJ, BLOCK_REF, register_record_types
from ._sys import (
    LockFile,
    clear_faults,
    fsync_dir,
    io_close,
    io_counts,
    io_fsync,
    io_open,
    io_rename,
    io_unlink,
    io_write,
    reset_io_counts,
    set_crash,
    set_fault,
)
from ._table import RecordIter, TableCore, keys_decoded, reset_keys_decoded
from ._writer import WriterCore, write_log_records, write_ref_records

#: Marks the twin (``reftable.IMPLEMENTATION`` is ``"python"``).
PURE = True

BLOCK_TYPE_REF = BLOCK_REF
BLOCK_TYPE_LOG = BLOCK_LOG
BLOCK_TYPE_OBJ = BLOCK_OBJ
BLOCK_TYPE_INDEX = BLOCK_INDEX

__all__ = [
    "BLOCK_TYPE_INDEX", "BLOCK_TYPE_LOG", "BLOCK_TYPE_OBJ", "BLOCK_TYPE_REF", "Block",
    "LockFile", "MergedIter", "PURE", "RecordIter", "TableCore", "WriterCore",
    "clear_faults", "crc32", "decode_varint", "encode_varint", "fsync_dir", "io_close",
    "io_counts", "io_fsync", "io_open", "io_rename", "io_unlink", "io_write",
    "keys_decoded", "merged_lookup", "register_record_types", "reset_io_counts",
    "reset_keys_decoded", "set_crash", "set_fault", "varint_length", "write_log_records",
    "write_ref_records",
]
