"""Activation curves: autograd's derivatives equal the closed forms (sigma' = sigma (1 - sigma) peaks at 1/4)."""

import pytest
import torch
from PIL import Image
from torch import nn

from nnatlas.viz import activation_curves, plot_activation_functions


def test_derivatives_equal_the_closed_forms():
    curves = activation_curves(
        {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": nn.ReLU(), "elu": nn.ELU()}
    )
    x, s, ds = curves["sigmoid"]
    assert torch.allclose(ds, s * (1 - s), atol=1e-12)
    assert ds.max().item() == pytest.approx(0.25) and x[ds.argmax()].item() == pytest.approx(0.0)
    _, t, dt = curves["tanh"]
    assert torch.allclose(dt, 1 - t * t, atol=1e-12) and dt.max().item() == pytest.approx(1.0)
    x, _, dr = curves["relu"]
    assert torch.equal(dr, (x > 0).double())
    x, e, de = curves["elu"]
    assert torch.allclose(de[x < 0], e[x < 0] + 1, atol=1e-12)


def test_plot_and_errors(tmp_path):
    plot_activation_functions(
        {"sigmoid": torch.sigmoid, "prelu": nn.PReLU()}, tmp_path / "a.png", title="f and f'"
    )
    with Image.open(tmp_path / "a.png") as im:
        assert im.width > im.height > 100
    with pytest.raises(ValueError, match="no activation"):
        activation_curves({})
    with pytest.raises(ValueError, match="low < high"):
        activation_curves({"t": torch.tanh}, low=1, high=1)
