"""Whole tables: empty and single-block tables, indexes, the obj section, writer API
errors, log message rules, SHA-256 (format v2), and repeated seeks."""

from __future__ import annotations

import io
import os

import pytest
from support import branch_refs, oid, simple_log, write
from support.oracle import (
    BLOCK_INDEX,
    BLOCK_OBJ,
    BLOCK_REF,
    FOOTER_SIZE,
    HEADER_SIZE,
    footer_fields,
    parse_block,
    walk_blocks,
)

import reftable
from reftable import (
    ApiError,
    EntryTooBigError,
    LogRecord,
    RefRecord,
    RefValueType,
    Table,
    TableWriter,
    WriteOptions,
    write_table_bytes,
)


def new_writer(opts: WriteOptions | None = None, min_ui: int = 1, max_ui: int = 1):
    chunks: list[bytes] = []
    w = TableWriter(chunks.append, opts or WriteOptions(), min_update_index=min_ui,
                    max_update_index=max_ui)
    return w, chunks


# -- empty and tiny tables -----------------------------------------------------------------


@pytest.mark.parametrize("hash,size", [("sha1", 92), ("sha256", 100)])
def test_empty_table(hash, size):
    w, chunks = new_writer(WriteOptions(hash=hash), 3, 7)
    assert w.close() is True
    assert w.close() is True  # idempotent
    data = b"".join(chunks)
    assert len(data) == size == HEADER_SIZE[hash] + FOOTER_SIZE[hash]
    assert data[:4] == b"REFT"
    assert data[HEADER_SIZE[hash]:HEADER_SIZE[hash] * 2] == data[:HEADER_SIZE[hash]]
    t = Table.from_bytes(data)
    assert (t.version, t.hash, t.min_update_index, t.max_update_index) == (
        1 if hash == "sha1" else 2, hash, 3, 7)
    assert list(t.refs()) == [] and list(t.logs()) == []
    assert t.read_ref("HEAD") is None
    assert list(t.logs("HEAD")) == []
    assert t.refs_for(oid(1, hash)) == []
    assert all(s["present"] == 0 for s in t.sections.values())
    assert t.object_id_len == 0
    assert reftable.MergedTable([t]).refs_for(oid(1, hash)) == []


def test_writer_with_records_is_not_empty():
    w, _ = new_writer()
    w.add_ref(RefRecord.val1("HEAD", 1, oid(1)))
    assert w.close() is False
    w, _ = new_writer()
    w.add_log(simple_log("HEAD", 1))
    assert w.close() is False


def test_single_block_table():
    refs = [RefRecord.symref("HEAD", 1, "refs/heads/main"),
            RefRecord.val1("refs/heads/main", 1, oid(1)),
            RefRecord.val2("refs/tags/v1.0", 1, oid(2), oid(1))]
    logs = [simple_log("HEAD", 1, 0), simple_log("refs/heads/main", 1, 1)]
    data = write(refs, logs)
    t = Table.from_bytes(data)
    assert len(data) < 4096
    assert t.sections["ref"] == {"present": 1, "offset": 0, "index_offset": 0}
    assert t.sections["obj"]["present"] == 0
    assert t.sections["log"]["present"] == 1 and t.sections["log"]["index_offset"] == 0
    assert [b.type for b in walk_blocks(data)] == [BLOCK_REF, ord("g")]
    assert list(t.refs()) == refs
    assert list(t.logs()) == logs
    for r in refs:
        assert t.read_ref(r.name) == r
    assert t.read_ref("refs/heads/mai") is None
    assert t.read_ref("refs/heads/main2") is None


def test_write_to_file_and_open(tmp_path):
    refs = branch_refs(50)
    path = tmp_path / "x.ref"
    with TableWriter.create(path, WriteOptions(), min_update_index=1,
                            max_update_index=1) as w:
        w.add_refs(refs)
    with Table.open(path) as t:
        assert t.name == os.fspath(path)
        assert list(t.refs()) == refs
        assert t.size == path.stat().st_size
    # a binary file object works as a sink too
    buf = io.BytesIO()
    w = TableWriter(buf, WriteOptions(), min_update_index=1, max_update_index=1)
    w.add_refs(refs)
    w.close()
    assert buf.getvalue() == path.read_bytes() == write(refs)


