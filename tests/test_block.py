"""Block-level behaviour, observed through written tables: block header and restart
table, restart points, prefix compression, padding, and seeking/iterating inside
blocks. Layout checks use an independent pure-Python block parser (``support.oracle``)."""

from __future__ import annotations

import bisect
import math

import pytest
from support import branch_refs, oid, simple_log, write
from support.oracle import (
    BLOCK_INDEX,
    BLOCK_LOG,
    BLOCK_OBJ,
    BLOCK_REF,
    HEADER_SIZE,
    footer_fields,
    parse_block,
    walk_blocks,
)

from reftable import LogRecord, RefRecord, Table, TableWriter, WriteOptions
from reftable._impl import core as _core

TableCore = _core.TableCore


def common_prefix(a: bytes, b: bytes) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def mixed_refs(n: int, hash: str = "sha1") -> list[RefRecord]:
    """Sorted refs of every value type under shared prefixes."""
    out = []
    for i in range(n):
        name = f"refs/heads/topic/{i:05d}"
        k = i % 4
        if k == 0:
            out.append(RefRecord.val1(name, 1, oid(i, hash)))
        elif k == 1:
            out.append(RefRecord.val2(name, 1, oid(i, hash), oid(i + 10_000, hash)))
        elif k == 2:
            out.append(RefRecord.symref(name, 1, f"refs/heads/target/{i}"))
        else:
            out.append(RefRecord.deletion(name, 1))
    return out


# -- block header and restart table -----------------------------------------------------


@pytest.mark.parametrize("hash", ["sha1", "sha256"])
@pytest.mark.parametrize("interval", [1, 2, 3, 5, 16, 64, 128])
def test_restart_every_interval_in_first_block(hash, interval):
    refs = mixed_refs(60, hash)
    data = write(refs, hash=hash, restart_interval=interval)
    hs = HEADER_SIZE[hash]
    # raw header parsing: block type after the file header, 24-bit length, count at end
    assert data[hs] == BLOCK_REF
    blen = int.from_bytes(data[hs + 1:hs + 4], "big")
    count = int.from_bytes(data[blen - 2:blen], "big")
    assert count == math.ceil(60 / interval)
    blk = parse_block(data, 0)
    assert blk.length == blen and blk.restart_count == count
    assert len(blk.records) == 60
    starts = [r[0] for r in blk.records]
    assert blk.restarts == [starts[i] for i in range(0, 60, interval)]
    for i, (_, prefix, _, _, _) in enumerate(blk.records):
        assert (prefix == 0) == (i % interval == 0)
    assert list(Table.from_bytes(data).refs()) == refs


def test_keys_without_common_prefix_are_natural_restarts():
    refs = [RefRecord.val1(n, 1, oid(i)) for i, n in enumerate(["A", "B", "C", "D", "E"])]
    blk = parse_block(write(refs, restart_interval=16), 0)
    assert blk.restart_count == 5
    assert [r[1] for r in blk.records] == [0] * 5


def test_prefix_compression_is_maximal():
    refs = mixed_refs(50)
    data = write(refs, restart_interval=16)
    blk = parse_block(data, 0)
    prev = b""
    for i, (_, prefix, key, vt, _) in enumerate(blk.records):
        want = 0 if i % 16 == 0 else common_prefix(prev, key)
        assert prefix == want
        assert vt == int(refs[i].value_type)
        prev = key
    assert blk.keys == [r.name.encode() for r in refs]
    # compression makes a real difference with long shared prefixes
    long = [RefRecord.val1("refs/heads/" + "x" * 100 + f"/{i:03d}", 1, oid(i))
            for i in range(20)]
    assert len(write(long, restart_interval=16, block_size=65536)) < \
        len(write(long, restart_interval=1, block_size=65536)) - 1500


def test_ref_values_are_stored_as_specified():
    refs = [
        RefRecord.deletion("refs/a", 5),
        RefRecord.val1("refs/b", 6, oid(1)),
        RefRecord.val2("refs/c", 7, oid(2), oid(3)),
        RefRecord.symref("refs/d", 8, "refs/heads/main"),
    ]
    blk = parse_block(write(refs, min_ui=5, max_ui=8), 0)
    vals = [r[4] for r in blk.records]
    assert vals[0] == b"\x00"                       # update index delta only
    assert vals[1] == b"\x01" + oid(1)
    assert vals[2] == b"\x02" + oid(2) + oid(3)
    assert vals[3] == b"\x03" + bytes([15]) + b"refs/heads/main"


