"""Thread stress workloads on ONE shared handle (a Stack, or a dulwich container),
importable by spawned processes; also a command line for long runs by hand:

    PYTHONPATH=.:tests python tests/thread_stress.py DIR --seconds 60 --processes 2 [--dulwich]

Every value written encodes (tag, thread, counter), so readers can check that a
ref never goes back to an older value, and the final check can compare the stack
with exactly the updates whose commit returned."""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from reftable.errors import LockError, OutdatedError
from reftable.stack import Stack, StackOptions
from reftable.transaction import LogEntry

# Threads of one handle take turns, so the default lock timeout never fails them;
# processes contend on the lock file itself and get a long timeout.
PROCESS_LOCK_TIMEOUT_MS = 60_000


def value(tag: str, k: int, i: int) -> bytes:
    return zlib.crc32(tag.encode()).to_bytes(4, "big") + k.to_bytes(4, "big") + \
        i.to_bytes(8, "big") + b"\x01" * 4


def decode(raw: bytes) -> tuple[int, int, int]:
    return int.from_bytes(raw[:4], "big"), int.from_bytes(raw[4:8], "big"), \
        int.from_bytes(raw[8:16], "big")


class Run:
    """Threads sharing one deadline and one list of problems."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.problems: list[str] = []
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.start = threading.Barrier(1)

    def running(self) -> bool:
        return time.monotonic() < self.deadline and len(self.problems) < 20

    def count(self, key: str) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def problem(self, msg: str) -> None:
        with self._lock:
            self.problems.append(msg)

    def loop(self, name: str, body: Callable[[int], None],
             tolerate: tuple[type[BaseException], ...] = ()) -> Callable[[], None]:
        def run() -> None:
            self.start.wait()
            i = 0
            while self.running():
                try:
                    body(i)
                except tolerate as e:
                    self.count(f"{name}:{type(e).__name__}")
                except BaseException as e:  # any other error is a finding
                    self.problem(f"{name} #{i}: {type(e).__name__}: {e}")
                    return
                i += 1
            self.count(f"{name}:loops={i}")
        return run

    def go(self, bodies: dict[str, Callable[[], None]]) -> None:
        self.start = threading.Barrier(len(bodies))
        threads = [threading.Thread(target=b, name=n) for n, b in bodies.items()]
        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # many more thread switches than usual
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(old)


class Monotonic:
    """Per ref: the newest counter seen; a read of an older one is a lost update."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.seen: dict[str, int] = {}

    def check(self, name: str, raw: bytes | None) -> None:
        if raw is None:
            return
        i = decode(raw)[2]
        if i < self.seen.get(name, -1):
            self.run.problem(f"{name} went back from {self.seen[name]} to {i}")
        self.seen[name] = max(i, self.seen.get(name, -1))


