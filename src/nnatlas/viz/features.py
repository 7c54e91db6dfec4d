"""Pictures of what a convolutional network computes: feature maps per stage and the first layer's filters.

:func:`plot_feature_maps` draws one row per layer with the first ``channels`` channels of its ``(C, H, W)``
output, each scaled on its own to ``[0, 1]`` (so a weak channel is as visible as a strong one; the colour
scale of one panel says nothing about another). :func:`plot_filters` draws the ``(O, I, kh, kw)`` kernels
of a convolution as small images, RGB when ``I == 3`` (AlexNet's colour blobs and Gabor-like edges,
Krizhevsky et al. 2012, Fig. 3), else the mean over the input channels in grey.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from nnatlas.viz.style import figure, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """``x`` scaled to ``[0, 1]`` by its own minimum and maximum (a constant map becomes 0)."""
    x = x.detach().to("cpu", torch.float32)
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for side in ax.spines.values():
        side.set_visible(False)


def _as_chw(name: str, value: torch.Tensor) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"feature map {name!r} must be a tensor; got {type(value).__name__}")
    if value.dim() == 4 and value.shape[0] == 1:
        value = value[0]
    if value.dim() != 3 or value.numel() == 0:
        raise ValueError(
            f"feature map {name!r} must be (C, H, W) (or (1, C, H, W)); got shape {tuple(value.shape)}"
        )
    return value


def plot_feature_maps(
    maps: Mapping[str, torch.Tensor],
    path: str | os.PathLike | None = None,
    *,
    channels: int = 16,
    title: str = "",
) -> Figure | None:
    """Save a PNG grid: one row per layer (in the order of ``maps``), its first ``channels`` channels.

    Args:
        maps: layer name -> its output ``(C, H, W)`` (a batch of one ``(1, C, H, W)`` is accepted).
        path: where the PNG goes.
        channels: at most this many channels per row (fewer where a layer has fewer).
        title: the figure's title.

    Each row is labelled with the layer name and its ``CxHxW`` shape; each panel is scaled to its own
    minimum and maximum (``viridis``).

    Returns:
        ``None`` once the PNG is written at ``path``; with ``path=None`` the open matplotlib
        ``Figure`` instead, to show or to draw on.
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int; got {channels!r}")
    if not maps:
        raise ValueError("maps must hold at least one layer; got none")
    items = [(name, _as_chw(name, value)) for name, value in maps.items()]
    ncols = min(channels, max(v.shape[0] for _, v in items))
    fig, axes = figure(len(items), ncols, width=1.0, height=1.05, squeeze=False)
    for row, (name, value) in enumerate(items):
        c, h, w = value.shape
        for col in range(ncols):
            ax = axes[row][col]
            _bare(ax)
            if col >= c:
                ax.set_visible(False)
                continue
            ax.imshow(_normalise(value[col]).numpy(), cmap="viridis", interpolation="nearest")
            if row == 0:
                ax.set_title(f"ch {col}", fontsize=7, pad=2)
        axes[row][0].set_ylabel(
            f"{name or '(model)'}\n{c}x{h}x{w}", fontsize=8, rotation=0, ha="right", va="center"
        )
    return save(fig, path, title=title)


def plot_filters(
    weight: torch.Tensor, path: str | os.PathLike | None = None, *, title: str = "", limit: int = 96
) -> Figure | None:
    """Save a PNG of a convolution's kernels ``weight`` ``(O, I, kh, kw)``, one small image per filter.

    ``I == 3``: each filter as an RGB image (its three input channels), scaled to ``[0, 1]`` by its own
    minimum and maximum; otherwise the mean over the ``I`` input channels, in grey. At most ``limit``
    filters are drawn (the first ones), in a near-square grid.

    Returns:
        ``None`` once the PNG is written at ``path``; with ``path=None`` the open matplotlib
        ``Figure`` instead, to show or to draw on.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4 or weight.numel() == 0:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a conv kernel (O, I, kh, kw); got {shape}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int; got {limit!r}")
    w = weight.detach().to("cpu", torch.float32)
    o, i, kh, kw = w.shape
    shown = min(o, limit)
    ncols = math.ceil(math.sqrt(shown))
    nrows = math.ceil(shown / ncols)
    fig, axes = figure(nrows, ncols, width=0.75, height=0.75, squeeze=False)
    for k in range(nrows * ncols):
        ax = axes[k // ncols][k % ncols]
        _bare(ax)
        if k >= shown:
            ax.set_visible(False)
            continue
        if i == 3:
            ax.imshow(_normalise(w[k]).permute(1, 2, 0).numpy(), interpolation="nearest")  # (kh, kw, 3)
        else:
            ax.imshow(_normalise(w[k].mean(dim=0)).numpy(), cmap="gray", interpolation="nearest")
    what = "RGB" if i == 3 else f"mean over {i} input channel{'s' if i > 1 else ''}"
    note = f" (first {shown} of {o})" if shown < o else ""
    return save(fig, path, title=f"{title + chr(10) if title else ''}{o} filters {kh}x{kw}, {what}{note}")
