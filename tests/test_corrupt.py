"""Corrupt, truncated and hostile tables: every problem is a FormatError (with the
file path and, where it makes sense, an offset), never another exception or a crash."""

from __future__ import annotations

import random
import zlib

import pytest
from support import oid, simple_log, write
from support.fixtures import table_path
from support.oracle import (
    BLOCK_LOG,
    BLOCK_REF,
    footer_fields,
    parse_block,
    patch_header_and_footer,
    refresh_footer_crc,
    walk_blocks,
)

from reftable import FormatError, LogRecord, MergedTable, RefRecord, Stack, Table


def records(hash: str = "sha1") -> tuple[list[RefRecord], list[LogRecord]]:
    refs = ([RefRecord.symref("HEAD", 1, "refs/heads/main")]
            + [RefRecord.val1(f"refs/heads/b{i:02d}", 1, oid(i, hash)) for i in range(10)]
            + [RefRecord.val2("refs/tags/v1", 2, oid(1, hash), oid(2, hash)),
               RefRecord.deletion("refs/tags/zz", 2)])
    logs = ([simple_log(f"refs/heads/b{i:02d}", 2, i, hash=hash) for i in range(10)]
            + [LogRecord.deletion("refs/heads/zz", 1)])
    return refs, logs


REFS, LOGS = records()


def small_table(**opts) -> bytes:
    opts.setdefault("restart_interval", 4)
    refs, logs = records(opts.get("hash", "sha1"))
    return write(refs, logs, min_ui=1, max_ui=2, **opts)


SMALL = small_table()
SMALL_FOOTER = footer_fields(SMALL)


def read_everything(t: Table) -> tuple[list, list]:
    """Exercise every read path of a table; return (refs, logs) from iteration."""
    refs = list(t.refs())
    logs = list(t.logs())
    for r in REFS:
        t.read_ref(r.name)
    for name in ("refs/heads/b05", "refs/tags/", "A", "zzz"):
        list(t.refs(name))
    for lg in LOGS[::3]:
        list(t.logs(lg.refname))
        list(t.seek_log(lg.refname, lg.update_index))
    t.refs_for(oid(1, t.hash))
    t.refs_for(oid(77, t.hash))
    return refs, logs


def assert_format_error_somewhere(data: bytes, name: str | None = None) -> FormatError:
    """Opening or reading ``data`` must raise FormatError (and nothing else)."""
    with pytest.raises(FormatError) as ei:
        read_everything(Table.from_bytes(data, name))
    if name is not None:
        assert ei.value.path == name
    return ei.value


def outcome(data: bytes) -> str:
    """'ok' (identical records), 'other' (records, but different) or 'format'."""
    try:
        got = read_everything(Table.from_bytes(data))
    except FormatError:
        return "format"
    return "ok" if got == (REFS, LOGS) else "other"


def test_small_table_is_sane():
    assert read_everything(Table.from_bytes(SMALL)) == (REFS, LOGS)
    assert SMALL_FOOTER["log_offset"] > 0
    assert [b.type for b in walk_blocks(SMALL)] == [BLOCK_REF, BLOCK_LOG]


# -- truncation and empty files ------------------------------------------------------------


def test_every_truncation_of_a_small_table_is_a_format_error():
    for n in range(len(SMALL)):
        with pytest.raises(FormatError) as ei:
            Table.from_bytes(SMALL[:n], "small.ref")
        assert ei.value.path == "small.ref"
        assert ei.value.offset is not None


@pytest.mark.parametrize("hash", ["sha1", "sha256"])
def test_every_truncation_from_a_file(tmp_table, hash):
    data = small_table(hash="sha256") if hash == "sha256" else SMALL
    for n in list(range(0, 120)) + list(range(120, len(data), 37)):
        path = tmp_table(data[:n], f"t{n}.ref")
        with pytest.raises(FormatError) as ei:
            Table.open(path)
        assert ei.value.path == path
        assert ei.value.offset is not None
        assert path in str(ei.value)


