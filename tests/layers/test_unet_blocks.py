"""U-Net's blocks (Ronneberger et al. 2015): sizes of valid and same convolutions, the crop against
torchvision's ``center_crop``, and the up-step against the same operations written with torch.nn."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import center_crop as tv_center_crop

from nnatlas.layers import UNetDoubleConv, UNetUp, center_crop, fit_to


def test_double_conv_loses_four_pixels_unpadded_and_none_padded():
    valid = UNetDoubleConv(3, 8)
    assert valid(torch.randn(2, 3, 572, 30)).shape == (2, 8, 568, 26)  # the paper's first level
    same = UNetDoubleConv(3, 8, padding=True, norm_layer=torch.nn.BatchNorm2d)
    assert same(torch.randn(2, 3, 17, 9)).shape == (2, 8, 17, 9)


def test_double_conv_parameters_and_bias_only_without_norm():
    # 9 C_in C_out + 9 C_out^2 weights, one bias per output channel and convolution.
    assert sum(p.numel() for p in UNetDoubleConv(1, 64).parameters()) == 9 * 64 + 64 + 9 * 64 * 64 + 64
    with_bn = UNetDoubleConv(4, 6, norm_layer=torch.nn.BatchNorm2d)
    assert all(m.bias is None for m in with_bn if isinstance(m, torch.nn.Conv2d))
    assert sum(p.numel() for p in with_bn.parameters()) == 9 * 4 * 6 + 9 * 6 * 6 + 2 * (2 * 6)


@pytest.mark.parametrize(("big", "small"), [((568, 568), (392, 392)), ((9, 12), (5, 4)), ((6, 6), (6, 6))])
def test_center_crop_matches_torchvision(big, small):
    x = torch.randn(2, 3, *big)
    assert torch.equal(center_crop(x, small), tv_center_crop(x, list(small)))


def test_center_crop_refuses_what_cannot_align():
    with pytest.raises(ValueError, match="got a 9x9 map and a 4x4 target"):
        center_crop(torch.randn(1, 1, 9, 9), (4, 4))
    with pytest.raises(ValueError, match="no larger than the map"):
        center_crop(torch.randn(1, 1, 4, 4), (6, 6))


def test_fit_to_pads_or_crops_at_the_bottom_right():
    x = torch.randn(1, 2, 4, 6)
    padded = fit_to(x, (5, 7))
    assert torch.equal(padded[..., :4, :6], x) and padded[..., 4:, :].abs().sum() == 0
    assert torch.equal(fit_to(x, (3, 5)), x[..., :3, :5])
    assert fit_to(x, (4, 6)) is x


def test_up_step_equals_the_same_operations_in_torch_nn():
    up = UNetUp(16, 8, 8)  # the paper's halving: 16 -> 8 by the 2x2 up-convolution
    x, skip = torch.randn(2, 16, 10, 10), torch.randn(2, 8, 28, 28)
    out = up(x, skip)
    u = F.conv_transpose2d(x, up.up.weight, up.up.bias, stride=2)  # (2, 8, 20, 20)
    ref = torch.cat([skip[..., 4:24, 4:24], u], dim=1)
    c1, c2 = up.conv[0], up.conv[2]
    ref = F.relu(F.conv2d(F.relu(F.conv2d(ref, c1.weight, c1.bias)), c2.weight, c2.bias))
    torch.testing.assert_close(out, ref)
    assert out.shape == (2, 8, 16, 16)


def test_padded_up_step_fits_an_odd_skip_and_works_without_skip():
    up = UNetUp(8, 4, 4, padding=True, norm_layer=torch.nn.BatchNorm2d)
    assert up(torch.randn(2, 8, 3, 3), torch.randn(2, 4, 7, 6)).shape == (2, 4, 7, 6)
    last = UNetUp(8, 0, 4, up_channels=6, padding=True)
    assert last.up.out_channels == 6 and last(torch.randn(2, 8, 3, 5)).shape == (2, 4, 6, 10)


def test_bad_skip_channels_are_rejected():
    with pytest.raises(ValueError, match="skip_channels must be an int >= 0; got skip_channels=-1"):
        UNetUp(8, -1, 4)
