"""Record codecs, one decoder (and skipper) per record type, and the record objects.

The twin of the compiled core's ``_record`` layer. Values are decoded from a block's
bytes ``d`` between ``pos`` and ``end`` (the restart table); every length is checked
against ``end`` first, and anything that does not add up is a ``FormatError``.

Decoders return record objects (``records=True``) or tuples:
  ref:   (name, update_index, value_type, value, target_value, target)
  log:   (refname, update_index, value_type, old_id, new_id, name, email, time,
          tz_offset, message)
  obj:   (prefix, [block offsets])
  index: (last_key, block offset)
"""

from __future__ import annotations

import struct
import types
from array import array
from collections.abc import Callable, Iterable
from itertools import accumulate
from typing import Any, Optional, Protocol, Union

from ..errors import FormatError
from ._buf import BE64, U64_MAX, get_varint

__all__ = [
    "BLOCK_INDEX", "BLOCK_LOG", "BLOCK_OBJ", "BLOCK_REF", "DECODERS", "Errs",
    "log_key", "normalize_message", "ref_columns", "register_record_types", "skip_value",
]

BLOCK_REF = 0x72    # 'r'
BLOCK_LOG = 0x67    # 'g'
BLOCK_OBJ = 0x6F    # 'o'
BLOCK_INDEX = 0x69  # 'i'

_BE16S = struct.Struct(">h")


class Errs(Protocol):
    """What a decoder needs from its table: the hash size, the update index base and
    a way to make errors that name the file."""

    hash_size: int
    min_update_index: int
    reuse: dict[int, tuple[bytes, str]]  # last string decoded per log field

    def err(self, msg: str, offset: int) -> FormatError: ...


# -- record objects --------------------------------------------------------------------

_ref_vts: tuple[Any, ...] = (0, 1, 2, 3)
_log_vts: tuple[Any, ...] = (0, 1)


def _plain(cls: Any) -> Callable[..., Any]:
    return cls  # type: ignore[no-any-return]


def _register_package_records() -> None:
    # reftable.records registers its classes with the core in use; when that is the
    # compiled one (this twin then runs side by side with it), register them here too
    from .. import records as r

    register_record_types(r.RefRecord, r.LogRecord, tuple(r.RefValueType),
                          tuple(r.LogValueType))


def _load_ref(*values: Any) -> Any:
    _register_package_records()
    return make_ref(*values)


def _load_log(*values: Any) -> Any:
    _register_package_records()
    return make_log(*values)


# until reftable.records registers its classes: import it on first use
make_ref: Callable[..., Any] = _load_ref
make_log: Callable[..., Any] = _load_log

_REF_FIELDS = ("name", "update_index", "value_type", "value", "target_value", "target")
_LOG_FIELDS = ("refname", "update_index", "value_type", "old_id", "new_id", "name", "email",
               "time", "tz_offset", "message")


def _slot_maker(cls: Any, fields: tuple[str, ...]) -> Callable[..., Any] | None:
    """A constructor that fills the slots of a frozen, slotted dataclass directly
    (its ``__init__`` goes through ``object.__setattr__`` per field, several times
    slower), or None when the class is not laid out that way."""
    if getattr(cls, "__dictoffset__", 1) != 0 or "__slots__" not in cls.__dict__:
        return None
    setters = []
    for f in fields:
        d = cls.__dict__.get(f)
        if type(d) is not types.MemberDescriptorType:
            return None
        setters.append(d.__set__)
    new = object.__new__
    if len(fields) == 6:
        s0, s1, s2, s3, s4, s5 = setters

        def make6(a: Any, b: Any, c: Any, d: Any, e: Any, f: Any) -> Any:
            r = new(cls)
            s0(r, a)
            s1(r, b)
            s2(r, c)
            s3(r, d)
            s4(r, e)
            s5(r, f)
            return r
        return make6

    def make(*values: Any) -> Any:
        r = new(cls)
        for s, v in zip(setters, values, strict=False):
            s(r, v)
        return r
    return make


def register_record_types(refcls: Any, logcls: Any, ref_vts: Any, log_vts: Any) -> bool:
    """Tell the core which classes to build for ref and log records (done once by
    ``reftable.records``). True when they can be built without ``__init__``."""
    global make_ref, make_log, _ref_vts, _log_vts
    _ref_vts = tuple(ref_vts)
    _log_vts = tuple(log_vts)
    fast_ref = _slot_maker(refcls, _REF_FIELDS)
    fast_log = _slot_maker(logcls, _LOG_FIELDS)
    make_ref = fast_ref or _plain(refcls)
    make_log = fast_log or _plain(logcls)
    return fast_ref is not None and fast_log is not None


