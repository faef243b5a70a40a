"""The stack commands of the CLI: update, compact, stats, clean, refs, log, dump."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from support import oid
from support.fixtures import ROOT, SCENARIOS, copy_fixture, load_expected
from support.stacks import (
    assert_clean,
    compact_at_first_table_open,
    hold_lock,
    logs_json,
    open_stack,
    refs_json,
    snapshot,
    write_n_ref_tables,
)

from reftable import cli
from reftable.transaction import local_tz_offset

A, B, C = oid(1).hex(), oid(2).hex(), oid(3).hex()
Z = "0" * 40


def run(capsys, monkeypatch, *args, stdin=""):
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def d(tmp_path):
    p = tmp_path / "reftable"
    p.mkdir()
    return p


@pytest.fixture
def sh(capsys, monkeypatch):
    return lambda *args, stdin="": run(capsys, monkeypatch, *args, stdin=stdin)


def values(d):
    return {r.name: (r.value.hex() if r.value else None, r.target) for r in open_stack(d).refs()}


# -- update -------------------------------------------------------------------------------------


def test_update_creates_refs_with_reflogs(sh, d):
    status, out, err = sh("update", d, "-m", "initial", "--committer-name", "A U Thor",
                          "--committer-email", "a@example.com", "--date", "1700000000",
                          stdin=f"create refs/heads/main {A}\ncreate refs/heads/topic {B}\n"
                                f"\nsymref-update HEAD refs/heads/main\n")
    assert (status, err) == (0, "")
    assert out == "committed 3 updates at update index 1\n"
    assert values(d) == {"HEAD": (None, "refs/heads/main"), "refs/heads/main": (A, None),
                         "refs/heads/topic": (B, None)}
    logs = list(open_stack(d).logs())
    # symref-update with -m logs the move too (HEAD: nothing -> main's id), like Git
    assert [lg.refname for lg in logs] == ["HEAD", "refs/heads/main", "refs/heads/topic"]
    for lg in logs:
        assert (lg.name, lg.email, lg.time, lg.message) == ("A U Thor", "a@example.com",
                                                            1_700_000_000, "initial\n")
        assert lg.tz_offset == local_tz_offset(1_700_000_000)
        assert lg.old_id == b"\0" * 20


def test_update_json_and_all_commands(sh, d):
    assert sh("update", d, stdin=f"create refs/heads/a {A}\ncreate refs/heads/b {B}\n"
                                 f"create refs/heads/c {C}\ncreate refs/heads/d {A}\n")[0] == 0
    status, out, _ = sh("update", d, "--json", stdin=(
        f"update refs/heads/a {B} {A}\n"      # with old value
        f"update refs/heads/new {C} {Z}\n"    # zero old: must not exist
        f"update refs/heads/c {Z}\n"          # zero new: delete
        f"delete refs/heads/b {B}\n"          # delete with old value
        f"verify refs/heads/d {A}\n"          # only checked
        f"verify refs/heads/missing\n"        # must not exist
        f"verify refs/heads/missing2 {Z}\n"
        f"symref-update HEAD refs/heads/a oid {Z}\n"))
    assert status == 0
    assert json.loads(out) == {"updates": 8, "update_index": 2}
    assert values(d) == {"HEAD": (None, "refs/heads/a"), "refs/heads/a": (B, None),
                         "refs/heads/d": (A, None), "refs/heads/new": (C, None)}
    status, out, _ = sh("update", d, stdin="symref-update HEAD refs/heads/d ref refs/heads/a\n")
    assert status == 0 and values(d)["HEAD"] == (None, "refs/heads/d")
    status, out, _ = sh("update", d, stdin=f"verify refs/heads/d {A}\n")
    assert (status, out) == (0, "nothing to write\n")


@pytest.mark.parametrize("line", [
    f"create refs/heads/main {C}",
    f"update refs/heads/main {C} {B}",
    f"update refs/heads/main {C} {Z}",
    f"update refs/heads/nope {C} {A}",
    f"delete refs/heads/main {B}",
    f"delete refs/heads/nope {A}",
    f"verify refs/heads/main {B}",
    "verify refs/heads/main",
    f"verify refs/heads/main {Z}",
    "symref-update HEAD refs/heads/main ref refs/heads/main",
    f"symref-update HEAD refs/heads/main oid {A}",
    f"symref-update HEAD refs/heads/main oid {Z}",
])
def test_update_failed_expectation_exits_1_and_changes_nothing(sh, d, line):
    assert sh("update", d, stdin=f"create refs/heads/main {A}\n"
                                 "symref-update HEAD refs/heads/other\n")[0] == 0
    before = snapshot(d)
    status, out, err = sh("update", d, "-m", "x",
                          stdin=f"create refs/heads/unrelated {B}\n{line}\n")
    assert status == 1
    assert out == "" and err.startswith("reftable:") and "Traceback" not in err
    assert snapshot(d) == before


@pytest.mark.parametrize("line", [
    "frobnicate refs/heads/a",
    "create refs/heads/a",
    f"create refs/heads/a {A} {B}",
    f"update refs/heads/a {A} {B} {C}",
    "delete",
    f"verify refs/heads/a {A} {B}",
    "symref-update HEAD",
    "symref-update HEAD refs/heads/a ref",
    "symref-update HEAD refs/heads/a bogus refs/heads/b",
    "create refs/heads/a not-hex",
    f"create refs/heads/a {A[:10]}",
    f"create refs/heads/a..b {A}",
    f"create refs/heads/x.lock {A}",
    "symref-update HEAD refs/heads/a..b",
    f"create refs/heads/dup {A}\ncreate refs/heads/dup {B}",
    f"create refs/heads/zero {Z}",  # git update-ref refuses a zero <new-oid> for create
])
def test_update_bad_input_exits_1_and_changes_nothing(sh, d, line):
    assert sh("update", d, stdin=f"create refs/heads/main {A}\n")[0] == 0
    before = snapshot(d)
    status, out, err = sh("update", d, stdin=f"create refs/heads/ok {B}\n{line}\n")
    assert status == 1, (out, err)
    assert "Traceback" not in err and err.startswith("reftable:")
    assert snapshot(d) == before


def test_update_from_input_file_and_no_auto_compact(sh, d, tmp_path):
    for i in range(6):
        f = tmp_path / f"in{i}.txt"
        f.write_text(f"update refs/heads/b{i} {oid(i).hex()}\n")
        assert sh("update", d, "--no-auto-compact", "--input", f)[0] == 0
    assert len(open_stack(d).names) == 6
    f = tmp_path / "last.txt"
    f.write_text(f"update refs/heads/last {A}\n")
    assert sh("update", d, "--input", f)[0] == 0
    assert len(open_stack(d).names) < 7  # auto-compaction ran
    assert sh("update", d, "--input", tmp_path / "missing.txt")[0] == 1


def test_update_while_tables_list_is_locked(sh, d):
    open_stack(d)
    before = snapshot(d)
    with hold_lock(d / "tables.list"):
        status, _, err = sh("update", d, stdin=f"create refs/heads/a {A}\n")
    assert status == 1 and "lock" in err
    assert snapshot(d) == before


def test_update_without_message_writes_no_reflog(sh, d):
    assert sh("update", d, stdin=f"create refs/heads/a {A}\n")[0] == 0
    assert list(open_stack(d).logs()) == []
    assert sh("update", d, "--committer-name", "N", stdin=f"update refs/heads/a {B}\n")[0] == 0
    (lg,) = open_stack(d).logs()
    assert (lg.name, lg.message, lg.old_id.hex(), lg.new_id.hex()) == ("N", "\n", A, B)


# -- compact, stats, clean ------------------------------------------------------------------------


def _tables(d, n):
    st = open_stack(d, auto_compact=False)
    write_n_ref_tables(st, n)
    return st


def test_compact_full_and_auto(sh, d):
    _tables(d, 5)
    status, out, _ = sh("compact", d, "--auto")
    assert (status, out) == (0, "compacted: 5 -> 1 tables\n")  # equal sizes: all of them
    status, out, _ = sh("compact", d, "--auto")
    assert (status, out) == (0, "nothing to compact: 1 -> 1 tables\n")
    write_n_ref_tables(open_stack(d, auto_compact=False), 2, start=5)
    status, out, _ = sh("compact", d, "--json")
    res = json.loads(out)
    assert status == 0 and res["compacted"] is True
    assert (res["tables_before"], res["tables_after"]) == (3, 1)
    assert res["stats"]["attempts"] == 1 and res["stats"]["failures"] == 0
    assert res["stats"]["entries_written"] == 7
    status, out, _ = sh("compact", d)
    assert (status, out) == (0, "nothing to compact: 1 -> 1 tables\n")
    assert_clean(d)


def test_compact_with_reflog_expiry(sh, d):
    for i in range(1, 6):
        assert sh("update", d, "--no-auto-compact", "-m", f"u{i}", "--committer-name", "N",
                  "--date", str(1000 * i), stdin=f"update refs/heads/a {oid(i).hex()}\n")[0] == 0
    assert sh("compact", d, "--expire-before", "2500")[0] == 0
    assert [lg.time for lg in open_stack(d).logs()] == [5000, 4000, 3000]
    assert sh("compact", d, "--expire-below-index", "5")[0] == 0
    assert [lg.update_index for lg in open_stack(d).logs()] == [5]
    assert values(d) == {"refs/heads/a": (oid(5).hex(), None)}


def test_compact_with_a_locked_table(sh, d):
    st = _tables(d, 3)
    before = snapshot(d)
    with hold_lock(d / st.names[1]):
        status, out, err = sh("compact", d)
        assert status == 1 and "lock" in err and "Traceback" not in err
        assert snapshot(d) == {**before, st.names[1] + ".lock": b""}


def test_stats(sh, d):
    st = _tables(d, 3)
    status, out, _ = sh("stats", d, "--json")
    info = json.loads(out)
    assert status == 0
    assert info["hash"] == "sha1" and info["table_count"] == 3 and info["refs"] == 3
    assert info["next_update_index"] == 4
    assert [t["name"] for t in info["tables"]] == st.names
    assert [(t["min_update_index"], t["max_update_index"]) for t in info["tables"]] == [
        (1, 1), (2, 2), (3, 3)]
    assert info["total_bytes"] == sum(os.path.getsize(d / n) for n in st.names)
    status, out, _ = sh("stats", d)
    assert status == 0 and "3 tables" in out and all(n in out for n in st.names)


def test_clean(sh, d):
    _tables(d, 2)
    stray = "0x000000000001-0x000000000001-00000001.ref"
    (d / stray).write_bytes((d / open_stack(d).names[0]).read_bytes())
    status, out, _ = sh("clean", d, "--json")
    assert status == 0 and json.loads(out) == {"removed": [stray]}
    status, out, _ = sh("clean", d)
    assert (status, out) == (0, "0 leftover files removed\n")
    assert_clean(d)


# -- refs, log, dump ------------------------------------------------------------------------------


@pytest.fixture
def populated(sh, d):
    assert sh("update", d, "-m", "set up", "--committer-name", "N", "--committer-email", "n@x",
              "--date", "1700000000",
              stdin=f"create refs/heads/main {A}\ncreate refs/tags/v1 {B}\n"
                    "symref-update HEAD refs/heads/main\n")[0] == 0
    st = open_stack(d)
    with st.transaction() as tx:
        tx.update("refs/tags/annotated", C, peeled=A)
    return d


def test_refs_default_and_format(sh, populated):
    d = populated
    status, out, _ = sh("refs", d)
    assert status == 0
    assert out.splitlines() == ["-> refs/heads/main HEAD", f"{A} refs/heads/main",
                                f"{C} refs/tags/annotated", f"{B} refs/tags/v1"]
    fmt = "%(refname)|%(objectname)|%(peeled)|%(symref)|%(update_index)"
    status, out, _ = sh("refs", d, "refs/tags/", "--format", fmt)
    assert out.splitlines() == [f"refs/tags/annotated|{C}|{A}||2", f"refs/tags/v1|{B}|||1"]
    status, out, _ = sh("refs", d, "--format", fmt)
    assert out.splitlines()[0] == "HEAD|||refs/heads/main|1"
    status, out, _ = sh("refs", d, "refs/heads/", "--json")
    assert json.loads(out) == [{"name": "refs/heads/main", "update_index": 1, "type": "val1",
                                "value": A}]
    status, out, _ = sh("refs", d, "refs/nothing/")
    assert (status, out) == (0, "")


def test_log(sh, populated):
    d = populated
    status, out, _ = sh("log", d)
    lines = out.splitlines()
    assert status == 0 and len(lines) == 3
    tz = local_tz_offset(1_700_000_000)
    # HEAD became a symref to main in the same transaction: its entry records main's new id
    assert lines[0] == (f"HEAD@{{1}} {Z[:12]} -> {A[:12]} N <n@x> 1700000000 "
                        f"{tz:+05d}\tset up")
    assert lines[1] == (f"refs/heads/main@{{1}} {Z[:12]} -> {A[:12]} N <n@x> 1700000000 "
                        f"{tz:+05d}\tset up")
    status, out, _ = sh("log", d, "refs/tags/v1", "--json")
    assert json.loads(out) == [{"refname": "refs/tags/v1", "update_index": 1, "type": "update",
                                "old_id": Z, "new_id": B, "name": "N", "email": "n@x",
                                "time": 1_700_000_000, "tz_offset": tz, "message": "set up\n"}]
    status, out, _ = sh("log", d, "refs/heads/none")
    assert (status, out) == (0, "")


def test_dump_json_of_a_stack(sh, populated):
    d = populated
    status, out, _ = sh("dump", "--json", d)
    st = open_stack(d)
    assert status == 0
    assert json.loads(out) == {"tables_list": st.names, "refs": refs_json(st),
                               "logs": logs_json(st)}


@pytest.mark.skipif("tiny" not in SCENARIOS, reason="Git fixtures missing")
def test_dump_json_of_a_git_stack_after_our_updates(sh, tmp_path):
    exp = load_expected("tiny")
    d = copy_fixture("tiny", tmp_path / "reftable")
    status, out, _ = sh("dump", "--json", d)
    assert json.loads(out) == {"tables_list": exp["tables_list"], "refs": exp["merged"]["refs"],
                               "logs": exp["merged"]["logs"]}
    assert sh("update", d, stdin=f"create refs/heads/cli-added {A}\n")[0] == 0
    assert sh("compact", d)[0] == 0
    status, out, _ = sh("dump", "--json", d)
    dumped = json.loads(out)
    want = sorted(exp["merged"]["refs"] + [{"name": "refs/heads/cli-added", "type": "val1",
                                            "update_index": 10, "value": A}],
                  key=lambda r: r["name"])
    assert dumped["refs"] == want
    assert dumped["logs"] == exp["merged"]["logs"]
    assert len(dumped["tables_list"]) == 1


def test_missing_directory(sh, tmp_path):
    for cmd in (["refs"], ["log"], ["stats"], ["compact"], ["clean"]):
        status, out, err = sh(*cmd, tmp_path / "nope")
        assert status == 1 and "Traceback" not in err and "nope" in err


# -- help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["update", "compact", "stats", "clean", "refs", "log", "dump"])
def test_help_of_each_command(cmd):
    p = subprocess.run([sys.executable, "-m", "reftable", cmd, "--help"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"usage: reftable {cmd}")
    assert "example" in p.stdout or cmd == "dump" or "--help" in p.stdout


def test_update_end_to_end_in_a_subprocess(d):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "reftable", "update", str(d), "--json", "-m", "x"],
                       input=f"create refs/heads/sub {A}\n", capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"updates": 1, "update_index": 1}
    p = subprocess.run([sys.executable, "-m", "reftable", "update", str(d)],
                       input=f"create refs/heads/sub {B}\n", capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=60)
    assert p.returncode == 1 and "refs/heads/sub" in p.stderr
    p = subprocess.run([sys.executable, "-m", "reftable", "refs", str(d)], capture_output=True,
                       text=True, cwd=ROOT, env=env, timeout=60)
    assert p.stdout == f"{A} refs/heads/sub\n"


def test_dump_of_a_stack_while_another_process_compacts(sh, d, monkeypatch):
    st = _tables(d, 3)
    # between reading tables.list and opening its tables
    fired = compact_at_first_table_open(monkeypatch, open_stack(d))
    status, out, err = sh("dump", "--json", d)
    assert fired
    assert status == 0, err
    assert [r["name"] for r in json.loads(out)["refs"]] == [r.name for r in st.refs()]


@pytest.mark.parametrize("cmd", ["stats", "refs", "log"])
def test_read_only_commands_create_nothing(sh, d, cmd):
    # an empty directory is neither a stack nor a repository: an error, like Git's
    # "not a git repository", and nothing is created by the read
    status, _, _ = sh(cmd, d, "--json")
    assert status == 1
    assert os.listdir(d) == []
