"""Divergence, damaged metrics, extending a finished run, and user text printed as written."""

import json
import math

import pytest
import torch

from nnatlas.cli.main import main
from nnatlas.engine import load_checkpoint, read_jsonl
from tests.reliability.conftest import TINY_CLS


def _strict_json_rows(path):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def _all_finite(state):
    tensors = [t for t in state["model"].values() if t.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _main(argv, capsys):
    threads = torch.get_num_threads()
    try:
        code = main(argv)
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        # Diverges within an epoch: batch-norm statistics and weights overflow.
        (
            ["--optimizer", "sgd", "--lr", "30", "--scheduler", "constant", "--warmup-epochs", "0"],
            "non-finite",
        ),
        # The first update already overflows; with a checkpoint after every update none may be written.
        (
            ["--optimizer", "sgd", "--lr", "1e30", "--scheduler", "constant", "--checkpoint-every", "1"],
            "became",
        ),
    ],
    ids=["lr30", "lr1e30-checkpoint-every-update"],
)
def test_divergence_stops_with_exit_1_and_keeps_only_finite_checkpoints(
    tmp_path, monkeypatch, capsys, extra, needle
):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--epochs", "3", "--limit-train", "320", "--batch-size", "32", "--quiet", "--name", "d"]
    code, out, err = _main([*argv, "--warmup-epochs", "0", *extra], capsys)
    assert code == 1, err
    (line,) = [x for x in err.splitlines() if x.strip() and not x.startswith("WARNING")]
    assert line.startswith("nnatlas: diverged: ") and needle in line and "training stopped" in line
    run = tmp_path / "runs" / "d"
    assert not (run / "model.safetensors").exists()
    checkpoint = run / "checkpoint.pt"
    if checkpoint.exists():
        assert "the last good checkpoint is" in line
        assert _all_finite(load_checkpoint(checkpoint))
    else:
        assert "no checkpoint was written" in line
    if (run / "metrics.jsonl").exists():
        _strict_json_rows(run / "metrics.jsonl")  # valid JSON: no NaN or Infinity literals


def test_non_finite_validation_loss_is_divergence(tmp_path):
    from torch import nn

    from nnatlas.engine import ClassificationTask, NonFiniteLossError, TrainConfig, Trainer

    class NanInEval(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            y = self.fc(x)
            return y if self.training else y * float("nan")

    data = torch.utils.data.TensorDataset(torch.randn(64, 2), torch.randint(0, 3, (64,)))
    trainer = Trainer(NanInEval(), ClassificationTask(3), data, data, TrainConfig(epochs=2), run_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match="val_loss became nan at epoch 1"):
        trainer.fit()
    assert not (tmp_path / "checkpoint.pt").exists()  # the epoch-1 weights gave NaN: never saved
    (row,) = _strict_json_rows(tmp_path / "metrics.jsonl")
    assert row["val_loss"] is None and "val_loss" in row["non_finite"]


def test_partial_metrics_line_and_stale_temporaries_are_cleaned_on_resume(
    tmp_path, monkeypatch, capsys, caplog
):
    monkeypatch.chdir(tmp_path)
    assert _main([*TINY_CLS, "--epochs", "2", "--name", "r"], capsys)[0] == 0
    run = tmp_path / "runs" / "r"
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "train_lo')  # a write cut short by kill -9
    (run / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    code, out, err = _main(["train", "--resume", str(run), "--epochs", "3", "--quiet"], capsys)
    assert code == 0, err
    assert "dropped a partial last line" in caplog.text and "removed 1 temporary file" in caplog.text
    rows = _strict_json_rows(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert not list(run.glob(".*.tmp"))


def test_extending_a_finished_run_and_resuming_it_again(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _main([*TINY_CLS, "--epochs", "2", "--name", "r"], capsys)[0] == 0
    run = tmp_path / "runs" / "r"
    code, out, err = _main(["train", "--resume", str(run), "--epochs", "4", "--quiet"], capsys)
    assert code == 0, err
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3, 4]
    config = json.loads((run / "config.json").read_text())
    assert config["cli"]["epochs"] == 4 and config["train"]["epochs"] == 4
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, out, err = _main(["train", "--resume", str(run)], capsys)
    assert code == 0 and "is finished (4 of 4 epochs); nothing to do" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing rewritten


def test_user_text_prints_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # Rich markup in a name ("[red]") and a folder "r[/]" (a closing tag): printed and used as written.
    code, out, err = _main([*TINY_CLS, "--out", "r[", "--name", "]exp[red]x", "--threads", "1"], capsys)
    assert code == 0, err
    run = "r[/]exp[red]x"
    assert (tmp_path / run / "model.safetensors").exists()
    assert f"run saved in {run}" in out
    code, out, err = _main(["train", "--resume", run, "--epochs", "2", "--quiet"], capsys)
    assert code == 0, err
    assert f"run saved in {run}" in out


def test_json_rows_write_non_finite_values_as_null(tmp_path):
    from nnatlas.engine import append_jsonl

    append_jsonl(tmp_path / "m.jsonl", {"epoch": 1, "a": math.nan, "b": math.inf, "c": 1.5})
    (row,) = _strict_json_rows(tmp_path / "m.jsonl")
    assert row == {"epoch": 1, "a": None, "b": None, "c": 1.5, "non_finite": ["a", "b"]}
