"""Property tests: random records x random options round-trip exactly (or are rejected
as too big only when a record really does not fit), seeks agree with bisect on the
sorted keys, and merged tables agree with a dict model."""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from support.oracle import HASH_SIZE, HEADER_SIZE, put_varint

from reftable import (
    EntryTooBigError,
    LogRecord,
    MergedTable,
    RefRecord,
    Table,
    WriteOptions,
    write_table_bytes,
)
from reftable.table import log_key

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ALPHABET = "ab/z.-_09" + "\u00e9\u20ac\U0001f600"
PREFIXES = ["refs/heads/", "refs/tags/", "refs/heads/" + "long-segment/" * 6, "HEAD",
            "refs/\u00e9t\u00e9/", "refs/remotes/origin/"]


def nb(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


# -- strategies ------------------------------------------------------------------------------

names_st = st.one_of(
    st.builds(lambda p, s: p + s, st.sampled_from(PREFIXES), st.text(ALPHABET, max_size=12)),
    st.text(ALPHABET, min_size=1, max_size=12),
)


@st.composite
def options_st(draw, min_block: int = 64, max_block: int = 65536,
               padded: bool | None = None) -> WriteOptions:
    """Block sizes over the whole range, biased towards small (multi-block) tables."""
    ranges = [st.integers(min_block, hi) for hi in (600, 4096) if hi > min_block]
    bs = draw(st.one_of(
        *ranges,
        st.integers(min_block, max_block),
        st.sampled_from([b for b in (64, 65, 100, 256, 1024, 4096, 65536)
                         if min_block <= b <= max_block]),
    ))
    return WriteOptions(
        hash=draw(st.sampled_from(["sha1", "sha256"])),
        block_size=bs,
        restart_interval=draw(st.integers(1, 128)),
        index_objects=draw(st.booleans()),
        unpadded=(not padded) if padded is not None else draw(st.booleans()),
        exact_log_message=True,
    )


@dataclass
class Spec:
    options: WriteOptions
    min_ui: int
    max_ui: int
    refs: list[RefRecord] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)


@st.composite
def spec_st(draw, opts=None, max_refs: int = 60, max_logs: int = 30,
            big: bool = True, names=None, bulk: int = 300) -> Spec:
    o = draw(opts if opts is not None else options_st())
    hs = HASH_SIZE[o.hash]
    pool = [bytes([i]) * hs for i in range(1, 4)] + [b"\xaa" * (hs - 1) + b"\x01"]
    oid_st = st.one_of(st.sampled_from(pool), st.binary(min_size=hs, max_size=hs))
    min_ui = draw(st.one_of(st.just(0), st.integers(0, 2**40)))
    max_ui = min_ui + draw(st.integers(0, 1000))
    ui_st = st.integers(min_ui, max_ui)
    text_max = 400 if big else 40
    name_list = draw(st.lists(names if names is not None else names_st, max_size=max_refs,
                              unique_by=nb))
    # plus a run of numbered names under one prefix: many blocks, indexes, restarts
    n_bulk = draw(st.one_of(st.just(0), st.integers(0, bulk)))
    stem = draw(st.sampled_from(PREFIXES)) + draw(st.text(ALPHABET, max_size=4))
    name_list = sorted({nb(n): n for n in name_list + [f"{stem}{i:05d}" for i in
                                                        range(n_bulk)]}.values(), key=nb)
    refs = []
    for name in name_list:
        kind = draw(st.integers(0, 3))
        ui = draw(ui_st)
        if kind == 0:
            refs.append(RefRecord.deletion(name, ui))
        elif kind == 1:
            refs.append(RefRecord.val1(name, ui, draw(oid_st)))
        elif kind == 2:
            refs.append(RefRecord.val2(name, ui, draw(oid_st), draw(oid_st)))
        else:
            refs.append(RefRecord.symref(name, ui, draw(st.text(ALPHABET, max_size=text_max))))
    log_keys = draw(st.lists(st.tuples(st.one_of(st.sampled_from(name_list), names_st)
                                       if name_list else names_st,
                                       st.integers(0, max_ui)),
                             max_size=max_logs, unique_by=lambda k: (nb(k[0]), k[1])))
    log_keys.sort(key=lambda k: (nb(k[0]), -k[1]))
    logs = []
    for refname, ui in log_keys:
        if draw(st.integers(0, 5)) == 0:
            logs.append(LogRecord.deletion(refname, ui))
            continue
        msg = draw(st.one_of(st.text(ALPHABET + "\n ", max_size=40),
                             st.text("xy\n", max_size=text_max * 12 if big else 40)))
        logs.append(LogRecord.update(
            refname, ui, draw(oid_st), draw(oid_st),
            draw(st.text(ALPHABET + " ", max_size=20)),
            draw(st.text(ALPHABET + "@", max_size=20)),
            draw(st.integers(0, 2**64 - 1)),
            draw(st.integers(-32768, 32767)),
            msg))
    return Spec(o, min_ui, max_ui, refs, logs)