def log_key(refname: bytes, update_index: int) -> bytes:
    """The key of a log record: name, NUL, inverted update index."""
    return refname + b"\0" + BE64.pack(U64_MAX - update_index)


def normalize_message(message: bytes) -> Optional[bytes]:
    """``message`` normalised as Git's writer does (one line ending in exactly one
    newline); None when it has newlines inside."""
    kept = message.rstrip(b"\n")
    if b"\n" in kept:
        return None
    return kept + b"\n"


# -- skipping values (validation) ------------------------------------------------------


def skip_value(t: Errs, typ: int, extra: int, d: bytes, pos: int, end: int,
               boff: int) -> int:
    """Return the position right after the value of a record whose key ends at pos."""
    hs = t.hash_size
    if typ == BLOCK_REF:
        _, pos = get_varint(d, pos, end)
        if pos < 0:
            raise t.err("bad update index varint", boff + end)
        if extra == 0:
            return pos
        if extra == 1 or extra == 2:
            if extra * hs > end - pos:
                raise t.err("truncated object id", boff + pos)
            return pos + extra * hs
        if extra == 3:
            v, npos = get_varint(d, pos, end)
            if npos < 0 or v > end - npos:
                raise t.err("bad symref target length", boff + pos)
            return npos + v
        raise t.err(f"unknown ref value type {extra}", boff + pos)
    if typ == BLOCK_LOG:
        if extra == 0:
            return pos
        if extra != 1:
            raise t.err(f"unknown log value type {extra}", boff + pos)
        if 2 * hs > end - pos:
            raise t.err("truncated log object ids", boff + pos)
        pos += 2 * hs
        for _ in range(2):
            v, npos = get_varint(d, pos, end)
            if npos < 0 or v > end - npos:
                raise t.err("bad log string length", boff + pos)
            pos = npos + v
        _, npos = get_varint(d, pos, end)
        if npos < 0:
            raise t.err("bad log time varint", boff + pos)
        pos = npos
        if end - pos < 2:
            raise t.err("truncated log timezone", boff + pos)
        pos += 2
        v, npos = get_varint(d, pos, end)
        if npos < 0 or v > end - npos:
            raise t.err("bad log message length", boff + pos)
        return npos + v
    if typ == BLOCK_OBJ:
        cnt = extra
        if extra == 0:
            cnt, pos2 = get_varint(d, pos, end)
            if pos2 < 0:
                raise t.err("bad obj position count", boff + pos)
            pos = pos2
        if cnt > end - pos:
            raise t.err(f"obj record claims {cnt} positions", boff + pos)
        for _ in range(cnt):
            _, pos2 = get_varint(d, pos, end)
            if pos2 < 0:
                raise t.err("bad obj position varint", boff + pos)
            pos = pos2
        return pos
    _, npos = get_varint(d, pos, end)  # index
    if npos < 0:
        raise t.err("bad index offset varint", boff + pos)
    return npos


# -- decoding values (already validated by skip_value when the block was decoded) ------


def ref_value(t: Errs, d: bytes, key: bytes, extra: int, pos: int, boff: int,
              records: bool) -> Any:
    b = d[pos]
    if b < 0x80:
        delta = b
        pos += 1
    else:
        delta, pos = get_varint(d, pos, len(d))
    ui = t.min_update_index + delta
    if ui > U64_MAX:
        raise t.err("update index overflows", boff + pos)
    value = target_value = target = None
    if extra == 1:
        value = d[pos:pos + t.hash_size]
    elif extra == 2:
        hs = t.hash_size
        value = d[pos:pos + hs]
        target_value = d[pos + hs:pos + 2 * hs]
    elif extra == 3:
        tl, pos = get_varint(d, pos, len(d))
        target = d[pos:pos + tl].decode("utf-8", "surrogateescape")
    name = key.decode("utf-8", "surrogateescape")
    if records:
        return make_ref(name, ui, _ref_vts[extra], value, target_value, target)
    return (name, ui, extra, value, target_value, target)


def ref_values(t: Errs, d: bytes, keys: list[bytes], extras: list[int],
               vstarts: list[int], boff: int, records: bool) -> list[Any]:
    """``ref_value`` for consecutive records of one block, in one loop."""
    out: list[Any] = []
    add = out.append
    lo = t.min_update_index
    hs = t.hash_size
    make = make_ref if records else _tuple6
    vts = _ref_vts if records else (0, 1, 2, 3)
    for key, extra, pos in zip(keys, extras, vstarts, strict=True):
        b = d[pos]
        if b < 0x80:
            ui = lo + b
            pos += 1
        else:
            delta, pos = get_varint(d, pos, len(d))
            ui = lo + delta
        if ui > U64_MAX:
            raise t.err("update index overflows", boff + pos)
        name = key.decode("utf-8", "surrogateescape")
        if extra == 1:
            add(make(name, ui, vts[1], d[pos:pos + hs], None, None))
        elif extra == 0:
            add(make(name, ui, vts[0], None, None, None))
        else:
            add(ref_value(t, d, key, extra, vstarts[len(out)], boff, records))
    return out


