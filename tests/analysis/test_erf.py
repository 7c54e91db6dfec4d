"""Effective receptive field against the closed form of a linear box-filter stack (Luo et al. 2016, sec. 2.1:
n layers of uniform k x k weights give the n-fold convolution of the box, a binomial-like bell)."""

import numpy as np
import pytest
import torch
from torch import nn

from nnatlas.analysis import effective_receptive_field


def box_stack(n: int, k: int = 3) -> nn.Module:
    layers = []
    for _ in range(n):
        conv = nn.Conv2d(1, 1, k, padding=k // 2, bias=False)
        nn.init.constant_(conv.weight, 1.0 / (k * k))
        layers.append(conv)
    return nn.Sequential(*layers)


def reference_heatmap(n: int, size: int, k: int = 3) -> np.ndarray:
    line = np.array([1.0])
    for _ in range(n):
        line = np.convolve(line, np.ones(k) / k)  # 1-d n-fold convolution of the box
    full = np.zeros(size)
    c = size // 2
    half = len(line) // 2
    full[c - half : c + half + 1] = line
    heat = np.outer(full, full)
    return heat / heat.max()


def test_linear_stack_matches_the_n_fold_box_convolution():
    n, size = 5, 33
    erf = effective_receptive_field(box_stack(n), (2, 1, size, size), samples=2)
    assert (
        erf.layer == "" and erf.centre
    )  # the model output itself is the deepest spatial output == (size // 2, size // 2)
    np.testing.assert_allclose(erf.heatmap.numpy(), reference_heatmap(n, size), rtol=1e-5, atol=1e-7)
    marginal = reference_heatmap(n, size).sum(1)
    cum = np.cumsum(marginal) / marginal.sum()
    lo, hi = np.searchsorted(cum, 0.025), np.searchsorted(cum, 0.975)
    assert erf.extent == (hi - lo + 1, hi - lo + 1) and erf.bounds == ((lo, hi), (lo, hi))
    assert erf.theoretical.size == (2 * n + 1, 2 * n + 1)


def test_erf_of_a_deep_relu_net_is_smaller_than_its_theoretical_field():
    # Luo et al.'s central observation: the effective field occupies a fraction of the theoretical one
    layers = []
    for i in range(8):
        layers += [nn.Conv2d(1 if i == 0 else 8, 8, 3, padding=1), nn.ReLU()]
    torch.manual_seed(0)
    erf = effective_receptive_field(nn.Sequential(*layers), (4, 1, 41, 41), samples=4, mass=0.9)
    assert erf.theoretical.size == (17, 17)
    assert all(e < 17 for e in erf.extent)
    assert erf.heatmap.max() == 1.0


def test_unknown_layer_lists_the_closest_first():
    with pytest.raises(ValueError, match=r"unknown layer '3x'; valid choices \(closest first\): 3, "):
        effective_receptive_field(box_stack(4), (1, 1, 16, 16), layer="3x")


def test_a_dead_centre_unit_is_an_error_not_an_empty_field():
    """A ReLU whose centre unit is inactive on every sample has no gradient to measure: a clear error, not
    an all-zero heat map with extent 0."""
    conv = nn.Conv2d(1, 1, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.constant_(conv.bias, -1.0)  # output -1 everywhere: the ReLU after it is never active
    model = nn.Sequential(conv, nn.ReLU())
    with pytest.raises(ValueError, match="zero gradient"):
        effective_receptive_field(model, (1, 1, 9, 9), layer="1", samples=3)
