"""Shared helpers: configuration, timing, result rows and the synthetic data sets."""

from __future__ import annotations

import gc
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

# Object ids never contain this byte: dulwich's reader cuts a ref block at the first
# b"\x00\x00\x1c" (it takes it for an "embedded footer"), and an object id is the only
# place such bytes can come from in our tables. Without it dulwich silently returns a
# fraction of the refs of a large table; with it both libraries read the same data.
_NO_1C = bytes.maketrans(b"\x1c", b"\x1d")


@dataclass
class Config:
    sizes: list[int]
    quick: bool
    repeats: int  # repeats of a cheap timed section (median reported)
    tmpdir: str
    dulwich: bool = True
    keep_gc: bool = False
    only: Optional[set[str]] = None
    log: Callable[[str], None] = print

    def reps(self, n: int, big: int = 3) -> int:
        """Fewer repeats for the largest sizes (each takes seconds)."""
        return big if n >= 1_000_000 else self.repeats

    def wants(self, group: str) -> bool:
        return self.only is None or group in self.only


@dataclass
class Row:
    """One measured figure: a workload at one size, ours and (maybe) dulwich's."""

    group: str  # workload group, e.g. "write"
    id: str  # workload id, e.g. "write_obj_off"
    label: str
    n: int
    unit: str  # "s", "ms/op", "us/op", "ms/add", "MiB", "tables"
    ours: Optional[float]
    ours_times: list[float] = field(default_factory=list)
    dulwich: Optional[float] = None
    dulwich_times: list[float] = field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    pure: Optional[float] = None  # the same workload on the pure-Python core
    pure_times: list[float] = field(default_factory=list)

    @property
    def per_record_ns(self) -> Optional[float]:
        """Nanoseconds per record (``extra["records"]``) of a whole-run time: the figure
        that makes regressions visible across sizes."""
        count = self.extra.get("records")
        if self.ours is None or not count:
            return None
        scale = {"s": 1e9, "ms/op": 1e6, "us/op": 1e3}.get(self.unit)
        return self.ours * scale / count if scale else None

    @property
    def ratio(self) -> Optional[float]:
        if self.ours and self.dulwich is not None:
            return self.dulwich / self.ours
        return None

    @property
    def pure_ratio(self) -> Optional[float]:
        """dulwich / pure: how the pure-Python core compares with dulwich's."""
        if self.pure and self.dulwich is not None:
            return self.dulwich / self.pure
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "id": self.id,
            "label": self.label,
            "n": self.n,
            "unit": self.unit,
            "ours": self.ours,
            "ours_times": self.ours_times,
            "dulwich": self.dulwich,
            "dulwich_times": self.dulwich_times,
            "ratio_dulwich_over_ours": self.ratio,
            "pure": self.pure,
            "pure_times": self.pure_times,
            "ratio_dulwich_over_pure": self.pure_ratio,
            "ns_per_record": self.per_record_ns,
            "note": self.note,
            "extra": self.extra,
        }


UNIT_SCALE = {"s": 1.0, "ms/op": 1e3, "ms/add": 1e3, "us/op": 1e6}


def per_op(times: list[float], count: int, unit: str) -> list[float]:
    """Seconds for ``count`` operations -> time per operation in ``unit``."""
    return [t / max(1, count) * UNIT_SCALE[unit] for t in times]


def median(xs: Iterable[float]) -> float:
    return float(statistics.median(list(xs)))


def thread_scaling(fn: Callable[[], Any], rounds: int, keep_gc: bool = False,
                   processes: bool = False) -> tuple[list[float], str]:
    """Two workers running ``fn`` at once against one running it alone: their
    throughput over one's, per round (paired: the machine's load drifts), and a note
    naming the cores and the load. Workers are threads, or with ``processes`` forked
    copies of this process (no GIL between them: the machine's own ceiling for the
    same work). They are started first and released together, so starting them is not
    timed."""
    ratios = []
    run = _processes if processes else _threads
    for _ in range(rounds):
        was = gc.isenabled()
        gc.collect()
        if not keep_gc:
            gc.disable()
        try:
            t1 = run(fn, 1)
            t2 = run(fn, 2)
        finally:
            if was:
                gc.enable()
        ratios.append(2 * t1 / t2)
    cores = len(os.sched_getaffinity(0))
    return ratios, f"{cores} cores; load average {os.getloadavg()[0]:.1f}"


