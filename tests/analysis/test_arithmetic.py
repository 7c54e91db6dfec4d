"""Output-size arithmetic against the shapes PyTorch's own layers produce (random configurations)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nnatlas.analysis import conv_output_size, conv_transpose_output_size, pool_output_size

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(
    n=st.integers(1, 20), k=st.integers(1, 5), s=st.integers(1, 4), p=st.integers(0, 3), d=st.integers(1, 3)
)
def test_conv_output_size_matches_conv2d(n, k, s, p, d):
    conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
    if n + 2 * p < d * (k - 1) + 1:
        with pytest.raises(ValueError, match="smaller than the dilated kernel"):
            conv_output_size(n, k, s, p, d)
        return
    assert conv(torch.zeros(1, 1, n, n + 1)).shape[2:] == conv_output_size((n, n + 1), k, s, p, d)
    assert conv_output_size(n, k, s, p, d) == conv(torch.zeros(1, 1, n, n)).shape[-1]


@FAST
@given(
    n=st.integers(1, 12),
    k=st.integers(1, 5),
    s=st.integers(1, 4),
    p=st.integers(0, 3),
    d=st.integers(1, 3),
    op=st.integers(0, 3),
)
def test_conv_transpose_output_size_matches_conv_transpose2d(n, k, s, p, d, op):
    expected_out = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
    if op >= max(s, d) or expected_out < 1:
        with pytest.raises(ValueError):
            conv_transpose_output_size(n, k, s, p, op, d)
        return
    layer = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, output_padding=op, dilation=d)
    assert layer(torch.zeros(1, 1, n, n)).shape[-1] == conv_transpose_output_size(n, k, s, p, op, d)


@FAST
@given(
    n=st.integers(1, 20),
    k=st.integers(1, 5),
    s=st.integers(1, 4),
    p=st.integers(0, 2),
    d=st.integers(1, 2),
    ceil=st.booleans(),
)
def test_pool_output_size_matches_max_pool2d(n, k, s, p, d, ceil):
    if p > k // 2 or n + 2 * p < d * (k - 1) + 1:
        with pytest.raises(ValueError):
            pool_output_size(n, k, s, p, d, ceil)
        return
    pool = nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    assert pool(torch.zeros(1, 1, n, n)).shape[-1] == pool_output_size(n, k, s, p, d, ceil)


def test_notes_examples_and_errors():
    assert conv_transpose_output_size(2, 3) == 4  # the notes' figure: 2x2 -> 4x4 with k=3, s=1, p=0
    assert conv_output_size(224, 7, 2, 3) == 112  # ResNet stem
    assert pool_output_size(112, 3, 2, 1) == 56
    assert pool_output_size(55, 3, 2, ceil_mode=True) == 27  # GoogLeNet-style ceil-mode pooling
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        conv_output_size(8, 0)
    with pytest.raises(TypeError, match="tuple of 2 ints"):
        conv_output_size((8, 8), (3, 3, 3))
