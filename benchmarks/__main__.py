"""``python -m benchmarks [--quick] [--json FILE] [--sizes 10000,100000,1000000]
[--plot FILE.png]``: run the workloads, print a table and the targets.

The same workloads then run on the pure-Python core (a subprocess with
``REFTABLE_PURE_PYTHON=1``, sizes up to ``--pure-max``), shown in the "pure" column."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, Optional

from . import bench_stack, bench_table, report
from . import peer_dulwich as dw
from .common import Config, Row, dataset, drop_dataset, fmt_n, make_tmpdir, stderr

GROUPS = ("write", "iterate", "lookup", "prefix", "stack", "reflog", "process", "additions",
          "autocompact", "compact")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="10k and 100k refs only, fewer repeats, smaller reflog/compaction runs")
    p.add_argument("--sizes", help="comma-separated ref counts (default 10000,100000,1000000)")
    p.add_argument("--json", metavar="FILE", help="write every figure and the machine facts")
    p.add_argument("--plot", metavar="FILE.png", help="draw time vs N (needs matplotlib)")
    p.add_argument("--repeats", type=int, help="repeats of each timed section (median)")
    p.add_argument("--only", help=f"comma-separated groups to run: {','.join(GROUPS)}")
    p.add_argument("--no-dulwich", action="store_true", help="skip the dulwich side")
    p.add_argument("--keep-gc", action="store_true",
                   help="leave the cyclic GC enabled in timed sections")
    p.add_argument("--tmpdir", help="where to put scratch stacks (default: system temp)")
    p.add_argument("--no-pure", action="store_true", help="skip the pure-Python core")
    p.add_argument("--pure-max", type=int, default=100_000,
                   help="largest N run on the pure-Python core (default 100000)")
    return p.parse_args(argv)


def pure_rows(a: argparse.Namespace, sizes: list[int], tmp: str) -> list[Row]:
    """The same workloads on the pure-Python core, in a subprocess (the core is chosen
    at import). Returns its rows (``ours`` is the pure figure)."""
    out = os.path.join(tmp, "pure.json")
    argv = [sys.executable, "-m", "benchmarks", "--no-dulwich", "--no-pure", "--json", out,
            "--sizes", ",".join(str(n) for n in sizes)]
    for flag, value in (("--repeats", a.repeats), ("--only", a.only), ("--tmpdir", a.tmpdir)):
        if value:
            argv += [flag, str(value)]
    if a.quick:
        argv.append("--quick")
    if a.keep_gc:
        argv.append("--keep-gc")
    env = {**os.environ, "REFTABLE_PURE_PYTHON": "1"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(argv, env=env, cwd=root, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        doc = json.load(f)
    return [Row(r["group"], r["id"], r["label"], r["n"], r["unit"], r["ours"],
                r["ours_times"]) for r in doc["results"]]


def main(argv: Optional[list[str]] = None) -> int:
    a = parse_args(argv)
    if a.sizes:
        sizes = sorted({int(x.replace("_", "")) for x in a.sizes.split(",") if x.strip()})
    else:
        sizes = [10_000, 100_000] if a.quick else [10_000, 100_000, 1_000_000]
    only = None
    if a.only:
        only = {x.strip() for x in a.only.split(",") if x.strip()}
        unknown = only - set(GROUPS)
        if unknown:
            raise SystemExit(f"unknown groups: {sorted(unknown)} (known: {', '.join(GROUPS)})")
    tmp = make_tmpdir(a.tmpdir)
    cfg = Config(sizes=sizes, quick=a.quick, repeats=a.repeats or (3 if a.quick else 5),
                 tmpdir=tmp, dulwich=not a.no_dulwich and dw.AVAILABLE, keep_gc=a.keep_gc,
                 only=only)
    reflog_refs, reflog_entries = (1_000, 100) if a.quick else (10_000, 100)
    additions = 100 if a.quick else 200
    autocompact = 300 if a.quick else 1_000
    compact_sizes = sizes[-2:]

    notes = [
        "Times are medians of repeats (time.perf_counter) after an untimed warm-up run.",
        "The cyclic GC is collected before and "
        + ("left enabled in" if a.keep_gc else "disabled during")
        + " each timed section.",
        "Data: N distinct names (90% refs/heads/<12 hex>, 10% refs/tags/v<12 hex>), "
        "distinct random 20-byte object ids without byte 0x1c (see peer_dulwich).",
        "Tables are sha1, 4 KiB blocks, restart interval 16 (Git's defaults).",
    ]
    if not dw.AVAILABLE:
        notes.append("dulwich is not installed: no peer figures.")
    elif a.no_dulwich:
        notes.append("dulwich side skipped (--no-dulwich).")
    else:
        notes.append(
            f"dulwich {dw.VERSION}: no single-table figures at 1M (it writes one block with a "
            "24-bit length, so ~450k refs per table at most); no reflog, no compaction. Its "
            "lookups and prefix scans parse whole tables (no seek); its additions neither "
            "fsync nor lock.")

    rows: list[Row] = []
    facts = report.machine_facts()  # at the start: the library state that was measured
    load_start = os.getloadavg()
    t_start = time.perf_counter()

    errors: list[str] = []
    current = [""]

    def step(msg: str) -> None:
        current[0] = msg
        stderr(f"[{time.perf_counter() - t_start:7.1f}s] {msg}")

    def guarded(fn: Callable[..., list[Row]], *args: Any, **kwargs: Any) -> list[Row]:
        """Run one workload group; a failure is reported and the run goes on."""
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - reported at the end and in the JSON
            tb = traceback.extract_tb(e.__traceback__)[-1]
            msg = (f"{current[0]}: {type(e).__name__}: {e} "
                   f"({os.path.basename(tb.filename)}:{tb.lineno})")
            errors.append(msg)
            stderr(f"  FAILED: {msg}")
            return []

    try:
        for n in sizes:
            step(f"N={fmt_n(n)}: data")
            ds = dataset(n)
            ds.records()
            if cfg.wants("write"):
                step(f"N={fmt_n(n)}: write")
                rows += guarded(bench_table.bench_write, cfg, ds)
            path = os.path.join(tmp, f"table-{n}.ref")
            bench_table.write_file(path, ds)
            dpath = None
            if cfg.dulwich and n <= 400_000:
                dpath = os.path.join(tmp, f"dw-table-{n}.ref")
                with open(dpath, "wb") as f:
                    dw.write_table(f, ds.names_b, ds.oids)
            if cfg.wants("iterate"):
                step(f"N={fmt_n(n)}: iterate")
                rows += guarded(bench_table.bench_iterate, cfg, ds, path, dpath)
            if cfg.wants("lookup"):
                step(f"N={fmt_n(n)}: lookups (1 table)")
                rows += guarded(bench_table.bench_lookup_table, cfg, ds, path)
            if cfg.wants("prefix"):
                step(f"N={fmt_n(n)}: prefix scans")
                rows += guarded(bench_table.bench_prefix, cfg, ds, path, dpath)
            if cfg.wants("stack"):
                step(f"N={fmt_n(n)}: 10-table stack")
                rows += guarded(bench_stack.bench_stack_reads, cfg, ds, tmp)
            if cfg.wants("compact") and n in compact_sizes:
                step(f"N={fmt_n(n)}: compact_all")
                rows += guarded(bench_stack.bench_compact_all, cfg, ds, tmp)
                if n == compact_sizes[-1]:
                    step(f"N={fmt_n(n)}: compact_all, obj index off")
                    rows += guarded(bench_stack.bench_compact_all, cfg, ds, tmp,
                                    index_objects=False)
            for p in (path, dpath):
                if p:
                    os.unlink(p)
            if n != 10_000:
                drop_dataset(n)
        if cfg.wants("reflog"):
            step(f"reflog {reflog_entries} x {fmt_n(reflog_refs)}")
            rows += guarded(bench_table.bench_reflog, cfg, dataset(10_000), tmp, reflog_refs,
                            reflog_entries)
        if cfg.wants("process"):
            step("whole process: import, open, resolve HEAD")
            rows += guarded(bench_stack.bench_process, cfg, tmp)
        if cfg.wants("additions"):
            step(f"{additions} single-ref additions")
            rows += guarded(bench_stack.bench_additions, cfg, tmp, additions)
        if cfg.wants("autocompact"):
            step(f"{autocompact} additions with auto-compaction")
            rows += guarded(bench_stack.bench_autocompact, cfg, tmp, autocompact)
        pure_sizes = [n for n in sizes if n <= a.pure_max]
        if not a.no_pure and pure_sizes:
            step(f"pure-Python core: {', '.join(fmt_n(n) for n in pure_sizes)}")
            try:
                measured = {(r.id, r.n): r for r in pure_rows(a, pure_sizes, tmp)}
            except (OSError, subprocess.CalledProcessError) as e:
                errors.append(f"pure-Python core: {e}")
                measured = {}
            for r in rows:
                p = measured.get((r.id, r.n))
                if p is not None:
                    r.pure, r.pure_times = p.ours, p.ours_times
            notes.append(f"pure: the same workloads on the pure-Python core "
                         f"(REFTABLE_PURE_PYTHON=1), N <= {fmt_n(a.pure_max)}.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    step("done")

    order = {g: i for i, g in enumerate(
        ("write", "iterate", "merged", "lookup_table", "lookup_stack", "lookup_cold", "prefix",
         "reflog", "process", "additions", "autocompact", "compact"))}
    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        first.setdefault(r.id, i)
    rows.sort(key=lambda r: (order.get(r.group, 99), first[r.id], r.n))
    end_facts = report.machine_facts()
    if (end_facts.get("git_head"), end_facts.get("git_dirty")) != \
            (facts.get("git_head"), facts.get("git_dirty")):
        notes.append(
            f"The library's work tree changed during the run (git HEAD {facts.get('git_head')} "
            f"{facts.get('git_dirty')} at start, {end_facts.get('git_head')} "
            f"{end_facts.get('git_dirty')} at the end): subprocess figures (compact_all) "
            "may come from the newer Python files.")
    print(f"pyreftable {facts['reftable_version']} vs dulwich {facts['dulwich_version']} - "
          f"{facts['cpu_model']}, {facts['cores']} cores, Python {facts['python']}, "
          f"{facts['date']}")
    load_end = os.getloadavg()
    print(f"sizes: {', '.join(fmt_n(n) for n in sizes)}{' (--quick)' if a.quick else ''}; "
          f"run took {elapsed:.0f} s; load average {load_start[0]:.2f} at start, "
          f"{load_end[0]:.2f} at end (other processes on the machine skew timings)")
    print()
    print(report.table_text(rows))
    print()
    bugs = [r for r in rows if r.extra.get("errors")]
    if bugs or any("raised" in r.note for r in rows):
        print("WARNING: some probes raised errors inside reftable and were left out of the "
              "timings (see the notes column).")
        print()
    if errors:
        print("ERRORS (these workloads produced no figures):")
        for e in errors:
            print(f"  {e}")
        print()
    targets = report.evaluate_targets(rows)
    print("Targets:")
    print(report.targets_text(targets))
    print()
    git_c = report.git_c_comparison(rows)
    print("Against Git's C library (its figures from issue #13, 1M refs; ours as measured):")
    print(report.targets_text(git_c))
    print()
    targets = [*targets, *git_c]
    for note in notes:
        print(f"* {note}")
    if a.plot:
        why = report.plot(a.plot, rows, f"pyreftable vs dulwich ({facts['cpu_model']}, "
                                        f"Python {facts['python']})")
        print(f"plot: {a.plot}" if why is None else f"plotting skipped: {why}")
    if a.json:
        config = {"sizes": sizes, "quick": a.quick, "repeats": cfg.repeats,
                  "keep_gc": a.keep_gc, "reflog": [reflog_refs, reflog_entries],
                  "additions": additions, "autocompact_additions": autocompact,
                  "compact_sizes": compact_sizes, "argv": sys.argv[1:],
                  "pure_max": None if a.no_pure else a.pure_max,
                  "elapsed_s": elapsed, "loadavg_start": list(load_start),
                  "loadavg_end": list(load_end)}
        report.write_json(a.json, rows, targets, config,
                          [*notes, *(f"ERROR {e}" for e in errors)], facts)
        print(f"json: {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
