"""Large table files are opened without a mapping: their first point lookups read the
blocks they need (``pread``), anything else maps the file on first use. Both ways
must give the same records and the same errors, never leak a descriptor, and stay
correct when another thread maps or closes the table in the middle of a lookup."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, Optional

import iofaults
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import branch_refs, compiled_only, oid, write
from support.fixtures import table_cases, table_path

from reftable import RefRecord, Stack, StackOptions, Table
from reftable._impl import core as _core
from reftable.stack import read_tables_list

pytestmark = compiled_only

PREAD_LOOKUPS = 8  # (the core's constant: lookups served by reads before mapping)


@pytest.fixture
def lazy() -> Iterator[None]:
    """Every table file takes the large tables' path, however small."""
    old = _core._set_read_whole_max(0)
    yield
    _core._set_read_whole_max(old)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def key(r: Optional[RefRecord]) -> Any:
    return None if r is None else (r.name, r.update_index, r.value_type, r.value,
                                   r.target_value, r.target)


def read_lookups(path: str, names: list[str]) -> list[Any]:
    """Point lookups of ``names``, each in a freshly opened table (so each is served
    by reads, not by a mapping)."""
    out = []
    for n in names:
        with Table.open(path) as t:
            out.append(key(t.read_ref(n)))
            assert not t._core.file_mapped
    return out


def mapped_lookups(path: str, names: list[str]) -> list[Any]:
    with Table.open(path) as t:
        t.read_refs([])  # maps it, reading nothing
        assert t._core.file_mapped
        return [key(t.read_ref(n)) for n in names]


def probes(names: list[str]) -> list[str]:
    """Each name, and names just around it that are not in the table."""
    out = ["", "A", "refs/", "\U0010ffff"]
    for n in names:
        out += [n, n + "\0", n[:-1], n + "~"]
    return out


@pytest.mark.parametrize("case", table_cases(), ids=lambda c: f"{c[0]}-t{c[1]}")
def test_git_tables_read_lookups_find_what_mapped_ones_do(lazy, case):
    path = str(table_path(*case))
    with Table.open(path) as t:
        names = [r.name for r in t.refs()]
    want = mapped_lookups(path, probes(names))
    assert read_lookups(path, probes(names)) == want
    assert set(names) <= {w[0] for w in want if w is not None}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 400), block_size=st.sampled_from([128, 200, 256, 1024, 4096]),
       restart=st.integers(1, 20), picks=st.lists(st.integers(0, 10**6), max_size=12))
def test_read_lookups_through_every_index_shape(tmp_path_factory, n, block_size, restart,
                                                picks):
    """Small blocks give indexes of several levels, top levels over several blocks,
    sections without index: read lookups agree with mapped ones everywhere."""
    refs = branch_refs(n)
    path = str(tmp_path_factory.mktemp("t") / "t.ref")
    with open(path, "wb") as f:
        f.write(write(refs, block_size=block_size, restart_interval=restart))
    names = [refs[p % n].name for p in picks] + [refs[0].name, refs[-1].name]
    old = _core._set_read_whole_max(0)
    try:
        assert read_lookups(path, probes(names)) == mapped_lookups(path, probes(names))
    finally:
        _core._set_read_whole_max(old)


@settings(max_examples=150, deadline=None)
@given(at=st.integers(0, 10**9), xor=st.integers(1, 255), pick=st.integers(0, 299))
def test_damaged_tables_fail_alike_read_or_mapped(tmp_path_factory, at, xor, pick):
    refs = branch_refs(300)
    data = bytearray(write(refs, block_size=256))
    data[at % len(data)] ^= xor
    path = str(tmp_path_factory.mktemp("t") / "t.ref")
    with open(path, "wb") as f:
        f.write(data)
    names = probes([refs[pick].name])

    def outcome(run: Any) -> Any:
        try:
            return run(path, names)
        except Exception as e:  # noqa: BLE001 -- the outcome compared is the error
            return type(e), str(e)

    old = _core._set_read_whole_max(0)
    try:
        assert outcome(read_lookups) == outcome(mapped_lookups)
    finally:
        _core._set_read_whole_max(old)


def big_stack(tmp_path) -> str:
    d = str(tmp_path / "s")
    os.mkdir(d)
    with Stack.open(d, StackOptions(auto_compact=False)) as st:
        with st.transaction() as tx:
            for i in range(3000):
                tx.update(f"refs/heads/big/{i:05d}", oid(i))
    return d


