"""Inception modules against torchvision's (the reference): same keys, same outputs, and the shapes and
parameter savings the papers state."""

import importlib

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nnatlas.analysis import count_parameters
from nnatlas.layers import (
    BasicConv2d,
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
    InceptionV1,
    InceptionV1Aux,
    InceptionV2,
    InceptionV3Aux,
    no_norm,
)

# torchvision.models.googlenet is also the name of a builder function: import the modules by path.
tv_v1 = importlib.import_module("torchvision.models.googlenet")
tv_v3 = importlib.import_module("torchvision.models.inception")

# (ours, torchvision's, constructor arguments, input shape); sizes as in the networks, a small batch.
CASES = [
    (InceptionV1, tv_v1.Inception, (192, 64, 96, 128, 16, 32, 32), (2, 192, 9, 9)),
    (InceptionV1Aux, tv_v1.InceptionAux, (512, 10), (2, 512, 7, 7)),
    (InceptionA, tv_v3.InceptionA, (192, 32), (2, 192, 9, 9)),
    (InceptionB, tv_v3.InceptionB, (288,), (2, 288, 9, 9)),
    (InceptionC, tv_v3.InceptionC, (768, 128), (2, 768, 7, 7)),
    (InceptionD, tv_v3.InceptionD, (768,), (2, 768, 7, 7)),
    (InceptionE, tv_v3.InceptionE, (1280,), (2, 1280, 4, 4)),
    (InceptionV3Aux, tv_v3.InceptionAux, (768, 10), (2, 768, 17, 17)),
]


