"""reftable: Git's reftable ref storage format, with a Cython core.

Read, write, stack and compact reftables, byte-compatible with Git and safe under
concurrent writers and compactors.
"""

from .errors import (
    ApiError,
    ConfigError,
    EmptyTableError,
    EntryTooBigError,
    ExpectationError,
    FormatError,
    LockError,
    NotExistError,
    OutdatedError,
    RefConflictError,
    RefNameError,
    ReftableError,
    ReftableIOError,
    RepositoryError,
)
from .merged import MergedTable
from .records import LogRecord, LogValueType, RefRecord, RefValueType
from .repository import Repository, RepositoryTransaction
from .stack import LogExpiry, Stack, StackOptions, StackStats
from .table import Table
from .transaction import ANY, LogEntry, Transaction
from .writer import TableWriter, WriteOptions, write_table_bytes

__version__ = "0.1.0"

__all__ = [
    "ANY",
    "ApiError",
    "ConfigError",
    "EmptyTableError",
    "EntryTooBigError",
    "ExpectationError",
    "FormatError",
    "LockError",
    "LogEntry",
    "LogExpiry",
    "LogRecord",
    "LogValueType",
    "MergedTable",
    "NotExistError",
    "OutdatedError",
    "RefConflictError",
    "RefNameError",
    "RefRecord",
    "RefValueType",
    "ReftableError",
    "ReftableIOError",
    "Repository",
    "RepositoryError",
    "RepositoryTransaction",
    "Stack",
    "StackOptions",
    "StackStats",
    "Table",
    "TableWriter",
    "Transaction",
    "WriteOptions",
    "write_table_bytes",
    "__version__",
]
