"""Shared by ``tests/test_fuzz.py`` (CI mutation fuzzing) and ``tests/fuzz/fuzz_table.py``
(coverage-guided atheris harness): the seed corpus, structure-aware mutators (guided by
the map of a table's layout that ``support.oracle`` decodes) and the exerciser that
drives every read path.

The contract under test: for any bytes, every read API returns data or raises
``reftable.FormatError`` -- no other exception, no crash, no hang, bounded memory.
"""

from __future__ import annotations

import os
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any, Optional

from support import oid
from support.fixtures import GIT_FIXTURES
from support.oracle import (
    BLOCK_INDEX,
    BLOCK_LOG,
    BLOCK_OBJ,
    BLOCK_REF,
    Layout,
    be,
    get_varint,
    parse_layout,
    put_varint,
    refresh_footer_crc,
)

import reftable
from reftable import (
    FormatError,
    LogRecord,
    MergedTable,
    RefRecord,
    Table,
    WriteOptions,
)
from reftable._impl import core as _core

U64 = (1 << 64) - 1
INTERESTING8 = (0x00, 0x01, 0x02, 0x03, 0x07, 0x08, 0x10, 0x1F, 0x20, 0x3F, 0x40, 0x67,
                0x69, 0x6F, 0x72, 0x7E, 0x7F, 0x80, 0x81, 0xC0, 0xFE, 0xFF)


class Crash(AssertionError):
    """A disallowed outcome (anything but data or FormatError)."""


# ---------------------------------------------------------------------------------------
# Corpus


@dataclass
class Entry:
    """One valid seed table and what reading it gives."""

    name: str
    data: bytes
    layout: Layout
    refs: list[Any]
    logs: list[Any]
    obj_count: int
    ref_names: list[bytes]         # a sample, for seeks
    log_names: list[bytes]
    oids: list[bytes]
    update_indexes: list[int]

    @property
    def nrecords(self) -> int:
        return len(self.refs) + len(self.logs) + self.obj_count

    @property
    def hash(self) -> str:
        return "sha1" if self.layout.hash_size == 20 else "sha256"


def _sample(xs: list[Any], n: int, rng: random.Random) -> list[Any]:
    if len(xs) <= n:
        return list(xs)
    return rng.sample(xs, n)


def make_entry(name: str, data: bytes) -> Entry:
    t = Table.from_bytes(data, name)
    refs = list(t.refs())
    logs = list(t.logs())
    obj = sum(1 for _ in t._core.iter_section(BLOCK_OBJ))
    rng = random.Random(name)
    oids = {r.value for r in refs if r.value} | {r.target_value for r in refs if r.target_value}
    oids |= {lg.new_id for lg in logs if lg.new_id}
    uis = sorted({lg.update_index for lg in logs} | {t.min_update_index, t.max_update_index})
    return Entry(
        name, data, parse_layout(data), refs, logs, obj,
        [r.name.encode("utf-8", "surrogateescape") for r in _sample(refs, 12, rng)],
        sorted({lg.refname.encode("utf-8", "surrogateescape") for lg in _sample(logs, 12, rng)}),
        _sample(sorted(oids), 8, rng), _sample(uis, 6, rng),
    )


def _mixed_refs(n: int, hs: int, ui: int = 1, long_names: bool = False,
                val2: bool = True) -> list[RefRecord]:
    h = "sha1" if hs == 20 else "sha256"
    out = [RefRecord.symref("HEAD", ui, "refs/heads/main")]
    for i in range(n):
        name = f"refs/{'heads' if i % 3 else 'tags'}/{'x' * 40 if long_names else ''}r{i:05d}"
        k = i % 7
        if k == 5 and val2:
            out.append(RefRecord.val2(name, ui, oid(i, h), oid(i + 1, h)))
        elif k == 6:
            out.append(RefRecord.deletion(name, ui))
        elif k == 4:
            out.append(RefRecord.symref(name, ui, f"refs/heads/r{i + 1:05d}"))
        else:
            out.append(RefRecord.val1(name, ui, oid(i % 11, h)))  # shared ids: obj positions
    return sorted(out, key=lambda r: r.name.encode())


def _logs(nrefs: int, per_ref: int, hs: int, max_ui: int) -> list[LogRecord]:
    h = "sha1" if hs == 20 else "sha256"
    out = []
    for r in range(nrefs):
        for j in range(per_ref):
            ui = max_ui - j
            if j % 9 == 8:
                out.append(LogRecord.deletion(f"refs/heads/l{r:04d}", ui))
            else:
                out.append(LogRecord.update(
                    f"refs/heads/l{r:04d}", ui, oid(2 * j, h), oid(2 * j + 1, h),
                    "A U Thor", "a@example.com", 1_700_000_000 + j, (-1) ** j * 120,
                    f"msg {r} {j}\n"))
    return out


