"""Stack workloads: lookups and merged iteration over 10 tables, single-ref additions
against the raw I/O floor, auto-compaction, and compact_all (time and peak RSS, in a
subprocess)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from typing import Any, Optional

from reftable import RefRecord, RefValueType, write_table_bytes
from reftable.stack import Stack, StackOptions

from . import peer_dulwich as dw
from .bench_table import bug_note, drain, usable
from .common import (
    Config,
    Dataset,
    Row,
    fresh_dir,
    median,
    per_op,
    repeat,
    thread_scaling,
    timed,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_stack(path: str, ds: Dataset, parts: int, index_objects: bool = True) -> Stack:
    """A stack in ``path`` whose ``parts`` tables (update indices 1..parts) hold a
    random partition of the data set (every ref in exactly one table)."""
    st = Stack.open(path, StackOptions(auto_compact=False, fsync=False,
                                       index_objects=index_objects))
    v1 = RefValueType.VAL1
    for k, idx in enumerate(ds.partition(parts), 1):
        recs = [RefRecord(ds.names[i], k, v1, ds.oids[i]) for i in idx]
        st.add(lambda w, recs=recs: w.add_refs(recs))
    return st


def dulwich_stack(path: str, ds: Dataset, parts: int) -> Optional[str]:
    if not dw.AVAILABLE:
        return None
    split = [([ds.names_b[i] for i in idx], [ds.oids[i] for i in idx])
             for idx in ds.partition(parts)]
    dw.make_stack(path, split)
    return path


# -- 3b. lookups in a 10-table stack, merged iteration, cold lookups ----------------


def bench_stack_reads(cfg: Config, ds: Dataset, workdir: str) -> list[Row]:
    rows: list[Row] = []
    s10 = fresh_dir(workdir, f"stack10-{ds.n}")
    s1 = fresh_dir(workdir, f"stack1-{ds.n}")
    build_stack(s10, ds, 10).close()
    build_stack(s1, ds, 1).close()
    # dulwich writes at most ~450k refs per table (see peer_dulwich)
    use_dw = cfg.dulwich and dw.AVAILABLE
    d10 = (dulwich_stack(fresh_dir(workdir, f"dw-stack10-{ds.n}"), ds, 10)
           if use_dw and ds.n // 10 <= 400_000 else None)
    d1 = (dulwich_stack(fresh_dir(workdir, f"dw-stack1-{ds.n}"), ds, 1)
          if use_dw and ds.n <= 400_000 else None)
    dw_note = "dulwich cannot write a table this large" if use_dw and d1 is None else ""

    with Stack.open(s10) as st:
        assert len(st.tables) == 10
        read = st.read_ref
        k = 5000
        for kind, keys in (("hit", ds.sample_hits(k)), ("miss", ds.sample_misses(k))):
            good, bad, first = usable(keys, read)
            assert all((read(x) is not None) == (kind == "hit") for x in good[:200])

            def run(good: list[str] = good) -> None:
                for x in good:
                    read(x)

            per = per_op(repeat(run, cfg.reps(ds.n, 5), 1, cfg.keep_gc), len(good), "us/op")
            plural = "misses" if kind == "miss" else "hits"
            rows.append(Row("lookup_stack", f"lookup_stack_{kind}",
                            f"point lookup, 10-table stack ({plural})",
                            ds.n, "us/op", median(per), per,
                            note=bug_note(bad, len(keys), first),
                            extra={"lookups": len(good), "errors": bad}))

        assert sum(1 for _ in st.refs()) == ds.n
        times = repeat(lambda: drain(st.refs()), cfg.reps(ds.n, 3), 1, cfg.keep_gc)
        row = Row("merged", "iterate_stack", "iterate all refs of a 10-table stack (Stack.refs)",
                  ds.n, "s", median(times), times, extra={"records": ds.n})
        if d10 is not None:
            dt = []
            for _ in range(3 if ds.n < 1_000_000 else 1):
                t, got = timed(lambda: dw.merged_refs(d10), cfg.keep_gc)
                assert got == ds.n, got
                dt.append(t)
            row.dulwich, row.dulwich_times = median(dt), dt
            row.note = "dulwich: get_packed_refs()"
        rows.append(row)
        times = repeat(lambda: drain(st.merged.ref_tuples()), cfg.reps(ds.n, 3), 1,
                       cfg.keep_gc)
        rows.append(Row("merged", "iterate_stack_bulk",
                        "iterate all refs of a 10-table stack, bulk (MergedTable.ref_tuples)",
                        ds.n, "s", median(times), times, extra={"records": ds.n}))
        times = repeat(lambda: st.merged.ref_columns(), cfg.reps(ds.n, 3), 1, cfg.keep_gc)
        rows.append(Row("merged", "iterate_stack_columns",
                        "all refs of a 10-table stack as columns (MergedTable.ref_columns)",
                        ds.n, "s", median(times), times, extra={"records": ds.n}))
        times = repeat(lambda: st.merged.ref_columns_packed(), cfg.reps(ds.n, 3), 1,
                       cfg.keep_gc)
        rows.append(Row("merged", "iterate_stack_packed",
                        "all refs of a 10-table stack as packed columns "
                        "(MergedTable.ref_columns_packed)",
                        ds.n, "s", median(times), times, extra={"records": ds.n}))
        rows += batch_lookups(cfg, ds, st)

    for rid, label, ours, theirs in (
        ("lookup_cold_1", "open 1-table stack + 1 lookup (cold)", s1, d1),
        ("lookup_cold_10", "open 10-table stack + 1 lookup (cold)", s10, d10),
    ):
        rows += cold_lookup(cfg, ds, rid, label, ours, theirs)
        if dw_note and theirs is None and not rows[-1].note:
            rows[-1].note = dw_note
    for d in (s10, s1, d10, d1):
        if d:
            shutil.rmtree(d, ignore_errors=True)
    return rows


def batch_lookups(cfg: Config, ds: Dataset, st: Stack) -> list[Row]:
    """Stack.read_refs: many lookups in one call, searched without the GIL; and two
    threads doing the same work on the one shared stack (throughput against one)."""
    keys = ds.sample_hits(10_000) + ds.sample_misses(10_000)
    got = st.read_refs(keys)
    assert got == [st.read_ref(k) for k in keys]
    per = per_op(repeat(lambda: st.read_refs(keys), cfg.reps(ds.n, 5), 1, cfg.keep_gc),
                 len(keys), "us/op")
    rows = [Row("lookup_stack", "lookup_stack_batch",
                "batch lookups, 10-table stack (Stack.read_refs, half misses)", ds.n, "us/op",
                median(per), per)]

    rounds = max(cfg.repeats, 15)  # (a round is a few 10 ms: the host's noise needs many)
    ratios, note = thread_scaling(lambda: st.read_refs(keys), rounds, cfg.keep_gc)
    rows.append(Row("lookup_stack", "threads_lookup",
                    "2 threads of batch lookups on one stack: throughput vs 1 thread", ds.n,
                    "x", median(ratios), ratios, note=note))
    # The same work in two processes (no GIL shared): what the machine itself allows.
    ratios, note = thread_scaling(lambda: st.read_refs(keys), rounds, cfg.keep_gc,
                                  processes=True)
    rows.append(Row("lookup_stack", "processes_lookup",
                    "2 processes of the same batch lookups: throughput vs 1 (the "
                    "machine's ceiling)", ds.n, "x", median(ratios), ratios, note=note))
    return rows


def cold_lookup(cfg: Config, ds: Dataset, rid: str, label: str, stack_dir: str,
                dgit: Optional[str]) -> list[Row]:
    """Open a stack, look one ref up, close: what a short-lived process pays. Paired
    with dulwich's ``ReftableRefsContainer(...).read_loose_ref`` (a full parse of
    every table)."""
    keys = ds.sample_hits(20) + ds.sample_misses(20)

    def probe(x: str) -> None:
        with Stack.open(stack_dir) as st:
            st.read_ref(x)

    good, bad, first = usable(keys, probe)

    def run() -> None:
        for x in good:
            probe(x)

    times = per_op(repeat(run, cfg.repeats, 1, cfg.keep_gc), len(good), "ms/op")
    row = Row("lookup_cold", rid, label, ds.n, "ms/op", median(times), times,
              note=bug_note(bad, len(keys), first))
    if dgit is not None:
        dt = []
        for _ in range(3 if ds.n < 100_000 else 2 if ds.n < 1_000_000 else 1):
            for name, hit in ((keys[0], True), (keys[20], False)):
                t, got = timed(lambda name=name: dw.lookup(dgit, name.encode()), cfg.keep_gc)
                assert (got is not None) == hit
                dt.append(t * 1e3)
        row.dulwich, row.dulwich_times = median(dt), dt
    return [row]


# -- 5b. a whole short-lived process ---------------------------------------------------


def bench_process(cfg: Config, workdir: str) -> list[Row]:
    """``python -c "import reftable; open a stack; resolve HEAD"`` as a whole process
    (start-up and imports included), against ``python -c pass``, in pairs. Bytecode is
    compiled first, as an installed package's is."""
    import compileall

    compileall.compile_dir(os.path.join(REPO_ROOT, "reftable"), quiet=1)
    d = fresh_dir(workdir, "process-stack")
    with Stack.open(d) as st:
        with st.transaction() as tx:
            tx.update("refs/heads/main", bytes(range(20)))
            tx.symref("HEAD", "refs/heads/main")
    code = (f"import reftable; s = reftable.Stack.open({d!r}); "
            "assert s.read_ref('HEAD').target == 'refs/heads/main'; s.close()")
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def run(args: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, check=True)
        return time.perf_counter() - t0

    run(["-c", code])
    ours, base, ratios = [], [], []
    for _ in range(20 if cfg.repeats >= 5 else 10):
        a = run(["-c", code])
        b = run(["-c", "pass"])
        ours.append(a * 1e3)
        base.append(b * 1e3)
        ratios.append(a / b)
    shutil.rmtree(d, ignore_errors=True)
    return [
        Row("process", "process_head_ms",
            "whole process: import reftable, open 1-table stack, resolve HEAD", 1, "ms/op",
            median(ours), ours, note=f"python -c pass: {median(base):.1f} ms"),
        Row("process", "process_head", "the same / python -c pass (paired runs)", 1, "x",
            median(ratios), ratios),
    ]


