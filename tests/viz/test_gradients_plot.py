"""Gradient-flow bars and activation statistics plots."""

import pytest
import torch
from PIL import Image
from torch import nn

from nnatlas.analysis import ActivationStats, GradientFlow, activation_stats, gradient_flow
from nnatlas.viz import plot_activation_stats, plot_gradient_flow


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))


def test_gradient_flow_bars_and_lines(tmp_path):
    m, x = _model(), torch.randn(32, 8)
    flow = gradient_flow(m, x, lambda out: out.pow(2).mean())
    plot_gradient_flow(flow, tmp_path / "one.png", title="bars")
    plot_gradient_flow({"a": flow, "b": flow}, tmp_path / "two.png")
    for name in ("one.png", "two.png"):
        with Image.open(tmp_path / name) as im:
            assert im.width > 300 and im.height > 200
    with pytest.raises(ValueError, match="no gradient flow"):
        plot_gradient_flow({}, tmp_path / "none.png")
    assert isinstance(flow, GradientFlow)


def test_activation_stats_plot(tmp_path):
    stats = activation_stats(_model(), torch.randn(32, 8))
    plot_activation_stats(stats, tmp_path / "a.png", types=("Sigmoid", "ReLU"))
    with Image.open(tmp_path / "a.png") as im:
        assert im.width > im.height
    with pytest.raises(ValueError, match="no activation rows"):
        plot_activation_stats(ActivationStats(rows=()), tmp_path / "b.png")
    with pytest.raises(ValueError, match="no activation rows"):
        plot_activation_stats(stats, tmp_path / "c.png", types=("GELU",))


def test_without_a_path_every_plot_returns_the_open_figure(tmp_path):
    """``path=None``: the figure comes back open (a notebook or a gallery page shows it), nothing written."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from nnatlas.analysis import activation_stats, gradient_flow
    from nnatlas.viz import plot_activation_functions, plot_activation_stats, plot_curves, plot_gradient_flow

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x, y = torch.randn(5, 4), torch.randint(0, 2, (5,))
    flow = gradient_flow(model, x, torch.nn.functional.cross_entropy, target=y)
    figures = [
        plot_gradient_flow(flow),
        plot_activation_stats(activation_stats(model, x)),
        plot_activation_functions({"relu": torch.relu, "sigmoid": torch.sigmoid}),
        plot_curves(
            [{"epoch": 1, "train_loss": 1.0, "val_acc": 0.5}, {"epoch": 2, "train_loss": 0.5, "val_acc": 0.7}]
        ),
    ]
    for fig in figures:
        assert isinstance(fig, Figure) and plt.fignum_exists(fig.number) and fig.axes
        plt.close(fig)
    assert plot_gradient_flow(flow, tmp_path / "g.png") is None and (tmp_path / "g.png").stat().st_size > 0
