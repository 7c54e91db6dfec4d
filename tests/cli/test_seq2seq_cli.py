"""`nnatlas train seq2seq` and `nnatlas attention` through the real console script."""

import json

import matplotlib.image
import pytest

from tests.cli.helpers import main_in_process, run, usage_error_in_process


def test_train_seq2seq_then_draw_attention(nnatlas_exe, tmp_path):
    args = ["--data", "sort", "--epochs", "2", "--num-train", "256", "--num-val", "40", "--max-len", "6"]
    proc = run(nnatlas_exe, "train", "seq2seq", *args, "--layers", "1", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "runs" / "transformer_seq2seq-sort"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert {"train_loss", "val_loss", "val_token_acc", "val_exact_acc"} <= set(rows[-1])
    assert 0.0 <= rows[-1]["val_exact_acc"] <= rows[-1]["val_token_acc"] <= 1.0
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "transformer_seq2seq" and config["sequences"]["task"] == "sort"
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"

    proc = run(nnatlas_exe, "attention", str(run_dir), "--index", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pngs = sorted(p.name for p in (run_dir / "attention").glob("*.png"))
    # One layer each: encoder self-attention, decoder self-attention, cross-attention.
    assert pngs == [
        "decoder.layers.0.multihead_attn.png",
        "decoder.layers.0.self_attn.png",
        "encoder.layers.0.self_attn.png",
    ]
    image = matplotlib.image.imread(run_dir / "attention" / pngs[0])
    assert image.ndim == 3 and image.shape[0] > 100
    assert "4 heads each" in proc.stdout

    proc = run(nnatlas_exe, "report", str(run_dir), "-o", "r.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<h2>Sample decodes" in html and "<h2>Training curves" in html
    assert html.count("<td>yes</td>") + html.count("<td>no</td>") == 12  # one row per sample decode


def test_train_lstm_seq2seq_then_draw_its_attention_and_export_it(nnatlas_exe, tmp_path, capsys):
    args = ["--data", "reverse", "--epochs", "2", "--num-train", "256", "--num-val", "40", "--max-len", "6"]
    proc = run(nnatlas_exe, "train", "seq2seq", "--model", "lstm_seq2seq", *args, "--layers", "1", "--d-model", "32", "--quiet", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "runs" / "lstm_seq2seq-reverse"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert 0.0 <= rows[-1]["val_exact_acc"] <= rows[-1]["val_token_acc"] <= 1.0
    config = json.loads((run_dir / "config.json").read_text())
    # The recipe maps its options to the LSTM's builder: width and depth, no heads or feed-forward width.
    assert config["model_kwargs"] == {
        "vocab_size": 13,
        "d_model": 32,
        "dropout": 0.0,
        "max_len": 8,
        "num_layers": 1,
    }

    proc = run(nnatlas_exe, "attention", str(run_dir), "--index", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (run_dir / "attention").glob("*.png")] == ["decoder.attention.png"]
    assert "1 heads each" in proc.stdout

    # torch.export traces the trained LSTM (fixed lengths) and the file gives the eager outputs.
    assert main_in_process(["export", str(run_dir), "-o", str(tmp_path / "lstm.pt2")]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "seq2seq", "--task", "revers"], "unknown sequence task 'revers'"),
        (["train", "seq2seq", "--data", "revers"], "unknown sequence task 'revers'"),
        (["train", "seq2seq", "--min-len", "5", "--max-len", "3"], "--min-len must not exceed --max-len (3)"),
        (["train", "seq2seq", "--model", "cifar_resnet20"], "is a classification model"),
        (["train", "seq2seq", "--heads", "5"], "--heads must divide --d-model (64); got 5"),
        (
            ["train", "seq2seq", "--model", "lstm_seq2seq", "--heads", "2"],
            "--heads does not apply to --model lstm_seq2seq",
        ),  # fmt: skip
        (
            ["train", "seq2seq", "--model", "lstm_seq2seq", "--ff", "64"],
            "--ff does not apply to --model lstm_seq2seq",
        ),  # fmt: skip
        (
            ["train", "seq2seq", "--model", "lstm_seq2seq", "--d-model", "33"],
            "--d-model must be even (each direction",
        ),  # fmt: skip
        (["train", "seq2seq", "--channels-last"], "--channels-last does not apply to seq2seq"),
        (["train", "seq2seq", "--augment", "basic"], "unrecognized arguments: --augment"),
        (["train", "classification", "--heads", "2"], "unrecognized arguments: --heads"),
        (["train", "seq2seq", "--num-train", "0"], "--num-train"),
        (["train", "translation"], "unknown task 'translation'"),
        (["attention", "nosuchrun"], "RUN 'nosuchrun' is not a run folder"),
    ],
)
def test_bad_seq2seq_arguments_exit_2_with_one_line(capsys, monkeypatch, tmp_path, args, needle):
    monkeypatch.chdir(tmp_path)
    line = usage_error_in_process(args, capsys)
    assert needle in line
    assert not (tmp_path / "runs").exists()


def test_train_help_names_both_defaults(nnatlas_exe):
    proc = run(nnatlas_exe, "train", "--help")
    text = " ".join(proc.stdout.split())  # argparse wraps lines at the terminal width
    assert proc.returncode == 0
    assert "default: cifar_resnet20 on the embedded 8x8 digits" in text and "default: reverse" in text
