"""Picture of an effective receptive field: the heat map with its extent and the theoretical field."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from nnatlas.analysis.erf import EffectiveReceptiveField

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_erf(
    erf: EffectiveReceptiveField, path: str | os.PathLike | None = None, *, title: str = ""
) -> Figure | None:
    """Save a PNG of a 2-d :class:`~nnatlas.analysis.EffectiveReceptiveField` heat map.

    The dashed square is the theoretical receptive field of the centre element (clipped to the image), the
    solid one the measured extent holding ``erf.mass`` of the heat map.

    Returns:
        ``None`` once the PNG is written at ``path``; with ``path=None`` the open matplotlib
        ``Figure`` instead, to show or to draw on.
    """
    from matplotlib.patches import Rectangle

    from nnatlas.viz.style import figure, save

    heat = erf.heatmap
    if heat.dim() != 2:
        raise ValueError(f"plot_erf needs a 2-d heat map; got shape {tuple(heat.shape)}")
    h, w = heat.shape
    fig, ax = figure(width=5.0, height=5.0)
    ax.grid(False)
    im = ax.imshow(heat.numpy(), cmap="magma", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="|d y_centre / d x| (max = 1)")
    (y0, y1), (x0, x1) = erf.bounds
    ey, ex = erf.extent
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), ex, ey, fill=False, color="cyan", lw=1.5))
    label = f"ERF extent {ey}x{ex} ({erf.mass:.0%})"
    if erf.theoretical is not None:
        f = erf.theoretical
        (y0, y1), (x0, x1) = f.interval(erf.centre)
        y0, x0, y1, x1 = max(y0, -0.5), max(x0, -0.5), min(y1, h - 0.5), min(x1, w - 0.5)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="white", ls="--", lw=1.0))
        label += f", theoretical {f.size[0]:g}x{f.size[1]:g}"
    ax.set_title(
        f"{title or 'effective receptive field of ' + (erf.layer or 'the model')}\n{label}", fontsize=9
    )
    ax.set_xlabel("x (input pixels)")
    ax.set_ylabel("y (input pixels)")
    return save(fig, path)
