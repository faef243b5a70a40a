"""Single-table workloads: write, iterate, point lookups, prefix scans, reflogs."""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from reftable import LogRecord, LogValueType, Table, TableWriter, write_table_bytes

from . import peer_dulwich as dw
from .common import Config, Dataset, Row, median, per_op, repeat, thread_scaling

_CONSUME = deque  # deque(it, maxlen=0) drains an iterator at C speed


def drain(it: Any) -> None:
    _CONSUME(it, maxlen=0)


def write_file(path: str, ds: Dataset, index_objects: bool = True) -> None:
    with TableWriter.create(path, index_objects=index_objects, min_update_index=1,
                            max_update_index=1) as w:
        w.add_refs(ds.records())


def usable(keys: list[str], probe: Callable[[str], Any]) -> tuple[list[str], int, str]:
    """The keys for which ``probe`` works. A probe that raises is a library bug: it is
    counted, reported in the notes and left out of the timed loop."""
    good, bad, first = [], 0, ""
    for k in keys:
        try:
            probe(k)
        except Exception as e:  # noqa: BLE001 - any error is a finding to report
            bad += 1
            if not first:
                first = f"{type(e).__name__}: {e}"
        else:
            good.append(k)
    return good, bad, first


def bug_note(bad: int, total: int, first: str) -> str:
    if not bad:
        return ""
    return f"{bad}/{total} probes raised ({first}); timed without them"


# -- 1. write ------------------------------------------------------------------


def bench_write(cfg: Config, ds: Dataset) -> list[Row]:
    rows = []
    recs = ds.records()
    reps = cfg.reps(ds.n, 5)
    for idx in (True, False):
        times = repeat(
            lambda idx=idx: write_table_bytes(recs, index_objects=idx, min_update_index=1,
                                              max_update_index=1),
            reps, 1, cfg.keep_gc)
        size = len(write_table_bytes(recs, index_objects=idx, min_update_index=1,
                                     max_update_index=1))
        rows.append(Row("write", "write_obj_on" if idx else "write_obj_off",
                        f"write table, obj index {'on' if idx else 'off'}", ds.n, "s",
                        median(times), times, extra={"bytes": size, "records": ds.n}))
    off = rows[1]
    if cfg.dulwich and dw.AVAILABLE:
        if ds.n > 400_000:
            off.note = "dulwich cannot write this many refs (one block, 24-bit length)"
        else:
            refs = dw.refs_dict(ds.names_b, ds.oids)
            import io

            times = repeat(lambda: dw.write_table(io.BytesIO(), ds.names_b, ds.oids, 1, refs),
                           reps, 1, cfg.keep_gc)
            off.dulwich, off.dulwich_times = median(times), times
            off.note = "dulwich writes no obj index"
    return rows


# -- 2. iterate ------------------------------------------------------------------


def bench_iterate(cfg: Config, ds: Dataset, path: str, dpath: str | None) -> list[Row]:
    reps = cfg.reps(ds.n, 5)

    def records() -> None:
        with Table.open(path) as t:
            drain(t.refs())

    def bulk() -> None:
        with Table.open(path) as t:
            drain(t.ref_tuples())

    with Table.open(path) as t:
        assert sum(1 for _ in t.refs()) == ds.n
        assert sum(1 for _ in t.ref_tuples()) == ds.n
    tr = repeat(records, reps, 1, cfg.keep_gc)
    tb = repeat(bulk, reps, 1, cfg.keep_gc)
    rec = Row("iterate", "iterate_records", "open + iterate all refs as records (Table.refs)",
              ds.n, "s", median(tr), tr, extra={"records": ds.n})
    blk = Row("iterate", "iterate_bulk", "open + iterate all refs, bulk (Table.ref_tuples)",
              ds.n, "s", median(tb), tb, note="tuples drained by deque(maxlen=0)",
              extra={"records": ds.n})
    extra_rows = []
    # Faster bulk APIs, when the library has them.
    for meth, rid, label in (
        ("ref_columns", "iterate_columns", "open + all refs as columns (Table.ref_columns)"),
        ("ref_columns_packed", "iterate_packed",
         "open + all refs as packed columns (Table.ref_columns_packed)"),
        ("ref_names", "iterate_names", "open + all ref names (Table.ref_names)"),
        ("count_refs", "iterate_count", "open + count refs (Table.count_refs)"),
    ):
        if not hasattr(Table, meth):
            continue

        def bulk2(meth: str = meth) -> None:
            with Table.open(path) as t:
                getattr(t, meth)()

        with Table.open(path) as t:
            got = getattr(t, meth)()
            got = getattr(got, "value_types", got)  # columns: one value type per ref
            assert (got if isinstance(got, int) else len(got)) == ds.n
        tt = repeat(bulk2, reps, 1, cfg.keep_gc)
        extra_rows.append(Row("iterate", rid, label, ds.n, "s", median(tt), tt,
                              extra={"records": ds.n}))
    extra_rows += threads_columns(cfg, ds, path)
    if dpath is not None:
        got = len(dw.read_all(dpath))
        times = repeat(lambda: dw.read_all(dpath), reps, 1, cfg.keep_gc)
        rec.dulwich, rec.dulwich_times = median(times), times
        rec.note = "dulwich: ReftableReader(f).all_refs()"
        if got != ds.n:
            rec.note += f" returned {got} of {ds.n} refs!"
    elif cfg.dulwich and dw.AVAILABLE and ds.n > 400_000:
        rec.note = "dulwich cannot write this table"
    return [rec, blk, *extra_rows]


