"""One matplotlib style for every figure of nnatlas: a colour-blind-safe palette (Okabe and Ito, "Color
Universal Design", 2008), light grids, labelled axes.

:func:`figure` opens a figure under the style; :func:`save` writes it as PNG and closes it.
"""

from __future__ import annotations

import os
from typing import Any

#: Okabe-Ito: distinguishable under the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

RC = {
    "axes.prop_cycle": None,  # filled in by _rc()
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.dpi": 100,
    "savefig.bbox": "tight",
}


def _rc() -> dict[str, Any]:
    from cycler import cycler

    return {**RC, "axes.prop_cycle": cycler(color=PALETTE)}


def figure(nrows: int = 1, ncols: int = 1, *, width: float = 5.0, height: float = 3.6, **kwargs: Any):
    """``(fig, axes)`` of ``nrows x ncols`` panels of ``width x height`` inches each, in the nnatlas style
    (``axes`` squeezed as by ``plt.subplots``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(_rc()):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kwargs)
    # rc_context restores the global settings; the created axes keep the style's colour cycle and grid.
    for ax in fig.axes:
        ax.set_prop_cycle(color=PALETTE)
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def save(fig, path: str | os.PathLike | None = None, *, title: str = ""):
    """Save ``fig`` as a PNG at ``path`` (tight layout) and close it; with ``path=None`` return ``fig``
    open instead (to show in a notebook or a gallery page, or to draw on)."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    if path is None:
        return fig
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return None
