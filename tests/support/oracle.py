"""The test suite's own decoder of the table format: small, deliberately simple and
independent of the library, so that tests can check the bytes the library writes
(block layout, restart tables, prefix compression, footer) against a second opinion.

It maps *valid* tables; on malformed input it may raise anything (``get_varint``
raises ``ValueError`` when a varint runs past its bound).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

# Block type bytes (reftable format: 'r', 'g', 'o', 'i').
BLOCK_REF = ord("r")
BLOCK_LOG = ord("g")
BLOCK_OBJ = ord("o")
BLOCK_INDEX = ord("i")
BLOCK_TYPES = (BLOCK_REF, BLOCK_LOG, BLOCK_OBJ, BLOCK_INDEX)

#: Sizes by hash name: file header, footer (header copy + 5 offsets + CRC) and object id.
HEADER_SIZE = {"sha1": 24, "sha256": 28}
FOOTER_SIZE = {"sha1": 68, "sha256": 72}
HASH_SIZE = {"sha1": 20, "sha256": 32}


def be(b: bytes | bytearray, off: int, n: int) -> int:
    """The big-endian unsigned integer of ``n`` bytes at ``off``."""
    return int.from_bytes(b[off:off + n], "big")


def get_varint(buf: bytes | bytearray, pos: int, end: Optional[int] = None) -> tuple[int, int]:
    """Decode a reftable varint at ``pos``: (value, next position). ``ValueError`` when
    it runs to ``end`` (default: the end of ``buf``)."""
    end = len(buf) if end is None else end
    if pos >= end:
        raise ValueError("varint past end")
    val = buf[pos] & 0x7F
    while buf[pos] & 0x80:
        pos += 1
        if pos >= end:
            raise ValueError("varint past end")
        val = ((val + 1) << 7) | (buf[pos] & 0x7F)
    return val, pos + 1


def put_varint(v: int) -> bytes:
    """Encode ``v`` as a reftable varint (the reference encoder of the format)."""
    out = [v & 0x7F]
    v >>= 7
    while v:
        v -= 1
        out.append(0x80 | (v & 0x7F))
        v >>= 7
    return bytes(reversed(out))


def header_size(data: bytes | bytearray) -> int:
    """24 for a version 1 table, 28 for version 2 (which names its hash)."""
    return 24 if data[4] == 1 else 28


def table_hash_size(data: bytes | bytearray) -> int:
    return 20 if data[4] == 1 or bytes(data[24:28]) == b"sha1" else 32


def footer_fields(data: bytes | bytearray) -> dict[str, int]:
    """The footer's fields (and the header and footer sizes)."""
    hsize = header_size(data)
    fsize = hsize + 44
    start = len(data) - fsize
    p = start + hsize
    obj = be(data, p + 8, 8)
    return {
        "header_size": hsize,
        "footer_size": fsize,
        "footer_start": start,
        "ref_index_offset": be(data, p, 8),
        "obj_offset": obj >> 5,
        "object_id_len": obj & 0x1F,
        "obj_index_offset": be(data, p + 16, 8),
        "log_offset": be(data, p + 24, 8),
        "log_index_offset": be(data, p + 32, 8),
        "crc": be(data, p + 40, 4),
    }


