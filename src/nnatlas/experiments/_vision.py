"""Shared pieces of the image experiments (conv vs fully connected, 3x3 vs 5x5, GAP vs FC, invariance,
pooling): the embedded images as one-channel silhouettes, one small configurable convolutional net,
batch-norm re-estimation, and accuracy / prediction stability under pixel shifts.

Silhouettes: a shape scene's class does not depend on its colours, so the scene is reduced to one channel,
the distance of every pixel to the background colour (the per-channel median: a shape covers at most a
third of its scene), scaled by the image's 98th percentile. Small nets then learn the shapes in a few epochs on one CPU thread, and a rotated, scaled or
shifted silhouette is filled with the background value 0.

Batch-norm re-estimation ("precise BN", Wu and Johnson 2021): the running statistics of a net trained for a
few hundred steps with a large learning rate lag behind its weights, which makes the validation accuracy
swing from epoch to epoch. After training, the statistics are recomputed over the whole training set in one
pass with the final weights; this changes no weight.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnatlas.experiments import _train
from nnatlas.experiments.base import seeded

__all__ = [
    "SHIFTS",
    "band",
    "calibrate_bn",
    "digit_canvas",
    "mean",
    "predict",
    "prediction_change",
    "seeded_model",
    "shape_silhouettes",
    "shifted_accuracy",
    "small_cnn",
    "train",
]

#: The four directions of a shift by ``d`` pixels: right, left, down, up.
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))
SHIFTS = (1, 2, 3, 4)

Data = tuple[Tensor, Tensor, Tensor, Tensor]


# ---------------------------------------------------------------------------------------------------------
# Data


def silhouette(x: Tensor) -> Tensor:
    """``x`` (B, 3, H, W) in [0, 1] -> (B, 1, H, W): distance to the background colour, ~1 on the shape."""
    background = x.flatten(2).median(dim=2).values[..., None, None]  # (B, 3, 1, 1)
    s = (x - background).abs().sum(dim=1, keepdim=True)  # (B, 1, H, W)
    scale = s.flatten(1).quantile(0.98, dim=1).clamp_min(1e-3)  # (B,)
    return s / scale[:, None, None, None]


@functools.lru_cache(maxsize=4)
def shape_silhouettes(num_train: int, num_val: int, size: int) -> Data:
    """:func:`~nnatlas.experiments._train.shapes` scenes (4 classes) as silhouettes (see the module)."""
    x, y, xv, yv = _train.shapes(num_train, num_val, size=size)
    return silhouette(x), y, silhouette(xv), yv


@functools.lru_cache(maxsize=4)
def digit_canvas(upscale: int = 2, pad: int = 4) -> Data:
    """The 8x8 digits (10 classes), background 0 and ink up to 1, enlarged ``upscale`` times (bilinear)
    and centred on a canvas with ``pad`` blank pixels each side: ``(B, 1, 8 * upscale + 2 * pad, ...)``,
    so that a rotated or enlarged digit stays inside the image."""
    x, y, xv, yv = _train.digits()
    low, high = x.min(), x.max()

    def canvas(t: Tensor) -> Tensor:
        t = ((t - low) / (high - low)).clamp(0, 1)
        t = F.interpolate(t, scale_factor=upscale, mode="bilinear", align_corners=False)
        return F.pad(t, (pad, pad, pad, pad))

    return canvas(x), y, canvas(xv), yv


# ---------------------------------------------------------------------------------------------------------
# The net


def small_cnn(
    *,
    stages: Sequence[Sequence[int]] = ((3,), (3,), (3,)),
    widths: Sequence[int] = (16, 32, 32),
    in_channels: int = 1,
    num_classes: int = 4,
    down: str = "max",
    head: str = "gap",
    input_size: int = 20,
    hidden: int = 64,
) -> nn.Sequential:
    """A plain convolutional net: stage ``i`` holds one conv-BN-ReLU of width ``widths[i]`` per kernel
    size in ``stages[i]`` (padding keeps the size), and every stage but the last ends by halving the
    resolution with ``down``: ``"max"`` / ``"avg"`` (2x2 pooling, stride 2) or ``"stride"`` (its last conv
    has stride 2 instead; the same weights, no pooling layer). ``head``: ``"gap"`` (global average
    pooling, then one linear layer) or ``"fc"`` (flatten, then linear-ReLU-linear with ``hidden`` units).
    Input ``(B, in_channels, input_size, input_size)``, output ``(B, num_classes)`` logits."""
    if down not in ("max", "avg", "stride"):
        raise ValueError(f"down must be max, avg or stride; got {down!r}")
    if head not in ("gap", "fc"):
        raise ValueError(f"head must be gap or fc; got {head!r}")
    layers: list[nn.Module] = []
    cin, size = in_channels, input_size
    for i, (kernels, width) in enumerate(zip(stages, widths, strict=True)):
        last_stage = i == len(stages) - 1
        for j, k in enumerate(kernels):
            stride = 2 if down == "stride" and not last_stage and j == len(kernels) - 1 else 1
            layers += [
                nn.Conv2d(cin, width, k, stride=stride, padding=k // 2, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            cin = width
        if not last_stage:
            if down == "max":
                layers.append(nn.MaxPool2d(2))
            elif down == "avg":
                layers.append(nn.AvgPool2d(2))
            size = (size + 1) // 2 if down == "stride" else size // 2
    if head == "gap":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    else:
        layers += [
            nn.Flatten(),
            nn.Linear(cin * size * size, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        ]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------------------
# Training and measuring


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: Tensor, *, batch_size: int = 500) -> None:
    """Recompute the running mean and variance of every batch-norm layer of ``model`` over ``x`` with
    the current weights (a cumulative average over the batches); leaves ``model`` in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        model.train()
        for i in range(0, len(x), batch_size):
            model(x[i : i + batch_size])
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
    model.eval()