# -- 6. single-ref additions vs. the raw I/O floor ------------------------------------


def _addition_data(count: int) -> list[tuple[str, bytes, bytes]]:
    """(name, oid, table bytes) of each single-ref addition, the table being exactly
    what the transaction writes (update index i+1, one VAL1 record, no log)."""
    rnd = random.Random(count)
    out = []
    for i in range(count):
        name = f"refs/heads/topic/{i:06d}"
        oid = rnd.randbytes(20)
        data = write_table_bytes([RefRecord(name, i + 1, RefValueType.VAL1, oid)],
                                 min_update_index=i + 1, max_update_index=i + 1)
        out.append((name, oid, data))
    return out


FAILURES: dict[str, list[str]] = {}


def run_transactions(path: str, adds: list[tuple[str, bytes, bytes]], fsync: bool,
                     auto_compact: bool = False, key: str = "",
                     fsync_directory: bool = True) -> Stack:
    """One transaction per addition. An addition that raises is a library bug: it is
    recorded in ``FAILURES[key]`` (and reported) and the run goes on."""
    st = Stack.open(path, StackOptions(auto_compact=auto_compact, fsync=fsync,
                                       fsync_directory=fsync_directory))
    for name, oid, _ in adds:
        try:
            with st.transaction() as tx:
                tx.update(name, oid)
        except Exception as e:  # noqa: BLE001 - reported
            FAILURES.setdefault(key, []).append(f"{type(e).__name__}: {e}")
            st.reload()
    return st


