"""Fault and crash injection for tests, through the core's I/O hook.

``set_fault(op, n, err)`` makes the n-th call of ``op`` (counted from then) fail once
with ``err``; ``set_crash(op, n)`` kills the process (SIGKILL) right before it;
``io_counts()`` counts calls per operation since ``reset_io_counts()``; ``HOOK.on_call``
(when set) is called with each operation's name first: a test's point of interference.
Operations are the names of ``reftable._core.IO_OPS``. The hook is installed by
``tests/conftest.py``.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable
from typing import Optional

from reftable._impl import core as _core


class _Hook:
    def __init__(self) -> None:
        self.calls: dict[str, int] = dict.fromkeys(_core.IO_OPS, 0)
        self.faults: dict[str, tuple[int, int]] = {}
        self.crashes: dict[str, int] = {}
        self.on_call: Optional[Callable[[str], None]] = None

    def __call__(self, op: str) -> int:
        self.calls[op] += 1
        if self.on_call is not None:
            self.on_call(op)
        left = self.crashes.get(op)
        if left is not None:
            if left <= 1:
                os.kill(os.getpid(), signal.SIGKILL)
            self.crashes[op] = left - 1
        fault = self.faults.get(op)
        if fault is not None:
            left, err = fault
            if left <= 1:
                del self.faults[op]
                return err
            self.faults[op] = (left - 1, err)
        return 0


HOOK = _Hook()


def install() -> None:
    _core._set_io_hook(HOOK)


def _check(op: str, nth: int) -> None:
    if op not in _core.IO_OPS:
        raise ValueError(f"unknown I/O operation {op!r}")
    if nth < 1:
        raise ValueError(f"nth must be >= 1, not {nth}")


def set_fault(op: str, nth: int, err: int = errno.EIO) -> None:
    _check(op, nth)
    HOOK.faults[op] = (nth, err)


def set_crash(op: str, nth: int) -> None:
    _check(op, nth)
    HOOK.crashes[op] = nth


def clear_faults() -> None:
    HOOK.faults.clear()
    HOOK.crashes.clear()
    HOOK.on_call = None


def io_counts() -> dict[str, int]:
    return dict(HOOK.calls)


def reset_io_counts() -> None:
    for op in HOOK.calls:
        HOOK.calls[op] = 0
