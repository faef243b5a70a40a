"""StackOptions holds a WriteOptions (``write``); the layout keywords of earlier
versions still work and go to it."""

from __future__ import annotations

import pytest

from reftable import Stack, StackOptions, WriteOptions
from reftable._value import replace
from reftable.errors import ApiError
from reftable.records import RefRecord

LAYOUT = dict(block_size=1024, restart_interval=3, index_objects=False, unpadded=True,
              exact_log_message=True)


def test_layout_keywords_go_to_write():
    o = StackOptions(auto_compact=False, **LAYOUT)
    assert o.write == WriteOptions(**LAYOUT)
    assert o == StackOptions(write=WriteOptions(**LAYOUT), auto_compact=False)
    for k, v in LAYOUT.items():
        assert getattr(o, k) == v
    assert StackOptions().write == WriteOptions()


def test_setting_a_layout_attribute_replaces_write():
    o = StackOptions()
    before = o.write
    o.block_size = 2048
    assert o.write == replace(before, block_size=2048)
    assert before.block_size == 4096  # WriteOptions stay immutable


def test_write_and_layout_keywords_together_are_refused():
    with pytest.raises(TypeError, match="block_size"):
        StackOptions(write=WriteOptions(), block_size=1024)


def test_only_hash_is_positional():
    with pytest.raises(TypeError):
        StackOptions(None, 4096)  # type: ignore[misc]


def test_bad_layout_is_refused_when_made():
    with pytest.raises(ApiError):
        StackOptions(block_size=16)
    with pytest.raises(ApiError):
        StackOptions().restart_interval = 0


def test_replace_keeps_write():
    o = StackOptions(block_size=512)
    assert replace(o, hash="sha256").write == o.write


def test_stack_writes_with_the_layout_and_its_own_hash(tmp_path):
    # write.hash is not used: the stack's hash decides
    opts = StackOptions(hash="sha256", write=WriteOptions("sha1", block_size=256,
                                                          index_objects=False))
    with Stack.open(str(tmp_path), opts) as st:
        st.add(lambda w: w.add_refs([RefRecord.val1(f"refs/heads/b{i:03}", st.next_update_index(),
                                                    bytes([i]) * 32) for i in range(40)]))
        t = st.tables[-1]
        assert (t.hash, t.block_size) == ("sha256", 256)
