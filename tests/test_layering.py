"""The module layering: a lower layer never imports (even for typing) an upper one."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "reftable"


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (TYPE_CHECKING blocks included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("module, forbidden", [
    # transactions get what they need from the stack through small protocols
    ("transaction", {".stack", ".reflog", ".repository"}),
    # names and policy of a stack directory: no core, no stack
    ("tables_list", {".stack", "._impl", ".table", ".fsck"}),
    # fsck reads the names through tables_list, not the stack's privates
    ("fsck", {".stack"}),
])
def test_lower_layer_does_not_import_upper(module, forbidden):
    imported = _imported_modules(PKG / f"{module}.py")
    assert not imported & forbidden, imported & forbidden


def test_importing_transaction_does_not_load_the_stack():
    code = ("import sys, reftable.transaction\n"
            "assert 'reftable.stack' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
