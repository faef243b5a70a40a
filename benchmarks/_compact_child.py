"""Child process of the compact_all benchmark: open a stack, ``compact_all`` it, print
one JSON line with the time and the memory figures.

Peak RSS growth = ``VmHWM`` (the peak resident set of this process, from
``/proc/self/status``) after minus before the compaction; the process has done nothing
but import and open the stack before. ``ru_maxrss`` is reported too but is useless
here: Linux carries the parent's peak over fork + exec, and the parent holds the data
sets. With ``--sample`` a thread also polls ``/proc/self/status`` every millisecond to
split the peak into anonymous memory and file-backed pages (the mmap of the input
tables). ``--no-index``: write the compacted table without the obj index.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import threading
import time


def status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])  # KiB
    return out


def main() -> None:
    from reftable.stack import Stack, StackOptions

    path = sys.argv[1]
    sample = "--sample" in sys.argv[2:]
    st = Stack.open(path, StackOptions(index_objects="--no-index" not in sys.argv[2:]))
    input_bytes = sum(t.size for t in st.tables)
    tables_before = len(st.tables)
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    s0 = status()
    peaks = {"RssAnon": s0["RssAnon"], "RssFile": s0["RssFile"]}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            s = status()
            for k in peaks:
                peaks[k] = max(peaks[k], s[k])
            time.sleep(0.001)

    th = threading.Thread(target=poll, daemon=True) if sample else None
    if th is not None:
        th.start()
    t0 = time.perf_counter()
    st.compact_all()
    t1 = time.perf_counter()
    if th is not None:
        stop.set()
        th.join()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s1 = status()
    tables_after = len(st.tables)
    output_bytes = sum(t.size for t in st.tables)
    refs_after = sum(1 for _ in st.tables[0].ref_tuples()) if st.tables else 0
    st.close()
    print(json.dumps({
        "seconds": t1 - t0,
        "tables_before": tables_before,
        "tables_after": tables_after,
        "refs_after": refs_after,
        "input_bytes": input_bytes,
        "output_bytes": output_bytes,
        "maxrss_before_kib": before,
        "maxrss_after_kib": after,
        "maxrss_growth_mib": (after - before) / 1024,
        "vmhwm_before_kib": s0["VmHWM"],
        "vmhwm_after_kib": s1["VmHWM"],
        "vmhwm_growth_mib": (s1["VmHWM"] - s0["VmHWM"]) / 1024,
        "peak_anon_growth_mib": (peaks["RssAnon"] - s0["RssAnon"]) / 1024 if sample else None,
        "peak_file_growth_mib": (peaks["RssFile"] - s0["RssFile"]) / 1024 if sample else None,
        "pid": os.getpid(),
    }))


if __name__ == "__main__":
    main()
