"""Every documented public symbol must have a docstring: an empty one is a Sphinx warning (an error under
``-W``). Constants re-exported by a package take the ``#:`` comment written where they are defined.

``.. nnatlas-constants:: PACKAGE`` documents the constants of ``PACKAGE.__all__`` that ``automodule``
leaves out: those of a built-in type (``tuple``, ``str``, ``int``, ``dict``) defined in a submodule."""

from __future__ import annotations

import builtins
import importlib
import sys

from _rst import parse_rst
from docutils import nodes
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)
CHECKED = {"class", "function", "exception", "data", "method", "property"}


def attr_doc(package: str, name: str) -> list[str]:
    """The ``#:`` comment of constant ``name`` of ``package``: where it is defined, in one of the package's
    loaded submodules or, for a constant imported from elsewhere (``nnatlas._choices``), in the rest of
    nnatlas."""
    loaded = sorted(m for m in sys.modules if m == "nnatlas" or m.startswith("nnatlas."))
    inside = [m for m in loaded if m == package or m.startswith(package + ".")]
    for modname in inside + [m for m in loaded if m not in inside]:
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # a compiled or source-less module
            continue
        if ("", name) in docs:
            return list(docs[("", name)])
    return []


def process_docstring(app, what, name, obj, options, lines):
    package, short = name.rsplit(".", 1)
    # a constant's documentation is its #: comment (not the docstring of tuple or str)
    if what == "data" and (type(obj).__module__ == "builtins" or not any(line.strip() for line in lines)):
        lines[:] = attr_doc(package, short)
    if what not in CHECKED or any(line.strip() for line in lines) or short.startswith("_"):
        return
    if what == "method" and short in ("forward", "extra_repr", "reset_parameters"):
        return  # documented by the class docstring, as torch.nn documents its modules
    logger.warning("public %s %s has no docstring", what, name, type="nnatlas", subtype="docstring")


class Constants(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        module = importlib.import_module(package)
        own = ModuleAnalyzer.for_module(package).find_attr_docs()
        names = [
            n
            for n in module.__all__
            if type(getattr(module, n)).__module__ == builtins.__name__
            and not callable(getattr(module, n))
            and ("", n) not in own
        ]
        lines = [f".. autodata:: {package}.{n}" for n in names]
        return parse_rst(self, lines, "nnatlas-constants")


def setup(app):
    app.add_directive("nnatlas-constants", Constants)
    app.connect("autodoc-process-docstring", process_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