# -- record sizes (the bound for EntryTooBigError) --------------------------------------------


def key_size(key: bytes, vt: int) -> int:
    return 1 + len(put_varint(len(key) << 3 | vt)) + len(key)


def ref_size(r: RefRecord, min_ui: int, hs: int) -> int:
    n = key_size(nb(r.name), int(r.value_type)) + len(put_varint(r.update_index - min_ui))
    if r.value_type in (1, 2):
        n += int(r.value_type) * hs
    elif r.value_type == 3:
        t = nb(r.target)
        n += len(put_varint(len(t))) + len(t)
    return n


def log_size(lg: LogRecord, hs: int) -> int:
    n = key_size(nb(lg.refname) + b"\0" + bytes(8), int(lg.value_type))
    if lg.value_type == 1:
        n += 2 * hs
        for s in (lg.name, lg.email, lg.message):
            b = nb(s)
            n += len(put_varint(len(b))) + len(b)
        n += len(put_varint(lg.time)) + 2
    return n


def largest_record(spec: Spec) -> int:
    hs = HASH_SIZE[spec.options.hash]
    sizes = [ref_size(r, spec.min_ui, hs) for r in spec.refs]
    sizes += [log_size(lg, hs) for lg in spec.logs]
    return max(sizes, default=0)


def write_spec(spec: Spec) -> bytes:
    return write_table_bytes(spec.refs, spec.logs, spec.options,
                             min_update_index=spec.min_ui, max_update_index=spec.max_ui)


# -- round trip ---------------------------------------------------------------------------------


@SETTINGS
@given(spec_st())
def test_round_trip_or_entry_too_big(spec):
    bs = spec.options.block_size
    biggest = largest_record(spec)
    # block header (4) + restart entry (3) + restart count (2)
    fits_nowhere = biggest + 9 > bs
    # ambiguous zone: the file header in the first block, index records a few bytes
    # larger than the record whose key they repeat
    may_not_fit = biggest + 9 + HEADER_SIZE[spec.options.hash] + 12 > bs
    try:
        data = write_spec(spec)
    except EntryTooBigError:
        event("entry too big")
        assert may_not_fit, (biggest, bs)
        return
    assert not fits_nowhere, (biggest, bs)
    t = Table.from_bytes(data)
    event(f"multi-block: {len(data) > bs}")
    event(f"ref index: {t.sections['ref']['index_offset'] > 0}")
    event(f"obj section: {bool(t.sections['obj']['present'])}")
    assert list(t.refs()) == spec.refs
    assert list(t.logs()) == spec.logs
    assert (t.min_update_index, t.max_update_index) == (spec.min_ui, spec.max_ui)
    assert (t.hash, t.block_size) == (spec.options.hash, bs)
    assert t.version == (1 if spec.options.hash == "sha1" else 2)
    assert t.sections["ref"]["present"] == int(bool(spec.refs))
    assert t.sections["log"]["present"] == int(bool(spec.logs))
    if not spec.options.index_objects:
        assert t.sections["obj"]["present"] == 0
    # deterministic output
    assert write_spec(spec) == data


