"""Reflog lifecycle against Git (fixture ``reflog-lifecycle``): every step Git took is
replayed on a copy of its starting state through reftable's API, and the stack must
then hold what Git's did (refs, reflog entries, existence markers, tombstones' effect)
and show the same reflogs."""

from __future__ import annotations

from typing import Any

import pytest
from support.fixtures import extract_repo, load_repo_expected

from reftable import LogEntry, Stack
from reftable.gitconfig import GitConfig
from reftable.jsonio import log_to_json, ref_to_json
from reftable.reflog import (
    EXPIRE_ALL,
    LogPolicy,
    delete_reflog_entry,
    drop_reflog,
    expire_reflog,
    identity_from_env,
    list_reflogs,
    read_reflog,
    reflog_exists,
    rename_ref,
)

SCENARIO = "reflog-lifecycle"
IDENTITY = {"GIT_COMMITTER_NAME": "C O Mitter", "GIT_COMMITTER_EMAIL": "committer@example.com"}
NULL = "0" * 40


def _entry(date: str, message: str) -> LogEntry:
    name, email, when, tz = identity_from_env({**IDENTITY, "GIT_COMMITTER_DATE": date})
    return LogEntry(name, email, message, when, tz)


def _ref_value(state: dict[str, Any], name: str) -> str:
    return next(r["value"] for r in state["stack"]["merged"]["refs"] if r["name"] == name)


def _step(st: Stack, rec: dict[str, Any], before: dict[str, Any], after: dict[str, Any]
          ) -> None:
    """What Git did for ``rec["argv"]``, through the Python API."""
    argv, date = rec["argv"][1:], rec["date"]
    policy = LogPolicy()  # a non-bare repository, core.logAllRefUpdates unset
    if argv[:2] == ["reflog", "expire"]:
        assert argv[2] in ("--expire=all", "--expire=now")
        expire_reflog(st, None if argv[3] == "--all" else argv[3], expire=EXPIRE_ALL)
    elif argv[0] == "commit":
        # HEAD -> refs/heads/main: the branch moves, HEAD gets a log-only entry
        old, new = _ref_value(before, "refs/heads/main"), _ref_value(after, "refs/heads/main")
        entry = _entry(date, f"commit: {argv[argv.index('-m') + 1]}")
        with st.transaction(log_policy=policy) as tx:
            tx.update("refs/heads/main", new, expect=old, log=entry)
            tx.log("HEAD", old, new, entry)
    elif argv[:2] == ["reflog", "delete"]:
        name, _, n = argv[2].partition("@{")
        delete_reflog_entry(st, name, int(n.rstrip("}")))
    elif argv[:2] == ["branch", "-m"]:
        old, new = (f"refs/heads/{b}" for b in argv[2:4])
        rename_ref(st, old, new, _entry(date, f"Branch: renamed {old} to {new}"))
    elif argv[:2] == ["branch", "-D"]:
        name = f"refs/heads/{argv[2]}"
        with st.transaction(log_policy=policy) as tx:
            tx.delete(name, expect=_ref_value(before, name))
    elif argv[0] == "symbolic-ref":
        message, name, target = argv[argv.index("-m") + 1], argv[-2], argv[-1]
        with st.transaction(log_policy=policy) as tx:
            tx.symref(name, target, log=_entry(date, message))
    elif argv[:2] == ["update-ref", "-d"]:
        with st.transaction(log_policy=policy) as tx:
            tx.delete(argv[2])
    elif argv[:2] == ["reflog", "write"]:
        name, old, new, message = argv[2:6]
        with st.transaction(log_policy=policy) as tx:
            tx.log(name, old, new, _entry(date, message), force=True)
    elif argv[:2] == ["reflog", "drop"]:
        drop_reflog(st, argv[2])
    else:  # pragma: no cover - a new step in the fixture
        raise AssertionError(f"no replay for {argv}")


