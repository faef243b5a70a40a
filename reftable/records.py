"""Record value types: refs and reflog entries.

Names are ``str`` (decoded from UTF-8; undecodable bytes survive as surrogate escapes),
object ids are raw ``bytes``. Constructors accept ``str`` or ``bytes`` names and raw or
hex object ids.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Optional, Union

__all__ = [
    "RefValueType",
    "LogValueType",
    "RefRecord",
    "LogRecord",
    "HASH_SIZES",
    "NameLike",
    "OidLike",
    "to_name",
    "to_name_bytes",
    "to_oid",
    "FrozenInstanceError",
    "null_oid",
    "ref_order",
    "log_order",
    "short_hex",
    "ref_kind",
    "log_kind",
    "ref_value_text",
    "log_move_text",
    "log_who_text",
]

HASH_SIZES = {"sha1": 20, "sha256": 32}

NameLike = Union[str, bytes]
OidLike = Union[str, bytes]


class RefValueType(IntEnum):
    """What a ref record holds (the 3-bit value type of the format)."""

    DELETION = 0
    VAL1 = 1
    VAL2 = 2
    SYMREF = 3


class LogValueType(IntEnum):
    DELETION = 0
    UPDATE = 1


def to_name(name: NameLike) -> str:
    """Return ``name`` as ``str``."""
    if isinstance(name, str):
        return name
    if isinstance(name, (bytes, bytearray, memoryview)):
        return bytes(name).decode("utf-8", "surrogateescape")
    raise TypeError(f"name must be str or bytes, not {type(name).__name__}")


def to_name_bytes(name: NameLike) -> bytes:
    """Return ``name`` as UTF-8 bytes (surrogate escapes restored)."""
    if isinstance(name, str):
        return name.encode("utf-8", "surrogateescape")
    if isinstance(name, (bytes, bytearray, memoryview)):
        return bytes(name)
    raise TypeError(f"name must be str or bytes, not {type(name).__name__}")


def to_oid(oid: OidLike, size: Optional[int] = None) -> bytes:
    """Return an object id as raw bytes; ``oid`` may be raw bytes or a hex string."""
    if isinstance(oid, str):
        try:
            raw = bytes.fromhex(oid)
        except ValueError:
            raise ValueError(f"object id is not hex: {oid!r}") from None
    elif isinstance(oid, (bytes, bytearray, memoryview)):
        raw = bytes(oid)
    else:
        raise TypeError(f"object id must be bytes or hex str, not {type(oid).__name__}")
    if size is not None and len(raw) != size:
        raise ValueError(f"object id has {len(raw)} bytes, expected {size}")
    if size is None and len(raw) not in (20, 32):
        raise ValueError(f"object id has {len(raw)} bytes, expected 20 or 32")
    return raw


class FrozenInstanceError(AttributeError):
    """Raised when a field of a record is assigned or deleted (records are immutable)."""


class _Frozen:
    """Immutable value type over ``__slots__``: equality, hash and pickling by fields.

    Plain slots (no dataclass): the core fills them directly when it reads records,
    and importing the package stays cheap."""

    __slots__ = ()

    def _fields(self) -> tuple[Any, ...]:
        names: tuple[str, ...] = self.__slots__
        return tuple([getattr(self, f) for f in names])

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._fields() == other._fields()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._fields())

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, self._fields())

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in names)
        return f"{self.__class__.__name__}({fields})"


class RefRecord(_Frozen):
    """One ref: a deletion (tombstone), an object id, an object id with its peeled
    id (annotated tags), or a symbolic ref."""

    __slots__ = ("name", "update_index", "value_type", "value", "target_value", "target")
    __match_args__ = ("name", "update_index", "value_type", "value", "target_value", "target")
    name: str
    update_index: int
    value_type: RefValueType
    value: Optional[bytes]
    target_value: Optional[bytes]
    target: Optional[str]

    def __init__(
        self,
        name: str,
        update_index: int,
        value_type: RefValueType,
        value: Optional[bytes] = None,
        target_value: Optional[bytes] = None,
        target: Optional[str] = None,
    ) -> None:
        init = object.__setattr__
        init(self, "name", name)
        init(self, "update_index", update_index)
        init(self, "value_type", value_type)
        init(self, "value", value)
        init(self, "target_value", target_value)
        init(self, "target", target)

    @classmethod
    def val1(cls, name: NameLike, update_index: int, value: OidLike) -> RefRecord:
        return cls(to_name(name), update_index, RefValueType.VAL1, to_oid(value))

    @classmethod
    def val2(
        cls, name: NameLike, update_index: int, value: OidLike, peeled: OidLike
    ) -> RefRecord:
        return cls(
            to_name(name), update_index, RefValueType.VAL2, to_oid(value), to_oid(peeled)
        )

    @classmethod
    def symref(cls, name: NameLike, update_index: int, target: NameLike) -> RefRecord:
        return cls(to_name(name), update_index, RefValueType.SYMREF, target=to_name(target))

    @classmethod
    def deletion(cls, name: NameLike, update_index: int) -> RefRecord:
        return cls(to_name(name), update_index, RefValueType.DELETION)

    @property
    def is_deletion(self) -> bool:
        return self.value_type == RefValueType.DELETION

    @property
    def peeled(self) -> Optional[bytes]:
        """The peeled object id of an annotated tag (``target_value``)."""
        return self.target_value

    def __repr__(self) -> str:
        value = ref_value_text(self)
        return (f"<RefRecord {self.name} @{self.update_index} {ref_kind(self)}"
                f"{' ' + value if value else ''}>")


class LogRecord(_Frozen):
    """One reflog entry. ``value_type`` DELETION marks a tombstone for the entry with
    the same ``(refname, update_index)`` in older tables."""

    __slots__ = ("refname", "update_index", "value_type", "old_id", "new_id", "name", "email",
                 "time", "tz_offset", "message")
    __match_args__ = ("refname", "update_index", "value_type", "old_id", "new_id", "name",
                      "email", "time", "tz_offset", "message")
    refname: str
    update_index: int
    value_type: LogValueType
    old_id: Optional[bytes]
    new_id: Optional[bytes]
    name: str
    email: str
    time: int
    tz_offset: int
    message: str

    def __init__(
        self,
        refname: str,
        update_index: int,
        value_type: LogValueType = LogValueType.UPDATE,
        old_id: Optional[bytes] = None,
        new_id: Optional[bytes] = None,
        name: str = "",
        email: str = "",
        time: int = 0,
        tz_offset: int = 0,
        message: str = "",
    ) -> None:
        init = object.__setattr__
        init(self, "refname", refname)
        init(self, "update_index", update_index)
        init(self, "value_type", value_type)
        init(self, "old_id", old_id)
        init(self, "new_id", new_id)
        init(self, "name", name)
        init(self, "email", email)
        init(self, "time", time)
        init(self, "tz_offset", tz_offset)
        init(self, "message", message)

    @classmethod
    def update(
        cls,
        refname: NameLike,
        update_index: int,
        old_id: OidLike,
        new_id: OidLike,
        name: str = "",
        email: str = "",
        time: int = 0,
        tz_offset: int = 0,
        message: str = "",
    ) -> LogRecord:
        return cls(
            to_name(refname),
            update_index,
            LogValueType.UPDATE,
            to_oid(old_id),
            to_oid(new_id),
            name,
            email,
            time,
            tz_offset,
            message,
        )

    @classmethod
    def deletion(cls, refname: NameLike, update_index: int) -> LogRecord:
        return cls(to_name(refname), update_index, LogValueType.DELETION)

    @property
    def is_deletion(self) -> bool:
        return self.value_type == LogValueType.DELETION

    def __repr__(self) -> str:
        if self.value_type == LogValueType.DELETION:
            return f"<LogRecord {self.refname} @{self.update_index} {log_kind(self)}>"
        return (f"<LogRecord {self.refname} @{self.update_index} {log_move_text(self)}"
                f" {log_who_text(self)} {self.message!r}>")


def null_oid(hash: str) -> bytes:
    """The all-zero object id of ``hash`` (``sha1`` or ``sha256``): a missing ref in
    reflog entries."""
    return bytes(HASH_SIZES[hash])


def ref_order(rec: RefRecord) -> bytes:
    """Sort key of refs as a table stores them: by the name's bytes."""
    return rec.name.encode("utf-8", "surrogateescape")


