"""The hyper-parameters of one run, checked as a whole before anything is created."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from nnatlas._choices import AMP_MODES, OPTIMIZERS, SCHEDULERS
from nnatlas._validate import InvalidValue, check_choice, check_finite, check_int, check_probability

__all__ = ["MAX_EPOCHS", "TrainConfig"]

#: Upper bounds that catch typos such as ``--epochs 1000000000`` before a run folder exists.
MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 20
MAX_SEED = 2**32 - 1  # NumPy's and scikit-learn's seeds are 32-bit
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


@dataclass
class TrainConfig:
    """Hyper-parameters of one run; written to ``config.json``.

    ``batch_size`` is per process and per micro-batch: the effective batch of one update is
    ``batch_size * grad_accum_steps * world_size``. ``milestones`` (epochs) are for the ``step``
    schedule; ``checkpoint_every`` (updates, 0 = only at epoch ends) for mid-epoch checkpoints.

    Every field is checked when the config is made (:meth:`validate`): a bad value raises
    ``InvalidValue`` (a ``ValueError``) naming the field, and an option that does not apply
    (``milestones`` without the ``step`` scheduler) is refused rather than ignored.

    >>> config = TrainConfig(epochs=3, lr=0.1, optimizer="sgd", scheduler="step", milestones=(2,))
    >>> config.milestones, config.to_dict()["lr"]
    ((2.0,), 0.1)
    >>> try:
    ...     TrainConfig(milestones=(2,))
    ... except ValueError as e:
    ...     print(e)
    milestones apply to the 'step' scheduler only (the scheduler is 'cosine'); got [2]
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
        self.milestones = tuple(self.milestones)
        self.validate()

    def validate(self) -> None:
        """Check every field; raises ``InvalidValue`` (a ``ValueError``) naming the first bad one."""
        check_int("epochs", self.epochs, maximum=MAX_EPOCHS)
        check_int("batch_size", self.batch_size, maximum=MAX_BATCH)
        check_int("eval_batch_size", self.eval_batch_size, maximum=MAX_BATCH)
        check_int("grad_accum_steps", self.grad_accum_steps, maximum=MAX_BATCH)
        check_int("num_workers", self.num_workers, minimum=0, maximum=512)
        check_int("seed", self.seed, minimum=0, maximum=MAX_SEED)
        check_int("checkpoint_every", self.checkpoint_every, minimum=0)
        check_finite("lr", self.lr, minimum=0.0, min_open=True)
        check_finite("weight_decay", self.weight_decay, minimum=0.0)
        check_probability("momentum", self.momentum)
        check_finite("warmup_epochs", self.warmup_epochs, minimum=0.0)
        if self.warmup_epochs > self.epochs:
            raise InvalidValue(
                "warmup_epochs", f"must not exceed the run (epochs = {self.epochs})", self.warmup_epochs
            )
        check_finite("gamma", self.gamma, minimum=0.0, maximum=1.0, min_open=True)
        check_finite("clip_grad_norm", self.clip_grad_norm, minimum=0.0)
        check_probability("ema_decay", self.ema_decay)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        check_choice("amp", self.amp, AMP_MODES)
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise InvalidValue("device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'", self.device)
        for m in self.milestones:
            check_finite("milestones", m, minimum=0.0, maximum=float(self.epochs), min_open=True)
        if self.milestones and self.scheduler != "step":
            raise InvalidValue(
                "milestones", f"apply to the 'step' scheduler only (the scheduler is {self.scheduler!r})",
                list(self.milestones),
            )  # fmt: skip
        self.milestones = tuple(sorted(float(m) for m in self.milestones))

    def to_dict(self) -> dict[str, Any]:
        """Every field by its name, as ``config.json`` holds them."""
        return dataclasses.asdict(self)
