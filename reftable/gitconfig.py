"""A small, exact reader of Git's config syntax (git/git ``config.c``, ``parse.c``).

Why not a dependency: none of the config readers on PyPI is both maintained and exact
for Git's syntax (escapes in subsections, continuation lines, comment and whitespace
rules inside values, unit suffixes with overflow checks, includes), and this reader is
small enough to own outright.

Supported: ``[section]``, ``[section "subsection"]`` (subsection case-sensitive, ``\\``
escapes any character), the deprecated ``[section.subsection]`` (lower-cased, as Git
does), case-insensitive section and key names, values with double quotes, the escapes
``\\n \\t \\b \\\\ \\"``, continuation lines (trailing backslash), ``;``/``#`` comments
outside quotes, keys without ``=`` (boolean true), ``include.path`` (relative to the
including file, ``~`` expanded, missing files ignored, at most 10 levels deep), ``git
-c``-style overrides and the ``GIT_CONFIG_PARAMETERS`` / ``GIT_CONFIG_COUNT`` environment.

Not supported (skipped on purpose): ``includeIf.<condition>.path`` (conditions need the
repository's location and current branch; the entry itself is kept but nothing is
included), the ``%(prefix)/`` path interpolation.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional, Union

from .errors import ConfigError

__all__ = [
    "GitConfig",
    "ConfigEntry",
    "SharedRepository",
    "canonical_key",
    "parse_bool",
    "parse_int",
    "MAX_INCLUDE_DEPTH",
]

MAX_INCLUDE_DEPTH = 10
_SPACE = " \t\n\v\f\r"  # C isspace() in the C locale
_INT_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_ULONG_MAX = 2**64 - 1
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_NUMBER = re.compile(r"[\t\n\v\f\r ]*([+-]?)(0[xX](?=[0-9a-fA-F])|0|)([0-9a-zA-Z]*)")


def _is_keychar(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "-")


def canonical_key(key: str) -> str:
    """``section.key`` or ``section.sub.section.key`` with section and key lower-cased
    and the subsection (everything between the first and the last dot) kept as is;
    :class:`ConfigError` for a key Git would refuse."""
    last = key.rfind(".")
    if last <= 0:
        raise ConfigError(f"key does not contain a section: {key}")
    if last == len(key) - 1:
        raise ConfigError(f"key does not contain variable name: {key}")
    first = key.find(".")
    section, sub, name = key[:first], key[first + 1:last], key[last + 1:]
    if not all(_is_keychar(c) for c in section) or not all(_is_keychar(c) for c in name) \
            or not (name[0].isascii() and name[0].isalpha()):
        raise ConfigError(f"invalid key: {key}")
    if "\n" in sub:
        raise ConfigError(f"invalid key (newline): {key}")
    if first == last:
        return f"{section.lower()}.{name.lower()}"
    return f"{section.lower()}.{sub}.{name.lower()}"


@dataclass(frozen=True)
class ConfigEntry:
    """One ``key = value`` line. ``value`` None: the key had no ``=`` (boolean true).
    ``path``/``line``: where it was read (None for overrides)."""

    key: str
    value: Optional[str]
    path: Optional[str] = None
    line: Optional[int] = None


class _Parser:
    """Git's ``git_parse_source``, one character at a time (so that every corner of
    its grammar behaves the same)."""

    def __init__(self, text: str, path: Optional[str]):
        # get_next_char() turns "\r\n" into "\n" anywhere, which this does up front
        self.s = text.replace("\r\n", "\n")
        if self.s.startswith("\ufeff"):
            self.s = self.s[1:]
        self.i = 0
        self.eof = False
        self.line = 1  # the line of the next character
        self.path = path

    def next(self) -> str:
        if self.i >= len(self.s):
            self.eof = True
            return "\n"
        c = self.s[self.i]
        self.i += 1
        if c == "\n":
            self.line += 1
        return c

    def error(self) -> ConfigError:
        line = self.line - 1 if self.i and self.s[self.i - 1] == "\n" else self.line
        return ConfigError(f"bad config line {line}", self.path, line)

    def parse(self) -> list[ConfigEntry]:
        out: list[ConfigEntry] = []
        prefix = ""
        comment = False
        while True:
            c = self.next()
            if c == "\n":
                if self.eof:
                    return out
                comment = False
                continue
            if comment:
                continue
            if c in _SPACE:
                continue
            if c in "#;":
                comment = True
                continue
            if c == "[":
                base = self._base_var()
                if not base:
                    raise self.error()
                prefix = base + "."
                continue
            if not (c.isascii() and c.isalpha()):
                raise self.error()
            out.append(self._value(prefix + c.lower()))

    def _value(self, name: str) -> ConfigEntry:
        line = self.line
        while True:
            c = self.next()
            if self.eof or not _is_keychar(c):
                break
            name += c.lower()
        while c in " \t":
            c = self.next()
        value: Optional[str] = None
        if c != "\n":
            if c != "=":
                raise self.error()
            value = self._parse_value()
        return ConfigEntry(name, value, self.path, line)

    def _parse_value(self) -> str:
        quote = comment = False
        trim_len = 0
        buf: list[str] = []
        while True:
            c = self.next()
            if c == "\n":
                if quote:
                    raise self.error()
                if trim_len:
                    del buf[trim_len:]
                return "".join(buf)
            if comment:
                continue
            if c in _SPACE and not quote:
                if not trim_len:
                    trim_len = len(buf)
                if buf:
                    buf.append(c)
                continue
            if not quote and c in ";#":
                comment = True
                continue
            trim_len = 0
            if c == "\\":
                c = self.next()
                if c == "\n":
                    continue  # continuation line
                escaped = {"t": "\t", "b": "\b", "n": "\n", "\\": "\\", '"': '"'}.get(c)
                if escaped is None:
                    raise self.error()
                buf.append(escaped)
                continue
            if c == '"':
                quote = not quote
                continue
            buf.append(c)

    def _base_var(self) -> str:
        name = ""
        while True:
            c = self.next()
            if self.eof:
                raise self.error()
            if c == "]":
                return name
            if c in _SPACE:
                return self._extended_base_var(name, c)
            if not _is_keychar(c) and c != ".":
                raise self.error()
            name += c.lower()

    def _extended_base_var(self, name: str, c: str) -> str:
        while True:
            if c == "\n":
                raise self.error()
            c = self.next()
            if c not in _SPACE:
                break
        if c != '"':
            raise self.error()
        name += "."
        while True:
            c = self.next()
            if c == "\n":
                raise self.error()
            if c == '"':
                break
            if c == "\\":
                c = self.next()
                if c == "\n":
                    raise self.error()
            name += c
        if self.next() != "]":
            raise self.error()
        return name


def _expand_user(path: str, key: str) -> str:
    """Git's ``interpolate_path`` for ``~/`` and ``~user/``."""
    if not path.startswith("~"):
        return path
    user, slash, rest = path[1:].partition("/")
    if not user:
        home = os.environ.get("HOME")
        if home is None:
            raise ConfigError(f"failed to expand user dir in: '{path}' ({key})")
    else:
        try:
            home = pwd.getpwnam(user).pw_dir
        except KeyError:
            raise ConfigError(f"failed to expand user dir in: '{path}' ({key})") from None
    return home + slash + rest if slash else home


