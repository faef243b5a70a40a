"""Crash consistency: processes killed with SIGKILL in the middle of the protocol.

1. Deterministic: a child process runs an addition, an auto-compaction or a full
   compaction and kills itself right before its N-th call of an I/O operation
   (``iofaults.set_crash``), for every operation and every N. The stack must then read
   exactly the state before or after the operation, and after removing the dead
   process's locks and leftovers (``clean(stale_locks_older_than=0)``) it must accept
   new work.
2. Random: writer and compactor processes run concurrently and are all killed at a
   random moment ("power cut"), several rounds in a row. Every update a writer was
   told is committed must be present; nothing a writer never attempted is visible.
"""

from __future__ import annotations

import os
import random
import signal
import time

import iofaults
import pytest
from support import oid, oid_number
from support.faults import LOG, OPS, SCENARIOS, prepare, view

from reftable.errors import LockError, OutdatedError
from reftable.stack import Stack, StackOptions

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def run_child(fn) -> int:
    """Run ``fn`` in a forked child; return its wait status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            fn()
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def content(v: tuple[list, list]) -> tuple[list, list]:
    """A view without update indices."""
    refs, logs = v
    return ([(r.name, r.value_type, r.value, r.target_value, r.target) for r in refs],
            [(x.refname, x.old_id, x.new_id, x.message) for x in logs])


def assert_clean_after_crash(work: str, what: str) -> None:
    """After clean(), only tables.list, the listed tables and, possibly, a table the
    dead process had named but not listed remain. Such a table has update indices
    above the stack's: clean() must keep it (it could be a live writer's, about to be
    listed) until the stack moves past it, and then removes it."""
    with Stack.open(work, StackOptions(auto_compact=False)) as st:
        st.clean(stale_locks_older_than=0)
        listed = set(st.names)
        top = st.next_update_index() - 1
        extra = sorted(set(os.listdir(work)) - listed - {"tables.list"})
        for e in extra:
            assert int(e.split("-")[0], 16) > top, f"{what}: {e} left behind"
        if extra:
            with st.transaction() as tx:
                tx.update("refs/heads/after-crash", oid(424242))
            st.clean()
            assert sorted(set(os.listdir(work)) - set(st.names)) == ["tables.list"], what
            with st.transaction() as tx:
                tx.delete("refs/heads/after-crash")
            st.compact_all()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_crash_at_every_io_call(tmp_path, name):
    import shutil

    run, _, template, _, before, after, counts = prepare(tmp_path, name)

    crashes = 0
    for op in OPS:
        for n in range(1, counts.get(op, 0) + 1):
            work = str(tmp_path / f"c-{op}-{n}")
            shutil.copytree(template, work)

            def child(work=work, op=op, n=n):
                iofaults.set_crash(op, n)
                run(work)

            status = run_child(child)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
                f"{op}#{n}: child did not die at the crash point (status {status})"
            crashes += 1
            state = view(work)
            assert state in (before, after), f"{op}#{n}: state is neither before nor after"
            assert_clean_after_crash(work, f"{op}#{n}")
            if state == before:
                run(work)  # the operation can be redone (update indices may have moved on)
                assert content(view(work)) == content(after), f"{op}#{n}: redo differs"
                assert_clean_after_crash(work, f"{op}#{n} redo")
            shutil.rmtree(work)
    assert crashes == sum(counts.get(op, 0) for op in OPS)


# -- random power cuts ------------------------------------------------------------------

def _writer(directory: str, wid: int, journal: str, seed: int) -> None:  # pragma: no cover
    rnd = random.Random(seed)
    with open(journal, "a") as j, Stack.open(directory, StackOptions(lock_timeout_ms=2000)) as st:
        counter = 0
        for line in open(journal):
            counter = max(counter, int(line.split()[2]))
        while True:
            counter += 1
            name = f"refs/heads/w{wid}/r{rnd.randrange(8)}"
            j.write(f"try {name} {counter}\n")
            j.flush()
            os.fsync(j.fileno())
            try:
                with st.transaction(log=LOG) as tx:
                    tx.update(name, oid(counter))
            except (LockError, OutdatedError):
                continue
            j.write(f"done {name} {counter}\n")
            j.flush()
            os.fsync(j.fileno())


def _compactor(directory: str) -> None:  # pragma: no cover
    with Stack.open(directory, StackOptions(lock_timeout_ms=2000)) as st:
        while True:
            try:
                st.reload()
                if random.random() < 0.3:
                    st.compact_all()
                else:
                    st.auto_compact()
            except (LockError, OutdatedError):
                pass


def _spawn(fn, *args) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            fn(*args)
        except BaseException:
            os._exit(3)
        os._exit(0)
    return pid


def _journal_state(journals: list[str]) -> tuple[dict[str, int], dict[str, set[int]]]:
    done: dict[str, int] = {}
    tried: dict[str, set[int]] = {}
    for path in journals:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    continue  # torn by the kill
                kind, name, counter = line.split()
                c = int(counter)
                tried.setdefault(name, set()).add(c)
                if kind == "done":
                    done[name] = max(done.get(name, 0), c)
    return done, tried


def test_random_power_cuts(tmp_path):
    d = str(tmp_path / "stack")
    os.makedirs(d)
    Stack.open(d).close()
    journals = [str(tmp_path / f"journal-{w}") for w in range(3)]
    rnd = random.Random(1234)
    rounds = 6
    for rnd_no in range(rounds):
        pids = [_spawn(_writer, d, w, journals[w], rnd.randrange(1 << 30)) for w in range(3)]
        pids.append(_spawn(_compactor, d))
        time.sleep(rnd.uniform(0.15, 0.5))  # let them run; the cut comes at a random point
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:
            os.waitpid(pid, 0)
        # Nothing runs now: stale locks of the dead are safe to remove.
        with Stack.open(d, StackOptions(auto_compact=False)) as st:
            st.clean(stale_locks_older_than=0)
            refs = {r.name: oid_number(r.value) for r in st.refs()}
            for t in st.tables:  # every listed table opens and decodes
                sum(1 for _ in t.refs())
            listed = set(st.names)
        done, tried = _journal_state(journals)
        for name, counter in done.items():
            assert name in refs, f"round {rnd_no}: committed {name} lost"
            assert refs[name] >= counter, f"round {rnd_no}: {name} went back in time"
        for name, value in refs.items():
            assert value in tried.get(name, ()), f"round {rnd_no}: {name}={value} never written"
            top = st.next_update_index() - 1
        for e in sorted(set(os.listdir(d)) - listed - {"tables.list"}):
            # only a table named but not yet listed by a killed writer may remain; clean()
            # removes it once the stack has moved past its update index
            assert int(e.split("-")[0], 16) > top, f"round {rnd_no}: {e} left behind"
    done, _ = _journal_state(journals)
    assert sum(1 for _ in done) > 0, "writers never committed anything"


def test_clean_removes_stale_locks_only_when_asked(tmp_path):
    d = str(tmp_path / "s")
    os.makedirs(d)
    with Stack.open(d) as st:
        with st.transaction() as tx:
            tx.update("refs/heads/a", oid(1))
        stale = os.path.join(d, "tables.list.lock")
        open(stale, "w").close()
        with pytest.raises(LockError):
            st.clean()
        old = time.time() - 3600
        os.utime(stale, (old, old))
        assert "tables.list.lock" in st.clean(stale_locks_older_than=600)
        assert not os.path.exists(stale)
        with st.transaction() as tx:
            tx.update("refs/heads/b", oid(2))
        assert st.read_ref("refs/heads/b").value == oid(2)