def refresh_footer_crc(data: bytes | bytearray, mirror_header: bool = False) -> bytes:
    """Make the footer self-consistent after bytes were patched on purpose: recompute
    its CRC-32 and, with ``mirror_header``, first copy the header into it. Inputs too
    short or of an unknown version come back unchanged."""
    d = bytearray(data)
    if len(d) < 5 or d[4] not in (1, 2):
        return bytes(d)
    hsize = header_size(d)
    fsize = hsize + 44
    if len(d) < hsize + fsize:
        return bytes(d)
    start = len(d) - fsize
    if mirror_header:
        d[start:start + hsize] = d[:hsize]
    d[len(d) - 4:] = (zlib.crc32(bytes(d[start:len(d) - 4])) & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(d)


def patch_header_and_footer(data: bytes, offset: int, new: bytes) -> bytes:
    """Patch the same header bytes in the header and in the footer copy, keep the CRC."""
    d = bytearray(data)
    fstart = len(d) - (header_size(d) + 44)
    d[offset:offset + len(new)] = new
    d[fstart + offset:fstart + offset + len(new)] = new
    return refresh_footer_crc(d)


class Record(NamedTuple):
    """One record of a block, in the block's uncompressed coordinates."""

    start: int
    prefix: int
    key: bytes
    value_type: int
    value: bytes


@dataclass
class Block:
    """One block, decoded: where it is, its header fields, restart table and records."""

    offset: int           # file offset (0 for the first block: the file header is inside)
    header_off: int       # file header bytes at the start of this block
    type: int
    length: int           # declared length (the inflated length for a log block)
    stored_size: int      # bytes on disk, padding excluded
    span: int             # bytes to the next block, padding included
    plain: bytes          # the uncompressed block, file header included for the first
    restart_count: int
    restart_start: int    # in ``plain`` coordinates
    restarts: list[int]
    records: list[Record] = field(default_factory=list)

    @property
    def keys(self) -> list[bytes]:
        return [r.key for r in self.records]

    @functools.cached_property
    def starts(self) -> list[int]:
        return [r.start for r in self.records]


def parse_block(data: bytes | bytearray, off: int, end: Optional[int] = None,
                block_size: int = 0) -> Block:
    """Decode the block at ``off``; ``end`` is where blocks stop (the footer), and a
    non-zero ``block_size`` lets the span cover padding."""
    end = len(data) - (header_size(data) + 44) if end is None else end
    hoff = header_size(data) if off == 0 else 0
    hash_size = table_hash_size(data)
    typ = data[off + hoff]
    blen = be(data, off + hoff + 1, 3)
    if typ == BLOCK_LOG:
        d = zlib.decompressobj()
        body = d.decompress(bytes(data[off + hoff + 4:end]), blen - hoff - 4)
        stored = span = end - off - len(d.unused_data)
        plain = bytes(data[off:off + hoff + 4]) + body
    else:
        plain = bytes(data[off:off + blen])
        stored = span = blen
        if block_size and off + blen < end and data[off + blen] == 0:
            span = block_size
    rc = be(plain, len(plain) - 2, 2)
    rs = len(plain) - 2 - 3 * rc
    restarts = [be(plain, rs + 3 * i, 3) for i in range(rc)]
    b = Block(off, hoff, typ, blen, stored, span, plain, rc, rs, restarts)
    pos = hoff + 4
    key = b""
    while pos < rs:
        start = pos
        prefix, pos = get_varint(plain, pos, rs)
        st, pos = get_varint(plain, pos, rs)
        suffix, vt = st >> 3, st & 7
        key = key[:prefix] + plain[pos:pos + suffix]
        pos += suffix
        vstart = pos
        pos = _skip_value(plain, pos, typ, vt, hash_size)
        b.records.append(Record(start, prefix, key, vt, plain[vstart:pos]))
    return b


def _skip_value(p: bytes, pos: int, typ: int, vt: int, hs: int) -> int:
    if typ == BLOCK_REF:
        _, pos = get_varint(p, pos)            # update index delta
        if vt in (1, 2):
            return pos + vt * hs
        if vt == 3:
            n, pos = get_varint(p, pos)
            return pos + n
        return pos
    if typ == BLOCK_LOG:
        if vt == 0:
            return pos
        pos += 2 * hs                          # old and new ids
        for _ in range(2):                     # name, email
            n, pos = get_varint(p, pos)
            pos += n
        _, pos = get_varint(p, pos)            # time
        pos += 2                               # tz offset
        n, pos = get_varint(p, pos)            # message
        return pos + n
    if typ == BLOCK_OBJ:
        cnt = vt
        if vt == 0:
            cnt, pos = get_varint(p, pos)
        for _ in range(cnt):
            _, pos = get_varint(p, pos)
        return pos
    _, pos = get_varint(p, pos)                # index: child block offset
    return pos


@dataclass
class Layout:
    """A whole table: header facts and every block in file order."""

    version: int
    header_size: int
    footer_size: int
    hash_size: int
    block_size: int
    footer_start: int
    blocks: list[Block]


def parse_layout(data: bytes | bytearray) -> Layout:
    """Map a *valid* table: every block (padding skipped) with its records."""
    hsize = header_size(data)
    fsize = hsize + 44
    block_size = be(data, 5, 3)
    end = len(data) - fsize
    blocks = []
    off = 0
    while off < end:
        b = parse_block(data, off, end, block_size)
        blocks.append(b)
        off += b.span
    return Layout(data[4], hsize, fsize, table_hash_size(data), block_size, end, blocks)


def walk_blocks(data: bytes | bytearray) -> list[Block]:
    """Every block of a table in file order."""
    return parse_layout(data).blocks
