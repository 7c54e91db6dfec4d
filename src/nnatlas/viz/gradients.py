"""Bar charts of :func:`nnatlas.analysis.gradient_flow` and :func:`nnatlas.analysis.activation_stats`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from nnatlas.analysis.gradients import ActivationStats, GradientFlow
from nnatlas.viz.style import PALETTE, figure, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_gradient_flow(
    flows: Mapping[str, GradientFlow] | GradientFlow,
    path: str | os.PathLike | None = None,
    *,
    title: str = "",
) -> Figure | None:
    """Gradient norm per layer (log scale, first layer left): bars for one flow, one line per named flow
    when there are several.

    Returns:
        ``None`` once the PNG is written at ``path``; with ``path=None`` the open matplotlib
        ``Figure`` instead, to show or to draw on.
    """
    if isinstance(flows, GradientFlow):
        flows = {"": flows}
    if not flows:
        raise ValueError("no gradient flow to plot")
    fig, ax = figure(width=6.5, height=3.8)
    if len(flows) == 1:  # one model: a bar per layer, named
        (flow,) = flows.values()
        norms = [max(n, 1e-30) for n in flow.norms()]
        ax.bar(range(len(norms)), norms, color=PALETTE[0])
        if len(norms) <= 40:
            ax.set_xticks(range(len(norms)), [r.name for r in flow.rows], rotation=90, fontsize=7)
    else:  # several models: a line each
        for (label, flow), colour in zip(flows.items(), PALETTE * 4, strict=False):
            norms = [max(n, 1e-30) for n in flow.norms()]
            ax.plot(range(len(norms)), norms, marker="o", ms=3, color=colour, label=label)
        ax.legend()
    ax.set_yscale("log")
    ax.set_xlabel("layer (input side left)")
    ax.set_ylabel("gradient norm ||dL/dW||")
    return save(fig, path, title=title)


def plot_activation_stats(
    stats: ActivationStats,
    path: str | os.PathLike | None = None,
    *,
    types: Sequence[str] = (),
    title: str = "",
) -> None:
    """Mean +- std of each leaf module's output (left) and its fractions of zeros and saturated units
    (right); ``types`` keeps only those module types (e.g. ``("ReLU",)``)."""
    rows = [r for r in stats.rows if not types or r.type in types]
    if not rows:
        raise ValueError("no activation rows to plot")
    fig, (a, b) = figure(1, 2, width=5.0, height=3.6)
    x = range(len(rows))
    a.errorbar(x, [r.mean for r in rows], yerr=[r.std for r in rows], fmt="o", ms=3, capsize=2)
    a.set_xlabel("layer")
    a.set_ylabel("output mean +- std")
    b.bar([i - 0.2 for i in x], [r.zero_fraction for r in rows], width=0.4, label="exactly zero")
    b.bar([i + 0.2 for i in x], [r.saturated_fraction or 0.0 for r in rows], width=0.4, label="saturated")
    b.set_xlabel("layer")
    b.set_ylabel("fraction of units")
    b.set_ylim(0, 1)
    b.legend()
    return save(fig, path, title=title)
