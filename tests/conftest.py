"""pytest configuration: the report header, fault injection and shared fixtures.
Helpers live in the ``support`` package beside this file.

The suite runs against whichever core ``reftable._impl`` picked: the compiled one, or
the pure-Python twin with ``REFTABLE_PURE_PYTHON=1`` (CI runs it both ways). Tests of
compiled-only internals are marked with ``support.compiled_only``.
"""

from __future__ import annotations

import os

import iofaults
import pytest

from reftable._impl import IMPLEMENTATION
from reftable._impl import core as _core

iofaults.install()  # fault and crash injection for every test that wants it

# REFTABLE_TEST_READ_WHOLE_MAX=0 sends every table file down the path of large ones
# (opened unmapped, read block by block by the first lookups, mapped on first use):
# the whole suite can be run that way (tests/test_lazy_tables.py always covers it).
if os.environ.get("REFTABLE_TEST_READ_WHOLE_MAX") and IMPLEMENTATION == "cython":
    _core._set_read_whole_max(int(os.environ["REFTABLE_TEST_READ_WHOLE_MAX"]))


def pytest_report_header(config: pytest.Config) -> str:
    return f"reftable core: {IMPLEMENTATION} ({_core.__name__})"


@pytest.fixture(autouse=True)
def _no_faults_left():
    """Every test starts with no fault or crash armed and fresh I/O counts, and leaves
    none armed behind it."""
    iofaults.clear_faults()
    iofaults.reset_io_counts()
    yield
    iofaults.clear_faults()


@pytest.fixture
def tmp_table(tmp_path):
    """Write bytes to a file and return its path (for Table.open tests)."""

    def make(data: bytes, name: str = "t.ref") -> str:
        p = tmp_path / name
        p.write_bytes(data)
        return os.fspath(p)

    return make