def test_closed_table_refuses_to_iterate(tmp_path):
    path = tmp_path / "x.ref"
    path.write_bytes(write(branch_refs(5)))
    t = Table.open(path)
    it = t.ref_tuples()
    t.close()
    with pytest.raises((ValueError, reftable.ReftableError)):
        list(t.refs())
    with pytest.raises((ValueError, reftable.ReftableError)):
        list(it)


def test_header_limits_round_trip():
    data = write([RefRecord.val1("a", 2**40, oid(1))], min_ui=2**40 - 5, max_ui=2**62)
    t = Table.from_bytes(data)
    assert (t.min_update_index, t.max_update_index) == (2**40 - 5, 2**62)
    assert t.read_ref("a").update_index == 2**40


def test_set_limits_before_records():
    w, chunks = new_writer(min_ui=0, max_ui=0)
    w.set_limits(10, 20)
    assert (w.min_update_index, w.max_update_index) == (10, 20)
    w.add_ref(RefRecord.val1("a", 15, oid(1)))
    w.close()
    t = Table.from_bytes(b"".join(chunks))
    assert (t.min_update_index, t.max_update_index) == (10, 20)


# -- indexes and the obj section ----------------------------------------------------------


def test_multi_level_index_when_index_spans_blocks():
    w, chunks = new_writer(WriteOptions(block_size=128))
    w.add_refs(branch_refs(2000))
    w.close()
    data = b"".join(chunks)
    stats = w.stats()
    assert stats["ref"]["max_index_level"] >= 2
    t = Table.from_bytes(data)
    assert t.sections["ref"]["index_offset"] > 0
    top = t.sections["ref"]["index_offset"]
    assert data[top] == BLOCK_INDEX
    # the top level points at index blocks, not at ref blocks
    targets = [off for _, off in t._core.iter_block(top, BLOCK_INDEX)]
    assert targets and all(data[off] == BLOCK_INDEX for off in targets)
    assert list(t.refs()) == branch_refs(2000)


@pytest.mark.parametrize("unpadded", [False, True])
def test_obj_index_only_with_enough_ref_blocks(unpadded):
    seen = set()
    for n in range(2, 300, 6):
        refs = branch_refs(n)
        data = write(refs, block_size=512, unpadded=unpadded)
        ref_blocks = len([b for b in walk_blocks(data) if b.type == BLOCK_REF])
        t = Table.from_bytes(data)
        want = ref_blocks > (1 if unpadded else 3)
        assert bool(t.sections["obj"]["present"]) == want, (n, ref_blocks)
        assert (t.sections["ref"]["index_offset"] > 0) == want
        assert (t.object_id_len >= 2) == want
        seen.add(want)
        # no obj section at all when index_objects is off
        t2 = Table.from_bytes(write(refs, block_size=512, unpadded=unpadded,
                                    index_objects=False))
        assert t2.sections["obj"]["present"] == 0 and t2.object_id_len == 0
    assert seen == {False, True}


@pytest.mark.parametrize("shared", [0, 1, 2, 3, 7, 12, 18, 19])
def test_object_id_len_is_at_least_two_and_grows_until_unique(shared):
    refs = [RefRecord.val1(f"refs/heads/{i:05d}", 1,
                           b"\xaa" * shared + bytes([i % 256]) + bytes(19 - shared))
            for i in range(400)]
    t = Table.from_bytes(write(refs, block_size=1024))
    assert t.sections["obj"]["present"]
    assert t.object_id_len == max(shared, 1) + 1
    prefixes = [k for k, _ in t._core.iter_section(BLOCK_OBJ)]
    assert all(len(p) == t.object_id_len for p in prefixes)
    assert len(set(prefixes)) == len(prefixes) == 256
    assert prefixes == sorted(prefixes)