def test_empty_file_is_a_format_error(tmp_table):
    path = tmp_table(b"", "empty.ref")
    with pytest.raises(FormatError) as ei:
        Table.open(path)
    assert ei.value.path == path and ei.value.offset == 0
    with pytest.raises(FormatError):
        Table.from_bytes(b"")


def test_truncated_large_multi_block_table():
    data = table_path("multilevel-index", 0).read_bytes()
    rng = random.Random(4)
    for n in sorted(rng.sample(range(len(data)), 150)) + [len(data) - 1, len(data) - 68]:
        with pytest.raises(FormatError):
            Table.from_bytes(data[:n], "big.ref")


def test_data_cut_but_footer_kept():
    """Blocks removed but the (valid) footer re-appended: the section offsets or the
    blocks themselves no longer add up."""
    data = small_table(block_size=256)
    f = footer_fields(data)
    footer = data[f["footer_start"]:]
    for cut in range(25, f["footer_start"], 7):
        assert_format_error_somewhere(data[:cut] + footer, "cut.ref")


def test_garbage_after_footer():
    with pytest.raises(FormatError):
        Table.from_bytes(SMALL + b"\0" * 5)


# -- header and footer -----------------------------------------------------------------------


@pytest.mark.parametrize("magic", [b"REFX", b"\0\0\0\0", b"reft", b"TFER"])
def test_bad_magic(magic):
    data = patch_header_and_footer(SMALL, 0, magic)
    with pytest.raises(FormatError) as ei:
        Table.from_bytes(data, "m.ref")
    assert ei.value.offset == 0 and "magic" in str(ei.value)


def test_bad_magic_in_header_only():
    with pytest.raises(FormatError):
        Table.from_bytes(b"XEFT" + SMALL[4:])


@pytest.mark.parametrize("version", [0, 3, 255])
def test_bad_version(version):
    data = patch_header_and_footer(SMALL, 4, bytes([version]))
    with pytest.raises(FormatError) as ei:
        Table.from_bytes(data)
    assert ei.value.offset == 4


def test_version_1_table_claiming_version_2():
    data = patch_header_and_footer(SMALL, 4, b"\x02")
    with pytest.raises(FormatError):
        Table.from_bytes(data)


@pytest.mark.parametrize("hash_id", [b"\0\0\0\0", b"s255", b"SHA2", b"s256"[::-1]])
def test_bad_hash_id(hash_id):
    data = small_table(hash="sha256")
    assert data[24:28] == b"s256"
    bad = patch_header_and_footer(data, 24, hash_id)
    with pytest.raises(FormatError) as ei:
        Table.from_bytes(bad)
    assert "hash" in str(ei.value)


def test_version_2_with_sha1_hash_id_is_accepted_like_git():
    """Format v2 may name either hash; a v2 header saying "sha1" over SHA-256 records
    then misreads them, which must end in data or a FormatError."""
    bad = patch_header_and_footer(small_table(hash="sha256"), 24, b"sha1")
    t = Table.from_bytes(bad)
    assert (t.version, t.hash) == (2, "sha1")
    try:
        read_everything(t)
    except FormatError:
        pass


@pytest.mark.parametrize("where", ["footer_field", "crc"])
def test_footer_crc_mismatch(where):
    d = bytearray(SMALL)
    f = SMALL_FOOTER
    if where == "crc":
        d[-1] ^= 0x01
    else:
        d[f["footer_start"] + 24 + 25] ^= 0x40  # inside the log offset field
    with pytest.raises(FormatError) as ei:
        Table.from_bytes(bytes(d), "crc.ref")
    assert "checksum" in str(ei.value)
    assert ei.value.offset == len(SMALL) - 4


def test_footer_not_repeating_header():
    d = bytearray(SMALL)
    d[SMALL_FOOTER["footer_start"] + 10] ^= 0x01  # min update index copy
    with pytest.raises(FormatError):
        Table.from_bytes(refresh_footer_crc(d))


