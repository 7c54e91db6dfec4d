"""Run by ``torchrun`` from ``test_distributed.py``: train a small MLP on every process with the Trainer.

Usage: ``torchrun --standalone --nproc-per-node N tests/engine/ddp_worker.py RUN_DIR BATCH_PER_PROCESS``.
"""

import sys

import torch
from torch import nn
from torch.utils.data import TensorDataset

from nnatlas.engine import ClassificationTask, TrainConfig, Trainer
from nnatlas.engine.distributed import destroy_distributed

STEPS_DATA = 96  # samples: 3 updates of 32 per epoch


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (STEPS_DATA,), generator=g)
    x = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])[y] + 0.7 * torch.randn(STEPS_DATA, 2, generator=g)
    return TensorDataset(x, y)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 3))


def config(batch_size: int) -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=batch_size, lr=0.02, warmup_epochs=0.5, device="cpu", seed=3)


if __name__ == "__main__":
    torch.set_num_threads(1)
    run_dir, batch = sys.argv[1], int(sys.argv[2])
    trainer = Trainer(model(), ClassificationTask(3), data(), data(), config(batch), run_dir=run_dir)
    trainer.fit()
    del trainer
    destroy_distributed()