def test_obj_records_list_the_blocks_of_each_object():
    refs = [RefRecord.val1(f"refs/heads/{i:05d}", 1, oid(i % 37)) for i in range(600)]
    data = write(refs, block_size=1024)
    t = Table.from_bytes(data)
    ref_blocks = {b.offset: b for b in walk_blocks(data) if b.type == BLOCK_REF}
    records = list(t._core.iter_section(BLOCK_OBJ))
    assert len(records) == 37
    for prefix, positions in records:
        holders = [off for off, b in sorted(ref_blocks.items())
                   if any(rec[4][1:1 + len(prefix)] == prefix for rec in b.records)]
        assert positions == holders


@pytest.mark.parametrize("n,block_size", [(30, 4096), (600, 1024), (3000, 4096)])
def test_refs_for_with_and_without_obj_index_agree(n, block_size):
    refs = []
    for i in range(n):
        name = f"refs/heads/{i:05d}"
        if i % 5 == 0:
            refs.append(RefRecord.val2(name, 1, oid(i % 11), oid(i % 7 + 100)))
        elif i % 5 == 1:
            refs.append(RefRecord.deletion(name, 1))
        elif i % 5 == 2:
            refs.append(RefRecord.symref(name, 1, "refs/heads/00000"))
        else:
            refs.append(RefRecord.val1(name, 1, oid(i % 13)))
    with_idx = Table.from_bytes(write(refs, block_size=block_size))
    without = Table.from_bytes(write(refs, block_size=block_size, index_objects=False))
    assert without.sections["obj"]["present"] == 0
    ids = {oid(k) for k in range(13)} | {oid(k + 100) for k in range(7)} | {oid(999)}
    for x in sorted(ids):
        brute = [r for r in refs if r.value == x or r.target_value == x]
        assert with_idx.refs_for(x) == brute
        assert without.refs_for(x) == brute
        assert with_idx.refs_for(x.hex()) == brute


def test_obj_record_with_many_positions():
    """An object referenced from more than 7 blocks is stored with an explicit count."""
    refs = [RefRecord.val1(f"refs/heads/{i:05d}", 1, oid(0) if i % 3 == 0 else oid(i))
            for i in range(3000)]
    data = write(refs, block_size=512)
    t = Table.from_bytes(data)
    want = [r for r in refs if r.value == oid(0)]
    assert t.refs_for(oid(0)) == want
    rec = [(p, pos) for p, pos in t._core.iter_section(BLOCK_OBJ) if oid(0).startswith(p)]
    assert len(rec) == 1 and len(rec[0][1]) > 8


# -- writer API errors ---------------------------------------------------------------------


def test_keys_out_of_order_are_an_api_error():
    w, _ = new_writer()
    w.add_ref(RefRecord.val1("refs/heads/b", 1, oid(1)))
    with pytest.raises(ApiError):
        w.add_ref(RefRecord.val1("refs/heads/a", 1, oid(1)))
    w, _ = new_writer()
    w.add_ref(RefRecord.val1("refs/heads/b", 1, oid(1)))
    with pytest.raises(ApiError):
        w.add_ref(RefRecord.val1("refs/heads/b", 1, oid(2)))  # duplicate
    # byte order, not code point order of something else: "é" (c3 a9) > "z"
    w, _ = new_writer()
    w.add_ref(RefRecord.val1("refs/z", 1, oid(1)))
    w.add_ref(RefRecord.val1("refs/\u00e9", 1, oid(1)))
    with pytest.raises(ApiError):
        w.add_ref(RefRecord.val1("refs/y", 1, oid(1)))


def test_logs_out_of_order_are_an_api_error():
    w, _ = new_writer(max_ui=5)
    w.add_log(simple_log("refs/heads/a", 1))
    with pytest.raises(ApiError):
        w.add_log(simple_log("refs/heads/a", 2))  # older first is wrong
    w, _ = new_writer(max_ui=5)
    w.add_log(simple_log("refs/heads/b", 1))
    with pytest.raises(ApiError):
        w.add_log(simple_log("refs/heads/a", 3))


def test_refs_after_logs_are_an_api_error():
    w, _ = new_writer()
    w.add_log(simple_log("refs/heads/a", 1))
    with pytest.raises(ApiError):
        w.add_ref(RefRecord.val1("refs/heads/b", 1, oid(1)))


