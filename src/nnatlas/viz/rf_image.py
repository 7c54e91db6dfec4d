"""Receptive fields drawn over a real image: how much of a photograph one output element can see.

The left panel is the image with the theoretical receptive field (:class:`~nnatlas.analysis.LayerField`)
of the centre output element of each chosen layer, as a square in a palette colour, clipped to the image
(dashed where clipped; the legend gives the full size, which after a few stages exceeds the image). The right panel, when an
:class:`~nnatlas.analysis.EffectiveReceptiveField` is given, overlays its heat map on the image: the
pixels that really move that element, a small, roughly Gaussian part of the theoretical field (Luo et al.,
NeurIPS 2016).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from nnatlas.analysis.erf import EffectiveReceptiveField
from nnatlas.analysis.receptive_field import LayerField
from nnatlas.viz.style import PALETTE, figure, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _rgb(image: torch.Tensor):
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be (3, H, W) or (1, H, W) in [0, 1]; got {shape}")
    x = image.detach().to("cpu", torch.float32).clamp(0.0, 1.0)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.permute(1, 2, 0).numpy()  # (H, W, 3)


def _clip(lo: float, hi: float, n: int) -> tuple[float, float, bool]:
    """Pixel interval ``[lo, hi]`` as edges ``[lo - 0.5, hi + 0.5]`` clipped to the image ``[-0.5, n - 0.5]``."""
    a, b = lo - 0.5, hi + 0.5
    ca, cb = max(a, -0.5), min(b, n - 0.5)
    return ca, cb, (ca, cb) != (a, b)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def plot_receptive_fields_on_image(
    image: torch.Tensor,
    fields: Mapping[str, LayerField],
    erf: EffectiveReceptiveField | None,
    path: str | os.PathLike | None = None,
    *,
    title: str = "",
) -> Figure | None:
    """Save a PNG of ``image`` ``(3, H, W)`` with each layer's theoretical field and, if given, the ERF.

    Args:
        image: the model's input image, ``(3, H, W)`` (or ``(1, H, W)``) in ``[0, 1]``; the fields are in
            its pixel coordinates.
        fields: layer name -> :class:`~nnatlas.analysis.LayerField` of that layer (``receptive_field(model, (1, C, H,
            W)).layers[name]``), in the order to draw; the square is that of the centre output element.
        erf: the effective receptive field measured at the same input size (its heat map must be
            ``(H, W)``), or ``None`` for one panel.
        path: where the PNG goes.
        title: the figure's title.

    Returns:
        ``None`` once the PNG is written at ``path``; with ``path=None`` the open matplotlib
        ``Figure`` instead, to show or to draw on.
    """
    rgb = _rgb(image)
    h, w = rgb.shape[:2]
    if not fields and erf is None:
        raise ValueError("give at least one layer field or an effective receptive field; got neither")
    for name, f in fields.items():
        if not isinstance(f, LayerField) or len(f.size) != 2:
            raise ValueError(f"field of {name!r} must be a 2-d LayerField; got {f!r}")
    if erf is not None and tuple(erf.heatmap.shape) != (h, w):
        raise ValueError(
            f"the ERF heat map must be the image's size {(h, w)}; got {tuple(erf.heatmap.shape)}"
        )
    from matplotlib.patches import Rectangle

    panels = 2 if erf is not None else 1
    fig, axes = figure(1, panels, width=5.0, height=5.0, squeeze=False)
    ax = axes[0][0]
    ax.imshow(rgb, interpolation="nearest")
    _bare(ax)
    for k, (name, f) in enumerate(fields.items()):
        colour = PALETTE[k % len(PALETTE)]
        centre = [s // 2 for s in f.output_shape[-2:]]
        (y0, y1), (x0, x1) = f.interval(centre)
        ya, yb, cut_y = _clip(y0, y1, h)
        xa, xb, cut_x = _clip(x0, x1, w)
        size = f"{f.size[0]:g}x{f.size[1]:g}"
        label = f"{name}: {size} px" + (" (clipped)" if cut_x or cut_y else "")
        if cut_x or cut_y:  # dashed, and drawn a little inside the image so clipped squares stay apart
            inset = 0.008 * min(h, w) * (k + 1)
            xa, xb = (xa + inset, xb - inset) if cut_x else (xa, xb)
            ya, yb = (ya + inset, yb - inset) if cut_y else (ya, yb)
        if xb > xa and yb > ya:
            ls = "--" if cut_x or cut_y else "-"
            ax.add_patch(
                Rectangle((xa, ya), xb - xa, yb - ya, fill=False, color=colour, lw=2.0, ls=ls, label=label)
            )
        else:  # outside the image: still listed in the legend
            ax.plot([], [], color=colour, lw=2.0, label=label + " (outside)")
    if fields:
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.02), ncols=1, fontsize=8, frameon=False)
    ax.set_title(f"theoretical receptive field of the centre element ({h}x{w} px input)", fontsize=9)
    if erf is not None:
        ax2 = axes[0][1]
        ax2.imshow(rgb.mean(axis=2), cmap="gray", interpolation="nearest")
        heat = erf.heatmap.to(torch.float32).numpy()
        im = ax2.imshow(heat, cmap="magma", alpha=0.6, interpolation="bilinear", vmin=0.0, vmax=1.0)
        fig.colorbar(im, ax=ax2, fraction=0.046, pad=0.04, label="|d y_centre / d x| (max = 1)")
        (ey0, ey1), (ex0, ex1) = erf.bounds
        ax2.add_patch(
            Rectangle(
                (ex0 - 0.5, ey0 - 0.5), ex1 - ex0 + 1, ey1 - ey0 + 1, fill=False, color=PALETTE[5], lw=1.5
            )
        )
        _bare(ax2)
        extent = "x".join(map(str, erf.extent))
        ax2.set_title(
            f"effective receptive field of {erf.layer}\n{extent} px hold {erf.mass:.0%}", fontsize=9
        )
    if title:  # above the panel titles (save's suptitle would overlap them)
        fig.suptitle(title, y=1.03)
    return save(fig, path)
