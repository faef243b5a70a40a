"""The names in a stack directory and the policy over them, in pure Python.

One home for what the stack and ``reftable verify`` both need to know about a stack
directory without opening a table:

* table file names (``0x<min>-0x<max>-<random>.ref``) and temporary table names
  (``.tmp-<pid>-<random>.ref``): format, parse, match;
* ``tables.list``: parsing with validation of hostile content, and serialising;
* the geometric auto-compaction policy, a pure function over table sizes.

Nothing here reads or writes files (the stack does, under its locks).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Optional

from .errors import FormatError

__all__ = [
    "TABLE_NAME_RE",
    "TEMP_NAME_RE",
    "MAX_LIST_SIZE",
    "table_name",
    "parse_table_name",
    "temp_table_name",
    "temp_table_pid",
    "parse_tables_list",
    "serialize_tables_list",
    "suggest_compaction_segment",
]

TABLE_NAME_RE = re.compile(r"0x([0-9a-f]{12,16})-0x([0-9a-f]{12,16})-[0-9a-f]{8}\.ref")
"""A table file name; groups: min and max update index (hex)."""
TEMP_NAME_RE = re.compile(r"\.tmp-(\d+)-[0-9a-f]{8}\.ref")
"""A table being written (or left over by a crash); group: the writer's pid."""
# The usual whole list, checked in one pass (no groups: only a yes/no is needed).
_LIST_RE = re.compile(rb"(?:0x[0-9a-f]{12,16}-0x[0-9a-f]{12,16}-[0-9a-f]{8}\.ref\n)*")
_MAX_NAME = 16 + 16 + 8 + 10  # the longest table name
MAX_LIST_SIZE = 16 << 20
"""Larger ``tables.list`` files are refused (a list of a million tables is ~40 MiB;
we refuse far less)."""


def table_name(min_update_index: int, max_update_index: int, suffix: int) -> str:
    """The file name of a table holding updates ``min..max``; ``suffix`` (32 bits,
    random) tells apart tables of the same range."""
    return f"0x{min_update_index:012x}-0x{max_update_index:012x}-{suffix & 0xFFFFFFFF:08x}.ref"


def parse_table_name(name: str) -> Optional[tuple[int, int]]:
    """``(min, max)`` update indices of a table file name, None for any other name."""
    m = TABLE_NAME_RE.fullmatch(name)
    return None if m is None else (int(m.group(1), 16), int(m.group(2), 16))


def temp_table_name(pid: int, suffix: int) -> str:
    """The name a process writes a new table under before renaming it."""
    return f".tmp-{pid}-{suffix & 0xFFFFFFFF:08x}.ref"


def temp_table_pid(name: str) -> Optional[int]:
    """The pid of the process that wrote temp table ``name``, None for other names."""
    m = TEMP_NAME_RE.fullmatch(name)
    return None if m is None else int(m.group(1))


def parse_tables_list(data: bytes, path: str = "tables.list") -> list[str]:
    """Split ``tables.list`` content into table names, oldest first.

    Anything that is not a table name (absolute paths, ``..``, ``/``, NUL, ...) is
    rejected, so no entry can ever point outside the stack directory; so is a table
    listed twice. Empty lines are tolerated; a last line without its newline is
    refused (a list cut short by a writer that did not finish), as Git's reader
    refuses it. Errors are :class:`FormatError` naming ``path``."""
    if len(data) > MAX_LIST_SIZE:
        raise FormatError(f"tables.list of {len(data)} bytes is implausibly large", path)
    if data and not data.endswith(b"\n"):
        raise FormatError("last line of tables.list has no newline", path, len(data))
    if _LIST_RE.fullmatch(data):
        names = data.decode("ascii").split("\n")[:-1]
    else:
        names = []
        for lineno, line in enumerate(data.split(b"\n"), 1):
            if not line:
                continue
            if len(line) > _MAX_NAME or not TABLE_NAME_RE.fullmatch(line.decode("latin-1")):
                raise FormatError(f"line {lineno}: not a table name: {line[:80]!r}", path)
            names.append(line.decode("ascii"))
    if len(set(names)) != len(names):
        raise FormatError("a table is listed twice", path)
    return names


def serialize_tables_list(names: Sequence[str]) -> bytes:
    """The ``tables.list`` content naming ``names`` (one per line, each ending in a
    newline)."""
    return "".join(n + "\n" for n in names).encode("ascii")


def suggest_compaction_segment(sizes: Sequence[int], factor: int = 2) -> tuple[int, int]:
    """Return ``(start, end)`` (end exclusive) of the tables to compact so that table
    sizes form a geometric sequence again (each at least ``factor`` times the next);
    ``start == end`` when nothing needs compacting. Same policy as Git's
    ``suggest_compaction_segment``; ``factor`` 0 (or below) means Git's default, 2."""
    n = len(sizes)
    if factor <= 0:
        factor = 2  # like Git, 1 is accepted as given
    if n <= 1:
        return (0, 0)
    # Segment end: the newest table whose predecessor is not `factor` times larger.
    end = 0
    total = 0
    i = n - 1
    while i > 0:
        if sizes[i - 1] < sizes[i] * factor:
            end = i + 1
            total = sizes[i]
            break
        i -= 1
    if end == 0:
        return (0, 0)
    # Segment start: keep extending while an older table is smaller than `factor`
    # times the merged size of everything after it (merging works backwards).
    start = end
    while i > 0:
        current = total
        total += sizes[i - 1]
        if sizes[i - 1] < current * factor:
            start = i - 1
        i -= 1
    return (start, end) if start < end else (0, 0)