def test_empty_ref_name_is_an_api_error():
    w, _ = new_writer()
    with pytest.raises(ApiError):
        w.add_ref(RefRecord.val1("", 1, oid(1)))
    w, _ = new_writer()
    with pytest.raises(ApiError):
        w.add_log(simple_log("", 1))


@pytest.mark.parametrize("ui", [4, 8, 0, 2**63])
def test_ref_update_index_outside_limits_is_an_api_error(ui):
    w, _ = new_writer(min_ui=5, max_ui=7)
    with pytest.raises(ApiError):
        w.add_ref(RefRecord.val1("refs/heads/a", ui, oid(1)))


def test_ref_update_index_at_limits_is_fine():
    refs = [RefRecord.val1("refs/heads/a", 5, oid(1)), RefRecord.val1("refs/heads/b", 7, oid(2))]
    assert list(Table.from_bytes(write(refs, min_ui=5, max_ui=7)).refs()) == refs


def test_set_limits_after_a_record_is_an_api_error():
    w, _ = new_writer()
    w.add_ref(RefRecord.val1("refs/heads/a", 1, oid(1)))
    with pytest.raises(ApiError):
        w.set_limits(1, 2)
    w, _ = new_writer()
    w.add_log(simple_log("refs/heads/a", 1))
    with pytest.raises(ApiError):
        w.set_limits(1, 2)
    w, _ = new_writer()
    with pytest.raises(ApiError):
        w.set_limits(5, 4)


def test_log_update_index_above_max_is_an_api_error():
    w, _ = new_writer(min_ui=5, max_ui=7)
    with pytest.raises(ApiError):
        w.add_log(simple_log("refs/heads/a", 8))


def test_log_update_index_below_min_is_allowed():
    logs = [simple_log("refs/heads/a", 2)]
    t = Table.from_bytes(write([], logs, min_ui=5, max_ui=7))
    assert list(t.logs()) == logs


def test_object_id_of_wrong_size_is_rejected():
    w, _ = new_writer(WriteOptions(hash="sha256"))
    with pytest.raises(ApiError):
        w.add_ref(RefRecord.val1("refs/heads/a", 1, oid(1, "sha1")))
    with pytest.raises(ValueError):
        RefRecord.val1("refs/heads/a", 1, b"\x01" * 19)


def test_writer_closed_refuses_records():
    w, _ = new_writer()
    w.close()
    with pytest.raises(ApiError):
        w.add_ref(RefRecord.val1("refs/heads/a", 1, oid(1)))


@pytest.mark.parametrize("kwargs", [{"block_size": 63}, {"block_size": 2**24},
                                    {"restart_interval": 0}, {"restart_interval": 65536},
                                    {"hash": "md5"}])
def test_bad_options_are_api_errors(kwargs):
    with pytest.raises(ApiError):
        WriteOptions(**kwargs)


# -- log messages ---------------------------------------------------------------------------


def log_msg(message: str, exact: bool = False) -> str:
    data = write([], [simple_log("refs/heads/a", 1, message=message)],
                 exact_log_message=exact)
    return next(Table.from_bytes(data).logs()).message


@pytest.mark.parametrize("given,stored", [
    ("commit: x", "commit: x\n"),
    ("commit: x\n", "commit: x\n"),
    ("commit: x\n\n\n", "commit: x\n"),
    ("", "\n"),
])
def test_log_message_normalisation(given, stored):
    assert log_msg(given) == stored


@pytest.mark.parametrize("message", ["a\nb", "a\nb\n", "\nx", "a\r\nb\n"])
def test_multi_line_message_needs_exact_mode(message):
    with pytest.raises(ApiError):
        log_msg(message)
    assert log_msg(message, exact=True) == message


def test_exact_mode_keeps_message_as_is():
    for m in ["no newline", "two\n\n", "", "caf\u00e9 \u2603\n"]:
        assert log_msg(m, exact=True) == m


