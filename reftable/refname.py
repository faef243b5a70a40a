"""Git's ref-name rules, per operation (git/git ``refs.c`` and the builtins on top).

Git does not have one rule for ref names but several, and which one applies depends on
the operation:

* :func:`check_refname_format` is ``git check-ref-format`` (and ``--allow-onelevel``,
  ``--refspec-pattern``): the syntax of a well-formed name.
* Writing an object id (``git update-ref NAME OID``, ``--stdin``'s ``update``/``create``)
  refuses the pseudorefs ``FETCH_HEAD``/``MERGE_HEAD`` and then needs
  ``check_refname_format(name, allow_onelevel=True)``: :func:`check_update_ref_name`.
* Deleting, verifying and writing a *symbolic* ref only need the name to be "safe"
  (:func:`refname_is_safe`): any name under ``refs/`` that does not escape it, or an
  all-caps root name. So ``git symbolic-ref refs/heads/a..b refs/heads/main`` works
  although ``check-ref-format`` rejects the name: :func:`check_symbolic_ref_name`,
  :func:`check_delete_ref_name`. The *target* of a symref must be well formed
  (one level allowed), and ``HEAD`` may only point into ``refs/``:
  :func:`check_symref_target`.

Names are checked as UTF-8 bytes (undecodable bytes kept as surrogate escapes), as Git
checks ``char`` strings. A NUL is refused everywhere: Git's C strings cannot hold one.
Name length is not a name rule: Git refuses a ref whose record does not fit a block
("entry too large"), which the writer reports as :class:`~reftable.EntryTooBigError`.
"""

from __future__ import annotations

import re
from typing import Literal, Optional

from .errors import RefNameError
from .records import NameLike, to_name, to_name_bytes

__all__ = [
    "check_refname_format",
    "refname_is_safe",
    "is_root_ref_syntax",
    "is_root_ref",
    "is_pseudo_ref",
    "is_special_ref",
    "is_per_worktree_ref",
    "parse_worktree_ref",
    "WorktreeRefKind",
    "check_update_ref_name",
    "check_delete_ref_name",
    "check_symbolic_ref_name",
    "check_symref_target",
    "check_reflog_name",
    "check_refname",
    "is_valid_refname",
]

# Git's refname_disposition table: characters never allowed ('*' is checked apart)
_BAD_CHAR = re.compile(rb"[\x00-\x20\x7f:?\[\\^~]")
# (substring, what it means) for Git's component rules, checked with `in` (fast)
_BAD_PARTS = (
    (b"..", "contains '..'"),
    (b"@{", "contains '@{'"),
    (b"//", "has an empty component (double '/')"),
    (b"/.", "has a component starting with '.'"),
    (b".lock/", "has a component ending with '.lock'"),
)
_ROOT_SYNTAX = re.compile(rb"[A-Z_-]*")
_SAFE_ROOT = re.compile(rb"[A-Z_]+")
_PSEUDO_REFS = frozenset({"FETCH_HEAD", "MERGE_HEAD"})
_IRREGULAR_ROOT_REFS = frozenset({"HEAD", "AUTO_MERGE", "BISECT_EXPECTED_REV",
                                  "NOTES_MERGE_PARTIAL", "NOTES_MERGE_REF",
                                  "MERGE_AUTOSTASH"})
_PER_WORKTREE_PREFIXES = ("refs/worktree/", "refs/bisect/", "refs/rewritten/")

WorktreeRefKind = Literal["current", "main", "other", "shared"]


