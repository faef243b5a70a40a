"""reftable: Git's reftable ref storage format, with a Cython core (and a pure-Python
twin of it, used when the compiled module is absent or ``REFTABLE_PURE_PYTHON=1``).

Read, write, stack and compact reftables, byte-compatible with Git and safe under
concurrent writers and compactors.

The errors are imported eagerly; everything that needs a core is imported on first
use, so ``import reftable.errors`` works even where no core can be loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ApiError,
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
)

if TYPE_CHECKING:
    from ._impl import IMPLEMENTATION
    from .merged import MergedTable
    from .records import LogRecord, LogValueType, RefRecord, RefValueType
    from .stack import LogExpiry, Stack, StackOptions, StackStats
    from .table import Table
    from .transaction import ANY, LogEntry, Transaction
    from .writer import TableWriter, WriteOptions, write_table_bytes

__version__ = "0.1.0"

# public name -> module defining it (imported on first access)
_LAZY = {
    "IMPLEMENTATION": "_impl",
    "MergedTable": "merged",
    "LogRecord": "records", "LogValueType": "records", "RefRecord": "records",
    "RefValueType": "records",
    "LogExpiry": "stack", "Stack": "stack", "StackOptions": "stack", "StackStats": "stack",
    "Table": "table",
    "ANY": "transaction", "LogEntry": "transaction", "Transaction": "transaction",
    "TableWriter": "writer", "WriteOptions": "writer", "write_table_bytes": "writer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ANY",
    "ApiError",
    "EmptyTableError",
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
