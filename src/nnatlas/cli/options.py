"""The options every ``nnatlas train TASK`` shares: run folder, engine, and how they map onto
:class:`nnatlas.engine.TrainConfig`. Importable without torch, so ``--help`` answers at once.

One table (:data:`ENGINE_OPTIONS`) gives each engine option its flag, its ``TrainConfig`` field, its type,
default and help; the parser, the validation messages (``--batch-size``, not ``batch_size``) and the rule of
what may change on ``--resume`` all read it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from nnatlas._choices import AMP_MODES, OPTIMIZERS, SCHEDULERS


@dataclass(frozen=True)
class Option:
    flag: str
    field: str | None  # the TrainConfig field it sets (None: a CLI-only option)
    default: Any
    help: str
    type: Any = None  # None: a store_true flag
    choices: tuple[str, ...] | None = None
    nargs: str | None = None
    metavar: str | None = None
    group: str = "engine"
    #: May be given again with ``--resume`` (where the data is, how to run), as opposed to what defines
    #: the run (model, data, schedule, seed, ...), which must stay as it was.
    resumable: bool = False

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


ENGINE_OPTIONS: tuple[Option, ...] = (
    # the run
    Option("--epochs", "epochs", 15, "passes over the training set (with --resume: a larger value extends "
           "a run)", int, group="run", resumable=True),
    Option("--batch-size", "batch_size", 64, "training batch size per process", int, group="run"),
    Option("--lr", "lr", 3e-3, "peak learning rate", float, group="run"),
    Option("--optimizer", "optimizer", "adamw", "optimiser", str, OPTIMIZERS, group="run"),
    Option("--momentum", "momentum", 0.9, "momentum of --optimizer sgd (Nesterov)", float, group="run"),
    Option("--weight-decay", "weight_decay", 5e-4, "decay of weights (not of norms and biases)", float,
           group="run"),
    Option("--scheduler", "scheduler", "cosine", "learning-rate schedule, stepped per update", str,
           SCHEDULERS, group="run"),
    Option("--warmup-epochs", "warmup_epochs", 1.0, "length of the linear warm-up", float, group="run"),
    Option("--milestones", "milestones", (), "epochs where --scheduler step decays (default: 1/2, 3/4 of "
           "the run)", float, nargs="+", group="run"),
    Option("--gamma", "gamma", 0.1, "decay factor of --scheduler step", float, group="run"),
    Option("--seed", "seed", 0, "seed of weights, shuffling and data split", int, group="run"),
    Option("--name", None, None, "run folder name (default: <model>-<data>)", str, group="run"),
    Option("--out", None, "runs", "folder that holds the run folders", str, group="run"),
    Option("--resume", None, None, "continue the run in this folder from its checkpoint", str,
           metavar="RUN_DIR", group="run"),
    Option("--quiet", None, False, "no progress bar or per-epoch lines", group="run", resumable=True),
    # how to run it
    Option("--device", "device", "auto", "auto, cpu, cuda or cuda:N", str, resumable=True),
    Option("--workers", "num_workers", 0, "data-loader worker processes", int, resumable=True),
    Option("--threads", None, 0, "CPU threads of torch (0: torch's default)", int, resumable=True),
    Option("--eval-batch-size", "eval_batch_size", 256, "validation batch size", int, resumable=True),
    Option("--limit-train", None, None, "train on the first N samples only (quick checks)", int,
           metavar="N"),
    Option("--amp", "amp", "none", "mixed precision (fp16 on CUDA only)", str, AMP_MODES),
    Option("--accum-steps", "grad_accum_steps", 1, "micro-batches per optimiser update", int),
    Option("--clip-grad", "clip_grad_norm", 0.0, "clip the gradient norm to this (0 = off)", float),
    Option("--ema-decay", "ema_decay", 0.0, "EMA of the weights, e.g. 0.999 (0 = off)", float),
    Option("--channels-last", "channels_last", False, "NHWC memory format (faster convs on GPUs)"),
    Option("--compile", "compile", False, "torch.compile the model"),
    Option("--deterministic", "deterministic", False, "deterministic kernels (exact reruns)"),
    Option("--sync-bn", "sync_bn", False, "SyncBatchNorm across processes (CUDA)"),
    Option("--checkpoint-every", "checkpoint_every", 0, "checkpoint every N updates (0 = epoch ends)",
           int, resumable=True),
    Option("--tensorboard", "tensorboard", False, "also log to TensorBoard (needs tensorboard)",
           resumable=True),
)  # fmt: skip

OPTIONS_BY_DEST = {o.dest: o for o in ENGINE_OPTIONS}
FLAG_OF_FIELD = {o.field: o.flag for o in ENGINE_OPTIONS if o.field}


def add_engine_options(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    """Add :data:`ENGINE_OPTIONS` to ``parser`` with the task's ``defaults`` (by dest) shown in ``--help``."""
    groups = {
        "run": parser.add_argument_group("the run"),
        "engine": parser.add_argument_group("engine (how to run it)"),
    }
    for o in ENGINE_OPTIONS:
        default = defaults.get(o.dest, o.default)
        hidden = default is None or default is False or default == ()
        help_text = o.help if hidden else f"{o.help} (default: {_shown(default)})"
        kwargs: dict[str, Any] = {"default": default, "help": help_text, "dest": o.dest}
        if o.type is None:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = o.type
            if o.choices:
                kwargs["choices"] = o.choices
            if o.nargs:
                kwargs["nargs"] = o.nargs
            if o.metavar:
                kwargs["metavar"] = o.metavar
        groups[o.group].add_argument(o.flag, **kwargs)


def _shown(value: Any) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)
