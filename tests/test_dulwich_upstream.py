"""dulwich's own ref-container tests, run against our reftable-backed container.

dulwich ships its test suite only in the source distribution, so CI downloads that from
PyPI, unpacks it and points ``DULWICH_SRC`` at it (see ``.ci/run``); without it this
module is skipped. The shared ``RefsContainerTests`` mixin of dulwich's
``tests/test_refs.py`` is subclassed with a ``setUp`` that builds the same refs in a
reftable stack (HEAD as a symref to master, as in dulwich's disk tests). Nothing of
dulwich is copied into this repository.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile

import pytest

pytest.importorskip("dulwich")
SRC = os.environ.get("DULWICH_SRC")
if not SRC or not os.path.isfile(os.path.join(SRC, "tests", "test_refs.py")):
    pytest.skip("DULWICH_SRC (an unpacked dulwich sdist) is not set", allow_module_level=True)


def _load_upstream():
    # dulwich's tests are a package named "tests", like ours: load it under another name.
    name = "_dulwich_upstream_tests"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(SRC, "tests", "__init__.py"),
            submodule_search_locations=[os.path.join(SRC, "tests")])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[name] = pkg
        spec.loader.exec_module(pkg)
    return importlib.import_module(name + ".test_refs")


upstream = _load_upstream()

from reftable.contrib.dulwich import ReftableRefsContainer  # noqa: E402
from reftable.stack import Stack, StackOptions  # noqa: E402


class ReftableUpstreamRefsTests(upstream.RefsContainerTests, upstream.TestCase):
    def setUp(self) -> None:
        upstream.TestCase.setUp(self)
        tmp = tempfile.mkdtemp(prefix="reftable-dulwich-")
        self.addCleanup(shutil.rmtree, tmp, True)
        opts = StackOptions(fsync=False)
        with Stack.open(tmp, opts) as st, st.transaction() as tx:
            for name, value in upstream._TEST_REFS.items():
                if name == b"HEAD":
                    tx.symref("HEAD", "refs/heads/master")
                elif value.startswith(b"ref: "):
                    tx.symref(name.decode(), value[5:].decode())
                else:
                    tx.update(name.decode(), value.decode())
        self._refs = ReftableRefsContainer(tmp, stack_options=opts)
        self.addCleanup(self._refs.close)

