"""reftable: Git's reftable ref storage format, with a Cython core (and a pure-Python
twin of it, used when the compiled module is absent or ``REFTABLE_PURE_PYTHON=1``;
``reftable.IMPLEMENTATION`` says which one runs).

Read, write, stack and compact reftables, byte-compatible with Git and safe under
concurrent writers and compactors.
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    ApiError,
    ConfigError,
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

if TYPE_CHECKING:
    from ._impl import IMPLEMENTATION
    from .merged import MergedTable
    from .records import LogRecord, LogValueType, RefRecord, RefValueType
    from .repository import Repository, RepositoryTransaction
    from .stack import LogExpiry, Stack, StackOptions, StackStats
    from .table import Table
    from .transaction import ANY, LogEntry, Transaction
    from .writer import TableWriter, WriteOptions, write_table_bytes

# The rest of the API is imported on first use, so that ``import reftable`` stays cheap
# for short-lived processes that need one part of it.
_LAZY = {
    "IMPLEMENTATION": "_impl",
    "MergedTable": "merged",
    "LogRecord": "records", "LogValueType": "records", "RefRecord": "records",
    "RefValueType": "records",
    "LogExpiry": "stack", "Stack": "stack", "StackOptions": "stack", "StackStats": "stack",
    "Table": "table",
    "ANY": "transaction", "LogEntry": "transaction", "Transaction": "transaction",
    "TableWriter": "writer", "WriteOptions": "writer", "write_table_bytes": "writer",
    # the repository layer (config reader, reflog rules)
    "Repository": "repository", "RepositoryTransaction": "repository",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'reftable' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "ANY",
    "ApiError",
    "ConfigError",
    "EntryTooBigError",
    "ExpectationError",
    "FormatError",
    "IMPLEMENTATION",
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
