"""Ref name rules (Git's ``check-ref-format``), for writes through a stack."""

from __future__ import annotations

from .errors import RefNameError
from .records import NameLike, to_name

__all__ = ["check_refname", "is_valid_refname"]

_FORBIDDEN = set(" ~^:?*[\\\x7f")


def _problem(name: str) -> str | None:
    if not name:
        return "empty ref name"
    if len(name.encode("utf-8", "surrogateescape")) > 65535:
        return "ref name longer than 65535 bytes"
    if name == "@":
        return "'@' is not a valid ref name"
    if name.endswith("/") or name.startswith("/"):
        return "ref name starts or ends with '/'"
    if name.endswith("."):
        return "ref name ends with '.'"
    if "@{" in name:
        return "ref name contains '@{'"
    for ch in name:
        if ch < " " or ch in _FORBIDDEN:
            return f"ref name contains forbidden character {ch!r}"
    for comp in name.split("/"):
        if not comp:
            return "ref name contains '//'"
        if comp.startswith("."):
            return "ref name component starts with '.'"
        if comp.endswith(".lock"):
            return "ref name component ends with '.lock'"
        if ".." in comp:
            return "ref name contains '..'"
    if "/" not in name and not _is_pseudo_or_head(name):
        return "one-level ref names must be all caps (like HEAD)"
    return None


def _is_pseudo_or_head(name: str) -> bool:
    # Git's root ref syntax: ASCII upper case, '-' and '_' (HEAD, ORIG_HEAD, ...)
    return all("A" <= c <= "Z" or c in "-_" for c in name)


def is_valid_refname(name: NameLike) -> bool:
    return _problem(to_name(name)) is None


def check_refname(name: NameLike) -> str:
    """Return ``name`` as ``str`` or raise :class:`RefNameError`."""
    n = to_name(name)
    problem = _problem(n)
    if problem is not None:
        raise RefNameError(f"{n!r}: {problem}")
    return n
