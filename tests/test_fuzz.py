"""Mutation fuzzing of the table reader.

Seeds: every Git fixture table plus tables written by this library with unusual
options (block sizes 64..1024, restart interval 1, SHA-256, unpadded, many logs,
multi-level indexes; see ``tests/fuzz/reftable_fuzz.py``). Mutations: bit flips,
interesting bytes, length/count/offset fields, varints, restart tables, truncations,
splices, duplicated/removed blocks, footer fields, and log blocks inflated, mutated and
deflated again -- almost always with the footer CRC recomputed so that the mutations
reach the block decoders.

For every mutated input each read path is driven (``exercise``) and the only allowed
outcomes are data or ``FormatError``: any other exception, a crash, a loop (record and
time budgets per case, a faulthandler watchdog per test) or unbounded memory
(tracemalloc on a sample of cases, peak RSS at the end) fails.

Hypothesis drives the structured tests (derandomized, no example database); seeded
loops give the volume. Every case is reproducible from its test id and index: see
``reproduce()``.
"""

from __future__ import annotations

import faulthandler
import random
import resource
import sys
import time
import tracemalloc
import zlib
from collections import Counter
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

import reftable_fuzz as F  # noqa: E402
from support.oracle import (  # noqa: E402
    BLOCK_LOG,
    BLOCK_OBJ,
    BLOCK_REF,
    be,
    get_varint,
    parse_layout,
    put_varint,
    refresh_footer_crc,
)

import reftable  # noqa: E402
import reftable._impl  # noqa: E402
from reftable import FormatError, LogRecord, RefRecord, Table, WriteOptions  # noqa: E402

CORPUS = F.load_corpus()
ALL = list(CORPUS.values())
# Seeds cheap enough to exercise thousands of times; the large Git tables (up to 1.2 MB,
# 20k refs) get a few cases each in test_mutations_large_tables.
SMALL = [e for e in ALL if len(e.data) <= 70_000]
LARGE = [e for e in ALL if len(e.data) > 70_000]
VALID = {e.name: Table.from_bytes(e.data, e.name) for e in ALL}

WATCHDOG_S = 240          # hard limit per test: dump every thread's stack and exit
# soft limit per case (the slowest valid seed takes ~1 s; the pure twin is slower)
CASE_S = 20.0 if reftable._impl.IMPLEMENTATION == "cython" else 60.0
FILE_EVERY = 53           # every Nth case goes through Table.open (mmap) on a file
TRACE_EVERY = 97          # every Nth case runs under tracemalloc
PEAK_LIMIT = 96 << 20     # a log block may legitimately inflate to 16 MiB (2**24 - 1)