def library_tables() -> dict[str, bytes]:
    """Tables written by this library with unusual options."""
    w = reftable.write_table_bytes
    out = {
        "lib-b64-r1": w(_mixed_refs(60, 20, val2=False), [],
                        WriteOptions(block_size=64, restart_interval=1),
                        min_update_index=1, max_update_index=1),
        "lib-b64-multilevel": w(_mixed_refs(700, 20, val2=False), [],
                                WriteOptions(block_size=64, restart_interval=2),
                                min_update_index=1, max_update_index=1),
        "lib-b256-r1-long": w(_mixed_refs(80, 20, long_names=True), [],
                              WriteOptions(block_size=256, restart_interval=1),
                              min_update_index=1, max_update_index=1),
        "lib-sha256-b256-unpadded": w(_mixed_refs(50, 32), _logs(6, 5, 32, 9),
                                      WriteOptions(hash="sha256", block_size=256,
                                                   restart_interval=3, unpadded=True),
                                      min_update_index=1, max_update_index=9),
        "lib-sha256-b1024": w(_mixed_refs(120, 32), _logs(4, 4, 32, 4),
                              WriteOptions(hash="sha256", block_size=1024),
                              min_update_index=1, max_update_index=4),
        "lib-manylogs-b1024": w(_mixed_refs(10, 20), _logs(40, 60, 20, 100),
                                WriteOptions(block_size=1024, restart_interval=16),
                                min_update_index=1, max_update_index=100),
        "lib-manylogs-b256-r1": w([], _logs(20, 20, 20, 50),
                                  WriteOptions(block_size=256, restart_interval=1),
                                  min_update_index=1, max_update_index=50),
        "lib-noobj-b512": w(_mixed_refs(200, 20), _logs(3, 3, 20, 3),
                            WriteOptions(block_size=512, index_objects=False),
                            min_update_index=1, max_update_index=3),
        "lib-b96-r2-unpadded": w(_mixed_refs(150, 20, ui=5), [],
                                 WriteOptions(block_size=96, restart_interval=2, unpadded=True),
                                 min_update_index=5, max_update_index=5),
    }
    return out


def git_tables() -> dict[str, bytes]:
    out = {}
    if GIT_FIXTURES is not None:
        for p in sorted(GIT_FIXTURES.glob("*/reftable/*.ref")):
            out[f"git-{p.parent.parent.name}-{p.name[:31]}"] = p.read_bytes()
    return out


def load_corpus() -> dict[str, Entry]:
    tables = {**git_tables(), **library_tables()}
    return {name: make_entry(name, data) for name, data in tables.items()}


# ---------------------------------------------------------------------------------------
# Mutators. Each takes (data, rng, entry, corpus) and returns new bytes; ``entry`` is the
# valid table ``data`` derives from (its layout may be stale after earlier mutations:
# positions are clamped, never trusted).


Mutator = Callable[[bytearray, random.Random, Entry, list[Entry]], bytearray]


def _clamp(d: bytearray, pos: int) -> int:
    return max(0, min(pos, len(d) - 1)) if d else 0


def pick_pos(d: bytearray, rng: random.Random, e: Entry) -> int:
    """A position, weighted towards the structurally interesting bytes."""
    lay = e.layout
    r = rng.random()
    if not d:
        return 0
    if r < 0.10:
        pos = rng.randrange(lay.header_size)
    elif r < 0.20:
        pos = lay.footer_start + rng.randrange(lay.footer_size)
    elif r < 0.35:
        b = rng.choice(lay.blocks)
        pos = b.offset + b.header_off + rng.randrange(4)
    elif r < 0.50:
        b = rng.choice(lay.blocks)
        if b.type == BLOCK_LOG:
            body = b.offset + b.header_off + 4
            pos = body + rng.randrange(max(1, b.stored_size - b.header_off - 4))
        else:
            pos = b.offset + b.restart_start + rng.randrange(max(1, b.length - b.restart_start))
    elif r < 0.85:
        b = rng.choice(lay.blocks)
        if b.starts and b.type != BLOCK_LOG:
            pos = b.offset + rng.choice(b.starts) + rng.randrange(4)
        else:
            pos = b.offset + rng.randrange(max(1, b.stored_size))
    else:
        pos = rng.randrange(len(d))
    return _clamp(d, pos)


def m_bitflip(d: bytearray, rng: random.Random, e: Entry, corpus: list[Entry]) -> bytearray:
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8, 16))):
        if d:
            d[pick_pos(d, rng, e)] ^= 1 << rng.randrange(8)
    return d


def m_byte(d: bytearray, rng: random.Random, e: Entry, corpus: list[Entry]) -> bytearray:
    for _ in range(rng.choice((1, 1, 2, 3, 4))):
        if d:
            d[pick_pos(d, rng, e)] = rng.choice(INTERESTING8)
    return d


