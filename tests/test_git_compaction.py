"""Our compaction reproduces Git's byte for byte.

The `many-tables` and `packed` fixtures are the same history, before and after
`git pack-refs` (a full compaction by Git). Compacting the former must give exactly
the table Git wrote for the latter: same records, same tombstone and reflog handling,
same re-normalised reflog messages, same layout.
"""

from __future__ import annotations

import os
import shutil

import pytest
from support.fixtures import SCENARIOS, load_expected, stack_dir, table_path

from reftable import Stack, StackOptions

pytestmark = pytest.mark.skipif(not {"many-tables", "packed"} <= set(SCENARIOS),
                                reason="Git fixtures missing")


def test_compact_all_of_many_tables_is_gits_packed_table(tmp_path):
    d = str(tmp_path / "stack")
    shutil.copytree(stack_dir("many-tables"), d)
    with Stack.open(d, StackOptions(auto_compact=False)) as st:
        assert len(st.names) == 9
        st.compact_all()
        assert len(st.names) == 1
        with open(os.path.join(d, st.names[0]), "rb") as f:
            ours = f.read()
        name = st.names[0]
    packed = load_expected("packed")
    assert ours == table_path("packed", 0).read_bytes()
    # the name carries the same update-index range (only the random suffix differs)
    assert name.rsplit("-", 1)[0] == packed["tables_list"][0].rsplit("-", 1)[0]


def test_exact_mode_keeps_messages_as_stored(tmp_path):
    d = str(tmp_path / "stack")
    shutil.copytree(stack_dir("many-tables"), d)
    with Stack.open(d, StackOptions(auto_compact=False)) as st:
        before = {(lg.refname, lg.update_index): lg.message for lg in st.logs()}
    with Stack.open(d, StackOptions(auto_compact=False, exact_log_message=True)) as st:
        st.compact_all()
        after = {(lg.refname, lg.update_index): lg.message for lg in st.logs()}
    assert after == before
    assert "" in before.values()  # the entry Git's compaction turns into "\n"