EXECUTED: Counter[str] = Counter()
# The pure-Python twin runs the same loops with a fifth of the cases (CI time).
SCALE = 1 if reftable._impl.IMPLEMENTATION == "cython" else 5
KIND_CASES = 3500 // SCALE  # per mutator kind
# A log block may claim up to 2**24 - 1 inflated bytes when the header's block size
# allows it; each read of such a block inflates up to 16 MiB (~20 ms): fewer cases.
KIND_CASES_SLOW = {"logbomb": 60 // SCALE}
MIXED_CASES = 15000 // SCALE
PLANNED = {"kinds": sum(KIND_CASES_SLOW.get(k, KIND_CASES) for k in F.MUTATORS),
           "mixed": MIXED_CASES}
RSS_START = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.fixture(autouse=True)
def watchdog():
    """A loop inside the C core never returns to the interpreter, so a Python-level
    timeout cannot stop it: faulthandler's watchdog thread dumps the stacks and exits."""
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def reproduce(tag: str, i: int) -> tuple[bytes, F.Entry, random.Random]:
    """The input of case ``i`` of a seeded loop (``tag`` as in the failure message)."""
    rng = random.Random(f"{tag}/{i}")
    kind, _, pool = tag.partition(":")
    entries = LARGE if pool == "large" else SMALL
    e = entries[i % len(entries)]
    kinds = None if kind in ("mixed", "large") else [kind]
    data, _ = F.mutate(e, rng, ALL, kinds)
    return data, e, rng


def run_case(data: bytes, e: F.Entry, rng: random.Random, where: str, i: int,
             tmp_path: Optional[Path] = None, deep: bool = False) -> F.Stats:
    traced = i % TRACE_EVERY == 0
    if traced:
        tracemalloc.start()
    t0 = time.monotonic()
    try:
        if tmp_path is not None and i % FILE_EVERY == 0:
            stats = F.exercise_file(data, e, rng, str(tmp_path), valid=VALID[e.name],
                                    seconds=CASE_S / 2)
        else:
            stats = F.exercise(data, e, rng, valid=VALID[e.name], seconds=CASE_S, deep=deep)
    except Exception as ex:  # anything but FormatError (exercise catches those)
        bad = tmp_path / f"crash-{where.replace(':', '-')}-{i}.ref" if tmp_path else None
        if bad is not None:
            bad.write_bytes(data)
        pytest.fail(f"{where} case {i} (seed table {e.name}, {len(data)} bytes, saved to "
                    f"{bad}): {type(ex).__name__}: {ex}", pytrace=True)
    finally:
        if traced:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    if traced:
        assert peak < PEAK_LIMIT + 16 * len(data), \
            f"{where} case {i}: {peak} bytes allocated at peak"
    assert time.monotonic() - t0 < CASE_S * 2
    return stats


def run_loop(tag: str, n: int, entries: list[F.Entry], kinds: Optional[list[str]],
             tmp_path: Path) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    for i in range(n):
        rng = random.Random(f"{tag}/{i}")
        e = entries[i % len(entries)]
        data, _ = F.mutate(e, rng, ALL, kinds)
        stats = run_case(data, e, rng, tag, i, tmp_path)
        outcomes["opened" if stats.opened else "rejected"] += 1
        outcomes["format_errors"] += stats.format_errors
        outcomes["records"] += stats.records
    EXECUTED[tag.partition(":")[0] if kinds is None else "kinds"] += n
    return outcomes


def test_seeds_are_valid_and_read_cleanly():
    """Baseline: every seed reads without a FormatError, through every path."""
    assert len(SMALL) >= 30 and LARGE
    for e in ALL:
        stats = F.exercise(e.data, e, random.Random(e.name), valid=VALID[e.name], deep=True,
                           seconds=60)
        assert stats.opened and stats.format_errors == 0, e.name
        t = VALID[e.name]
        assert list(t.refs()) == e.refs and list(t.logs()) == e.logs


@pytest.mark.parametrize("kind", sorted(F.MUTATORS))
def test_mutations_by_kind(kind, tmp_path):
    n = KIND_CASES_SLOW.get(kind, KIND_CASES)
    out = run_loop(f"{kind}:small", n, SMALL, [kind], tmp_path)
    # the mutations must mostly keep the table openable, or the block decoders are
    # never reached (only header/footer kinds reject most inputs at open)
    if kind not in ("footer", "truncate", "logbomb"):
        assert out["opened"] > n // 3, out


def test_mutations_mixed(tmp_path):
    """Stacks of 1..3 mutations of any kind."""
    out = run_loop("mixed:small", MIXED_CASES, SMALL, None, tmp_path)
    assert out["opened"] > MIXED_CASES // 3, out


def test_mutations_large_tables(tmp_path):
    """The large Git tables (multi-level indexes, 20k refs, big obj sections)."""
    n = 2 * len(LARGE)
    run_loop("large:large", n, LARGE, None, tmp_path)


def test_every_byte_of_a_small_table(tmp_path):
    """Exhaustive: every byte of two small tables (refs + logs; SHA-256) set to
    0x00, 0xff and flipped in its top bit, footer CRC recomputed."""
    n = 0
    for name in ("git-tiny-0x000000000009", "git-sha256-0x00000000000a"):
        e = next(x for x in SMALL if x.name.startswith(name))
        for pos in range(len(e.data)):
            for how in range(3):
                d = bytearray(e.data)
                d[pos] = (0x00, 0xFF, d[pos] ^ 0x80)[how]
                data = bytes(refresh_footer_crc(d, mirror_header=True))
                run_case(data, e, random.Random(n), f"sweep:{name}", n, tmp_path)
                n += 1
    EXECUTED["sweep"] += n


def test_every_byte_of_a_log_block(tmp_path):
    """Exhaustive inside a log block: each inflated byte changed, the block deflated
    again and spliced back (offsets after it and the CRC fixed)."""
    e = next(x for x in SMALL if x.name.startswith("git-reflogs-0x000000000016"))
    b = next(b for b in e.layout.blocks if b.type == BLOCK_LOG)
    n = 0
    for pos in range(b.header_off + 4, len(b.plain)):
        for how in range(2):
            p = bytearray(b.plain)
            p[pos] = (0xFF, p[pos] ^ 0x01)[how]
            new = bytes(p[:b.header_off + 4]) + zlib.compress(bytes(p[b.header_off + 4:]))
            d = bytearray(e.data)
            d[b.offset:b.offset + b.stored_size] = new
            F._shift_footer(d, e, b.offset + b.stored_size, len(new) - b.stored_size)
            data = bytes(refresh_footer_crc(d, mirror_header=True))
            run_case(data, e, random.Random(n), "logsweep", n, tmp_path)
            n += 1
    EXECUTED["sweep"] += n


# -- hypothesis: structure --------------------------------------------------------------

HYP = settings(deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))