def test_restart_count_and_offsets_through_core_block():
    refs = mixed_refs(40)
    data = write(refs, restart_interval=7)
    blk = parse_block(data, 0)
    core = TableCore(data)
    recs = list(core.iter_block(0, BLOCK_REF))
    assert len(recs) == 40
    assert blk.restart_count == math.ceil(40 / 7)


# -- multi-block layout and padding ------------------------------------------------------


@pytest.mark.parametrize("block_size", [256, 1000, 4096])
def test_ref_blocks_are_padded_when_followed_by_other_sections(block_size):
    refs = branch_refs(3000 if block_size == 4096 else 400)
    data = write(refs, block_size=block_size)
    blocks = walk_blocks(data)
    f = footer_fields(data)
    ref_blocks = [b for b in blocks if b.type == BLOCK_REF]
    assert len(ref_blocks) >= 4
    assert [b.offset for b in ref_blocks] == [i * block_size for i in range(len(ref_blocks))]
    # refs then index then obj: every section starts on a block boundary
    assert f["ref_index_offset"] % block_size == 0
    assert f["obj_offset"] > 0 and f["obj_offset"] % block_size == 0
    for b in blocks[:-1]:
        assert b.offset % block_size == 0
    # the last block of the file is not padded
    assert (len(data) - f["footer_size"]) % block_size != 0
    # padding bytes are zeros
    for b in ref_blocks:
        assert data[b.offset + b.length:b.offset + block_size].strip(b"\0") == b""


def test_log_section_follows_padded_refs_without_padding():
    refs = branch_refs(10)
    logs = [simple_log(r.name, 1, i) for i, r in enumerate(refs)]
    data = write(refs, logs, block_size=4096)
    f = footer_fields(data)
    first = parse_block(data, 0)
    assert f["log_offset"] == first.length  # padding of the last ref block is dropped
    assert data[f["log_offset"]] == BLOCK_LOG
    assert len(data) < 4096


@pytest.mark.parametrize("block_size", [128, 512, 4096])
def test_unpadded_is_smaller_and_equivalent(block_size):
    refs = branch_refs(1500)
    logs = [simple_log(r.name, 1, i) for i, r in enumerate(refs[:50])]
    padded = write(refs, logs, block_size=block_size)
    unpadded = write(refs, logs, block_size=block_size, unpadded=True)
    assert len(unpadded) < len(padded)
    a, b = Table.from_bytes(padded), Table.from_bytes(unpadded)
    assert list(a.refs()) == list(b.refs()) == refs
    assert list(a.logs()) == list(b.logs()) == logs
    blocks = walk_blocks(unpadded)
    for x, y in zip(blocks, blocks[1:], strict=False):
        assert y.offset == x.offset + x.stored_size  # contiguous
    assert all(b.length <= block_size for b in walk_blocks(padded))


def test_unpadded_indexes_from_two_blocks_padded_from_four():
    """Git's index threshold: an index is written when the section has more than 3
    blocks (padded) or more than 1 block (unpadded)."""
    for n in range(40, 400, 20):
        for unpadded in (False, True):
            data = write(branch_refs(n), block_size=1024, unpadded=unpadded)
            nblocks = len([b for b in walk_blocks(data) if b.type == BLOCK_REF])
            has_index = footer_fields(data)["ref_index_offset"] > 0
            assert has_index == (nblocks > (1 if unpadded else 3)), (n, unpadded)


