"""Sphinx configuration of the pyreftable documentation (``bash .ci/docs`` builds it).

The API reference is generated from docstrings by autodoc, which imports the compiled
package. The repository root goes first on ``sys.path`` so the docs describe this work
tree (with the extension built in place, or installed editable).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import reftable  # noqa: E402  (after the path setup)

logger = logging.getLogger(__name__)

# -- project -------------------------------------------------------------------------

project = "pyreftable"
author = "the pyreftable authors"
copyright = "the pyreftable authors"
release = reftable.__version__
version = ".".join(release.split(".")[:2])

# -- general -------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
default_role = "py:obj"
nitpicky = False

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
}
autoclass_content = "class"

# -- HTML ----------------------------------------------------------------------------

html_theme = "alabaster"
html_title = f"pyreftable {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Git's reftable format for Python, with a Cython core",
    "fixed_sidebar": True,
}


# -- ``.. reftable-all::``: the package's public names, straight from ``__all__`` ------


def _canonical(name: str, obj: Any) -> tuple[str, str]:
    """(role, target) documenting ``reftable.<name>`` where it is defined."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(obj, type):
        role = "exc" if issubclass(obj, BaseException) else "class"
    elif callable(obj):
        role = "func"
    else:
        role = "data"
        module, qualname = "reftable", name
    return role, f"{module}.{qualname}"


_ROLE = re.compile(r":[a-z]+:`(?:[^`<]*<)?([^`>]+)>?`")


class ReftableAllDirective(SphinxDirective):
    """A table of every name in ``reftable.__all__``, linked to where it is documented,
    so the page can never drift from the package."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        rows = []
        for name in reftable.__all__:
            obj = getattr(reftable, name)
            role, target = _canonical(name, obj)
            doc = (getattr(obj, "__doc__", None) or "").strip().split("\n\n")[0]
            summary = " ".join(doc.split()) if role != "data" else ""
            # Roles in a docstring are relative to its own module and class: here they
            # would not resolve, so show their text as code.
            summary = _ROLE.sub(lambda m: f"``{m.group(1).lstrip('~!')}``", summary)
            rows.append(f"   * - :py:{role}:`{name} <{target}>`\n     - {summary or ' '}")
        text = (".. list-table::\n   :header-rows: 1\n   :widths: 30 70\n\n"
                "   * - name\n     - what it is\n" + "\n".join(rows))
        container = nodes.container()
        self.state.nested_parse(StringList(text.splitlines(), source="reftable.__all__"),
                                self.content_offset, container)
        return container.children


# -- ``.. reftable-cli-help:: COMMAND``: ``reftable COMMAND --help``, generated -------


class CliHelpDirective(SphinxDirective):
    """The ``--help`` text of the CLI (or of one subcommand), from the real parser."""

    required_arguments = 0
    optional_arguments = 1
    option_spec = {"width": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        from reftable.cli import build_parser

        parser = build_parser()
        if self.arguments:
            subs = next(a for a in parser._actions
                        if isinstance(a, argparse._SubParsersAction))
            if self.arguments[0] not in subs.choices:
                logger.warning("reftable-cli-help: unknown command %r", self.arguments[0],
                               location=self.get_location())
                return []
            parser = subs.choices[self.arguments[0]]
        width = self.options.get("width", 88)
        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = str(width)  # argparse wraps to the terminal width
        try:
            text = parser.format_help()
        finally:
            if old is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = old
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


# -- unqualified class names in docstrings -------------------------------------------


def _resolve_short_class_name(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """Docstrings name classes the way their module imports them (``:class:`LockError```
    in ``reftable.stack``). When such a name is not found where it is used, link it to the
    one ``reftable`` class or exception of that name, if there is exactly one."""
    if node.get("refdomain") != "py" or node.get("reftype") not in ("class", "exc", "obj"):
        return None
    target = node.get("reftarget", "")
    if not target or "." in target or not target[:1].isupper():
        return None
    domain = env.get_domain("py")
    hits = [(name, obj) for name, obj in domain.objects.items()
            if name.startswith("reftable.") and name.rsplit(".", 1)[-1] == target
            and obj.objtype in ("class", "exception")]
    if len(hits) != 1:
        return None
    name, obj = hits[0]
    from sphinx.util.nodes import make_refnode

    return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, name)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", _resolve_short_class_name)
    app.add_directive("reftable-all", ReftableAllDirective)
    app.add_directive("reftable-cli-help", CliHelpDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
