"""``reftable demo``: a small tour on a temporary stack."""

from __future__ import annotations

import hashlib
import os
from typing import TextIO

from .records import log_move_text, short_hex
from .stack import Stack
from .table import Table
from .transaction import LogEntry

__all__ = ["run_demo"]


def _oid(i: int) -> bytes:
    return hashlib.sha1(f"demo object {i}".encode()).digest()


def run_demo(directory: str, out: TextIO) -> None:
    stack_dir = os.path.join(directory, "reftable")
    os.mkdir(stack_dir)
    def entry(message: str) -> LogEntry:
        return LogEntry("Demo User", "demo@example.com", message, 1700000000, 100)

    with Stack.open(stack_dir) as st:
        with st.transaction(log=entry("initial import")) as tx:
            for i in range(8):
                tx.create(f"refs/heads/branch-{i}", _oid(i))
            tx.create("refs/tags/v1.0", _oid(100), peeled=_oid(1))
            tx.symref("HEAD", "refs/heads/branch-0")
        for i in range(1, 6):
            with st.transaction(log=entry(f"commit {i}")) as tx:
                tx.update("refs/heads/branch-0", _oid(1000 + i), expect=st.read_ref(
                    "refs/heads/branch-0").value)  # type: ignore[union-attr]
        with st.transaction(log=entry("delete")) as tx:
            tx.delete("refs/heads/branch-7")
        out.write(f"stack in {stack_dir}\n")
        out.write(f"tables.list ({len(st.names)} tables after auto-compaction):\n")
        for name, t in zip(st.names, st.tables, strict=True):
            out.write(f"  {name}  {t.size} bytes  update indices "
                      f"[{t.min_update_index}, {t.max_update_index}]\n")
        out.write("refs (merged view):\n")
        for r in st.refs():
            if r.target is not None:
                out.write(f"  {r.name} -> {r.target}\n")
            else:
                peeled = f" (peeled {short_hex(r.target_value)})" if r.target_value else ""
                out.write(f"  {r.name} {short_hex(r.value)}{peeled}\n")
        out.write("reflog of refs/heads/branch-0 (newest first):\n")
        for lg in st.logs("refs/heads/branch-0"):
            out.write(f"  @{lg.update_index} {log_move_text(lg, 8)} {lg.message.strip()}\n")
        out.write("tip 1 is pointed at by: "
                  + ", ".join(r.name for r in st.refs_pointing_at(_oid(1))) + "\n")
        st.compact_all()
        final: Table = st.tables[0]
        out.write(f"after compact_all: {len(st.names)} table, {final.size} bytes, "
                  f"{final.count_refs()} refs, {sum(1 for _ in final.logs())} log entries\n")
