"""The task-agnostic trainer.

A :class:`Trainer` owns the loop (epochs, optimiser, schedule, mixed precision, gradient accumulation and
clipping, EMA, evaluation, checkpoints, data-parallel processes, the run folder); a
:class:`~nnatlas.engine.tasks.Task` owns the problem (loss and metrics). Progress is reported through an
optional :class:`ProgressReporter`, so the library itself never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import save_model
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nnatlas._choices import AMP_MODES
from nnatlas.engine.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from nnatlas.engine.distributed import (
    DistInfo,
    EpochSampler,
    all_reduce_sum,
    init_distributed,
)
from nnatlas.engine.ema import ModelEma
from nnatlas.engine.logger import MetricsLogger
from nnatlas.engine.optim import build_optimizer, build_scheduler
from nnatlas.engine.runs import write_json
from nnatlas.engine.tasks import Task

log = logging.getLogger(__name__)

#: Record fields that measure wall time; everything else in a row is reproducible.
TIME_FIELDS = ("epoch_time", "throughput")


@dataclass
class TrainConfig:
    """Hyper-parameters of one run; written to ``config.json``.

    ``batch_size`` is per process and per micro-batch: the effective batch of one update is
    ``batch_size * grad_accum_steps * world_size``. ``milestones`` (epochs) are for the ``step``
    schedule; ``checkpoint_every`` (updates, 0 = only at epoch ends) for mid-epoch checkpoints.
    """

    epochs: int = 15
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 3e-3
    optimizer: str = "adamw"
    weight_decay: float = 5e-4
    momentum: float = 0.9
    scheduler: str = "cosine"
    warmup_epochs: float = 1.0
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    grad_accum_steps: int = 1
    clip_grad_norm: float = 0.0
    ema_decay: float = 0.0
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    sync_bn: bool = False
    checkpoint_every: int = 0
    tensorboard: bool = False

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "eval_batch_size", "grad_accum_steps"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive int; got {value!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0; got {self.num_workers}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0; got {self.warmup_epochs}")
        if self.clip_grad_norm < 0:
            raise ValueError(f"clip_grad_norm must be >= 0 (0 = off); got {self.clip_grad_norm}")
        if not (self.ema_decay == 0.0 or 0.0 < self.ema_decay < 1.0):
            raise ValueError(f"ema_decay must be 0 (off) or in (0, 1); got {self.ema_decay}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}; got {self.amp!r}")
        if self.checkpoint_every < 0:
            raise ValueError(
                f"checkpoint_every must be >= 0 (0 = epoch ends only); got {self.checkpoint_every}"
            )
        self.milestones = tuple(float(m) for m in self.milestones)
        if any(m <= 0 for m in self.milestones):
            raise ValueError(f"milestones must be positive epochs; got {self.milestones}")


class ProgressReporter(Protocol):
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...

    def step(self, loss: float, lr: float) -> None: ...

    def end_epoch(self, record: dict[str, Any]) -> None: ...


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN or infinite; training stopped before applying it."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint was saved and training stopped at an update boundary."""

    def __init__(self, signum: int, checkpoint: Path | None, epoch: int, batch: int) -> None:
        self.signum, self.checkpoint, self.epoch, self.batch = signum, checkpoint, epoch, batch
        where = f"epoch {epoch}, batch {batch}"
        saved = f"checkpoint saved in {checkpoint}" if checkpoint else "no run folder, nothing saved"
        super().__init__(f"stopped by {signal.Signals(signum).name} at {where}; {saved}")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)"
        )
    return dev


def check_amp(amp: str, device: torch.device) -> None:
    """fp16 needs a gradient scaler, which nnatlas runs on CUDA only; bf16 works on CPU and CUDA."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}; got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(
            f"amp 'fp16' needs a CUDA device (float16 training uses a gradient scaler); the device is "
            f"{device.type}: use amp 'bf16' on the CPU"
        )


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``amp`` ('none' gives a no-op context)."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_determinism(seed: int, *, deterministic: bool) -> None:
    """Seed torch, NumPy and Python; with ``deterministic`` also ask for deterministic kernels."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def _to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(batch, torch.Tensor):
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            return batch.to(device, non_blocking=True, memory_format=torch.channels_last)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    task: Task,
    loader: Any,
    *,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
    prefix: str = "val_",
) -> dict[str, float]:
    """``task``'s metrics of ``model`` over ``loader``, as ``{prefix + name: value}``.

    Under a process group the torchmetrics states are reduced across processes in ``compute()``.
    """
    was_training = model.training
    model.eval()
    metrics = task.new_metrics().to(device)
    for batch in loader:
        with autocast(amp, device):
            task.validation_step(model, _to_device(batch, device, channels_last), metrics)
    result = {f"{prefix}{k}": float(v) for k, v in metrics.compute().items()}
    model.train(was_training)
    return result


