"""Results: the stdout table, the targets (PASS/MISS), machine facts, JSON and plot."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from .common import Row, fmt_n

# -- formatting -------------------------------------------------------------------


def fmt_value(v: Optional[float], unit: str) -> str:
    if v is None:
        return "-"
    if unit == "s":
        if v < 1e-3:
            return f"{v * 1e6:.1f} µs"
        if v < 1:
            return f"{v * 1e3:.1f} ms"
        return f"{v:.2f} s"
    if unit == "us/op":
        return f"{v:.2f} µs/op" if v < 1000 else f"{v / 1e3:.2f} ms/op"
    if unit in ("ms/op", "ms/add"):
        if v >= 1000:
            return f"{v / 1e3:.2f} s/op"
        return f"{v:.3f} {unit}" if v < 10 else f"{v:.1f} {unit}"
    if unit == "MiB":
        return f"{v:.1f} MiB"
    if unit == "x":
        return f"{v:.2f}x"
    return f"{v:g} {unit}"


def fmt_ratio(r: Optional[float]) -> str:
    if r is None:
        return ""
    if r >= 100:
        return f"{r:,.0f}x"
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def fmt_per(v: Optional[float]) -> str:
    return "" if v is None else f"{v:,.0f} ns"


def table_text(rows: Sequence[Row]) -> str:
    """The results table; "pure" is the pure-Python core (when it was measured)."""
    pure = any(r.pure is not None for r in rows)
    head: tuple[str, ...] = ("workload", "N", "ours", "per record", "dulwich", "dulwich/ours")
    if pure:
        head += ("pure", "dulwich/pure")
    head += ("note",)
    body = []
    for r in rows:
        cells: tuple[str, ...] = (r.label, fmt_n(r.n), fmt_value(r.ours, r.unit),
                                  fmt_per(r.per_record_ns), fmt_value(r.dulwich, r.unit),
                                  fmt_ratio(r.ratio))
        if pure:
            cells += (fmt_value(r.pure, r.unit), fmt_ratio(r.pure_ratio))
        body.append((*cells, r.note))
    ncols = len(head) - 1
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(ncols)]
    lines = []

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            (c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])) if i < ncols else c
            for i, c in enumerate(cells)).rstrip()

    lines.append(line(head))
    lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    group = None
    for r, cells in zip(rows, body, strict=True):
        if group is not None and r.group != group:
            lines.append("")
        group = r.group
        lines.append(line(cells))
    return "\n".join(lines)


# -- targets -------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    status: str  # PASS, MISS, n/a
    measured: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "measured": self.measured,
                "detail": self.detail}


def _find(rows: Sequence[Row], rid: str, n: Optional[int] = None) -> Optional[Row]:
    cands = [r for r in rows if r.id == rid and (n is None or r.n == n)]
    if not cands:
        return None
    return max(cands, key=lambda r: r.n)


def evaluate_targets(rows: Sequence[Row]) -> list[Target]:
    out: list[Target] = []
    m = 1_000_000

    def limit(name: str, rid: str, lim: float, n: Optional[int] = m,
              get: Callable[[Row], Optional[float]] = lambda r: r.ours,
              show: Callable[[float], str] = lambda v: f"{v:.3g}") -> None:
        r = _find(rows, rid, n)
        note = ""
        if r is None and n is not None and rid.startswith(("lookup_table", "lookup_stack")):
            r = _find(rows, rid)  # per-op figure: the largest size run stands in
            if r is not None:
                note = f"at N={fmt_n(r.n)} (target is for 1M)"
        v = get(r) if r is not None else None
        if r is None or v is None:
            out.append(Target(name, "n/a", "not measured", "needs N=1M (full run)"))
            return
        out.append(Target(name, "PASS" if v <= lim else "MISS", show(v), note))

    s = lambda v: f"{v:.3f} s"  # noqa: E731
    us = lambda v: f"{v:.2f} µs"  # noqa: E731
    limit("write 1M refs, obj index on <= 0.6 s", "write_obj_on", 0.6, show=s)
    limit("write 1M refs, obj index off <= 0.3 s", "write_obj_off", 0.3, show=s)
    limit("iterate 1M refs as records <= 0.4 s", "iterate_records", 0.4, show=s)
    limit("iterate 1M refs bulk <= 0.1 s", "iterate_bulk", 0.1, show=s)
    limit("point lookup, 1 table, hits <= 4 µs", "lookup_table_hit", 4, show=us)
    limit("point lookup, 1 table, misses <= 4 µs", "lookup_table_miss", 4, show=us)
    limit("point lookup, 10-table stack, hits <= 6 µs", "lookup_stack_hit", 6, show=us)
    limit("point lookup, 10-table stack, misses <= 6 µs", "lookup_stack_miss", 6, show=us)
    limit("compact_all 1M refs over 8 tables <= 1.0 s", "compact_all_time", 1.0, show=s)
    limit("compact_all 1M refs peak RSS growth <= 64 MiB", "compact_all_rss", 64,
          show=lambda v: f"{v:.1f} MiB")
    r = _find(rows, "compact_all_rss", m)
    if r is not None and out[-1].status != "n/a":
        out[-1].detail = (f"VmHWM; sampled: anon +{r.extra['peak_rss_anon_growth_mib']:.0f} MiB,"
                          f" mmap'd table pages +{r.extra['peak_rss_file_growth_mib']:.0f} MiB")
    rss = sorted((r for r in rows if r.id == "compact_all_rss"), key=lambda r: r.n)
    if len(rss) >= 2:
        a, b = rss[0], rss[-1]
        flat = b.ours is not None and a.ours is not None and b.ours <= 2 * a.ours + 4
        out.append(Target(
            "compact_all peak RSS growth flat in N", "PASS" if flat else "MISS",
            ", ".join(f"{fmt_n(r.n)}: {r.ours:.1f} MiB" for r in rss),
            f"flat = at most 2x + 4 MiB over a {b.n // max(1, a.n)}x larger N"))
    # The floor is the same I/O pattern done raw: with the directory fsync for the
    # default (durable) stack, without it for Git's pattern (fsync_directory=False).
    limit("single-ref addition <= 1.15x raw floor (same I/O, incl. dir fsync)", "add_tx",
          1.15, n=None, get=lambda r: r.extra.get("ratio_to_floor_dirsync"),
          show=lambda v: f"{v:.2f}x")
    limit("single-ref addition <= 1.15x raw floor (Git's I/O, no dir fsync)", "add_tx_nodir",
          1.15, n=None, get=lambda r: r.extra.get("ratio_to_floor"),
          show=lambda v: f"{v:.2f}x")
    for n in (10_000, 100_000):
        paired = [r for r in rows if r.n == n and r.ratio is not None
                  and r.group != "additions"]
        if not paired:
            out.append(Target(f">= 50x dulwich at {fmt_n(n)}", "n/a", "not measured"))
            continue
        worst = min(paired, key=lambda r: r.ratio or 0)
        misses = [f"{r.label} {fmt_ratio(r.ratio)}" for r in paired if (r.ratio or 0) < 50]
        out.append(Target(
            f">= 50x dulwich at {fmt_n(n)} (every paired workload)",
            "PASS" if not misses else "MISS",
            f"min {fmt_ratio(worst.ratio)} ({worst.label})",
            ("below 50x: " + "; ".join(misses)) if misses else
            f"{len(paired)} workloads, all >= 50x"))
    add = _find(rows, "add_tx")
    if add is not None and add.ratio is not None:
        out.append(Target(">= 50x dulwich, single-ref additions",
                          "PASS" if add.ratio >= 50 else "MISS", fmt_ratio(add.ratio),
                          "dulwich neither fsyncs nor locks"))
    return out


# Git's own C library (reftable/ of git.git) on the same data shape: 1M refs, Git's
# default options, medians of 10 runs, measured side by side on this kind of machine
# (issue #13). Per-record figures compare at any size; the others need the full run.
# (workload id, what, Git's figure, unit of the comparison, target ratio to Git)
GIT_C = (
    ("iterate_records", "open + iterate refs as records", 75.0, "ns/ref", 1.3),
    ("iterate_bulk", "the same as tuples", 75.0, "ns/ref", 1.0),
    ("iterate_columns", "the same as columns", 75.0, "ns/ref", 1.0),
    ("iterate_packed", "the same as packed columns", 75.0, "ns/ref", 1.0),
    ("iterate_names", "the same, names only", 75.0, "ns/ref", 1.0),
    ("reflog_read_records", "read the whole reflog as records", 350.0, "ns/entry", 1.1),
    ("reflog_one_ref", "one ref's reflog (100 entries)", 50.0, "us", 1.1),
    ("lookup_cold_1", "cold: open a 1-table stack, one lookup", 60.0, "us", 1.1),
    ("iterate_stack", "iterate a 10-table stack as records", 180.0, "ns/ref", 1.2),
    ("write_obj_off", "write one table, obj index off", 420.0, "ns/ref", 1.0),
    ("add_tx_nodir", "single-ref addition, Git's syscalls", 2260.0, "us", 1.03),
)


def git_c_comparison(rows: Sequence[Row]) -> list[Target]:
    """Our figures against Git's C library's (see GIT_C)."""
    out = []
    for rid, what, git, unit, target in GIT_C:
        r = _find(rows, rid)
        if r is None or r.ours is None:
            out.append(Target(f"{what} <= {target}x Git", "n/a", "not measured"))
            continue
        if unit in ("ns/ref", "ns/entry"):
            ours = r.per_record_ns
        else:
            ours = r.ours * {"ms/op": 1e3, "us/op": 1.0, "ms/add": 1e3}.get(r.unit, 1e6)
        if ours is None:
            out.append(Target(f"{what} <= {target}x Git", "n/a", "not measured"))
            continue
        ratio = ours / git
        detail = f"at N={fmt_n(r.n)}"
        floor = _find(rows, "add_floor") if rid == "add_tx_nodir" else None
        if floor is not None and floor.ours is not None:
            # An addition's time is mostly the disk's fsyncs: the same-run floor (Git's
            # I/O done with bare os calls) tells the disk from the library.
            detail += (f"; this run's raw floor {floor.ours * 1e3:,.0f} us, ours "
                       f"{r.extra.get('ratio_to_floor', 0):.2f}x floor")
        out.append(Target(f"{what} <= {target}x Git", "PASS" if ratio <= target else "MISS",
                          f"{ratio:.2f}x Git ({ours:,.0f} vs {git:,.0f} {unit})", detail))
    for rid, what, target, up in (
        ("threads_lookup", "2 threads of batch lookups on one stack", 1.8, True),
        ("process_head", "whole process: import, open, resolve HEAD", 1.3, False),
    ):
        r = _find(rows, rid)
        if r is None or r.ours is None:
            out.append(Target(f"{what}", "n/a", "not measured"))
            continue
        ok = r.ours >= target if up else r.ours <= target
        detail = r.note
        ceiling = _find(rows, "processes_lookup") if rid == "threads_lookup" else None
        if ceiling is not None and ceiling.ours is not None:
            detail += f"; the same work in 2 processes: {ceiling.ours:.2f}x"
        out.append(Target(f"{what} {'>=' if up else '<='} {target}x", "PASS" if ok else "MISS",
                          f"{r.ours:.2f}x", detail))
    return out


def targets_text(targets: Sequence[Target]) -> str:
    w = max(len(t.name) for t in targets)
    lines = []
    for t in targets:
        line = f"  [{t.status:4}] {t.name.ljust(w)}  {t.measured}"
        if t.detail:
            line += f"  ({t.detail})"
        lines.append(line)
    return "\n".join(lines)


# -- machine facts, JSON ---------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import reftable

    from . import peer_dulwich

    facts: dict[str, Any] = {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "reftable_version": reftable.__version__,
        "reftable_core": reftable.IMPLEMENTATION,
        "dulwich_version": peer_dulwich.VERSION,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import Cython

        facts["cython_version"] = Cython.__version__
    except ImportError:
        pass
    try:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        facts["git_head"] = subprocess.run(
            ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True,
            check=False).stdout.strip() or None
    except OSError:
        pass
    try:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        dirty = subprocess.run(
            ["git", "-C", here, "status", "--porcelain", "--", "reftable", "setup.py"],
            capture_output=True, text=True, check=False).stdout.split("\n")
        facts["git_dirty"] = [x.strip() for x in dirty if x.strip()]
    except OSError:
        pass
    try:
        facts["loadavg"] = list(os.getloadavg())
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            facts["mem_total_kib"] = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return facts


def write_json(path: str, rows: Sequence[Row], targets: Sequence[Target],
               config: dict[str, Any], notes: Sequence[str],
               facts: Optional[dict[str, Any]] = None) -> None:
    doc = {
        "machine": facts if facts is not None else machine_facts(),
        "config": config,
        "results": [r.to_json() for r in rows],
        "targets": [t.to_json() for t in targets],
        "notes": list(notes),
    }
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


# -- plot ------------------------------------------------------------------------------


def plot(path: str, rows: Sequence[Row], title: str = "") -> Optional[str]:
    """Time vs N (log-log), ours and dulwich, one panel per workload measured at two or
    more sizes. Returns None on success, else why it was skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    ids: dict[str, list[Row]] = {}
    for r in rows:
        if r.ours is not None and r.ours > 0 and r.unit in ("s", "ms/op", "us/op"):
            ids.setdefault(r.id, []).append(r)
    panels = [(k, sorted(v, key=lambda r: r.n)) for k, v in ids.items() if len(v) >= 2]
    if not panels:
        return "no workload was measured at two sizes or more"
    cols = 4
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.3 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (_, rs) in zip(axes.flat, panels, strict=False):
        xs = [r.n for r in rs]
        ax.loglog(xs, [r.ours for r in rs], "o-", label="pyreftable", color="tab:blue")
        prs = [r for r in rs if r.pure]
        if prs:
            ax.loglog([r.n for r in prs], [r.pure for r in prs], "^:",
                      label="pyreftable, pure Python", color="tab:green")
        drs = [r for r in rs if r.dulwich]
        if drs:
            ax.loglog([r.n for r in drs], [r.dulwich for r in drs], "s--",
                      label="dulwich", color="tab:orange")
        ax.set_title(rs[0].label, fontsize=8)
        ax.set_xlabel("N refs", fontsize=8)
        ax.set_ylabel(rs[0].unit.replace("us", "µs"), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
