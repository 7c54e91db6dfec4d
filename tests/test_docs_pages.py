"""The README and the guide pages render and say only what the code does: fences closed, links that
exist, commands that parse, Python blocks that run, sections in order, reliability figures equal to the
test tables. The guide (``docs/guide/*.md``) is what the README held before the Sphinx site; the Sphinx
build itself (``make docs``, with ``-W``) checks the cross-references of every page."""

import re
import shlex
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from nnatlas.cli.common import UsageError
from nnatlas.cli.main import parse

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md")), ROOT / "docs" / "index.md"]
PAGES.append(ROOT / "docs" / "zh" / "index.md")
MD = MarkdownIt("commonmark").enable("table")


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _tokens(page: Path):
    return MD.parse(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_fence_is_closed(page):
    lines = page.read_text(encoding="utf-8").splitlines()
    tokens = _tokens(page)
    for t in (t for t in tokens if t.type == "fence"):
        start, end = t.map
        closing = lines[end - 1].strip()
        assert end - start >= 2 and closing.startswith(t.markup) and set(closing) == {t.markup[0]}, (
            f"fence opened on line {start + 1} is not closed"
        )
        # Every block names its language: a block that lost its opening fence turns its closing fence into
        # an opening one without a language, and the prose after it into code.
        assert t.info in ("python", "sh", "text") or t.info.startswith("{"), (start + 1, t.info)
    # Nothing after the last fence swallowed: the document ends outside a code block.
    assert tokens[-1].type != "fence" or lines[tokens[-1].map[1] - 1].strip().startswith("```")


def _python_blocks():
    for page in PAGES:
        for t in _tokens(page):
            if t.type == "fence" and t.info == "python":
                yield pytest.param(t.content, id=f"{_name(page)}:{t.map[0] + 1}")


@pytest.fixture
def offline_torchvision_weights(monkeypatch):
    """torchvision's weights API without the network: ``get_state_dict`` returns the state of a randomly
    initialised model of the same architecture, so the loading path of ``weights="torchvision"`` runs."""
    import torchvision

    def get_state_dict(self, *args, **kwargs):
        for name in torchvision.models.list_models():
            if type(self) is torchvision.models.get_model_weights(name):
                kwargs = {"aux_logits": True} if name in ("inception_v3", "googlenet") else {}
                return torchvision.models.get_model(name, weights=None, **kwargs).state_dict()
        raise AssertionError(f"no torchvision model for {self}")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", get_state_dict)


@pytest.mark.parametrize("code", list(_python_blocks()))
def test_every_python_block_runs(code, offline_torchvision_weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything a block writes lands here
    exec(compile(code, "<block>", "exec"), {"__name__": "__block__"})


def _links(page: Path):
    text = page.read_text(encoding="utf-8")
    for t in _tokens(page):
        for child in t.children or []:
            if child.type == "link_open":
                yield child.attrs["href"]
            elif child.type == "image":
                yield child.attrs["src"]
    for path in re.findall(
        r"(?<!\})`((?:src|tests|benchmarks|gallery)/[\w./-]+)`", text
    ):  # code spans, not roles
        yield "/" + path


def _all_links():
    for page in PAGES:
        for target in sorted(set(_links(page))):
            yield pytest.param(page, target, id=f"{_name(page)}:{target}")


@pytest.mark.parametrize(("page", "target"), list(_all_links()))
def test_every_relative_link_and_path_exists(page, target):
    if re.match(r"^[a-z]+://|^#|^mailto:", target):
        return
    base = ROOT if target.startswith("/") else page.parent
    path = base / target.lstrip("/").split("#")[0]
    if path.suffix == ".png" and path.parent.name == "img" and not path.exists():
        # screenshots of the built site are taken by tests/docs/test_built_site.py after `make docs`
        assert path.name in ("docs_landing.png", "docs_gallery.png"), target
        return
    assert path.exists(), target


def test_readme_keeps_the_quickstart_the_two_commands_and_a_map():
    tokens = _tokens(PAGES[0])
    lines = PAGES[0].read_text(encoding="utf-8").splitlines()
    headings = [
        lines[t.map[0]].lstrip("# ").strip() for t in tokens if t.type == "heading_open" and t.tag == "h2"
    ]
    assert headings == ["Two commands", "Quickstart: command line", "Quickstart: Python", "Map"], headings
    two = next(t for t in tokens if t.type == "fence" and t.info == "sh").content
    assert [line.split("#")[0].strip() for line in two.splitlines()] == ["make demo", "make test"]
    # every guide page is on the map
    text = PAGES[0].read_text(encoding="utf-8")
    for page in (ROOT / "docs" / "guide").glob("*.md"):
        assert page.name == "index.md" or f"(docs/guide/{page.name})" in text, page.name


def test_guide_toctree_lists_every_guide_page():
    index = (ROOT / "docs" / "guide" / "index.md").read_text(encoding="utf-8")
    toc = index.split("```{toctree}", 1)[1].split("```", 1)[0].split()
    assert sorted(toc[toc.index("2") + 1 :] if "2" in toc else toc) == sorted(
        p.stem for p in (ROOT / "docs" / "guide").glob("*.md") if p.stem != "index"
    )


def _commands():
    """Every ``nnatlas ...`` line of the shell blocks (continuations joined, comments dropped)."""
    for page in PAGES:
        for t in _tokens(page):
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
def test_every_command_parses(argv):
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

    section = (ROOT / "docs" / "guide" / "reliability.md").read_text(encoding="utf-8")
    rows = {r.split("|")[1].strip().split(" ")[0]: r for r in section.splitlines() if r.startswith("| ")}
    for key, table in (("bad", BAD_INPUTS), ("faults", FAULTS), ("malicious", MALICIOUS)):
        cells = [c.strip() for c in rows[key].split("|")]
        assert cells[2] == str(len(table)) and cells[3].startswith(f"{len(table)} "), rows[key]
    assert f"`make test` runs {len(QUICK)} of the {len(FAULTS)} faults" in section