def _interesting(width: int, rng: random.Random, e: Entry, cur: int) -> int:
    top = (1 << (8 * width)) - 1
    lay = e.layout
    cands = [0, 1, 2, 3, 4, 5, 6, 7, top, top - 1, top >> 1, (top >> 1) + 1, cur - 1,
             cur + 1, cur * 2, cur // 2, rng.randrange(top + 1), lay.footer_start,
             lay.footer_start - 1, lay.footer_start + 1, len(e.data), lay.block_size,
             lay.block_size + 1, lay.header_size + 4, lay.header_size + 6, 0x7F, 0x80,
             0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFF]
    cands += [b.offset for b in lay.blocks[:64]] + [b.offset + b.span for b in lay.blocks[:16]]
    return rng.choice(cands) & top


def _fields(e: Entry) -> list[tuple[int, int]]:
    """(file offset, width) of the fixed-width fields of a table (not in log blocks)."""
    lay = e.layout
    out: list[tuple[int, int]] = [(5, 3), (8, 8), (16, 8)]
    fs = lay.footer_start + lay.header_size
    out += [(fs, 8), (fs + 8, 8), (fs + 15, 1), (fs + 16, 8), (fs + 24, 8), (fs + 32, 8)]
    for b in lay.blocks:
        out.append((b.offset + b.header_off + 1, 3))
        if b.type == BLOCK_LOG:
            continue
        out.append((b.offset + b.length - 2, 2))
        for i in range(min(b.restart_count, 8)):
            out.append((b.offset + b.restart_start + 3 * i, 3))
    return out


def m_field(d: bytearray, rng: random.Random, e: Entry, corpus: list[Entry]) -> bytearray:
    """Overwrite a length, count, offset or footer field with an interesting value."""
    off, width = rng.choice(_fields(e))
    if off + width > len(d):
        return d
    v = _interesting(width, rng, e, be(d, off, width))
    d[off:off + width] = v.to_bytes(width, "big")
    return d


def m_block_len(d: bytearray, rng: random.Random, e: Entry, corpus: list[Entry]) -> bytearray:
    """Block length bytes 1..3 of a block header: one byte or the whole 24-bit field."""
    b = rng.choice(e.layout.blocks)
    p = b.offset + b.header_off + 1
    if p + 3 > len(d):
        return d
    if rng.random() < 0.5:
        d[p + rng.randrange(3)] = rng.choice(INTERESTING8)
    else:
        d[p:p + 3] = _interesting(3, rng, e, b.length).to_bytes(3, "big")
    return d


def _varint_bytes(rng: random.Random, e: Entry) -> bytes:
    k = rng.randrange(10)
    if k == 0:
        return b"\x80" * rng.randrange(1, 12) + b"\x00"
    if k == 1:
        return b"\xff" * rng.randrange(1, 12)
    if k == 2:
        return b"\xff" * 9 + b"\x7f"          # overflows 64 bits
    if k == 3:
        return put_varint(U64)
    if k == 4:
        return put_varint(rng.choice((1 << 63, 1 << 32, (1 << 32) - 1, 1 << 24, 65536)))
    if k == 5:
        return put_varint(rng.choice((len(e.data), e.layout.block_size, 255, 256, 1000)))
    if k == 6:
        return bytes([0x80 | rng.randrange(128)])  # continuation at the end
    return put_varint(rng.randrange(0, 64))


def m_varint(d: bytearray, rng: random.Random, e: Entry, corpus: list[Entry]) -> bytearray:
    """Replace one varint of a record (prefix, suffix/type, or the value's first)."""
    blocks = [b for b in e.layout.blocks if b.starts and b.type != BLOCK_LOG]
    if not blocks:
        return m_byte(d, rng, e, corpus)
    b = rng.choice(blocks)
    pos = rng.choice(b.starts)
    try:
        _, q = get_varint(b.plain, pos, b.restart_start)        # prefix length
        st, q2 = get_varint(b.plain, q, b.restart_start)        # suffix length, type
        start = rng.choice((pos, q, q2 + (st >> 3)))              # or the value's first
        _, end = get_varint(b.plain, start, b.restart_start)
    except ValueError:
        return d
    new = _varint_bytes(rng, e)
    a, z = b.offset + start, b.offset + end
    if z > len(d):
        return d
    if rng.random() < 0.7 or len(new) == z - a:
        d[a:z] = new  # may shift the rest of the table
    else:
        new = (new + bytes(z - a))[: z - a]
        d[a:z] = new
    return d


def m_restart(d: bytearray, rng: random.Random, e: Entry, corpus: list[Entry]) -> bytearray:
    """Restart count and restart offsets."""
    blocks = [b for b in e.layout.blocks if b.type != BLOCK_LOG]
    if not blocks:
        return m_field(d, rng, e, corpus)
    b = rng.choice(blocks)
    end = b.offset + b.length
    if end > len(d):
        return d
    if rng.random() < 0.5:
        d[end - 2:end] = _interesting(2, rng, e, b.restart_count).to_bytes(2, "big")
    else:
        i = rng.randrange(max(1, b.restart_count))
        p = b.offset + b.restart_start + 3 * i
        cands = [0, 1, b.header_off + 3, b.header_off + 4, b.restart_start, b.restart_start - 1,
                 b.length, 0xFFFFFF, rng.choice(b.starts) if b.starts else 5,
                 (rng.choice(b.starts) + 1) if b.starts else 6]
        d[p:p + 3] = (rng.choice(cands) & 0xFFFFFF).to_bytes(3, "big")
    return d


