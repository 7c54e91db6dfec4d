"""Training curves from the per-epoch records of ``metrics.jsonl``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_curves(
    records: Sequence[Mapping[str, Any]], path: str | os.PathLike | None = None, *, title: str = ""
) -> Figure | None:
    """Save a PNG with the losses (left) and every ``*_acc`` column (right) against the epoch.

    Returns:
        ``None`` once the PNG is written at ``path``; with ``path=None`` the open matplotlib
        ``Figure`` instead, to show or to draw on.
    """
    from nnatlas.viz.style import figure, save

    if not records:
        raise ValueError("no records to plot")
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = figure(1, 2, width=5.0, height=4.0)
    for key in sorted({k for r in records for k in r if k.endswith("_loss")}):
        ax_loss.plot(epochs, [_value(r, key) for r in records], marker="o", label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    acc_keys = sorted({k for r in records for k in r if k.endswith("acc")})
    for key in acc_keys:
        ax_acc.plot(epochs, [_value(r, key) for r in records], marker="o", label=key)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    if acc_keys:
        ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    return save(fig, path, title=title)


def _value(record: Mapping[str, Any], key: str) -> float:
    """A number of a metrics row; a missing value or a non-finite one (written as null) is NaN."""
    value = record.get(key)
    return float(value) if isinstance(value, (int, float)) else float("nan")
