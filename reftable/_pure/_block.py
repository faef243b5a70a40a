"""Blocks: header, restart table, and the prefix-compressed keys of their records.

The twin of the compiled core's ``_block`` layer. A block is decoded in one pass into
parallel lists (keys, value types, value starts and ends), which lets seeks
``bisect`` over the keys and iteration hand out records by index; values are decoded
only when a record is built (see ``_record``).
"""

from __future__ import annotations

from typing import Optional

from ._buf import get_varint
from ._record import BLOCK_REF, Errs, skip_value

__all__ = ["Block", "Entries", "decode_entries"]

# keys, value types, value starts, value ends
Entries = tuple[list[bytes], list[int], list[int], list[int]]


class Block:
    """One block of a table: its bytes (inflated for log blocks) and layout."""

    __slots__ = ("offset", "typ", "header_off", "length", "restart_count", "restart_start",
                 "full_size", "rec_start", "data", "ents", "checked")

    def __init__(self, offset: int, typ: int, header_off: int, length: int, data: bytes,
                 full_size: int, restart_count: int) -> None:
        self.offset = offset            # file offset of the block
        self.typ = typ
        self.header_off = header_off    # size of the file header inside this block
        self.length = length            # block length, restart table included
        self.data = data                # block bytes (from the file start for block 0)
        self.full_size = full_size      # distance to the next block on disk
        self.restart_count = restart_count
        self.restart_start = length - 2 - 3 * restart_count
        self.rec_start = header_off + 4
        self.ents: Optional[Entries] = None  # decoded keys, kept for seeks
        self.checked = False            # restart table validated


def decode_entries(t: Errs, blk: Block) -> Entries:
    """Decode every key of ``blk`` and skip (validating) every value."""
    d = blk.data
    pos = blk.rec_start
    end = blk.restart_start
    boff = blk.offset
    typ = blk.typ
    hs = t.hash_size
    keys: list[bytes] = []
    extras: list[int] = []
    vstarts: list[int] = []
    vends: list[int] = []
    add_key = keys.append
    add_extra = extras.append
    add_start = vstarts.append
    add_end = vends.append
    key = b""
    while pos < end:
        b = d[pos]
        if b < 0x80:
            prefix = b
            pos += 1
        else:
            prefix, pos = get_varint(d, pos, end)
            if pos < 0:
                raise t.err("bad key prefix varint", boff + end)
        if pos >= end:
            raise t.err("bad key suffix varint", boff + pos)
        b = d[pos]
        if b < 0x80:
            st = b
            pos += 1
        else:
            st, pos2 = get_varint(d, pos, end)
            if pos2 < 0:
                raise t.err("bad key suffix varint", boff + pos)
            pos = pos2
        suffix = st >> 3
        if prefix > len(key):
            raise t.err(f"key prefix {prefix} longer than previous key {len(key)}",
                        boff + pos)
        if suffix > end - pos:
            raise t.err(f"key suffix of {suffix} bytes runs past the block", boff + pos)
        if prefix:
            key = key[:prefix] + d[pos:pos + suffix]
        elif suffix:
            key = d[pos:pos + suffix]
        else:
            raise t.err("empty record key", boff + pos)
        pos += suffix
        extra = st & 7
        add_key(key)
        add_extra(extra)
        add_start(pos)
        if typ == BLOCK_REF:
            # inline the common case: one-byte update index delta, then ids
            if pos < end and d[pos] < 0x80 and (extra == 1 or extra == 2):
                pos += 1 + extra * hs
                if pos > end:
                    raise t.err("truncated object id", boff + end)
            else:
                pos = skip_value(t, typ, extra, d, pos, end, boff)
        else:
            pos = skip_value(t, typ, extra, d, pos, end, boff)
        add_end(pos)
    return keys, extras, vstarts, vends


def check_restarts(t: Errs, blk: Block) -> None:
    """Each restart offset must point at a record among the records that stores its
    key whole (prefix 0); seeks rely on it in Git's reader, so a bogus table fails
    here the same way."""
    d = blk.data
    rs = blk.restart_start
    lo = blk.rec_start
    for i in range(blk.restart_count):
        p = rs + 3 * i
        r = (d[p] << 16) | (d[p + 1] << 8) | d[p + 2]
        if r < lo or r >= rs:
            raise t.err(f"bogus restart offset {r}", blk.offset + p)
        if d[r] != 0:
            raise t.err("restart point does not start a full key", blk.offset + r)
    blk.checked = True
