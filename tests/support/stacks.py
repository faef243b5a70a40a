"""Stack helpers: open, write, inspect a stack directory; the workers of the
multi-process stress test (importable by the processes it spawns)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Optional

from reftable import RefRecord
from reftable._impl import core as _core
from reftable.jsonio import log_to_json, ref_to_json
from reftable.stack import Stack, StackOptions
from reftable.tables_list import TABLE_NAME_RE

from . import oid


def open_stack(d: Path | str, **kw: Any) -> Stack:
    return Stack.open(os.fspath(d), StackOptions(**kw))


def write_ref(rec_factory: Callable[[int], RefRecord]) -> Callable[[Any], None]:
    """A write callback adding one ref built for the table's update index."""

    def write(w: Any) -> None:
        w.add_ref(rec_factory(w.min_update_index))

    return write


def add_ref(st: Stack, name: str, value: bytes) -> None:
    st.add(write_ref(lambda ui: RefRecord.val1(name, ui, value)))


def write_n_ref_tables(st: Stack, n: int, start: int = 0) -> None:
    """Add ``n`` one-ref tables (``refs/heads/branch-NNNN``), auto-compaction off,
    like Git's ``write_n_ref_tables``."""
    saved = st.options.auto_compact
    st.options.auto_compact = False
    try:
        for i in range(start, start + n):
            add_ref(st, f"refs/heads/branch-{i:04d}", oid(i, st.hash))
    finally:
        st.options.auto_compact = saved


def listing(d: Path | str) -> list[str]:
    return sorted(os.listdir(d))


def snapshot(d: Path | str) -> dict[str, bytes]:
    """Every file of the directory with its content (to assert "unchanged")."""
    out = {}
    for n in os.listdir(d):
        p = os.path.join(d, n)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                out[n] = f.read()
    return out


def list_names(d: Path | str) -> list[str]:
    with open(os.path.join(d, "tables.list"), "rb") as f:
        return [ln for ln in f.read().decode("ascii").split("\n") if ln]


def leftovers(d: Path | str, allow: Iterable[str] = ()) -> dict[str, list[str]]:
    """Files that should not be there: lock files, temp tables, tables that
    ``tables.list`` does not name, and names listed but missing."""
    allowed = set(allow)
    names = list_names(d)
    files = [f for f in os.listdir(d) if f not in allowed]
    return {
        "locks": sorted(f for f in files if f.endswith(".lock")),
        "temps": sorted(f for f in files if f.startswith(".tmp")),
        "unlisted": sorted(f for f in files if TABLE_NAME_RE.fullmatch(f) and f not in names),
        "missing": sorted(n for n in names if not os.path.exists(os.path.join(d, n))),
        "other": sorted(f for f in files if f != "tables.list" and not f.endswith(".lock")
                        and not f.startswith(".tmp") and not TABLE_NAME_RE.fullmatch(f)),
    }


def assert_clean(d: Path | str, allow: Iterable[str] = ()) -> None:
    left = leftovers(d, allow)
    assert left == {"locks": [], "temps": [], "unlisted": [], "missing": [], "other": []}, left


def hold_lock(path: Path | str) -> Any:
    """Take ``path + ".lock"`` the way another process would (fails at once if held)."""
    return _core.LockFile(os.fspath(path), 0)


def compact_at_first_table_open(monkeypatch: Any, compactor: Stack) -> list[str]:
    """Make the next ``Table.open`` run ``compactor.compact_all()`` first: a reader that
    has just read ``tables.list`` finds the tables it names compacted away. Returns the
    list that receives the path of that open once it happened."""
    from reftable import Table

    real_open = Table.open
    fired: list[str] = []

    def racing_open(path: str) -> Table:
        if not fired:
            fired.append(path)
            compactor.compact_all()
        return real_open(path)

    monkeypatch.setattr(Table, "open", staticmethod(racing_open))
    return fired


def refs_json(st: Stack, prefix: str = "") -> list[dict[str, Any]]:
    return [ref_to_json(r) for r in st.refs(prefix)]


def logs_json(st: Stack, refname: Optional[str] = None) -> list[dict[str, Any]]:
    return [log_to_json(r) for r in st.logs(refname)]


