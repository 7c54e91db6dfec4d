"""Convolution variants against torch.nn / torchvision and against the notes' formulas.

References: the notes' parameter formula ``(k_w * k_h * c_in + 1) * c_out``; Dumoulin & Visin 2016 ("A guide
to convolution arithmetic") for transposed convolution; Howard et al. 2017 (MobileNets, eq. 5) for the
depthwise-separable cost ratio; Simonyan & Zisserman 2015 (VGG, section 2.3) for two 3x3 = one 5x5.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.ops import Conv2dNormActivation

from nnatlas.analysis import conv_output_size, conv_transpose_output_size
from nnatlas.layers import (
    ConvNormAct,
    DepthwiseSeparableConv2d,
    bilinear_upsampling_kernel,
    conv2d,
    conv_transpose2d,
    dilated_conv2d,
    effective_kernel_size,
    grouped_conv2d,
    same_padding,
    upsampling_conv_transpose2d,
)

FAST = settings(max_examples=25, deadline=None)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def gradient_receptive_field(module: nn.Module, channels: int, size: int) -> torch.Tensor:
    """Boolean ``(size, size)`` map of the input pixels on which the centre output depends.

    Measured, not computed: d(out_centre)/d(input) in float64 with all weights positive, so no cancellation
    can hide a pixel that is inside the receptive field.
    """
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(0.1, 1.0)
    x = torch.rand(1, channels, size, size, dtype=torch.float64, requires_grad=True)
    out = module(x)
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    return x.grad[0].abs().sum(0) > 0


def extent(mask: torch.Tensor) -> tuple[int, int]:
    rows = mask.any(1).nonzero()
    cols = mask.any(0).nonzero()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


# --- parameter counts -------------------------------------------------------------------------------


@FAST
@given(
    groups=st.integers(1, 4),
    a=st.integers(1, 4),
    b=st.integers(1, 4),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    bias=st.booleans(),
)
def test_parameter_formula_of_the_notes(groups, a, b, kh, kw, bias):
    c_in, c_out = groups * a, groups * b
    conv = conv2d(c_in, c_out, (kh, kw), groups=groups, bias=bias, padding="valid")
    # the notes: (k_w * k_h * c_in + bias) * c_out, with c_in / groups channels per filter when grouped
    assert n_params(conv) == (kw * kh * c_in // groups + int(bias)) * c_out
    reference = nn.Conv2d(c_in, c_out, (kh, kw), groups=groups, bias=bias)
    assert n_params(conv) == n_params(reference)
    block = ConvNormAct(c_in, c_out, (kh, kw), groups=groups, norm_layer=None, act_layer=None, bias=bias)
    assert n_params(block) == n_params(reference)
    # grouping divides the weights (not the biases) by the number of groups
    dense = conv2d(c_in, c_out, (kh, kw), bias=False, padding="valid")
    grouped = grouped_conv2d(c_in, c_out, (kh, kw), groups=groups, bias=False, padding="valid")
    assert n_params(grouped) * groups == n_params(dense)


@pytest.mark.parametrize("channels", [1, 3, 8])
def test_two_stacked_3x3_see_as_far_as_one_5x5_with_fewer_weights(channels):
    stacked = nn.Sequential(
        conv2d(channels, channels, 3, bias=False), conv2d(channels, channels, 3, bias=False)
    )
    single = conv2d(channels, channels, 5, bias=False)
    rf_stacked = gradient_receptive_field(stacked, channels, 11)
    rf_single = gradient_receptive_field(single, channels, 11)
    assert extent(rf_stacked) == (5, 5)
    assert torch.equal(rf_stacked, rf_single)
    assert n_params(stacked) == 18 * channels**2
    assert n_params(single) == 25 * channels**2


# --- "same" padding and output sizes ----------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@FAST
@given(n=st.integers(1, 12), k=st.integers(1, 6), d=st.integers(1, 3), s=st.integers(1, 3))
def test_same_padding_keeps_ceil_size_and_matches_torch_same(n, k, d, s):
    if (d * (k - 1)) % 2 == 1 and s > 1:
        with pytest.raises(ValueError, match=f"kernel_size={k}.*stride={s}"):
            ConvNormAct(2, 3, k, stride=s, dilation=d)
        return
    block = ConvNormAct(2, 3, k, stride=s, dilation=d, norm_layer=None, act_layer=None)
    x = torch.randn(1, 2, n, n + 1)
    y = block(x)
    assert y.shape[2:] == (math.ceil(n / s), math.ceil((n + 1) / s))
    if s == 1:  # torch implements "same" itself at stride 1 (asymmetric for even kernels)
        reference = nn.Conv2d(2, 3, k, padding="same", dilation=d)
        reference.load_state_dict(block.conv.state_dict())
        torch.testing.assert_close(y, reference(x))


@FAST
@given(
    n=st.integers(1, 12),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    p=st.integers(0, 2),
    d=st.integers(1, 3),
    op=st.integers(0, 2),
)
def test_output_sizes_match_the_arithmetic(n, k, s, p, d, op):
    if n + 2 * p >= d * (k - 1) + 1:
        conv = conv2d(1, 1, k, stride=s, padding=p, dilation=d)
        assert conv(torch.zeros(1, 1, n, n)).shape[-1] == conv_output_size(n, k, s, p, d)
    if op < max(s, d) and (n - 1) * s - 2 * p + d * (k - 1) + op + 1 >= 1:
        up = conv_transpose2d(1, 1, k, stride=s, padding=p, output_padding=op, dilation=d)
        assert up(torch.zeros(1, 1, n, n)).shape[-1] == conv_transpose_output_size(n, k, s, p, op, d)


def test_conv_norm_act_matches_torchvision():
    for kwargs in [
        {"kernel_size": 3},
        {"kernel_size": 5, "stride": 2, "dilation": 2},
        {"kernel_size": 3, "groups": 2, "activation_layer": nn.SiLU},
        {"kernel_size": 1, "norm_layer": None},
    ]:
        tv_kwargs = dict(kwargs)
        ours_kwargs = dict(kwargs)
        if "activation_layer" in ours_kwargs:
            ours_kwargs["act_layer"] = ours_kwargs.pop("activation_layer")
        ours = ConvNormAct(4, 6, **ours_kwargs)
        reference = Conv2dNormActivation(4, 6, **tv_kwargs)
        assert list(ours.state_dict()) == list(reference.state_dict())
        reference.load_state_dict(ours.state_dict())
        ours.eval(), reference.eval()
        x = torch.randn(2, 4, 9, 9)
        torch.testing.assert_close(ours(x), reference(x))
        assert (ours.norm is None) == (kwargs.get("norm_layer", nn.BatchNorm2d) is None)


def test_conv_norm_act_activation_in_place_only_where_supported():
    assert ConvNormAct(2, 3).act.inplace  # ReLU, as torchvision's default
    assert not ConvNormAct(2, 3, inplace=False).act.inplace
    block = ConvNormAct(2, 3, act_layer=nn.GELU)  # GELU takes no inplace argument
    x = torch.randn(1, 2, 5, 5)
    torch.testing.assert_close(block.eval()(x), F.gelu(block.norm(block.conv(x))))


# --- dilated -----------------------------------------------------------------------------------------


@FAST
@given(k=st.integers(1, 4), dh=st.integers(1, 3), dw=st.integers(1, 3), n=st.integers(10, 13))
def test_dilated_conv_is_a_dense_conv_with_holes(k, dh, dw, n):
    conv = dilated_conv2d(2, 3, k, dilation=(dh, dw), padding="valid")
    # the notes: taps without a red dot are zero. Place the k x k taps d apart in a zero kernel.
    rows = [i * dh for i in range(k)]
    cols = [j * dw for j in range(k)]
    dense_kernel = torch.zeros(3, 2, rows[-1] + 1, cols[-1] + 1)
    dense_kernel[:, :, ::dh, ::dw] = conv.weight.detach()
    assert tuple(dense_kernel.shape[2:]) == effective_kernel_size((k, k), (dh, dw))
    x = torch.randn(1, 2, n, n)
    torch.testing.assert_close(conv(x), F.conv2d(x, dense_kernel, conv.bias))


@pytest.mark.parametrize(("k", "d"), [(3, 1), (3, 2), (3, 4), (5, 3), (2, 3)])
def test_dilated_receptive_field_by_gradient(k, d):
    conv = dilated_conv2d(1, 1, k, dilation=d, padding="valid", bias=False)
    size = 2 * effective_kernel_size(k, d) + 1
    rf = gradient_receptive_field(conv, 1, size)
    # the notes: k + (r - 1)(k - 1); k taps only, the holes stay blind
    assert extent(rf) == (k + (d - 1) * (k - 1),) * 2
    assert int(rf.sum()) == k * k


# --- transposed --------------------------------------------------------------------------------------


@FAST
@given(
    groups=st.integers(1, 2),
    a=st.integers(1, 3),
    b=st.integers(1, 3),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    p=st.integers(0, 2),
    d=st.integers(1, 2),
    n=st.integers(6, 11),
)
def test_transposed_conv_is_the_adjoint_of_conv(groups, a, b, k, s, p, d, n):
    c_in, c_out = groups * a, groups * b
    if n + 2 * p < d * (k - 1) + 1:
        return
    conv = conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, groups=groups, bias=False).double()
    # output_padding picks the input size n among those that a strided conv maps to the same size
    op = (n + 2 * p - d * (k - 1) - 1) % s
    adjoint = conv_transpose2d(
        c_out, c_in, k, stride=s, padding=p, dilation=d, groups=groups, output_padding=op, bias=False
    ).double()
    adjoint.weight = conv.weight  # shared weights, (c_out, c_in / groups, k, k)
    x = torch.randn(2, c_in, n, n, dtype=torch.float64)
    cx = conv(x)
    y = torch.randn_like(cx)
    aty = adjoint(y)
    assert aty.shape == x.shape
    lhs, rhs = (cx * y).sum(), (x * aty).sum()
    assert abs(lhs - rhs) <= 1e-5 * max(1.0, abs(lhs))


def test_notes_figure_2x2_to_4x4():
    up = conv_transpose2d(1, 1, 3, stride=1, padding=0, bias=False)
    y = torch.randn(1, 1, 2, 2)
    out = up(y)
    assert out.shape == (1, 1, 4, 4)
    # the figure's construction (Dumoulin & Visin, relationship 8): pad the 2x2 input by k - 1 = 2 zeros and
    # run an ordinary convolution with the kernel flipped
    flipped = up.weight.flip(-1, -2).transpose(0, 1)
    torch.testing.assert_close(out, F.conv2d(y, flipped, padding=2))


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_bilinear_upsampling_matches_interpolate_away_from_the_border(factor):
    up = upsampling_conv_transpose2d(3, 3, factor=factor, bilinear=True)
    x = torch.randn(2, 3, 7, 6)
    out = up(x)
    reference = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert out.shape == reference.shape == (2, 3, 7 * factor, 6 * factor)
    inner = (..., slice(factor, -factor), slice(factor, -factor))
    torch.testing.assert_close(out[inner], reference[inner])


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5])
def test_bilinear_kernel_centre_rule_is_fcns(factor):
    # FCN's surgery.upsample_filt(size): factor = (size + 1) // 2, centre = factor - 1 for an odd size and
    # factor - 0.5 for an even one. An odd factor gives an odd kernel with one peak of 1 at f - 1; an even
    # factor an even kernel with two equal peaks (1 - 0.5 / f)^2 at f - 1 and f.
    w = bilinear_upsampling_kernel(factor)
    size = 2 * factor - factor % 2
    assert w.shape == (size, size)
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / ((size + 1) // 2)
    torch.testing.assert_close(w, torch.outer(taps, taps).float())
    peaks = (w == w.max()).nonzero().tolist()
    if factor % 2:
        assert peaks == [[factor - 1, factor - 1]] and w.max() == 1
    else:
        assert peaks == [[i, j] for i in (factor - 1, factor) for j in (factor - 1, factor)]
        torch.testing.assert_close(w.max(), torch.tensor((1 - 0.5 / factor) ** 2))


# --- depthwise-separable -----------------------------------------------------------------------------


@FAST
@given(c_in=st.integers(1, 4), c_out=st.integers(1, 5), k=st.sampled_from([1, 3, 5]), s=st.integers(1, 2))
def test_depthwise_separable_is_a_factorised_dense_conv(c_in, c_out, k, s):
    block = DepthwiseSeparableConv2d(
        c_in, c_out, k, stride=s, norm_layer=None, act_layer=None, mid_norm=False, mid_act=False
    )
    dw, pw = block.depthwise.conv, block.pointwise.conv
    # dense kernel K[o, i] = P[o, i] * D[i], bias P @ b_dw + b_pw
    kernel = pw.weight[:, :, 0, 0, None, None] * dw.weight[:, 0][None]  # (c_out, c_in, k, k)
    bias = pw.weight[:, :, 0, 0] @ dw.bias + pw.bias
    x = torch.randn(2, c_in, 9, 9)
    torch.testing.assert_close(block(x), F.conv2d(x, kernel, bias, stride=s, padding=k // 2))
    weights = dw.weight.numel() + pw.weight.numel()
    dense = k * k * c_in * c_out
    assert weights / dense == pytest.approx(1 / c_out + 1 / k**2)  # MobileNets, eq. 5


def test_depthwise_separable_with_norm_and_multiplier():
    block = DepthwiseSeparableConv2d(4, 10, 3, stride=2, depth_multiplier=2)
    assert block.depthwise.conv.groups == 4 and block.depthwise.conv.out_channels == 8
    assert isinstance(block.depthwise.norm, nn.BatchNorm2d) and isinstance(block.pointwise.act, nn.ReLU)
    assert block(torch.randn(2, 4, 9, 9)).shape == (2, 10, 5, 5)


# --- bad configurations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "pattern"),
    [
        (
            lambda: conv2d(6, 8, 3, groups=4),
            "in_channels must be divisible by groups; got in_channels=6, groups=4",
        ),
        (
            lambda: grouped_conv2d(8, 6, 3, groups=4),
            "out_channels must be divisible by groups; got out_channels=6",
        ),
        (lambda: conv2d(3, 8, 0), "kernel_size must be >= 1; got kernel_size=0"),
        (lambda: ConvNormAct(3, 8, (3, -1)), r"kernel_size must be >= 1; got kernel_size=\(3, -1\)"),
        (lambda: ConvNormAct(3, 8, 4, stride=2), "kernel_size=4.*stride=2"),
        (lambda: same_padding(2, stride=2), "kernel_size=2, dilation=1, stride=2"),
        (lambda: conv2d(3, 8, 3, stride=0), "stride must be >= 1; got stride=0"),
        (lambda: dilated_conv2d(3, 8, 3, dilation=0), "dilation must be >= 1; got dilation=0"),
        (lambda: effective_kernel_size(-3, 2), "kernel_size must be >= 1; got kernel_size=-3"),
        (lambda: conv2d(3, 8, 3, padding="full"), "padding=.full."),
        (lambda: conv2d(0, 8, 3), "in_channels must be >= 1; got in_channels=0"),
        (lambda: conv_transpose2d(2, 2, 3, stride=2, output_padding=2), "output_padding=2"),
        (lambda: upsampling_conv_transpose2d(2, 3, factor=2, bilinear=True), "out_channels=3"),
        (lambda: DepthwiseSeparableConv2d(3, 8, depth_multiplier=0), "depth_multiplier=0"),
    ],
)
def test_bad_configurations_name_the_argument(build, pattern):
    with pytest.raises(ValueError, match=pattern):
        build()


def test_bad_types():
    with pytest.raises(TypeError, match="kernel_size"):
        conv2d(3, 8, 2.5)
    with pytest.raises(TypeError, match="in_channels"):
        conv2d("3", 8, 3)
