"""reftable: Git's reftable ref storage format, with a Cython core.

Read, write, stack and compact reftables, byte-compatible with Git and safe under
concurrent writers and compactors.
"""

from typing import TYPE_CHECKING, Any

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
from .stack import LogExpiry, Stack, StackOptions, StackStats
from .table import Table
from .transaction import ANY, LogEntry, Transaction
from .writer import TableWriter, WriteOptions, write_table_bytes

if TYPE_CHECKING:
    from .repository import Repository, RepositoryTransaction

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The repository layer (config reader, reflog rules) loads on first use: a program
    # that only reads tables or stacks does not pay for it at import.
    if name in ("Repository", "RepositoryTransaction"):
        from . import repository

        return getattr(repository, name)
    raise AttributeError(f"module 'reftable' has no attribute {name!r}")

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
