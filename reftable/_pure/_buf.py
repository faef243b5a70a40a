"""Integers of the format: Git's reftable varints and big-endian fixed widths.

The twin of the compiled core's ``_buf`` layer. Decoders never raise on bad input:
they return a negative position (-1 truncated, -2 overflows 64 bits) that the caller
turns into a ``FormatError`` with its own path and offset.
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import FormatError

__all__ = [
    "BE16", "BE24HI", "SMALL", "BE32", "BE64", "U64_MAX",
    "decode_varint", "encode_varint", "footer_size", "get_varint", "header_size",
    "varint_length",
]

U64_MAX = (1 << 64) - 1
BE16 = struct.Struct(">H")
BE32 = struct.Struct(">I")
BE64 = struct.Struct(">Q")
BE24HI = struct.Struct(">BH")  # a 24-bit field as (high byte, low 16 bits)

# one-byte encodings, the common case of every length and prefix
SMALL = [bytes((i,)) for i in range(128)]
_LIMIT = (1 << 57) - 1  # past this, one more group would overflow 64 bits


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer below 2**64 as a reftable varint.

    Each continuation byte stores one less than it would in LEB128, so every value
    has exactly one encoding, most significant group first."""
    if value < 128:
        if value < 0:
            raise OverflowError("varint value must be in [0, 2**64)")
        return SMALL[value]
    if value > U64_MAX:
        raise OverflowError("varint value must be in [0, 2**64)")
    out = bytearray((value & 0x7F,))
    value >>= 7
    while value:
        value -= 1
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.reverse()
    return bytes(out)


def varint_length(value: int) -> int:
    """Number of bytes :func:`encode_varint` uses for ``value``."""
    if value < 0 or value > U64_MAX:
        raise OverflowError("value out of range of a 64-bit varint")
    n = 1
    value >>= 7
    while value:
        value -= 1
        value >>= 7
        n += 1
    return n


def get_varint(d: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at ``pos`` (not reading at or past ``end``): ``(value,
    new_pos)``, or ``(0, -1)`` when it is truncated, ``(0, -2)`` when it overflows."""
    if pos >= end:
        return 0, -1
    b = d[pos]
    val = b & 0x7F
    while b & 0x80:
        pos += 1
        if pos >= end:
            return 0, -1
        if val >= _LIMIT:
            return 0, -2
        b = d[pos]
        val = ((val + 1) << 7) | (b & 0x7F)
    return val, pos + 1


def decode_varint(data: Any, pos: int = 0) -> tuple[int, int]:
    """Decode a varint from ``data`` at ``pos``; return ``(value, new_pos)``.

    Raises ``FormatError`` when the input ends early or the value overflows 64 bits."""
    d = data if isinstance(data, bytes) else bytes(memoryview(data))
    if pos < 0:
        raise OverflowError("negative position")
    if pos > len(d):
        raise FormatError("varint position past end", offset=pos)
    val, npos = get_varint(d, pos, len(d))
    if npos == -1:
        raise FormatError("truncated varint", offset=pos)
    if npos == -2:
        raise FormatError("varint overflows 64 bits", offset=pos)
    return val, npos


def header_size(hash_size: int = 20) -> int:
    """Bytes of a table's file header for ``hash_size`` (20: 24, 32: 28)."""
    return 24 if hash_size == 20 else 28


def footer_size(hash_size: int = 20) -> int:
    """Bytes of a table's footer for ``hash_size`` (20: 68, 32: 72)."""
    return header_size(hash_size) + 44
