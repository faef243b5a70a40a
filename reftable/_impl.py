"""The one place that picks the core: the compiled ``reftable._core`` when it is built,
else the pure-Python twin ``reftable._pure`` (same interface, see ``_core.pyi``).

``REFTABLE_PURE_PYTHON=1`` forces the twin. Every module reaches the core as
``from ._impl import core``, so copying ``reftable/`` without the compiled module still
imports.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

__all__ = ["core", "IMPLEMENTATION", "PURE_REQUESTED"]

#: True when the environment asks for the pure-Python core.
PURE_REQUESTED = os.environ.get("REFTABLE_PURE_PYTHON", "").strip() not in ("", "0")

if TYPE_CHECKING:
    from . import _core as core
else:
    core = None
    if not PURE_REQUESTED:
        try:
            from . import _core as core
        except ImportError as e:
            core = None
            from importlib.util import find_spec

            if find_spec(f"{__package__}._core") is not None:
                # built, but not for this interpreter or platform (absent is no news:
                # no compiler, or copied without it)
                import warnings

                warnings.warn(f"reftable: the compiled core does not load ({e}); using "
                              "the pure-Python core", RuntimeWarning, stacklevel=2)
    if core is None:
        from . import _pure as core

#: ``"cython"`` (the compiled core) or ``"python"`` (the pure twin).
IMPLEMENTATION: str = "python" if getattr(core, "PURE", False) else "cython"
