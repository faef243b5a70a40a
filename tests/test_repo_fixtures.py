"""Every scenario of the Git repository fixtures (``shared/fixtures/repos``, made by
Git 2.55), reproduced through the CLI's Git verbs and the Python API.

Data-driven: every folder of the fixtures directory is a test, dispatched on
``expected.json["kind"]``; a new scenario of a known kind needs no code. Each check
compares with what Git printed or stored; the one deliberate difference (writes
through ``main-worktree/``/``worktrees/<id>/`` store the bare name, as Git documents,
not the prefixed one Git 2.55 stores) is applied to the expected records explicitly.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.fixtures import REPO_SCENARIOS as SCENARIOS
from support.fixtures import extract_repo, load_repo_expected
from support.repos import git, git_env

from reftable.jsonio import log_to_json, ref_to_json, table_to_json
from reftable.reflog import rename_ref
from reftable.refname import parse_worktree_ref
from reftable.repository import MAIN, Repository
from reftable.stack import Stack, read_tables_list
from reftable.table import Table

if not SCENARIOS:
    pytest.skip("repository fixtures not found (../shared/fixtures/repos)",
                allow_module_level=True)

CHECKERS: dict[str, Callable[[Path, dict[str, Any], Path], int]] = {}


def kind(name: str) -> Callable[[Callable[[Path, dict[str, Any], Path], int]],
                                Callable[[Path, dict[str, Any], Path], int]]:
    def register(f: Callable[[Path, dict[str, Any], Path], int]
                 ) -> Callable[[Path, dict[str, Any], Path], int]:
        CHECKERS[name] = f
        return f
    return register


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIOS)
def test_scenario(scenario: str, tmp_path: Path) -> None:
    expected = load_repo_expected(scenario)
    check = CHECKERS.get(expected["kind"])
    assert check is not None, f"no checks for kind {expected['kind']!r}"
    with git_env():
        checks = check(scenario, expected, tmp_path)
    assert checks > 0


# -- shared views -----------------------------------------------------------------------


def mode(path: Path) -> str:
    return f"{stat.S_IMODE(os.stat(path).st_mode):04o}"


def check_stack_dump(d: Path, key: str, want: dict[str, Any]) -> int:
    """A stack dump (``tables`` + ``merged``) read back by our reader."""
    st = Stack.open(str(d / key), create=False)
    try:
        got_tables = []
        for name in read_tables_list(str(d / key)):
            with Table.open(str(d / key / name)) as t:
                got_tables.append(table_to_json(t))
        assert got_tables == want["tables"], key
        assert [ref_to_json(r) for r in st.refs()] == want["merged"]["refs"], key
        assert [log_to_json(lg) for lg in st.logs()] == want["merged"]["logs"], key
    finally:
        st.close()
    return 3


def check_reflog_show(path: Path, name: str, want: Any) -> None:
    r = git(path, "reflog", "show", "--format=%H %gs", name)
    if isinstance(want, dict):
        assert (r.rc, r.lines) == (want["rc"], want["lines"]), (path, name, r)
    else:
        assert (r.rc, r.lines) == (0, want), (path, name, r)


def check_views(path: Path, v: dict[str, Any]) -> int:
    """for-each-ref, rev-parse, symbolic-ref and reflog views of one worktree."""
    n = 0
    if "for_each_ref" in v:
        r = git(path, "for-each-ref", "--include-root-refs",
                "--format=%(refname) %(objectname) %(symref)")
        assert (r.rc, r.lines) == (0, v["for_each_ref"]), path
        n += 1
    for name, want in v.get("rev_parse", {}).items():
        r = git(path, "rev-parse", "--verify", "-q", name)
        assert (r.out.strip() or None) == want and r.rc == (0 if want else 1), (path, name, r)
        n += 1
    for name, want in v.get("symbolic_ref", {}).items():
        r = git(path, "symbolic-ref", "-q", name)
        assert (r.out.strip() or None) == want and r.rc == (0 if want else 1), (path, name, r)
        n += 1
    if "reflog_head" in v:
        check_reflog_show(path, "HEAD", v["reflog_head"])
        n += 1
    if "reflog_list" in v:
        r = git(path, "reflog", "list")
        assert (r.rc, r.lines) == (0, v["reflog_list"]), path
        n += 1
    for name, want in v.get("reflogs", {}).items():
        check_reflog_show(path, name, want)
        n += 1
    return n


def check_api_views(path: Path, v: dict[str, Any]) -> int:
    """The same views through the Python API."""
    n = 0
    with Repository.open(str(path)) as repo:
        if "for_each_ref" in v:
            got = [f"{r.name} {oid.hex()} {r.target or ''}"
                   for r, oid in repo.for_each_ref(include_root_refs=True)]
            assert got == v["for_each_ref"], path
            n += 1
        for name, want in v.get("rev_parse", {}).items():
            oid = repo.rev_parse(name)
            assert (oid.hex() if oid else None) == want, (path, name)
            n += 1
        for name, want in v.get("symbolic_ref", {}).items():
            final, _, is_symref = repo.resolve_ref(name)
            assert (final if is_symref else None) == want, (path, name)
            n += 1
        if "reflog_list" in v:
            assert repo.list_reflogs() == v["reflog_list"], path
            n += 1
        shows = dict(v.get("reflogs", {}))
        if "reflog_head" in v:
            shows["HEAD"] = v["reflog_head"]
        for name, want in shows.items():
            entries = repo.reflog_show(name)
            if isinstance(want, dict):
                assert entries is None and want["rc"] != 0, (path, name)
            else:
                assert entries is not None, (path, name)
                got = [f"{(lg.new_id or b'').hex()} {lg.message.rstrip(chr(10))}"
                       for lg in entries]
                assert got == want, (path, name)
            n += 1
    return n


def bare_name(name: str) -> str:
    """The name we store for a write Git stored under ``name`` (the deliberate
    difference: ``main-worktree/X`` and ``worktrees/<id>/X`` are stored as ``X``)."""
    kind_, _, bare = parse_worktree_ref(name)
    return bare if kind_ in ("main", "other") and bare else name


# -- kind: worktrees ------------------------------------------------------------------------


@kind("worktrees")
def check_worktrees(scenario: str, e: dict[str, Any], tmp: Path) -> int:
    d = extract_repo(scenario, tmp / "d")
    n = 0
    wts = e["params"]["wts"]
    paths = {"main": "main"}
    for w in e["layout"]["worktrees"]:
        paths[w["id"]] = w["path"]
        assert (d / w["path"] / ".git").read_text() == w["gitfile"]
        assert (d / w["git_dir"] / "gitdir").read_text() == w["gitdir_file"]
        n += 2
    for w in wts:
        v = e["per_worktree"][w]
        with Repository.open(str(d / paths[w])) as repo:
            assert Path(repo.git_dir) == (d / v["git_dir"]).resolve()
            assert Path(repo.common_dir) == (d / v["git_common_dir"]).resolve()
            assert repo.hash == e["hash"]
            assert repo.worktree_id == (None if w == "main" else w)
        n += check_views(d / paths[w], v) + check_api_views(d / paths[w], v) + 1
    for key, dump in e["stacks"].items():
        n += check_stack_dump(d, key, dump)
        # where each ref lives: routing from the owning worktree gives that stack
        owner = MAIN if key.endswith(".git/reftable") else Path(key).parent.name
        with Repository.open(str(d / "main")) as repo:
            for rec in dump["merged"]["refs"]:
                if parse_worktree_ref(rec["name"])[0] in ("main", "other"):
                    continue  # written by Git under a prefixed name (see bare_name)
                assert repo.route(rec["name"], worktree=owner) == (owner, rec["name"])
                n += 1
    n += own_writes_in_worktrees(d, wts, paths, e)
    return n


def own_writes_in_worktrees(d: Path, wts: list[str], paths: dict[str, str],
                            e: dict[str, Any]) -> int:
    """Our writes land where Git keeps them and each worktree sees what Git shows."""
    n = 0
    main_head = git(d / "main", "rev-parse", "--verify", "-q", "HEAD").out.strip()
    before = {w: git(d / paths[w], "for-each-ref", "--include-root-refs").out for w in wts}
    for w in wts:
        p = d / paths[w]
        oid = e["per_worktree"][w]["rev_parse"]["HEAD"]
        assert git(p, "update-ref", f"refs/bisect/ours-{w}", oid).rc == 0
        assert git(p, "update-ref", f"refs/heads/shared-{w}", oid).rc == 0
        assert git(p, "update-ref", f"main-worktree/refs/worktree/m-{w}", oid).rc == 0
        for other in wts[1:]:
            assert git(p, "update-ref", f"worktrees/{other}/refs/worktree/o-{w}", oid).rc == 0
        n += 3
    for w in wts:
        p = d / paths[w]
        key = "main/.git/reftable" if w == "main" else f"main/.git/worktrees/{w}/reftable"
        st = Stack.open(str(d / key), create=False)
        names = {r.name for r in st.refs()}
        st.close()
        assert f"refs/bisect/ours-{w}" in names
        for x in wts:
            seen = git(p, "rev-parse", "--verify", "-q", f"refs/bisect/ours-{x}")
            assert (seen.rc == 0) == (x == w), (w, x)
            assert git(p, "rev-parse", "--verify", "-q", f"refs/heads/shared-{x}").rc == 0
            if w == "main":
                assert f"refs/worktree/m-{x}" in names
            elif x != w:
                assert f"refs/worktree/o-{x}" in names
            n += 2
    # a linked worktree's HEAD write never moves the main worktree's HEAD
    for w in wts[1:]:
        assert git(d / paths[w], "symbolic-ref", "HEAD", f"refs/heads/shared-{w}").rc == 0
        assert git(d / "main", "rev-parse", "--verify", "-q", "HEAD").out.strip() == main_head
        n += 1
    after = {w: git(d / paths[w], "for-each-ref", "--include-root-refs").out for w in wts}
    assert all(after[w] != before[w] for w in wts)
    return n


# -- kind: gitfile ----------------------------------------------------------------------------


@kind("gitfile")
def check_gitfile(scenario: str, e: dict[str, Any], tmp: Path) -> int:
    d = extract_repo(scenario, tmp / "d")
    n = 0
    for path, v in e["repos"].items():
        p = d / path
        with Repository.open(str(p)) as repo:
            assert Path(repo.git_dir) == (d / v["git_dir"]).resolve()
            assert Path(repo.common_dir) == (d / v["git_common_dir"]).resolve()
            assert repo.is_bare == v["is_bare"]
            assert Path(repo.stack_dir(MAIN)) == (d / v["reftable_dir"]).resolve()
            assert repo.config.get("core.bare") == v["core_bare"]
            assert repo.config.get("core.logAllRefUpdates") == v["core_logallrefupdates"]
        gitfile = p / ".git"
        assert (gitfile.read_text() if gitfile.is_file() else None) == v["gitfile"]
        n += check_views(p, v) + check_api_views(p, v) + 6
    for key, dump in e["stacks"].items():
        n += check_stack_dump(d, key, dump)
    for path, v in e["repos"].items():
        # our write logs as Git would: bare repos only log refs that have a reflog
        p = d / path
        assert git(p, "update-ref", "refs/heads/ours", "HEAD").rc == 0
        logs = v["core_logallrefupdates"] == "true" or (
            v["core_logallrefupdates"] is None and not v["is_bare"])
        assert git(p, "reflog", "exists", "refs/heads/ours").rc == (0 if logs else 1)
        n += 1
    return n


# -- kind: perms --------------------------------------------------------------------------------


@kind("perms")
def check_perms(scenario: str, e: dict[str, Any], tmp: Path) -> int:
    n = 0
    for _, folder in e["params"]["cases"]:
        case = e["cases"][folder]
        for umask, want in case["after_writes"].items():
            d = extract_repo(scenario, tmp / f"{folder}-{umask}", folder)
            repo_dir = d / folder
            with Repository.open(str(repo_dir)) as repo:
                assert repo.config.get("core.sharedRepository") == case["core_sharedRepository"]
                rt = Path(repo.stack_dir(MAIN))
            assert mode(rt) == case["modes_in_tar"]["reftable_dir"]
            old = os.umask(int(umask, 8))
            try:
                for argv in want["commands"]:
                    assert git(repo_dir, *argv).rc == 0, argv
                # a directory we create gets Git's mode (as init made reftable/)
                with Repository.open(str(repo_dir)) as repo:
                    probe = repo_dir / "probe-dir"
                    repo._mkdir(str(probe))
                    if umask == e["umask_at_init"]:
                        assert mode(probe) == case["modes_in_tar"]["reftable_dir"]
            finally:
                os.umask(old)
            names = read_tables_list(str(rt))
            assert mode(rt) == want["reftable_dir"]
            assert mode(rt / "tables.list") == want["tables_list"], (folder, umask)
            assert [mode(rt / t) for t in names] == want["tables"], (folder, umask)
            assert len(names) == want["tables_count"]
            others = sorted(set(os.listdir(rt)) - set(names) - {"tables.list"})
            assert others == want["other_files"]
            n += 5
    return n


# -- kind: write_options ----------------------------------------------------------------------


def _probe_input(e: dict[str, Any], case: dict[str, Any]) -> bytes:
    text: str = e["probe_stdin"]
    return (text.replace("<OID>", case["probe_oid"])
            .replace("<OTHER>", case["probe_other_oid"]).encode())


def _table_facts(t: Table) -> dict[str, Any]:
    j = table_to_json(t)
    return {k: j[k] for k in ("version", "block_size", "min_update_index",
                              "max_update_index", "hash", "object_id_len", "sections",
                              "size")}


@kind("write_options")
def check_write_options(scenario: str, e: dict[str, Any], tmp: Path) -> int:
    n = 0
    date = e.get("write_date", "1710000000 +0000")
    first = None
    for name, case in e["cases"].items():
        first = first or name
        d = extract_repo(scenario, tmp / f"{name}-noauto", name)
        repo_dir = d / name
        with Repository.open(str(repo_dir)) as repo:
            assert repo.is_bare == case["bare"]
            rt = Path(repo.stack_dir(MAIN))
        before = read_tables_list(str(rt))
        assert len(before) == case["tables_before"]
        with git_env(GIT_COMMITTER_DATE=date, GIT_TEST_REFTABLE_AUTOCOMPACTION="false"):
            r = git(repo_dir, "update-ref", "-m", "probe write", "--stdin",
                    stdin=_probe_input(e, case))
        assert r.rc == 0, r
        after = read_tables_list(str(rt))
        assert after[:-1] == before and len(after) == len(before) + 1
        with Table.open(str(rt / after[-1])) as t:
            assert _table_facts(t) == case["probe_table"], name
            logged = {lg.refname for lg in t.logs()}
        assert sorted(x for x in logged if not x.startswith("refs/heads/big/")) == \
            case["refs_with_log_entry_from_probe"], name
        assert sum(x.startswith("refs/heads/big/") for x in logged) == \
            case["big_refs_with_log_entry_from_probe"]
        for ref, want in case["reflog_exists_after"].items():
            assert git(repo_dir, "reflog", "exists", ref).rc == (0 if want else 1), ref
        for ref, want in case["reflog_show_after"].items():
            check_reflog_show(repo_dir, ref, want)
        n += 4 + len(case["reflog_exists_after"]) + len(case["reflog_show_after"])

        # with auto-compaction on (Git's default): reftable.geometricFactor decides
        d = extract_repo(scenario, tmp / f"{name}-auto", name)
        repo_dir = d / name
        with git_env(GIT_COMMITTER_DATE=date):
            assert git(repo_dir, "update-ref", "-m", "probe write", "--stdin",
                       stdin=_probe_input(e, case)).rc == 0
        with Repository.open(str(repo_dir)) as repo:
            rt = Path(repo.stack_dir(MAIN))
        ranges = []
        for t in read_tables_list(str(rt)):
            with Table.open(str(rt / t)) as tab:
                ranges.append([tab.min_update_index, tab.max_update_index])
        assert ranges == case["autocompaction_tables_after_ranges"], name
        n += 1

        # a held tables.list lock: fails after reftable.lockTimeout, as Git
        lock = rt / "tables.list.lock"
        lock.write_bytes(b"")
        r = git(repo_dir, "update-ref", "refs/heads/locked", case["probe_oid"])
        lock.unlink()
        assert r.rc == case["with_tables_list_lock_held"]["rc"], (name, r)
        n += 1
    assert first is not None
    for bad in e.get("bad_config_values", []):
        d = tmp / "bad"
        if not d.exists():
            extract_repo(scenario, d, first)
        r = git(d / first, "-c", f"{bad['key']}={bad['value']}", "update-ref",
                "refs/heads/cfgprobe", "HEAD")
        assert r.rc == bad["rc"], (bad, r)
        n += 1
    return n


# -- kind: lifecycle ------------------------------------------------------------------------

_REPLAYED = {("reflog", "expire"), ("reflog", "delete"), ("reflog", "drop"),
             ("reflog", "write"), ("symbolic-ref",), ("update-ref",)}


def _replayable(argv: list[str]) -> bool:
    return (argv[1],) in _REPLAYED or tuple(argv[1:3]) in _REPLAYED


def _api_replay(work: Path, rec: dict[str, Any], e: dict[str, Any]) -> bool:
    """``git commit -m MSG``, ``git branch -m OLD NEW`` and ``git branch -D NAME`` as
    the ref updates they are; False for other steps."""
    argv = rec["argv"]
    after = {r["name"]: r for r in e["states"][rec["state"]]["stack"]["merged"]["refs"]}
    with Repository.open(str(work)) as repo:
        if argv[1] == "commit" and "-m" in argv:
            branch = repo.resolve_ref("HEAD")[0]
            old = repo.resolve("HEAD")
            initial = "" if old else " (initial)"
            with repo.transaction(f"commit{initial}: {argv[argv.index('-m') + 1]}") as tx:
                tx.update("HEAD", after[branch]["value"], expect=old)
            return True
        if argv[1:3] == ["branch", "-m"] and len(argv) == 5:
            old_ref, new_ref = f"refs/heads/{argv[3]}", f"refs/heads/{argv[4]}"
            stack, stored = repo.write_stack_for(old_ref)
            rename_ref(stack, stored, new_ref,
                       repo.log_entry(f"Branch: renamed {old_ref} to {new_ref}"))
            if repo.resolve_ref("HEAD")[0] == old_ref:
                with repo.transaction() as tx:
                    tx.symref("HEAD", new_ref)
            return True
        if argv[1:3] == ["branch", "-D"]:
            with repo.transaction() as tx:
                for name in argv[3:]:
                    tx.delete(f"refs/heads/{name}", no_deref=True)
            return True
    return False


def _merged(stack_dir: Path) -> tuple[list[Any], list[Any]]:
    st = Stack.open(str(stack_dir), create=False)
    try:
        return ([ref_to_json(r) for r in st.refs()], [log_to_json(lg) for lg in st.logs()])
    finally:
        st.close()


@kind("lifecycle")
def check_lifecycle(scenario: str, e: dict[str, Any], tmp: Path) -> int:
    d = extract_repo(scenario, tmp / "d")
    n = 0
    for state, v in e["states"].items():
        p = d / state
        n += check_stack_dump(d, f"{state}/.git/reftable", v["stack"])
        r = git(p, "reflog", "list")
        assert r.lines == v["reflog_list"], state
        n += check_api_views(p, {"reflog_list": v["reflog_list"], "reflogs": v["reflog_show"],
                                 "for_each_ref": v["for_each_ref"]})
        for name, want in v["reflog_show"].items():
            check_reflog_show(p, name, want)
        for name, want in v["reflog_exists"].items():
            assert git(p, "reflog", "exists", name).rc == (0 if want else 1), (state, name)
        r = git(p, "for-each-ref", "--include-root-refs",
                "--format=%(refname) %(objectname) %(symref)")
        assert r.lines == v["for_each_ref"], state
        n += 2 + len(v["reflog_show"]) + len(v["reflog_exists"])
    # replay each step on a copy of its start state: our CLI's verbs, and the porcelain
    # steps that are plain ref updates (commit, branch -D) through the Python API
    for rec in e["params"]["records"]:
        work = tmp / f"replay-{rec['state']}"
        shutil.copytree(d / rec["from_state"], work, symlinks=True)
        with git_env(GIT_COMMITTER_DATE=rec["date"]):
            if _replayable(rec["argv"]):
                r = git(work, *rec["argv"][1:])
                assert r.rc == rec["rc"], (rec, r)
            elif not _api_replay(work, rec, e):
                shutil.rmtree(work)
                continue
        want = e["states"][rec["state"]]["stack"]["merged"]
        assert _merged(work / ".git" / "reftable") == (want["refs"], want["logs"]), rec["step"]
        n += 2
    return n


# -- kind: refnames ----------------------------------------------------------------------------

_PROBES = ("update_ref", "update_ref_stdin", "update_ref_stdin_z", "symbolic_ref")


def _probe_argv(probe: str, name: str, oid: str) -> tuple[list[str], bytes]:
    if probe == "update_ref":
        return ["update-ref", name, oid], b""
    if probe == "update_ref_stdin":
        return ["update-ref", "--stdin"], f"create {name} {oid}\n".encode("utf-8",
                                                                          "surrogateescape")
    if probe == "update_ref_stdin_z":
        return ["update-ref", "--stdin", "-z"], f"create {name}\0{oid}\0".encode(
            "utf-8", "surrogateescape")
    return ["symbolic-ref", name, "refs/heads/main"], b""


def _stored(d: Path, stacks: list[str], before: dict[str, list[str]]) -> list[tuple[Any, ...]]:
    """The records of the tables each stack gained since ``before``."""
    out: list[tuple[Any, ...]] = []
    for key in stacks:
        names = read_tables_list(str(d / key)) if (d / key / "tables.list").exists() else []
        for t in names[len(before[key]):]:
            with Table.open(str(d / key / t)) as tab:
                for r in tab.refs():
                    j = ref_to_json(r)
                    out.append((key, "ref", r.name, j["type"], r.target))
                for lg in tab.logs():
                    out.append((key, "log", lg.refname,
                                "log-deletion" if lg.is_deletion else "log-update", None))
    return sorted(out)


def _restore(d: Path, stacks: list[str], snapshot: dict[str, bytes],
             before: dict[str, list[str]]) -> None:
    for key in stacks:
        lst = d / key / "tables.list"
        keep = set(before[key])
        for f in os.listdir(d / key):
            if f.endswith(".ref") and f not in keep:
                os.unlink(d / key / f)
        lst.write_bytes(snapshot[key])


@kind("refnames")
def check_refnames(scenario: str, e: dict[str, Any], tmp: Path) -> int:
    d = extract_repo(scenario, tmp / "d")
    stacks = e["base_stacks"]
    snapshot = {k: (d / k / "tables.list").read_bytes() for k in stacks}
    before = {k: read_tables_list(str(d / k)) for k in stacks}
    n = 0
    with git_env(GIT_TEST_REFTABLE_AUTOCOMPACTION="false"):
        for res in e["results"]:
            name = res["name"]
            r = git(None, "check-ref-format", name)
            assert r.rc == res["check_ref_format"], (name, r)
            r = git(None, "check-ref-format", "--allow-onelevel", name)
            assert r.rc == res["check_ref_format_allow_onelevel"], (name, r)
            n += 2
            for probe in _PROBES:
                want = res[probe]
                argv, stdin = _probe_argv(probe, name, e["oid"])
                r = git(d / "main", *argv, stdin=stdin)
                got = _stored(d, stacks, before)
                _restore(d, stacks, snapshot, before)
                assert r.rc == want["rc"], (name, probe, r, want)
                expect = sorted(
                    (s["stack"], "ref", bare_name(s["name"]), s["type"], s.get("target"))
                    if "name" in s else
                    (s["stack"], "log", bare_name(s["log_for"]), s["type"], None)
                    for s in want["stored"])
                assert got == expect, (name, probe)
                n += 2
                if probe in ("update_ref", "symbolic_ref") and want["rc"] != 129:
                    # the same write through the Python API (129: a CLI usage error)
                    ok = _api_write(d / "main", probe, name, e["oid"])
                    got = _stored(d, stacks, before)
                    _restore(d, stacks, snapshot, before)
                    assert ok == (want["rc"] == 0), (name, probe, "api")
                    assert got == expect, (name, probe, "api")
                    n += 2
    return n


def _api_write(path: Path, probe: str, name: str, oid: str) -> bool:
    """``git update-ref NAME OID`` / ``git symbolic-ref NAME refs/heads/main`` through
    ``Repository.transaction``; False when it is refused."""
    from reftable import ReftableError

    try:
        with Repository.open(str(path)) as repo, repo.transaction() as tx:
            if probe == "update_ref":
                tx.update(name, oid)
            else:
                tx.symref(name, "refs/heads/main")
    except ReftableError:
        return False
    return True
