"""The README renders and says only what the code does: fences closed, links that exist, commands that
parse, sections in the order of the layout, reliability figures equal to the test tables."""

import re
import shlex
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from nnatlas.cli.common import UsageError
from nnatlas.cli.main import parse

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
TOKENS = MarkdownIt("commonmark").enable("table").parse(TEXT)
LINES = TEXT.splitlines()


def test_every_fence_is_closed():
    fences = [t for t in TOKENS if t.type == "fence"]
    assert len(fences) >= 10
    for t in fences:
        start, end = t.map
        closing = LINES[end - 1].strip()
        assert end - start >= 2 and closing.startswith(t.markup) and set(closing) == {t.markup[0]}, (
            f"fence opened on line {start + 1} is not closed"
        )
    # Every block names its language: a block that lost its opening fence turns its closing fence into an
    # opening one without a language, and the prose after it into code.
    assert all(t.info in ("python", "sh", "text") for t in fences), [t.info for t in fences]
    # Nothing after the last fence swallowed: the document ends outside a code block.
    assert TOKENS[-1].type != "fence" or LINES[TOKENS[-1].map[1] - 1].strip().startswith("```")


def test_every_python_block_is_python():
    import ast

    blocks = [t for t in TOKENS if t.type == "fence" and t.info == "python"]
    assert len(blocks) >= 4
    for t in blocks:
        ast.parse(t.content)  # a block that lost its opening fence would hold prose here


def _links():
    for t in TOKENS:
        for child in t.children or []:
            if child.type == "link_open":
                yield child.attrs["href"]
            elif child.type == "image":
                yield child.attrs["src"]
    yield from re.findall(r"`((?:src|tests|benchmarks)/[\w./-]+)`", TEXT)  # paths named in code spans


@pytest.mark.parametrize("target", sorted(set(_links())))
def test_every_relative_link_and_path_exists(target):
    if re.match(r"^[a-z]+://|^#|^mailto:", target):
        return
    assert (ROOT / target.split("#")[0]).exists(), target


def test_sections_follow_the_layout():
    headings = [
        LINES[t.map[0]].lstrip("# ").strip() for t in TOKENS if t.type == "heading_open" and t.tag == "h2"
    ]
    order = ["Two commands", "Quickstart: command line", "Quickstart: Python", "Layout", "Layers", "Models"]
    order += ["Analysis", "Data", "Training", "Experiments", "Pictures and reports", "Export", "Reliability"]
    order += ["Benchmarks"]
    found = [next(o for o in order if h.startswith(o)) for h in headings]
    assert found == order, headings


def _commands():
    """Every ``nnatlas ...`` line of the shell blocks (continuations joined, comments dropped)."""
    for t in TOKENS:
        if t.type != "fence" or t.info not in ("sh", "bash"):
            continue
        text = re.sub(r"\\\n\s*", " ", t.content)
        for line in text.splitlines():
            line = line.split("#")[0].strip()
            words = shlex.split(line) if line else []
            if "-m" in words and "nnatlas" in words:  # torchrun ... -m nnatlas ARGS
                yield words[words.index("nnatlas") + 1 :]
            elif words and words[0].endswith("nnatlas"):
                yield words[1:]


@pytest.mark.parametrize("argv", list(_commands()), ids=lambda a: " ".join(a)[:50])
def test_every_command_in_the_readme_parses(argv):
    if "--resume" in argv:  # the task comes from a run folder that only exists after training
        argv = [argv[0], "classification", *argv[1:]]
    try:
        parse(argv)
    except SystemExit as e:  # --version / --help
        assert e.code == 0
    except UsageError as e:
        pytest.fail(f"nnatlas {' '.join(argv)}: {e}")


def test_reliability_figures_are_the_test_tables():
    from tests.reliability.test_bad_inputs import BAD_INPUTS
    from tests.reliability.test_faults import FAULTS, QUICK
    from tests.reliability.test_files import MALICIOUS

    section = TEXT.split("## Reliability", 1)[1].split("\n## ", 1)[0]
    rows = {r.split("|")[1].strip().split(" ")[0]: r for r in section.splitlines() if r.startswith("| ")}
    for key, table in (("bad", BAD_INPUTS), ("faults", FAULTS), ("malicious", MALICIOUS)):
        cells = [c.strip() for c in rows[key].split("|")]
        assert cells[2] == str(len(table)) and cells[3].startswith(f"{len(table)} "), rows[key]
    assert f"`make test` runs {len(QUICK)} of the {len(FAULTS)} faults" in section