def patch_footer_u64(data: bytes, field_offset: int, value: int) -> bytes:
    f = footer_fields(data)
    d = bytearray(data)
    p = f["footer_start"] + f["header_size"] + field_offset
    d[p:p + 8] = value.to_bytes(8, "big")
    return refresh_footer_crc(d)


def test_ref_index_offset_past_the_data():
    with pytest.raises(FormatError):
        Table.from_bytes(patch_footer_u64(SMALL, 0, SMALL_FOOTER["footer_start"] + 10))


@pytest.mark.parametrize("field", [8, 16, 24, 32])
def test_damaged_obj_or_log_fields_leave_refs_readable(field):
    """As in Git, a bad obj or log offset (or log index offset) in the footer only
    makes that section unreadable: every ref is still served, and the error comes
    when the damaged section is read."""
    value = SMALL_FOOTER["footer_start"] + 10
    if field == 8:
        value = value << 5 | 2  # obj offset and object id length share a field
    t = Table.from_bytes(patch_footer_u64(SMALL, field, value))
    assert list(t.refs()) == REFS
    assert t.read_ref(REFS[1].name) == REFS[1]
    if field == 16:
        return  # this table has no obj section: its index offset is never used
    with pytest.raises(FormatError):
        if field == 8:
            t.refs_for(REFS[1].value)
        else:
            list(t.logs())


