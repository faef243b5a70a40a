"""The reftable varint (Git's offset varint: big-endian groups of 7 bits, each
continuation group stored minus one, so every value has exactly one encoding)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.oracle import put_varint

from reftable import FormatError
from reftable._impl import core as _core

decode_varint, encode_varint, varint_length = (
    _core.decode_varint, _core.encode_varint, _core.varint_length)

U64_MAX = (1 << 64) - 1


def width_boundaries() -> list[int]:
    """First value of each width: 0, 128, 16512, ... (the k-byte range starts at
    sum(128**i for i in 1..k-1))."""
    starts = [0]
    s = 0
    for k in range(1, 10):
        s += 128 ** k
        starts.append(s)
    return starts


BOUNDARIES = width_boundaries()
EDGE_VALUES = sorted({v for b in BOUNDARIES for v in (b - 1, b, b + 1) if 0 <= v <= U64_MAX}
                     | {2**63 - 1, 2**63, 2**63 + 1, U64_MAX - 1, U64_MAX, 2**32, 2**56, 2**57})


def test_boundaries_are_the_documented_ones():
    assert BOUNDARIES[:4] == [0, 128, 16512, 2113664]


@pytest.mark.parametrize("width,start", list(enumerate(BOUNDARIES, 1)))
def test_width_changes_exactly_at_boundary(width, start):
    assert len(encode_varint(start)) == width
    assert varint_length(start) == width
    if start:
        assert len(encode_varint(start - 1)) == width - 1
        assert varint_length(start - 1) == width - 1


@pytest.mark.parametrize("value", EDGE_VALUES)
def test_round_trip_at_edges(value):
    enc = encode_varint(value)
    assert enc == put_varint(value)
    assert len(enc) == varint_length(value) <= 10
    assert decode_varint(enc) == (value, len(enc))
    # decoding at an offset inside a larger buffer, followed by junk
    buf = b"\x55\x66" + enc + b"\x80\xff\x00"
    assert decode_varint(buf, 2) == (value, 2 + len(enc))
    assert decode_varint(bytearray(buf), 2) == (value, 2 + len(enc))
    assert decode_varint(memoryview(buf), 2) == (value, 2 + len(enc))


@pytest.mark.parametrize("value,encoded", [
    (0, b"\x00"),
    (1, b"\x01"),
    (127, b"\x7f"),
    (128, b"\x80\x00"),
    (129, b"\x80\x01"),
    (255, b"\x80\x7f"),
    (256, b"\x81\x00"),
    (16511, b"\xff\x7f"),
    (16512, b"\x80\x80\x00"),
    (2113663, b"\xff\xff\x7f"),
    (2113664, b"\x80\x80\x80\x00"),
    (U64_MAX, bytes.fromhex("80fefefefefefefefe7f")),
])
def test_known_encodings(value, encoded):
    assert encode_varint(value) == encoded
    assert decode_varint(encoded) == (value, len(encoded))


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=U64_MAX))
def test_round_trip_property(x):
    enc = encode_varint(x)
    assert decode_varint(enc) == (x, len(enc))
    assert len(enc) == varint_length(x)
    assert enc == put_varint(x)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=U64_MAX), st.integers(min_value=0, max_value=U64_MAX))
def test_encoding_is_unique_and_order_preserving_per_width(a, b):
    ea, eb = encode_varint(a), encode_varint(b)
    assert (ea == eb) == (a == b)
    if len(ea) == len(eb):
        assert (ea < eb) == (a < b)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=12))
def test_decode_arbitrary_bytes_never_crashes(data):
    try:
        value, end = decode_varint(data)
    except FormatError:
        return
    assert 1 <= end <= min(10, len(data))
    assert encode_varint(value) == data[:end]


@pytest.mark.parametrize("data", [
    b"\xff" * 11,
    b"\xff" * 10 + b"\x7f",
    b"\xff" * 9 + b"\x7f",                    # 10 bytes, far above 2**64 - 1
    bytes.fromhex("80fefefefefefefeff00"),    # 10 bytes, just above 2**64 - 1
    bytes.fromhex("80fefefefefefefeff7f"),
    bytes.fromhex("81808080808080808000"),
    b"\x80" * 10 + b"\x00",                  # 11 bytes
])
def test_overflow_is_a_format_error_not_a_wrap(data):
    with pytest.raises(FormatError):
        decode_varint(data)


def test_largest_ten_byte_value_is_accepted():
    assert decode_varint(bytes.fromhex("80fefefefefefefefe7f")) == (U64_MAX, 10)


@pytest.mark.parametrize("value", [128, 16512, 2**35, 2**63, U64_MAX])
def test_truncated_is_a_format_error(value):
    enc = encode_varint(value)
    for n in range(len(enc)):
        with pytest.raises(FormatError):
            decode_varint(enc[:n])
        with pytest.raises(FormatError):
            decode_varint(b"\x00" + enc[:n], 1)


def test_position_past_end_is_a_format_error():
    with pytest.raises(FormatError):
        decode_varint(b"\x01", 2)
    with pytest.raises(FormatError):
        decode_varint(b"\x01", 1)
    with pytest.raises(FormatError):
        decode_varint(b"")


@pytest.mark.parametrize("value", [-1, -(2**63), 2**64, 2**64 + 1, 2**100])
def test_encode_out_of_range_is_overflow_error(value):
    with pytest.raises(OverflowError):
        encode_varint(value)
    with pytest.raises(OverflowError):
        varint_length(value)
