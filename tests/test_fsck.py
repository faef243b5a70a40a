"""`reftable verify` / reftable.fsck: clean stacks pass, each kind of damage is found."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from support import oid
from support.fixtures import ROOT, SCENARIOS, stack_dir

from reftable import RefRecord, TableWriter
from reftable.fsck import check_path, check_stack, check_table
from reftable.stack import Stack, StackOptions


def make_stack(d: str, tables: int = 3) -> Stack:
    os.makedirs(d)
    st = Stack.open(d, StackOptions(auto_compact=False))
    for t in range(tables):
        with st.transaction() as tx:
            tx.update(f"refs/heads/b{t}", oid(t))
    return st


def verify_cli(path: str) -> tuple[int, dict]:
    p = subprocess.run([sys.executable, "-m", "reftable", "verify", "--json", path],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    return p.returncode, json.loads(p.stdout)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_git_fixtures_are_clean(scenario):
    assert check_stack(str(stack_dir(scenario))) == []


def test_cli_exit_codes(tmp_path):
    d = str(tmp_path / "s")
    make_stack(d).close()
    assert verify_cli(d) == (0, {"ok": True, "findings": []})
    open(os.path.join(d, "tables.list.lock"), "w").close()
    code, out = verify_cli(d)
    assert code == 1 and not out["ok"]
    assert [f["severity"] for f in out["findings"]] == ["warning"]
    assert "lock" in out["findings"][0]["message"]


def test_leftovers_are_warnings(tmp_path):
    d = str(tmp_path / "s")
    st = make_stack(d)
    stray = os.path.join(d, "0x000000000001-0x000000000001-deadbeef.ref")
    shutil.copy(os.path.join(d, st.names[0]), stray)
    open(os.path.join(d, ".tmp-999999-0badc0de.ref"), "w").close()
    found = check_stack(d)
    assert sorted(os.path.basename(f.path) for f in found) == [
        ".tmp-999999-0badc0de.ref", os.path.basename(stray)]
    assert {f.severity for f in found} == {"warning"}
    st.clean()
    assert check_stack(d) == []


def test_missing_and_corrupt_tables_are_errors(tmp_path):
    d = str(tmp_path / "s")
    st = make_stack(d)
    os.unlink(os.path.join(d, st.names[1]))
    with open(os.path.join(d, st.names[2]), "r+b") as f:
        f.seek(-3, os.SEEK_END)
        f.write(b"\xff\xff\xff")  # footer CRC
    found = check_stack(d)
    assert [(f.severity, os.path.basename(f.path)) for f in found] == [
        ("error", st.names[1]), ("error", st.names[2])]
    assert "missing" in found[0].message and "checksum" in found[1].message


def test_name_must_match_header(tmp_path):
    d = str(tmp_path / "s")
    st = make_stack(d, 1)
    old = st.names[0]
    new = "0x000000000007-0x000000000009-12345678.ref"
    os.rename(os.path.join(d, old), os.path.join(d, new))
    with open(os.path.join(d, "tables.list"), "w") as f:
        f.write(new + "\n")
    (finding,) = check_stack(d)
    assert finding.severity == "error" and "name says update indices [7, 9]" in finding.message


def test_overlapping_update_indices(tmp_path):
    d = str(tmp_path / "s")
    st = make_stack(d, 2)
    with open(os.path.join(d, "tables.list"), "w") as f:
        f.write(f"{st.names[1]}\n{st.names[0]}\n")  # newest first: ranges go backwards
    found = check_stack(d)
    assert any(f.severity == "error" and "overlap" in f.message for f in found)


def test_bad_ref_names_and_corrupt_blocks_in_a_table(tmp_path):
    path = str(tmp_path / "t.ref")
    with TableWriter.create(path, min_update_index=1, max_update_index=1) as w:
        w.add_ref(RefRecord.val1("refs/heads/a..b", 1, oid(1)))
        w.add_ref(RefRecord.val1("refs/heads/ok", 1, oid(2)))
        w.add_ref(RefRecord.symref("refs/heads/sym", 1, "refs/heads/x y"))
    found = check_table(path)
    assert [f.severity for f in found] == ["warning", "warning"]
    assert "a..b" in found[0].message and "x y" in found[1].message
    # a bogus restart count inside the ref block, footer left intact
    data = bytearray(open(path, "rb").read())
    blen = int.from_bytes(data[25:28], "big")
    data[blen - 2:blen] = b"\xff\xff"
    open(path, "wb").write(bytes(data))
    (finding,) = check_path(path)
    assert finding.severity == "error" and "restart count" in finding.message


def test_hostile_tables_list(tmp_path):
    d = str(tmp_path / "s")
    make_stack(d, 1).close()
    with open(os.path.join(d, "tables.list"), "a") as f:
        f.write("../../etc/passwd\n")
    (finding,) = check_stack(d)
    assert finding.severity == "error" and "not a table name" in finding.message