def train(
    model: nn.Module,
    data: Data,
    *,
    epochs: int,
    seed: int,
    lr: float = 2e-3,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
) -> _train.History:
    """:func:`~nnatlas.experiments._train.fit` with Adam, then :func:`calibrate_bn` on the training
    images (un-augmented); ``model`` is left in eval mode."""
    hist = _train.fit(model, data, epochs=epochs, lr=lr, seed=seed, augment=augment)
    calibrate_bn(model, data[0])
    return hist


def seeded_model(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` under ``seeded(seed)``, so the initial weights depend on the seed alone."""
    seeded(seed)
    return build()


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, *, batch_size: int = 500) -> Tensor:
    """Predicted classes of ``model`` (eval mode) for ``x``."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(dim=1) for i in range(0, len(x), batch_size)])


def shifted_accuracy(model: nn.Module, x: Tensor, y: Tensor, shifts: Sequence[int] = SHIFTS) -> list[float]:
    """Accuracy on ``x`` moved by each of ``shifts`` pixels, averaged over the four directions."""
    out = []
    for d in shifts:
        accs = [
            (predict(model, _train.shift(x, d * a, d * b)) == y).float().mean().item() for a, b in DIRECTIONS
        ]
        out.append(sum(accs) / len(accs))
    return out


def prediction_change(model: nn.Module, x: Tensor, shifts: Sequence[int] = SHIFTS) -> list[float]:
    """Share of the images of ``x`` whose predicted class changes when ``x`` is moved by each of
    ``shifts`` pixels, averaged over the four directions (0 = every prediction kept)."""
    base = predict(model, x)
    out = []
    for d in shifts:
        changes = [
            (predict(model, _train.shift(x, d * a, d * b)) != base).float().mean().item()
            for a, b in DIRECTIONS
        ]
        out.append(sum(changes) / len(changes))
    return out


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values))


def band(
    ax, xs: Sequence[float], runs: Sequence[Sequence[float]], *, label: str, color: str, linestyle: str = "-"
) -> None:
    """Draw the mean over ``runs`` (one curve per seed) against ``xs``, the seeds' range shaded."""
    t = torch.tensor(runs, dtype=torch.float64)  # (seeds, len(xs))
    ax.plot(xs, t.mean(dim=0).tolist(), marker="o", ms=3, color=color, linestyle=linestyle, label=label)
    ax.fill_between(
        xs, t.min(dim=0).values.tolist(), t.max(dim=0).values.tolist(), color=color, alpha=0.2, lw=0
    )