def failure_note(key: str) -> str:
    f = FAILURES.get(key)
    if not f:
        return ""
    return f"{len(f)} additions raised ({f[0]})"


def run_stack_add(path: str, adds: list[tuple[str, bytes, bytes]], fsync: bool) -> Stack:
    st = Stack.open(path, StackOptions(auto_compact=False, fsync=fsync))
    v1 = RefValueType.VAL1
    for name, oid, _ in adds:
        ui = st.next_update_index()
        rec = RefRecord(name, ui, v1, oid)
        st.add(lambda w, rec=rec: w.add_ref(rec))
    return st


def run_floor(path: str, adds: list[tuple[str, bytes, bytes]], fsync: bool,
              dirsync: bool = False) -> None:
    """The I/O an addition cannot avoid, done with bare os calls: write the table to a
    temp file, fsync, rename to its final name; write the new list to
    tables.list.lock, fsync, rename over tables.list (+ fsync of the directory)."""
    rnd = random.Random(1)
    pid = os.getpid()
    lst = os.path.join(path, "tables.list")
    lock = lst + ".lock"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    open(lst, "wb").close()
    names: list[str] = []
    for i, (_, _, data) in enumerate(adds):
        tmp = os.path.join(path, f".tmp-{pid}-{rnd.getrandbits(32):08x}.ref")
        fd = os.open(tmp, flags, 0o666)
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
        os.close(fd)
        name = f"0x{i + 1:012x}-0x{i + 1:012x}-{rnd.getrandbits(32):08x}.ref"
        os.rename(tmp, os.path.join(path, name))
        names.append(name)
        fd = os.open(lock, flags, 0o666)
        os.write(fd, "".join(n + "\n" for n in names).encode("ascii"))
        if fsync:
            os.fsync(fd)
        os.close(fd)
        os.rename(lock, lst)
        if dirsync:
            dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(dfd)
            os.close(dfd)