@settings(SETTINGS, max_examples=100)
@given(spec_st(opts=options_st(min_block=4096), big=False))
def test_small_records_in_big_blocks_always_fit(spec):
    data = write_spec(spec)
    t = Table.from_bytes(data)
    assert list(t.refs()) == spec.refs
    assert list(t.logs()) == spec.logs


@settings(SETTINGS, max_examples=100)
@given(spec_st(max_refs=0, max_logs=0, bulk=0), st.data())
def test_a_single_record_too_big_is_rejected(spec, data):
    """One symref whose size straddles the limit: rejected exactly when it cannot fit."""
    bs = spec.options.block_size
    hs = HASH_SIZE[spec.options.hash]
    target_len = data.draw(st.integers(max(0, bs - 80), bs + 10))
    r = RefRecord.symref("refs/heads/x", spec.min_ui, "t" * target_len)
    size = ref_size(r, spec.min_ui, hs)
    spec.refs = [r]
    try:
        write_spec(spec)
    except EntryTooBigError:
        # the only block it could go in is the first one, after the file header
        assert size + 9 + HEADER_SIZE[spec.options.hash] > bs
        return
    assert size + 9 + HEADER_SIZE[spec.options.hash] <= bs


# -- seeks -------------------------------------------------------------------------------------


probe_st = st.lists(st.one_of(names_st, st.text(ALPHABET, max_size=6)), max_size=15)


def check_seeks(spec: Spec, probes: list[str]) -> None:
    t = Table.from_bytes(write_spec(spec))
    event(f"ref index: {t.sections['ref']['index_offset'] > 0}")
    event(f"log index: {t.sections['log']['index_offset'] > 0}")
    names = [r.name for r in spec.refs]
    keys = [nb(n) for n in names]
    present = set(names)
    for p in probes + names[::3] + [n + "\0" for n in names[::5]] + [n[:-1] for n in names[::4]]:
        i = bisect.bisect_left(keys, nb(p))
        got = [x[0] for x in t.ref_tuples(p)]
        assert got == names[i:], p
        if not p:
            continue
        rec = t.read_ref(p)
        if p in present:
            assert rec == spec.refs[names.index(p)]
        else:
            assert rec is None
        under = list(itertools.takewhile(lambda r, p=p: r.name.startswith(p), spec.refs[i:]))
        assert list(t.refs(p)) == under
    lkeys = [log_key(nb(lg.refname), lg.update_index) for lg in spec.logs]
    for lg in spec.logs[::2]:
        for ui in (lg.update_index, lg.update_index + 1):
            i = bisect.bisect_left(lkeys, log_key(nb(lg.refname), ui))
            assert list(t.seek_log(lg.refname, ui)) == spec.logs[i:]
        assert list(t.logs(lg.refname)) == [x for x in spec.logs if x.refname == lg.refname]


@SETTINGS
@given(spec_st(opts=options_st(min_block=300, max_block=2048, padded=False), big=False,
               max_refs=150, max_logs=60), probe_st)
def test_seeks_agree_with_bisect_unpadded(spec, probes):
    check_seeks(spec, probes)


def _numbered_spec(n: int, block_size: int, unpadded: bool = False) -> Spec:
    refs = [RefRecord.val1(f"refs/heads/b{i:05d}", 1, bytes([i % 250 + 1]) * 20)
            for i in range(n)]
    return Spec(WriteOptions(block_size=block_size, unpadded=unpadded), 1, 1, refs, [])


