"""The test suite's helpers, one package (``conftest.py`` keeps fixtures and options only):

- here: the core under test, object ids and small record/table builders;
- ``support.fixtures``: Git's fixture stacks and repositories, found relative to the
  repository (``../shared/fixtures``, else the ``tests/data`` copies of the sdist);
- ``support.oracle``: the independent decoder of the table format;
- ``support.stacks``: stack helpers and the workers of the multi-process stress test;
- ``support.faults``: the stack and scenarios of the fault-injection and crash tests;
- ``support.repos``: repository layouts and the CLI run in-process.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import pytest

import reftable
from reftable import LogRecord, RefRecord, WriteOptions
from reftable._impl import IMPLEMENTATION

from .oracle import HASH_SIZE

#: The core under test: "cython" or "python" (the pure twin).
PURE = IMPLEMENTATION == "python"
compiled_only = pytest.mark.skipif(PURE, reason="probes the compiled core's internals")
#: Counts the file operations of reading small tables, which are read whole unless the
#: suite runs with every table taking the large tables' path (see ``conftest.py``).
counts_small_table_reads = pytest.mark.skipif(
    bool(os.environ.get("REFTABLE_TEST_READ_WHOLE_MAX")),
    reason="REFTABLE_TEST_READ_WHOLE_MAX changes how small tables are read")

ZERO = {"sha1": b"\0" * 20, "sha256": b"\0" * 32}


def oid(n: int, hash: str = "sha1") -> bytes:
    """A deterministic object id for ``0 <= n < 2**64``: well-spread leading bytes (so
    ids do not share long prefixes), ``n`` itself in the last 8 (see ``oid_number``)."""
    size = HASH_SIZE[hash] - 8
    key = n.to_bytes(8, "big")
    spread = b"".join(zlib.crc32(key + b"reftable-test" + bytes([i])).to_bytes(4, "big")
                      for i in range(size // 4))
    return spread + key


def oid_number(value: bytes) -> int:
    """The ``n`` of ``oid(n)``."""
    return int.from_bytes(value[-8:], "big")


def write(refs: Any = (), logs: Any = (), min_ui: int = 1, max_ui: int = 1,
          **opts: Any) -> bytes:
    """A table of these records, written by the library with ``WriteOptions(**opts)``."""
    return reftable.write_table_bytes(
        list(refs), list(logs), WriteOptions(**opts),
        min_update_index=min_ui, max_update_index=max_ui,
    )


def branch_refs(n: int, ui: int = 1, prefix: str = "refs/heads/b", hash: str = "sha1",
                width: int = 6) -> list[RefRecord]:
    return [RefRecord.val1(f"{prefix}{i:0{width}d}", ui, oid(i, hash)) for i in range(n)]


def simple_log(refname: str, ui: int, i: int = 0, hash: str = "sha1",
               message: str = "update\n") -> LogRecord:
    return LogRecord.update(refname, ui, oid(2 * i, hash), oid(2 * i + 1, hash),
                            "A U Thor", "author@example.com", 1_700_000_000 + i, 120, message)


def log_update(refname: str, ui: int, old: bytes, new: bytes, time: int = 1_700_000_000,
               message: str = "msg\n", email: str = "identity@invalid") -> LogRecord:
    return LogRecord.update(refname, ui, old, new, "A U Thor", email, time, 0, message)


def random_merged_tables(seed: int) -> list[reftable.Table]:
    """Four tables (update indexes 1 to 4) of random refs over 1,500 names: each ref a
    tombstone, symref, peeled tag or plain id, so that newer tables shadow and delete
    refs of older ones; blocks of 256 or 1024 bytes."""
    import random

    rng = random.Random(seed)
    tables = []
    for k in range(4):
        recs = {}
        for _ in range(rng.randrange(200, 900)):
            name = f"refs/{rng.choice(['heads', 'tags'])}/{rng.randrange(1500):x}"
            kind = rng.randrange(10)
            if kind == 0:
                recs[name] = RefRecord.deletion(name, k + 1)
            elif kind == 1:
                recs[name] = RefRecord.symref(name, k + 1, f"refs/heads/t{rng.randrange(99)}")
            elif kind == 2:
                recs[name] = RefRecord.val2(name, k + 1, oid(rng.randrange(1, 999)),
                                            oid(rng.randrange(1, 999)))
            else:
                recs[name] = RefRecord.val1(name, k + 1, oid(rng.randrange(1, 999)))
        refs = sorted(recs.values(), key=lambda r: r.name.encode())
        tables.append(reftable.Table.from_bytes(
            write(refs, min_ui=k + 1, max_ui=k + 1, block_size=rng.choice([256, 1024]))))
    return tables
