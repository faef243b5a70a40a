"""A small stand-in for :mod:`dataclasses`, for the option and value classes of the
package: ``@dataclass`` (``frozen=``), ``field(default=, default_factory=, repr=)``,
``__post_init__`` and :func:`replace`.

Importing :mod:`dataclasses` (which imports :mod:`inspect`) and generating its methods
costs several milliseconds, more than the rest of the package; short-lived processes
(one ref read by a hook or a prompt) pay that on every start. The methods here are
shared functions reading the field list; only ``__init__`` is generated (one small
``exec`` per class), so that constructing stays as fast as a dataclass's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Optional, TypeVar, overload

T = TypeVar("T")

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - type checkers only need it on one version
    def dataclass_transform(**kwargs: Any) -> Callable[[T], T]:
        return lambda f: f

__all__ = ["dataclass", "field", "replace", "FrozenInstanceError"]

_MISSING: Any = object()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen instance."""


class _Field:
    __slots__ = ("default", "default_factory", "repr")

    def __init__(self, default: Any, default_factory: Optional[Callable[[], Any]],
                 repr: bool) -> None:
        self.default = default
        self.default_factory = default_factory
        self.repr = repr


def field(*, default: Any = _MISSING, default_factory: Optional[Callable[[], Any]] = None,
          repr: bool = True) -> Any:
    return _Field(default, default_factory, repr)


def _values(self: Any) -> tuple[Any, ...]:
    return tuple([getattr(self, n) for n in type(self).__value_fields__])


def _repr(self: Any) -> str:
    cls = type(self)
    shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in cls.__value_fields__
                      if n not in cls.__value_hidden__)
    return f"{cls.__qualname__}({shown})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        return _values(self) == _values(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(_values(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _make_init(cls: type, names: tuple[str, ...], defaults: dict[str, _Field],
               frozen: bool) -> Callable[..., None]:
    """``__init__(self, <fields>)`` setting each field (frozen classes through
    object.__setattr__), then calling ``__post_init__`` when the class has one."""
    ns: dict[str, Any] = {"_set": object.__setattr__, "_MISSING": _MISSING}
    params, body = [], []
    for n in names:
        d = defaults.get(n)
        if d is None:
            params.append(n)
        elif d.default_factory is not None:
            ns[f"_f_{n}"] = d.default_factory
            params.append(f"{n}=_MISSING")
            body.append(f" if {n} is _MISSING: {n} = _f_{n}()")
        else:
            ns[f"_d_{n}"] = d.default
            params.append(f"{n}=_d_{n}")
        body.append(f" _set(self, {n!r}, {n})" if frozen else f" self.{n} = {n}")
    if hasattr(cls, "__post_init__"):
        body.append(" self.__post_init__()")
    src = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body or [" pass"])
    exec(src, ns)
    init: Callable[..., None] = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _process(cls: type[T], frozen: bool) -> type[T]:
    names = tuple(n for n, a in cls.__dict__.get("__annotations__", {}).items()
                  if not str(a).startswith(("ClassVar", "typing.ClassVar")))
    defaults: dict[str, _Field] = {}
    hidden = set()
    for n in names:
        if n not in cls.__dict__:
            continue
        v = cls.__dict__[n]
        if isinstance(v, _Field):
            if not v.repr:
                hidden.add(n)
            if v.default is _MISSING and v.default_factory is None:
                delattr(cls, n)
                continue
            defaults[n] = v
            if v.default_factory is not None:
                delattr(cls, n)
            else:
                setattr(cls, n, v.default)
        else:
            defaults[n] = _Field(v, None, True)
    attrs: dict[str, Any] = {
        "__value_fields__": names, "__value_defaults__": defaults,
        "__value_hidden__": frozenset(hidden), "__match_args__": names,
        "__init__": _make_init(cls, names, defaults, frozen), "__repr__": _repr, "__eq__": _eq,
        "__hash__": _hash if frozen else None,
    }
    if frozen:
        attrs["__setattr__"] = _frozen_setattr
        attrs["__delattr__"] = _frozen_delattr
    for k, v in attrs.items():
        if k in ("__init__", "__repr__", "__eq__") and k in cls.__dict__:
            continue  # the class defines its own
        setattr(cls, k, v)
    return cls


@overload
def dataclass(cls: type[T], /) -> type[T]: ...
@overload
def dataclass(*, frozen: bool = False) -> Callable[[type[T]], type[T]]: ...
@dataclass_transform(field_specifiers=(field,))
def dataclass(cls: Any = None, /, *, frozen: bool = False) -> Any:
    """Add ``__init__``, ``__repr__``, ``__eq__`` (and for ``frozen``, ``__hash__`` and
    immutability) from the class's annotated fields, as :func:`dataclasses.dataclass`."""
    if cls is None:
        return lambda c: _process(c, frozen)
    return _process(cls, frozen)


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of ``obj`` with some fields changed (as :func:`dataclasses.replace`); for
    the value classes made here and the slotted records of :mod:`reftable.records`."""
    cls = type(obj)
    names = getattr(cls, "__value_fields__", None) or cls.__slots__  # type: ignore[attr-defined]
    values = {n: getattr(obj, n) for n in names}
    values.update(changes)
    return type(obj)(**values)
