"""ASPP against torchvision's DeepLabV3 ASPP (the reference), and DeepLab v2's summed ASPP against plain
dilated convolutions (Chen et al. 2017)."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.segmentation.deeplabv3 import ASPP as TorchvisionASPP
from torchvision.models.segmentation.deeplabv3 import ASPPPooling as TorchvisionASPPPooling

from nnatlas.layers import ASPP, ASPPConv, ASPPPooling, ASPPSum


def _randomise_batch_norm(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = 1 + 0.2 * torch.randn(m.weight.shape, generator=g)
            m.bias.data = 0.2 * torch.randn(m.bias.shape, generator=g)
            m.running_mean = 0.2 * torch.randn(m.running_mean.shape, generator=g)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)


@pytest.mark.parametrize("rates", [(12, 24, 36), (6, 12, 18), (2,)])
def test_aspp_matches_torchvision_in_keys_and_outputs(rates):
    ref = TorchvisionASPP(32, list(rates), out_channels=16)
    _randomise_batch_norm(ref)
    ours = ASPP(32, rates, 16)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 32, 9, 11)
    ours.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    ours.train(), ref.train()
    torch.manual_seed(0)
    a = ours(x)
    torch.manual_seed(0)
    b = ref(x)  # the same dropout mask: same random stream, same draws
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert a.shape == (2, 16, 9, 11)


def test_image_pooling_broadcasts_what_torchvision_interpolates():
    ref = TorchvisionASPPPooling(8, 4).eval()
    _randomise_batch_norm(ref)
    ours = ASPPPooling(8, 4).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 8, 5, 7)
    out = ours(x)
    torch.testing.assert_close(out, ref(x), atol=1e-6, rtol=1e-6)
    assert torch.equal(out, out[..., :1, :1].expand_as(out))  # the same vector at every position


def test_aspp_without_image_pooling_and_parameter_count():
    # Branches: 1x1 (C_in C), len(rates) 3x3 (9 C_in C), pooling 1x1 (C_in C), each with BN (2C);
    # projection (n_branches C) -> C, with BN.
    c_in, c, rates = 10, 6, (1, 2, 3)
    n = len(rates) + 2
    expected = c_in * c + len(rates) * 9 * c_in * c + c_in * c + n * 2 * c + n * c * c + 2 * c
    assert sum(p.numel() for p in ASPP(c_in, rates, c).parameters()) == expected
    no_pool = ASPP(c_in, rates, c, image_pooling=False)
    assert len(no_pool.convs) == n - 1 and no_pool(torch.randn(2, c_in, 4, 4)).shape == (2, c, 4, 4)


def test_aspp_conv_is_a_dilated_3x3_that_keeps_the_size():
    layer = ASPPConv(4, 5, 6)
    conv = layer[0]
    assert conv.dilation == (6, 6) and conv.padding == (6, 6) and conv.bias is None
    assert layer(torch.randn(2, 4, 7, 3)).shape == (2, 5, 7, 3)


def test_aspp_sum_is_the_sum_of_dilated_convolutions():
    head = ASPPSum(6, 3, (6, 12, 18, 24))
    x = torch.randn(2, 6, 13, 10)
    expected = sum(
        F.conv2d(x, conv.weight, conv.bias, padding=r, dilation=r)
        for conv, r in zip(head.branches, (6, 12, 18, 24), strict=True)
    )
    torch.testing.assert_close(head(x), expected)
    assert sum(p.numel() for p in head.parameters()) == 4 * (9 * 6 + 1) * 3
    for conv in head.branches:  # N(0, 0.01) weights, zero bias, as DeepLab v2's prototxt
        assert conv.weight.std().item() < 0.02 and torch.equal(conv.bias, torch.zeros(3))


@pytest.mark.parametrize("rates", [(), (0, 6), (6, 1.5), (True,)])
def test_bad_rates_are_rejected(rates):
    with pytest.raises(ValueError, match="atrous_rates must be a non-empty sequence of ints >= 1"):
        ASPP(8, rates)
    with pytest.raises(ValueError, match="atrous_rates"):
        ASPPSum(8, 2, rates)


def test_bad_dropout_is_rejected():
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\); got dropout=1.0"):
        ASPP(8, (6,), dropout=1.0)