def m_truncate(d: bytearray, rng: random.Random, e: Entry, corpus: list[Entry]) -> bytearray:
    lay = e.layout
    marks = [0, 1, 4, 8, lay.header_size, lay.header_size + 1, lay.footer_start,
             lay.footer_start + lay.header_size, len(d) - 4, len(d) - 1]
    for b in lay.blocks[:64]:
        marks += [b.offset, b.offset + b.header_off + 4, b.offset + b.stored_size,
                  b.offset + b.restart_start, b.offset + b.span]
    cut = _clamp(d, rng.choice(marks) + rng.randrange(-3, 4))
    mode = rng.randrange(3)
    if mode == 0:
        return d[:cut]
    footer = d[len(d) - lay.footer_size:]
    if mode == 1:  # data cut, the valid footer re-appended
        return d[:min(cut, lay.footer_start)] + footer
    # a range removed from the middle, the tail kept
    end = _clamp(d, cut + rng.choice((1, 2, 3, 16, 100, 1000, lay.block_size or 64)))
    return d[:cut] + d[end:]


def _range(d: bytes | bytearray, rng: random.Random, e: Entry) -> tuple[int, int]:
    if rng.random() < 0.5 and e.layout.blocks:
        b = rng.choice(e.layout.blocks)
        a, z = b.offset, b.offset + b.span
    else:
        a = rng.randrange(max(1, len(d)))
        z = a + rng.choice((1, 2, 4, 8, 16, 64, 256, 4096))
    return a, min(z, len(d))


def m_splice(d: bytearray, rng: random.Random, e: Entry, corpus: list[Entry]) -> bytearray:
    """Copy a range of this or another table over or into this one."""
    donor = e if rng.random() < 0.5 else rng.choice(corpus)
    src = donor.data if donor is not e else bytes(d)
    a, z = _range(src, rng, donor)
    chunk = src[a:z]
    dst = pick_pos(d, rng, e) if rng.random() < 0.6 else _range(d, rng, e)[0]
    if rng.random() < 0.5:
        d[dst:dst + len(chunk)] = chunk          # overwrite
    else:
        d[dst:dst] = chunk                       # insert
    return d


def _shift_footer(d: bytearray, e: Entry, at: int, delta: int) -> None:
    """Move footer offsets that point at or after ``at`` by ``delta``."""
    lay = e.layout
    if len(d) < lay.footer_size:
        return
    fs = len(d) - lay.footer_size + lay.header_size
    for k, off in ((0, fs), (1, fs + 8), (2, fs + 16), (3, fs + 24), (4, fs + 32)):
        v = be(d, off, 8)
        if k == 1:
            pos, low = v >> 5, v & 0x1F
            if pos >= at and pos:
                d[off:off + 8] = ((max(0, pos + delta) << 5 | low) & U64).to_bytes(8, "big")
        elif v >= at and v:
            d[off:off + 8] = (max(0, v + delta) & U64).to_bytes(8, "big")


def m_block_dup(d: bytearray, rng: random.Random, e: Entry, corpus: list[Entry]) -> bytearray:
    """Duplicate or remove a whole block (padding included), maybe fixing the footer."""
    lay = e.layout
    b = rng.choice(lay.blocks)
    a, z = b.offset, min(b.offset + b.span, len(d))
    if b.offset == 0 and rng.random() < 0.8 and len(lay.blocks) > 1:
        b = rng.choice(lay.blocks[1:])
        a, z = b.offset, min(b.offset + b.span, len(d))
    fix = rng.random() < 0.7
    if rng.random() < 0.5:
        chunk = bytes(d[a:z])
        d[z:z] = chunk
        if fix:
            _shift_footer(d, e, z, len(chunk))
    else:
        del d[a:z]
        if fix:
            _shift_footer(d, e, z, -(z - a))
    return d


def m_footer(d: bytearray, rng: random.Random, e: Entry, corpus: list[Entry]) -> bytearray:
    """A footer or header field; the CRC is recomputed by the caller (mostly)."""
    lay = e.layout
    fs = len(d) - lay.footer_size + lay.header_size
    if fs < 0:
        return d
    k = rng.randrange(9)
    if k < 5:
        off = fs + 8 * k
        if k == 1:
            cur = be(d, off, 8)
            pos = _interesting(7, rng, e, cur >> 5) if rng.random() < 0.7 else cur >> 5
            low = rng.randrange(32) if rng.random() < 0.5 else cur & 0x1F
            d[off:off + 8] = ((pos << 5 | low) & U64).to_bytes(8, "big")
        else:
            d[off:off + 8] = _interesting(8, rng, e, be(d, off, 8)).to_bytes(8, "big")
    elif k == 5:
        d[5:8] = _interesting(3, rng, e, lay.block_size).to_bytes(3, "big")
    elif k == 6:
        o = rng.choice((8, 16))
        d[o:o + 8] = _interesting(8, rng, e, be(d, o, 8)).to_bytes(8, "big")
    elif k == 7:
        d[4] = rng.choice((0, 1, 2, 3, 255))
    elif len(d) >= 28:
        d[24:28] = rng.choice((b"sha1", b"s256", b"\0\0\0\0", b"s255"))
    return d


