"""The task-agnostic trainer.

A :class:`Trainer` owns the loop (epochs, optimiser, schedule, evaluation, run folder); a
:class:`~nnatlas.engine.tasks.Task` owns the problem (loss and metrics). Progress is reported through an
optional :class:`ProgressReporter`, so the library itself never prints.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import save_model
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nnatlas.engine.optim import build_optimizer, build_scheduler
from nnatlas.engine.runs import append_jsonl, write_json
from nnatlas.engine.tasks import Task

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyper-parameters of one run; written to ``config.json``."""

    epochs: int = 15
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 3e-3
    optimizer: str = "adamw"
    weight_decay: float = 5e-4
    momentum: float = 0.9
    scheduler: str = "cosine"
    warmup_epochs: float = 1.0
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive int; got {value!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0; got {self.num_workers}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0; got {self.warmup_epochs}")


class ProgressReporter(Protocol):
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...

    def step(self, loss: float, lr: float) -> None: ...

    def end_epoch(self, record: dict[str, Any]) -> None: ...


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available on this machine")
    return dev


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


class Trainer:
    """Train ``model`` on ``train_set`` for ``config.epochs`` epochs, evaluating on ``val_set`` each epoch.

    With ``run_dir`` set, writes ``config.json`` (the config plus ``extra_config``), one JSON line per
    epoch in ``metrics.jsonl`` (``epoch``, ``train_loss``, ``val_*``, ``lr``, ``epoch_time``), and the
    final weights as ``model.safetensors``.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        train_set: Dataset,
        val_set: Dataset | None,
        config: TrainConfig,
        *,
        run_dir: str | Path | None = None,
        progress: ProgressReporter | None = None,
        extra_config: dict[str, Any] | None = None,
        collate_fn: Any = None,
    ) -> None:
        self.config = config
        self.task = task
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.extra_config = dict(extra_config or {})
        g = torch.Generator().manual_seed(config.seed)
        self.train_loader = DataLoader(
            train_set,
            batch_size=config.batch_size,
            shuffle=True,
            generator=g,
            num_workers=config.num_workers,
            collate_fn=collate_fn,
            drop_last=len(train_set) > config.batch_size,
        )
        self.val_loader = (
            None
            if val_set is None
            else DataLoader(
                val_set,
                batch_size=config.eval_batch_size,
                num_workers=config.num_workers,
                collate_fn=collate_fn,
            )
        )
        self.steps_per_epoch = len(self.train_loader)
        self.optimizer = build_optimizer(
            self.model,
            config.optimizer,
            lr=config.lr,
            weight_decay=config.weight_decay,
            momentum=config.momentum,
        )
        self.scheduler = build_scheduler(
            self.optimizer,
            config.scheduler,
            total_steps=config.epochs * self.steps_per_epoch,
            warmup_steps=round(config.warmup_epochs * self.steps_per_epoch),
        )
        self.history: list[dict[str, Any]] = []

    def _write_config(self) -> None:
        if self.run_dir is None:
            return
        cfg = {"train": dataclasses.asdict(self.config), "task": self.task.name, **self.extra_config}
        write_json(self.run_dir / "config.json", cfg)

    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        total, count = 0.0, 0
        if self.progress:
            self.progress.start_epoch(epoch, self.config.epochs, self.steps_per_epoch)
        for batch in self.train_loader:
            batch = _to_device(batch, self.device)
            loss, n = self.task.training_step(self.model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at epoch {epoch}; lower the learning rate"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            value = loss.item()
            total += value * n
            count += n
            if self.progress:
                self.progress.step(value, self.optimizer.param_groups[0]["lr"])
        return total / max(1, count)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.val_loader is None:
            return {}
        self.model.eval()
        metrics = self.task.new_metrics().to(self.device)
        for batch in self.val_loader:
            self.task.validation_step(self.model, _to_device(batch, self.device), metrics)
        return {f"val_{k}": float(v) for k, v in metrics.compute().items()}

    def fit(self) -> list[dict[str, Any]]:
        torch.manual_seed(self.config.seed)
        self._write_config()
        for epoch in range(1, self.config.epochs + 1):
            t0 = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss = self.train_epoch(epoch)
            record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, **self.evaluate(), "lr": lr}
            record["epoch_time"] = time.perf_counter() - t0
            self.history.append(record)
            if self.run_dir is not None:
                append_jsonl(self.run_dir / "metrics.jsonl", record)
            if self.progress:
                self.progress.end_epoch(record)
            log.info("epoch %d: %s", epoch, record)
        if self.run_dir is not None:
            save_model(self.model, str(self.run_dir / "model.safetensors"))
        return self.history


def best(history: Sequence[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in history if key in r and not math.isnan(r[key])]
    return max(values) if values else float("nan")
