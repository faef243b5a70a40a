"""Stack subcommands of the CLI: update, compact, stats, clean, refs, log.

Each takes a stack directory (one with ``tables.list``) or a repository (a work tree,
a ``.git`` directory or file, a bare repository): then the repository's config gives
the options, ``refs``/``log``/``update`` see and route refs as Git does from that
worktree, and ``compact``/``stats``/``clean`` work on the common stack. Reading never
creates anything; a directory that is neither is an error, except that ``update``
starts a new stack in an empty directory."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Optional, TextIO

from .errors import ApiError, ExpectationError, RepositoryError
from .jsonio import log_to_json, ref_to_json
from .records import log_move_text, log_who_text
from .stack import LogExpiry, Stack, StackOptions
from .transaction import ANY, LogEntry, local_tz_offset

if TYPE_CHECKING:
    from .repository import Repository

__all__ = ["add_commands", "parse_update_lines"]


def _is_stack(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "tables.list"))


def _repository(args: argparse.Namespace) -> Optional[Repository]:
    """The repository at ``args.dir`` (not searched upwards), or None."""
    from .repository import Repository, discover

    if _is_stack(args.dir):
        return None
    ctx = getattr(args, "ctx", None)
    try:
        loc = discover(args.dir, upwards=False)
    except RepositoryError:
        return None
    return Repository(loc, config_overrides=list(ctx.config) if ctx else None,
                      lock_timeout_ms=ctx.lock_timeout_ms if ctx else None)


def _open(args: argparse.Namespace, create: bool = True, **kw: Any) -> Stack:
    """The stack ``args.dir`` names: a stack directory, or a repository's common
    stack (with its config's options). Read-only commands pass ``create=False``: they
    never create or change anything; otherwise a directory that is neither a stack nor
    a repository becomes a new stack."""
    ctx = getattr(args, "ctx", None)
    timeout = ctx.lock_timeout_ms if ctx is not None else None
    repo = _repository(args)
    if repo is not None:
        st = repo.stack(for_write=create)
        for k, v in kw.items():
            setattr(st.options, k, v)
        return st
    if not _is_stack(args.dir) and not create:
        raise RepositoryError(f"{args.dir}: not a reftable stack (no tables.list) nor a "
                              "git repository")
    opts = StackOptions(**kw)
    if timeout is not None:
        opts.lock_timeout_ms = timeout
    return Stack.open(args.dir, opts, create=create)


class _RoutedTransaction:
    """``update``'s lines on a repository: each name routed to its worktree's stack,
    as named (no dereferencing), with the repository's reflog policy."""

    def __init__(self, repo: Repository, log: Optional[LogEntry]):
        from .repository import RepositoryTransaction

        self.tx = RepositoryTransaction(repo, log, False)

    def create(self, name: str, new: str, log: Optional[LogEntry] = None) -> None:
        self.tx.create(name, new, no_deref=True)

    def update(self, name: str, new: str, expect: Any = ANY,
               log: Optional[LogEntry] = None) -> None:
        self.tx.update(name, new, expect, no_deref=True)

    def delete(self, name: str, expect: Any = ANY, log: Optional[LogEntry] = None) -> None:
        self.tx.delete(name, expect, no_deref=True)

    def verify(self, name: str, expect: Any = None) -> None:
        self.tx.verify(name, expect)

    def symref(self, name: str, target: str, expect: Any = ANY,
               expect_target: Optional[str] = None, log: Optional[LogEntry] = None) -> None:
        if expect is not ANY or expect_target is not None:
            raise ApiError("symref-update with an old value is not supported on a "
                           "repository")
        self.tx.symref(name, target)

    def commit(self) -> int:
        return max(self.tx.commit().values(), default=0)


def _is_zero(oid: str) -> bool:
    return set(oid) == {"0"}


def parse_update_lines(tx: Any, stream: TextIO, log: Optional[LogEntry]) -> int:
    """Feed ``git update-ref --stdin`` style lines into ``tx``; return the count."""
    count = 0
    for lineno, raw in enumerate(stream, 1):
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        parts = line.split(" ")
        cmd, rest = parts[0], parts[1:]
        try:
            if cmd == "create" and len(rest) == 2:
                if _is_zero(rest[1]):
                    raise ValueError("zero <new-oid>")  # as git update-ref refuses it
                tx.create(rest[0], rest[1], log=log)
            elif cmd == "update" and len(rest) in (2, 3):
                expect: Any = ANY
                if len(rest) == 3:
                    expect = None if _is_zero(rest[2]) else rest[2]
                if _is_zero(rest[1]):
                    tx.delete(rest[0], expect=expect, log=log)
                else:
                    tx.update(rest[0], rest[1], expect=expect, log=log)
            elif cmd == "delete" and len(rest) in (1, 2):
                tx.delete(rest[0], expect=ANY if len(rest) == 1 else rest[1], log=log)
            elif cmd == "verify" and len(rest) in (1, 2):
                tx.verify(rest[0], None if len(rest) == 1 or _is_zero(rest[1]) else rest[1])
            elif cmd == "symref-update" and len(rest) in (2, 4):
                if len(rest) == 4 and rest[2] == "ref":
                    tx.symref(rest[0], rest[1], expect_target=rest[3], log=log)
                elif len(rest) == 4 and rest[2] == "oid":
                    tx.symref(rest[0], rest[1],
                              expect=None if _is_zero(rest[3]) else rest[3], log=log)
                elif len(rest) == 2:
                    tx.symref(rest[0], rest[1], log=log)
                else:
                    raise ValueError("expected 'ref OLD-TARGET' or 'oid OLD-OID'")
            else:
                raise ValueError(f"cannot parse command {cmd!r} with {len(rest)} arguments")
        except ValueError as e:
            raise ApiError(f"stdin line {lineno}: {line!r}: {e}") from None
        count += 1
    return count


def cmd_update(args: argparse.Namespace) -> int:
    log = None
    if args.message is not None or args.committer_name or args.committer_email:
        when = int(args.date) if args.date is not None else int(time.time())
        log = LogEntry(args.committer_name or "", args.committer_email or "",
                       args.message or "", when, local_tz_offset(when))
    repo = _repository(args)
    if repo is not None:
        with repo:
            if args.no_auto_compact:
                repo.options.auto_compact = False
            return _run_update(args, _RoutedTransaction(repo, log), log)
    with _open(args, auto_compact=not args.no_auto_compact) as st:
        return _run_update(args, st.transaction(), log)


def _run_update(args: argparse.Namespace, tx: Any, log: Optional[LogEntry]) -> int:
    stream = open(args.input, encoding="utf-8") if args.input != "-" else sys.stdin
    try:
        n = parse_update_lines(tx, stream, log)
    finally:
        if stream is not sys.stdin:
            stream.close()
    try:
        ui = tx.commit()
    except ExpectationError as e:
        print(f"reftable: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"updates": n, "update_index": ui}))
    elif ui:
        print(f"committed {n} updates at update index {ui}")
    else:
        print("nothing to write")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from .progress import Progress

    with _open(args) as st:
        before = len(st.names)
        expire = None
        if args.expire_before is not None or args.expire_below_index is not None:
            expire = LogExpiry(time=args.expire_before or 0,
                               min_update_index=args.expire_below_index or 0)
        with Progress(f"compacting {before} tables", enabled=not args.json) as bar:
            did = st.compact(auto=args.auto, expire=expire, progress=bar.update)
        result = {"compacted": did, "tables_before": before, "tables_after": len(st.names),
                  "stats": _stats_json(st)}
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{'compacted' if did else 'nothing to compact'}: "
                  f"{before} -> {len(st.names)} tables")
    return 0


def _stats_json(st: Stack) -> dict[str, Any]:
    s = st.stats
    return {"attempts": s.attempts, "failures": s.failures, "bytes": s.bytes,
            "entries_written": s.entries_written}


def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args, create=False, auto_compact=False) as st:
        snap = st.snapshot()  # every figure from one version of the stack
        tables: list[dict[str, Any]] = [
                  {"name": n, "size": t.size, "min_update_index": t.min_update_index,
                   "max_update_index": t.max_update_index}
                  for n, t in zip(snap.names, snap.tables, strict=True)]
        refs = sum(1 for _ in snap.refs())
        info = {"directory": st.directory, "hash": st.hash, "tables": tables,
                "table_count": len(tables), "total_bytes": sum(t["size"] for t in tables),
                "refs": refs, "next_update_index": snap.next_update_index()}
        if args.json:
            print(json.dumps(info, indent=1))
        else:
            print(f"stack {st.directory} ({st.hash}): {len(tables)} tables, "
                  f"{info['total_bytes']} bytes, {refs} refs, next update index "
                  f"{info['next_update_index']}")
            for t in tables:
                print(f"  {t['name']}  {t['size']:>10} bytes  "
                      f"[{t['min_update_index']}, {t['max_update_index']}]")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    with _open(args, auto_compact=False) as st:
        removed = st.clean(args.stale_locks)
        if args.json:
            print(json.dumps({"removed": removed}))
        else:
            for n in removed:
                print(f"removed {n}")
            print(f"{len(removed)} leftover files removed")
    return 0


