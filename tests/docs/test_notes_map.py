"""The landing page's map from the notes to the code (``docs/_ext/notes_map.py``): every test file it
names exists, every experiment is registered, every gallery page has its script, and, where the notes are
at hand, every heading of theirs with content is on the map (in the notes' order)."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from nnatlas.experiments import list_experiments

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))  # as docs/conf.py does: the extensions import each other
spec = importlib.util.spec_from_file_location("notes_map", ROOT / "docs" / "_ext" / "notes_map.py")
notes_map = importlib.util.module_from_spec(spec)
spec.loader.exec_module(notes_map)
ROWS = notes_map.ROWS
NOTES = ROOT.parent / "shared" / "seed" / "notes.md"


def test_named_tests_experiments_and_gallery_pages_exist():
    known = set(list_experiments())
    for row in ROWS:
        for path in row.tests:
            assert (ROOT / path).is_file(), (row.heading, path)
        assert set(row.experiments) <= known, (row.heading, set(row.experiments) - known)
        assert not row.gallery or (ROOT / "gallery" / f"{row.gallery}.py").is_file(), row.gallery


def test_every_experiment_and_gallery_page_is_on_the_map():
    assert set(list_experiments()) <= {e for row in ROWS for e in row.experiments}
    scripts = {p.stem for p in (ROOT / "gallery").glob("plot_*.py")}
    assert scripts == {row.gallery for row in ROWS if row.gallery}


def test_code_references_name_public_symbols():
    import importlib

    for row in ROWS:
        for ref in row.code:
            target = re.search(r"`~?([\w.]+)`", ref).group(1)
            module, _, name = target.rpartition(".")
            assert hasattr(importlib.import_module(module), name), target


@pytest.mark.skipif(not NOTES.is_file(), reason="the course notes are not beside this checkout")
def test_every_heading_of_the_notes_is_mapped_in_order():
    text = NOTES.read_text(encoding="utf-8")
    headings = [h.strip().strip("`") for h in re.findall(r"(?m)^#{2,4} (.+)$", text)]
    skip = {"资料", "常见CNN结构", "CNN", "编码解码整体图", "Decoder具体结构", "Transformer（黑马）"}
    skip |= {"transformer架构解析", "Sigmoid", "ReLU", "基于编码解码"}  # mapped inside a combined row
    positions = []
    for heading in headings:
        if heading in skip:
            continue
        where = [i for i, row in enumerate(ROWS) if heading in row.heading]
        assert where, f"notes heading {heading!r} is not on the map"
        positions.append(where[0])
    assert positions == sorted(positions), "the map does not follow the notes' order"