def threads_columns(cfg: Config, ds: Dataset, path: str) -> list[Row]:
    """Two threads reading every ref of one shared table as columns: throughput
    against one thread. Packed columns are decoded without the GIL and make no object
    per ref; ``ref_columns`` makes a ``str`` per name, with the GIL."""
    rows = []
    with Table.open(path) as t:
        for rid, fn, what in (
                ("threads_packed", t.ref_columns_packed, "Table.ref_columns_packed"),
                ("threads_columns", t.ref_columns, "Table.ref_columns")):
            ratios, note = thread_scaling(fn, max(cfg.repeats, 7), cfg.keep_gc)
            rows.append(Row("iterate", rid,
                            f"2 threads of {what} on one table: throughput vs 1 thread",
                            ds.n, "x", median(ratios), ratios, note=note))
    return rows


# -- 3. point lookups in one table -------------------------------------------------


def bench_lookup_table(cfg: Config, ds: Dataset, path: str) -> list[Row]:
    k = 10_000
    rows = []
    with Table.open(path) as t:
        read = t.read_ref
        for kind, keys in (("hit", ds.sample_hits(k)), ("miss", ds.sample_misses(k))):
            good, bad, first = usable(keys, read)
            want_hit = kind == "hit"
            assert all((read(x) is not None) == want_hit for x in good[:200])

            def run(good: list[str] = good) -> None:
                for x in good:
                    read(x)

            times = repeat(run, cfg.reps(ds.n, 5), 1, cfg.keep_gc)
            per = per_op(times, len(good), "us/op")
            rows.append(Row("lookup_table", f"lookup_table_{kind}",
                            f"point lookup, 1 table ({kind}es)" if kind == "miss"
                            else f"point lookup, 1 table ({kind}s)",
                            ds.n, "us/op", median(per), per,
                            note=bug_note(bad, len(keys), first),
                            extra={"lookups": len(good), "errors": bad}))
    return rows


# -- 4. prefix scans ---------------------------------------------------------------


