"""The Git-mirroring verbs of the CLI: ``python -m reftable [-C PATH] VERB ...``.

Each verb prints to stdout exactly what ``git VERB`` prints for the same arguments in
the same repository, and exits with Git's status: 0, 1 for a plain failure or a "no",
128 where Git dies, 129 for a usage error. Messages on stderr follow Git's prefixes
(``fatal:``, ``error:``) with our own wording.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional

from .errors import RefNameError, ReftableError
from .records import HASH_SIZES, LogRecord, RefValueType
from .refname import (
    check_reflog_name,
    check_refname_format,
)
from .repository import Repository

if TYPE_CHECKING:
    from .cli import GitContext

__all__ = ["GIT_VERBS", "run_verb", "parse_options"]

GIT_VERBS = ("for-each-ref", "rev-parse", "symbolic-ref", "update-ref", "reflog",
             "check-ref-format")


class Exit(Exception):
    """Leave the verb with ``status`` after printing ``message`` (if any) to stderr."""

    def __init__(self, status: int, message: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message


def die(message: str) -> Exit:
    return Exit(128, f"fatal: {message}")


def usage(message: str) -> Exit:
    return Exit(129, f"error: {message}")


def _repo(ctx: GitContext) -> Repository:
    try:
        return ctx.repo()
    except ReftableError as e:
        raise die(str(e)) from None


def _write(text: str) -> None:
    data = text.encode("utf-8", "surrogateescape")
    buf = getattr(sys.stdout, "buffer", None)
    if buf is not None:
        sys.stdout.flush()
        buf.write(data)
        buf.flush()
    else:  # pragma: no cover - a text-only stream
        sys.stdout.write(data.decode("utf-8", "replace"))


def _read_stdin() -> bytes:
    buf = getattr(sys.stdin, "buffer", None)
    if buf is not None:
        return bytes(buf.read())
    return str(sys.stdin.read()).encode("utf-8", "surrogateescape")


# -- option parsing the way Git's parse-options does it -------------------------------


def parse_options(args: Sequence[str], flags: Sequence[str], valued: Sequence[str] = ()
                  ) -> tuple[dict[str, list[str]], list[str]]:
    """Split ``args`` into options and positionals. ``flags``/``valued``: option
    spellings (``-q``, ``--quiet``); valued ones take ``--opt=V``, ``--opt V``, ``-mV``
    or ``-m V``. Options may follow positionals; ``--`` ends them. An unknown option is
    a usage error (exit 129), as in Git."""
    opts: dict[str, list[str]] = {}
    pos: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            pos.extend(args[i:])
            break
        if not a.startswith("-") or a == "-":
            pos.append(a)
            continue
        if a.startswith("--"):
            name, eq, value = a.partition("=")
            if name in flags and not eq:
                opts.setdefault(name, []).append("")
                continue
            if name in valued:
                if not eq:
                    if i >= len(args):
                        raise usage(f"option `{name[2:]}' requires a value")
                    value = args[i]
                    i += 1
                opts.setdefault(name, []).append(value)
                continue
            raise usage(f"unknown option `{a[2:]}'")
        # short options, possibly bundled: -qz, -mMSG
        j = 1
        while j < len(a):
            o = "-" + a[j]
            if o in flags:
                opts.setdefault(o, []).append("")
                j += 1
                continue
            if o in valued:
                value = a[j + 1:]
                if not value:
                    if i >= len(args):
                        raise usage(f"switch `{a[j]}' requires a value")
                    value = args[i]
                    i += 1
                opts.setdefault(o, []).append(value)
                break
            raise usage(f"unknown switch `{a[j]}'")
    return opts, pos


def _has(opts: dict[str, list[str]], *names: str) -> bool:
    return any(n in opts for n in names)


def _last(opts: dict[str, list[str]], *names: str) -> Optional[str]:
    for n in names:
        if n in opts:
            return opts[n][-1]
    return None


# -- check-ref-format ----------------------------------------------------------------------


def cmd_check_ref_format(ctx: GitContext, args: Sequence[str]) -> int:
    opts, pos = parse_options(args, ["--allow-onelevel", "--no-allow-onelevel",
                                     "--refspec-pattern", "--normalize", "--print"])
    if len(pos) != 1:
        raise usage("usage: git check-ref-format [--normalize] [<options>] <refname>")
    name = pos[0]
    onelevel = "--allow-onelevel" in opts and "--no-allow-onelevel" not in opts
    if _has(opts, "--normalize", "--print"):
        # collapse slashes and drop a leading one, as Git does before checking
        name = re.sub("/+", "/", name).lstrip("/")
    if check_refname_format(name, allow_onelevel=onelevel,
                            refspec_pattern="--refspec-pattern" in opts) is not None:
        return 1
    if _has(opts, "--normalize", "--print"):
        _write(name + "\n")
    return 0


# -- for-each-ref ----------------------------------------------------------------------------

_ATOM = re.compile(r"%\((\w+(?::[\w=,.-]+)?)\)|%%|%([0-9a-fA-F]{2})")


def _format_ref(fmt: str, name: str, oid: bytes, target: Optional[str],
                object_type: Callable[[bytes], str]) -> str:
    def atom(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        if m.group(2) is not None:
            return chr(int(m.group(2), 16))
        a = m.group(1)
        if a == "refname":
            return name
        if a == "objectname":
            return oid.hex()
        if a == "objectname:short":
            return oid.hex()[:7]
        if a == "symref":
            return target or ""
        if a == "objecttype":
            return object_type(oid)
        raise die(f"unknown field name: {a}")

    return _ATOM.sub(atom, fmt)


def cmd_for_each_ref(ctx: GitContext, args: Sequence[str]) -> int:
    opts, patterns = parse_options(args, ["--include-root-refs"], ["--format", "--count"])
    fmt = _last(opts, "--format")
    if fmt is None:
        fmt = "%(objectname) %(objecttype)\t%(refname)"
    count = _last(opts, "--count")
    limit = int(count) if count is not None and count.isdigit() else None
    repo = _repo(ctx)
    from .objects import ObjectTypes

    types = ObjectTypes(repo.common_dir, repo.hash)
    lines: list[str] = []
    for rec, oid in repo.for_each_ref(tuple(patterns), "--include-root-refs" in opts):
        if limit is not None and len(lines) >= limit:
            break
        target = rec.target if rec.value_type == RefValueType.SYMREF else None
        lines.append(_format_ref(fmt, rec.name, oid, target, types.type_of) + "\n")
    _write("".join(lines))
    return 0


# -- rev-parse ---------------------------------------------------------------------------------


def cmd_rev_parse(ctx: GitContext, args: Sequence[str]) -> int:
    opts, pos = parse_options(args, ["--verify", "-q", "--quiet"])
    quiet = _has(opts, "-q", "--quiet")
    repo = _repo(ctx)
    if "--verify" in opts:
        if len(pos) != 1:
            if quiet:
                return 1
            raise die("Needed a single revision")
        oid = repo.rev_parse(pos[0])
        if oid is None:
            if quiet:
                return 1
            raise die("Needed a single revision")
        _write(oid.hex() + "\n")
        return 0
    out: list[str] = []
    for a in pos:
        oid = repo.rev_parse(a)
        if oid is None:
            _write("".join(out))
            raise die(f"ambiguous argument '{a}': unknown revision or path not in the "
                      "working tree.")
        out.append(oid.hex() + "\n")
    _write("".join(out))
    return 0


# -- symbolic-ref ------------------------------------------------------------------------------


def cmd_symbolic_ref(ctx: GitContext, args: Sequence[str]) -> int:
    opts, pos = parse_options(args, ["-q", "--quiet", "-d", "--delete", "--short",
                                     "--no-recurse", "--recurse"], ["-m"])
    quiet = _has(opts, "-q", "--quiet")
    repo = _repo(ctx)
    if _has(opts, "-d", "--delete"):
        if len(pos) != 1:
            raise usage("usage: git symbolic-ref -d [-q] <name>")
        final, _, is_sym = repo.resolve_ref(pos[0])
        if final is None:
            raise die(f"No such ref: {pos[0]}")
        if not is_sym:
            if quiet:
                return 1
            raise die(f"Cannot delete {pos[0]}, not a symbolic ref")
        if pos[0] == "HEAD":
            raise die("deleting 'HEAD' is not allowed")
        return _commit_symref(repo, pos[0], None, _last(opts, "-m"))
    if len(pos) == 1:
        name = pos[0]
        if "--no-recurse" in opts:
            rec = repo.read_ref(name)
            if rec is None or rec.value_type != RefValueType.SYMREF:
                if quiet:
                    return 1
                raise die(f"ref {name} is not a symbolic ref")
            target = rec.target or ""
        else:
            final, _, is_sym = repo.resolve_ref(name)
            if final is None:
                raise die(f"No such ref: {name}")
            if not is_sym:
                if quiet:
                    return 1
                raise die(f"ref {name} is not a symbolic ref")
            target = final
        if "--short" in opts:
            target = shorten_ref(target)
        _write(target + "\n")
        return 0
    if len(pos) == 2:
        name, target = pos
        if name == "HEAD" and not target.startswith("refs/"):
            raise die("Refusing to point HEAD outside of refs/")
        if check_refname_format(target, allow_onelevel=True) is not None:
            raise die(f"Refusing to set '{name}' to invalid ref '{target}'")
        return _commit_symref(repo, name, target, _last(opts, "-m"))
    raise usage("usage: git symbolic-ref [-m <reason>] <name> <ref>")


def _commit_symref(repo: Repository, name: str, target: Optional[str],
                   message: Optional[str]) -> int:
    try:
        tx = repo.transaction(message or "")
        if target is None:
            tx.delete(name, no_deref=True)
        else:
            tx.symref(name, target)
        tx.commit()
    except ReftableError as e:
        raise Exit(1, f"error: {e}") from None
    return 0


def shorten_ref(name: str) -> str:
    """A short form of ``name`` (``refs/heads/x`` -> ``x``), as Git's default
    ``shorten_unambiguous_ref`` gives when nothing is ambiguous."""
    for prefix in ("refs/heads/", "refs/tags/", "refs/remotes/", "refs/"):
        if name.startswith(prefix) and len(name) > len(prefix):
            short = name[len(prefix):]
            if prefix == "refs/remotes/" and short.endswith("/HEAD"):
                return short[:-5]
            return short
    return name


# -- update-ref --------------------------------------------------------------------------------


def _parse_value(repo: Repository, text: str, what: str) -> bytes:
    oid = repo.rev_parse(text)
    if oid is None:
        raise die(f"{text}: not a valid SHA1")
    return oid


def cmd_update_ref(ctx: GitContext, args: Sequence[str]) -> int:
    opts, pos = parse_options(args, ["-d", "--no-deref", "--create-reflog", "--stdin", "-z"],
                              ["-m"])
    message = _last(opts, "-m") or ""
    no_deref = "--no-deref" in opts
    create_reflog = "--create-reflog" in opts
    repo = _repo(ctx)
    if "--stdin" in opts:
        if pos or "-d" in opts:
            raise usage("usage: git update-ref [<options>] --stdin [-z]")
        return _update_ref_stdin(repo, message, no_deref, create_reflog, "-z" in opts)
    if "-z" in opts:
        raise usage("-z only makes sense with --stdin")
    null = b"\0" * HASH_SIZES[repo.hash]
    if "-d" in opts:
        if len(pos) not in (1, 2):
            raise usage("usage: git update-ref -d <refname> [<old-oid>]")
        name = pos[0]
        old = _parse_value(repo, pos[1], "old value") if len(pos) == 2 else None
        if old == null:
            old = None  # (Git: a null old value means "any" here, for compatibility)
        try:
            tx = repo.transaction(message)
            from .transaction import ANY

            tx.delete(name, ANY if old is None else old, no_deref=no_deref)
            tx.commit()
        except ReftableError as e:
            raise Exit(1, f"error: {e}") from None
        return 0
    if len(pos) not in (2, 3):
        raise usage("usage: git update-ref [<options>] <refname> <new-oid> [<old-oid>]")
    name, newval = pos[0], pos[1]
    new = _parse_value(repo, newval, "new value")
    from .transaction import ANY

    expect: object = ANY
    if len(pos) == 3:
        expect = None if pos[2] == "" else _parse_value(repo, pos[2], "old value")
        if expect == null:
            expect = None
    try:
        tx = repo.transaction(message, create_reflog=create_reflog)
        if new == null:
            tx.delete(name, expect, no_deref=no_deref)
        else:
            tx.update(name, new, expect, no_deref=no_deref)
        tx.commit()
    except ReftableError as e:
        raise die(f"update_ref failed for ref '{name}': {e}") from None
    return 0


_C_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}


def _unquote_c(text: bytes) -> tuple[bytes, bytes]:
    """Git's ``unquote_c_style``: the quoted string at the start of ``text`` and the
    rest after the closing quote."""
    out = bytearray()
    i = 1
    while i < len(text):
        c = text[i]
        if c == 0x22:
            return bytes(out), text[i + 1:]
        if c == 0x5C and i + 1 < len(text):
            e = chr(text[i + 1])
            if e in _C_ESCAPES:
                out.append(_C_ESCAPES[e])
                i += 2
                continue
            if "0" <= e <= "3" and i + 3 < len(text):
                out.append(int(text[i + 1:i + 4], 8))
                i += 4
                continue
            raise die(f"badly quoted argument: {text.decode('utf-8', 'replace')}")
        out.append(c)
        i += 1
    raise die(f"badly quoted argument: {text.decode('utf-8', 'replace')}")


class _StdinParser:
    """Git's ``update-ref --stdin`` grammar (``builtin/update-ref.c``), both the
    line form and ``-z``."""

    def __init__(self, data: bytes, nul: bool):
        self.data = data
        self.nul = nul
        self.pos = 0

    def commands(self) -> list[tuple[str, bytes]]:
        """``(command, rest)`` pairs; in line mode ``rest`` is the line after the
        command, with ``-z`` it is parsed by :meth:`take_z` as it goes."""
        out = []
        if not self.nul:
            for line in self.data.split(b"\n"):
                if not line:
                    continue
                cmd, _, rest = line.partition(b" ")
                out.append((cmd.decode("utf-8", "surrogateescape"), rest))
        return out

    def next_z_command(self) -> Optional[tuple[str, bytes]]:
        if self.pos >= len(self.data):
            return None
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise die("unterminated -z input")
        word = self.data[self.pos:end]
        self.pos = end + 1
        cmd, _, first = word.partition(b" ")
        return cmd.decode("utf-8", "surrogateescape"), first

    def peek_z(self) -> Optional[bytes]:
        """The next NUL-terminated argument without taking it."""
        pos = self.pos
        try:
            return self.take_z()
        finally:
            self.pos = pos

    def take_z(self) -> Optional[bytes]:
        """The next NUL-terminated argument, or None at the end of input."""
        if self.pos >= len(self.data):
            return None
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise die("unterminated -z input")
        arg = self.data[self.pos:end]
        self.pos = end + 1
        return arg


def _line_args(rest: bytes) -> list[bytes]:
    args: list[bytes] = []
    while rest:
        if rest.startswith(b'"'):
            arg, rest = _unquote_c(rest)
            args.append(arg)
            if rest.startswith(b" "):
                rest = rest[1:]
                if not rest:
                    args.append(b"")
            elif rest:
                raise die("expected SP after quoted argument")
            continue
        arg, sp, rest = rest.partition(b" ")
        args.append(arg)
        if sp and not rest:
            args.append(b"")
    return args


_ARITY = {"update": (2, 3), "create": (2, 2), "delete": (1, 2), "verify": (1, 2),
          "symref-update": (2, 4), "symref-create": (2, 2), "symref-delete": (1, 2),
          "symref-verify": (1, 2), "option": (1, 1), "start": (0, 0), "prepare": (0, 0),
          "commit": (0, 0), "abort": (0, 0)}


def _update_ref_stdin(repo: Repository, message: str, no_deref: bool, create_reflog: bool,
                      nul: bool) -> int:
    from .transaction import ANY

    parser = _StdinParser(_read_stdin(), nul)
    null = b"\0" * HASH_SIZES[repo.hash]
    tx = repo.transaction(message, create_reflog=create_reflog)
    next_no_deref = False
    status_lines: list[str] = []

    def items() -> list[tuple[str, list[bytes]]]:
        out: list[tuple[str, list[bytes]]] = []
        if not nul:
            for cmd, rest in parser.commands():
                if cmd not in _ARITY:
                    raise die(f"unknown command: {cmd} {rest.decode('utf-8', 'replace')}")
                out.append((cmd, _line_args(rest)))
            return out
        while True:
            got = parser.next_z_command()
            if got is None:
                return out
            cmd, first = got
            if cmd not in _ARITY:
                raise die(f"unknown command: {cmd}")
            lo, hi = _ARITY[cmd]
            args = [first] if hi else []
            if cmd == "option":
                out.append((cmd, args))
                continue
            # -z: every argument after the ref is NUL-terminated, optional ones empty;
            # the symref commands' optional parts are there only when the next word
            # says so (symref-update's "ref"/"oid"; otherwise it is a command)
            need = {"symref-update": 2, "symref-delete": 1, "symref-verify": 1}.get(cmd, hi)
            for _ in range(1, need):
                a = parser.take_z()
                if a is None:
                    raise die(f"{cmd} {first.decode('utf-8', 'replace')}: missing argument")
                args.append(a)
            nxt = parser.peek_z()
            if cmd == "symref-update" and nxt in (b"ref", b"oid"):
                args += [parser.take_z() or b"", parser.take_z() or b""]
            elif cmd in ("symref-delete", "symref-verify") and nxt is not None and \
                    nxt.partition(b" ")[0].decode("utf-8", "replace") not in _ARITY:
                args.append(parser.take_z() or b"")
            out.append((cmd, args))

    def refname(cmd: str, raw: bytes) -> str:
        name = raw.decode("utf-8", "surrogateescape")
        if not name:
            raise die(f"{cmd}: missing <ref>")
        if check_refname_format(name, allow_onelevel=True) is not None:
            raise die(f"invalid ref format: {name}")
        return name

    def value(cmd: str, name: str, raw: Optional[bytes], what: str) -> Any:
        """ANY: not given (with ``-z``, also an empty argument); None: a zero id (in
        the line form, also an empty argument); else the parsed id."""
        if raw is None or (raw == b"" and nul):
            return ANY
        if raw == b"":
            return None
        oid = repo.rev_parse(raw.decode("utf-8", "surrogateescape"))
        if oid is None:
            raise die(f"{cmd} {name}: invalid {what}: {raw.decode('utf-8', 'replace')}")
        return None if oid == null else oid

    for cmd, args in items():
        lo, hi = _ARITY[cmd]
        if not lo <= len(args) <= hi:
            raise die(f"{cmd}: wrong number of arguments")
        if cmd == "option":
            if args[0] != b"no-deref":
                raise die(f"option unknown: {args[0].decode('utf-8', 'replace')}")
            next_no_deref = True
            continue
        if cmd in ("start", "prepare", "commit", "abort"):
            status_lines.append(f"{cmd}: ok\n")
            if cmd == "abort":
                tx = repo.transaction(message, create_reflog=create_reflog)
            continue
        name = refname(cmd, args[0])
        nd = no_deref or next_no_deref
        next_no_deref = False
        try:
            if cmd == "update":
                new = value(cmd, name, args[1], "new value")
                if new is ANY:
                    raise die(f"update {name}: missing <new-oid>")
                expect = value(cmd, name, args[2] if len(args) > 2 else None, "old value")
                if new is None:
                    tx.delete(name, expect, no_deref=nd)
                else:
                    tx.update(name, new, expect, no_deref=nd)
            elif cmd == "create":
                new = value(cmd, name, args[1], "new value")
                if new is None or new is ANY:
                    raise die(f"create {name}: zero <new-oid>")
                tx.create(name, new, no_deref=nd)
            elif cmd == "delete":
                old = value(cmd, name, args[1] if len(args) > 1 else None, "old value")
                if old is None:
                    raise die(f"delete {name}: zero <old-oid>")
                tx.delete(name, old, no_deref=nd)
            elif cmd == "verify":
                old = value(cmd, name, args[1] if len(args) > 1 else None, "old value")
                tx.verify(name, None if old is ANY else old)
            elif cmd in ("symref-update", "symref-create"):
                target = refname(cmd, args[1])
                if cmd == "symref-create":
                    tx.symref(name, target, None)
                elif len(args) == 2:
                    tx.symref(name, target)
                elif len(args) == 4 and args[2] == b"ref":
                    tx.symref(name, target, expect_target=refname(cmd, args[3]))
                elif len(args) == 4 and args[2] == b"oid":
                    old = value(cmd, name, args[3], "old value")
                    tx.symref(name, target, None if old is ANY else old)
                else:
                    raise die(f"{cmd} {name}: expected 'ref <old-target>' or "
                              "'oid <old-oid>'")
            elif cmd == "symref-delete":
                old_target = refname(cmd, args[1]) if len(args) > 1 and args[1] else None
                tx.delete(name, no_deref=True, expect_target=old_target)
            else:  # symref-verify: a symref to <old-target>, or missing without one
                if len(args) > 1 and args[1]:
                    tx.verify(name, expect_target=refname(cmd, args[1]))
                else:
                    tx.verify(name, None)
        except ReftableError as e:
            raise die(str(e)) from None
    try:
        tx.commit()
    except ReftableError as e:
        raise die(str(e)) from None
    _write("".join(status_lines))
    return 0


# -- reflog ------------------------------------------------------------------------------------

_LOG_ATOM = re.compile(r"%(gs|gd|gD|gn|ge|gE|gN|H|h|n|%)")


def _format_log(fmt: str, selector: str, i: int, lg: LogRecord) -> str:
    def atom(m: re.Match[str]) -> str:
        a = m.group(1)
        new = (lg.new_id or b"").hex()
        if a == "H":
            return new
        if a == "h":
            return new[:7]
        if a == "gs":
            return (lg.message or "").rstrip("\n")
        if a in ("gd", "gD"):
            return f"{selector}@{{{i}}}"
        if a in ("gn", "gN"):
            return lg.name or ""
        if a in ("ge", "gE"):
            return lg.email or ""
        if a == "n":
            return "\n"
        return "%"

    return _LOG_ATOM.sub(atom, fmt)


def _parse_expire(text: str, now: int) -> int:
    from .reflog import EXPIRE_ALL

    t = text.strip()
    if t in ("all", "now"):
        return EXPIRE_ALL
    if t in ("never", "false"):
        return 0
    m = re.fullmatch(r"@?(\d+)(?: [+-]\d{4})?", t)
    if m:
        return int(m.group(1))
    if t == "yesterday":
        return now - 86400
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d)(?::(\d\d))?)?", t)
    if m:
        y, mo, d, h, mi, sec = (int(x) if x else 0 for x in m.groups())
        return int(time.mktime((y, mo, d, h, mi, sec, 0, 0, -1)))  # local, as Git
    m = re.fullmatch(r"(\d+)[. ]?(second|minute|hour|day|week|month|year)s?[. ]ago", t)
    if m:
        unit = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800,
                "month": 2592000, "year": 31536000}[m.group(2)]
        return now - int(m.group(1)) * unit
    raise die(f"'{text}' is not a valid timestamp")


def cmd_reflog(ctx: GitContext, args: Sequence[str]) -> int:
    sub = args[0] if args else "show"
    rest = list(args[1:]) if args else []
    if sub not in ("show", "list", "exists", "expire", "delete", "drop", "write"):
        sub, rest = "show", list(args)
    repo = _repo(ctx)
    if sub == "show":
        return _reflog_show(repo, rest)
    if sub == "list":
        _, pos = parse_options(rest, [])
        if pos:
            raise usage("usage: git reflog list")
        _write("".join(n + "\n" for n in repo.list_reflogs()))
        return 0
    if sub == "exists":
        _, pos = parse_options(rest, [])
        if len(pos) != 1:
            raise usage("usage: git reflog exists <ref>")
        try:
            check_reflog_name(pos[0])
        except RefNameError as e:
            raise die(str(e)) from None
        return 0 if repo.reflog_exists(pos[0]) else 1
    if sub == "expire":
        return _reflog_expire(repo, rest)
    if sub == "delete":
        return _reflog_delete(repo, rest)
    if sub == "drop":
        return _reflog_drop(repo, rest)
    return _reflog_write(repo, rest)


def _reflog_show(repo: Repository, args: list[str]) -> int:
    opts, pos = parse_options(args, [], ["--format", "--pretty"])
    fmt = _last(opts, "--format", "--pretty")
    if fmt is not None and fmt.startswith(("format:", "tformat:")):
        fmt = fmt.split(":", 1)[1]
    if len(pos) > 1:
        raise usage("showing more than one reflog is not supported")
    name = pos[0] if pos else "HEAD"
    entries = repo.reflog_show(name)
    if entries is None:
        raise die(f"ambiguous argument '{name}': unknown revision or path not in the "
                  "working tree.")
    out = []
    for i, lg in enumerate(entries):
        if fmt is None:
            out.append(f"{(lg.new_id or b'').hex()[:7]} {name}@{{{i}}}: "
                       f"{(lg.message or '').rstrip(chr(10))}\n")
        else:
            out.append(_format_log(fmt, name, i, lg) + "\n")
    _write("".join(out))
    return 0


def _reflog_expire(repo: Repository, args: list[str]) -> int:
    from .reflog import expire_reflog

    opts, pos = parse_options(
        args, ["--all", "--single-worktree", "-n", "--dry-run", "--rewrite", "--updateref",
               "--stale-fix", "--verbose"], ["--expire", "--expire-unreachable"])
    now = int(time.time())
    text = _last(opts, "--expire")
    if text is None:
        text = repo.config.get("gc.reflogExpire") or "90.days.ago"
    expire = _parse_expire(text, now)
    names: list[str]
    status = 0
    if "--all" in opts:
        names = (repo.list_reflogs() if "--single-worktree" in opts
                 else repo.all_worktree_reflogs())
    else:
        names = []
        for n in pos:
            full = repo.dwim_log(n)
            if full is None:
                print(f"error: reflog could not be found: '{n}'", file=sys.stderr)
                status = 1
                continue
            names.append(full)
    for n in names:
        stack, stored = repo.write_stack_for(n)
        expire_reflog(stack, stored, expire=expire, rewrite="--rewrite" in opts,
                      update_ref="--updateref" in opts,
                      dry_run=_has(opts, "-n", "--dry-run"))
    return status


_SELECTOR = re.compile(r"(.*)@\{(\d+)\}", re.S)


def _reflog_delete(repo: Repository, args: list[str]) -> int:
    from .reflog import delete_reflog_entry

    opts, pos = parse_options(args, ["-n", "--dry-run", "--rewrite", "--updateref",
                                     "--verbose"])
    if not pos:
        raise usage("no reflog specified to delete")
    status = 0
    for spec in pos:
        m = _SELECTOR.fullmatch(spec)
        if m is None:
            print(f"error: not a reflog: {spec}", file=sys.stderr)
            status = 1
            continue
        full = repo.dwim_log(m.group(1) or "HEAD")
        if full is None:
            print(f"error: no reflog for '{spec}'", file=sys.stderr)
            status = 1
            continue
        stack, stored = repo.write_stack_for(full)
        delete_reflog_entry(stack, stored, int(m.group(2)), rewrite="--rewrite" in opts,
                            update_ref="--updateref" in opts,
                            dry_run=_has(opts, "-n", "--dry-run"))
    return status


def _reflog_drop(repo: Repository, args: list[str]) -> int:
    from .reflog import drop_reflog

    opts, pos = parse_options(args, ["--all", "--single-worktree"])
    names = list(pos)
    if "--all" in opts:
        if pos:
            raise usage("references specified along with --all")
        names = (repo.list_reflogs() if "--single-worktree" in opts
                 else repo.all_worktree_reflogs())
    elif not pos:
        raise usage("no reflog specified to drop")
    status = 0
    for n in names:
        full = n if repo.reflog_exists(n) else repo.dwim_log(n)
        if full is None:
            print(f"error: reflog could not be found: '{n}'", file=sys.stderr)
            status = 1
            continue
        stack, stored = repo.write_stack_for(full)
        drop_reflog(stack, stored)
    return status


def _reflog_write(repo: Repository, args: list[str]) -> int:
    _, pos = parse_options(args, [])
    if len(pos) != 4:
        raise usage("usage: git reflog write <ref> <old-oid> <new-oid> <message>")
    name, old_hex, new_hex, message = pos
    try:
        check_reflog_name(name, write=True)
    except RefNameError as e:
        raise die(str(e)) from None
    size = 2 * HASH_SIZES[repo.hash]
    for h in (old_hex, new_hex):
        if len(h) != size or not re.fullmatch(r"[0-9a-fA-F]+", h):
            raise die(f"invalid old object ID: '{h}'")
    stack, stored = repo.write_stack_for(name)
    tx = stack.transaction()
    tx.log(stored, old_hex, new_hex, repo.log_entry(message), force=True)
    tx.commit()
    return 0


# -- dispatch ------------------------------------------------------------------------------

_VERBS: dict[str, Callable[[GitContext, Sequence[str]], int]] = {
    "for-each-ref": cmd_for_each_ref,
    "rev-parse": cmd_rev_parse,
    "symbolic-ref": cmd_symbolic_ref,
    "update-ref": cmd_update_ref,
    "reflog": cmd_reflog,
    "check-ref-format": cmd_check_ref_format,
}


def run_verb(ctx: GitContext, verb: str, args: Sequence[str]) -> int:
    """Run one Git verb; returns its exit status."""
    try:
        return _VERBS[verb](ctx, list(args))
    except Exit as e:
        if e.message:
            print(e.message, file=sys.stderr)
        return e.status
    except (ReftableError, OSError, ValueError) as e:
        print(f"fatal: {e}", file=sys.stderr)
        return 128
    finally:
        ctx.close()