class _StopSignals:
    """SIGINT / SIGTERM set a flag that the loop reads at the next update; a second SIGINT aborts."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s received: saving a checkpoint at the next update", signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


class Trainer:
    """Train ``model`` on ``train_set`` for ``config.epochs`` epochs, evaluating on ``val_set`` each epoch.

    With ``run_dir`` set (written by the main process only), writes ``config.json`` (the config plus
    ``extra_config``), one row per epoch in ``metrics.jsonl`` and ``metrics.csv`` (``epoch``, ``step``,
    ``train_loss``, ``val_*``, ``val_ema_*`` with EMA, ``lr``, ``epoch_time``, ``throughput``), a
    checkpoint ``checkpoint.pt`` at every epoch end (and every ``checkpoint_every`` updates), and the
    final weights as ``model.safetensors`` (``model_ema.safetensors`` with EMA).
    ``fit(resume=run_dir)`` continues from the checkpoint exactly where it stopped.

    Under ``torchrun`` each process builds its own ``Trainer``; the process group is joined here, the
    model is wrapped in ``DistributedDataParallel`` and every process reads its shard of the data.

    ``model`` stays the plain module (its ``state_dict`` has no ``module.`` prefix); the wrapped module
    used for training steps is ``train_model``.
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
        self.dist: DistInfo = init_distributed(config.device)
        self.device = resolve_device(config.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        check_amp(config.amp, self.device)
        if config.deterministic:
            set_determinism(config.seed, deterministic=True)
        if config.sync_bn:
            if self.device.type != "cuda":
                raise ValueError("sync_bn needs CUDA devices (torch's SyncBatchNorm runs on GPUs only)")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.to(self.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.is_main = self.dist.is_main
        self.progress = progress if self.is_main else None
        self.extra_config = dict(extra_config or {})
        self.ema = ModelEma(self.model, decay=config.ema_decay) if config.ema_decay > 0 else None

        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        if config.compile:
            self.train_model = torch.compile(self.train_model)

        self.train_sampler = EpochSampler(
            len(train_set),
            shuffle=True,
            seed=config.seed,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
        )
        # The loader's own generator (reseeded each epoch) gives the worker seeds, so creating an
        # iterator never draws from the global generator whose state a checkpoint restores.
        self._loader_generator = torch.Generator()
        pin = self.device.type == "cuda"
        persistent = config.num_workers > 0
        self.train_loader = DataLoader(
            train_set,
            batch_size=config.batch_size,
            sampler=self.train_sampler,
            generator=self._loader_generator,
            num_workers=config.num_workers,
            collate_fn=collate_fn,
            drop_last=self.train_sampler.shard_size > config.batch_size,
            pin_memory=pin,
            persistent_workers=persistent,
        )
        self.val_loader = None
        if val_set is not None:
            val_sampler = EpochSampler(
                len(val_set), shuffle=False, num_replicas=self.dist.world_size, rank=self.dist.rank, pad=False
            )
            self.val_loader = DataLoader(
                val_set,
                batch_size=config.eval_batch_size,
                sampler=val_sampler,
                num_workers=config.num_workers,
                collate_fn=collate_fn,
                pin_memory=pin,
                persistent_workers=persistent,
            )
        self.steps_per_epoch = len(self.train_loader)  # micro-batches per epoch
        self.updates_per_epoch = math.ceil(self.steps_per_epoch / config.grad_accum_steps)
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
            total_steps=config.epochs * self.updates_per_epoch,
            warmup_steps=round(config.warmup_epochs * self.updates_per_epoch),
            milestones=tuple(round(m * self.updates_per_epoch) for m in config.milestones) or None,
            gamma=config.gamma,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.amp == "fp16")
        self.logger = (
            MetricsLogger(self.run_dir, tensorboard=config.tensorboard)
            if self.run_dir is not None and self.is_main
            else None
        )
        self.history: list[dict[str, Any]] = []
        # Position in the data: the next micro-batch to read is batch `batch` of epoch `epoch`.
        self.epoch, self.batch, self.global_step = 1, 0, 0
        self._epoch_sums = {"loss": 0.0, "count": 0.0, "lr": self.optimizer.param_groups[0]["lr"]}
        self._signals = _StopSignals()

    # ---------------------------------------------------------------- checkpoints

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / CHECKPOINT_NAME

    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs; tensors and plain containers only."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "rng": rng_state(),
            "position": {"epoch": self.epoch, "batch": self.batch, "global_step": self.global_step},
            "epoch_sums": dict(self._epoch_sums),
            "world_size": self.dist.world_size,
            "config": dataclasses.asdict(self.config),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("world_size", 1) != self.dist.world_size and state["position"]["batch"] != 0:
            raise CheckpointError(
                f"the checkpoint stopped mid-epoch with {state['world_size']} process(es); resume it with "
                f"the same number of processes (got {self.dist.world_size})"
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointError(f"the checkpoint's weights do not fit this model: {e}") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if (state["ema"] is None) != (self.ema is None):
            raise CheckpointError("the checkpoint and the config disagree on EMA (ema_decay)")
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        pos = state["position"]
        self.epoch, self.batch, self.global_step = pos["epoch"], pos["batch"], pos["global_step"]
        self._epoch_sums = dict(state["epoch_sums"])

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoint.pt`` atomically (main process only); returns its path."""
        path = self.checkpoint_path
        if path is None or not self.is_main:
            return path
        save_checkpoint(path, self.state_dict())
        return path

    def resume(self, run_dir: str | Path | None = None) -> None:
        """Load ``run_dir/checkpoint.pt`` (default: this trainer's run folder)."""
        folder = Path(run_dir) if run_dir is not None else self.run_dir
        if folder is None:
            raise ValueError("resume needs a run folder: pass run_dir to Trainer or to resume()")
        self.load_state_dict(load_checkpoint(folder / CHECKPOINT_NAME, map_location=self.device))
        if self.logger is not None:
            self.history = self.logger.restore(self.epoch)
        log.info("resumed at epoch %d, batch %d (update %d)", self.epoch, self.batch, self.global_step)

    # ---------------------------------------------------------------- the loop

    def _write_config(self) -> None:
        if self.run_dir is None or not self.is_main:
            return
        cfg = {
            "train": dataclasses.asdict(self.config),
            "task": self.task.name,
            "world_size": self.dist.world_size,
            **self.extra_config,
        }
        write_json(self.run_dir / "config.json", cfg)

    def _agree(self, *flags: bool) -> list[bool]:
        """The element-wise OR of ``flags`` over every process (so all take the same branch)."""
        if not self.dist.enabled:
            return list(flags)
        import torch.distributed as dist

        t = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v > 0) for v in t.tolist()]

    def _non_finite(self, what: str, value: float, epoch: int) -> NonFiniteLossError:
        ckpt = self.checkpoint_path
        keep = (
            f"the last good checkpoint is {ckpt}"
            if ckpt is not None and ckpt.exists()
            else "no checkpoint was written yet"
        )
        return NonFiniteLossError(
            f"{what} became {value} at epoch {epoch}, batch {self.batch} (update {self.global_step + 1}); "
            f"stopped before applying it, {keep}. Lower the learning rate, clip gradients, or use bf16 "
            "instead of fp16"
        )

    def _micro_batches(self, epoch: int) -> Iterator[tuple[int, Any]]:
        self.train_sampler.set_position(epoch, self.batch * self.config.batch_size)
        self._loader_generator.manual_seed(self.config.seed * 100_003 + epoch)
        yield from enumerate(self.train_loader, start=self.batch)

    def train_epoch(self, epoch: int) -> float:
        """Train from the current position to the end of ``epoch``; returns the epoch's mean train loss."""
        cfg = self.config
        k = cfg.grad_accum_steps
        self.train_model.train()
        if self.batch == 0:
            self._epoch_sums = {"loss": 0.0, "count": 0.0, "lr": self.optimizer.param_groups[0]["lr"]}
        if self.progress:
            self.progress.start_epoch(epoch, cfg.epochs, self.steps_per_epoch - self.batch)
        n_batches = self.steps_per_epoch
        for i, batch in self._micro_batches(epoch):
            group_start = (i // k) * k
            group_size = min(k, n_batches - group_start)
            last_in_group = i - group_start == group_size - 1
            batch = _to_device(batch, self.device, cfg.channels_last)
            sync = (
                self.train_model.no_sync()
                if self.dist.enabled and not last_in_group and hasattr(self.train_model, "no_sync")
                else contextlib.nullcontext()
            )
            with sync:
                with autocast(cfg.amp, self.device):
                    loss, n = self.task.training_step(self.train_model, batch)
                value = loss.item()
                # One all-reduce per micro-batch carries both flags, so every process stops together.
                bad, stop = self._agree(not math.isfinite(value), self._signals.signum is not None)
                if bad:
                    raise self._non_finite("loss", value, epoch)
                self.scaler.scale(loss / group_size).backward()
            self._epoch_sums["loss"] += value * n
            self._epoch_sums["count"] += n
            self.batch = i + 1
            if self.progress:
                self.progress.step(value, self.optimizer.param_groups[0]["lr"])
            if not last_in_group:
                continue
            self._update(epoch)
            if self.logger is not None and cfg.tensorboard:
                self.logger.log_step(
                    self.global_step, {"loss": value, "lr": self.optimizer.param_groups[0]["lr"]}
                )
            if stop or (cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0):
                if self.batch < n_batches:  # the epoch-end checkpoint comes after evaluation
                    self.save_checkpoint()
                    if stop:
                        raise TrainingInterrupted(
                            self._signals.signum or signal.SIGTERM, self.checkpoint_path, epoch, self.batch
                        )
        loss_sum, count = all_reduce_sum([self._epoch_sums["loss"], self._epoch_sums["count"]], self.device)
        return loss_sum / max(1.0, count)

    def _update(self, epoch: int) -> None:
        cfg = self.config
        if cfg.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm))
            # With fp16 the scaler skips steps with overflowing gradients by design; otherwise stop.
            if not math.isfinite(norm) and cfg.amp != "fp16":
                raise self._non_finite("gradient norm", norm, epoch)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.global_step += 1

    def evaluate(self) -> dict[str, float]:
        """Validation metrics of the model (``val_*``) and of its EMA (``val_ema_*``)."""
        if self.val_loader is None:
            return {}
        kw = {"device": self.device, "amp": self.config.amp, "channels_last": self.config.channels_last}
        result = evaluate_model(self.model, self.task, self.val_loader, **kw)
        if self.ema is not None:
            result.update(
                evaluate_model(self.ema.module, self.task, self.val_loader, prefix="val_ema_", **kw)
            )
        return result

    def fit(self, *, resume: str | Path | bool | None = None) -> list[dict[str, Any]]:
        """Train to ``config.epochs``; ``resume`` (a run folder, or ``True`` for ``run_dir``) continues
        from its checkpoint. Returns the per-epoch records."""
        set_determinism(self.config.seed, deterministic=self.config.deterministic)
        if resume:
            self.resume(None if resume is True else resume)
        else:
            self._write_config()
        try:
            with self._signals:
                self._fit_epochs()
        finally:
            if self.logger is not None:
                self.logger.close()
        if self.run_dir is not None and self.is_main:
            save_model(self.model, str(self.run_dir / "model.safetensors"))
            if self.ema is not None:
                save_model(self.ema.module, str(self.run_dir / "model_ema.safetensors"))
        return self.history

    def _fit_epochs(self) -> None:
        cfg = self.config
        while self.epoch <= cfg.epochs:
            epoch = self.epoch
            t0 = time.perf_counter()
            first_batch = self.batch
            train_loss = self.train_epoch(epoch)
            train_time = time.perf_counter() - t0
            record: dict[str, Any] = {
                "epoch": epoch,
                "step": self.global_step,
                "train_loss": train_loss,
                **self.evaluate(),
                "lr": self._epoch_sums["lr"],
            }
            record["epoch_time"] = time.perf_counter() - t0
            samples = (self.steps_per_epoch - first_batch) * cfg.batch_size * self.dist.world_size
            record["throughput"] = samples / max(train_time, 1e-9)
            self.history.append(record)
            self.epoch, self.batch = epoch + 1, 0
            if self.logger is not None:
                self.logger.log_epoch(record, self.history)
            self.save_checkpoint()
            if self.progress:
                self.progress.end_epoch(record)
            log.info("epoch %d: %s", epoch, record)
            (stop,) = self._agree(self._signals.signum is not None)
            if stop and self.epoch <= cfg.epochs:
                raise TrainingInterrupted(
                    self._signals.signum or signal.SIGTERM, self.checkpoint_path, self.epoch, 0
                )


def best(history: Sequence[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in history if key in r and not math.isnan(r[key])]
    return max(values) if values else float("nan")