def _logs_view(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # An existence marker is written with an empty message; Git's compaction (and ours)
    # rewrites it to "\n", so where the tables were compacted differs only in that.
    out = []
    for lg in logs:
        if lg["old_id"] == NULL and lg["new_id"] == NULL:
            lg = {**lg, "message": lg["message"] or "\n"}
        out.append(lg)
    return out


def _check_state(st: Stack, exp: dict[str, Any], refnames: list[str]) -> None:
    assert [ref_to_json(r) for r in st.refs()] == exp["stack"]["merged"]["refs"]
    assert _logs_view([log_to_json(lg) for lg in st.logs()]) == \
        _logs_view(exp["stack"]["merged"]["logs"])
    assert st.next_update_index() == exp["stack"]["tables"][-1]["max_update_index"] + 1
    assert list_reflogs(st) == exp["reflog_list"]
    for name in refnames:
        assert reflog_exists(st, name) is exp["reflog_exists"][name], name
        shown = exp["reflog_show"][name]
        # `git reflog show` walks commits: an entry with a null new id (a ref's
        # deletion logged by a rename) has none and is not shown
        lines = [f"{lg.new_id.hex()} {lg.message.rstrip(chr(10))}"
                 for lg in read_reflog(st, name) if any(lg.new_id)]
        if isinstance(shown, list):
            assert lines == shown, name
        else:  # Git refused: the name does not resolve (missing, or HEAD unborn)
            assert "unknown revision" in shown["stderr"]
            assert _resolve(st, name) is None, name


def _resolve(st: Stack, name: str) -> Any:
    ref = st.read_ref(name)
    while ref is not None and ref.target is not None:
        ref = st.read_ref(ref.target)
    return None if ref is None else ref.value


_D = load_repo_expected(SCENARIO)
_STEPS = _D["params"]["records"]


def test_start_state_reads_as_git_shows_it(tmp_path):
    extract_repo(SCENARIO, tmp_path, "s00")
    with Stack.open(tmp_path / "s00" / ".git" / "reftable") as st:
        _check_state(st, _D["states"]["s00"], _D["params"]["refnames"])


@pytest.mark.parametrize("rec", _STEPS, ids=[r["step"] for r in _STEPS])
def test_replayed_step_gives_gits_state(tmp_path, rec):
    assert rec["rc"] == 0
    src = rec["from_state"]
    extract_repo(SCENARIO, tmp_path, src)
    states = _D["states"]
    with Stack.open(tmp_path / src / ".git" / "reftable") as st:
        _step(st, rec, states[src], states[rec["state"]])
        _check_state(st, states[rec["state"]], _D["params"]["refnames"])


def test_all_steps_in_sequence(tmp_path):
    """The same steps one after the other on one stack (our own compactions in between)
    end where Git ended."""
    extract_repo(SCENARIO, tmp_path, "s00")
    states = _D["states"]
    with Stack.open(tmp_path / "s00" / ".git" / "reftable") as st:
        for rec in _STEPS:
            _step(st, rec, states[rec["from_state"]], states[rec["state"]])
            _check_state(st, states[rec["state"]], _D["params"]["refnames"])


# -- which updates log: core.logAllRefUpdates against Git (fixture write-options) --------

_W = load_repo_expected("write-options")


@pytest.mark.parametrize("case", list(_W["cases"]))
def test_log_policy_logs_what_git_logged(tmp_path, case):
    """Git's probe transaction (``update-ref --stdin``: 700 new branches, updates of
    refs in every namespace, of HEAD's branch and of a ref with a reflog) through a
    transaction under the case's ``LogPolicy``: the same refs get log entries."""
    c = _W["cases"][case]
    extract_repo("write-options", tmp_path, case)
    git_dir = tmp_path / case if c["bare"] else tmp_path / case / ".git"
    policy = LogPolicy.from_config(GitConfig.read([str(git_dir / "config")]))
    assert policy.bare is c["bare"]
    oid, other = c["probe_oid"], c["probe_other_oid"]
    entry = _entry(_W["write_date"], "probe write")
    with Stack.open(git_dir / "reftable") as st:
        with st.transaction(log=entry, log_policy=policy) as tx:
            for line in _W["probe_stdin"].splitlines():
                verb, name, value = line.split(" ")
                new = oid if value == "<OID>" else other
                if verb == "create":
                    tx.create(name, new)
                else:
                    tx.update(name, new)
            head = st.read_ref("HEAD")
            assert head is not None and head.target == "refs/heads/main"
            # an update of HEAD's branch also logs on HEAD (Git's split_head_update)
            tx.log("HEAD", _resolve(st, "HEAD"), other, entry)
        ui = st.next_update_index() - 1
        logged = {lg.refname for lg in st.logs() if lg.update_index == ui}
        big = {n for n in logged if n.startswith("refs/heads/big/")}
        assert sorted(logged - big) == c["refs_with_log_entry_from_probe"]
        assert len(big) == c["big_refs_with_log_entry_from_probe"]
        for name, exists in c["reflog_exists_after"].items():
            assert reflog_exists(st, name) is exists, name
        for name, shown in c["reflog_show_after"].items():
            assert [f"{lg.new_id.hex()} {lg.message.rstrip(chr(10))}"
                    for lg in read_reflog(st, name)] == shown, name
