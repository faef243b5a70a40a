"""One exception hierarchy, mirroring the error kinds of Git's reftable library.

Every error raised by this package derives from :class:`ReftableError`, so callers can
catch everything from us with one ``except``. I/O failures are :class:`ReftableIOError`,
which is also an :class:`OSError` and keeps ``errno``.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "ReftableError",
    "FormatError",
    "LockError",
    "OutdatedError",
    "ApiError",
    "RefNameError",
    "EntryTooBigError",
    "ReftableIOError",
    "NotExistError",
    "ExpectationError",
    "RefConflictError",
    "ConfigError",
    "RepositoryError",
]


class ReftableError(Exception):
    """Base class of every error raised by reftable."""


class FormatError(ReftableError):
    """Corrupt, truncated or bogus data (Git's ``REFTABLE_FORMAT_ERROR``).

    ``path`` names the file (when known) and ``offset`` the byte where the problem
    was found (when known).
    """

    def __init__(self, message: str, path: Optional[str] = None, offset: Optional[int] = None):
        self.reason = message
        self.path = path
        self.offset = offset
        where = ""
        if path is not None:
            where += f"{path}: "
        if offset is not None:
            where += f"at offset {offset}: "
        super().__init__(where + message)


class LockError(ReftableError):
    """A lock file is held by someone else (Git's ``REFTABLE_LOCK_ERROR``)."""

    def __init__(self, message: str, lock_path: Optional[str] = None):
        self.lock_path = lock_path
        super().__init__(message)


class OutdatedError(ReftableError):
    """The stack changed on disk since it was loaded; reload and retry."""


class ApiError(ReftableError):
    """Misuse of the API: records out of order, update index outside the limits, ..."""


class RefNameError(ApiError):
    """A ref name that Git would refuse."""


class EntryTooBigError(ReftableError):
    """A record does not fit into an empty block of the configured size."""


class ExpectationError(ReftableError):
    """A transaction's expected old value did not match the stack (checked under the
    ``tables.list`` lock); nothing was written."""

    def __init__(self, message: str, refname: Optional[str] = None):
        self.refname = refname
        super().__init__(message)


class RefConflictError(ExpectationError):
    """A ref cannot be created because of another one (``a/b`` beside ``a``)."""


class ConfigError(ReftableError):
    """Bad syntax or a bad value in a Git config file (or in a ``-c``/environment
    override). ``path`` and ``line`` say where, when known."""

    def __init__(self, message: str, path: Optional[str] = None, line: Optional[int] = None):
        self.reason = message
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where += f"{path}: " if line is None else f"{path}:{line}: "
        super().__init__(where + message)


class RepositoryError(ReftableError):
    """No Git repository where one was looked for, or one whose refs are not stored
    in reftables (Git's "not a git repository")."""


class NotExistError(ReftableError):
    """A table named by ``tables.list`` (or a requested file) does not exist."""


class ReftableIOError(ReftableError, OSError):
    """An operating-system I/O error; ``errno`` and ``filename`` are kept."""

    def __init__(self, errno: int, strerror: str, filename: Optional[str] = None):
        OSError.__init__(self, errno, strerror, filename)

    def __str__(self) -> str:  # OSError's formatting, not Exception's
        return OSError.__str__(self)