def stack_threads(d: str, tag: str, seconds: float, writers: int = 3,
                  lock_timeout_ms: int = 100) -> dict[str, Any]:
    """Writers (transactions expecting their own last value), a reloader/reader, a
    table iterator, auto and full compaction, clean and stats on ONE Stack."""
    st = Stack.open(d, StackOptions(lock_timeout_ms=lock_timeout_ms))
    run = Run(seconds)
    committed: dict[str, list[str]] = {}
    mono = Monotonic(run)

    def writer(k: int) -> Callable[[int], None]:
        prev: dict[str, bytes] = {}

        def body(i: int) -> None:
            ref = f"refs/heads/{tag}/w{k}/r{i % 3}"
            new = value(tag, k, i)
            entry = LogEntry("T", "t@example.com", f"{tag} {k} {i}", 1_700_000_000 + i, 0)
            with st.transaction(log=entry) as tx:
                tx.update(ref, new, expect=prev.get(ref))
            prev[ref] = new  # only once the commit returned
            committed.setdefault(ref, []).append(new.hex())
            run.count("commits")
        return body

    def reader(i: int) -> None:
        st.reload()
        for r in st.refs(f"refs/heads/{tag}/"):
            mono.check(r.name, r.value)
        ref = f"refs/heads/{tag}/w{i % writers}/r{i % 3}"
        rec = st.read_ref(ref)
        mono.check(ref, None if rec is None else rec.value)

    def table_iter(i: int) -> None:
        for t in st.tables:  # tables a compaction may replace meanwhile
            sum(1 for _ in t.refs())
            sum(1 for _ in t.logs())

    def compactor(i: int) -> None:
        (st.compact_all if i % 2 else st.auto_compact)()
        time.sleep(0.001)  # throttle only: writers need the CPU more

    def cleaner(i: int) -> None:
        st.clean()
        time.sleep(0.005)  # throttle only

    def stats(i: int) -> None:
        s = st.stats
        _ = (s.attempts, s.failures, s.tables_added, st.table_sizes_for_compaction(),
             st.next_update_index(), st.is_up_to_date())
        time.sleep(0.001)

    bodies = {f"writer{k}": run.loop(f"writer{k}", writer(k)) for k in range(writers)}
    bodies["reader"] = run.loop("reader", reader)
    bodies["tables"] = run.loop("tables", table_iter)
    # a table locked by another compaction: LockError; a stack changed since the
    # snapshot: OutdatedError (both documented for compaction)
    bodies["compactor"] = run.loop("compactor", compactor, (LockError, OutdatedError))
    bodies["cleaner"] = run.loop("cleaner", cleaner)
    bodies["stats"] = run.loop("stats", stats)
    run.go(bodies)
    for k in ("last_auto_compaction_error", "last_reload_error", "last_fsync_error"):
        e = getattr(st.stats, k, None)
        if e is not None and not isinstance(e, (LockError, OutdatedError)):
            run.problem(f"{k}: {type(e).__name__}: {e}")
    st.close()
    return {"committed": committed, "problems": run.problems, "counts": run.counts}


def dulwich_threads(d: str, tag: str, seconds: float,
                    lock_timeout_ms: int = 100) -> dict[str, Any]:
    """add_if_new, set_if_equals, remove_if_equals, reads and pack_refs from
    several threads on ONE ReftableRefsContainer."""
    from dulwich.file import FileLocked

    from reftable.contrib.dulwich import ReftableRefsContainer

    refs = ReftableRefsContainer(d, stack_options=StackOptions(lock_timeout_ms=lock_timeout_ms))
    run = Run(seconds)
    live: dict[str, str] = {}  # name -> hex value, for refs whose write returned True
    removed: set[str] = set()
    doomed: set[str] = set()  # being removed: readers may or may not see them
    cas_name = f"refs/heads/{tag}/cas"
    cas = {"value": None}
    mono = Monotonic(run)

    def adder(k: int) -> Callable[[int], None]:
        def body(i: int) -> None:
            name = f"refs/heads/{tag}/a{k}/{i:06d}"
            sha = value(tag, k, i).hex().encode()
            if not refs.add_if_new(name.encode(), sha, message=b"add"):
                run.problem(f"add_if_new({name}) returned False for a new ref")
                return
            live[name] = sha.decode()
            run.count("commits")
            if i % 4 == 3:  # delete an earlier one of ours, expecting its value
                old = f"refs/heads/{tag}/a{k}/{i - 2:06d}"
                doomed.add(old)
                if not refs.remove_if_equals(old.encode(), live[old].encode()):
                    run.problem(f"remove_if_equals({old}) returned False")
                    return
                removed.add(old)
                del live[old]
                run.count("commits")
        return body

    def setter(i: int) -> None:
        new = value(tag, 9, i).hex().encode()
        old = cas["value"]
        ok = refs.set_if_equals(cas_name.encode(), old or b"0" * 40, new, message=b"cas")
        if not ok:
            run.problem(f"set_if_equals({cas_name}) from {old!r} returned False")
            return
        cas["value"] = new
        run.count("commits")
        # a stale expectation must be refused (False), never raise
        if i and refs.set_if_equals(cas_name.encode(), value(tag, 9, i - 1).hex().encode(),
                                    new):
            run.problem("set_if_equals with a stale old value returned True")

    def reader(i: int) -> None:
        known = dict(live)  # writes that returned before this read started
        names = refs.allkeys()
        for name in random.sample(sorted(known), min(5, len(known))):
            got = refs.read_ref(name.encode())
            if name in doomed:
                continue
            if got is None:
                run.problem(f"{name} committed but read_ref sees nothing")
            elif got.decode() != known[name]:
                run.problem(f"{name}: read {got!r}, committed {known[name]}")
            if name.encode() not in names:
                run.problem(f"{name} committed but missing from allkeys()")
        got = refs.read_ref(cas_name.encode())
        mono.check(cas_name, None if got is None else bytes.fromhex(got.decode()))
        refs.as_dict(f"refs/heads/{tag}".encode())

    def packer(i: int) -> None:
        refs.pack_refs()
        time.sleep(0.01)  # throttle only

    bodies = {f"adder{k}": run.loop(f"adder{k}", adder(k)) for k in range(2)}
    bodies["setter"] = run.loop("setter", setter)
    bodies["reader"] = run.loop("reader", reader)
    bodies["packer"] = run.loop("packer", packer, (FileLocked,))  # a table being compacted
    run.go(bodies)
    refs.close()
    return {"live": live, "removed": sorted(removed), "cas": (cas_name, cas["value"] and
                                                               cas["value"].decode()),
            "problems": run.problems, "counts": run.counts}


