"""ResNet blocks against torchvision.models.resnet given the same weights, over random configurations."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models import resnet as tv

from nnatlas.layers import BasicBlock, Bottleneck, PadShortcut

FAST = settings(max_examples=15, deadline=None)


def _downsample(inplanes: int, outplanes: int, stride: int) -> nn.Module | None:
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), nn.BatchNorm2d(outplanes)
    )


def _randomise_norms(module: nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)


def _assert_same(ours: nn.Module, reference: nn.Module, x: torch.Tensor) -> torch.Tensor:
    _randomise_norms(ours)
    reference.load_state_dict(ours.state_dict())  # strict: same keys and shapes
    ours.eval(), reference.eval()
    out = ours(x)
    torch.testing.assert_close(out, reference(x))
    return out


@FAST
@given(
    inplanes=st.sampled_from([4, 8]),
    planes=st.sampled_from([4, 8]),
    stride=st.integers(1, 2),
    n=st.integers(4, 9),
)
def test_basic_block_matches_torchvision(inplanes, planes, stride, n):
    ours = BasicBlock(inplanes, planes, stride, _downsample(inplanes, planes, stride))
    reference = tv.BasicBlock(inplanes, planes, stride, _downsample(inplanes, planes, stride))
    out = _assert_same(ours, reference, torch.randn(2, inplanes, n, n))
    assert out.shape == (2, planes, -(-n // stride), -(-n // stride))


@FAST
@given(
    planes=st.sampled_from([2, 4]),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 3),
    groups=st.sampled_from([1, 2, 4]),
    base_width=st.sampled_from([32, 64]),
    n=st.integers(5, 9),
)
def test_bottleneck_matches_torchvision(planes, stride, dilation, groups, base_width, n):
    inplanes = 8
    kwargs = {"groups": groups, "base_width": base_width, "dilation": dilation}
    out_planes = planes * Bottleneck.expansion
    ours = Bottleneck(inplanes, planes, stride, _downsample(inplanes, out_planes, stride), **kwargs)
    reference = tv.Bottleneck(inplanes, planes, stride, _downsample(inplanes, out_planes, stride), **kwargs)
    out = _assert_same(ours, reference, torch.randn(2, inplanes, n, n))
    assert out.shape == (2, out_planes, -(-n // stride), -(-n // stride))
    assert ours.conv2.groups == groups and ours.conv2.dilation == (dilation, dilation)


def test_injected_norm_layer_and_plain_block():
    block = BasicBlock(4, 4, norm_layer=lambda c: nn.GroupNorm(2, c))
    assert isinstance(block.bn1, nn.GroupNorm)
    plain = BasicBlock(4, 4, residual=False).eval()
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        plain.conv2.weight.zero_()
        plain.bn2.bias.zero_()
    # without the shortcut, a silenced second conv gives zeros (with it, relu(x))
    assert not plain(x).any()


def test_pad_shortcut_is_parameter_free_option_a():
    shortcut = PadShortcut(4, 8, 2)
    x = torch.randn(2, 4, 7, 7)
    y = shortcut(x)
    assert y.shape == (2, 8, 4, 4) and not list(shortcut.parameters())
    torch.testing.assert_close(y[:, 2:6], x[:, :, ::2, ::2])
    assert not y[:, :2].any() and not y[:, 6:].any()
    with pytest.raises(ValueError, match="out_planes >= in_planes"):
        PadShortcut(8, 4, 1)