def test_message_too_large_for_a_block_is_entry_too_big():
    w, _ = new_writer(WriteOptions(block_size=4096))
    with pytest.raises(EntryTooBigError):
        w.add_log(simple_log("refs/heads/a", 1, message="x" * 4096 + "\n"))
    # just below the limit works, even though the block is compressed on disk
    ok = "y" * 3900 + "\n"
    t = Table.from_bytes(write([], [simple_log("refs/heads/a", 1, message=ok)]))
    assert next(t.logs()).message == ok


def test_ref_too_large_for_a_block_is_entry_too_big():
    w, _ = new_writer(WriteOptions(block_size=256))
    w.add_ref(RefRecord.val1("refs/heads/a", 1, oid(1)))
    with pytest.raises(EntryTooBigError):
        w.add_ref(RefRecord.symref("refs/heads/b", 1, "t" * 300))


def test_entry_too_big_leaves_writer_usable_for_smaller_records():
    w, chunks = new_writer(WriteOptions(block_size=256))
    w.add_ref(RefRecord.val1("refs/heads/a", 1, oid(1)))
    with pytest.raises(EntryTooBigError):
        w.add_ref(RefRecord.symref("refs/heads/b", 1, "t" * 300))
    w.add_ref(RefRecord.val1("refs/heads/c", 1, oid(3)))
    w.close()
    assert [r.name for r in Table.from_bytes(b"".join(chunks)).refs()] == [
        "refs/heads/a", "refs/heads/c"]


# -- SHA-256 (format version 2) --------------------------------------------------------------


def test_sha256_table_layout():
    refs = branch_refs(20, hash="sha256")
    logs = [simple_log(r.name, 1, i, hash="sha256") for i, r in enumerate(refs)]
    data = write(refs, logs, hash="sha256")
    assert data[:4] == b"REFT" and data[4] == 2
    assert int.from_bytes(data[5:8], "big") == 4096
    assert data[24:28] == b"s256"
    assert data[28] == BLOCK_REF  # first block after the 28-byte header
    f = footer_fields(data)
    assert f["footer_size"] == 72
    assert data[f["footer_start"]:f["footer_start"] + 28] == data[:28]
    t = Table.from_bytes(data)
    assert (t.version, t.hash, t.hash_size) == (2, "sha256", 32)
    assert list(t.refs()) == refs and list(t.logs()) == logs
    for r in refs:
        assert t.read_ref(r.name) == r
        assert t.refs_for(r.value) == [r]


def test_sha1_table_layout():
    data = write(branch_refs(3))
    assert data[4] == 1
    assert data[24] == BLOCK_REF
    assert footer_fields(data)["footer_size"] == 68


def test_sha256_with_obj_index():
    refs = branch_refs(1000, hash="sha256")
    t = Table.from_bytes(write(refs, hash="sha256", block_size=1024))
    assert t.sections["obj"]["present"] and t.object_id_len >= 2
    for r in refs[::37]:
        assert t.refs_for(r.value) == [r]


def test_sha256_object_ids_sharing_31_bytes():
    # object_id_len would be 32, which the footer's 5-bit field cannot hold: the
    # writer leaves the obj index out and lookups scan.
    refs = [RefRecord.val1(f"refs/heads/{i:05d}", 1, b"\xaa" * 31 + bytes([i % 2]))
            for i in range(400)]
    t = Table.from_bytes(write(refs, hash="sha256", block_size=1024))
    assert not t.sections["obj"]["present"] and t.object_id_len == 0
    assert t.refs_for(b"\xaa" * 31 + b"\x01") == refs[1::2]


# -- repeated seeks ---------------------------------------------------------------------------


def test_reseeking_one_table_many_times():
    refs = branch_refs(200)
    t = Table.from_bytes(write(refs, block_size=65536, restart_interval=8))
    names = [r.name for r in refs]
    iters = []
    for k in range(2000):
        i = (k * 7919) % len(refs)
        it = t.ref_tuples(names[i])
        first = next(it)
        assert first[0] == names[i]
        if k % 3 == 0:
            assert sum(1 for _ in it) == len(refs) - i - 1  # drained
        else:
            iters.append((i, it))  # left open
    for i, it in iters[:200]:
        nxt = next(it, None)
        assert (nxt[0] if nxt else None) == (names[i + 1] if i + 1 < len(names) else None)


