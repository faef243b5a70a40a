"""Command line: ``python -m reftable [-C PATH] [-c KEY=VALUE] [--lock-timeout MS] ...``.

Two families of commands:

* Git's verbs (``for-each-ref``, ``rev-parse``, ``symbolic-ref``, ``update-ref``,
  ``reflog``, ``check-ref-format``; :mod:`reftable.cli_git`) run in the repository
  found from ``-C PATH`` (default: the current directory) as Git finds it, print what
  Git prints and exit with Git's status.
* The stack tools (``dump``, ``write``, ``verify``, ``update``, ``compact``,
  ``stats``, ``clean``, ``refs``, ``log``, ``demo``) take a table, a stack directory or
  a repository. Every one has ``--help``; human output by default, ``--json`` for
  tools. Exit status: 0 success, 1 findings or failure, 2 usage errors.

Global options: ``-C PATH`` (as ``git -C``, repeatable: relative ones add up; paths of
the stack tools are taken from there too), ``-c KEY=VALUE`` (a config override, as
``git -c``), ``--lock-timeout MS`` (overrides ``reftable.lockTimeout``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from .errors import NotExistError, ReftableError
from .jsonio import log_from_json, log_to_json, ref_from_json, ref_to_json, table_to_json
from .records import LogRecord, RefRecord, log_move_text, log_who_text, ref_value_text
from .table import Table
from .writer import TableWriter, WriteOptions

if TYPE_CHECKING:
    from .repository import Repository

__all__ = ["main", "GitContext"]

# (kept here, not imported from cli_git, so that the stack tools start without it)
_GIT_VERBS = ("for-each-ref", "rev-parse", "symbolic-ref", "update-ref", "reflog",
              "check-ref-format")


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=1)
    sys.stdout.write("\n")


def _stack_path(path: str) -> str:
    """``path``, or the common stack directory when ``path`` is a repository (a work
    tree, a ``.git`` directory or a bare repository)."""
    if not os.path.isdir(path) or os.path.exists(os.path.join(path, "tables.list")):
        return path
    from .errors import RepositoryError
    from .repository import discover

    try:
        return os.path.join(discover(path, upwards=False).common_dir, "reftable")
    except RepositoryError:
        return path


def cmd_dump(args: argparse.Namespace) -> int:
    path = _stack_path(args.path)
    if os.path.isdir(path):
        from .stack import Stack, StackOptions

        if not os.path.exists(os.path.join(path, "tables.list")):
            raise NotExistError(f"{path}: no tables.list (not a reftable stack)")
        # Through Stack: its reload retries when a concurrent compaction removes a
        # table between reading tables.list and opening it.
        with Stack.open(path, StackOptions(auto_compact=False)) as st:
            names, tables, merged = st.names, st.tables, st.merged
            if args.json:
                _print_json({
                    "tables_list": names,
                    "refs": [ref_to_json(r) for r in merged.refs()],
                    "logs": [log_to_json(r) for r in merged.logs()],
                })
            else:
                print(f"stack {path}: {len(names)} tables")
                for n, t in zip(names, tables, strict=True):
                    print(f"  {n}  [{t.min_update_index}, {t.max_update_index}] {t.size} bytes")
                _print_refs_human(merged.refs())
                _print_logs_human(merged.logs())
        return 0
    with Table.open(path) as t:
        if args.json:
            _print_json(table_to_json(t))
        else:
            print(f"table {path}: version {t.version} ({t.hash}), block size {t.block_size}, "
                  f"update index [{t.min_update_index}, {t.max_update_index}], {t.size} bytes")
            for sec, info in t.sections.items():
                print(f"  {sec}: present={info['present']} offset={info['offset']} "
                      f"index_offset={info['index_offset']}")
            _print_refs_human(t.refs())
            _print_logs_human(t.logs())
    return 0


def _print_refs_human(refs: Iterable[RefRecord]) -> None:
    print("refs:")
    for r in refs:
        desc = "(deleted)" if r.is_deletion else ref_value_text(r)
        print(f"  {r.name} @{r.update_index} {desc}")


def _print_logs_human(logs: Iterable[LogRecord]) -> None:
    print("logs:")
    for lg in logs:
        if lg.is_deletion:
            print(f"  {lg.refname} @{lg.update_index} (deleted)")
        else:
            print(f"  {lg.refname} @{lg.update_index} {log_move_text(lg)} {log_who_text(lg)} "
                  f"{lg.message.rstrip()!s}")


def cmd_write(args: argparse.Namespace) -> int:
    with open(args.input, encoding="utf-8") as f:
        spec = json.load(f)
    # The fixtures' `write_inputs`; else the header fields of `dump --json` of a table
    # (options a table does not record take Git's defaults).
    wi = spec.get("write_inputs") or {
        k: spec[k] for k in ("hash", "block_size", "min_update_index", "max_update_index")
        if k in spec}
    if "write_inputs" not in spec and "object_id_len" in spec:
        wi["index_objects"] = bool(spec["object_id_len"])
    opts = WriteOptions(
        hash=wi.get("hash", "sha1"),
        block_size=int(wi.get("block_size", 4096)),
        restart_interval=int(wi.get("restart_interval", 16)),
        index_objects=bool(wi.get("index_objects", True)),
        unpadded=bool(wi.get("unpadded", False)),
        # the input holds messages exactly as stored
        exact_log_message=bool(wi.get("exact_log_message", True)),
    )
    try:
        with TableWriter.create(
            args.output,
            opts,
            min_update_index=int(wi.get("min_update_index", 0)),
            max_update_index=int(wi.get("max_update_index", 0)),
        ) as w:
            w.add_refs(ref_from_json(r) for r in spec.get("refs", []))
            w.add_logs(log_from_json(lg) for lg in spec.get("logs", []))
    except BaseException:
        try:
            os.unlink(args.output)  # no half-written table left behind
        except OSError:
            pass
        raise
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .fsck import check_path

    findings = check_path(_stack_path(args.path))
    if args.json:
        _print_json({"ok": not findings,
                     "findings": [{"severity": f.severity, "path": f.path,
                                   "message": f.message} for f in findings]})
    else:
        for f in findings:
            print(f)
        print("ok" if not findings else f"{len(findings)} findings")
    return 1 if findings else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    with tempfile.TemporaryDirectory(prefix="reftable-demo-") as d:
        run_demo(d, out=sys.stdout)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reftable",
        description="Inspect, write, update and compact Git reftables and stacks.",
        epilog="Git's verbs, run in the repository found from -C PATH with Git's output "
        "and exit status: for-each-ref, rev-parse, symbolic-ref, update-ref, reflog, "
        "check-ref-format. Global options: -C PATH (as git -C), -c KEY=VALUE (a config "
        "override), --lock-timeout MS (overrides reftable.lockTimeout).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("demo", help="write a table and a stack in a temp dir and show them",
                       description="Write refs and reflogs into a temporary stack, read "
                       "them back, compact, and print a short dump.")
    d.set_defaults(func=cmd_demo)

    d = sub.add_parser("dump", help="print the records of a table or a stack",
                       description="Print a table file (every record, tombstones included) "
                       "or a stack directory (the merged view).",
                       epilog="example: reftable dump --json .git/reftable")
    d.add_argument("path", help="a .ref file or a stack directory (with tables.list)")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(func=cmd_dump)

    d = sub.add_parser("write", help="write one table from a JSON description",
                       description="Write a table from JSON: a fixture table (with "
                       "'write_inputs', 'refs', 'logs') or the output of 'dump --json' of a "
                       "table (header fields, 'refs', 'logs').",
                       epilog="example: reftable write --json in.json out.ref")
    d.add_argument("--json", action="store_true", required=True, help="input is JSON")
    d.add_argument("input")
    d.add_argument("output")
    d.set_defaults(func=cmd_write)

    d = sub.add_parser("verify", help="check a table or stack for consistency",
                       description="Decode every block, check key order, update-index "
                       "ranges, table names against headers, ref names, and look for stray "
                       "tables, temp files and locks. Exit 0 when clean, 1 with findings.",
                       epilog="example: reftable verify .git/reftable")
    d.add_argument("path", help="a .ref file or a stack directory")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_verify)

    _add_stack_commands(sub)
    return p


def _add_stack_commands(sub: Any) -> None:
    from . import cli_stack

    cli_stack.add_commands(sub)


@dataclass
class GitContext:
    """The global options: ``-C`` path, ``-c`` overrides, ``--lock-timeout``; opens
    the repository on first use (:class:`reftable.Repository`)."""

    path: str = "."
    config: list[str] = field(default_factory=list)
    lock_timeout_ms: Optional[int] = None
    _repo: Optional[Repository] = None

    def repo(self) -> Repository:
        if self._repo is None:
            from .repository import Repository

            self._repo = Repository.open(self.path, config_overrides=self.config,
                                         lock_timeout_ms=self.lock_timeout_ms)
        return self._repo

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None


def _global_options(argv: list[str]) -> tuple[GitContext, list[str]]:
    """Take the leading global options off ``argv``; usage errors exit with 129."""
    ctx = GitContext()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-C", "-c", "--lock-timeout") and i + 1 >= len(argv):
            print(f"error: option {a} requires a value", file=sys.stderr)
            raise SystemExit(129)
        if a == "-C":
            ctx.path = os.path.join(ctx.path, argv[i + 1]) if argv[i + 1] else ctx.path
        elif a == "-c":
            ctx.config.append(argv[i + 1])
        elif a == "--lock-timeout" or a.startswith("--lock-timeout="):
            value = a.partition("=")[2] if "=" in a else argv[i + 1]
            try:
                ctx.lock_timeout_ms = int(value)
            except ValueError:
                print(f"error: --lock-timeout needs milliseconds, not {value!r}",
                      file=sys.stderr)
                raise SystemExit(129) from None
            if "=" in a:
                i += 1
                continue
        else:
            break
        i += 2
    return ctx, argv[i:]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        ctx, rest = _global_options(args_list)
    except SystemExit as e:
        return int(e.code or 0)
    if rest and rest[0] in _GIT_VERBS:
        from .cli_git import run_verb

        return run_verb(ctx, rest[0], rest[1:])
    parser = build_parser()
    args = parser.parse_args(rest)
    args.ctx = ctx
    for attr in ("path", "dir", "input", "output"):
        value = getattr(args, attr, None)
        if isinstance(value, str) and value != "-" and ctx.path != ".":
            setattr(args, attr, os.path.join(ctx.path, value))
    try:
        return int(args.func(args))
    except ReftableError as e:
        print(f"reftable: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # (a broken pipe included)
        print(f"reftable: error: {e}", file=sys.stderr)
        return 1
