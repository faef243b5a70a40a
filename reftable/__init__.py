"""reftable: Git's reftable ref storage format, with a Cython core.

Read, write, stack and compact reftables, byte-compatible with Git and safe under
concurrent writers and compactors.
"""

from .errors import (
    ApiError,
    EmptyTableError,
    EntryTooBigError,
    FormatError,
    LockError,
    NotExistError,
    OutdatedError,
    RefNameError,
    ReftableError,
    ReftableIOError,
)
from .merged import MergedTable
from .records import LogRecord, LogValueType, RefRecord, RefValueType
from .table import Table
from .writer import TableWriter, WriteOptions, write_table_bytes

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "EmptyTableError",
    "EntryTooBigError",
    "FormatError",
    "LockError",
    "LogRecord",
    "LogValueType",
    "MergedTable",
    "NotExistError",
    "OutdatedError",
    "RefNameError",
    "RefRecord",
    "RefValueType",
    "ReftableError",
    "ReftableIOError",
    "Table",
    "TableWriter",
    "WriteOptions",
    "write_table_bytes",
    "__version__",
]