@settings(HYP, max_examples=300)
@given(name=st.sampled_from(sorted(e.name for e in SMALL)),
       ops=st.lists(st.tuples(st.sampled_from(sorted(F.MUTATORS)), st.integers(0, 2**32)),
                    min_size=1, max_size=4),
       crc=st.booleans())
def test_hypothesis_mutation_sequences(name, ops, crc):
    e = CORPUS[name]
    d = bytearray(e.data)
    for kind, seed in ops:
        d = F.MUTATORS[kind](d, random.Random(seed), e, ALL)
    if crc:
        d = refresh_footer_crc(d, mirror_header=True)
    run_case(bytes(d), e, random.Random(len(ops)), "hyp-seq", 1, deep=True)
    EXECUTED["hypothesis"] += 1


FOOTER_FIELDS = ("ref_index", "obj", "obj_index", "log", "log_index")


@settings(HYP, max_examples=400)
@given(name=st.sampled_from(sorted(e.name for e in SMALL)),
       field=st.sampled_from(FOOTER_FIELDS + ("obj_id_len", "block_size", "min_ui", "max_ui")),
       how=st.sampled_from(("block", "block+1", "any", "end")),
       value=st.integers(0, 2**64 - 1))
def test_hypothesis_footer_fields(name, field, how, value):
    """Section offsets pointing at other blocks, inside blocks, at the footer, past the
    end; odd object id lengths, block sizes and update index limits."""
    e = CORPUS[name]
    lay = e.layout
    d = bytearray(e.data)
    offs = [b.offset for b in lay.blocks]
    if how == "block":
        value = offs[value % len(offs)]
    elif how == "block+1":
        value = offs[value % len(offs)] + 1 + value % 7
    elif how == "end":
        value = lay.footer_start - 1 + value % 3
    fs = lay.footer_start + lay.header_size
    if field in FOOTER_FIELDS:
        off = fs + 8 * FOOTER_FIELDS.index(field)
        v = value & (2**64 - 1)
        if field == "obj":
            v = ((value << 5) | (be(d, off, 8) & 0x1F)) & (2**64 - 1)
        d[off:off + 8] = v.to_bytes(8, "big")
    elif field == "obj_id_len":
        d[fs + 15] = (d[fs + 15] & 0xE0) | (value & 0x1F)
    elif field == "block_size":
        d[5:8] = (value & 0xFFFFFF).to_bytes(3, "big")
    else:
        o = 8 if field == "min_ui" else 16
        d[o:o + 8] = value.to_bytes(8, "big")
    data = bytes(refresh_footer_crc(d, mirror_header=True))
    run_case(data, e, random.Random(value), "hyp-footer", 1, deep=True)
    EXECUTED["hypothesis"] += 1


SHORT_NAME = st.text(alphabet="abz019/-.", min_size=1, max_size=8).map(
    lambda s: "refs/heads/" + s)   # <= 19 bytes: two index records fit a 64-byte block


