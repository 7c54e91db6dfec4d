"""Faults injected into real training processes; after each, ``nnatlas train --resume`` must give the
metrics of the uninterrupted run, row by row and number for number.

``FAULTS`` is the matrix the guide's reliability figures count (docs/guide/reliability.md): SIGINT,
SIGTERM (sent to the whole process group, as a terminal's Ctrl-C and Slurm's ``scancel`` do) and SIGKILL, in the middle of an epoch, during
validation and during a checkpoint write, with and without data-loader workers, for every task. The update
where a mid-epoch fault lands is drawn at random (seeded, so a failure can be replayed).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnatlas.engine import TIME_FIELDS

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
COMMON = [
    "--epochs",
    "3",
    "--batch-size",
    "32",
    "--checkpoint-every",
    "2",
    "--deterministic",
    "--device",
    "cpu",
]
COMMON += ["--threads", "1", "--seed", "1", "--quiet"]
TASKS = {
    # 96 samples / batch 32: 3 updates per epoch, 9 in all (a signal after the last one just lets it finish).
    "classification": ["train", "classification", "--limit-train", "96", *COMMON],
    "seq2seq": ["train", "seq2seq", "--num-train", "96", "--num-val", "24", "--max-len", "4", "--layers", "1"]
    + ["--d-model", "16", "--heads", "2", "--ff", "32", *COMMON],
}
UPDATES = 9

RNG = random.Random(2024)
KINDS = [
    (signal.SIGINT, "update", 0),
    (signal.SIGTERM, "update", 2),
    (signal.SIGTERM, "validation", 0),
    (signal.SIGINT, "validation", 2),
    (signal.SIGTERM, "checkpoint", 0),
    (signal.SIGINT, "checkpoint", 2),
    (signal.SIGKILL, "update", 0),
    (signal.SIGKILL, "validation", 2),
    (signal.SIGKILL, "checkpoint", 0),
]
# Points that leave work after them: updates 1..7 (of 9), the validations of epochs 1..2, checkpoint
# writes 1..4 (of 6: the 5th is before the last update); a signal at the very end lets the run finish.
LAST = {"update": UPDATES - 2, "validation": 2, "checkpoint": 4}
FAULTS = [
    (task, sig, f"{point}:{RNG.randint(1, LAST[point])}", workers)
    for task in TASKS
    for sig, point, workers in KINDS
]
#: Run by ``make test``: every kind of fault once, the tasks taking turns; ``pytest -m exhaustive`` runs the
#: other half of the matrix.
QUICK = {i for i in range(len(FAULTS)) if (i % len(KINDS)) % 2 == (0 if i < len(KINDS) else 1)}


def _rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIME_FIELDS} for r in rows]


def _nnatlas(*argv, cwd):
    cmd = [sys.executable, "-m", "nnatlas", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=ENV, timeout=600)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The metrics of the uninterrupted run of each task."""
    root = tmp_path_factory.mktemp("reference")
    out = {}
    for task, argv in TASKS.items():
        proc = _nnatlas(*argv, "--name", task, cwd=root)
        assert proc.returncode == 0, proc.stderr
        out[task] = _rows(root / "runs" / task)
        assert len(out[task]) == 3
    return out


def _inject(argv, point, sig, cwd):
    """Start training, send ``sig`` to its process group when it reaches ``point``; returns the process."""
    marker = cwd / "paused"
    cmd = [sys.executable, "-m", "tests.reliability.faulty", point, str(marker), "--", *argv]
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, f"ended before {point}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.01)
    os.killpg(proc.pid, sig)  # the whole group: the main process and its data-loader workers
    marker.with_name(marker.name + ".go").touch()
    proc.wait(timeout=300)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "sig", "point", "workers"),
    [pytest.param(*f, marks=() if i in QUICK else pytest.mark.exhaustive) for i, f in enumerate(FAULTS)],
    ids=[f"{t}-{s.name}-{p}-w{w}" for t, s, p, w in FAULTS],
)
def test_fault_then_resume_equals_the_uninterrupted_run(references, tmp_path, task, sig, point, workers):
    argv = [*TASKS[task], "--workers", str(workers), "--name", "r"]
    proc = _inject(argv, point, sig, tmp_path)
    stderr = proc.stderr.read()
    run_dir = tmp_path / "runs" / "r"
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + sig, stderr
        assert "Traceback" not in stderr and "killed by signal" not in stderr
        assert stderr.count(f"{sig.name} received") == 1, (
            stderr
        )  # workers leave the signal to the main process
        assert f"continue with: nnatlas train {task} --resume runs/r" in stderr
        assert not (run_dir / "model.safetensors").exists()
    resumed = _nnatlas("train", "--resume", "runs/r", "--workers", str(workers), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert _rows(run_dir) == references[task]  # every number of every epoch
    assert not list(run_dir.glob(".*.tmp"))  # what a write cut short left is gone
    assert (run_dir / "model.safetensors").exists()


#: The image tasks that came after the matrix take the same shared path (run_training, the Trainer's
#: checkpoints and signals); one fault each proves they inherit it: SIGTERM to the group mid-epoch, with a
#: data-loader worker (detection's default model trains on randomly augmented scenes, drawn in the worker),
#: then --resume must give every number of the uninterrupted run.
IMAGE_TASKS = {
    "segmentation": ["train", "segmentation", "--model-kwargs", "padding=True", "base_channels=4", "depth=2"]
    + ["--limit-train", "96", *COMMON],
    "detection": ["train", "detection", "--limit-train", "96", *COMMON],
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(IMAGE_TASKS))
def test_image_tasks_resume_exactly_after_sigterm(tmp_path, task):
    argv = IMAGE_TASKS[task]
    reference = _nnatlas(*argv, "--workers", "1", "--name", "ref", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    proc = _inject([*argv, "--workers", "1", "--name", "r"], "update:4", signal.SIGTERM, tmp_path)
    stderr = proc.stderr.read()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and f"continue with: nnatlas train {task} --resume runs/r" in stderr
    resumed = _nnatlas("train", "--resume", "runs/r", "--workers", "1", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    reference_rows = _rows(tmp_path / "runs" / "ref")
    assert len(reference_rows) == 3 and _rows(tmp_path / "runs" / "r") == reference_rows
