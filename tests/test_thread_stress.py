"""Thread stress on one shared handle, bounded in time (a few seconds each): writers,
readers, reloads, table iterators, auto and full compaction, clean and stats at once;
the same through one dulwich container; the same from two processes with several
threads each. At the end every update whose commit returned is on disk, the stack
opens, and no lock, temp file or stray table is left."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest
import thread_stress
from thread_stress import dulwich_threads, stack_threads, verify_stack

from reftable.stack import Stack

SECONDS = 2.5


def test_threads_on_one_stack(tmp_path):
    d = str(tmp_path)
    result = stack_threads(d, "t", SECONDS)
    figures = verify_stack(d, [result])
    print("one stack:", figures, result["counts"])
    assert figures["commits"] > 0


def test_threads_on_one_dulwich_container(tmp_path):
    pytest.importorskip("dulwich")
    d = str(tmp_path)
    result = dulwich_threads(d, "t", SECONDS)
    figures = verify_stack(d, [result])
    print("one container:", figures, result["counts"])
    assert figures["commits"] > 0


@pytest.mark.parametrize("kind", ["stack", "dulwich"])
def test_two_processes_with_threads(tmp_path, kind):
    if kind == "dulwich":
        pytest.importorskip("dulwich")
    d = tmp_path / "stack"
    d.mkdir()
    Stack.open(str(d)).close()
    ctx = mp.get_context("spawn")
    outs = [tmp_path / f"p{j}.json" for j in range(2)]
    procs = [ctx.Process(target=thread_stress.process_main,
                         args=(kind, str(d), f"p{j}", SECONDS, str(o)))
             for j, o in enumerate(outs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    stragglers = [p for p in procs if p.is_alive()]
    for p in stragglers:
        p.kill()
        p.join(5)
    assert not stragglers and all(p.exitcode == 0 for p in procs)
    results = [json.loads(o.read_text()) for o in outs]
    figures = verify_stack(str(d), results)
    print(kind, "two processes:", figures, [r["counts"] for r in results])
    assert figures["commits"] > 0