@st.composite
def generated_table(draw):
    hash = draw(st.sampled_from(("sha1", "sha256")))
    hs = 20 if hash == "sha1" else 32
    block_size = draw(st.sampled_from((64, 80, 128, 256, 300, 512, 1024)))
    opts = WriteOptions(hash=hash, block_size=block_size,
                        restart_interval=draw(st.sampled_from((1, 2, 3, 16))),
                        unpadded=draw(st.booleans()), index_objects=draw(st.booleans()))
    names = sorted(set(draw(st.lists(SHORT_NAME, min_size=0, max_size=60))),
                   key=lambda s: s.encode())
    oid = st.binary(min_size=hs, max_size=hs)
    refs = []
    for name in names:
        kind = draw(st.integers(0, 3))
        if kind == 0:
            refs.append(RefRecord.deletion(name, 1))
        elif kind == 1 or (kind == 2 and 2 * hs + 30 > block_size - 40):
            refs.append(RefRecord.val1(name, 1, draw(oid)))
        elif kind == 2:
            refs.append(RefRecord.val2(name, 1, draw(oid), draw(oid)))
        else:
            refs.append(RefRecord.symref(name, 1, draw(SHORT_NAME)))
    logs = []
    if block_size >= 256:
        for name in sorted(set(draw(st.lists(SHORT_NAME, max_size=8))), key=str.encode):
            for ui in sorted(set(draw(st.lists(st.integers(1, 9), min_size=1, max_size=6))),
                             reverse=True):
                if draw(st.booleans()):
                    logs.append(LogRecord.deletion(name, ui))
                else:
                    logs.append(LogRecord.update(name, ui, draw(oid), draw(oid), "N", "e@x",
                                                 draw(st.integers(0, 2**40)),
                                                 draw(st.integers(-720, 720)), "m\n"))
    return opts, refs, logs


@settings(HYP, max_examples=150)
@given(spec=generated_table(), seeds=st.lists(st.integers(0, 2**32), min_size=1, max_size=4))
def test_hypothesis_generated_tables(spec, seeds):
    """Tables written with random options read back exactly; then mutations of them."""
    opts, refs, logs = spec
    try:
        data = reftable.write_table_bytes(refs, logs, opts, min_update_index=1,
                                          max_update_index=9)
    except reftable.EntryTooBigError:
        assume(False)
    t = Table.from_bytes(data)
    assert list(t.refs()) == refs and list(t.logs()) == logs
    e = F.make_entry("generated", data)
    VALID.setdefault("generated", t)
    VALID["generated"] = t
    stats = F.exercise(data, e, random.Random(0), valid=t, deep=True)
    assert stats.format_errors == 0
    for seed in seeds:
        rng = random.Random(seed)
        mutated, _ = F.mutate(e, rng, ALL)
        run_case(mutated, e, rng, "hyp-gen", 1, deep=True)
        EXECUTED["hypothesis"] += 1


# -- targeted: memory bounds of log inflation --------------------------------------------


def _log_table_with_block(stream: bytes, claim: int) -> bytes:
    """A log-only table whose single log block holds ``stream`` and claims to inflate
    to ``claim`` bytes; block size 2**24-1 so the claim passes the size check."""
    e = next(x for x in SMALL if x.name.startswith("git-log-only-0x000000000004"))
    b = e.layout.blocks[0]
    assert b.type == BLOCK_LOG and b.offset == 0
    d = bytearray(e.data)
    hdr = bytearray(d[:b.header_off]) + bytes([BLOCK_LOG]) + claim.to_bytes(3, "big")
    hdr[5:8] = b"\xff\xff\xff"
    d[:b.stored_size] = hdr + stream
    return bytes(refresh_footer_crc(d, mirror_header=True))


@pytest.mark.parametrize("stream_len,truncate", [(0, False), (1000, False), (1 << 22, True),
                                                 (1 << 25, False), (1 << 25, True)])
def test_log_block_claiming_huge_size_is_bounded(stream_len, truncate):
    """The inflated size is bounded by the block header, and nothing is allocated
    beyond what the stream really yields (a short stream under a 16 MiB claim costs
    what it inflates to, not 16 MiB)."""
    stream = zlib.compress(bytes(stream_len), 9)
    if truncate:
        stream = stream[: len(stream) // 2]
    data = _log_table_with_block(stream, 0xFFFFFF)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError):
            list(Table.from_bytes(data).logs())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    limit = (1 << 24) * 2 + (1 << 20) if stream_len > (1 << 24) else (1 << 20) + 4 * stream_len
    assert peak < limit, peak