def check_refname_format(name: NameLike, *, allow_onelevel: bool = False,
                         refspec_pattern: bool = False) -> Optional[str]:
    """Git's ``check_refname_format``: None when ``name`` is well formed, else what is
    wrong with it. ``allow_onelevel``: accept names without a ``/`` (``HEAD``, but
    also ``foo``); ``refspec_pattern``: accept one ``*`` in the whole name."""
    b = to_name_bytes(name)
    if not b:
        return "is empty"
    if b == b"@":
        return "is '@'"
    if _BAD_CHAR.search(b) is not None:
        return "contains a forbidden character"
    for part, problem in _BAD_PARTS:
        if part in b:
            return problem
    if b[0] == 0x2F or b[-1] == 0x2F:  # '/'
        return "has an empty component (leading or trailing '/')"
    if b[0] == 0x2E:  # '.'
        return "has a component starting with '.'"
    if b.endswith(b".lock"):
        return "has a component ending with '.lock'"
    if b[-1] == 0x2E:
        return "ends with '.'"
    stars = b.count(b"*")
    if stars and (not refspec_pattern or stars > 1):
        return "contains '*'" if not refspec_pattern else "contains more than one '*'"
    if not allow_onelevel and b"/" not in b:
        return "has only one component"
    return None


def refname_is_safe(name: NameLike) -> bool:
    """Git's ``refname_is_safe``: under ``refs/`` and not escaping it (no empty, ``.``
    or ``..`` component), or a root name of upper-case letters and ``_``."""
    b = to_name_bytes(name)
    if b"\0" in b:
        return False
    if b.startswith(b"refs/"):
        rest = b[5:]
        # normalize_path_copy() must leave the rest unchanged and inside refs/
        return bool(rest) and all(c not in (b"", b".", b"..") for c in rest.split(b"/"))
    return _SAFE_ROOT.fullmatch(b) is not None


def is_root_ref_syntax(name: NameLike) -> bool:
    """Only upper-case ASCII letters, ``-`` and ``_`` (Git's root-ref syntax; like
    Git, true for the empty string)."""
    return _ROOT_SYNTAX.fullmatch(to_name_bytes(name)) is not None


def is_pseudo_ref(name: NameLike) -> bool:
    """``FETCH_HEAD`` or ``MERGE_HEAD``: files Git keeps beside the ref store, never
    stored in it, refused by every ref write."""
    return to_name(name) in _PSEUDO_REFS


def is_special_ref(name: NameLike) -> bool:
    """Older Git's name for :func:`is_pseudo_ref` (refs never stored in the ref
    store)."""
    return is_pseudo_ref(name)


def is_root_ref(name: NameLike) -> bool:
    """Git's ``is_root_ref``: root-ref syntax, not a pseudoref, and ``HEAD``, a name
    ending in ``_HEAD`` or one of Git's irregular root refs (``AUTO_MERGE``, ...)."""
    n = to_name(name)
    if not is_root_ref_syntax(n) or is_pseudo_ref(n):
        return False
    return n.endswith("_HEAD") or n in _IRREGULAR_ROOT_REFS


def is_per_worktree_ref(name: NameLike) -> bool:
    """``refs/worktree/``, ``refs/bisect/`` and ``refs/rewritten/`` refs: each worktree
    has its own."""
    return to_name(name).startswith(_PER_WORKTREE_PREFIXES)


def _is_current_worktree_ref(name: str) -> bool:
    return is_root_ref_syntax(name) or is_per_worktree_ref(name)


def parse_worktree_ref(name: NameLike) -> tuple[WorktreeRefKind, Optional[str], str]:
    """Git's ``parse_worktree_ref``: ``(kind, worktree_id, bare_name)``.

    * ``"other"``: ``worktrees/<id>/<bare>`` where ``<bare>`` is a per-worktree or
      root-syntax name; ``worktrees/<id>`` alone gives ``bare_name`` ``""`` (an error
      for the caller, as in Git).
    * ``"main"``: ``main-worktree/<bare>`` with such a ``<bare>`` (id None).
    * ``"current"``: a per-worktree or root-syntax name of the current worktree.
    * ``"shared"``: everything else, stored in the common stack under its full name
      (so ``worktrees/x/refs/heads/y`` is a shared ref of that literal name).
    """
    n = to_name(name)
    if n.startswith("worktrees/"):
        rest = n[len("worktrees/"):]
        wt, slash, bare = rest.partition("/")
        if not slash:
            return ("other", wt, "")
        if _is_current_worktree_ref(bare):
            return ("other", wt, bare)
    if n.startswith("main-worktree/"):
        bare = n[len("main-worktree/"):]
        if _is_current_worktree_ref(bare):
            return ("main", None, bare)
    if _is_current_worktree_ref(n):
        return ("current", None, n)
    return ("shared", None, n)


