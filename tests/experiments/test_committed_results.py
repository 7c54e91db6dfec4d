"""The full runs committed under docs/experiments: one per registered experiment, each judged by the current
criterion, and the guide's table (docs/guide/experiments.md) equal to the results."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from nnatlas.experiments import VERDICTS, get_experiment, list_experiments
from nnatlas.experiments.base import load_results, summary_table

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "experiments"
RESULTS = {r["name"]: r for r in load_results(DOCS)} if DOCS.is_dir() else {}


def test_every_experiment_has_a_committed_full_run():
    assert sorted(RESULTS) == sorted(list_experiments())


@pytest.mark.parametrize("name", list_experiments())
def test_committed_result_is_a_full_run_judged_by_the_current_criterion(name):
    r = RESULTS[name]
    exp = get_experiment(name)
    assert r["quick"] is False and r["seeds"] == [0, 1, 2]
    assert r["criterion"] == exp.criterion and r["claim"]["zh"] == exp.claim_zh and r["method"] == exp.method
    assert r["verdict"] in VERDICTS and exp.decide(r["numbers"]) == r["verdict"]
    with Image.open(DOCS / name / "figure.png") as im:
        im.verify()
    assert f"**Verdict: {r['verdict']}**" in (DOCS / name / "README.md").read_text(encoding="utf-8")


def test_index_and_readme_show_the_results_table():
    results = list(RESULTS.values())
    assert summary_table(results) in (DOCS / "README.md").read_text(encoding="utf-8")
    guide = (ROOT / "docs" / "guide" / "experiments.md").read_text(encoding="utf-8")
    assert summary_table(results, link="../experiments") in guide