def _threads(fn: Callable[[], Any], k: int) -> float:
    """Seconds from the first of ``k`` threads, released together, starting ``fn`` to
    the last finishing it (each times itself: the releasing thread may be scheduled
    late, behind the workers)."""
    start = threading.Barrier(k)
    spans: list[tuple[float, float]] = []

    def work() -> None:
        start.wait()
        t0 = time.perf_counter()
        fn()
        spans.append((t0, time.perf_counter()))

    threads = [threading.Thread(target=work) for _ in range(k)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return max(b for _, b in spans) - min(a for a, _ in spans)


def _processes(fn: Callable[[], Any], k: int) -> float:
    """``_threads`` with forked processes."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(k)
    spans = ctx.SimpleQueue()

    def work() -> None:
        fn()  # first copies the pages it writes (copy-on-write after the fork), untimed
        start.wait()
        t0 = time.perf_counter()  # (a system-wide clock: comparable across processes)
        fn()
        spans.put((t0, time.perf_counter()))

    procs = [ctx.Process(target=work) for _ in range(k)]
    for p in procs:
        p.start()
    got: list[tuple[float, float]] = [spans.get() for _ in procs]
    for p in procs:
        p.join()
    return max(b for _, b in got) - min(a for a, _ in got)


def timed(fn: Callable[[], Any], keep_gc: bool = False) -> tuple[float, Any]:
    """Run ``fn`` once; return (seconds, result). The cyclic GC is collected before
    and disabled during the run unless ``keep_gc`` (it only adds noise: the timed
    sections free what they allocate as they go)."""
    gc.collect()
    was = gc.isenabled()
    if not keep_gc:
        gc.disable()
    try:
        t0 = time.perf_counter()
        result = fn()
        t1 = time.perf_counter()
    finally:
        if was:
            gc.enable()
    return t1 - t0, result


BUDGET = 12.0  # seconds one repeat() may take, roughly


def repeat(
    fn: Callable[[], Any],
    repeats: int,
    warmup: int = 1,
    keep_gc: bool = False,
    setup: Optional[Callable[[], Any]] = None,
    budget: Optional[float] = None,
) -> list[float]:
    """Times (seconds) of ``repeats`` runs of ``fn`` after ``warmup`` untimed runs.
    ``setup`` (untimed) runs before each run. When the first run shows that all of
    them would take more than ``budget`` seconds (default ``BUDGET``), fewer repeats
    are done (at least one timed run; the JSON lists every time taken)."""
    budget = BUDGET if budget is None else budget
    times: list[float] = []
    i = 0
    total = warmup + repeats
    while i < total:
        if setup is not None:
            setup()
        dt, _ = timed(fn, keep_gc)
        if i == 0 and dt * total > budget:
            total = max(warmup + 1, min(total, int(budget / dt) if dt > 0 else total))
            if total == warmup + 1 and warmup and dt * (warmup + 1) > budget:
                total, warmup = 1, 0  # slow: the only run is the timed one
        if i >= warmup:
            times.append(dt)
        i += 1
    return times


def fresh_dir(base: str, name: str) -> str:
    path = os.path.join(base, name)
    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def make_tmpdir(where: Optional[str]) -> str:
    return tempfile.mkdtemp(prefix="reftable-bench-", dir=where)


# -- data sets -----------------------------------------------------------------


class Dataset:
    """``n`` distinct ref names (sorted) with distinct random object ids.

    90% are ``refs/heads/<12 hex>``, 10% ``refs/tags/v<12 hex>``: random names, so
    prefix compression only shares ``refs/heads/`` and a few characters (a worst case
    for size, a fair case for speed). ``misses`` are names of the same shape that are
    not in the set. Deterministic for a given ``n`` and seed."""

    def __init__(self, n: int, seed: int = 20240601):
        rnd = random.Random(seed ^ n)
        n_tags = n // 10
        vals = rnd.sample(range(1 << 48), n + 20_000)
        heads = [f"refs/heads/{v:012x}" for v in vals[: n - n_tags]]
        tags = [f"refs/tags/v{v:012x}" for v in vals[n - n_tags: n]]
        self.n = n
        self.names: list[str] = sorted(heads + tags)
        self.names_b: list[bytes] = [s.encode() for s in self.names]
        raw = rnd.randbytes(20 * n).translate(_NO_1C)
        self.oids: list[bytes] = [raw[i: i + 20] for i in range(0, 20 * n, 20)]
        spare = vals[n:]
        self.misses: list[str] = [
            (f"refs/heads/{v:012x}" if i % 10 else f"refs/tags/v{v:012x}")
            for i, v in enumerate(spare)
        ]
        self.rnd = rnd
        self._records: Optional[list[Any]] = None

    def records(self, update_index: int = 1) -> list[Any]:
        """``RefRecord`` list (cached for update index 1)."""
        from reftable import RefRecord, RefValueType

        if update_index == 1 and self._records is not None:
            return self._records
        v1 = RefValueType.VAL1
        recs = [RefRecord(nm, update_index, v1, o)
                for nm, o in zip(self.names, self.oids, strict=True)]
        if update_index == 1:
            self._records = recs
        return recs

    def partition(self, parts: int, seed: int = 7) -> list[list[int]]:
        """Indices of the refs split at random into ``parts`` sorted groups of equal
        size (every ref lands in exactly one group)."""
        rnd = random.Random(seed ^ self.n)
        idx = list(range(self.n))
        rnd.shuffle(idx)
        return [sorted(idx[k::parts]) for k in range(parts)]

    def sample_hits(self, k: int) -> list[str]:
        return random.Random(k ^ self.n).sample(self.names, min(k, self.n))

    def sample_misses(self, k: int) -> list[str]:
        return self.misses[:k]


_CACHE: dict[int, Dataset] = {}


def dataset(n: int) -> Dataset:
    ds = _CACHE.get(n)
    if ds is None:
        ds = _CACHE[n] = Dataset(n)
    return ds


def drop_dataset(n: int) -> None:
    _CACHE.pop(n, None)
    gc.collect()


def fmt_n(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
