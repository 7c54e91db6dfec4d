"""Shared pieces of the experiments: embedded data as in-memory tensors, a small seeded training loop,
accuracy, and pixel shifts.

The loop is deliberately plain (no run folder, no checkpoints): an experiment trains many small models for
a few epochs each, on tensors that fit in memory, and keeps only the numbers it measures.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnatlas.experiments.base import seeded

__all__ = ["History", "accuracy", "digits", "fit", "shapes", "shift"]


@functools.lru_cache(maxsize=8)
def digits(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's 8x8 digits, standardised: ``(x_train (1437, 1, 8, 8), y_train, x_val (360, 1, 8, 8),
    y_val)``."""
    from nnatlas.data import load_digits_split

    train, val = load_digits_split(seed=seed)
    return (*train.tensors, *val.tensors)


@functools.lru_cache(maxsize=8)
def shapes(
    num_train: int = 2000, num_val: int = 500, *, size: int = 32, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One-shape scenes of :class:`~nnatlas.data.ShapesDataset` (4 classes), in memory: ``(x_train (N, 3,
    size, size) in [0, 1], y_train, x_val, y_val)``; the validation scenes come from another seed."""
    from nnatlas.data import ShapesDataset

    def load(n: int, s: int) -> tuple[Tensor, Tensor]:
        ds = ShapesDataset(n, size=size, seed=s)
        xs, ys = zip(*(ds[i] for i in range(n)), strict=True)
        return torch.stack(xs), torch.tensor(ys)

    return (*load(num_train, seed), *load(num_val, seed + 10_000))


def shift(x: Tensor, dx: int, dy: int = 0) -> Tensor:
    """``x`` (B, C, H, W) moved ``dx`` pixels right and ``dy`` down; the uncovered border repeats the edge
    pixels (the background of the scenes), so a shift adds no artificial black bars."""
    if dx == 0 and dy == 0:
        return x
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))  # left, right, top, bottom
    y = F.pad(x, pad, mode="replicate")
    H, W = x.shape[-2:]
    top, left = max(-dy, 0), max(-dx, 0)
    return y[..., top : top + H, left : left + W]


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` in eval mode on ``(x, y)``."""
    was = model.training
    model.eval()
    correct = sum(
        (model(x[i : i + batch_size]).argmax(dim=1) == y[i : i + batch_size]).sum().item()
        for i in range(0, len(x), batch_size)
    )
    model.train(was)
    return correct / len(x)


@dataclass
class History:
    """Per epoch: mean training loss, training accuracy (on the batches as trained) and validation
    accuracy; ``step_loss`` every step; ``diverged`` when the loss became non-finite (training stops)."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    diverged: bool = False

    def as_dict(self) -> dict:
        return {
            "train_loss": self.train_loss,
            "train_acc": self.train_acc,
            "val_acc": self.val_acc,
            "diverged": self.diverged,
        }


def fit(
    model: nn.Module,
    data: tuple[Tensor, Tensor, Tensor, Tensor],
    *,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int = 64,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    clip: float | None = None,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    loss_fn: Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
    on_step: Callable[[nn.Module, int], None] | None = None,
) -> History:
    """Train ``model`` on ``data = (x_train, y_train, x_val, y_val)`` with shuffled mini-batches drawn from
    a generator seeded by ``seed``; returns its :class:`History`.

    ``optimizer``: ``"adam"`` or ``"sgd"`` (with ``momentum``). ``clip``: gradient-norm clipping.
    ``augment(x, generator)``: applied to every training batch. ``loss_fn(model, x, y) -> (loss, logits)``
    replaces cross-entropy on ``model(x)`` (e.g. for auxiliary heads). ``on_step(model, step)`` runs after
    every optimiser step.
    """
    seeded(seed)
    x, y, xv, yv = data
    gen = torch.Generator().manual_seed(seed)
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be adam or sgd; got {optimizer!r}")
    hist = History()
    step = 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total, correct, seen = 0.0, 0, 0
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, gen)
            if loss_fn is None:
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
            else:
                loss, logits = loss_fn(model, xb, yb)
            if not torch.isfinite(loss):
                hist.diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            step += 1
            if on_step is not None:
                on_step(model, step)
            hist.step_loss.append(loss.item())
            total += loss.item() * len(idx)
            correct += (logits.argmax(dim=1) == yb).sum().item()
            seen += len(idx)
        if hist.diverged:
            break
        hist.train_loss.append(total / seen)
        hist.train_acc.append(correct / seen)
        hist.val_acc.append(accuracy(model, xv, yv))
    return hist
