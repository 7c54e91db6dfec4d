"""Every documented public symbol must have a docstring: an empty one is a Sphinx warning (an error under
``-W``). Constants re-exported by a package take the ``#:`` comment written where they are defined."""

from __future__ import annotations

import sys

from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

logger = logging.getLogger(__name__)
CHECKED = {"class", "function", "exception", "data", "method", "property"}


def _attr_doc(package: str, name: str) -> list[str]:
    """The ``#:`` comment of ``name`` in ``package`` or any of its loaded submodules."""
    for modname in sorted(m for m in sys.modules if m == package or m.startswith(package + ".")):
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # a compiled or source-less module
            continue
        if ("", name) in docs:
            return list(docs[("", name)])
    return []


def process_docstring(app, what, name, obj, options, lines):
    if what not in CHECKED or any(line.strip() for line in lines):
        return
    short = name.rsplit(".", 1)[-1]
    if short.startswith("_"):
        return
    if what == "data":
        lines[:] = _attr_doc(name.rsplit(".", 1)[0], short)
        if lines:
            return
    if what == "method" and short in ("forward", "extra_repr", "reset_parameters"):
        return  # documented by the class docstring, as torch.nn documents its modules
    logger.warning("public %s %s has no docstring", what, name, type="nnatlas", subtype="docstring")


def setup(app):
    app.connect("autodoc-process-docstring", process_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