def test_reseeking_logs_many_times():
    logs = [simple_log(f"refs/heads/{n}", ui, ui) for n in "abc" for ui in range(30, 0, -1)]
    t = Table.from_bytes(write([], logs, min_ui=1, max_ui=30, block_size=65536))
    for k in range(500):
        lg = logs[(k * 31) % len(logs)]
        assert next(iter(t.seek_log(lg.refname, lg.update_index))) == lg
        assert len(list(t.logs(lg.refname))) == 30


# -- seek regressions, one minimal reproduction each -----------------------------------------------


def test_read_ref_in_first_block_of_indexed_table():
    """Regression: the index record of the first ref block holds offset 0."""
    refs = branch_refs(200)
    t = Table.from_bytes(write(refs, block_size=256))
    assert t.sections["ref"]["index_offset"] > 0
    assert t.read_ref(refs[0].name) == refs[0]
    assert list(t.refs(refs[0].name)) == [refs[0]]


def test_linear_seek_when_memcmp_returns_minus_two():
    """Regression: _first_key_cmp is declared 'except -2' and used to return memcmp()'s
    raw byte difference, so a difference of -2 became a SystemError."""
    refs = [RefRecord.val1(f"refs/heads/a{i:04d}", 1, oid(i)) for i in range(120)]
    data = write(refs, block_size=2048)
    t = Table.from_bytes(data)
    blocks = [b for b in walk_blocks(data) if b.type == BLOCK_REF]
    assert len(blocks) == 2 and t.sections["ref"]["index_offset"] == 0
    assert blocks[1].keys[0] == b"refs/heads/a0079"
    # memcmp("refs/heads/a0079", "refs/heads/a0099") == '7' - '9' == -2 (glibc)
    assert t.read_ref("refs/heads/a0099") == refs[99]


def test_top_level_index_of_several_blocks():
    """Regression: padded tables add index levels until at most 3 blocks remain, so the
    top level may span 2-3 blocks; seeks used to search only its first block."""
    refs = branch_refs(400)
    data = write(refs, block_size=256)
    t = Table.from_bytes(data)
    top = t.sections["ref"]["index_offset"]
    assert data[top] == BLOCK_INDEX and data[top + 256] == BLOCK_INDEX
    for r in refs[len(refs) // 2:]:
        assert t.read_ref(r.name) == r


def test_refs_for_with_multi_block_top_level_obj_index():
    """Regression: the same top-level seek bug made refs_for return []."""
    refs = branch_refs(400)
    data = write(refs, block_size=128)
    t = Table.from_bytes(data)
    top = t.sections["obj"]["index_offset"]
    assert data[top] == BLOCK_INDEX and data[top + 128] == BLOCK_INDEX
    for r in refs:
        assert t.refs_for(r.value) == [r]


def test_record_helpers():
    r = RefRecord.val2("refs/tags/v1", 3, oid(1).hex(), oid(2))
    assert r.value == oid(1) and r.peeled == oid(2) and r.value_type == RefValueType.VAL2
    assert RefRecord.deletion(b"refs/x", 1).is_deletion
    assert LogRecord.deletion("refs/x", 1).is_deletion
    assert "deletion" in repr(LogRecord.deletion("refs/x", 1))
    data = write_table_bytes([r], [], None, min_update_index=3, max_update_index=3)
    assert Table.from_bytes(data).read_ref("refs/tags/v1") == r
    assert parse_block(data, 0).records[0][3] == 2


def test_index_that_cannot_shrink_is_entry_too_big():
    # Each index block holds a single key: another index level would be as long as
    # the one below, forever. Found by the fuzzer (it used to loop until out of memory).
    refs = [RefRecord.val1("refs/heads/" + "x" * 50 + f"{i:03d}", 1, b"a" * 20)
            for i in range(10)]
    with pytest.raises(EntryTooBigError, match="too small to index"):
        write(refs, block_size=128, restart_interval=1)
