"""Git-written fixtures (tests/data/git): read, merge and byte-exact write through the
Python API, the CLI contract, and seek / reverse-index consistency on real tables."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
from support.fixtures import (
    GIT_FIXTURES,
    ROOT,
    SCENARIOS,
    case_id,
    load_expected,
    stack_dir,
    table_cases,
    table_path,
)

from reftable import MergedTable, Table, WriteOptions, write_table_bytes
from reftable.jsonio import log_from_json, log_to_json, ref_from_json, ref_to_json, table_to_json
from reftable.stack import read_tables_list

TABLE_KEYS = ("version", "block_size", "min_update_index", "max_update_index", "hash",
              "object_id_len", "sections", "refs", "logs", "size")

ALL_CASES = [pytest.param(c, id=case_id(c)) for c in table_cases()]


def open_case(case) -> tuple[Table, dict]:
    scenario, index = case
    return Table.open(table_path(scenario, index)), load_expected(scenario)["tables"][index]


def open_stack(scenario: str) -> list[Table]:
    return [Table.open(stack_dir(scenario) / t["file"])
            for t in load_expected(scenario)["tables"]]


def first_difference(want, got, path="$"):
    """A short description of where two JSON values differ (None when equal)."""
    if type(want) is not type(got):
        return f"{path}: expected {want!r:.100}, got {got!r:.100}"
    if isinstance(want, dict):
        for k in want.keys() | got.keys():
            if k not in got or k not in want:
                return f"{path}.{k}: present on one side only"
            d = first_difference(want[k], got[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(want, list):
        for i, (a, b) in enumerate(zip(want, got, strict=False)):
            d = first_difference(a, b, f"{path}[{i}]")
            if d:
                return d
        if len(want) != len(got):
            return f"{path}: expected {len(want)} items, got {len(got)}"
        return None
    return None if want == got else f"{path}: expected {want!r:.100}, got {got!r:.100}"


# -- the fixture set itself --------------------------------------------------------------


def test_fixture_set_is_complete():
    assert GIT_FIXTURES is not None
    assert len(SCENARIOS) >= 14
    for s in SCENARIOS:
        exp = load_expected(s)
        assert read_tables_list(os.fspath(stack_dir(s))) == exp["tables_list"]
        assert [t["file"] for t in exp["tables"]] == exp["tables_list"]


# -- read ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ALL_CASES)
def test_read_table_matches_git(case):
    t, exp = open_case(case)
    with t:
        got = table_to_json(t)
        want = {k: exp[k] for k in TABLE_KEYS}
        assert first_difference(want, {k: got[k] for k in TABLE_KEYS}) is None
        assert t.size == os.path.getsize(table_path(*case))
        # the header facts also through the properties
        assert (t.version, t.hash) == (exp["version"], exp["hash"])
        assert t.version == (1 if exp["hash"] == "sha1" else 2)


@pytest.mark.parametrize("case", ALL_CASES)
def test_read_from_bytes_equals_read_from_file(case):
    path = table_path(*case)
    t = Table.from_bytes(path.read_bytes(), "mem")
    with Table.open(path) as f:
        assert list(t.ref_tuples()) == list(f.ref_tuples())
        assert list(t.log_tuples()) == list(f.log_tuples())
        assert t.sections == f.sections


# -- merge --------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_merged_view_matches_git(scenario):
    exp = load_expected(scenario)
    tables = open_stack(scenario)
    try:
        m = MergedTable(tables)
        got = {"refs": [ref_to_json(r) for r in m.refs()],
               "logs": [log_to_json(r) for r in m.logs()]}
        assert first_difference(exp["merged"], got) is None
        assert m.min_update_index == exp["tables"][0]["min_update_index"]
        assert m.max_update_index == exp["tables"][-1]["max_update_index"]
    finally:
        for t in tables:
            t.close()


def _for_each_ref(merged_refs: list[dict]) -> list[str]:
    """`git for-each-ref --include-root-refs --format='%(refname) %(objectname)
    %(*objectname) %(symref)'` computed from the merged view."""
    by_name = {r["name"]: r for r in merged_refs}
    lines = []
    for r in merged_refs:
        cur = r
        for _ in range(6):
            if cur is None or cur["type"] != "symref":
                break
            cur = by_name.get(cur["target"])
        if cur is None or cur["type"] == "symref":
            continue  # dangling symrefs are not listed
        symref = r["target"] if r["type"] == "symref" else ""
        lines.append(f"{r['name']} {cur['value']} {cur.get('target_value', '')} {symref}")
    return lines


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_git_for_each_ref_agrees_with_merged_view(scenario):
    exp = load_expected(scenario)
    tables = open_stack(scenario)
    try:
        merged = [ref_to_json(r) for r in MergedTable(tables).refs()]
    finally:
        for t in tables:
            t.close()
    assert _for_each_ref(merged) == exp["git_for_each_ref"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_merged_read_ref_agrees_with_merged_iteration(scenario):
    exp = load_expected(scenario)
    tables = open_stack(scenario)
    try:
        m = MergedTable(tables)
        live = {r["name"]: r for r in exp["merged"]["refs"]}
        all_names = {r["name"] for t in exp["tables"] for r in t["refs"]}
        for name in sorted(all_names):
            rec = m.read_ref(name)
            if name in live:
                assert rec is not None and ref_to_json(rec) == live[name], name
            else:
                assert rec is None, name
    finally:
        for t in tables:
            t.close()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_merged_without_suppression_shows_newest_record_per_name(scenario):
    exp = load_expected(scenario)
    tables = open_stack(scenario)
    try:
        newest: dict[str, dict] = {}
        for t in exp["tables"]:
            for r in t["refs"]:
                newest[r["name"]] = r
        got = [ref_to_json(r) for r in MergedTable(tables, suppress_deletions=False).refs()]
        assert got == [newest[n] for n in sorted(newest, key=lambda s: s.encode())]
    finally:
        for t in tables:
            t.close()


# -- byte-exact write -----------------------------------------------------------------------


@pytest.mark.parametrize("case", ALL_CASES)
def test_write_reproduces_git_bytes(case):
    exp = load_expected(case[0])["tables"][case[1]]
    wi = exp["write_inputs"]
    opts = WriteOptions(hash=wi["hash"], block_size=wi["block_size"],
                        restart_interval=wi["restart_interval"],
                        index_objects=wi["index_objects"], exact_log_message=True)
    data = write_table_bytes(
        [ref_from_json(r) for r in exp["refs"]],
        [log_from_json(lg) for lg in exp["logs"]],
        opts,
        min_update_index=wi["min_update_index"],
        max_update_index=wi["max_update_index"],
    )
    git = table_path(*case).read_bytes()
    if data != git:
        at = next((i for i, (a, b) in enumerate(zip(data, git, strict=False)) if a != b),
                  min(len(data), len(git)))
        pytest.fail(f"bytes differ at offset {at} (wrote {len(data)}, Git wrote {len(git)})")


# -- CLI contract (one scenario, through a subprocess) ---------------------------------------


def _cli(*argv: str) -> bytes:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.fspath(ROOT),
                                                      env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-m", "reftable", *argv], capture_output=True,
                       timeout=120, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


def test_cli_contract_smoke(tmp_path):
    scenario = "tiny"
    exp = load_expected(scenario)
    t = exp["tables"][0]
    got = json.loads(_cli("dump", "--json", os.fspath(table_path(scenario, 0))))
    for k in TABLE_KEYS:
        assert got[k] == t[k], k
    got = json.loads(_cli("dump", "--json", os.fspath(stack_dir(scenario))))
    assert got["tables_list"] == exp["tables_list"]
    assert (got["refs"], got["logs"]) == (exp["merged"]["refs"], exp["merged"]["logs"])
    inp, out = tmp_path / "in.json", tmp_path / "out.ref"
    inp.write_text(json.dumps(t), encoding="utf-8")
    _cli("write", "--json", os.fspath(inp), os.fspath(out))
    assert out.read_bytes() == table_path(scenario, 0).read_bytes()


# -- point lookups on real tables -------------------------------------------------------------


@pytest.mark.parametrize("case", ALL_CASES)
def test_read_ref_finds_every_ref(case):
    t, exp = open_case(case)
    with t:
        for r in exp["refs"]:
            rec = t.read_ref(r["name"])
            assert rec is not None, r["name"]
            assert ref_to_json(rec) == r
        assert t.read_ref("refs/heads/does-not-exist-\U0001f600") is None
        assert t.read_ref("\x7f\x7f") is None


@pytest.mark.parametrize("case", ALL_CASES)
def test_refs_for_sample_equals_brute_force(case):
    t, exp = open_case(case)
    with t:
        ids = sorted({r[k] for r in exp["refs"] for k in ("value", "target_value") if k in r})
        sample = random.Random(f"{case}").sample(ids, min(40, len(ids)))
        absent = ("00" * t.hash_size, "ff" * t.hash_size)
        for hexid in sample + list(absent):
            raw = bytes.fromhex(hexid)
            want = [r for r in exp["refs"]
                    if r.get("value") == hexid or r.get("target_value") == hexid]
            assert [ref_to_json(r) for r in t.refs_for(raw)] == want, hexid
            assert [ref_to_json(r) for r in t.refs_for(hexid)] == want


@pytest.mark.parametrize("case", ALL_CASES)
def test_logs_per_ref_are_that_refs_logs_newest_first(case):
    t, exp = open_case(case)
    with t:
        by_ref: dict[str, list[dict]] = {}
        for lg in exp["logs"]:
            by_ref.setdefault(lg["refname"], []).append(lg)
        names = sorted(by_ref)
        if len(names) > 300:
            names = random.Random(case[0]).sample(names, 300) + [names[0], names[-1]]
        for name in names:
            got = [log_to_json(x) for x in t.logs(name)]
            assert got == by_ref[name], name
            uis = [x["update_index"] for x in got]
            assert uis == sorted(uis, reverse=True)
        assert list(t.logs("refs/heads/does-not-exist")) == []


@pytest.mark.parametrize("case", ALL_CASES)
def test_seek_log_starts_at_the_entry(case):
    t, exp = open_case(case)
    with t:
        logs = exp["logs"]
        picks = range(len(logs)) if len(logs) <= 200 else \
            random.Random(case[0]).sample(range(len(logs)), 200)
        for i in picks:
            lg = logs[i]
            got = [log_to_json(x) for x in
                   _take(t.seek_log(lg["refname"], lg["update_index"]), 3)]
            assert got == logs[i:i + 3]


def _take(it, n):
    out = []
    for x in it:
        out.append(x)
        if len(out) == n:
            break
    return out
