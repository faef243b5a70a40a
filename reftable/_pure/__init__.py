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
* ``_sys``: every file operation through one seam, and lock files
"""

from ._block import Block
from ._buf import decode_varint, encode_varint, footer_size, header_size, varint_length
from ._merged import MergedIter, merged_lookup, merged_lookup_many
from ._record import (
    BLOCK_INDEX,
    BLOCK_LOG,
    BLOCK_OBJ,
    BLOCK_REF,
    log_key,
    normalize_message,
    register_record_types,
)
from ._sys import (
    IO_OPS,
    LockFile,
    _set_io_hook,
    fsync_dir,
    io_close,
    io_fsync,
    io_open,
    io_rename,
    io_unlink,
    io_write,
    read_file,
)
from ._table import RecordIter, TableCore, open_table
from ._writer import WriterCore, write_log_records, write_ref_records

#: Marks the twin (``reftable.IMPLEMENTATION`` is ``"python"``).
PURE = True

BLOCK_TYPE_REF = BLOCK_REF
BLOCK_TYPE_LOG = BLOCK_LOG
BLOCK_TYPE_OBJ = BLOCK_OBJ
BLOCK_TYPE_INDEX = BLOCK_INDEX

__all__ = [
    "BLOCK_TYPE_INDEX", "BLOCK_TYPE_LOG", "BLOCK_TYPE_OBJ", "BLOCK_TYPE_REF", "Block",
    "IO_OPS", "LockFile", "MergedIter", "PURE", "RecordIter", "TableCore", "WriterCore",
    "_set_io_hook", "decode_varint", "encode_varint", "footer_size", "fsync_dir",
    "header_size", "io_close", "io_fsync", "io_open", "io_rename", "io_unlink", "io_write",
    "log_key",
    "merged_lookup", "merged_lookup_many", "normalize_message", "open_table", "read_file",
    "register_record_types", "varint_length", "write_log_records", "write_ref_records",
]
