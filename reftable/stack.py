"""The stack of tables named by ``tables.list``."""

from __future__ import annotations

import os
import re

from .errors import FormatError, NotExistError, ReftableIOError

__all__ = ["read_tables_list", "TABLE_NAME_RE"]

TABLE_NAME_RE = re.compile(r"0x[0-9a-f]{12,16}-0x[0-9a-f]{12,16}-[0-9a-f]{8}\.ref")


def parse_tables_list(data: bytes, path: str = "tables.list") -> list[str]:
    """Split ``tables.list`` content into table names, rejecting anything that is not a
    table name (so no entry can point outside the stack directory)."""
    names = []
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if not line:
            continue  # empty lines and a missing final newline are tolerated, like Git
        try:
            name = line.decode("ascii")
        except UnicodeDecodeError:
            raise FormatError(f"line {lineno}: not a table name: {line[:80]!r}", path) from None
        if not TABLE_NAME_RE.fullmatch(name):
            raise FormatError(f"line {lineno}: not a table name: {line[:80]!r}", path)
        names.append(name)
    if len(set(names)) != len(names):
        raise FormatError("a table is listed twice", path)
    return names


def read_tables_list(directory: str) -> list[str]:
    path = os.path.join(directory, "tables.list")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise NotExistError(f"{path}: no such file") from None
    except OSError as e:
        raise ReftableIOError(e.errno or 0, e.strerror or str(e), path) from e
    return parse_tables_list(data, path)
