"""Shared helpers of the test suite: Git fixture locations and small record builders.

The suite runs against whichever core ``reftable._impl`` picked: the compiled one, or
the pure-Python twin with ``REFTABLE_PURE_PYTHON=1`` (CI runs it both ways). Tests of
compiled-only internals are marked with ``compiled_only``.
"""

from __future__ import annotations

import functools
import json
import os
import zlib
from pathlib import Path
from typing import Any

import iofaults
import pytest

import reftable
from reftable import LogRecord, RefRecord, Table, WriteOptions
from reftable._impl import IMPLEMENTATION
from reftable._impl import core as _core

#: The core under test: "cython" or "python" (the pure twin).
PURE = IMPLEMENTATION == "python"
compiled_only = pytest.mark.skipif(PURE, reason="probes the compiled core's internals")


def pytest_report_header(config: pytest.Config) -> str:
    return f"reftable core: {IMPLEMENTATION} ({_core.__name__})"


ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "data" / "git"
SCENARIOS = sorted(
    p.name for p in FIXTURES.iterdir() if (p / "expected.json").is_file()
) if FIXTURES.is_dir() else []

HEADER_SIZE = {"sha1": 24, "sha256": 28}
FOOTER_SIZE = {"sha1": 68, "sha256": 72}
HASH_SIZE = {"sha1": 20, "sha256": 32}

iofaults.install()  # fault and crash injection for every test that wants it

BLOCK_REF = _core.BLOCK_TYPE_REF
BLOCK_LOG = _core.BLOCK_TYPE_LOG
BLOCK_OBJ = _core.BLOCK_TYPE_OBJ
BLOCK_INDEX = _core.BLOCK_TYPE_INDEX


@functools.cache
def load_expected(scenario: str) -> dict[str, Any]:
    with open(FIXTURES / scenario / "expected.json", encoding="utf-8") as f:
        return json.load(f)


def stack_dir(scenario: str) -> Path:
    return FIXTURES / scenario / "reftable"


def table_path(scenario: str, index: int) -> Path:
    return stack_dir(scenario) / load_expected(scenario)["tables"][index]["file"]


def table_cases() -> list[tuple[str, int]]:
    """(scenario, table index) for every table of every scenario."""
    return [(s, i) for s in SCENARIOS for i in range(len(load_expected(s)["tables"]))]


def case_id(case: tuple[str, int]) -> str:
    return f"{case[0]}-t{case[1]}"


def oid(n: int, hash: str = "sha1") -> bytes:
    """A deterministic, well-spread object id for ``n``."""
    size = HASH_SIZE[hash]
    h = n.to_bytes(8, "big") + b"reftable-test"
    out = b""
    i = 0
    while len(out) < size:
        out += zlib.crc32(h + bytes([i])).to_bytes(4, "big")
        i += 1
    return out[:size]


def write(refs=(), logs=(), min_ui: int = 1, max_ui: int = 1, **opts: Any) -> bytes:
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


def footer_fields(data: bytes) -> dict[str, int]:
    """Decode the footer of a table (independent of the library)."""
    version = data[4]
    hsize = 24 if version == 1 else 28
    fsize = hsize + 44
    f = data[len(data) - fsize:]
    p = hsize

    def be64(o: int) -> int:
        return int.from_bytes(f[o:o + 8], "big")

    obj = be64(p + 8)
    return {
        "header_size": hsize,
        "footer_size": fsize,
        "footer_start": len(data) - fsize,
        "ref_index_offset": be64(p),
        "obj_offset": obj >> 5,
        "object_id_len": obj & 0x1F,
        "obj_index_offset": be64(p + 16),
        "log_offset": be64(p + 24),
        "log_index_offset": be64(p + 32),
        "crc": int.from_bytes(f[p + 40:p + 44], "big"),
    }


def refresh_footer_crc(data: bytes | bytearray) -> bytes:
    """Recompute the footer CRC-32 after the footer was patched on purpose."""
    d = bytearray(data)
    hsize = 24 if d[4] == 1 else 28
    fsize = hsize + 44
    start = len(d) - fsize
    crc = zlib.crc32(bytes(d[start:len(d) - 4])) & 0xFFFFFFFF
    d[len(d) - 4:] = crc.to_bytes(4, "big")
    return bytes(d)