@SETTINGS
@example(_numbered_spec(120, 2048), [])   # unindexed ref blocks: linear seek
@example(_numbered_spec(400, 256), [])    # top-level index of 2 blocks
@given(spec_st(opts=options_st(min_block=300, max_block=2048, padded=True), big=False,
               max_refs=150, max_logs=60), probe_st)
def test_seeks_agree_with_bisect_padded(spec, probes):
    check_seeks(spec, probes)


# -- merged tables -------------------------------------------------------------------------------


POOL = ["HEAD", "refs/heads/a", "refs/heads/a/b", "refs/heads/\u00e9", "refs/tags/v1",
        "refs/tags/v2", "refs/heads/" + "x" * 50]


@st.composite
def stack_st(draw):
    n = draw(st.integers(1, 4))
    hash = draw(st.sampled_from(["sha1", "sha256"]))
    tables = []
    next_ui = 1
    for _ in range(n):
        o = draw(options_st(min_block=256, max_block=4096))
        o = WriteOptions(hash=hash, block_size=o.block_size,
                         restart_interval=o.restart_interval, index_objects=o.index_objects,
                         unpadded=o.unpadded, exact_log_message=True)
        names = st.one_of(st.sampled_from(POOL), names_st)
        spec = draw(spec_st(opts=st.just(o), big=False, max_refs=20, max_logs=10,
                            names=names, bulk=60))
        # renumber update indexes so that the stack grows
        width = spec.max_ui - spec.min_ui
        shift = next_ui - spec.min_ui
        spec.refs = [_shift_ref(r, shift) for r in spec.refs]
        spec.logs = [_shift_log(lg, shift, next_ui + width) for lg in spec.logs]
        spec.min_ui, spec.max_ui = next_ui, next_ui + width
        next_ui += width + 1
        tables.append(spec)
    return tables


def _shift_ref(r: RefRecord, shift: int) -> RefRecord:
    return RefRecord(r.name, r.update_index + shift, r.value_type, r.value, r.target_value,
                     r.target)


def _shift_log(lg: LogRecord, shift: int, top: int) -> LogRecord:
    ui = min(max(lg.update_index + shift, 0), top)
    return LogRecord(lg.refname, ui, lg.value_type, lg.old_id,
                     lg.new_id, lg.name, lg.email, lg.time, lg.tz_offset, lg.message)


def _dedupe_logs(spec: Spec) -> None:
    seen = set()
    out = []
    for lg in spec.logs:
        k = (nb(lg.refname), lg.update_index)
        if k not in seen:
            seen.add(k)
            out.append(lg)
    spec.logs = sorted(out, key=lambda x: (nb(x.refname), -x.update_index))


@SETTINGS
@given(stack_st())
def test_merged_tables_agree_with_dict_model(specs):
    for s in specs:
        _dedupe_logs(s)
    tables = [Table.from_bytes(write_spec(s)) for s in specs]
    refs: dict[str, RefRecord] = {}
    logs: dict[tuple[bytes, int], LogRecord] = {}
    for s in specs:  # oldest first: newer tables overwrite
        for r in s.refs:
            refs[r.name] = r
        for lg in s.logs:
            logs[(nb(lg.refname), lg.update_index)] = lg
    want_refs = [refs[k] for k in sorted(refs, key=nb) if not refs[k].is_deletion]
    want_logs = [logs[k] for k in sorted(logs, key=lambda k: (k[0], -k[1]))
                 if not logs[k].is_deletion]
    m = MergedTable(tables)
    assert list(m.refs()) == want_refs
    assert list(m.logs()) == want_logs
    all_refs = [refs[k] for k in sorted(refs, key=nb)]
    assert list(MergedTable(tables, suppress_deletions=False).refs()) == all_refs
    for name in set(POOL) | set(refs):
        r = refs.get(name)
        assert m.read_ref(name) == (None if r is None or r.is_deletion else r)
    for x in {r.value for r in want_refs if r.value is not None}:
        assert m.refs_for(x) == [r for r in want_refs if r.value == x or r.target_value == x]