def bench_prefix(cfg: Config, ds: Dataset, path: str, dpath: str | None) -> list[Row]:
    rnd = random.Random(99)
    prefixes = [f"refs/heads/{rnd.getrandbits(12):03x}" for _ in range(200)]
    rows = []
    with Table.open(path) as t:
        good, bad, first = usable(prefixes, lambda p: drain(t.refs(p)))
        matched = sum(sum(1 for _ in t.refs(p)) for p in good)

        def narrow() -> None:
            for p in good:
                drain(t.refs(p))

        times = per_op(repeat(narrow, cfg.reps(ds.n, 5), 1, cfg.keep_gc), len(good), "us/op")
        row = Row("prefix", "prefix_narrow", "prefix scan refs/heads/<3 hex> (records)",
                  ds.n, "us/op", median(times), times, note=bug_note(bad, len(prefixes), first),
                  extra={"scans": len(good), "avg_matches": matched / max(1, len(good))})
        if dpath is not None:
            few = [p.encode() for p in good[:3]]
            dt = per_op(repeat(lambda: [dw.prefix_scan(dpath, p) for p in few], 2, 0,
                               cfg.keep_gc), len(few), "us/op")
            row.dulwich, row.dulwich_times = median(dt), dt
            row.note = (row.note + "; " if row.note else "") + "dulwich: full parse + filter"
        rows.append(row)

        ntags = sum(1 for _ in t.refs("refs/tags/"))
        assert ntags == ds.n // 10, ntags
        times = repeat(lambda: drain(t.refs("refs/tags/")), cfg.reps(ds.n, 5), 1, cfg.keep_gc)
        row = Row("prefix", "prefix_wide", "prefix scan refs/tags/ (10% of refs, records)",
                  ds.n, "s", median(times), times, extra={"matches": ntags})
        if dpath is not None:
            dt = repeat(lambda: dw.prefix_scan(dpath, b"refs/tags/"), 3, 0, cfg.keep_gc)
            row.dulwich, row.dulwich_times = median(dt), dt
        rows.append(row)
    return rows


# -- 5. reflog ----------------------------------------------------------------------


def log_records(ds: Dataset, refs: int, entries: int) -> list[LogRecord]:
    """``entries`` reflog entries for each of the first ``refs`` refs, in table order
    (ref name ascending, newest first)."""
    upd = LogValueType.UPDATE
    out = []
    zero = b"\0" * 20
    for i, name in enumerate(ds.names[:refs]):
        seed = ds.oids[i]
        ids = [zero] + [bytes([u & 0xFF, (u >> 8) & 0xFF]) + seed[2:]
                        for u in range(1, entries + 1)]
        for u in range(entries, 0, -1):
            out.append(LogRecord(name, u, upd, ids[u - 1], ids[u], "C O Mitter",
                                 "committer@example.com", 1_700_000_000 + 60 * u, 100,
                                 f"commit: change number {u}"))
    return out


def bench_reflog(cfg: Config, ds: Dataset, workdir: str, refs: int, entries: int) -> list[Row]:
    recs = ds.records()[:refs]
    logs = log_records(ds, refs, entries)
    n = refs * entries
    assert len(logs) == n
    reps = 3 if n >= 1_000_000 else cfg.repeats

    def write() -> bytes:
        return write_table_bytes(recs, logs, min_update_index=1, max_update_index=entries)

    tw = repeat(write, reps, 1, cfg.keep_gc)
    data = write()
    path = os.path.join(workdir, f"reflog-{n}.ref")
    with open(path, "wb") as f:
        f.write(data)
    logs.clear()

    def read_records() -> None:
        with Table.open(path) as t:
            drain(t.logs())

    def read_bulk() -> None:
        with Table.open(path) as t:
            drain(t.log_tuples())

    with Table.open(path) as t:
        assert sum(1 for _ in t.log_tuples()) == n
    tr = repeat(read_records, reps, 1, cfg.keep_gc)
    tb = repeat(read_bulk, reps, 1, cfg.keep_gc)
    rows = [
        Row("reflog", "reflog_write", f"reflog write ({entries} entries x {refs} refs)", n, "s",
            median(tw), tw, note="dulwich: no reflog support",
            extra={"bytes": len(data), "refs": refs, "entries_per_ref": entries, "records": n}),
        Row("reflog", "reflog_read_records", "reflog read, all entries as records (Table.logs)",
            n, "s", median(tr), tr, extra={"records": n}),
        Row("reflog", "reflog_read_bulk", "reflog read, bulk (Table.log_tuples)", n, "s",
            median(tb), tb, extra={"records": n}),
    ]
    keys = random.Random(refs).sample(ds.names[:refs], min(refs, 500))
    with Table.open(path) as t:
        good, bad, first = usable(keys, lambda k: drain(t.logs(k)))
        assert not good or sum(1 for _ in t.logs(good[0])) == entries

        def one_ref() -> None:
            for k in good:
                drain(t.logs(k))

        per = per_op(repeat(one_ref, reps, 1, cfg.keep_gc), len(good), "us/op")
    rows.append(Row("reflog", "reflog_one_ref", f"read one ref's reflog ({entries} entries)",
                    n, "us/op", median(per), per, note=bug_note(bad, len(keys), first)))
    return rows
