"""Build the compiled core ``reftable._core`` (optional).

All compile settings live here. The core is built from ``reftable/_core.pyx`` when
Cython is installed, else from the generated ``reftable/_core.c`` that the source
release ships. When it cannot be built (no C compiler, an unsupported platform) the
package still installs and runs on its pure-Python twin (``reftable._pure``), with a
message saying so; set ``REFTABLE_REQUIRE_COMPILED=1`` to make that an error instead
(wheel builds do).

Bounds checks are off in the core; every read from disk is checked explicitly there.
"""

from __future__ import annotations

import os
import sys

import setuptools
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PYX = "reftable/_core.pyx"
C_SOURCE = "reftable/_core.c"
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}
CFLAGS = ["/O2"] if sys.platform == "win32" else ["-O2"]
# the core inflates and deflates log blocks with zlib directly
EXT = {"libraries": ["z"], "define_macros": [("ZLIB_CONST", None)],
       "extra_compile_args": CFLAGS}
# the SPDX expression (metadata ``License-Expression``) where setuptools supports it
LICENSE = "BSD-3-Clause"
if int(setuptools.__version__.split(".")[0]) >= 77:
    LICENSE_META = {"license_expression": LICENSE}
else:
    LICENSE_META = {"license": LICENSE}
REQUIRE = os.environ.get("REFTABLE_REQUIRE_COMPILED", "") not in ("", "0")
FALLBACK = (
    "reftable: the compiled core could not be built ({why}); installing the pure-Python "
    "core instead (same API and files, slower: see docs/vendoring.md)."
)


def extensions() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:
        cythonize = None
    if cythonize is not None and os.path.exists(PYX):
        ext = Extension("reftable._core", [PYX], **EXT)
        return list(cythonize([ext], compiler_directives=DIRECTIVES))
    if os.path.exists(C_SOURCE):
        return [Extension("reftable._core", [C_SOURCE], **EXT)]
    if REQUIRE:
        raise SystemExit("reftable: neither Cython nor the generated reftable/_core.c")
    print(FALLBACK.format(why="neither Cython nor the generated C source"), file=sys.stderr)
    return []


class OptionalBuildExt(build_ext):
    """``build_ext`` that falls back to the pure-Python core when compiling fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # no compiler at all: distutils' errors vary by platform
            self._fallback(e)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:
            self._fallback(e)

    def _fallback(self, e: Exception) -> None:
        if REQUIRE:
            raise e
        print(FALLBACK.format(why=f"{type(e).__name__}: {e}"), file=sys.stderr)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt}, **LICENSE_META)