def _parse_number(value: Optional[str], key: str, max_value: int, unsigned: bool,
                  entry: Optional[ConfigEntry] = None) -> int:
    """Git's ``git_parse_signed``/``git_parse_unsigned`` (``strtoimax`` with base 0,
    then an optional k/m/g unit), or :class:`ConfigError` like ``die_bad_number``."""
    where = (entry.path, entry.line) if entry is not None else (None, None)

    def bad(kind: str) -> ConfigError:
        return ConfigError(f"bad numeric config value '{value or ''}' for '{key}': {kind}",
                           *where)

    if not value or (unsigned and "-" in value):
        raise bad("invalid unit")
    m = _NUMBER.match(value)
    assert m is not None  # every part of the pattern may be empty
    sign, prefix, rest = m.groups()
    base = 16 if prefix[1:] else 8 if prefix == "0" else 10
    digits = re.match(r"[0-9a-fA-F]*" if base == 16 else r"[0-7]*" if base == 8 else r"[0-9]*",
                      rest)
    assert digits is not None
    text = digits.group()
    if not text and not prefix:
        raise bad("invalid unit")  # no number at all
    number = int(text or "0", base)
    if sign == "-":
        number = -number
    unit = value[m.start(3) + len(text):]
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise bad("invalid unit")
    if abs(number) > (_ULONG_MAX if unsigned else _INT64_MAX) + (sign == "-"):
        raise bad("out of range")  # strtoimax/strtoumax themselves overflow
    if number > 0 and max_value // factor < number:
        raise bad("out of range")
    if number < 0 and -((max_value + 1) // factor) > number:
        raise bad("out of range")
    return number * factor


def parse_int(value: Optional[str], key: str = "value", max_value: int = _INT_MAX) -> int:
    """Git's ``git_config_int``: decimal, ``0x`` hex or ``0`` octal, optional ``k``,
    ``m``, ``g`` unit; :class:`ConfigError` when malformed or beyond ``max_value``."""
    return _parse_number(value, key, max_value, unsigned=False)


def _maybe_bool(value: Optional[str]) -> Optional[bool]:
    if value is None:
        return True
    low = value.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("", "false", "no", "off"):
        return False
    try:
        return parse_int(value) != 0
    except ConfigError:
        return None


def parse_bool(value: Optional[str], key: str = "value") -> bool:
    """Git's ``git_config_bool``: None (no ``=``) and true/yes/on are true,
    ``""``/false/no/off false, an integer is its truth; anything else is an error."""
    b = _maybe_bool(value)
    if b is None:
        raise ConfigError(f"bad boolean config value '{value}' for '{key}'")
    return b


def _sq_dequote_step(s: str, i: int) -> tuple[Optional[str], Optional[int]]:
    """Git's ``sq_dequote_step``: one shell single-quoted word from ``s[i:]``;
    returns (word or None on bad format, index after it or None at the end)."""
    if i >= len(s) or s[i] != "'":
        return None, None
    out: list[str] = []
    i += 1
    while True:
        if i >= len(s):
            return None, None
        c = s[i]
        if c != "'":
            out.append(c)
            i += 1
            continue
        i += 1  # stepped out of the quotes
        if i >= len(s):
            return "".join(out), None
        if s[i] == "\\" and i + 2 < len(s) and s[i + 1] in "'!" and s[i + 2] == "'":
            out.append(s[i + 1])
            i += 3
            continue
        return "".join(out), i


def _parse_parameters(env: str) -> list[tuple[str, Optional[str]]]:
    """``GIT_CONFIG_PARAMETERS``: ``'key=value'`` (old style) or ``'key'='value'`` /
    ``'key'=`` words separated by whitespace."""
    bogus = ConfigError("bogus format in GIT_CONFIG_PARAMETERS")
    pairs: list[tuple[str, Optional[str]]] = []
    cur: Optional[int] = 0
    while cur is not None and cur < len(env):
        word, cur = _sq_dequote_step(env, cur)
        if word is None:
            raise bogus
        if cur is None or env[cur] in _SPACE:
            key, eq, val = word.partition("=")
            if not key:
                raise ConfigError(f"bogus config parameter: {word}")
            pairs.append((key, val if eq else None))
        elif env[cur] == "=":
            cur += 1
            value: Optional[str] = None
            if cur < len(env) and env[cur] == "'":
                value, cur = _sq_dequote_step(env, cur)
                if value is None or (cur is not None and env[cur] not in _SPACE):
                    raise bogus
            elif cur < len(env) and env[cur] not in _SPACE:
                raise bogus
            pairs.append((word, value))
        else:
            raise bogus
        while cur is not None and cur < len(env) and env[cur] in _SPACE:
            cur += 1
    return pairs


class GitConfig:
    """Config entries in the order Git would see them; later entries win.

    >>> cfg = GitConfig.read([".git/config"]).with_overrides(["core.bare=false"])
    >>> cfg.get_bool("core.bare", False)
    False
    """

    def __init__(self, entries: Iterable[ConfigEntry] = ()):
        self.entries: tuple[ConfigEntry, ...] = tuple(entries)
        self._by_key: dict[str, list[ConfigEntry]] = {}
        for e in self.entries:
            self._by_key.setdefault(e.key, []).append(e)

    def __repr__(self) -> str:
        return f"<GitConfig {len(self.entries)} entries>"

    # -- building ------------------------------------------------------------

    @classmethod
    def read(cls, paths: Sequence[str]) -> GitConfig:
        """Read the files in order (later ones override earlier ones); a missing file
        is skipped, as Git skips a missing global or system config."""
        out: list[ConfigEntry] = []
        for p in paths:
            _read_file(os.fspath(p), 0, out, missing_ok=True)
        return cls(out)

    @classmethod
    def parse(cls, text: Union[str, bytes], path: Optional[str] = None) -> GitConfig:
        """Parse config text; ``path`` names it in errors and anchors relative
        includes (without it, a relative ``include.path`` is an error)."""
        out: list[ConfigEntry] = []
        _add_parsed(text, path, 0, out)
        return cls(out)

    def with_overrides(self, pairs: Iterable[Union[str, tuple[str, Optional[str]]]]
                       ) -> GitConfig:
        """A new config with ``git -c`` overrides on top: ``"key=value"``, ``"key"``
        (boolean true) or ``(key, value)`` pairs."""
        out = list(self.entries)
        for p in pairs:
            if isinstance(p, str):
                key, eq, val = p.partition("=")
                if not key:
                    raise ConfigError(f"bogus config parameter: {p}")
                _add_override(key, val if eq else None, out)
            else:
                _add_override(p[0], p[1], out)
        return GitConfig(out)

    @classmethod
    def from_environ(cls, env: Mapping[str, str], base: Optional[GitConfig] = None
                     ) -> GitConfig:
        """``base`` (or an empty config) with the overrides of ``env`` on top:
        ``GIT_CONFIG_COUNT`` with ``GIT_CONFIG_KEY_<n>``/``GIT_CONFIG_VALUE_<n>``, then
        ``GIT_CONFIG_PARAMETERS`` (what ``git -c`` passes to sub-processes)."""
        pairs: list[tuple[str, Optional[str]]] = []
        count = env.get("GIT_CONFIG_COUNT")
        if count is not None:
            if count and not count.isdigit():
                raise ConfigError("bogus count in GIT_CONFIG_COUNT")
            n = int(count or "0")
            if n > _INT_MAX:
                raise ConfigError("too many entries in GIT_CONFIG_COUNT")
            for i in range(n):
                key = env.get(f"GIT_CONFIG_KEY_{i}")
                if key is None:
                    raise ConfigError(f"missing config key GIT_CONFIG_KEY_{i}")
                val = env.get(f"GIT_CONFIG_VALUE_{i}")
                if val is None:
                    raise ConfigError(f"missing config value GIT_CONFIG_VALUE_{i}")
                pairs.append((key, val))
        params = env.get("GIT_CONFIG_PARAMETERS")
        if params:
            pairs.extend(_parse_parameters(params))
        return (base or cls()).with_overrides(pairs)

    # -- reading -------------------------------------------------------------

    def get_entry(self, key: str) -> Optional[ConfigEntry]:
        """The entry that wins for ``key`` (the last one), or None."""
        found = self._by_key.get(canonical_key(key))
        return found[-1] if found else None

    def get(self, key: str) -> Optional[str]:
        """The last value of ``key``; ``""`` for a key without ``=``; None if unset."""
        e = self.get_entry(key)
        if e is None:
            return None
        return "" if e.value is None else e.value

    def get_all(self, key: str) -> list[str]:
        """Every value of a multi-valued key, in order (``""`` for no ``=``)."""
        return ["" if e.value is None else e.value
                for e in self._by_key.get(canonical_key(key), [])]

    def _bad(self, e: ConfigEntry, message: str) -> ConfigError:
        return ConfigError(message, e.path, e.line)

    def get_bool(self, key: str, default: bool) -> bool:
        """``key`` as Git's boolean (see :func:`parse_bool`), ``default`` if unset."""
        e = self.get_entry(key)
        if e is None:
            return default
        b = _maybe_bool(e.value)
        if b is None:
            raise self._bad(e, f"bad boolean config value '{e.value}' for '{key}'")
        return b

    def _number(self, key: str, default: int, max_value: int, unsigned: bool) -> int:
        e = self.get_entry(key)
        if e is None:
            return default
        return _parse_number(e.value, key, max_value, unsigned, e)

    def get_int(self, key: str, default: int) -> int:
        """``key`` as Git's ``int`` (32 bits, units k/m/g, overflow is an error)."""
        return self._number(key, default, _INT_MAX, False)

    def get_int64(self, key: str, default: int) -> int:
        """``key`` as Git's ``int64`` (``git_config_int64``)."""
        return self._number(key, default, _INT64_MAX, False)

    def get_ulong(self, key: str, default: int) -> int:
        """``key`` as Git's ``unsigned long`` (``git_config_ulong``; no sign allowed)."""
        return self._number(key, default, _ULONG_MAX, True)

    def get_path(self, key: str) -> Optional[str]:
        """``key`` as a path (``git_config_pathname``): ``~/`` and ``~user/`` expanded;
        a ``:(optional)`` path that does not exist counts as unset."""
        e = self.get_entry(key)
        if e is None:
            return None
        if e.value is None:
            raise self._bad(e, f"missing value for '{key}'")
        value = e.value
        optional = value.startswith(":(optional)")
        if optional:
            value = value[len(":(optional)"):]
        path = _expand_user(value, key)
        if optional and not os.path.exists(path):
            return None
        return path


def _add_override(key: str, value: Optional[str], out: list[ConfigEntry]) -> None:
    if not key:
        raise ConfigError("empty config key")
    entry = ConfigEntry(canonical_key(key), value)
    out.append(entry)
    _maybe_include(entry, None, 0, out)


def _add_parsed(text: Union[str, bytes], path: Optional[str], depth: int,
                out: list[ConfigEntry]) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    for entry in _Parser(text, path).parse():
        out.append(entry)
        _maybe_include(entry, path, depth, out)


def _maybe_include(entry: ConfigEntry, path: Optional[str], depth: int,
                   out: list[ConfigEntry]) -> None:
    # included entries come right after the include.path line, as Git reads them
    # there; includeIf.*.path is skipped (see the module docs)
    if entry.key != "include.path":
        return
    if entry.value is None:
        raise ConfigError("missing value for 'include.path'", entry.path, entry.line)
    target = _expand_user(entry.value, "include.path")
    if not os.path.isabs(target):
        if path is None:
            raise ConfigError("relative config includes must come from files",
                              entry.path, entry.line)
        target = os.path.join(os.path.dirname(path), target)
    if depth + 1 > MAX_INCLUDE_DEPTH:
        raise ConfigError(f"exceeded maximum include depth ({MAX_INCLUDE_DEPTH}) while "
                          f"including {target}", entry.path, entry.line)
    _read_file(target, depth + 1, out, missing_ok=True)


def _read_file(path: str, depth: int, out: list[ConfigEntry], missing_ok: bool) -> None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (FileNotFoundError, NotADirectoryError):
        if missing_ok:
            return
        raise ConfigError("no such file", path) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", path) from e
    _add_parsed(data, path, depth, out)


# -- core.sharedRepository ---------------------------------------------------------

_PERM_UMASK = 0
_PERM_GROUP = 0o660
_PERM_EVERYBODY = 0o664
_OCTAL = re.compile(r"[\t\n\v\f\r ]*([+-]?)([0-7]*)")


@dataclass(frozen=True)
class SharedRepository:
    """``core.sharedRepository`` as Git holds it (``git_config_perm``): ``0`` (umask),
    ``0o660`` (group), ``0o664`` (all/world/everybody), or ``-mode`` for an explicit
    ``0xxx`` mode (group/other write bits of which are dropped)."""

    value: int = _PERM_UMASK

    @classmethod
    def parse(cls, value: Optional[str], key: str = "core.sharedrepository"
              ) -> SharedRepository:
        """Parse a config value (None: the key without ``=``, which means group)."""
        if value is None or value == "group":
            return cls(_PERM_GROUP)
        if value == "umask":
            return cls(_PERM_UMASK)
        if value in ("all", "world", "everybody"):
            return cls(_PERM_EVERYBODY)
        m = _OCTAL.fullmatch(value)
        if m is None or (value and not m.group(2)):  # strtol() read no digits
            return cls(_PERM_GROUP if parse_bool(value, key) else _PERM_UMASK)
        mode = int(m.group(2) or "0", 8) * (-1 if m.group(1) == "-" else 1)
        if mode in (0, 1, 2):  # Git's compatibility values: umask, group, everybody
            return cls((_PERM_UMASK, _PERM_GROUP, _PERM_EVERYBODY)[mode])
        if mode & 0o600 != 0o600:
            raise ConfigError(f"problem with core.sharedRepository filemode value "
                              f"(0{mode & 0o777:03o}): the owner of files must always "
                              "have read and write permissions")
        return cls(-(mode & 0o666))

    @classmethod
    def from_config(cls, config: GitConfig) -> SharedRepository:
        """From ``core.sharedRepository`` (unset: umask)."""
        e = config.get_entry("core.sharedRepository")
        if e is None:
            return cls()
        try:
            return cls.parse(e.value)
        except ConfigError as err:
            raise ConfigError(err.reason, e.path, e.line) from None

    @property
    def is_shared(self) -> bool:
        return self.value != _PERM_UMASK

    def _calc(self, mode: int) -> int:
        # Git's calc_shared_perm()
        tweak = -self.value if self.value < 0 else self.value
        if not mode & 0o200:
            tweak &= ~0o222
        if mode & 0o100:
            tweak |= (tweak & 0o444) >> 2
        if self.value < 0:
            return (mode & ~0o777) | tweak
        return mode | tweak

    def file_mode(self, requested_mode: int = 0o666, umask: int = 0o022) -> int:
        """The mode Git gives a file created with ``requested_mode`` under ``umask``
        (what the reftable backend chmods its tables and ``tables.list`` to)."""
        return self._calc(requested_mode & ~umask)

    def dir_mode(self, umask: int = 0o022) -> int:
        """The mode of a directory Git creates under ``umask`` (``mkdir 0777``, then
        ``adjust_shared_perm``: read bits copied to execute bits, setgid when the
        group gets access)."""
        mode = 0o777 & ~umask
        if not self.is_shared:
            return mode
        mode = self._calc(mode)
        mode |= (mode & 0o444) >> 2
        if mode & 0o060:
            mode |= 0o2000
        return mode