def m_random_range(d: bytearray, rng: random.Random, e: Entry,
                   corpus: list[Entry]) -> bytearray:
    a = pick_pos(d, rng, e)
    n = rng.choice((1, 2, 3, 4, 8, 16, 32, 128))
    fill = rng.randrange(3)
    if fill == 0:
        chunk = bytes(rng.getrandbits(8) for _ in range(n))
    else:
        chunk = bytes([0 if fill == 1 else 0xFF]) * n
    d[a:a + n] = chunk[:max(0, len(d) - a)]
    return d


_PLAIN_MUTATORS: tuple[str, ...] = ("bitflip", "byte", "varint", "restart", "trunc", "len")


def m_log_plain(d: bytearray, rng: random.Random, e: Entry, corpus: list[Entry]) -> bytearray:
    """Inflate a log block, mutate the plain bytes (records, restarts, lengths),
    deflate it again and splice it back: reaches the log record decoder."""
    logs = [b for b in e.layout.blocks if b.type == BLOCK_LOG]
    if not logs:
        return m_varint(d, rng, e, corpus)
    b = rng.choice(logs)
    p = bytearray(b.plain)
    body = b.header_off + 4
    what = rng.choice(_PLAIN_MUTATORS)
    rs = b.restart_start
    if what == "bitflip" and len(p) > body:
        for _ in range(rng.choice((1, 2, 4))):
            p[rng.randrange(body, len(p))] ^= 1 << rng.randrange(8)
    elif what == "byte" and len(p) > body:
        p[rng.randrange(body, len(p))] = rng.choice(INTERESTING8)
    elif what == "varint" and b.starts:
        pos = rng.choice(b.starts)
        # walk to one of: prefix, suffix/type, or a varint inside the value
        try:
            _, q = get_varint(p, pos, rs)
            st, q2 = get_varint(p, q, rs)
            targets = [pos, q]
            if st & 7 == 1:
                v = q2 + (st >> 3) + 2 * e.layout.hash_size
                for _ in range(2):                      # name and email lengths
                    targets.append(v)
                    n, v = get_varint(p, v, rs)
                    v += n
                targets.append(v)                       # time
                _, v = get_varint(p, v, rs)
                targets.append(v + 2)                   # message length, after the tz
            start = rng.choice(targets)
            _, end = get_varint(p, start, rs)
        except (ValueError, IndexError):
            return d
        p[start:end] = _varint_bytes(rng, e)
    elif what == "restart":
        if rng.random() < 0.5:
            p[-2:] = rng.choice((0, 1, b.restart_count + 1, 0xFFFF)).to_bytes(2, "big")
        elif b.restart_count:
            i = rng.randrange(b.restart_count)
            q = rs + 3 * i
            p[q:q + 3] = rng.choice((0, body - 1, rs, rs - 1, 0xFFFFFF,
                                     rng.randrange(len(p)))).to_bytes(3, "big")
    elif what == "trunc" and len(p) > body + 1:
        cut = rng.randrange(body, len(p))
        p = p[:cut] + p[cut + rng.choice((1, 2, 5, 20)):]
    # declared length: usually the new plain length, sometimes wrong on purpose
    blen = len(p)
    if what == "len" or rng.random() < 0.1:
        blen = rng.choice((blen - 1, blen + 1, 0, b.header_off + 6, 0xFFFFFF, blen * 2))
    header = bytearray(p[:body])
    header[b.header_off + 1:b.header_off + 4] = (blen & 0xFFFFFF).to_bytes(3, "big")
    comp = zlib.compress(bytes(p[body:]), rng.choice((0, 1, 6, 9)))
    a, z = b.offset, b.offset + b.stored_size
    if z > len(d):
        return d
    new = bytes(header) + comp
    d[a:z] = new
    _shift_footer(d, e, z, len(new) - (z - a))
    return d


_BOMBS: dict[int, bytes] = {}


def _bomb(n: int) -> bytes:
    if n not in _BOMBS:
        _BOMBS[n] = zlib.compress(bytes(n), 9)
    return _BOMBS[n]


def m_log_bomb(d: bytearray, rng: random.Random, e: Entry, corpus: list[Entry]) -> bytearray:
    """A log block whose header claims a huge inflated size (and a block size allowing
    it), over a stream of zeros that inflates to far more or far less than claimed."""
    logs = [b for b in e.layout.blocks if b.type == BLOCK_LOG]
    b = rng.choice(logs) if logs else rng.choice(e.layout.blocks)
    claim = rng.choice((0xFFFFFF, 0xFFFFFE, 1 << 23, 1 << 20))
    stream = _bomb(rng.choice((0, 1 << 16, 1 << 22, 1 << 24, 1 << 25)))
    if rng.random() < 0.3:
        stream = stream[: rng.randrange(len(stream))]
    a = b.offset + b.header_off
    if a + 4 > len(d):
        return d
    d[a:a + 4] = bytes([BLOCK_LOG]) + claim.to_bytes(3, "big")
    d[a + 4:b.offset + b.stored_size] = stream
    d[5:8] = b"\xff\xff\xff"   # block size 2**24-1: the claim passes the size check
    return d