def process_main(kind: str, d: str, tag: str, seconds: float, out: str) -> None:
    work = dulwich_threads if kind == "dulwich" else stack_threads
    result = work(d, tag, seconds, lock_timeout_ms=PROCESS_LOCK_TIMEOUT_MS)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)


def verify_stack(d: str, results: list[dict[str, Any]]) -> dict[str, int]:
    """Every update whose commit returned is on disk (final values and reflogs);
    the stack opens; every listed table opens; no lock, temp or stray table."""
    from support.stacks import assert_clean

    from reftable import Table

    problems = [p for r in results for p in r["problems"]]
    with Stack.open(d, StackOptions(auto_compact=False)) as st:
        for n in st.names:
            Table.open(os.path.join(d, n)).close()
        commits = lost = 0
        for r in results:
            for ref, values in r.get("committed", {}).items():
                commits += len(values)
                rec = st.read_ref(ref)
                logged = [lg.new_id.hex() for lg in st.logs(ref) if lg.new_id is not None]
                lost += sum(v not in logged for v in values)
                if rec is None or rec.value.hex() != values[-1] or logged != values[::-1]:
                    problems.append(f"{ref}: value or reflog differs from the commits")
            for ref, sha in r.get("live", {}).items():
                commits += 1
                rec = st.read_ref(ref)
                lost += rec is None or rec.value.hex() != sha
            for ref in r.get("removed", []):
                commits += 1
                lost += st.read_ref(ref) is not None
            if "cas" in r and r["cas"][1] is not None:
                rec = st.read_ref(r["cas"][0])
                lost += rec is None or rec.value.hex() != r["cas"][1]
        tables = len(st.names)
    assert (lost, problems) == (0, []), f"{lost} of {commits} commits lost; {problems[:10]}"
    assert_clean(d)
    return {"commits": commits, "lost": lost, "tables": tables}


def main(argv: list[str]) -> int:
    import argparse
    import multiprocessing as mp

    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--dulwich", action="store_true")
    a = p.parse_args(argv)
    os.makedirs(a.dir, exist_ok=True)
    Stack.open(a.dir).close()
    kind = "dulwich" if a.dulwich else "stack"
    ctx = mp.get_context("spawn")
    outs = [os.path.join(a.dir, f"..result-{j}.json") for j in range(a.processes)]
    procs = [ctx.Process(target=process_main, args=(kind, a.dir, f"p{j}", a.seconds, o))
             for j, o in enumerate(outs)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join()
    results = []
    for o in outs:
        with open(o, encoding="utf-8") as f:
            results.append(json.load(f))
        os.unlink(o)
    figures = verify_stack(a.dir, results)
    print(json.dumps({"kind": kind, "processes": a.processes, "seconds": a.seconds,
                      **figures, "counts": [r["counts"] for r in results]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