RawColumns = tuple[list[str], bytes, bytes, bytes, dict[int, bytes], dict[int, str]]
RawPacked = tuple[bytes, bytes, bytes, bytes, bytes, dict[int, bytes], dict[int, str]]


def ref_columns(refs: Iterable[tuple[Any, ...]], hash_size: int,
                packed: bool = False) -> Union[RawColumns, RawPacked]:
    """Ref tuples as columns: ``(names, value types, update indexes (native uint64),
    object ids (``hash_size`` bytes each, zeros where none), {position: peeled id},
    {position: symref target})``. ``packed``: the names list is replaced by two
    columns, the names' UTF-8 back to back and each one's end offset in it (native
    uint64)."""
    names: list[str] = []
    types = bytearray()
    uis = array("Q")
    ids: list[bytes] = []
    peeled: dict[int, bytes] = {}
    targets: dict[int, str] = {}
    zeros = bytes(hash_size)
    for i, (name, ui, vt, value, target_value, target) in enumerate(refs):
        names.append(name)
        types.append(vt)
        uis.append(ui)
        ids.append(value if value is not None else zeros)
        if target_value is not None:
            peeled[i] = target_value
        if target is not None:
            targets[i] = target
    rest = (bytes(types), uis.tobytes(), b"".join(ids), peeled, targets)
    if not packed:
        return (names, *rest)
    raw = [n.encode("utf-8", "surrogateescape") for n in names]
    return (b"".join(raw), array("Q", accumulate(map(len, raw))).tobytes(), *rest)


def _tuple6(*values: Any) -> tuple[Any, ...]:
    return values


def _reused(reuse: dict[int, tuple[bytes, str]], field: int, raw: bytes) -> str:
    """``raw`` decoded, or the same ``str`` as for the previous record when the field
    repeats (consecutive log entries share names, emails and ref names)."""
    prev = reuse.get(field)
    if prev is not None and prev[0] == raw:
        return prev[1]
    value = raw.decode("utf-8", "surrogateescape")
    reuse[field] = (raw, value)
    return value


def _str_at(d: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = get_varint(d, pos, len(d))
    return d[pos:pos + n], pos + n


def log_value(t: Errs, d: bytes, key: bytes, extra: int, pos: int, boff: int,
              records: bool) -> Any:
    kl = len(key)
    if kl < 10 or key[kl - 9] != 0:
        raise t.err("log key lacks its update index suffix", boff + pos)
    ui = U64_MAX - BE64.unpack_from(key, kl - 8)[0]
    reuse = t.reuse
    refname = _reused(reuse, 0, key[:kl - 9])
    if extra == 0:
        values: tuple[Any, ...] = (refname, ui, _log_vts[0] if records else 0, None, None,
                                   "", "", 0, 0, "")
    else:
        hs = t.hash_size
        old_id = d[pos:pos + hs]
        new_id = d[pos + hs:pos + 2 * hs]
        name, pos = _str_at(d, pos + 2 * hs)
        email, pos = _str_at(d, pos)
        time, pos = get_varint(d, pos, len(d))
        tz = _BE16S.unpack_from(d, pos)[0]
        message, pos = _str_at(d, pos + 2)
        values = (refname, ui, _log_vts[1] if records else 1, old_id, new_id,
                  _reused(reuse, 1, name), _reused(reuse, 2, email), time, tz,
                  message.decode("utf-8", "surrogateescape"))
    if records:
        return make_log(*values)
    return values


def obj_value(t: Errs, d: bytes, key: bytes, extra: int, pos: int, boff: int,
              records: bool) -> Any:
    cnt = extra
    if extra == 0:
        cnt, pos = get_varint(d, pos, len(d))
    positions = []
    last = 0
    for i in range(cnt):
        v, pos = get_varint(d, pos, len(d))
        last = v if i == 0 else last + v
        if last > U64_MAX:
            raise t.err("obj position overflows", boff + pos)
        positions.append(last)
    return (key, positions)


def index_value(t: Errs, d: bytes, key: bytes, extra: int, pos: int, boff: int,
                records: bool) -> Any:
    return (key, get_varint(d, pos, len(d))[0])


DECODERS = {BLOCK_REF: ref_value, BLOCK_LOG: log_value, BLOCK_OBJ: obj_value,
            BLOCK_INDEX: index_value}