MUTATORS: dict[str, Mutator] = {
    "bitflip": m_bitflip,
    "byte": m_byte,
    "field": m_field,
    "blocklen": m_block_len,
    "varint": m_varint,
    "restart": m_restart,
    "truncate": m_truncate,
    "splice": m_splice,
    "blockdup": m_block_dup,
    "footer": m_footer,
    "random": m_random_range,
    "logplain": m_log_plain,
    "logbomb": m_log_bomb,
}
WEIGHTS = {"bitflip": 10, "byte": 8, "field": 10, "blocklen": 6, "varint": 10, "restart": 8,
           "truncate": 6, "splice": 6, "blockdup": 4, "footer": 8, "random": 4,
           "logplain": 10, "logbomb": 1}


def mutate(e: Entry, rng: random.Random, corpus: list[Entry], kinds: Optional[list[str]] = None,
           stack: Optional[int] = None) -> tuple[bytes, list[str]]:
    """Apply 1..3 mutations to ``e.data``; keep the footer CRC valid most of the time.
    Returns the bytes and the names of the mutators applied."""
    d = bytearray(e.data)
    names = kinds or list(WEIGHTS)
    weights = [WEIGHTS[k] for k in names]
    n = stack if stack is not None else rng.choice((1, 1, 1, 2, 2, 3))
    applied = []
    for _ in range(n):
        k = rng.choices(names, weights)[0]
        d = MUTATORS[k](d, rng, e, corpus)
        applied.append(k)
    if rng.random() < 0.9:
        d = bytearray(refresh_footer_crc(d, mirror_header=rng.random() < 0.9))
    return bytes(d), applied


# ---------------------------------------------------------------------------------------
# The exerciser


@dataclass
class Stats:
    opened: int = 0
    format_errors: int = 0
    records: int = 0
    ops: int = 0


class Budget:
    """Bounds one case: records returned and wall time."""

    def __init__(self, max_records: int, seconds: float):
        self.left = max_records
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds

    def take(self, it: Any) -> list[Any]:
        """List up to the remaining record budget from ``it``; exceeding it is a bug
        (a table cannot hold that many records: the reader must be looping)."""
        out = list(islice(it, self.left + 1))
        if len(out) > self.left:
            raise Crash(f"iteration returned more than the record budget ({self.left})")
        self.left -= len(out)
        self.tick()
        return out

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise Crash(f"case exceeded its time budget of {self.seconds} s")


def _check_ref(r: Any, hs: int) -> None:
    if not isinstance(r, RefRecord) or not isinstance(r.name, str):
        raise Crash(f"bad ref record {r!r}")
    for v in (r.value, r.target_value):
        if v is not None and (not isinstance(v, bytes) or len(v) != hs):
            raise Crash(f"ref object id of the wrong size: {r!r}")
    if not 0 <= r.update_index <= U64:
        raise Crash(f"update index out of range: {r!r}")


def _check_log(r: Any, hs: int) -> None:
    if not isinstance(r, LogRecord) or not isinstance(r.refname, str):
        raise Crash(f"bad log record {r!r}")
    for v in (r.old_id, r.new_id):
        if v is not None and len(v) != hs:
            raise Crash(f"log object id of the wrong size: {r!r}")
    if not -32768 <= r.tz_offset <= 32767:
        raise Crash(f"bad timezone {r!r}")


def _try(stats: Stats, fn: Callable[[], Any]) -> Any:
    stats.ops += 1
    try:
        return fn()
    except FormatError:
        stats.format_errors += 1
        return None


def exercise(data: bytes, e: Entry, rng: random.Random, *, valid: Optional[Table] = None,
             path: Optional[str] = None, seconds: float = 10.0, deep: bool = False,
             max_records: Optional[int] = None) -> Stats:
    """Drive every read path over ``data``; raise Crash (or let the unexpected exception
    through) on a disallowed outcome.

    ``e`` is the valid table ``data`` derives from (keys, object ids, record budget);
    ``valid`` a valid table of the same hash for merged views and compaction; ``path``
    a file holding ``data`` to open with ``Table.open`` instead of ``from_bytes``.
    ``deep`` tries more keys and both merge orders (slower)."""
    stats = Stats()
    if max_records is None:
        max_records = 10 * e.nrecords + len(data) + 10_000
    budget = Budget(max_records, seconds)
    try:
        t = Table.open(path) if path is not None else Table.from_bytes(data, "fuzz.ref")
    except FormatError:
        stats.format_errors += 1
        return stats
    stats.opened = 1
    try:
        _exercise_table(t, e, rng, stats, budget, deep)
        if valid is not None:
            _exercise_merged(t, valid, e, rng, stats, budget, deep)
    finally:
        t.close()
    return stats