def ref_view(recs: Iterable[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """name -> (type, value, peeled, target): a ref list without update indices."""
    return {r["name"]: (r["type"], r.get("value"), r.get("target_value"), r.get("target"))
            for r in recs}


def log_view(recs: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Log entries as comparable tuples in merged order (update index included)."""
    keys = ("refname", "update_index", "type", "old_id", "new_id", "name", "email", "time",
            "tz_offset", "message")
    return [tuple(r.get(k) for k in keys) for r in recs]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# -- workers of the multi-process stress test (importable by spawned processes) -----------------


def stress_writer(d: str, k: int, n: int, result_path: str, go: Any) -> None:
    """Do ``n`` transactions on this writer's own refs (each expecting the value this
    writer last committed); append ``ref new_hex update_index`` to ``result_path``
    after each commit. Retries on LockError/OutdatedError only."""
    from reftable.errors import LockError, OutdatedError
    from reftable.transaction import LogEntry

    go.wait(60)
    st = Stack.open(d, StackOptions(lock_timeout_ms=2000))
    prev: dict[str, bytes] = {}
    with open(result_path, "w", encoding="ascii") as out:
        for i in range(n):
            ref = f"refs/heads/w{k}/r{i % 4}"
            new = oid(10_000 * k + i)
            entry = LogEntry("W", f"w{k}@example.com", f"w{k} {i}", 1_700_000_000 + i, 0)
            for _attempt in range(500):
                tx = st.transaction(log=entry)
                tx.update(ref, new, expect=prev.get(ref))
                try:
                    ui = tx.commit()
                    break
                except (LockError, OutdatedError):
                    continue
                except Exception as e:
                    out.write(f"ERROR {ref} {type(e).__name__}: {e}\n")
                    out.flush()
                    raise
            else:
                out.write(f"GAVEUP {ref}\n")
                out.flush()
                raise SystemExit(3)
            prev[ref] = new
            out.write(f"{ref} {new.hex()} {ui}\n")
            out.flush()
    st.close()


def stress_compactor(d: str, result_path: str, go: Any, stop: Any) -> None:
    """Alternate full and auto compaction until ``stop`` is set, tolerating lock and
    outdated errors; write counters to ``result_path``."""
    from reftable.errors import LockError, OutdatedError

    go.wait(60)
    st = Stack.open(d, StackOptions(lock_timeout_ms=20, auto_compact=False))
    counts = {"full": 0, "auto": 0, "lock": 0, "outdated": 0, "loops": 0}
    i = 0
    while not stop.is_set():
        i += 1
        try:
            st.reload()
            if i % 2:
                counts["full"] += bool(st.compact_all())
            else:
                counts["auto"] += bool(st.auto_compact())
        except LockError:
            counts["lock"] += 1
        except OutdatedError:
            counts["outdated"] += 1
        counts["loops"] += 1
        stop.wait(0.002)  # throttle only: writers need the CPU more
    st.close()
    with open(result_path, "w", encoding="ascii") as out:
        json.dump(counts, out)


def stress_reader(d: str, result_path: str, go: Any, stop: Any, writers: int, n: int) -> None:
    """Reload and read everything until ``stop``; every value seen must be one a writer
    wrote, and each ref's value must never go back to an older one."""
    decode = {oid(10_000 * k + i).hex(): i for k in range(writers) for i in range(n)}
    go.wait(60)
    st = Stack.open(d, StackOptions(auto_compact=False))
    last: dict[str, int] = {}
    problems: list[str] = []
    reads = 0
    while not stop.is_set() and len(problems) < 10:
        try:
            st.reload()
            for r in st.refs():
                assert r.value is not None
                i = decode.get(r.value.hex())
                if i is None:
                    problems.append(f"unknown value {r.name} {r.value.hex()}")
                elif i < last.get(r.name, -1):
                    problems.append(f"{r.name} went back from {last[r.name]} to {i}")
                else:
                    last[r.name] = i
            reads += 1
        except Exception as e:  # any error of a reader is a finding
            problems.append(f"{type(e).__name__}: {e}")
        stop.wait(0.002)
    st.close()
    with open(result_path, "w", encoding="utf-8") as out:
        json.dump({"reads": reads, "problems": problems}, out)