def _format_ref(fmt: str, rec: Any) -> str:
    value = rec.value.hex() if rec.value is not None else ""
    peeled = rec.target_value.hex() if rec.target_value is not None else ""
    return (fmt.replace("%(refname)", rec.name)
            .replace("%(objectname)", value)
            .replace("%(peeled)", peeled)
            .replace("%(symref)", rec.target or "")
            .replace("%(update_index)", str(rec.update_index)))


def cmd_refs(args: argparse.Namespace) -> int:
    repo = _repository(args)
    if repo is not None:
        with repo:
            return _print_refs(args, list(repo.refs(args.prefix or "")))
    with _open(args, create=False, auto_compact=False) as st:
        return _print_refs(args, list(st.refs(args.prefix or "")))


def _print_refs(args: argparse.Namespace, recs: list[Any]) -> int:
    if args.json:
        print(json.dumps([ref_to_json(r) for r in recs], indent=1))
        return 0
    fmt = args.format or "%(objectname) %(refname)"
    for r in recs:
        if args.format is None and r.target is not None:
            print(f"-> {r.target} {r.name}")
        else:
            print(_format_ref(fmt, r))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    repo = _repository(args)
    if repo is not None and args.ref is not None:
        with repo:
            key, stored = repo.route(args.ref)
            return _print_logs(args, list(repo.stack(key).logs(stored)))
    with _open(args, create=False, auto_compact=False) as st:
        return _print_logs(args, list(st.logs(args.ref)))


