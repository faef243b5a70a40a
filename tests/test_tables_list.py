"""reftable.tables_list: table names, tables.list content and the geometric policy,
tested as pure functions (no stack, no files)."""

from __future__ import annotations

import random
import subprocess
import sys
from itertools import pairwise

import pytest

from reftable.errors import FormatError
from reftable.tables_list import (
    MAX_LIST_SIZE,
    TABLE_NAME_RE,
    parse_table_name,
    parse_tables_list,
    serialize_tables_list,
    suggest_compaction_segment,
    table_name,
    temp_table_name,
    temp_table_pid,
)

A = "0x000000000007-0x000000000009-00c0ffee.ref"
B = "0x00000000000a-0x00000000000a-deadbeef.ref"


def test_module_needs_no_core():
    # importable (and usable) without the compiled or the pure core being loaded
    code = ("import sys, reftable.tables_list as t\n"
            "assert t.parse_tables_list(b'') == []\n"
            "assert not [m for m in sys.modules if m.startswith('reftable._')], sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- names --------------------------------------------------------------------------------------


def test_table_name_round_trips():
    assert table_name(7, 9, 0x00C0FFEE) == A
    assert parse_table_name(A) == (7, 9)
    big = table_name(1 << 60, (1 << 64) - 1, 0)
    assert big == "0x1000000000000000-0xffffffffffffffff-00000000.ref"
    assert parse_table_name(big) == (1 << 60, (1 << 64) - 1)
    assert TABLE_NAME_RE.fullmatch(table_name(1, 2, random.getrandbits(32)))


@pytest.mark.parametrize("name", [
    "0x7-0x9-00c0ffee.ref",  # fewer than 12 digits: not a name we (or Git) write
    "0x000000000007-0x000000000009-00C0FFEE.ref",
    "0x000000000007-0x000000000009-00c0ffee.ref.lock",
    "0x000000000007-0x000000000009-00c0ffe.ref",
    "0x00000000000000007-0x000000000009-00c0ffee.ref",  # 17 digits
    ".tmp-12-00c0ffee.ref",
    "tables.list",
    "",
])
def test_other_names_are_not_table_names(name):
    assert parse_table_name(name) is None


def test_temp_names():
    name = temp_table_name(4242, 0xABC)
    assert name == ".tmp-4242-00000abc.ref"
    assert temp_table_pid(name) == 4242
    assert parse_table_name(name) is None
    for other in (A, ".tmp-x-00000abc.ref", ".tmp-1-00000abc.ref.lock", "tmp-1-00000abc.ref"):
        assert temp_table_pid(other) is None


# -- tables.list --------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [[], [A], [A, B]])
def test_serialize_and_parse_round_trip(names):
    data = serialize_tables_list(names)
    assert data == b"".join(n.encode() + b"\n" for n in names)
    assert parse_tables_list(data) == names


@pytest.mark.parametrize("data, message", [
    (A.encode(), "no newline"),  # a list cut short by an unfinished writer
    (f"{A}\n{B}".encode(), "no newline"),
    (f"{A}\n{A}\n".encode(), "listed twice"),
    (f"{A}\n\n{B}\n{A}\n".encode(), "listed twice"),  # (the slow path)
    (f"{A}\n../{B}\n".encode(), "line 2: not a table name"),
    (f"{A}\n{B}/\n".encode(), "line 2"),
    (f"\n\n{A}\x00\n".encode(), "line 3"),
    (b"/etc/passwd\n", "line 1"),
    (b"\xff" * 60 + b"\n", "line 1"),
    (b"0" * (MAX_LIST_SIZE + 1), "implausibly large"),
])
def test_hostile_content_is_refused_with_where(data, message):
    with pytest.raises(FormatError, match=message) as info:
        parse_tables_list(data, "/some/stack/tables.list")
    assert "/some/stack/tables.list" in str(info.value)


def test_empty_lines_are_tolerated():
    assert parse_tables_list(f"\n{A}\n\n\n{B}\n\n".encode()) == [A, B]


def test_list_of_maximum_size_is_parsed():
    n = MAX_LIST_SIZE // (len(A) + 1)
    names = [table_name(i, i, i) for i in range(1, n + 1)]
    data = serialize_tables_list(names)
    assert len(data) <= MAX_LIST_SIZE
    assert parse_tables_list(data) == names


# -- the geometric policy -----------------------------------------------------------------------


@pytest.mark.parametrize("sizes, factor, expected", [
    # the case Git's unit test checks: everything but the largest table
    ([512, 64, 17, 16, 9, 9, 9, 16, 2, 16], 2, (1, 10)),
    # already geometric (Git's "nothing to compact" case, and longer ones)
    ([64, 32, 16, 8, 4, 2], 2, (0, 0)),
    ([1000, 500, 250], 2, (0, 0)),
    # two equal tables on top of a large one: just those two
    ([1000, 5, 5], 2, (1, 3)),
    # the newest table is the largest: it pulls in everything before it
    ([1, 2, 3, 100], 2, (0, 4)),
    # a break in the middle, with a well-shaped tail after it: the tail stays
    ([100, 90, 40, 20], 2, (0, 2)),
    # merging cascades up as far as the merged size needs
    ([40, 20, 10, 5, 5], 2, (0, 5)),
    ([81, 20, 10, 5, 5], 2, (1, 5)),
    # a larger factor asks more of each step
    ([9, 3, 1], 3, (0, 0)),
    ([9, 3, 2], 3, (0, 3)),
    ([8, 3, 1], 3, (0, 2)),
    # 0 and negative factors mean Git's default
    ([3, 2], 0, (0, 2)),
    ([4, 2], -1, (0, 0)),
    # nothing to merge in a stack of fewer than two tables
    ([], 2, (0, 0)),
    ([7], 2, (0, 0)),
])
def test_suggest_compaction_segment(sizes, factor, expected):
    assert suggest_compaction_segment(sizes, factor) == expected


def _geometric(sizes: list[int], factor: int) -> bool:
    return all(a >= b * factor for a, b in pairwise(sizes))


@pytest.mark.parametrize("factor", [2, 4])
def test_policy_restores_the_sequence_and_is_minimal(factor):
    rnd = random.Random(12 + factor)
    for _ in range(1500):
        sizes = [rnd.randint(1, 1 << rnd.randint(0, 12)) for _ in range(rnd.randint(0, 8))]
        start, end = suggest_compaction_segment(sizes, factor)
        assert 0 <= start <= end <= len(sizes)
        assert (start == end) == _geometric(sizes, factor), sizes
        if start == end:
            continue
        merged = sizes[:start] + [sum(sizes[start:end])] + sizes[end:]
        assert _geometric(merged, factor), (sizes, start, end)
        # Git's segment ends at the newest table that breaks the sequence: the tables
        # after it already form a geometric tail
        assert _geometric(sizes[end - 1:], factor), (sizes, start, end)
