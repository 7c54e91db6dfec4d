"""ERFNet blocks against the notes' closed-form parameter counts and the authors' reference code.

The reference forward below is transcribed from the authors' implementation (``non_bottleneck_1d`` in
github.com/Eromera/erfnet_pytorch, train/erfnet.py), as is its ``state_dict`` layout.
"""

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nnatlas.layers import ERFBottleneck, ERFDownsampler, ERFNonBottleneck, ERFNonBottleneck1D, ERFUpsampler

FAST = settings(max_examples=20, deadline=None)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@FAST
@given(w0=st.integers(1, 24))
def test_parameter_counts_equal_the_notes(w0):
    w = 4 * w0
    # the notes: non-bottleneck 18w^2 + 2w, bottleneck 17w^2/16 + 3w/2, non-bottleneck-1D 12w^2 + 4w
    assert n_params(ERFNonBottleneck(w, norm=False)) == 18 * w**2 + 2 * w
    assert n_params(ERFBottleneck(w, norm=False)) == Fraction(17 * w**2, 16) + Fraction(3 * w, 2)
    assert n_params(ERFNonBottleneck1D(w, norm=False)) == 12 * w**2 + 4 * w
    # and in the paper's w0 (bottleneck at 4 w0): 17 w0^2 + 6 w0
    assert n_params(ERFBottleneck(4 * w0, norm=False)) == 17 * w0**2 + 6 * w0
    assert n_params(ERFNonBottleneck(w0, norm=False)) == 18 * w0**2 + 2 * w0
    # with norms, each BatchNorm2d adds its weight and bias per channel
    assert n_params(ERFNonBottleneck1D(w)) == 12 * w**2 + 4 * w + 2 * (2 * w)


def _reference_non_bottleneck_1d(m: ERFNonBottleneck1D, x: torch.Tensor) -> torch.Tensor:
    output = m.conv3x1_1(x)
    output = F.relu(output)
    output = m.conv1x3_1(output)
    output = m.bn1(output)
    output = F.relu(output)
    output = m.conv3x1_2(output)
    output = F.relu(output)
    output = m.conv1x3_2(output)
    output = m.bn2(output)
    return F.relu(output + x)


@pytest.mark.parametrize("dilation", [1, 2, 8, 16])
def test_non_bottleneck_1d_matches_the_reference_code(dilation):
    block = ERFNonBottleneck1D(8, dilation=dilation, dropout=0.1)
    assert list(block.state_dict()) == [
        f"{name}.{p}"
        for name, params in [
            ("conv3x1_1", ["weight", "bias"]),
            ("conv1x3_1", ["weight", "bias"]),
            ("bn1", ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]),
            ("conv3x1_2", ["weight", "bias"]),
            ("conv1x3_2", ["weight", "bias"]),
            ("bn2", ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]),
        ]
        for p in params
    ]
    assert block.bn1.eps == 1e-3  # the authors' BatchNorm2d(chann, eps=1e-03)
    with torch.no_grad():
        for bn in (block.bn1, block.bn2):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2)
    block.eval()
    x = torch.randn(2, 8, 20, 21)
    torch.testing.assert_close(block(x), _reference_non_bottleneck_1d(block, x))
    assert block.conv3x1_2.dilation == (dilation, 1) and block.conv1x3_2.dilation == (1, dilation)


@pytest.mark.parametrize("cls", [ERFNonBottleneck, ERFBottleneck, ERFNonBottleneck1D])
def test_blocks_are_residual_and_keep_the_shape(cls):
    block = cls(8, dilation=2, norm=False).eval()
    x = torch.randn(2, 8, 11, 13)
    assert block(x).shape == x.shape
    last = [m for m in block.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():  # silence the residual branch: only the shortcut is left
        last.weight.zero_()
        last.bias.zero_()
    torch.testing.assert_close(block(x), F.relu(x))


def test_injected_norm_layer():
    block = ERFNonBottleneck1D(8, norm_layer=lambda c: nn.GroupNorm(4, c))
    assert isinstance(block.bn1, nn.GroupNorm) and isinstance(block.bn2, nn.GroupNorm)
    assert isinstance(ERFBottleneck(8, norm=False).bn3, nn.Identity)


def test_downsampler_and_upsampler():
    down = ERFDownsampler(3, 16)
    # (3*3*3 + 1) * 13 for the conv, 2 * 16 for the batch norm (the pooled 3 channels are free)
    assert n_params(down) == (9 * 3 + 1) * 13 + 2 * 16
    x = torch.randn(2, 3, 12, 10)
    y = down.eval()(x)
    assert y.shape == (2, 16, 6, 5)
    # channels 13.. are the 2x2 max pool of the input, through the (eval) batch norm and ReLU
    bn = down.bn
    pooled = F.max_pool2d(x, 2)
    expected = F.relu(
        (pooled - bn.running_mean[13:, None, None])
        / torch.sqrt(bn.running_var[13:, None, None] + bn.eps)
        * bn.weight[13:, None, None]
        + bn.bias[13:, None, None]
    )
    torch.testing.assert_close(y[:, 13:], expected)
    up = ERFUpsampler(16, 8)
    assert up(y).shape == (2, 8, 12, 10)


@pytest.mark.parametrize(
    ("build", "pattern"),
    [
        (lambda: ERFBottleneck(6), "width must be divisible by 4; got width=6"),
        (lambda: ERFNonBottleneck(0), "width must be an int >= 1; got width=0"),
        (lambda: ERFNonBottleneck1D(8, dilation=0), "dilation=0"),
        (lambda: ERFNonBottleneck1D(8, dropout=1.5), "dropout=1.5"),
        (lambda: ERFDownsampler(16, 16), "out_channels=16"),
    ],
)
def test_bad_configurations(build, pattern):
    with pytest.raises(ValueError, match=pattern):
        build()
