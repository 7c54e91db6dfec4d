"""The zoo's ResNet and VGG as segmentation backbones: ``forward_intermediates`` against torchvision's
feature extraction (``IntermediateLayerGetter`` / ``create_feature_extractor``), and the VGG's dilation and
Caffe rounding options against the same operations written with torch.nn."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.feature_extraction import create_feature_extractor

from nnatlas.models import create_model


def _features_only(model: torch.nn.Module) -> torch.nn.Module:
    """A VGG built on the meta device, materialised with random convolutions (its 123M-parameter
    classifier, which these tests never run, left uninitialised)."""
    model = model.to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(0)
    for m in model.features:
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data = torch.randn(m.weight.shape, generator=g) * (2 / m.weight[0].numel()) ** 0.5
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)
    return model


def _vgg(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    return _features_only(model)


def test_resnet_intermediates_equal_torchvisions_intermediate_layer_getter():
    # ResNet-50: torchvision's basic block refuses dilation (ours allows it, for DeepLab on ResNet-18).
    ours = create_model("resnet50", replace_stride_with_dilation=(False, True, True)).eval()
    ref = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]).eval()
    ref.load_state_dict(ours.state_dict())
    layers = {"relu": "stem", "layer1": "1", "layer2": "2", "layer3": "3", "layer4": "4"}
    getter = IntermediateLayerGetter(ref, return_layers=layers)
    x = torch.randn(2, 3, 64, 40)
    with torch.no_grad():
        maps = ours.forward_intermediates(x)
        expected = list(getter(x).values())
        assert len(maps) == 5
        for a, b in zip(maps, expected, strict=True):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(maps[-1], ours.forward_features(x))
        (only,) = ours.forward_intermediates(x, (2,))
        torch.testing.assert_close(only, expected[2])
    measured = tuple(64 // m.shape[-2] for m in maps)
    assert measured == ours.intermediate_strides == (2, 4, 8, 8, 8)
    assert tuple(m.shape[1] for m in maps) == ours.intermediate_channels == (64, 256, 512, 1024, 2048)


def test_resnet_intermediates_stop_after_the_deepest_index():
    model = create_model("resnet18")
    calls = []
    model.layer3.register_forward_hook(lambda *args: calls.append("layer3"))
    model.forward_intermediates(torch.randn(1, 3, 32, 32), (0, 2))
    assert calls == []


@pytest.mark.parametrize("indices", [(), (2, 1), (0, 5), (-1,), (1, 1)])
def test_bad_indices_are_rejected(indices):
    with pytest.raises(ValueError, match="indices must be"):
        create_model("resnet18").forward_intermediates(torch.randn(1, 3, 32, 32), indices)


def test_vgg_intermediates_equal_torchvisions_pooled_stages():
    ours = _vgg("vgg11")
    with torch.device("meta"):
        ref = torchvision.models.vgg11()
    ref = ref.to_empty(device="cpu").eval()
    ref.features.load_state_dict(ours.features.state_dict())
    pools = [f"features.{i}" for i, m in enumerate(ref.features) if isinstance(m, torch.nn.MaxPool2d)]
    extractor = create_feature_extractor(ref, return_nodes=pools)
    x = torch.randn(1, 3, 70, 64)
    with torch.no_grad():
        maps = ours.forward_intermediates(x)
        for a, b in zip(maps, extractor(x).values(), strict=True):
            torch.testing.assert_close(a, b)
    assert ours.intermediate_strides == (2, 4, 8, 16, 32) and ours.output_stride == 32


def test_vgg_dilation_keeps_stride_8_with_the_same_weights():
    # DeepLab-LargeFOV's VGG-16: pool4 and pool5 become 3x3 max pools of stride 1, conv5 dilation 2.
    model = _vgg("vgg16", replace_stride_with_dilation=(False, True, True))
    with torch.device("meta"):
        plain = create_model("vgg16")
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    assert model.output_stride == 8 and model.dilation == 4 and model.min_size == 8
    x = torch.randn(1, 3, 40, 48)
    feats = model.features
    with torch.no_grad():
        y = feats[:23](x)  # conv1_1 .. conv4_3 and their ReLUs, pools 1-3
        y = F.max_pool2d(y, 3, stride=1, padding=1)
        for i in (24, 26, 28):
            y = F.relu(F.conv2d(y, feats[i].weight, feats[i].bias, padding=2, dilation=2))
        y = F.max_pool2d(y, 3, stride=1, padding=1)
        torch.testing.assert_close(model.forward_intermediates(x, (4,))[0], y)
    assert y.shape[-2:] == (5, 6)


def test_vgg_ceil_mode_rounds_pooled_sizes_up():
    model = _vgg("vgg11", ceil_mode=True)
    x = torch.randn(1, 3, 45, 45)
    maps = model.forward_intermediates(x)
    assert [m.shape[-1] for m in maps] == [23, 12, 6, 3, 2]  # ceil(45 / 2), ceil(23 / 2), ...
    with torch.no_grad():
        first = F.max_pool2d(model.features[:2](x), 2, ceil_mode=True)
        torch.testing.assert_close(maps[0], first)


def test_bad_vgg_dilation_is_rejected():
    with pytest.raises(ValueError, match=r"3 booleans \(pool3, pool4, pool5\)"):
        create_model("vgg16", replace_stride_with_dilation=(True, True))