def test_the_first_lookups_read_then_the_table_is_mapped(tmp_path):
    d = big_stack(tmp_path)
    with Stack.open(d) as st:
        (t,) = st.tables
        for i in range(PREAD_LOOKUPS):
            assert st.read_ref(f"refs/heads/big/{i * 7:05d}").value == oid(i * 7)
            assert not t._core.file_mapped
        assert st.read_ref("refs/heads/big/02999").value == oid(2999)
        assert t._core.file_mapped


def test_no_descriptor_outlives_its_table(tmp_path):
    d = big_stack(tmp_path)
    before = open_fds()
    with Stack.open(d) as st:
        assert open_fds() == before + 1  # the large table, not mapped yet
        st.read_ref("refs/heads/big/00001")
        assert open_fds() == before + 1
    assert open_fds() == before  # closed with the table, never mapped
    with Stack.open(d) as st:
        assert len(list(st.refs())) == 3000
        assert open_fds() == before  # closed once mapped
    for _ in range(3):  # mapped by the lookups after the first ones
        with Stack.open(d) as st:
            for i in range(PREAD_LOOKUPS + 2):
                st.read_ref(f"refs/heads/big/{i:05d}")
    assert open_fds() == before


@contextlib.contextmanager
def in_another_thread_at(op: str, action: Callable[[], None]) -> Iterator[threading.Event]:
    """At the first call of I/O operation ``op`` in the block, run ``action`` in
    another thread and wait for it there: the interleaving happens exactly at that
    call. Yields the event set once ``action`` is done."""
    started, done = threading.Event(), threading.Event()

    def run() -> None:
        action()
        done.set()

    def interfere(o: str) -> None:
        if o == op and not started.is_set():
            started.set()
            threading.Thread(target=run).start()
            assert done.wait(10)

    iofaults.HOOK.on_call = interfere
    try:
        yield done
    finally:
        iofaults.HOOK.on_call = None


@pytest.mark.parametrize("action", ["map", "close", "map-and-close"])
def test_another_thread_maps_or_closes_the_table_mid_lookup(tmp_path, action):
    """While a lookup waits on one of its reads, another thread maps the table (by
    iterating it) and/or closes it: the lookup goes on reading its open descriptor
    and finds the ref; the descriptor is closed once both are done."""
    d = big_stack(tmp_path)
    before = open_fds()
    st = Stack.open(d)
    table = st.tables[0]
    got: list[Any] = []

    def other() -> None:
        if action != "close":
            got.append(len(list(table.refs())))
            assert table._core.file_mapped
        if action != "map":
            table.close()

    with in_another_thread_at("read", other) as done:
        rec = table.read_ref("refs/heads/big/01234")
    assert done.is_set()
    assert rec is not None and rec.value == oid(1234)
    assert got == ([] if action == "close" else [3000])
    st.close()
    table.close()  # (again, for the cases that did not)
    assert open_fds() == before


def test_two_threads_map_the_table_at_once(tmp_path):
    """Mapping lets other threads run: one that maps the table meanwhile must not
    close the descriptor under the first, and only one mapping is kept."""
    d = big_stack(tmp_path)
    before = open_fds()
    st = Stack.open(d)
    table = st.tables[0]
    got: list[int] = []
    with in_another_thread_at("mmap", lambda: got.append(len(list(table.refs())))) as done:
        assert len(list(table.refs())) == 3000
    assert done.is_set() and got == [3000]
    assert iofaults.io_counts()["mmap"] == 2
    st.close()
    table.close()
    assert open_fds() == before


def test_unmapped_tables_are_bounded(tmp_path):
    """Each unmapped table holds a descriptor: past the limit, tables are mapped when
    opened (a process holding many handles must not run out of descriptors)."""
    d = big_stack(tmp_path)
    path = os.path.join(d, read_tables_list(d)[0])
    before = open_fds()
    old = _core._set_unmapped_max(2)
    try:
        tables = [Table.open(path) for _ in range(5)]
        assert [t._core.file_mapped for t in tables] == [False, False, True, True, True]
        assert open_fds() == before + 2
        assert all(t.read_ref("refs/heads/big/00042").value == oid(42) for t in tables)
        tables[0].count_refs()  # mapped: its descriptor is closed, one more may be held
        assert open_fds() == before + 1
        tables.append(Table.open(path))
        assert not tables[-1]._core.file_mapped
        for t in tables:
            t.close()
        assert open_fds() == before
    finally:
        _core._set_unmapped_max(old)