# -- targeted: amplification through the obj index --------------------------------------


def test_obj_record_repeating_a_block_offset_is_rejected():
    """An obj record listing the same ref block 60,000 times (zero deltas): refs_for
    used to scan the block once per repeat (90 million records, minutes, gigabytes
    from a 100 kB table). Git writes each offset once, ascending."""
    oid = bytes(range(20))
    refs = [RefRecord.val1(f"refs/heads/b{i:05d}", 1, oid) for i in range(1500)]
    data = reftable.write_table_bytes(refs, [], WriteOptions(block_size=65536),
                                      min_update_index=1, max_update_index=1)
    lay = parse_layout(data)
    n = 60_000
    key = oid[:2]
    rec = (put_varint(0) + put_varint(len(key) << 3) + key + put_varint(n)
           + put_varint(0) + b"\0" * (n - 1))
    body = rec + (4).to_bytes(3, "big") + (1).to_bytes(2, "big")
    blk = bytes([BLOCK_OBJ]) + (4 + len(body)).to_bytes(3, "big") + body
    start = lay.footer_start
    d = bytearray(data[:start]) + blk + bytearray(data[start:])
    fs = len(d) - lay.footer_size + lay.header_size
    d[fs + 8:fs + 16] = ((start << 5) | len(key)).to_bytes(8, "big")   # obj section
    t = Table.from_bytes(bytes(refresh_footer_crc(d, mirror_header=True)))
    assert next(iter(t._core.iter_section(BLOCK_OBJ)))[1][:3] == [0, 0, 0]
    t0 = time.monotonic()
    with pytest.raises(FormatError, match="out of order"):
        t.refs_for(oid)
    assert time.monotonic() - t0 < 1


# -- targeted: the compaction path ------------------------------------------------------


def test_compaction_copy_rejects_an_overflowing_update_index():
    """copy_to re-encodes a ref's update index as min_update_index + delta; a delta
    that overflows 64 bits used to wrap silently (here to 4, inside the writer's
    limits, so the corrupt record was written)."""
    top = 2**64 - 1
    data = reftable.write_table_bytes([RefRecord.val1("refs/heads/a", top - 5, bytes(20))],
                                      [], min_update_index=top - 5, max_update_index=top)
    lay = parse_layout(data)
    b = lay.blocks[0]
    pos = b.starts[0]
    _, pos = get_varint(b.plain, pos, b.restart_start)           # prefix
    st_, pos = get_varint(b.plain, pos, b.restart_start)         # suffix, type
    pos += st_ >> 3
    assert data[pos] == 0                                          # delta 0
    d = bytearray(data)
    d[pos] = 10
    t = Table.from_bytes(bytes(d))
    with pytest.raises(FormatError, match="overflows"):
        list(t.refs())
    w = reftable._impl.core.WriterCore(min_update_index=0, max_update_index=top,
                                  sink=lambda b: None)
    it = reftable._impl.core.MergedIter([t._core.iter_section(BLOCK_REF)], BLOCK_REF, False)
    with pytest.raises(FormatError, match="overflows"):
        it.copy_to(w)


def test_merged_iter_refuses_mismatched_iterators():
    """copy_to decodes values by the MergedIter's type after validating them by each
    iterator's own type, and casts without checking: both must agree."""
    t = VALID[SMALL[0].name]
    with pytest.raises(TypeError):
        reftable._impl.core.MergedIter([t._core.iter_section(BLOCK_REF)], BLOCK_LOG)
    with pytest.raises(TypeError):
        reftable._impl.core.MergedIter([iter([])], BLOCK_REF)


# -- totals --------------------------------------------------------------------------


def test_zz_totals():
    """Runs last (file order): how many mutated inputs ran, and memory stayed flat."""
    total = sum(EXECUTED.values())
    print(f"\nfuzz cases executed: {total} {dict(EXECUTED)}")
    assert sum(PLANNED.values()) >= 20_000 // SCALE
    if EXECUTED["kinds"] == PLANNED["kinds"] and EXECUTED["mixed"] == PLANNED["mixed"]:
        assert total >= 20_000 // SCALE, dict(EXECUTED)
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - RSS_START) / 1024
    assert rss_mb < 512, f"peak RSS grew by {rss_mb:.0f} MiB during fuzzing"
