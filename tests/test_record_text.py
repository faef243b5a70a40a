"""The shared text of records (reftable.records helpers) and the reprs built on it."""

from __future__ import annotations

import pytest

from reftable.jsonio import log_from_json, log_to_json, ref_from_json, ref_to_json
from reftable.records import (
    LogRecord,
    LogValueType,
    RefRecord,
    RefValueType,
    log_kind,
    log_move_text,
    log_who_text,
    ref_kind,
    ref_value_text,
    short_hex,
)

A, B, C = "aa" * 20, "bb" * 20, "cc" * 20


def test_short_hex():
    assert short_hex(bytes.fromhex(A)) == "a" * 12
    assert short_hex(bytes.fromhex(A), 7) == "a" * 7
    assert short_hex(None) == "-"


@pytest.mark.parametrize("rec, kind, text", [
    (RefRecord.val1("r", 1, A), "val1", A),
    (RefRecord.val2("r", 1, A, B), "val2", f"{A} ^{B}"),
    (RefRecord.symref("r", 1, "refs/heads/x"), "symref", "-> refs/heads/x"),
    (RefRecord.deletion("r", 1), "deletion", ""),
])
def test_ref_text(rec, kind, text):
    assert ref_kind(rec) == kind == ref_to_json(rec)["type"]
    assert ref_value_text(rec) == text
    assert repr(rec) == f"<RefRecord r @1 {kind}{' ' + text if text else ''}>"
    assert ref_from_json(ref_to_json(rec)) == rec


def test_log_text():
    rec = LogRecord.update("r", 5, A, C, "N", "n@x", 1700000000, -130, "msg\n")
    assert log_kind(rec) == "update" == log_to_json(rec)["type"]
    assert log_move_text(rec) == "aaaaaaaaaaaa..cccccccccccc"
    assert log_move_text(rec, 4, " -> ") == "aaaa -> cccc"
    assert log_who_text(rec) == "N <n@x> 1700000000 -0130"
    assert repr(rec) == ("<LogRecord r @5 aaaaaaaaaaaa..cccccccccccc N <n@x> 1700000000 "
                         "-0130 'msg\\n'>")
    assert log_from_json(log_to_json(rec)) == rec
    gone = LogRecord.deletion("r", 4)
    assert log_kind(gone) == "deletion" == log_to_json(gone)["type"]
    assert repr(gone) == "<LogRecord r @4 deletion>"
    assert log_move_text(LogRecord("r", 3)) == "-..-"


def test_kinds_are_the_enum_names():
    assert [ref_kind(RefRecord("r", 1, t)) for t in RefValueType] == \
        ["deletion", "val1", "val2", "symref"]
    assert [log_kind(LogRecord("r", 1, t)) for t in LogValueType] == ["deletion", "update"]


def test_null_oid_and_sort_orders():
    from reftable.records import log_order, null_oid, ref_order

    assert null_oid("sha1") == bytes(20) and null_oid("sha256") == bytes(32)
    refs = [RefRecord.deletion(n, 1) for n in ("b", "a/\udcff", "a/b", "a")]
    assert [r.name for r in sorted(refs, key=ref_order)] == ["a", "a/b", "a/\udcff", "b"]
    logs = [LogRecord.deletion(n, ui) for n, ui in (("a", 1), ("b", 9), ("a", 3))]
    assert [(r.refname, r.update_index) for r in sorted(logs, key=log_order)] == \
        [("a", 3), ("a", 1), ("b", 9)]
