"""Progress reporting of long compactions (callback, and the terminal display)."""

from __future__ import annotations

import io
import os

from support import oid

from reftable import Stack, StackOptions
from reftable.progress import Progress


def test_compaction_reports_progress(tmp_path):
    d = str(tmp_path / "s")
    os.makedirs(d)
    with Stack.open(d, StackOptions(auto_compact=False)) as st:
        for t in range(3):
            with st.transaction() as tx:
                for i in range(50_000):
                    tx.update(f"refs/heads/t{t}/b{i:05d}", oid(t * 100_000 + i))
        calls: list[int] = []
        st.compact_all(progress=calls.append)
    assert calls == [65536, 131072]  # every 2**16 of the 150,000 records merged


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal():
    out = _Tty()
    with Progress("compacting", total=10, stream=out) as bar:
        bar.update(5)
    text = out.getvalue()
    assert "compacting" in text and "done in" in text
    quiet = io.StringIO()
    with Progress("compacting", stream=quiet) as bar:
        bar.update(1)
    assert quiet.getvalue() == ""
