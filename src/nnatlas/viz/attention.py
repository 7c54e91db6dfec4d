"""Heat maps of attention weights: one panel per head."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_attention_heads(
    weights: Any,
    path: str | os.PathLike | None = None,
    *,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    title: str = "",
) -> Figure | None:
    """Save a PNG with one heat map per head of ``weights`` ``(H, L, S)`` (rows: queries, columns: keys).

    ``weights`` is anything ``numpy.asarray`` accepts (a CPU tensor, an array); each row of a head is a
    distribution over the keys, so the colour scale is fixed to [0, 1].

    Returns:
        ``None`` once the PNG is written at ``path``; with ``path=None`` the open matplotlib
        ``Figure`` instead, to show or to draw on.
    """
    import numpy as np

    from nnatlas.viz.style import figure, save

    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 3:
        raise ValueError(f"weights must be (heads, queries, keys); got shape {w.shape}")
    H, L, S = w.shape
    for name, labels, n in (("query_labels", query_labels, L), ("key_labels", key_labels, S)):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} must have {n} entries; got {len(labels)}")
    cols = min(H, 4)
    rows = math.ceil(H / cols)
    cell = 0.28 * max(L, S) + 1.0
    fig, axes = figure(
        rows, cols, width=cell + 1.5 / cols, height=cell + 1.0 / rows, squeeze=False, layout="constrained"
    )
    for h, ax in enumerate(axes.flat):
        if h >= H:
            ax.axis("off")
            continue
        im = ax.imshow(w[h], vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.grid(False)
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xticks(range(S), labels=list(key_labels) if key_labels else None, fontsize=7, rotation=90)
        ax.set_yticks(range(L), labels=list(query_labels) if query_labels else None, fontsize=7)
        ax.set_xlabel("key", fontsize=8)
        if h % cols == 0:
            ax.set_ylabel("query", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
    return save(fig, path, title=title)