def _print_logs(args: argparse.Namespace, recs: list[Any]) -> int:
    if args.json:
        print(json.dumps([log_to_json(r) for r in recs], indent=1))
        return 0
    for r in recs:
        if r.old_id is None or r.new_id is None:
            continue
        print(f"{r.refname}@{{{r.update_index}}} {log_move_text(r, sep=' -> ')} "
              f"{log_who_text(r)}\t{r.message.rstrip()}")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "update", help="apply 'git update-ref --stdin' style lines as one transaction",
        description="Read lines 'create REF NEW', 'update REF NEW [OLD]', 'delete REF [OLD]', "
        "'verify REF [OLD]', 'symref-update REF TARGET [ref OLD-TARGET | oid OLD]' and apply "
        "them atomically (old values are checked under the lock).",
        epilog="example: echo 'create refs/heads/x <oid>' | reftable update -m msg DIR")
    p.add_argument("dir")
    p.add_argument("-m", "--message", help="reflog message (writes reflog entries)")
    p.add_argument("--committer-name")
    p.add_argument("--committer-email")
    p.add_argument("--date", type=int, help="reflog time, seconds since the epoch")
    p.add_argument("--input", default="-", help="file to read instead of stdin")
    p.add_argument("--no-auto-compact", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("compact", help="compact a stack (full, or --auto geometric)",
                       description="Merge the tables of a stack. Without --auto every table "
                       "is merged into one (tombstones and expired reflogs dropped).",
                       epilog="example: reftable compact --auto .git/reftable")
    p.add_argument("dir")
    p.add_argument("--auto", action="store_true", help="only restore the geometric sequence")
    p.add_argument("--expire-before", type=int, help="drop reflog entries older than this time")
    p.add_argument("--expire-below-index", type=int,
                   help="drop reflog entries below this update index")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("stats", help="tables, sizes and counts of a stack",
                       epilog="example: reftable stats --json .git/reftable")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("clean", help="remove tables and temp files no longer referenced",
                       epilog="example: reftable clean .git/reftable")
    p.add_argument("dir")
    p.add_argument("--stale-locks", type=float, metavar="SECONDS",
                   help="also remove .lock files older than this (left by killed processes)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("refs", help="list refs (like git for-each-ref)",
                       epilog="example: reftable refs --format '%(refname) %(objectname)' DIR "
                       "refs/heads/")
    p.add_argument("dir")
    p.add_argument("prefix", nargs="?", default="")
    # argparse %-formats help strings: the placeholders need %%
    p.add_argument("--format", help="with %%(refname) %%(objectname) %%(peeled) %%(symref) "
                   "%%(update_index)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_refs)

    p = sub.add_parser("log", help="show reflog entries (all refs, or one)",
                       epilog="example: reftable log .git/reftable HEAD")
    p.add_argument("dir")
    p.add_argument("ref", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_log)