def _refuse_pseudo(n: str) -> None:
    if is_pseudo_ref(n):
        raise RefNameError(f"refusing to update pseudoref '{n}'")


def check_update_ref_name(name: NameLike) -> str:
    """Return ``name`` (as ``str``) if Git would write an object id under it
    (``git update-ref NAME OID``, ``--stdin`` ``update``/``create``), else raise
    :class:`RefNameError`. One-level names such as ``foo`` are accepted, as Git does."""
    n = to_name(name)
    _refuse_pseudo(n)
    problem = check_refname_format(n, allow_onelevel=True)
    if problem is not None:
        raise RefNameError(f"refusing to update ref with bad name '{n}': name {problem}")
    return n


def _check_safe(name: NameLike) -> str:
    n = to_name(name)
    _refuse_pseudo(n)
    if not refname_is_safe(n):
        raise RefNameError(f"refusing to update ref with bad name '{n}': not under refs/ "
                           "(or escaping it) and not an upper-case root name")
    return n


def check_delete_ref_name(name: NameLike) -> str:
    """Return ``name`` if Git would delete or verify a ref of that name (only
    :func:`refname_is_safe` applies), else raise :class:`RefNameError`."""
    return _check_safe(name)


def check_symbolic_ref_name(name: NameLike) -> str:
    """Return ``name`` if ``git symbolic-ref NAME TARGET`` would write it, else raise
    :class:`RefNameError`. Any safe name under ``refs/`` is accepted, even one that
    ``check-ref-format`` rejects (``refs/heads/a..b``, ``refs/heads/x.lock``)."""
    return _check_safe(name)


def check_symref_target(target: NameLike, *, name: Optional[NameLike] = None) -> str:
    """Return ``target`` if Git accepts it as the target of a symbolic ref (well formed,
    one level allowed), else raise :class:`RefNameError`. With ``name`` ``"HEAD"``,
    the target must also be under ``refs/`` (``git symbolic-ref``'s rule)."""
    t = to_name(target)
    if name is not None and to_name(name) == "HEAD" and not t.startswith("refs/"):
        raise RefNameError(f"refusing to point HEAD outside of refs/: '{t}'")
    problem = check_refname_format(t, allow_onelevel=True)
    if problem is not None:
        raise RefNameError(f"refusing to use invalid ref '{t}' as a symref target: "
                           f"name {problem}")
    return t


def check_reflog_name(name: NameLike, *, write: bool = False) -> str:
    """Return ``name`` if ``git reflog exists NAME`` accepts it (well formed, one level
    allowed) or, with ``write``, ``git reflog write NAME ...`` (a root ref, or well
    formed with at least two levels); else raise :class:`RefNameError`."""
    n = to_name(name)
    if write:
        if not is_root_ref(n) and check_refname_format(n) is not None:
            raise RefNameError(f"invalid reference name: {n}")
    elif check_refname_format(n, allow_onelevel=True) is not None:
        raise RefNameError(f"invalid ref format: {n}")
    return n


def is_valid_refname(name: NameLike) -> bool:
    """True when Git would write an object id under ``name``
    (:func:`check_update_ref_name`)."""
    n = to_name(name)
    return not is_pseudo_ref(n) and check_refname_format(n, allow_onelevel=True) is None


def check_refname(name: NameLike) -> str:
    """Return ``name`` as ``str`` or raise :class:`RefNameError`: the rule for writing
    an object id (:func:`check_update_ref_name`)."""
    return check_update_ref_name(name)
