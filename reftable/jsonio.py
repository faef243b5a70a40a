"""The JSON shape of records used by the CLI and by Git's fixtures.

Refs: ``{"name", "update_index", "type": deletion|val1|val2|symref}`` plus ``value``,
``target_value`` (hex) or ``target``. Logs: ``{"refname", "update_index",
"type": deletion|update}`` plus ``old_id``, ``new_id``, ``name``, ``email``, ``time``,
``tz_offset`` and ``message`` for updates.
"""

from __future__ import annotations

from typing import Any

from .records import LogRecord, LogValueType, RefRecord, RefValueType, log_kind, ref_kind
from .table import Table

__all__ = ["ref_to_json", "log_to_json", "ref_from_json", "log_from_json", "table_to_json"]

_REF_TYPES = {t.name.lower(): t for t in RefValueType}  # (the words of ref_kind)


def ref_to_json(rec: RefRecord) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": rec.name,
        "update_index": rec.update_index,
        "type": ref_kind(rec),
    }
    if rec.value is not None:
        d["value"] = rec.value.hex()
    if rec.target_value is not None:
        d["target_value"] = rec.target_value.hex()
    if rec.target is not None:
        d["target"] = rec.target
    return d


def log_to_json(rec: LogRecord) -> dict[str, Any]:
    d: dict[str, Any] = {
        "refname": rec.refname,
        "update_index": rec.update_index,
        "type": log_kind(rec),
    }
    if rec.value_type == LogValueType.UPDATE:
        assert rec.old_id is not None and rec.new_id is not None
        d.update(
            old_id=rec.old_id.hex(),
            new_id=rec.new_id.hex(),
            name=rec.name,
            email=rec.email,
            time=rec.time,
            tz_offset=rec.tz_offset,
            message=rec.message,
        )
    return d


def ref_from_json(d: dict[str, Any]) -> RefRecord:
    vt = _REF_TYPES[d["type"]]
    return RefRecord(
        d["name"],
        int(d["update_index"]),
        vt,
        bytes.fromhex(d["value"]) if "value" in d else None,
        bytes.fromhex(d["target_value"]) if "target_value" in d else None,
        d.get("target"),
    )


def log_from_json(d: dict[str, Any]) -> LogRecord:
    if d["type"] == "deletion":
        return LogRecord.deletion(d["refname"], int(d["update_index"]))
    return LogRecord(
        d["refname"],
        int(d["update_index"]),
        LogValueType.UPDATE,
        bytes.fromhex(d["old_id"]),
        bytes.fromhex(d["new_id"]),
        d.get("name", ""),
        d.get("email", ""),
        int(d.get("time", 0)),
        int(d.get("tz_offset", 0)),
        d.get("message", ""),
    )


def table_to_json(t: Table) -> dict[str, Any]:
    return {
        "version": t.version,
        "block_size": t.block_size,
        "min_update_index": t.min_update_index,
        "max_update_index": t.max_update_index,
        "hash": t.hash,
        "object_id_len": t.object_id_len,
        "sections": t.sections,
        "size": t.size,
        "refs": [ref_to_json(r) for r in t.refs()],
        "logs": [log_to_json(r) for r in t.logs()],
    }
