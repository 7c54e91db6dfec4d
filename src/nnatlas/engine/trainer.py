"""The task-agnostic trainer.

A :class:`Trainer` owns the loop (epochs, optimiser, schedule, mixed precision, gradient accumulation and
clipping, EMA, evaluation, checkpoints, data-parallel processes, the run folder); a
:class:`~nnatlas.engine.tasks.Task` owns the problem (loss and metrics). Progress is reported through an
optional :class:`ProgressReporter`, so the library itself never prints.

Reading order: :meth:`Trainer.fit` first, then what it calls (the epoch loop, one epoch, one update, the
guards against divergence, evaluation, checkpoints and resume).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
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
    TRAINING_KEYS,
    CheckpointError,
    load_checkpoint,
    load_model_state,
    non_finite_tensors,
    rng_state,
    save_checkpoint,
    set_rng_state,
    state_is_finite,
)
from nnatlas.engine.config import TrainConfig
from nnatlas.engine.distributed import (
    DistInfo,
    EpochKeys,
    EpochSampler,
    SeededSamples,
    all_reduce_sum,
    init_distributed,
)
from nnatlas.engine.ema import ModelEma
from nnatlas.engine.logger import MetricsLogger
from nnatlas.engine.optim import build_optimizer, build_scheduler
from nnatlas.engine.runs import write_json
from nnatlas.engine.tasks import Task

log = logging.getLogger(__name__)

__all__ = [
    "TIME_FIELDS",
    "NonFiniteLossError",
    "Position",
    "ProgressReporter",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "autocast",
    "best",
    "check_amp",
    "evaluate_model",
    "resolve_device",
    "set_determinism",
]

#: Record fields that measure wall time; everything else in a row is reproducible.
TIME_FIELDS = ("epoch_time", "throughput")


@dataclass
class Position:
    """Where training stands: the next micro-batch to read is ``batch`` of ``epoch`` (1-based epochs);
    ``global_step`` optimiser updates have been applied so far."""

    epoch: int = 1
    batch: int = 0
    global_step: int = 0


class ProgressReporter(Protocol):
    """What the trainer tells a progress display (the command line's rich bar): any object with these
    three methods, called on the main process only."""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        """Epoch ``epoch`` of ``epochs`` begins (or resumes) with ``steps`` micro-batches left to read."""

    def step(self, loss: float, lr: float) -> None:
        """One micro-batch was trained on: its mean ``loss`` and the current learning rate ``lr``."""

    def end_epoch(self, record: dict[str, Any]) -> None:
        """The epoch ended; ``record`` is its row of ``metrics.jsonl``."""


class NonFiniteLossError(FloatingPointError):
    """The loss, the gradient norm, a weight, a buffer or the validation loss became NaN or infinite.

    Training stopped; the checkpoint on disk (if any) is the last one whose every number was finite.
    """


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint was saved and training stopped at an update boundary."""

    def __init__(self, signum: int, checkpoint: Path | None, epoch: int, batch: int) -> None:
        self.signum, self.checkpoint, self.epoch, self.batch = signum, checkpoint, epoch, batch
        where = f"epoch {epoch}, batch {batch}"
        saved = f"checkpoint saved in {checkpoint}" if checkpoint else "no run folder, nothing saved"
        super().__init__(f"stopped by {signal.Signals(signum).name} at {where}; {saved}")


# ---------------------------------------------------------------------------------------------- helpers


def resolve_device(device: str) -> torch.device:
    """The ``torch.device`` of ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or ``"mps"``; ``ValueError`` for a device this machine does not have.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
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
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asked for, but MPS is not available on this machine")
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


def _ignore_stop_signals(worker_id: int) -> None:
    """Data-loader workers leave SIGINT / SIGTERM to the main process, which checkpoints and stops them.

    Without this, a signal sent to the whole process group (Ctrl-C in a terminal, Slurm's ``scancel``)
    kills the workers first and the main process dies with "DataLoader worker ... killed by signal".
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _total_grad_norm(parameters: list[nn.Parameter]) -> float:
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    norms = torch._foreach_norm(grads) if hasattr(torch, "_foreach_norm") else [g.norm() for g in grads]
    return float(torch.linalg.vector_norm(torch.stack([n.float() for n in norms])))


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
    computed = metrics.compute()
    finalize = getattr(
        task, "finalize", None
    )  # a task whose metrics are not all scalars turns them into scalars
    values = finalize(computed) if finalize is not None else {k: float(v) for k, v in computed.items()}
    model.train(was_training)
    return {f"{prefix}{k}": v for k, v in values.items()}


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
        self.request(signum)

    def request(self, signum: int) -> None:
        if self.signum is None:
            log.warning("%s received: saving a checkpoint at the next update", signal.Signals(signum).name)
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


# ---------------------------------------------------------------------------------------------- trainer


class Trainer:
    """Train ``model`` on ``train_set`` for ``config.epochs`` epochs, evaluating on ``val_set`` each epoch.

    With ``run_dir`` set (written by the main process only), writes ``config.json`` (the config plus
    ``extra_config``), one row per epoch in ``metrics.jsonl`` and ``metrics.csv`` (``epoch``, ``step``,
    ``train_loss``, ``val_*``, ``val_ema_*`` with EMA, ``lr``, ``epoch_time``, ``throughput``), a
    checkpoint ``checkpoint.pt`` at every epoch end (and every ``checkpoint_every`` updates), and the
    final weights as ``model.safetensors`` (``model_ema.safetensors`` with EMA).
    ``fit(resume=run_dir)`` continues from the checkpoint exactly where it stopped.

    Divergence guard: the loss of every micro-batch, the gradient norm and every weight and buffer after
    every update, and the validation loss of every epoch must be finite; otherwise training stops with
    :class:`NonFiniteLossError` and no checkpoint holding a non-finite number is ever written, so the one on
    disk is the last good one.

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
        self.config, self.task = config, task
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.extra_config = dict(extra_config or {})
        self._join_processes()
        self.progress = progress if self.is_main else None
        self._place_model(model)
        self._build_loaders(train_set, val_set, collate_fn)
        self._build_optimisation()
        self.logger = (
            MetricsLogger(self.run_dir, tensorboard=config.tensorboard)
            if self.run_dir is not None and self.is_main
            else None
        )
        self.history: list[dict[str, Any]] = []
        self.position = Position()
        self._epoch_sums = {"loss": 0.0, "count": 0.0, "lr": self.optimizer.param_groups[0]["lr"]}
        self._signals = _StopSignals()
        self._last_good: Position | None = None  # where the checkpoint on disk stands

    # ---- setup, in four named steps -----------------------------------------------------------------

    def _join_processes(self) -> None:
        """Join torchrun's process group (a no-op for one process) and pick this process's device."""
        self.dist: DistInfo = init_distributed(self.config.device)
        self.device = resolve_device(self.config.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        check_amp(self.config.amp, self.device)
        self.is_main = self.dist.is_main
        if self.config.deterministic:
            set_determinism(self.config.seed, deterministic=True)

    def _place_model(self, model: nn.Module) -> None:
        """Move the model to the device (SyncBatchNorm, channels-last), wrap it (DDP, compile), add EMA."""
        cfg = self.config
        if cfg.sync_bn:
            if self.device.type != "cuda":
                raise ValueError("sync_bn needs CUDA devices (torch's SyncBatchNorm runs on GPUs only)")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.to(self.device)
        self.ema = ModelEma(self.model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)

    def _build_loaders(self, train_set: Dataset, val_set: Dataset | None, collate_fn: Any) -> None:
        """This process's shard of every epoch, resumable mid-epoch; workers ignore the stop signals."""
        cfg = self.config
        self.train_sampler = EpochSampler(
            len(train_set),
            shuffle=True,
            seed=cfg.seed,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
        )
        # The loader's own generator (reseeded each epoch) gives the worker seeds, so creating an
        # iterator never draws from the global generator whose state a checkpoint restores.
        self._loader_generator = torch.Generator()
        common = {
            "num_workers": cfg.num_workers,
            "collate_fn": collate_fn,
            "pin_memory": self.device.type == "cuda",
            "persistent_workers": cfg.num_workers > 0,
            "worker_init_fn": _ignore_stop_signals if cfg.num_workers > 0 else None,
        }
        # A batch's augmentation is drawn from (seed, epoch, its indices): the same with or without workers
        # and after a resume in the middle of an epoch.
        self.train_loader = DataLoader(
            SeededSamples(train_set, cfg.seed),
            batch_size=cfg.batch_size,
            sampler=EpochKeys(self.train_sampler),
            generator=self._loader_generator,
            drop_last=self.train_sampler.shard_size > cfg.batch_size,
            **common,
        )
        self.val_loader = None
        if val_set is not None:
            val_sampler = EpochSampler(
                len(val_set), shuffle=False, num_replicas=self.dist.world_size, rank=self.dist.rank, pad=False
            )
            self.val_loader = DataLoader(
                val_set, batch_size=cfg.eval_batch_size, sampler=val_sampler, **common
            )
        self.steps_per_epoch = len(self.train_loader)  # micro-batches per epoch
        self.updates_per_epoch = math.ceil(self.steps_per_epoch / cfg.grad_accum_steps)

    def _build_optimisation(self) -> None:
        """Optimiser (no decay on norms and biases), per-update schedule, gradient scaler."""
        cfg = self.config
        self.optimizer = build_optimizer(
            self.model, cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum
        )
        self.scheduler = build_scheduler(
            self.optimizer,
            cfg.scheduler,
            total_steps=cfg.epochs * self.updates_per_epoch,
            warmup_steps=round(cfg.warmup_epochs * self.updates_per_epoch),
            milestones=tuple(round(m * self.updates_per_epoch) for m in cfg.milestones) or None,
            gamma=cfg.gamma,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16")

    # ---- public control -----------------------------------------------------------------------------

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask the loop to save a checkpoint and stop at the next update (as SIGTERM does)."""
        self._signals.request(signum)

    # ---- fit: the whole run -------------------------------------------------------------------------

    def fit(
        self, *, resume: str | Path | bool | dict[str, Any] | None = None, source: str | Path | None = None
    ) -> list[dict[str, Any]]:
        """Train to ``config.epochs``; returns the per-epoch records.

        ``resume``: a run folder (or ``True`` for ``run_dir``) whose checkpoint to continue from, or a
        checkpoint already read with :func:`~nnatlas.engine.load_checkpoint` (``source``: its
        file, named in errors).
        """
        set_determinism(self.config.seed, deterministic=self.config.deterministic)
        if isinstance(resume, dict):
            self._resume_from(resume, source=source or "the checkpoint")
        elif resume:
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
        while self.position.epoch <= cfg.epochs:
            epoch, first_batch = self.position.epoch, self.position.batch
            t0 = time.perf_counter()
            train_loss = self.train_epoch(epoch)
            train_time = time.perf_counter() - t0
            record: dict[str, Any] = {
                "epoch": epoch,
                "step": self.position.global_step,
                "train_loss": train_loss,
                **self.evaluate(),
                "lr": self._epoch_sums["lr"],
            }
            record["epoch_time"] = time.perf_counter() - t0
            samples = (self.steps_per_epoch - first_batch) * cfg.batch_size * self.dist.world_size
            record["throughput"] = samples / max(train_time, 1e-9)
            self.history.append(record)
            self.position = Position(epoch + 1, 0, self.position.global_step)
            if self.logger is not None:
                self.logger.log_epoch(record, self.history)
            self._check_validation(record, epoch)
            self.save_checkpoint()
            if self.progress:
                self.progress.end_epoch(record)
            log.info("epoch %d: %s", epoch, record)
            (stop,) = self._agree(self._signals.signum is not None)
            if stop and self.position.epoch <= cfg.epochs:
                raise TrainingInterrupted(
                    self._signals.signum or signal.SIGTERM, self.checkpoint_path, self.position.epoch, 0
                )

    # ---- one epoch, one update ----------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> float:
        """Train from the current position to the end of ``epoch``; returns the epoch's mean train loss."""
        cfg = self.config
        k = cfg.grad_accum_steps
        self.train_model.train()
        if self.position.batch == 0:
            self._epoch_sums = {"loss": 0.0, "count": 0.0, "lr": self.optimizer.param_groups[0]["lr"]}
        if self.progress:
            self.progress.start_epoch(epoch, cfg.epochs, self.steps_per_epoch - self.position.batch)
        n_batches = self.steps_per_epoch
        for i, batch in self._micro_batches(epoch):
            group_start = (i // k) * k
            group_size = min(k, n_batches - group_start)
            last_in_group = i - group_start == group_size - 1
            value, n, stop = self._micro_step(batch, group_size, last_in_group, epoch)
            self._epoch_sums["loss"] += value * n
            self._epoch_sums["count"] += n
            self.position.batch = i + 1
            if self.progress:
                self.progress.step(value, self.optimizer.param_groups[0]["lr"])
            if not last_in_group:
                continue
            self._update(epoch)
            if self.logger is not None and cfg.tensorboard:
                lr = self.optimizer.param_groups[0]["lr"]
                self.logger.log_step(self.position.global_step, {"loss": value, "lr": lr})
            every = cfg.checkpoint_every and self.position.global_step % cfg.checkpoint_every == 0
            if (stop or every) and self.position.batch < n_batches:  # the epoch end saves after evaluation
                self.save_checkpoint()
                if stop:
                    raise TrainingInterrupted(
                        self._signals.signum or signal.SIGTERM,
                        self.checkpoint_path,
                        epoch,
                        self.position.batch,
                    )
        loss_sum, count = all_reduce_sum([self._epoch_sums["loss"], self._epoch_sums["count"]], self.device)
        return loss_sum / max(1.0, count)

    def _micro_batches(self, epoch: int) -> Iterator[tuple[int, Any]]:
        self.train_sampler.set_position(epoch, self.position.batch * self.config.batch_size)
        self._loader_generator.manual_seed(self.config.seed * 100_003 + epoch)
        yield from enumerate(self.train_loader, start=self.position.batch)

    def _micro_step(
        self, batch: Any, group_size: int, last_in_group: bool, epoch: int
    ) -> tuple[float, int, bool]:
        """Forward and backward of one micro-batch; returns its loss, its size and the stop flag."""
        cfg = self.config
        batch = _to_device(batch, self.device, cfg.channels_last)
        no_sync = self.dist.enabled and not last_in_group and hasattr(self.train_model, "no_sync")
        with self.train_model.no_sync() if no_sync else contextlib.nullcontext():
            with autocast(cfg.amp, self.device):
                loss, n = self.task.training_step(self.train_model, batch)
            value = loss.item()
            # One all-reduce per micro-batch carries both flags, so every process stops together.
            bad, stop = self._agree(not math.isfinite(value), self._signals.signum is not None)
            if bad:
                raise self._diverged(f"the training loss became {value}", epoch)
            self.scaler.scale(loss / group_size).backward()
        return value, n, stop

    def _update(self, epoch: int) -> None:
        """Clip, step, schedule, EMA; then check that every weight and buffer is still finite."""
        cfg = self.config
        params = [p for p in self.model.parameters() if p.grad is not None]
        self.scaler.unscale_(self.optimizer)
        if cfg.clip_grad_norm > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm))
        else:
            norm = _total_grad_norm(params)
        # With fp16 the scaler skips steps with overflowing gradients by design; otherwise stop.
        if not math.isfinite(norm) and cfg.amp != "fp16":
            raise self._diverged(f"the gradient norm became {norm}", epoch)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.position.global_step += 1
        bad = non_finite_tensors([*self.model.named_parameters(), *self.model.named_buffers()])
        if bad:
            more = f" ({len(bad) - 3} more)" if len(bad) > 3 else ""
            raise self._diverged(f"{', '.join(bad[:3])}{more} became non-finite after the update", epoch)

    # ---- guards -------------------------------------------------------------------------------------

    def _check_validation(self, record: dict[str, Any], epoch: int) -> None:
        bad = [
            k
            for k, v in record.items()
            if k.endswith("loss") and isinstance(v, float) and not math.isfinite(v)
        ]
        if bad:
            raise self._diverged(f"{bad[0]} became {record[bad[0]]}", epoch)

    def _diverged(self, what: str, epoch: int) -> NonFiniteLossError:
        ckpt = self.checkpoint_path
        if ckpt is not None and ckpt.exists():
            where = (
                f" (epoch {self._last_good.epoch}, batch {self._last_good.batch})" if self._last_good else ""
            )
            keep = f"the last good checkpoint is {ckpt}{where}"
        else:
            keep = "no checkpoint was written"
        return NonFiniteLossError(
            f"{what} at epoch {epoch}, batch {self.position.batch} (update {self.position.global_step}); "
            f"training stopped, {keep}. Lower the learning rate, clip gradients (--clip-grad), or use bf16 "
            "instead of fp16"
        )

    def _agree(self, *flags: bool) -> list[bool]:
        """The element-wise OR of ``flags`` over every process (so all take the same branch)."""
        if not self.dist.enabled:
            return list(flags)
        import torch.distributed as dist

        t = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v > 0) for v in t.tolist()]

    # ---- evaluation ---------------------------------------------------------------------------------

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

    # ---- checkpoints and resume ---------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path | None:
        """``run_dir/checkpoint.pt``, or ``None`` without a run folder."""
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
            "position": asdict(self.position),
            "epoch_sums": dict(self._epoch_sums),
            "world_size": self.dist.world_size,
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], *, source: str | Path = "the checkpoint") -> None:
        """Restore a :meth:`state_dict`: model, optimiser, scheduler, scaler, EMA, random states and
        position. A state that does not fit this run raises :class:`~nnatlas.engine.CheckpointError` naming
        ``source`` (a file that is not a training checkpoint, a different model, optimiser or EMA setting,
        or a mid-epoch stop with another number of processes)."""
        missing = [k for k in TRAINING_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"{str(source)!r} is not a training checkpoint: no {', '.join(missing)}")
        if state.get("world_size", 1) != self.dist.world_size and state["position"]["batch"] != 0:
            raise CheckpointError(
                f"the checkpoint stopped mid-epoch with {state['world_size']} process(es); resume it with "
                f"the same number of processes (got {self.dist.world_size})"
            )
        load_model_state(self.model, state["model"], source)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(
                f"{str(source)!r}: the optimiser state does not fit this run ({e})"
            ) from None
        if (state["ema"] is None) != (self.ema is None):
            raise CheckpointError(f"{str(source)!r} and the config disagree on EMA (ema_decay)")
        if self.ema is not None:
            load_model_state(self.ema, state["ema"], source)
        set_rng_state(state["rng"])
        pos = state["position"]
        self.position = Position(pos["epoch"], pos["batch"], pos["global_step"])
        self._epoch_sums = dict(state["epoch_sums"])
        self._last_good = Position(**asdict(self.position))

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoint.pt`` atomically (main process only); returns its path.

        A state holding a NaN or an infinity is never written: :class:`NonFiniteLossError` instead, so the
        file on disk stays the last good checkpoint.
        """
        path = self.checkpoint_path
        if path is None or not self.is_main:
            return path
        state = self.state_dict()
        if not state_is_finite({"model": state["model"], "ema": state["ema"]}):
            raise self._diverged("a weight or buffer is non-finite", self.position.epoch)
        save_checkpoint(path, state)
        self._last_good = Position(**asdict(self.position))
        return path

    def resume(self, run_dir: str | Path | None = None) -> None:
        """Load ``run_dir/checkpoint.pt`` (default: this trainer's run folder)."""
        folder = Path(run_dir) if run_dir is not None else self.run_dir
        if folder is None:
            raise ValueError("resume needs a run folder: pass run_dir to Trainer or to resume()")
        path = folder / CHECKPOINT_NAME
        self._resume_from(load_checkpoint(path, map_location=self.device), source=path)

    def _resume_from(self, state: dict[str, Any], *, source: str | Path = "the checkpoint") -> None:
        self.load_state_dict(state, source=source)
        if self.logger is not None:
            self.history = self.logger.restore(self.position.epoch)
        pos = self.position
        log.info("resumed at epoch %d, batch %d (update %d)", pos.epoch, pos.batch, pos.global_step)

    def _write_config(self) -> None:
        if self.run_dir is None or not self.is_main:
            return
        cfg = {
            "train": self.config.to_dict(),
            "task": self.task.name,
            "world_size": self.dist.world_size,
            **self.extra_config,
        }
        write_json(self.run_dir / "config.json", cfg)

    # Kept for callers that read the position as three attributes.
    @property
    def epoch(self) -> int:
        """``position.epoch``: the current epoch, 1-based."""
        return self.position.epoch

    @property
    def batch(self) -> int:
        """``position.batch``: the next micro-batch to read in the current epoch."""
        return self.position.batch

    @property
    def global_step(self) -> int:
        """``position.global_step``: optimiser updates applied so far."""
        return self.position.global_step


def best(history: Sequence[dict[str, Any]], key: str) -> float:
    """The largest finite value of ``key`` over ``history`` (NaN when there is none)."""
    values = [r[key] for r in history if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return max(values) if values else float("nan")