def log_order(rec: LogRecord) -> tuple[bytes, int]:
    """Sort key of reflog entries as a table stores them: by ref name's bytes, then
    newest update first."""
    return rec.refname.encode("utf-8", "surrogateescape"), -rec.update_index


# -- text of records, shared by the reprs, the CLI and the demo -------------------------------


def short_hex(oid: Optional[bytes], n: int = 12) -> str:
    """The first ``n`` hex digits of ``oid``; ``-`` for None."""
    return "-" if oid is None else oid.hex()[:n]


def ref_kind(rec: RefRecord) -> str:
    """The value type's name: ``deletion``, ``val1``, ``val2`` or ``symref`` (the words
    of the JSON form too)."""
    return RefValueType(rec.value_type).name.lower()


def log_kind(rec: LogRecord) -> str:
    """``deletion`` or ``update``."""
    return LogValueType(rec.value_type).name.lower()


def ref_value_text(rec: RefRecord) -> str:
    """What a ref holds: ``<id>``, ``<id> ^<peeled id>`` (full hex), ``-> <target>``;
    empty for a deletion."""
    parts = []
    if rec.value is not None:
        parts.append(rec.value.hex())
    if rec.target_value is not None:
        parts.append("^" + rec.target_value.hex())
    if rec.target is not None:
        parts.append("-> " + rec.target)
    return " ".join(parts)


def log_move_text(rec: LogRecord, n: int = 12, sep: str = "..") -> str:
    """The move of a reflog entry: ``<old id><sep><new id>``, ids shortened to ``n``."""
    return f"{short_hex(rec.old_id, n)}{sep}{short_hex(rec.new_id, n)}"


def log_who_text(rec: LogRecord) -> str:
    """Who and when of a reflog entry: ``name <email> time +hhmm``."""
    return f"{rec.name} <{rec.email}> {rec.time} {rec.tz_offset:+05d}"


def _register() -> None:
    # Let the core build these records directly (see _record.pxi); the records work
    # without it too.
    try:
        from ._impl import core as _core
    except ImportError:
        return
    _core.register_record_types(RefRecord, LogRecord, tuple(RefValueType), tuple(LogValueType))


_register()
