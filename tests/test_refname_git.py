"""Ref names against Git (fixture ``refnames``): every ``check-ref-format`` verdict, and
every ``update-ref``/``symbolic-ref`` verdict that comes from the name. Refusals that
come from the repository (D/F conflicts, existing refs, entries too large for a block)
are shown to be refused by a transaction on the fixture's main stack as well."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from support.fixtures import extract_repo, load_repo_expected

from reftable import (
    EntryTooBigError,
    ExpectationError,
    LogEntry,
    RefConflictError,
    RefNameError,
    Stack,
)
from reftable.reflog import LogPolicy
from reftable.refname import (
    check_delete_ref_name,
    check_reflog_name,
    check_refname_format,
    check_symbolic_ref_name,
    check_symref_target,
    check_update_ref_name,
    is_per_worktree_ref,
    is_pseudo_ref,
    is_root_ref,
    is_root_ref_syntax,
    is_special_ref,
    parse_worktree_ref,
    refname_is_safe,
)

SCENARIO = "refnames"
_D = load_repo_expected(SCENARIO)
RESULTS = _D["results"]
PROBES = ("update_ref", "update_ref_stdin", "update_ref_stdin_z", "symbolic_ref")
# Refusals that are about the name (Git's messages)
NAME_REFUSALS = ("refusing to update ref with bad name", "refusing to update pseudoref",
                 "invalid ref format")
# `update-ref --stdin` without -z splits its line at whitespace: a name with a space,
# tab or newline never reaches the ref code (the -z probe shows the name's verdict)
STDIN_TOKENIZING = ("expected SP but got", "invalid <new-oid>", "zero <new-oid>",
                    "missing <new-oid>")


def _id(r: dict[str, Any]) -> str:
    return repr(r["name"])[:60]


def _validator(probe: str) -> Callable[[str], str]:
    return check_symbolic_ref_name if probe == "symbolic_ref" else check_update_ref_name


def _accepts(probe: str, name: str) -> bool:
    try:
        _validator(probe)(name)
    except RefNameError:
        return False
    return True


@pytest.mark.parametrize("r", RESULTS, ids=_id)
def test_check_ref_format_verdicts(r):
    for key, onelevel in (("check_ref_format", False),
                          ("check_ref_format_allow_onelevel", True)):
        if r[key] == 129:  # a leading '-' is an option to git, not a name
            assert r["name"].startswith("-")
            continue
        problem = check_refname_format(r["name"], allow_onelevel=onelevel)
        assert (problem is None) == (r[key] == 0), (key, problem)
        # the byte-by-byte model of the differential test below agrees with Git too
        model = _git_check_refname_format(r["name"].encode(), onelevel, False)
        assert model == (r[key] == 0)


def _classify(probe: str, name: str, res: dict[str, Any]) -> str:
    rc, err = res["rc"], res["stderr_first_line"]
    if rc == 0:
        return "accepted"
    if rc == 129:
        return "option"
    if any(m in err for m in NAME_REFUSALS):
        return "name"
    if "\n" in name and probe == "update_ref":
        return "name"  # the message is cut at the newline of the quoted name
    if probe == "update_ref_stdin" and any(m in err for m in STDIN_TOKENIZING):
        return "tokenizing"
    if "exists; cannot create" in err:
        return "conflict"
    if "reference already exists" in err:
        return "exists"
    if "entry too large" in err or (len(err) >= 4095 and len(name) > 4000):
        return "too-large"  # (Git cuts its messages at 4095 bytes)
    if "transaction prepare: I/O error" in err:
        return "no-such-worktree"
    raise AssertionError(f"unclassified refusal: {err!r}")


@pytest.mark.parametrize("r", RESULTS, ids=_id)
def test_write_verdicts_from_the_name(r):
    name = r["name"]
    for probe in PROBES:
        kind = _classify(probe, name, r[probe])
        if kind == "option":
            assert name.startswith("-")
        elif kind == "tokenizing":
            assert any(c in name for c in " \t\n")
        elif kind == "name":
            assert not _accepts(probe, name), probe
        else:  # accepted, or refused for a reason other than the name
            assert _accepts(probe, name), (probe, kind)
        if kind == "no-such-worktree":
            assert parse_worktree_ref(name)[:2] == ("other", "nonexistent")


@pytest.fixture(scope="module")
def main_stack(tmp_path_factory):
    d: Path = tmp_path_factory.mktemp("refnames")
    extract_repo(SCENARIO, d)
    with Stack.open(d / "main" / ".git" / "reftable") as st:
        yield st


def _routed_elsewhere(name: str) -> bool:
    # main-worktree/… and worktrees/<id>/… names live in other stacks (Part B's routing)
    return parse_worktree_ref(name)[0] in ("main", "other")


@pytest.mark.parametrize("r", [r for r in RESULTS
                               if any(_classify(p, r["name"], r[p]) in
                                      ("conflict", "exists", "too-large") for p in PROBES)],
                         ids=_id)
def test_repository_refusals_are_refused_by_transactions(main_stack, r):
    """The same refusals through a transaction on the main stack (nothing is written)."""
    name, oid = r["name"], _D["oid"]
    if _routed_elsewhere(name):
        pytest.skip("routed to another worktree's stack")
    before = main_stack.names
    for probe in PROBES:
        expected = {"conflict": RefConflictError, "exists": ExpectationError,
                    "too-large": EntryTooBigError}.get(_classify(probe, name, r[probe]))
        if expected is None:
            continue
        tx = main_stack.transaction()
        if probe == "symbolic_ref":
            tx.symref(name, "refs/heads/main")
        elif probe == "update_ref":
            tx.update(name, oid)
        else:
            tx.create(name, oid)  # --stdin's `create`: the ref must not exist
        with pytest.raises(expected):
            tx.commit()
    assert main_stack.names == before


@pytest.mark.parametrize("name,kind,wt,bare", [
    ("HEAD", "current", None, "HEAD"),
    ("ORIG_HEAD", "current", None, "ORIG_HEAD"),
    ("refs/bisect/x", "current", None, "refs/bisect/x"),
    ("refs/worktree/a/b", "current", None, "refs/worktree/a/b"),
    ("refs/rewritten/x", "current", None, "refs/rewritten/x"),
    ("refs/heads/main", "shared", None, "refs/heads/main"),
    ("refs/worktree", "shared", None, "refs/worktree"),
    ("refs/bisectx/y", "shared", None, "refs/bisectx/y"),
    ("main-worktree/HEAD", "main", None, "HEAD"),
    ("main-worktree/refs/bisect/x", "main", None, "refs/bisect/x"),
    ("main-worktree/refs/heads/x", "shared", None, "main-worktree/refs/heads/x"),
    ("main-worktree/x", "shared", None, "main-worktree/x"),
    ("worktrees/x/HEAD", "other", "x", "HEAD"),
    ("worktrees/x/refs/worktree/y", "other", "x", "refs/worktree/y"),
    ("worktrees/x/refs/heads/y", "shared", None, "worktrees/x/refs/heads/y"),
    ("worktrees/x", "other", "x", ""),
    ("worktrees/x/main-worktree/HEAD", "shared", None, "worktrees/x/main-worktree/HEAD"),
    ("main-worktree/worktrees/x/HEAD", "shared", None, "main-worktree/worktrees/x/HEAD"),
])
def test_parse_worktree_ref(name, kind, wt, bare):
    assert parse_worktree_ref(name) == (kind, wt, bare)


def test_root_and_pseudo_refs():
    for n in ("HEAD", "ORIG_HEAD", "FOO_HEAD", "_HEAD", "AUTO_MERGE", "BISECT_EXPECTED_REV",
              "NOTES_MERGE_PARTIAL", "NOTES_MERGE_REF", "MERGE_AUTOSTASH"):
        assert is_root_ref(n), n
    for n in ("FETCH_HEAD", "MERGE_HEAD", "FOO", "head", "FOO-HEAD1", "refs/heads/x"):
        assert not is_root_ref(n), n
    assert is_root_ref_syntax("FOO-BAR_") and is_root_ref_syntax("")
    assert not is_root_ref_syntax("Foo")
    assert is_pseudo_ref("FETCH_HEAD") and is_special_ref("MERGE_HEAD")
    assert not is_pseudo_ref("ORIG_HEAD")
    assert is_per_worktree_ref("refs/bisect/x") and not is_per_worktree_ref("refs/bisect")


@pytest.mark.parametrize("name,safe", [
    ("refs/heads/a..b", True), ("refs/heads/x.lock", True), ("refs/heads/a\x01", True),
    ("refs/heads/...", True), ("refs/worktree", True), ("HEAD", True), ("FOO_BAR", True),
    ("refs/", False), ("refs/heads/", False), ("refs//x", False), ("refs/./x", False),
    ("refs/x/..", False), ("refs/../x", False), ("refs/x/.", False), ("FOO-BAR", False),
    ("foo", False), ("", False), ("HEAD/x", False), ("main-worktree/HEAD", False),
])
def test_refname_is_safe(name, safe):
    assert refname_is_safe(name) is safe
    assert (check_delete_ref_name(name) == name) if safe else True


def test_refspec_patterns():
    assert check_refname_format("refs/heads/*", refspec_pattern=True) is None
    assert check_refname_format("refs/heads/a*b/c", refspec_pattern=True) is None
    assert check_refname_format("refs/*/x/*", refspec_pattern=True) is not None
    assert check_refname_format("refs/heads/*") is not None


def test_symref_targets():
    assert check_symref_target("refs/heads/main", name="HEAD") == "refs/heads/main"
    assert check_symref_target("ORIG_HEAD") == "ORIG_HEAD"
    with pytest.raises(RefNameError, match="outside of refs/"):
        check_symref_target("ORIG_HEAD", name="HEAD")
    with pytest.raises(RefNameError):
        check_symref_target("refs/heads/a..b")


def test_bytes_names_are_checked_as_bytes():
    assert check_refname_format(b"refs/heads/\xff\xfe") is None
    assert check_refname_format("refs/heads/\udcff") is None  # surrogate-escaped byte
    assert check_refname_format(b"refs/heads/a\x00b") is not None


def test_reflog_command_names():
    """``git reflog exists`` wants a well-formed name (one level allowed); ``git reflog
    write`` a root ref or a well-formed name of two levels or more."""
    assert check_reflog_name("foo") == "foo"
    assert check_reflog_name("HEAD", write=True) == "HEAD"
    assert check_reflog_name("refs/heads/x", write=True) == "refs/heads/x"
    for bad, write in (("refs/heads/a..b", False), ("foo", True), ("FETCH_HEAD", True),
                       ("refs/heads/x.lock", True)):
        with pytest.raises(RefNameError):
            check_reflog_name(bad, write=write)


# -- differential: the fast checks against a literal transcription of Git's loop ----------

def _git_check_refname_format(name: bytes, onelevel: bool, pattern: bool) -> bool:
    """refs.c's check_or_sanitize_refname/check_refname_component, one byte at a time
    (the reference the substring-based implementation must agree with)."""
    if name == b"@":
        return False
    count = 0
    i = 0
    while True:
        start, last = i, 0
        while True:
            ch = name[i] if i < len(name) else 0
            if ch in (0, 0x2F):
                break
            if ch < 0x20 or ch in b" :?[\\^~\x7f":
                return False
            if ch == 0x2E and last == 0x2E:
                return False
            if ch == 0x7B and last == 0x40:
                return False
            if ch == 0x2A:
                if not pattern:
                    return False
                pattern = False
            last = ch
            i += 1
        comp = name[start:i]
        if not comp or comp[0] == 0x2E or comp.endswith(b".lock"):
            return False
        count += 1
        if i >= len(name):
            break
        i += 1
    if name.endswith(b"."):
        return False
    return onelevel or count >= 2


@settings(max_examples=800, deadline=None)
@given(name=hs.lists(hs.sampled_from(["a", "Z", "/", ".", "@", "{", "}", "*", "lock", ".lock",
                                      "..", " ", "~", ":", "\x01", "\x7f", "ü", "-", "refs/",
                                      "HEAD"]), max_size=12).map("".join),
       onelevel=hs.booleans(), pattern=hs.booleans())
def test_check_refname_format_matches_gits_loop(name, onelevel, pattern):
    ours = check_refname_format(name, allow_onelevel=onelevel, refspec_pattern=pattern)
    assert (ours is None) == _git_check_refname_format(name.encode(), onelevel, pattern)


# -- what the accepted writes store (main stack, names not routed elsewhere) ---------------

def _stored_cases() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for r in RESULTS:
        name = r["name"]
        if _routed_elsewhere(name) or name in ("HEAD", "refs/heads/main"):
            continue  # HEAD dereferences; HEAD's branch also logs on HEAD (Git's porcelain)
        for probe in ("update_ref", "symbolic_ref"):
            res = r[probe]
            if res["rc"] == 0 and all(s["stack"] == "main/.git/reftable" for s in res["stored"]):
                out.append((probe, r))
    return out


@pytest.fixture(scope="module")
def base_copy(tmp_path_factory):
    d: Path = tmp_path_factory.mktemp("refnames-base")
    extract_repo(SCENARIO, d)
    return d / "main" / ".git" / "reftable"


@pytest.mark.parametrize("probe,r", _stored_cases(),
                         ids=[f"{p}:{_id(r)}" for p, r in _stored_cases()])
def test_accepted_writes_store_what_git_stored(tmp_path, base_copy, probe, r):
    """``git update-ref NAME OID`` / ``git symbolic-ref NAME refs/heads/main`` as one
    transaction under the repository's log policy: the table added holds the records
    Git's did (ref record, and a log record exactly where Git logged)."""
    d = tmp_path / "reftable"
    shutil.copytree(base_copy, d)
    entry = LogEntry("C O Mitter", "committer@example.com", "", 1710000000, 0)
    with Stack.open(d, auto_compact=False, fsync=False) as st:
        n0 = len(st.names)
        with st.transaction(log=entry, log_policy=LogPolicy()) as tx:
            if probe == "update_ref":
                tx.update(r["name"], _D["oid"])
            else:
                tx.symref(r["name"], "refs/heads/main")
        got = []
        for t in st.tables[n0:]:
            for ref in t.refs():
                rec = {"stack": "main/.git/reftable", "name": ref.name,
                       "type": ref.value_type.name.lower()}
                if ref.target is not None:
                    rec["target"] = ref.target
                got.append(rec)
            for lg in t.logs():
                got.append({"stack": "main/.git/reftable", "log_for": lg.refname,
                            "type": "log-deletion" if lg.is_deletion else "log-update"})
    def key(rec: dict[str, Any]) -> str:
        return json.dumps(rec, sort_keys=True)

    assert sorted(got, key=key) == sorted(r[probe]["stored"], key=key)
