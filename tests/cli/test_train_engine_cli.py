"""The engine through the command line: a real SIGINT, --resume, nnatlas eval, and data errors."""

import json
import os
import signal
import subprocess
import time

import pytest

from nnatlas.engine import TIME_FIELDS
from tests.cli.helpers import assert_usage_error
from tests.cli.helpers import run as run_cli

# One thread per process: on a shared 2-core machine OpenMP threads spinning against each other make a
# small model's steps ten times slower, and the comparison below needs the same thread count anyway.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(exe, *args, cwd=None, timeout=600):
    return run_cli(exe, *args, cwd=cwd, timeout=timeout, env=ENV)


ARGS = ["train", "--epochs", "4", "--deterministic", "--device", "cpu", "--quiet", "--seed", "1"]
ARGS += ["--limit-train", "320", "--batch-size", "32"]


def _rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIME_FIELDS} for r in rows]


@pytest.mark.slow
def test_sigint_then_resume_equals_the_uninterrupted_run_and_eval_agrees(nnatlas_exe, tmp_path):
    full = run(nnatlas_exe, *ARGS, "--name", "full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr

    part_dir = tmp_path / "runs" / "part"
    proc = subprocess.Popen(
        [*nnatlas_exe, *ARGS, "--name", "part"], cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=ENV
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = part_dir / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # a real signal, in the middle of epoch 3
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "stopped by SIGINT at epoch 3" in stderr and f"--resume {part_dir.relative_to(tmp_path)}" in stderr
    assert "Traceback" not in stderr
    assert len(_rows(part_dir)) == 2 and not (part_dir / "model.safetensors").exists()

    resumed = run(nnatlas_exe, "train", "--resume", str(part_dir), "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    expected = _rows(tmp_path / "runs" / "full")
    assert len(expected) == 4 and _rows(part_dir) == expected  # every number, bit for bit

    ev = run(nnatlas_exe, "eval", str(part_dir), "--quiet", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["val_acc"] == pytest.approx(expected[-1]["val_acc"], abs=1e-6)
    assert result["val_loss"] == pytest.approx(expected[-1]["val_loss"], rel=1e-5)


def test_missing_data_folder_is_one_line(nnatlas_exe, tmp_path):
    line = assert_usage_error(
        run(nnatlas_exe, "train", "--data", "mnist", "--data-dir", "nope", cwd=tmp_path)
    )
    assert "mnist: data folder 'nope' does not exist" in line and "--download" in line
    assert not (tmp_path / "runs").exists()


def test_fp16_on_the_cpu_is_one_line(nnatlas_exe, tmp_path):
    line = assert_usage_error(run(nnatlas_exe, "train", "--amp", "fp16", "--device", "cpu", cwd=tmp_path))
    assert "amp 'fp16' needs a CUDA device" in line and "bf16" in line


@pytest.mark.slow
def test_torchrun_launches_the_cli_on_two_cpu_processes(tmp_path):
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    cmd += ["--standalone", "--nproc-per-node", "2", "-m", "nnatlas", "train", "--device", "cpu", "--quiet"]
    cmd += ["--epochs", "1", "--limit-train", "128", "--batch-size", "32", "--name", "ddp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]  # rank 0 made the one run folder
    config = json.loads((tmp_path / "runs" / "ddp" / "config.json").read_text())
    assert config["world_size"] == 2
    assert _rows(tmp_path / "runs" / "ddp")[0]["step"] == 2  # 128 samples / (2 processes x 32)
    assert proc.stdout.count("done in") == 1  # only rank 0 reports
