"""Every registered experiment, run with ``--quick`` sizes: the result folder is complete and valid, the
figure decodes, and the verdict is what the experiment's criterion gives for the numbers in result.json."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from nnatlas.experiments import MODULES, VERDICTS, get_experiment, list_experiments, run_experiment

KEYS = {
    "schema", "name", "title", "claim", "method", "criterion", "numbers", "table", "key_number", "verdict",
    "notes", "seeds", "quick", "wall_s", "started", "versions", "machine",
}  # fmt: skip


@pytest.fixture
def one_thread():
    """The command line runs experiments on one torch thread (small models run best on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_all_nineteen_are_registered_in_the_order_of_the_notes():
    assert list_experiments() == [m.replace("_", "-") for m in MODULES]
    assert len(MODULES) == 19


@pytest.mark.parametrize("name", list_experiments())
def test_quick_run(name, tmp_path, one_thread):
    exp = get_experiment(name)
    result = run_experiment(name, tmp_path, quick=True, seeds=2)
    folder = tmp_path / name
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no partial folder left beside it
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "figure.png", "result.json"]
    stored = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    assert set(stored) == KEYS and stored == json.loads(json.dumps(result, ensure_ascii=False))
    assert stored["verdict"] in VERDICTS
    # The verdict follows from the stored numbers by the stated criterion, not from anything else.
    assert exp.decide(stored["numbers"]) == stored["verdict"]
    assert stored["seeds"] == [0, 1] and stored["quick"] is True
    assert stored["claim"]["zh"] == exp.claim_zh and stored["criterion"] == exp.criterion
    assert stored["table"] and all(set(r) == set(stored["table"][0]) for r in stored["table"])
    with Image.open(folder / "figure.png") as im:
        im.load()
        assert im.width >= 200 and im.height >= 150
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert exp.claim_zh in readme and f"**Verdict: {stored['verdict']}**" in readme
