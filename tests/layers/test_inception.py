"""Inception modules against torchvision's (the reference): same keys, same outputs, and the shapes and
parameter savings the papers state."""

import importlib

import pytest
import torch

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
    InceptionV3Aux,
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
