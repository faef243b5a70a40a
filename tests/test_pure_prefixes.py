"""The pure twin's writer computes the shared key prefixes of a whole batch at once
(``common_prefixes``, big-integer lanes): it must agree with the plain definition for
every shape of key the writer can meet (NUL bytes, mixed lengths, keys over 255
bytes, one key a prefix of the next)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from reftable._pure._writer import common_prefixes


def shared(a: bytes, b: bytes) -> int:
    return len(os.path.commonprefix([a, b]))


def expected(first: bytes, keys: list[bytes]) -> list[int]:
    return [shared(p, k) for p, k in zip([first, *keys[:-1]], keys, strict=True)]


alphabet = st.sampled_from(b"\x00\x01a/b\xff")
short = st.binary(max_size=12).map(bytes)
keysets = st.one_of(
    st.lists(st.builds(bytes, st.lists(alphabet.map(int), max_size=10)), min_size=2,
             max_size=60, unique=True),
    st.lists(short, min_size=2, max_size=60, unique=True),
    st.lists(st.binary(min_size=250, max_size=300), min_size=2, max_size=8, unique=True),
    st.lists(st.binary(min_size=7, max_size=7), min_size=2, max_size=40, unique=True),
)


@settings(max_examples=400, deadline=None)
@given(keysets)
def test_common_prefixes_match_the_definition(keys: list[bytes]) -> None:
    keys = sorted(keys)
    first, rest = keys[0], keys[1:]
    assert list(common_prefixes(first, rest)) == expected(first, rest)


@given(st.lists(st.integers(0, 300), min_size=1, max_size=20))
def test_keys_extending_each_other(lengths: list[int]) -> None:
    # each key a prefix of the next: padding NULs must never count as shared
    base = bytes(i % 3 for i in range(max(lengths) + 1))
    keys = sorted({base[:n] for n in lengths} | {base[: max(lengths) + 1]})
    first, rest = keys[0], keys[1:]
    if rest:
        assert list(common_prefixes(first, rest)) == expected(first, rest)


def test_a_nul_tail_shares_nothing_past_the_shorter_key() -> None:
    assert list(common_prefixes(b"ab", [b"ab\x00", b"ab\x00\x00x", b"b"])) == [2, 3, 0]