def bench_additions(cfg: Config, workdir: str, count: int) -> list[Row]:
    adds = _addition_data(count)
    reps = cfg.repeats + 2  # fsync times drift with the disk's load: more rounds
    res: dict[str, list[float]] = {k: [] for k in (
        "tx", "add", "floor", "floor_dir", "tx_nofsync", "floor_nofsync", "tx_nodir")}
    cpu: dict[str, list[float]] = {k: [] for k in res}
    runs = {
        "tx": lambda d: run_transactions(d, adds, True, key="tx").close(),
        "add": lambda d: run_stack_add(d, adds, True).close(),
        "floor": lambda d: run_floor(d, adds, True),
        "floor_dir": lambda d: run_floor(d, adds, True, dirsync=True),
        "tx_nofsync": lambda d: run_transactions(d, adds, False, key="tx").close(),
        "floor_nofsync": lambda d: run_floor(d, adds, False),
        "tx_nodir": lambda d: run_transactions(d, adds, True, key="tx",
                                               fsync_directory=False).close(),
    }
    # Interleaved so that drift in the disk's speed hits every variant alike.
    for r in range(reps + 1):
        for key, fn in runs.items():
            d = fresh_dir(workdir, f"adds-{key}")
            c0 = time.process_time()
            dt, _ = timed(lambda fn=fn, d=d: fn(d), cfg.keep_gc)
            c1 = time.process_time()
            if r:  # the first round is a warm-up
                res[key].append(dt / count * 1e3)
                cpu[key].append((c1 - c0) / count * 1e3)
            shutil.rmtree(d, ignore_errors=True)
    st = run_transactions(fresh_dir(workdir, "adds-check"), adds[:5], True, key="check")
    check_ok = len(st.tables) == 5 and all(st.read_ref(a[0]) is not None for a in adds[:5])
    st.close()

    m = {k: median(v) for k, v in res.items()}
    mc = {k: median(v) for k, v in cpu.items()}

    def paired(a: str, b: str) -> float:
        """Median over rounds of the per-round ratio (drift cancels out)."""
        return median(x / y for x, y in zip(res[a], res[b], strict=True))

    rows = [
        Row("additions", "add_tx", f"single-ref addition, fsync (Stack.transaction), {count} adds",
            count, "ms/add", m["tx"], res["tx"],
            extra={"floor": m["floor"], "floor_dirsync": m["floor_dir"],
                   "ratio_to_floor": paired("tx", "floor"),
                   "ratio_to_floor_dirsync": paired("tx", "floor_dir")}),
        Row("additions", "add_stack", f"single-ref addition, fsync (Stack.add), {count} adds",
            count, "ms/add", m["add"], res["add"],
            extra={"ratio_to_floor": paired("add", "floor"),
                   "ratio_to_floor_dirsync": paired("add", "floor_dir")}),
        Row("additions", "add_floor", "raw floor: tmp+fsync+rename, list.lock+fsync+rename",
            count, "ms/add", m["floor"], res["floor"]),
        Row("additions", "add_floor_dirsync", "raw floor + fsync of the directory",
            count, "ms/add", m["floor_dir"], res["floor_dir"]),
        Row("additions", "add_tx_nofsync", "single-ref addition, fsync off (Stack.transaction)",
            count, "ms/add", m["tx_nofsync"], res["tx_nofsync"],
            extra={"ratio_to_floor": paired("tx_nofsync", "floor_nofsync")}),
        Row("additions", "add_floor_nofsync", "raw floor, fsync off", count, "ms/add",
            m["floor_nofsync"], res["floor_nofsync"]),
        Row("additions", "add_tx_nodir",
            "single-ref addition, fsync, no directory fsync (Git's I/O pattern)",
            count, "ms/add", m["tx_nodir"], res["tx_nodir"],
            extra={"ratio_to_floor": paired("tx_nodir", "floor")}),
    ]
    for r, key in zip(rows, runs, strict=True):
        r.extra["cpu_ms_per_add"] = mc[key]  # CPU time of this process (user + system)
    for r in rows[:2] + rows[4:5] + rows[6:7]:
        r.note = (r.note + "; " if r.note else "") + \
            f"{r.extra['ratio_to_floor']:.2f}x floor (median of per-round ratios)"
        if "ratio_to_floor_dirsync" in r.extra:
            r.note += f", {r.extra['ratio_to_floor_dirsync']:.2f}x floor+dirsync"
    if failure_note("tx"):
        rows[0].note += "; " + failure_note("tx")
    if not check_ok:
        rows[0].note += "; CHECK FAILED: 5 transactions did not leave 5 tables holding the 5 refs"
    if cfg.dulwich and dw.AVAILABLE:
        dts = []
        for _ in range(2):
            g = fresh_dir(workdir, "dw-adds")
            cont = dw.ReftableRefsContainer(g)

            def drun(cont: Any = cont) -> None:
                for name, oid, _ in adds:
                    dw.add_ref(cont, name.encode(), oid.hex().encode())

            dt, _ = timed(drun, cfg.keep_gc)
            dts.append(dt / count * 1e3)
            shutil.rmtree(g, ignore_errors=True)
        rows[0].dulwich, rows[0].dulwich_times = median(dts), dts
        rows[0].note += "; dulwich: add_if_new, no fsync, no lock"
    return rows


