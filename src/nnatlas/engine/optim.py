"""Optimisers and learning-rate schedules, stepped once per parameter update."""

from __future__ import annotations

import math

import torch
from torch import nn

from nnatlas._choices import OPTIMIZERS, SCHEDULERS


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights that decay, and biases / normalisation parameters (1-D tensors) that do not."""
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    model: nn.Module, name: str = "adamw", *, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """The optimiser ``name`` over :func:`~nnatlas.engine.param_groups`: weights decay by ``weight_decay``,
    biases and normalisation parameters do not.

    ``adamw``: ``torch.optim.AdamW`` (Loshchilov & Hutter 2019, decoupled weight decay); ``sgd``:
    ``torch.optim.SGD`` with Nesterov momentum ``momentum`` (plain SGD when it is 0). ``lr`` must be
    positive; an unknown ``name`` raises ``ValueError``.

    >>> from torch import nn
    >>> opt = build_optimizer(nn.Linear(4, 2), "sgd", lr=0.1, weight_decay=5e-4)
    >>> type(opt).__name__, [len(g["params"]) for g in opt.param_groups]  # the weight; the bias
    ('SGD', [1, 1])
    """
    if lr <= 0:
        raise ValueError(f"lr must be > 0; got {lr}")
    groups = param_groups(model, weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str = "cosine",
    *,
    total_steps: int,
    warmup_steps: int = 0,
    milestones: tuple[int, ...] | None = None,
    gamma: float = 0.1,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-update schedule: a linear warm-up over ``warmup_steps``, then the named decay.

    With ``f(t)`` the factor multiplying the peak learning rate at update ``t`` (``T`` = ``total_steps``,
    ``W`` = ``warmup_steps``):

    - ``constant``: ``f = 1`` after the warm-up;
    - ``cosine``: ``f = (1 + cos(pi (t - W) / (T - W))) / 2`` (Loshchilov & Hutter 2017, SGDR, without
      restarts);
    - ``step``: ``f = gamma ** (number of milestones <= t)``; ``milestones`` are update indices, by
      default half and three quarters of training (He et al. 2016 divide the CIFAR learning rate by 10
      at 32k and 48k of 64k iterations);
    - ``onecycle``: the 1cycle policy (Smith & Topin 2019): a linear ramp from ``1 / div_factor`` to 1
      over the warm-up (30 % of training when ``warmup_steps`` is 0), then a cosine from 1 down to
      ``1 / (div_factor * final_div_factor)`` at the last update, as ``torch.optim.lr_scheduler.OneCycleLR``.

    For the other schedules the warm-up ramps linearly, ``f = (t + 1) / (W + 1)`` for ``t < W``.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}; got {name!r}")
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1]; got {gamma}")
    if div_factor < 1.0 or final_div_factor < 1.0:
        raise ValueError(
            f"div_factor and final_div_factor must be >= 1; got {div_factor}, {final_div_factor}"
        )
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps - 1)
    if name == "step":
        steps = sorted(milestones) if milestones else [total_steps // 2, (3 * total_steps) // 4]
        if any(m < 0 for m in steps):
            raise ValueError(f"milestones must be >= 0 update indices; got {tuple(milestones or ())}")
    if name == "onecycle":
        peak = warmup_steps if warmup_steps > 0 else max(0, round(0.3 * total_steps) - 1)
        low, final = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)

    def factor(step: int) -> float:
        if name == "onecycle":
            if step < peak:
                return low + (1.0 - low) * step / peak
            progress = min(1.0, (step - peak) / max(1, total_steps - 1 - peak))
            return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if name == "constant":
            return 1.0
        if name == "step":
            return gamma ** sum(step >= m for m in steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
