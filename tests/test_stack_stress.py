"""Multi-process stress: writers, a compactor and a reader on one stack at once.

Bounded: 3 writers x 40 transactions, a compactor and a reader that stop when the
writers are done; processes are joined with timeouts and killed if they straggle."""

from __future__ import annotations

import json
import multiprocessing as mp
import os

from support import stacks
from support.stacks import assert_clean, list_names, open_stack

from reftable import Table

WRITERS = 3
N = 40


def _join_all(procs, timeout):
    import time

    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    stragglers = [p for p in procs if p.is_alive()]
    for p in stragglers:
        p.kill()
        p.join(5)
    return stragglers


def test_writers_compactor_and_reader_in_parallel(tmp_path):
    d = tmp_path / "reftable"
    d.mkdir()
    open_stack(d).close()
    ctx = mp.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    results = [tmp_path / f"w{k}.txt" for k in range(WRITERS)]
    writers = [ctx.Process(target=stacks.stress_writer,
                           args=(str(d), k, N, str(results[k]), go)) for k in range(WRITERS)]
    compactor = ctx.Process(target=stacks.stress_compactor,
                            args=(str(d), str(tmp_path / "compactor.json"), go, stop))
    reader = ctx.Process(target=stacks.stress_reader,
                         args=(str(d), str(tmp_path / "reader.json"), go, stop, WRITERS, N))
    procs = [*writers, compactor, reader]
    for p in procs:
        p.start()
    go.set()
    try:
        straggling_writers = _join_all(writers, 90)
    finally:
        stop.set()
        stragglers = _join_all([compactor, reader], 30)
    assert not straggling_writers and not stragglers, "processes had to be killed"
    for k, p in enumerate(writers):
        assert p.exitcode == 0, (k, results[k].read_text() if results[k].exists() else "")
    assert compactor.exitcode == 0 and reader.exitcode == 0

    # what each writer was told had committed
    committed: dict[str, list[bytes]] = {}
    uis = []
    for path in results:
        for line in path.read_text().splitlines():
            ref, new, ui = line.split(" ")
            committed.setdefault(ref, []).append(bytes.fromhex(new))
            uis.append(int(ui))
    assert sum(len(v) for v in committed.values()) == WRITERS * N
    assert len(set(uis)) == len(uis), "two commits got the same update index"

    st = open_stack(d)
    for name in st.names:
        Table.open(d / name).close()
    assert st.names == list_names(d)
    refs = {r.name: r.value for r in st.refs()}
    assert refs == {ref: values[-1] for ref, values in committed.items()}
    for ref, values in committed.items():
        logs = list(st.logs(ref))
        # no expiry anywhere: every committed update is in the reflog, newest first,
        # each one's old value the previous one's new value
        assert [lg.new_id for lg in logs] == values[::-1]
        assert [lg.old_id for lg in logs][:-1] == values[::-1][1:]
    assert_clean(d)  # no lock files, no temp tables, no unreferenced tables

    reader_result = json.loads((tmp_path / "reader.json").read_text())
    assert reader_result["problems"] == []
    assert reader_result["reads"] > 0
    counts = json.loads((tmp_path / "compactor.json").read_text())
    assert counts["loops"] > 0
    print("compactor:", counts, "reader reads:", reader_result["reads"],
          "tables at the end:", len(st.names), "cpu count:", os.cpu_count())