def _randomize(module: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


@pytest.mark.parametrize("ours_cls,ref_cls,args,shape", CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_modules_load_torchvision_state_dicts_and_agree(ours_cls, ref_cls, args, shape):
    ref = ref_cls(*args).eval()
    _randomize(ref)
    ours = ours_cls(*args).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(shape)
    with torch.no_grad():
        expected = ref(x)
        got = ours(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    if hasattr(ours, "out_channels"):
        assert got.shape[1] == ours.out_channels


def test_grid_reduction_halves_the_grid_and_grows_the_filter_bank():
    # Szegedy et al. 2016, figure 10 and table 1: 35x35x288 -> 17x17x768 -> 8x8x1280.
    with torch.device("meta"):
        y = InceptionB(288)(torch.empty(1, 288, 35, 35))
        assert y.shape == (1, 768, 17, 17)
        assert InceptionD(768)(torch.empty(1, 768, 17, 17)).shape == (1, 1280, 8, 8)
        assert InceptionE(1280)(torch.empty(1, 1280, 8, 8)).shape == (1, 2048, 8, 8)


def test_factorizations_save_the_weights_the_paper_states():
    # Section 3.1: two 3x3 instead of one 5x5 cost 18/25 = 72% of the weights;
    # section 3.2: 1x7 then 7x1 instead of 7x7 cost 14/49.
    c = 8
    two_3x3 = torch.nn.Sequential(BasicConv2d(c, c, kernel_size=3), BasicConv2d(c, c, kernel_size=3))
    one_5x5 = BasicConv2d(c, c, kernel_size=5)
    conv_weights = lambda m: sum(p.numel() for n, p in m.named_parameters() if "conv" in n)  # noqa: E731
    assert conv_weights(two_3x3) / conv_weights(one_5x5) == 18 / 25
    asym = torch.nn.Sequential(BasicConv2d(c, c, kernel_size=(1, 7)), BasicConv2d(c, c, kernel_size=(7, 1)))
    assert conv_weights(asym) / conv_weights(BasicConv2d(c, c, kernel_size=7)) == 14 / 49
    # Section 3.2: a 3x1 then a 1x3 convolution is "33% cheaper" than one 3x3: it costs 6/9 of it.
    asym3 = torch.nn.Sequential(BasicConv2d(c, c, kernel_size=(1, 3)), BasicConv2d(c, c, kernel_size=(3, 1)))
    assert conv_weights(asym3) / conv_weights(BasicConv2d(c, c, kernel_size=3)) == 6 / 9  # 67%, not 33%


def test_paper_5x5_branch_option():
    paper = InceptionV1(192, 64, 96, 128, 16, 32, 32, branch3_kernel_size=5)
    default = InceptionV1(192, 64, 96, 128, 16, 32, 32)
    assert paper.branch3[1].conv.kernel_size == (5, 5) and default.branch3[1].conv.kernel_size == (3, 3)
    assert count_parameters(paper) - count_parameters(default) == 16 * 32 * (25 - 9)
    assert paper(torch.randn(1, 192, 7, 7)).shape == (1, 256, 7, 7)
    with pytest.raises(ValueError, match="branch3_kernel_size must be 3 .* or 5"):
        InceptionV1(192, 64, 96, 128, 16, 32, 32, branch3_kernel_size=7)


def test_basic_conv_uses_torchvisions_batch_norm_epsilon():
    m = BasicConv2d(3, 4, kernel_size=3)
    assert m.bn.eps == 1e-3 and m.conv.bias is None
    assert set(m.state_dict()) == set(tv_v3.BasicConv2d(3, 4, kernel_size=3).state_dict())


def test_basic_conv_without_norm_is_a_biased_conv_and_relu():
    m = BasicConv2d(3, 5, kernel_size=3, padding=1, norm_layer=no_norm, bias=True)
    x = torch.randn(2, 3, 6, 6)
    expected = F.relu(F.conv2d(x, m.conv.weight, m.conv.bias, padding=1))
    torch.testing.assert_close(m(x), expected)
    assert set(m.state_dict()) == {"conv.weight", "conv.bias"}


# --- BN-Inception (Ioffe & Szegedy 2015, figure 5) ----------------------------------------------------


def _weights(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.dim() > 1)


def test_inception_v2_module_branches_against_functional_ops():
    # 3a of figure 5: 64 | 64 -> 64 | 64 -> 96 -> 96 | avg + 32. BasicConv2d without norm keeps the
    # reference a few functional calls.
    conv = lambda *a, **k: BasicConv2d(*a, norm_layer=no_norm, bias=True, **k)  # noqa: E731
    m = InceptionV2(192, 64, 64, 64, 64, 96, 32, conv_layer=conv).eval()
    x = torch.randn(2, 192, 9, 9)

    def cbr(layer, inp, **kw):
        return F.relu(F.conv2d(inp, layer.conv.weight, layer.conv.bias, **kw))

    b1 = cbr(m.branch1, x)
    b2 = cbr(m.branch2[1], cbr(m.branch2[0], x), padding=1)
    b3 = cbr(m.branch3[2], cbr(m.branch3[1], cbr(m.branch3[0], x), padding=1), padding=1)
    b4 = cbr(m.branch4[1], F.avg_pool2d(x, 3, stride=1, padding=1))
    with torch.no_grad():
        torch.testing.assert_close(m(x), torch.cat([b1, b2, b3, b4], 1))
    assert m.out_channels == 256 == m(x).shape[1]
    # The double-3x3 branch replaces GoogLeNet's 5x5: two 3x3 of 64 -> 96 -> 96 instead of one 5x5 64 -> 96.
    assert [c.conv.kernel_size for c in m.branch3] == [(1, 1), (3, 3), (3, 3)]


def test_inception_v2_reduction_module_of_figure_5():
    # 3c: stride 2, no 1x1 branch, "max + pass through": 128 -> 160 | 64 -> 96 -> 96 | pool (320 channels).
    m = InceptionV2(320, 0, 128, 160, 64, 96, 0, pool="max", stride=2)
    assert m.out_channels == 160 + 96 + 320 == 576 and m.branch1 is None and _weights(m.branch4) == 0
    with torch.device("meta"):
        assert m.to("meta")(torch.empty(1, 320, 28, 28)).shape == (1, 576, 14, 14)


@settings(max_examples=15, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12))
def test_inception_v2_grid_reduction_halves_any_size_with_a_pass_through_pool(h, w):
    # The same module, narrower: every branch gives ceil(H / 2), the pool passes its input through.
    m = InceptionV2(6, 0, 4, 5, 3, 4, 0, pool="max", stride=2).eval()
    x = torch.randn(1, 6, h, w)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (1, 5 + 4 + 6, -(-h // 2), -(-w // 2)) == (1, m.out_channels, *y.shape[-2:])
    torch.testing.assert_close(y[:, 9:], F.max_pool2d(x, 3, stride=2, padding=1))


def test_inception_v2_max_pool_projection_and_bad_arguments():
    m = InceptionV2(1024, 352, 192, 320, 192, 224, 128, pool="max")  # 5b
    assert isinstance(m.branch4[0], torch.nn.MaxPool2d) and m.out_channels == 1024
    with pytest.raises(ValueError, match="pool must be 'avg' or 'max'; got 'sum'"):
        InceptionV2(8, 1, 1, 1, 1, 1, 1, pool="sum")
    with pytest.raises(ValueError, match="stride must be 1 or 2; got 3"):
        InceptionV2(8, 1, 1, 1, 1, 1, 1, stride=3)
    with pytest.raises(ValueError, match="pool_proj must be an int >= 0"):
        InceptionV2(8, 1, 1, 1, 1, 1, -1)


# --- GoogLeNet's auxiliary classifier as the paper ----------------------------------------------------


def test_paper_auxiliary_pooling_is_5x5_stride_3():
    aux = InceptionV1Aux(512, 10, paper_pool=True).eval()
    x = torch.randn(2, 512, 14, 14)
    pooled = F.avg_pool2d(x, 5, stride=3)  # section 5: "5x5 filter size and stride 3 ... 4x4x512"
    assert pooled.shape[-2:] == (4, 4)
    h = torch.flatten(aux.conv(pooled), 1)
    expected = aux.fc2(F.relu(aux.fc1(h)))
    with torch.no_grad():
        torch.testing.assert_close(aux(x), expected)
        # torchvision's adaptive pooling gives other windows on the same 14x14 map
        adaptive = InceptionV1Aux(512, 10).eval()
        adaptive.load_state_dict(aux.state_dict())
        assert not torch.allclose(adaptive(x), expected)
        assert aux(torch.randn(1, 512, 16, 16)).shape == (1, 10)
    with pytest.raises(ValueError, match="14x14 to 16x16 map .* gave 3x3"):
        aux(torch.randn(1, 512, 13, 13))