def test_every_block_respects_block_size_and_has_a_sane_restart_table():
    refs = mixed_refs(2000)
    logs = [simple_log(r.name, 1, i) for i, r in enumerate(refs[:300])]
    for opts in ({"block_size": 256, "restart_interval": 3},
                 {"block_size": 1024, "restart_interval": 16, "unpadded": True}):
        data = write(refs, logs, **opts)
        seen_types = set()
        for b in walk_blocks(data):
            seen_types.add(b.type)
            assert b.length <= opts["block_size"]
            assert b.restarts[0] == b.header_off + 4
            assert b.restarts == sorted(set(b.restarts))
            prefix_of = {r[0]: r[1] for r in b.records}
            assert all(prefix_of[roff] == 0 for roff in b.restarts)
            for i, (start, prefix, _, _, _) in enumerate(b.records):
                if i % opts["restart_interval"] == 0 or prefix == 0:
                    assert start in b.restarts and prefix == 0
        assert seen_types == {BLOCK_REF, BLOCK_LOG, BLOCK_OBJ, BLOCK_INDEX}


def test_log_blocks_are_deflated_and_header_holds_inflated_length():
    refs = branch_refs(5)
    logs = [simple_log("refs/heads/main", ui, ui, message="x" * 200 + "\n")
            for ui in range(40, 0, -1)]
    data = write(refs, logs, min_ui=1, max_ui=40, block_size=4096)
    f = footer_fields(data)
    b = parse_block(data, f["log_offset"])
    assert b.type == BLOCK_LOG
    assert b.stored_size < b.length  # compressed on disk
    assert len(b.plain) == b.length
    assert [r[2][:-9] for r in b.records] == [b"refs/heads/main"] * len(b.records)


def test_index_records_point_at_blocks_with_that_last_key():
    refs = branch_refs(600)
    data = write(refs, block_size=512)
    t = Table.from_bytes(data)
    core = t._core
    blocks = {b.offset: b for b in walk_blocks(data)}
    ref_blocks = [b for b in blocks.values() if b.type == BLOCK_REF]
    # walk the index tree down to ref blocks: the leaf level lists every ref block
    level = [core.ref_index_offset]
    seen_leaf = []
    for _ in range(10):
        nxt = []
        for off in level:
            assert blocks[off].type == BLOCK_INDEX
            for key, target in core.iter_block(off, BLOCK_INDEX):
                tb = blocks[target]
                if tb.type == BLOCK_REF:
                    assert tb.keys[-1] == key
                    seen_leaf.append(target)
                else:
                    assert tb.type == BLOCK_INDEX
                    nxt.append(target)
        if not nxt:
            break
        level = nxt
    assert sorted(seen_leaf) == [b.offset for b in ref_blocks]


# -- seek and iteration inside one block ----------------------------------------------------


@pytest.mark.parametrize("interval", [1, 2, 5, 16])
@pytest.mark.parametrize("hash", ["sha1", "sha256"])
def test_seek_to_every_key_in_a_single_block(interval, hash):
    refs = mixed_refs(80, hash)
    data = write(refs, hash=hash, restart_interval=interval, block_size=65536)
    assert len(walk_blocks(data)) == 1
    t = Table.from_bytes(data)
    names = [r.name for r in refs]
    for i, r in enumerate(refs):
        assert t.read_ref(r.name) == r
        assert [x[0] for x in t.ref_tuples(r.name)] == names[i:]
        # a key just before / after this one
        assert next(iter(t.ref_tuples(r.name[:-1])))[0] == names[bisect.bisect_left(
            names, r.name[:-1])]
        after = r.name + "\0"
        j = bisect.bisect_left(names, after)
        assert [x[0] for x in t.ref_tuples(after)] == names[j:]
    assert list(t.ref_tuples("zzz")) == []
    assert [x[0] for x in t.ref_tuples("\x01")] == names


def test_iteration_from_every_restart_point():
    refs = mixed_refs(100)
    data = write(refs, restart_interval=6, block_size=65536)
    blk = parse_block(data, 0)
    t = Table.from_bytes(data)
    names = [r.name for r in refs]
    by_offset = {r[0]: r[2] for r in blk.records}
    assert len(blk.restarts) == math.ceil(100 / 6)
    for roff in blk.restarts:
        key = by_offset[roff].decode()
        i = names.index(key)
        assert list(t.refs(key)) == refs[i:i + 1]
        assert list(iter_from(t, key)) == refs[i:]


def iter_from(t: Table, key: str):
    from reftable.table import ref_from_tuple

    for tup in t.ref_tuples(key):
        yield ref_from_tuple(tup)