# -- 7. auto-compaction ----------------------------------------------------------------


def bench_autocompact(cfg: Config, workdir: str, count: int) -> list[Row]:
    adds = _addition_data(count)
    times, tables, attempts, live = [], [], [], []
    for _ in range(2):
        d = fresh_dir(workdir, "autocompact")
        dt, st = timed(lambda d=d: run_transactions(d, adds, True, auto_compact=True,
                                                    key="autocompact"), cfg.keep_gc)
        times.append(dt)
        tables.append(len(st.tables))
        attempts.append(st.stats.attempts)
        live.append(sum(1 for _ in st.refs()))
        st.close()
        shutil.rmtree(d, ignore_errors=True)
    return [
        Row("autocompact", "autocompact_total",
            f"{count} single-ref additions, auto-compaction on, fsync (total)", count, "s",
            median(times), times,
            note=f"final tables: {tables[-1]}, compactions: {attempts[-1]}; "
                 f"dulwich: no compaction"
                 + (f"; {failure_note('autocompact')}; refs present {live[-1]}/{count}"
                    if failure_note("autocompact") else ""),
            extra={"final_tables": tables, "compactions": attempts, "refs_present": live,
                   "ms_per_addition": median(times) / count * 1e3}),
    ]


# -- 8. compact_all: time and peak RSS in a fresh process ----------------------------------


def run_child(stack_dir: str, sample: bool = False, index_objects: bool = True) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "benchmarks._compact_child", stack_dir]
    if sample:
        cmd.append("--sample")
    if not index_objects:
        cmd.append("--no-index")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"compaction child failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def bench_compact_all(cfg: Config, ds: Dataset, workdir: str, parts: int = 8,
                      index_objects: bool = True) -> list[Row]:
    src = fresh_dir(workdir, f"compact-src-{ds.n}")
    build_stack(src, ds, parts, index_objects=index_objects).close()
    times, growth, results = [], [], []
    reps = 3 if ds.n >= 1_000_000 else cfg.repeats
    for r in range(reps + 1):
        d = os.path.join(workdir, "compact-run")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(src, d)
        res = run_child(d, sample=(r == 0), index_objects=index_objects)
        assert res["tables_after"] == 1 and res["refs_after"] == ds.n, res
        if r == 0:
            sampled = res  # sampling run: RSS breakdown, not timed
        else:
            results.append(res)
            times.append(res["seconds"])
            growth.append(res["vmhwm_growth_mib"])
        shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(src, ignore_errors=True)
    sfx = "" if index_objects else "_noobj"
    lbl = "" if index_objects else ", obj index off"
    extra = {
        "parts": parts,
        "input_bytes": results[-1]["input_bytes"],
        "output_bytes": results[-1]["output_bytes"],
        "peak_rss_anon_growth_mib": sampled.get("peak_anon_growth_mib"),
        "peak_rss_file_growth_mib": sampled.get("peak_file_growth_mib"),
        "maxrss_growth_mib": [x["maxrss_growth_mib"] for x in results],
    }
    return [
        Row("compact", f"compact_all_time{sfx}",
            f"compact_all, {parts} tables{lbl} (time)", ds.n, "s",
            median(times), times, note="dulwich: no compaction", extra=extra),
        Row("compact", f"compact_all_rss{sfx}",
            f"compact_all, {parts} tables{lbl} (peak RSS growth, VmHWM)", ds.n, "MiB",
            median(growth), growth,
            note=(f"sampled peak: anon +{extra['peak_rss_anon_growth_mib']:.0f} MiB, "
                  f"file-backed (mmap) +{extra['peak_rss_file_growth_mib']:.0f} MiB"),
            extra=extra),
    ]
