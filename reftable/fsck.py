"""Consistency checks of tables and stacks (``reftable verify``).

Every check reads; nothing is modified. A finding says what is wrong and where;
``error`` findings mean the data is damaged or inconsistent, ``warning`` findings are
leftovers or oddities that ``Stack.clean()`` or a compaction would remove.
"""

from __future__ import annotations

import os
from typing import Optional

from ._impl import core as _core
from ._value import dataclass
from .errors import FormatError, ReftableError
from .records import RefValueType, log_order, ref_order
from .refname import is_valid_refname
from .table import Table
from .tables_list import TABLE_NAME_RE, TEMP_NAME_RE, parse_table_name, parse_tables_list

__all__ = ["Finding", "check_table", "check_stack", "check_path"]

_OBJ_SAMPLE = 2000


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


def check_table(path: str, table: Optional[Table] = None) -> list[Finding]:
    """Decode every block of one table and check key order and update indices."""
    out: list[Finding] = []
    own = table is None
    try:
        t = table if table is not None else Table.open(path)
    except ReftableError as e:
        return [Finding("error", path, f"cannot open: {e}")]
    try:
        out.extend(_check_table_records(path, t))
        named = parse_table_name(os.path.basename(path))
        if named is not None:
            lo, hi = named
            if (lo, hi) != (t.min_update_index, t.max_update_index):
                out.append(Finding("error", path, f"name says update indices [{lo}, {hi}] "
                                   f"but the header says [{t.min_update_index}, "
                                   f"{t.max_update_index}]"))
    finally:
        if own:
            t.close()
    return out


def _check_table_records(path: str, t: Table) -> list[Finding]:
    out: list[Finding] = []
    if t.min_update_index > t.max_update_index:
        out.append(Finding("error", path, "min update index above max update index"))
    try:
        prev: Optional[bytes] = None
        for r in t.refs():
            key = r.name
            if prev is not None and ref_order(r) <= prev:
                out.append(Finding("error", path, f"ref {key!r} out of order"))
            prev = ref_order(r)
            if not t.min_update_index <= r.update_index <= t.max_update_index:
                out.append(Finding("error", path, f"ref {key!r} has update index "
                                   f"{r.update_index} outside the table's range"))
            if not is_valid_refname(key):
                out.append(Finding("warning", path, f"ref name {key!r} is not valid for Git"))
            if (r.value_type == RefValueType.SYMREF and r.target is not None
                    and not is_valid_refname(r.target)):
                out.append(Finding("warning", path, f"symref {key!r} targets invalid name "
                                   f"{r.target!r}"))
        prev_key: Optional[tuple[bytes, int]] = None
        for lg in t.logs():
            k = log_order(lg)
            if prev_key is not None and k <= prev_key:
                out.append(Finding("error", path, f"log {lg.refname!r}@{lg.update_index} "
                                   "out of order"))
            prev_key = k
            if lg.update_index > t.max_update_index:
                out.append(Finding("error", path, f"log {lg.refname!r} has update index "
                                   f"{lg.update_index} above the table's max"))
        # The obj index must point at ref blocks holding the ids it lists: decode it
        # all, and follow the positions of the first records (a full cross-check
        # would decode a ref block per object id).
        for i, (prefix, positions) in enumerate(t._core.iter_section(_core.BLOCK_TYPE_OBJ)):
            if i >= _OBJ_SAMPLE:
                continue
            for off in positions:
                if not any((r.value or b"").startswith(prefix)
                           or (r.target_value or b"").startswith(prefix)
                           for r in t._core.iter_block(off, _core.BLOCK_TYPE_REF, True)):
                    out.append(Finding("error", path, f"obj record {prefix.hex()} points at "
                                       f"block {off} which has no such object id"))
    except FormatError as e:
        out.append(Finding("error", path, f"corrupt: {e.reason} (offset {e.offset})"))
    return out


def check_stack(directory: str) -> list[Finding]:
    """Check ``tables.list``, every listed table, the update-index ranges across the
    stack, and leftovers (unlisted tables, temp files, stale locks)."""
    out: list[Finding] = []
    list_path = os.path.join(directory, "tables.list")
    try:
        with open(list_path, "rb") as f:
            names = parse_tables_list(f.read(), list_path)
    except FileNotFoundError:
        return [Finding("error", list_path, "missing")]
    except FormatError as e:
        return [Finding("error", list_path, str(e))]
    tables: list[tuple[str, Table]] = []
    try:
        for n in names:
            p = os.path.join(directory, n)
            if not os.path.exists(p):
                out.append(Finding("error", p, "listed in tables.list but missing"))
                continue
            try:
                t = Table.open(p)
            except ReftableError as e:
                out.append(Finding("error", p, f"cannot open: {e}"))
                continue
            tables.append((n, t))
            out.extend(check_table(p, t))
        hashes = {t.hash for _, t in tables}
        if len(hashes) > 1:
            out.append(Finding("error", directory, f"tables of different hashes: "
                               f"{sorted(hashes)}"))
        for (n1, t1), (n2, t2) in zip(tables, tables[1:], strict=False):
            if t2.min_update_index <= t1.max_update_index:
                out.append(Finding("error", os.path.join(directory, n2),
                                   f"update indices overlap with {n1}"))
    finally:
        for _, t in tables:
            t.close()
    listed = set(names)
    for entry in sorted(os.listdir(directory)):
        p = os.path.join(directory, entry)
        if TABLE_NAME_RE.fullmatch(entry) and entry not in listed:
            out.append(Finding("warning", p, "table not listed in tables.list "
                               "(leftover; `reftable clean` removes it)"))
        elif TEMP_NAME_RE.fullmatch(entry):
            out.append(Finding("warning", p, "temporary table (in progress or leftover)"))
        elif entry.endswith(".lock"):
            out.append(Finding("warning", p, "lock file present (held or stale)"))
    return out


def check_path(path: str) -> list[Finding]:
    """:func:`check_stack` for a directory, :func:`check_table` for a file."""
    if os.path.isdir(path):
        return check_stack(path)
    return check_table(path)
