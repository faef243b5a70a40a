"""Context-manager support shared by the objects that own files or locks."""

from __future__ import annotations

from types import TracebackType
from typing import Optional, TypeVar

_T = TypeVar("_T", bound="Closing")


class Closing:
    """``with obj: ...`` calls ``obj.close()`` on the way out, whatever happens."""

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
