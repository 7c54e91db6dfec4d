"""Deformable convolution against nn.Conv2d, the dilated convolution and torchvision.ops.DeformConv2d.

References: Dai et al. 2017 (v1, offsets initialised to zero), Zhu et al. 2019 (v2, modulation initialised
to sigmoid(0) = 1/2), and the notes: "dilated convolution can be seen as a special deformable convolution".
"""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nnatlas.layers import DeformConv2d

FAST = settings(max_examples=15, deadline=None)


def reference_conv(deform: DeformConv2d, *, padding=None, dilation=None) -> nn.Conv2d:
    conv = nn.Conv2d(
        deform.in_channels,
        deform.out_channels,
        deform.kernel_size,
        stride=deform.stride,
        padding=deform.padding if padding is None else padding,
        dilation=deform.dilation if dilation is None else dilation,
        groups=deform.groups,
        bias=deform.bias is not None,
    )
    conv.load_state_dict({k: v for k, v in deform.state_dict().items() if k in ("weight", "bias")})
    return conv


def dilation_offsets(kernel: int, dh: int, dw: int, out_h: int, out_w: int) -> torch.Tensor:
    """Offsets that move tap ``p_n`` (centred, row-major) to ``d * p_n``: ``delta = (d - 1) p_n``.

    Layout of torchvision.ops.deform_conv2d: ``(1, 2 * k * k, H_out, W_out)``, a ``(dy, dx)`` pair per tap.
    """
    c = (kernel - 1) / 2
    pairs = []
    for i in range(kernel):
        for j in range(kernel):
            pairs += [(i - c) * (dh - 1), (j - c) * (dw - 1)]
    return torch.tensor(pairs).view(1, -1, 1, 1).expand(1, len(pairs), out_h, out_w).contiguous()


@FAST
@given(
    groups=st.integers(1, 2),
    k=st.sampled_from([1, 3, 5]),
    s=st.integers(1, 2),
    d=st.integers(1, 2),
    n=st.integers(5, 9),
    bias=st.booleans(),
)
def test_zero_offsets_equal_conv2d(groups, k, s, d, n, bias):
    deform = DeformConv2d(2 * groups, 3 * groups, k, stride=s, dilation=d, groups=groups, bias=bias)
    x = torch.randn(2, 2 * groups, n, n + 1)
    # a fresh module: its offset branch is zero-initialised, so it starts as the ordinary convolution
    assert not deform.conv_offset.weight.any() and not deform.conv_offset.bias.any()
    torch.testing.assert_close(deform(x), reference_conv(deform)(x), rtol=1e-5, atol=1e-5)


@FAST
@given(
    k=st.sampled_from([3, 5]),
    dh=st.integers(1, 3),
    dw=st.integers(1, 3),
    s=st.integers(1, 2),
    n=st.integers(5, 10),
)
def test_offsets_on_a_dilation_grid_equal_the_dilated_conv(k, dh, dw, s, n):
    deform = DeformConv2d(3, 4, k, stride=s)  # dilation 1, "same" padding (k - 1) / 2
    dilated = reference_conv(deform, padding=(dh * (k - 1) // 2, dw * (k - 1) // 2), dilation=(dh, dw))
    x = torch.randn(2, 3, n, n + 2)
    expected = dilated(x)
    offsets = dilation_offsets(k, dh, dw, *expected.shape[2:]).expand(2, -1, -1, -1)
    torch.testing.assert_close(deform(x, offsets), expected, rtol=1e-5, atol=1e-5)
    # the module's own branch can produce them: constant offsets are its bias
    with torch.no_grad():
        deform.conv_offset.bias.copy_(offsets[0, :, 0, 0])
    torch.testing.assert_close(deform(x), expected, rtol=1e-5, atol=1e-5)


def test_modulated_starts_at_half_the_conv():
    deform = DeformConv2d(3, 5, 3, modulated=True)
    assert not deform.conv_mask.weight.any() and not deform.conv_mask.bias.any()
    x = torch.randn(2, 3, 7, 7)
    conv = reference_conv(deform)
    expected = 0.5 * F.conv2d(x, conv.weight, None, padding=1) + conv.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(deform(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modulated", [False, True])
def test_matches_torchvision_deform_conv2d_with_the_same_offsets(modulated):
    deform = DeformConv2d(4, 6, 3, stride=2, padding=1, groups=2, offset_groups=2, modulated=modulated)
    with torch.no_grad():
        for p in deform.parameters():
            p.normal_(0, 0.5)  # random offset / mask branches as well
    reference = torchvision.ops.DeformConv2d(4, 6, 3, stride=2, padding=1, groups=2)
    reference.load_state_dict({k: v for k, v in deform.state_dict().items() if k in ("weight", "bias")})
    x = torch.randn(2, 4, 9, 8)
    offset = deform.conv_offset(x)
    assert offset.shape == (2, 2 * 2 * 9, 5, 4)
    mask = torch.sigmoid(deform.conv_mask(x)) if modulated else None
    torch.testing.assert_close(deform(x), reference(x, offset, mask))


def test_offset_and_mask_branches_learn():
    deform = DeformConv2d(2, 3, 3, modulated=True)
    x = torch.randn(2, 2, 8, 8)
    deform(x).square().sum().backward()
    for p in (deform.conv_offset.weight, deform.conv_mask.weight, deform.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            {"in_channels": 3, "out_channels": 4, "groups": 2},
            "in_channels must be divisible by groups; got in_channels=3",
        ),
        ({"in_channels": 4, "out_channels": 4, "offset_groups": 3}, "offset_groups=3"),
        ({"in_channels": 4, "out_channels": 4, "kernel_size": 0}, "kernel_size=0"),
        ({"in_channels": 4, "out_channels": 4, "kernel_size": 2}, "kernel_size=2"),
    ],
)
def test_bad_configurations(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        DeformConv2d(**kwargs)
