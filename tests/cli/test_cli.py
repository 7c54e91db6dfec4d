"""The command line through its real entry point (the installed console script)."""

import json
import re
import subprocess

import pytest
import torch

from nnatlas.analysis import count_parameters
from nnatlas.data import list_datasets
from nnatlas.models import create_model, list_models
from tests.cli.helpers import assert_usage_error, run


def test_version(nnatlas_exe):
    proc = run(nnatlas_exe, "--version")
    assert proc.returncode == 0 and re.fullmatch(r"nnatlas \d+\.\d+\.\d+\S*\n", proc.stdout)


def test_help_explains_train(nnatlas_exe):
    proc = run(nnatlas_exe, "train", "--help")
    assert proc.returncode == 0 and "classification" in proc.stdout and "seq2seq" in proc.stdout
    proc = run(nnatlas_exe, "train", "classification", "--help")
    assert proc.returncode == 0 and "--model" in proc.stdout and "digits" in proc.stdout


def test_models_lists_every_model_with_exact_parameter_count(nnatlas_exe):
    proc = subprocess.run(
        [*nnatlas_exe, "models"], capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""}
    )
    assert proc.returncode == 0, proc.stderr
    rows = {
        m.group(1): int(m.group(2).replace(",", ""))
        for m in re.finditer(r"│ (\S+)\s+│ \S+\s+│\s+([\d,]+) │", proc.stdout)
    }
    assert set(rows) == set(list_models())
    for name, count in rows.items():
        with torch.device("meta"):
            assert count == count_parameters(create_model(name)), name


def test_models_keeps_one_line_per_model_in_80_columns(nnatlas_exe):
    proc = subprocess.run(
        [*nnatlas_exe, "models"], capture_output=True, text=True, env={"COLUMNS": "80", "PATH": ""}
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if line.startswith("│ ")]
    assert [r.split("│")[1].strip() for r in rows] == list_models()  # one line each, names never cut
    wide = subprocess.run(
        [*nnatlas_exe, "models", "--wide"], capture_output=True, text=True, env={"COLUMNS": "80", "PATH": ""}
    )
    assert len(wide.stdout.splitlines()) > len(lines)  # --wide wraps the descriptions


def test_unknown_model_and_data_name_the_choices_closest_first(nnatlas_exe, tmp_path):
    line = assert_usage_error(run(nnatlas_exe, "train", "--model", "nosuchnet", cwd=tmp_path))
    assert "unknown model 'nosuchnet'" in line
    assert set(line.split("closest first): ")[1].split(", ")) == set(list_models())
    line = assert_usage_error(run(nnatlas_exe, "train", "--model", "cifar_resnet2", cwd=tmp_path))
    assert line.split("closest first): ")[1].startswith("cifar_resnet20")
    line = assert_usage_error(run(nnatlas_exe, "train", "--data", "nosuchdata", cwd=tmp_path))
    assert "unknown data set 'nosuchdata'" in line and set(line.split(": ")[-1].split(", ")) == set(
        list_datasets(task="classification")
    )
    line = assert_usage_error(run(nnatlas_exe, "train", "--data", "digit", cwd=tmp_path))
    assert line.split("closest first): ")[1].startswith("digits, ")
    assert not (tmp_path / "runs").exists()  # nothing written on a usage error


@pytest.mark.parametrize(
    "args",
    [
        ["--out", "/proc/forbidden"],
        ["--epochs", "0"],
        ["--lr", "abc"],
        ["--optimizer", "adam"],
        ["--device", "cuda:7"],
        ["--nosuchflag"],
        ["--model", "alexnet"],  # 8x8 digits are below AlexNet's 63x63 minimum
    ],
)
def test_bad_arguments_exit_2_with_one_line(nnatlas_exe, tmp_path, args):
    line = assert_usage_error(run(nnatlas_exe, "train", *args, cwd=tmp_path))
    if args[0] == "--out":
        assert "/proc/forbidden" in line and "cannot create" in line


@pytest.mark.slow
def test_default_train_reaches_97_percent_and_never_overwrites(nnatlas_exe, tmp_path):
    first = run(nnatlas_exe, "train", "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_dir = tmp_path / "runs" / "cifar_resnet20-digits"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_acc"] >= 0.97
    assert {"epoch", "train_loss", "val_loss", "val_acc"} <= set(rows[-1])
    assert (run_dir / "model.safetensors").stat().st_size > 1_000_000
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "cifar_resnet20" and config["data"] == "digits"
    before = (run_dir / "metrics.jsonl").read_bytes()
    second = run(nnatlas_exe, "train", "--quiet", "--epochs", "1", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "runs" / "cifar_resnet20-digits-2" / "metrics.jsonl").exists()
    assert (run_dir / "metrics.jsonl").read_bytes() == before
