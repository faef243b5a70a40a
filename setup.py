"""Build the Cython core ``reftable._core``.

Bounds checks are off in the core; every read from disk is checked explicitly there.
"""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "reftable._core",
        ["reftable/_core.pyx"],
        extra_compile_args=["-O2"],
        libraries=["z"],
        define_macros=[("ZLIB_CONST", None)],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
