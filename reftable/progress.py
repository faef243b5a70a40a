"""A minimal progress display for long operations, shown only on a terminal."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Optional, TextIO

__all__ = ["Progress"]


class Progress:
    """``with Progress("compacting"): ...`` prints a status line on stderr when it is a
    terminal (and nothing otherwise); :meth:`update` redraws it with a count."""

    def __init__(self, title: str, total: Optional[int] = None, enabled: bool = True,
                 stream: Optional[TextIO] = None):
        self.title = title
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self._start = 0.0
        self._last = 0.0

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        self._draw(0)
        return self

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._draw(done)

    def _draw(self, done: int) -> None:
        if not self.enabled:
            return
        self._last = time.monotonic()
        if self.total:
            width = 30
            filled = int(width * min(done, self.total) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            msg = f"\r{self.title} [{bar}] {done}/{self.total}"
        else:
            msg = f"\r{self.title}... {done if done else ''}"
        self.stream.write(msg)
        self.stream.flush()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self.enabled:
            took = time.monotonic() - self._start
            state = "done" if exc_type is None else "failed"
            self.stream.write(f"\r{self.title}: {state} in {took:.2f}s\033[K\n")
            self.stream.flush()
