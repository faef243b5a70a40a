"""A real full disk: additions and compactions on a small tmpfs until ENOSPC.

Needs permission to mount (root on Linux); skipped otherwise. The simulated variant
(ENOSPC injected through the I/O layer) lives in test_faults.py and always runs.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from support import oid

from reftable import ReftableIOError
from reftable.stack import Stack, StackOptions
from reftable.transaction import LogEntry


@pytest.fixture
def small_fs(tmp_path):
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_fill_a_small_filesystem(small_fs):
    d = os.path.join(small_fs, "reftable")
    os.mkdir(d)
    entry = LogEntry("Disk Filler", "full@example.com", "fill " + "x" * 200, 1700000000, 0)
    committed: dict[str, bytes] = {}
    failures = 0
    with Stack.open(d, StackOptions(auto_compact=True)) as st:
        i = 0
        while failures < 5 and i < 5000:
            names = [f"refs/heads/fill/{i:05d}-{k}" for k in range(20)]
            try:
                with st.transaction(log=entry) as tx:
                    for n in names:
                        tx.update(n, oid(i))
                for n in names:
                    committed[n] = oid(i)
            except ReftableIOError as e:
                assert e.errno == errno.ENOSPC, e
                failures += 1
            i += 1
        assert failures == 5, "the filesystem never filled up"
        # compaction on a full disk fails cleanly too (or succeeds if it fits)
        try:
            st.compact_all()
        except ReftableIOError as e:
            assert e.errno == errno.ENOSPC
    with Stack.open(d, StackOptions(auto_compact=False)) as st:
        assert {r.name: r.value for r in st.refs()} == committed
        st.clean()
        listed = set(st.names)
    assert sorted(set(os.listdir(d)) - listed) == ["tables.list"]
