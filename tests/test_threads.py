"""Several threads reading one table and one stack at once get the right answers.

Lookups reuse per-table iterator state; allocation can run the garbage collector and so
switch threads in the middle of a lookup. A very low GC threshold makes such switches
frequent here.
"""

from __future__ import annotations

import gc
import threading

from reftable import MergedTable, RefRecord, RefValueType, Table, write_table_bytes


def _tables(n_tables: int, per: int) -> list[Table]:
    out = []
    for t in range(n_tables):
        recs = [RefRecord(f"refs/heads/t{t}/b{i:05d}", t + 1, RefValueType.VAL1,
                          (t * 100_000 + i).to_bytes(4, "big") * 5) for i in range(per)]
        out.append(Table.from_bytes(write_table_bytes(
            recs, min_update_index=t + 1, max_update_index=t + 1, block_size=1024)))
    return out


def test_concurrent_lookups_and_iteration():
    tables = _tables(4, 3000)
    merged = MergedTable(tables)
    errors: list[str] = []
    start = threading.Barrier(4)

    def worker(k: int) -> None:
        start.wait()
        for rep in range(3):
            for i in range(k, 3000, 7):
                t = (i + rep) % 4
                name = f"refs/heads/t{t}/b{i:05d}"
                rec = tables[t].read_ref(name)
                if rec is None or rec.name != name:
                    errors.append(f"table lookup {name}: {rec!r}")
                rec = merged.read_ref(name)
                if rec is None or rec.value != (t * 100_000 + i).to_bytes(4, "big") * 5:
                    errors.append(f"merged lookup {name}: {rec!r}")
                if merged.read_ref(name + "-missing") is not None:
                    errors.append(f"phantom {name}")
            if sum(1 for _ in merged.refs("refs/heads/t1/")) != 3000:
                errors.append("prefix iteration")

    old = gc.get_threshold()
    gc.set_threshold(5, 1, 1)
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
    finally:
        gc.set_threshold(*old)
    assert not errors, errors[:5]