def _rand_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def _keys(e: Entry, rng: random.Random, found: list[bytes], deep: bool) -> list[bytes]:
    keys = list(rng.sample(e.ref_names, min(3 if deep else 2, len(e.ref_names))))
    keys += rng.sample(found, min(2 if deep else 1, len(found)))
    if keys:
        k = rng.choice(keys)
        keys.append(k[:rng.randrange(len(k) + 1)])          # a prefix
        keys.append(k[:-1] + bytes([(k[-1] + 1) & 0xFF]) if k else b"\x01")
        if deep:
            keys.append(k + b"\0")
    keys.append(rng.choice((b"refs/", b"refs/heads/", b"HEAD", b"\xff\xff", b"\x00", b"")))
    keys.append(_rand_bytes(rng, rng.randrange(1, 12)))
    return keys


SEEK_CAP = 64   # records taken after a seek (full iteration is exercised separately)


def _exercise_table(t: Table, e: Entry, rng: random.Random, st: Stats, budget: Budget,
                    deep: bool) -> None:
    hs = t.hash_size
    core = t._core
    # full iterations: records, tuples, names, counts
    refs = _try(st, lambda: budget.take(t.refs())) or []
    for r in refs:
        _check_ref(r, hs)
    tuples = _try(st, lambda: budget.take(t.ref_tuples()))
    if tuples is not None and refs and len(tuples) != len(refs):
        raise Crash(f"{len(tuples)} ref tuples but {len(refs)} ref records")
    names = _try(st, lambda: t.ref_names())
    if names is not None:
        budget.take(iter(names))
        if refs and len(names) != len(refs):
            raise Crash(f"{len(names)} ref names but {len(refs)} ref records")
    n = _try(st, lambda: t.count_refs())
    if n is not None and names is not None and n != len(names):
        raise Crash(f"count_refs {n} but {len(names)} names")
    cols = _try(st, lambda: t.ref_columns())
    if cols is not None and names is not None and cols.names != names:
        raise Crash("ref_columns names differ from ref_names")
    packed = _try(st, lambda: t.ref_columns_packed())
    if packed is not None and cols is not None and (
            packed.names() != cols.names or packed.values != cols.values
            or packed.peeled != cols.peeled or packed.targets != cols.targets):
        raise Crash("ref_columns_packed differs from ref_columns")
    logs = _try(st, lambda: budget.take(t.logs())) or []
    for lg in logs:
        _check_log(lg, hs)
    ltuples = _try(st, lambda: budget.take(t.log_tuples()))
    if ltuples is not None and logs and len(ltuples) != len(logs):
        raise Crash(f"{len(ltuples)} log tuples but {len(logs)} log records")
    _try(st, lambda: budget.take(core.iter_section(BLOCK_OBJ)))
    for off in {core.ref_index_offset, core.obj_index_offset, core.log_index_offset} - {0}:
        _try(st, lambda off=off: budget.take(core.iter_block(off, BLOCK_INDEX)))
    st.records += len(refs) + len(logs)

    # seeks and point lookups
    found = [r.name.encode("utf-8", "surrogateescape") for r in refs[:: max(1, len(refs) // 8)]]
    for key in _keys(e, rng, found, deep):
        name = key.decode("utf-8", "surrogateescape")
        got = _try(st, lambda name=name: t.read_ref(name))
        if got is not None:
            _check_ref(got, hs)
            if got.name != name:
                raise Crash(f"read_ref({name!r}) returned {got.name!r}")
        got = _try(st, lambda key=key: core.lookup(BLOCK_REF, key, False))
        if got is not None and got[0].encode("utf-8", "surrogateescape") != key:
            raise Crash(f"lookup({key!r}) returned {got!r}")
        under = _try(st, lambda name=name: budget.take(islice(t.refs(name), SEEK_CAP))) or []
        for r in under:
            _check_ref(r, hs)
            if not r.name.encode("utf-8", "surrogateescape").startswith(key):
                raise Crash(f"refs({key!r}) returned {r.name!r}")
        if deep:
            _try(st, lambda key=key: budget.take(islice(t.ref_tuples(key), SEEK_CAP)))
            _try(st, lambda key=key: t.count_refs(key))
            _try(st, lambda key=key: budget.take(
                islice(core.seek(BLOCK_OBJ, key[:e.layout.hash_size]), SEEK_CAP)))
            _try(st, lambda key=key: budget.take(islice(core.seek(BLOCK_LOG, key), SEEK_CAP)))
        budget.tick()

    lnames = rng.sample(e.log_names, min(2 if deep else 1, len(e.log_names)))
    lnames += [lg.refname.encode("utf-8", "surrogateescape") for lg in logs[:1]]
    lnames.append(rng.choice((b"refs/heads/", b"HEAD", _rand_bytes(rng, 4))))
    for ln in lnames:
        got = _try(st, lambda ln=ln: budget.take(islice(t.logs(ln), SEEK_CAP))) or []
        for lg in got:
            _check_log(lg, hs)
            if not lg.refname.encode("utf-8", "surrogateescape").startswith(ln):
                raise Crash(f"logs({ln!r}) returned {lg.refname!r}")
        uis = [rng.choice(e.update_indexes + [0, U64, rng.getrandbits(64)])]
        if deep:
            uis += [0, U64]
        for ui in uis:
            _try(st, lambda ln=ln, ui=ui: budget.take(islice(t.seek_log(ln, ui), SEEK_CAP)))
        budget.tick()

    # reverse lookups through the obj index
    oids = list(rng.sample(e.oids, min(2, len(e.oids))))
    oids += [r.value for r in refs[:: max(1, len(refs) // 2)][:2] if r.value]
    oids.append(_rand_bytes(rng, hs))
    if deep:
        oids.append(b"\0" * hs)
    for o in oids:
        if len(o) != hs:
            continue
        got = _try(st, lambda o=o: t.refs_for(o)) or []
        budget.take(iter(got))
        for r in got:
            _check_ref(r, hs)
            if o not in (r.value, r.target_value):
                raise Crash(f"refs_for({o.hex()}) returned {r!r}")
    budget.tick()


def _exercise_merged(t: Table, valid: Table, e: Entry, rng: random.Random, st: Stats,
                     budget: Budget, deep: bool) -> None:
    hs = t.hash_size
    orders = ((valid, t), (t, valid)) if deep else (rng.choice(((valid, t), (t, valid))),)
    for order in orders:
        m = _try(st, lambda order=order: MergedTable(list(order)))
        if m is None:
            continue
        refs = _try(st, lambda m=m: budget.take(m.refs())) or []
        for r in refs:
            _check_ref(r, hs)
        n = _try(st, lambda m=m: m.count_refs())
        cols = _try(st, lambda m=m: m.ref_columns())
        if cols is not None and n is not None and len(cols.names) != n:
            raise Crash(f"merged ref_columns has {len(cols.names)} refs, count_refs {n}")
        packed = _try(st, lambda m=m: m.ref_columns_packed())
        if packed is not None and n is not None and len(packed) != n:
            raise Crash(f"merged ref_columns_packed has {len(packed)} refs, count_refs {n}")
        _try(st, lambda m=m: budget.take(m.logs()))
        for key in e.ref_names[:2] + [b"refs/heads/"]:
            name = key.decode("utf-8", "surrogateescape")
            got = _try(st, lambda m=m, name=name: m.read_ref(name))
            if got is not None and got.name != name:
                raise Crash(f"merged read_ref({name!r}) returned {got.name!r}")
            _try(st, lambda m=m, name=name: budget.take(islice(m.refs(name), SEEK_CAP)))
        for ln in e.log_names[:1]:
            _try(st, lambda m=m, ln=ln: budget.take(islice(m.logs(ln), SEEK_CAP)))
            _try(st, lambda m=m, ln=ln: budget.take(islice(m.seek_log(ln, U64), SEEK_CAP)))
        for o in e.oids[:1]:
            _try(st, lambda m=m, o=o: m.refs_for(o))
        budget.tick()
    # the compaction path: raw record copies into a writer (what Stack.compact does)
    for typ in (BLOCK_REF, BLOCK_LOG):
        _compact(t, valid, typ, rng, st)
    budget.tick()


def _compact(t: Table, valid: Table, typ: int, rng: random.Random, st: Stats) -> None:
    w = _core.WriterCore(hash_size=t.hash_size, block_size=4096,
                         min_update_index=0, max_update_index=U64, sink=lambda b: None)
    st.ops += 1
    try:
        it = _core.MergedIter([valid._core.iter_section(typ), t._core.iter_section(typ)],
                              typ, False)
        if typ == BLOCK_REF:
            it.copy_to(w, rng.random() < 0.5)
        else:
            it.copy_to(w, rng.random() < 0.5, rng.choice((0, 1, 50)),
                       rng.choice((0, 0, 1, 1_700_000_010, U64)), rng.random() < 0.5)
    except FormatError:
        st.format_errors += 1
    except (reftable.ApiError, reftable.EntryTooBigError):
        # The writer refusing what a corrupt table yields (keys out of order, an update
        # index outside the limits, a record too big for a block) is the writer's
        # contract, not the reader's.
        pass


def exercise_file(data: bytes, e: Entry, rng: random.Random, tmpdir: str,
                  valid: Optional[Table] = None, seconds: float = 10.0) -> Stats:
    """``exercise`` through ``Table.open`` (mmap) on a file holding ``data``."""
    path = os.path.join(tmpdir, "case.ref")
    with open(path, "wb") as f:
        f.write(data)
    if not data:
        try:
            Table.open(path)
        except FormatError:
            return Stats(format_errors=1)
        raise Crash("an empty file opened as a table")
    return exercise(data, e, rng, path=path, valid=valid, seconds=seconds)