def test_prefix_iteration_in_one_block():
    refs = ([RefRecord.val1(f"refs/heads/{n}", 1, oid(i)) for i, n in enumerate(
        ["a", "a/b", "a/c", "ab", "b"])]
            + [RefRecord.val1(f"refs/tags/v{i}", 1, oid(i)) for i in range(3)])
    t = Table.from_bytes(write(refs))
    assert [r.name for r in t.refs("refs/heads/a")] == [
        "refs/heads/a", "refs/heads/a/b", "refs/heads/a/c", "refs/heads/ab"]
    assert [r.name for r in t.refs("refs/heads/a/")] == ["refs/heads/a/b", "refs/heads/a/c"]
    assert [r.name for r in t.refs("refs/tags/")] == [f"refs/tags/v{i}" for i in range(3)]
    assert list(t.refs("refs/notes/")) == []
    assert list(t.refs("refs/heads/a", include_deletions=False)) == list(t.refs("refs/heads/a"))


def test_deletions_can_be_filtered():
    refs = mixed_refs(12)
    t = Table.from_bytes(write(refs))
    assert list(t.refs(include_deletions=False)) == [r for r in refs if not r.is_deletion]


# -- seek across blocks -----------------------------------------------------------------------


def test_seek_to_every_key_across_indexed_blocks():
    refs = mixed_refs(500)
    data = write(refs, block_size=512, restart_interval=4)
    t = Table.from_bytes(data)
    assert t.sections["ref"]["index_offset"] > 0
    for r in refs:
        assert t.read_ref(r.name) == r


def test_seek_to_every_key_across_unindexed_blocks():
    refs = mixed_refs(60)
    data = write(refs, block_size=1024, restart_interval=4)
    t = Table.from_bytes(data)
    assert t.sections["ref"]["index_offset"] == 0
    assert len([b for b in walk_blocks(data) if b.type == BLOCK_REF]) >= 2
    for r in refs:
        assert t.read_ref(r.name) == r


def test_seek_across_blocks_when_keys_are_in_later_blocks():
    """Keys past the first ref block of an indexed table are found."""
    refs = mixed_refs(500)
    data = write(refs, block_size=4096, restart_interval=4)
    t = Table.from_bytes(data)
    first_block_keys = set(parse_block(data, 0).keys)
    names = [r.name for r in refs]
    for i, r in enumerate(refs):
        if r.name.encode() in first_block_keys:
            continue
        assert t.read_ref(r.name) == r
        assert [x[0] for x in t.ref_tuples(r.name)][:3] == names[i:i + 3]


def test_log_keys_seek_in_one_block():
    logs = []
    for name in ["HEAD", "refs/heads/a", "refs/heads/b"]:
        logs += [simple_log(name, ui, ui) for ui in range(9, 0, -1)]
    data = write([], logs, min_ui=1, max_ui=9, restart_interval=4)
    t = Table.from_bytes(data)
    for i, lg in enumerate(logs):
        assert list(t.seek_log(lg.refname, lg.update_index)) == logs[i:]
    assert [x.update_index for x in t.logs("refs/heads/a")] == list(range(9, 0, -1))
    # an update index between entries starts at the next older entry
    d = write([], [x for x in logs if x.update_index % 2], min_ui=1, max_ui=9)
    t2 = Table.from_bytes(d)
    assert [x.update_index for x in t2.seek_log("refs/heads/a", 8)][:4] == [7, 5, 3, 1]
    assert list(t2.seek_log("refs/heads/b", 0)) == []


def test_writer_stats_count_restarts_and_blocks():
    refs = mixed_refs(300)
    chunks: list[bytes] = []
    w = TableWriter(chunks.append, WriteOptions(block_size=1024, restart_interval=5),
                    min_update_index=1, max_update_index=1)
    w.add_refs(refs)
    w.add_log(LogRecord.deletion("refs/x", 1))
    w.close()
    data = b"".join(chunks)
    stats = w.stats()
    blocks = walk_blocks(data)
    ref_blocks = [b for b in blocks if b.type == BLOCK_REF]
    assert stats["ref"]["blocks"] == len(ref_blocks)
    assert stats["ref"]["entries"] == 300
    assert stats["ref"]["restarts"] == sum(b.restart_count for b in ref_blocks)
    assert stats["blocks"] == len(blocks)
