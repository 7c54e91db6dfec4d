"""Data parallelism through torchrun: 2 processes (gloo, CPU) take the same steps as 1 with twice the batch."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from nnatlas.engine import ClassificationTask, Trainer, read_jsonl
from tests.engine import ddp_worker


def test_two_processes_equal_one_with_the_doubled_batch(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    cmd += ["--standalone", "--nproc-per-node", "2", ddp_worker.__file__, str(tmp_path), "16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp_weights = load_file(tmp_path / "model.safetensors")

    single = ddp_worker.model()
    single_dir = tmp_path / "single"
    single_dir.mkdir()
    Trainer(single, ClassificationTask(3), ddp_worker.data(), ddp_worker.data(), ddp_worker.config(32),
            run_dir=single_dir).fit()  # fmt: skip
    assert set(ddp_weights) == set(single.state_dict())  # no "module." prefix from DistributedDataParallel
    for k, v in single.state_dict().items():
        torch.testing.assert_close(ddp_weights[k], v, atol=1e-5, rtol=0)
    assert not torch.allclose(ddp_weights["0.weight"], ddp_worker.model()[0].weight)  # it did train
    # Metrics reduced across the processes equal the single process's (validation sharded, not padded).
    ddp_rows, single_rows = read_jsonl(tmp_path / "metrics.jsonl"), read_jsonl(single_dir / "metrics.jsonl")
    assert [r["step"] for r in ddp_rows] == [3, 6]
    for a, b in zip(ddp_rows, single_rows, strict=True):
        for key in ("train_loss", "val_loss", "val_acc"):
            assert abs(a[key] - b[key]) < 1e-5, key
    assert not any(p.name.startswith("single-") for p in tmp_path.iterdir())  # only rank 0 wrote
