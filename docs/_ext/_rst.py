"""Parse generated reST inside a directive, whether the page is reST or Markdown (myst parses the nested
content of a directive on a Markdown page as Markdown: the reST goes through ``{eval-rst}`` there)."""

from __future__ import annotations

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


def parse_rst(directive: SphinxDirective, lines: list[str], source: str) -> list[nodes.Node]:
    if str(directive.env.doc2path(directive.env.docname)).endswith(".md"):
        lines = ["```{eval-rst}", *lines, "```"]
    node = nodes.container()
    directive.state.nested_parse(StringList(lines, source=source), directive.content_offset, node)
    return node.children
