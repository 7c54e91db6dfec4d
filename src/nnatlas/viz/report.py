"""One self-contained HTML page: a run, a model or a folder of experiment results.

:func:`render_report` fills a Jinja2 template with autoescape on, so every string that comes from a user (a
run name, a model name, a class name, a config value) is HTML-escaped; images are inlined as base64 PNG data
URIs, there is no script, no stylesheet or font from outside, and the layout reads on a phone's width.

The content is a :class:`Report`: a title, a few facts, and sections; each section has an optional text,
table and figures. :func:`figure_uri` turns a PNG file (or a matplotlib figure) into a data URI.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Figure", "Report", "Section", "Table", "figure_uri", "render_report"]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Figure:
    """``src``: a ``data:image/png;base64,...`` URI (see :func:`figure_uri`)."""

    src: str
    caption: str = ""


@dataclass
class Section:
    heading: str
    text: str = ""
    table: Table | None = None
    figures: list[Figure] = field(default_factory=list)
    verdict: str | None = None  # experiments: supported / not supported / inconclusive
    quote: str = ""  # experiments: the notes' sentence


@dataclass
class Report:
    title: str
    subtitle: str = ""
    facts: list[tuple[str, Any]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    footer: str = ""


def figure_uri(source: Any) -> str:
    """A PNG data URI of ``source``: a path to a PNG file, PNG bytes, or a matplotlib figure (closed after)."""
    if isinstance(source, (str, os.PathLike)):
        data = Path(source).read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        source.tight_layout()
        source.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(source)
        data = buf.getvalue()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("figure_uri takes PNG images only")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{{ report.title }}</title>
<style>
  :root { --fg: #1b1b1b; --muted: #5a5a5a; --line: #d9d9d9; --blue: #0072B2; --green: #009E73;
          --orange: #D55E00; --grey: #7a7a7a; }
  * { box-sizing: border-box; }
  body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "PingFang SC",
         "Microsoft YaHei", sans-serif; color: var(--fg); margin: 0 auto; max-width: 980px; padding: 12px; }
  h1 { font-size: 1.5em; margin: 0.4em 0 0.1em; word-break: break-word; }
  h2 { font-size: 1.2em; border-bottom: 1px solid var(--line); padding-bottom: 0.2em; margin-top: 1.6em;
       word-break: break-word; }
  .subtitle { color: var(--muted); margin: 0 0 1em; word-break: break-word; }
  .facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 6px; padding: 0; }
  .facts li { list-style: none; border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px; }
  .facts b { display: block; font-size: 0.8em; color: var(--muted); font-weight: normal; }
  .facts span { word-break: break-word; }
  .scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
  table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
  th, td { border-bottom: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
  th { background: #f4f4f4; position: sticky; top: 0; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  figure { margin: 0.8em 0; }
  img { max-width: 100%; height: auto; display: block; }
  figcaption { color: var(--muted); font-size: 0.85em; }
  blockquote { margin: 0.5em 0; padding: 0.3em 0.8em; border-left: 3px solid var(--line); color: #333; }
  .verdict { display: inline-block; padding: 1px 8px; border-radius: 10px; color: white; font-size: 0.85em; }
  .verdict.supported { background: var(--green); }
  .verdict.not-supported { background: var(--orange); }
  .verdict.inconclusive { background: var(--grey); }
  footer { color: var(--muted); font-size: 0.8em; margin: 2em 0 1em; }
</style>
</head>
<body>
<h1>{{ report.title }}</h1>
{% if report.subtitle %}<p class="subtitle">{{ report.subtitle }}</p>{% endif %}
{% if report.facts %}<ul class="facts">
{% for key, value in report.facts %}  <li><b>{{ key }}</b><span>{{ value }}</span></li>
{% endfor %}</ul>{% endif %}
{% for s in report.sections %}
<section>
<h2>{{ s.heading }}{% if s.verdict %} <span class="verdict {{ s.verdict | replace(' ', '-') }}">{{ s.verdict }}</span>{% endif %}</h2>
{% if s.quote %}<blockquote lang="zh">{{ s.quote }}</blockquote>{% endif %}
{% if s.text %}<p>{{ s.text }}</p>{% endif %}
{% if s.table %}<div class="scroll"><table>
<thead><tr>{% for c in s.table.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in s.table.rows %}<tr>{% for v in row %}{{ cell(v) }}{% endfor %}</tr>
{% endfor %}</tbody></table></div>{% endif %}
{% for f in s.figures %}<figure><img src="{{ f.src }}" alt="{{ f.caption }}">{% if f.caption %}<figcaption>{{ f.caption }}</figcaption>{% endif %}</figure>
{% endfor %}
</section>
{% endfor %}
<footer>{{ report.footer }}</footer>
</body>
</html>
"""


def _cell(value: Any):
    from markupsafe import Markup, escape

    if isinstance(value, bool) or value is None:
        return Markup("<td>") + escape(str(value)) + Markup("</td>")
    if isinstance(value, int):
        return Markup('<td class="num">') + escape(f"{value:,}") + Markup("</td>")
    if isinstance(value, float):
        text = f"{value:.4g}" if value == 0 or 1e-3 <= abs(value) < 1e6 else f"{value:.3e}"
        return Markup('<td class="num">') + escape(text) + Markup("</td>")
    return Markup("<td>") + escape(str(value)) + Markup("</td>")


def render_report(report: Report, path: str | os.PathLike | None = None) -> str:
    """The HTML of ``report`` (written to ``path`` when given, through a temporary file and a rename)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    for s in report.sections:
        for f in s.figures:
            if not f.src.startswith("data:image/png;base64,"):
                raise ValueError(f"figures must be inlined PNG data URIs; got {f.src[:40]!r}")
    html = env.from_string(_TEMPLATE).render(report=report, cell=_cell)
    if path is not None:
        from nnatlas.engine.runs import atomic_write_bytes

        atomic_write_bytes(path, html.encode("utf-8"))
    return html