def test_damaged_log_fields_in_a_stack_leave_refs_readable(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    name = "0x000000000001-0x000000000002-00000000.ref"
    (d / name).write_bytes(patch_footer_u64(SMALL, 24, SMALL_FOOTER["footer_start"] + 10))
    (d / "tables.list").write_text(name + "\n")
    with Stack.open(str(d)) as st:
        assert [r.name for r in st.refs()] == [r.name for r in REFS if not r.is_deletion]
        with pytest.raises(FormatError):
            list(st.logs())


@pytest.mark.parametrize("log_offset", [1, 5, 30, 100, 411, 413, 500])
def test_bogus_log_offset(log_offset):
    data = patch_footer_u64(SMALL, 24, log_offset)
    t = Table.from_bytes(data)
    assert list(t.refs()) == REFS  # the ref section is untouched
    with pytest.raises(FormatError):
        list(t.logs())
    with pytest.raises(FormatError):
        list(t.logs("refs/heads/b03"))


@pytest.mark.parametrize("index_offset", [1, 30, 411, 500])
def test_bogus_log_index_offset(index_offset):
    data = patch_footer_u64(SMALL, 32, index_offset)
    t = Table.from_bytes(data)
    with pytest.raises(FormatError):
        list(t.logs("refs/heads/b03"))


@pytest.mark.parametrize("index_offset", [1, 30, 200, 413])
def test_bogus_ref_index_offset(index_offset):
    data = patch_footer_u64(SMALL, 0, index_offset)
    with pytest.raises(FormatError):
        read_everything(Table.from_bytes(data))


def test_bogus_object_id_length():
    data = write([RefRecord.val1(f"refs/heads/{i:04d}", 1, oid(i)) for i in range(400)],
                 block_size=1024)
    f = footer_fields(data)
    assert f["obj_offset"] > 0
    for bad_len in (0, 1, 21, 31):
        t = Table.from_bytes(patch_footer_u64(data, 8, f["obj_offset"] << 5 | bad_len))
        assert t.count_refs() == 400  # only the obj section is unusable
        with pytest.raises(FormatError):
            t.refs_for(oid(3))


# -- blocks ------------------------------------------------------------------------------------


def patch(data: bytes, off: int, new: bytes) -> bytes:
    d = bytearray(data)
    d[off:off + len(new)] = new
    return bytes(d)


@pytest.mark.parametrize("length", [0, 1, 5, 27, 29, 4097, 0xFFFFFF, 1000])
def test_bogus_ref_block_length(length):
    # first block: type at 24, 24-bit length at 25..27 (counted from the file start)
    data = patch(SMALL, 25, length.to_bytes(3, "big"))
    err = assert_format_error_somewhere(data, "len.ref")
    assert err.offset is not None


@pytest.mark.parametrize("delta", [-1, +1, -100, +300])
def test_bogus_log_block_inflated_size(delta):
    lo = SMALL_FOOTER["log_offset"]
    blen = int.from_bytes(SMALL[lo + 1:lo + 4], "big")
    data = patch(SMALL, lo + 1, (blen + delta).to_bytes(3, "big"))
    t = Table.from_bytes(data)
    with pytest.raises(FormatError) as ei:
        list(t.logs())
    assert ei.value.offset == lo
    with pytest.raises(FormatError):
        list(t.logs("refs/heads/b03"))


def test_corrupt_log_block_does_not_break_ref_iteration():
    # Moving past the last ref block reads only the next block's type byte (like Git):
    # a corrupt log block must not break reading the intact ref section.
    lo = SMALL_FOOTER["log_offset"]
    blen = int.from_bytes(SMALL[lo + 1:lo + 4], "big")
    t = Table.from_bytes(patch(SMALL, lo + 1, (blen + 1).to_bytes(3, "big")))
    assert list(t.refs()) == REFS


def test_unknown_block_type():
    # Like Git, the type of the first block decides whether there is a ref section:
    # a corrupt first type byte hides the refs or is a format error.
    for typ in (b"\0", b"x", b"R", b"g", b"o", b"i"):
        try:
            refs, _ = read_everything(Table.from_bytes(patch(SMALL, 24, typ)))
        except FormatError:
            continue
        assert refs == []
    lo = SMALL_FOOTER["log_offset"]
    t = Table.from_bytes(patch(SMALL, lo, b"q"))
    with pytest.raises(FormatError):
        list(t.logs())


def test_corrupt_zlib_data_in_log_block():
    lo = SMALL_FOOTER["log_offset"]
    b = parse_block(SMALL, lo)
    for start, junk in [(lo + 4, b"\xff" * 8), (lo + 4 + 100, b"\x00" * 40),
                        (lo + b.stored_size - 4, b"\x00\x00\x00\x00")]:
        t = Table.from_bytes(patch(SMALL, start, junk))
        with pytest.raises(FormatError):
            list(t.logs())
        with pytest.raises(FormatError):
            list(t.logs("refs/heads/b07"))


def test_log_block_flips_in_compressed_stream():
    lo = SMALL_FOOTER["log_offset"]
    b = parse_block(SMALL, lo)
    rng = random.Random(7)
    for pos in rng.sample(range(lo + 4, lo + b.stored_size), 60):
        d = bytearray(SMALL)
        d[pos] ^= 1 << rng.randrange(8)
        try:
            logs = list(Table.from_bytes(bytes(d)).logs())
        except FormatError:
            continue
        assert len(logs) <= len(LOGS) + 5  # zlib's checksum makes this very unlikely


@pytest.mark.parametrize("count", [0xFFFF, 200, 137])
def test_bogus_restart_count(count):
    blen = int.from_bytes(SMALL[25:28], "big")
    data = patch(SMALL, blen - 2, count.to_bytes(2, "big"))
    err = assert_format_error_somewhere(data, "rc.ref")
    assert err.offset is not None


@pytest.mark.parametrize("bad", [0, 27, 411, 412, 0xFFFFFF])
@pytest.mark.parametrize("which", [0, 2, 4])
def test_bogus_restart_offset(bad, which):
    blk = parse_block(SMALL, 0)
    assert blk.restart_count == 5
    data = patch(SMALL, blk.restart_start + 3 * which, bad.to_bytes(3, "big"))
    t = Table.from_bytes(data, "ro.ref")
    errors = 0
    for r in REFS:  # binary searches over the restarts hit the bad entry
        try:
            got = t.read_ref(r.name)
        except FormatError as e:
            assert e.offset is not None and e.path == "ro.ref"
            errors += 1
            continue
        assert got == r
    assert errors > 0


@pytest.mark.parametrize("value_type", [4, 5, 6, 7])
@pytest.mark.parametrize("record", [0, 1, 5])
def test_unknown_ref_value_type(value_type, record):
    blk = parse_block(SMALL, 0)
    start, prefix, key, vt, _ = blk.records[record]
    # prefix varint (1 byte here), then suffix_length << 3 | value_type (1 byte)
    assert prefix < 128 and (len(key) - prefix) < 16
    pos = start + 1
    assert SMALL[pos] & 7 == vt
    data = patch(SMALL, pos, bytes([(SMALL[pos] & ~7) | value_type]))
    t = Table.from_bytes(data)
    with pytest.raises(FormatError) as ei:
        list(t.refs())
    assert "type" in str(ei.value)
    with pytest.raises(FormatError):
        t.read_ref(key.decode())
    with pytest.raises(FormatError):
        list(MergedTable([t]).refs())


@pytest.mark.parametrize("value_type", [2, 3, 4, 7])
def test_unknown_log_value_type(value_type):
    lo = SMALL_FOOTER["log_offset"]
    blk = parse_block(SMALL, lo)
    # re-compress a patched inflated block so that only the value type is wrong
    raw = bytearray(blk.plain)
    pos = blk.records[0][0] + 1  # after the 1-byte prefix varint
    while raw[pos] & 0x80:  # the last byte of the suffix/type varint holds the type
        pos += 1
    assert raw[pos] & 7 == 1
    raw[pos] = (raw[pos] & ~7) | value_type
    comp = zlib.compress(bytes(raw[4:]), 9)
    data = SMALL[:lo + 4] + comp + SMALL[lo + blk.stored_size:]
    assert footer_fields(data)["log_offset"] == lo
    with pytest.raises(FormatError):
        list(Table.from_bytes(data).logs())


def test_key_prefix_longer_than_previous_key():
    blk = parse_block(SMALL, 0)
    start, prefix, _, _, _ = blk.records[2]
    assert prefix == 13
    data = patch(SMALL, start, bytes([60]))
    with pytest.raises(FormatError):
        list(Table.from_bytes(data).refs())


def test_symref_target_length_past_block():
    blk = parse_block(SMALL, 0)
    start, _, key, vt, value = blk.records[0]
    assert key == b"HEAD" and vt == 3
    # value: update index delta, then target length varint
    pos = start + 2 + len(key) + 1
    assert SMALL[pos] == len("refs/heads/main")
    data = patch(SMALL, pos, b"\x7f")
    with pytest.raises(FormatError):
        list(Table.from_bytes(data).refs())


# -- a bit-flip sweep ---------------------------------------------------------------------------


def test_every_single_bit_flip_is_data_or_format_error():
    """Every single-bit flip of a small table gives records (the format has no checksum
    over ref blocks, so they may differ) or a FormatError; flips in the header or the
    footer are always detected."""
    data = small_table(unpadded=True)
    f = footer_fields(data)
    counts = {"ok": 0, "other": 0, "format": 0}
    for i in range(len(data) * 8):
        d = bytearray(data)
        d[i // 8] ^= 1 << (i % 8)
        res = outcome(bytes(d))
        counts[res] += 1
        if i // 8 < 24 or i // 8 >= f["footer_start"]:
            assert res == "format", i
    assert counts["format"] > 0 and counts["other"] > 0


def test_bit_flip_sweep_sha256_sample():
    data = small_table(hash="sha256")
    rng = random.Random(11)
    for i in rng.sample(range(len(data) * 8), 1500):
        d = bytearray(data)
        d[i // 8] ^= 1 << (i % 8)
        try:
            t = Table.from_bytes(bytes(d))
            list(t.refs())
            list(t.logs())
            for r in records("sha256")[0][::2]:
                t.read_ref(r.name)
        except FormatError:
            pass


def test_random_garbage_is_a_format_error():
    rng = random.Random(3)
    for n in (0, 1, 23, 24, 91, 92, 100, 500):
        junk = bytes(rng.randrange(256) for _ in range(n))
        with pytest.raises(FormatError):
            Table.from_bytes(junk)
        with pytest.raises(FormatError):
            Table.from_bytes(b"REFT\x01" + junk)