def patch_header_and_footer(data: bytes, offset: int, new: bytes) -> bytes:
    """Patch the same header bytes in the header and in the footer copy, keep the CRC."""
    d = bytearray(data)
    hsize = 24 if d[4] == 1 else 28
    fstart = len(d) - (hsize + 44)
    d[offset:offset + len(new)] = new
    d[fstart + offset:fstart + offset + len(new)] = new
    return refresh_footer_crc(d)


def table_from(data: bytes, name: str | None = None) -> Table:
    return Table.from_bytes(data, name)


@pytest.fixture
def tmp_table(tmp_path):
    """Write bytes to a file and return its path (for Table.open tests)."""

    def make(data: bytes, name: str = "t.ref") -> str:
        p = tmp_path / name
        p.write_bytes(data)
        return os.fspath(p)

    return make


# -- an independent reader of the block layout (for checking what the writer produced) ---


def get_varint(buf: bytes, pos: int) -> tuple[int, int]:
    val = buf[pos] & 0x7F
    while buf[pos] & 0x80:
        pos += 1
        val = ((val + 1) << 7) | (buf[pos] & 0x7F)
    return val, pos + 1


class ParsedBlock:
    """One block, decoded in pure Python: header fields, restart table and records
    (``(offset, prefix_len, key, value_type, value_bytes)``)."""

    def __init__(self, data: bytes, off: int, hash_size: int = 20):
        self.offset = off
        self.header_off = (24 if hash_size == 20 else 28) if off == 0 else 0
        h = off + self.header_off
        self.type = data[h]
        self.length = int.from_bytes(data[h + 1:h + 4], "big")
        if self.type == BLOCK_LOG:
            d = zlib.decompressobj()
            body = d.decompress(data[h + 4:], self.length - self.header_off - 4)
            self.stored_size = self.header_off + 4 + (len(data) - h - 4 - len(d.unused_data))
            blk = data[off:h + 4] + body
        else:
            blk = data[off:off + self.length]
            self.stored_size = self.length
        self.raw = blk
        self.restart_count = int.from_bytes(blk[-2:], "big")
        rs = len(blk) - 2 - 3 * self.restart_count
        self.restart_start = rs
        self.restarts = [int.from_bytes(blk[rs + 3 * i:rs + 3 * i + 3], "big")
                         for i in range(self.restart_count)]
        self.records = []
        pos = self.header_off + 4
        key = b""
        while pos < rs:
            start = pos
            prefix, pos = get_varint(blk, pos)
            st, pos = get_varint(blk, pos)
            suffix, vt = st >> 3, st & 7
            key = key[:prefix] + blk[pos:pos + suffix]
            pos += suffix
            vstart = pos
            pos = self._skip_value(blk, pos, vt, hash_size)
            self.records.append((start, prefix, key, vt, blk[vstart:pos]))

    def _skip_value(self, blk: bytes, pos: int, vt: int, hs: int) -> int:
        if self.type == BLOCK_REF:
            _, pos = get_varint(blk, pos)
            if vt in (1, 2):
                return pos + vt * hs
            if vt == 3:
                n, pos = get_varint(blk, pos)
                return pos + n
            return pos
        if self.type == BLOCK_LOG:
            if vt == 0:
                return pos
            pos += 2 * hs
            for _ in range(2):
                n, pos = get_varint(blk, pos)
                pos += n
            _, pos = get_varint(blk, pos)
            pos += 2
            n, pos = get_varint(blk, pos)
            return pos + n
        if self.type == BLOCK_OBJ:
            cnt = vt
            if vt == 0:
                cnt, pos = get_varint(blk, pos)
            for _ in range(cnt):
                _, pos = get_varint(blk, pos)
            return pos
        _, pos = get_varint(blk, pos)  # index
        return pos

    @property
    def keys(self) -> list[bytes]:
        return [r[2] for r in self.records]


def walk_blocks(data: bytes, hash_size: int = 20) -> list[ParsedBlock]:
    """Every block of a table in file order, skipping padding."""
    footer = footer_fields(data)
    end = footer["footer_start"]
    block_size = int.from_bytes(data[5:8], "big")
    out = []
    off = 0
    while off < end:
        b = ParsedBlock(data, off, hash_size)
        out.append(b)
        nxt = off + b.stored_size
        if nxt < end and data[nxt] == 0:
            nxt = off + block_size  # padding up to the block size
        off = nxt
    return out
