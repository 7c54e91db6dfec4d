"""DeepLab v1/v2/v3/v3+ (Chen et al.): parameter counts of the papers and of torchvision, output strides
measured from feature shapes, torchvision's DeepLabV3 as the reference for ``deeplabv3_resnet50``."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import get_model_weights

from nnatlas.analysis import count_parameters, receptive_field
from nnatlas.layers import ASPP, ASPPSum
from nnatlas.models import create_model
from nnatlas.models.classification import VGG, ResNet

H, W = 96, 64


def _meta(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs).eval()


def _stride(features: torch.Tensor) -> tuple[float, float]:
    return H / features.shape[-2], W / features.shape[-1]


def test_deeplab_v1_is_largefov_with_20_5m_parameters():
    model = _meta("deeplab_v1")
    # VGG-16's convolutions, fc6 3x3 512 -> 1024, fc7 1x1 1024 -> 1024, fc8 1x1 1024 -> 21, all with bias.
    expected = 14_714_688 + (9 * 512 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 21 + 21)
    assert count_parameters(model) == expected == 20_505_429  # the paper's table: 20.5M (LargeFOV)
    assert isinstance(model.backbone, VGG)
    fc6 = model.classifier.fc6
    assert fc6.kernel_size == (3, 3) and fc6.dilation == (12, 12) and fc6.out_channels == 1024
    convs = [m for m in model.backbone.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1] * 10 + [2] * 3  # conv5_1..3 dilated by 2
    pools = [m for m in model.backbone.features if isinstance(m, torch.nn.MaxPool2d)]
    assert [p.stride for p in pools] == [2, 2, 2, 1, 1]


def test_output_stride_of_deeplab_v1_is_8():
    model = _meta("deeplab_v1")
    (features,) = model.backbone.forward_intermediates(torch.empty(1, 3, H, W, device="meta"), (4,))
    assert _stride(features) == (8, 8) and model.backbone.output_stride == 8
    assert model(torch.empty(2, 3, H, W, device="meta"))["out"].shape == (2, 21, H, W)


@pytest.mark.parametrize(("output_stride", "dilations"), [(16, [2, 4, 8]), (8, [4, 8, 16])])
def test_deeplab_v3_output_stride_and_multi_grid(output_stride, dilations):
    model = _meta("deeplab_v3", backbone="resnet50", output_stride=output_stride)
    (features,) = model.backbone.forward_intermediates(torch.empty(1, 3, H, W, device="meta"), (4,))
    assert _stride(features) == (output_stride, output_stride)
    # Multi-grid (1, 2, 4) times the rate of block4 (2 at stride 16, 4 at 8), section 3.2 of the paper.
    assert [b.conv2.dilation[0] for b in model.backbone.layer4] == dilations
    aspp = model.classifier[0]
    assert isinstance(aspp, ASPP) and aspp.atrous_rates == {16: (6, 12, 18), 8: (12, 24, 36)}[output_stride]
    assert len(model.classifier) == 2  # the paper's head: ASPP, then the 1x1 classifier
    assert model(torch.empty(2, 3, H, W, device="meta"))["out"].shape == (2, 21, H, W)


def test_deeplab_v3plus_decoder_works_at_stride_4():
    model = _meta("deeplab_v3plus", num_classes=5)
    seen = {}

    def keep(name):
        def hook(module, inputs, output):
            seen[name] = output

        return hook

    model.decoder.register_forward_hook(keep("decoder"))
    model.aspp.register_forward_hook(keep("aspp"))
    out = model(torch.empty(2, 3, H, W, device="meta"))["out"]
    assert _stride(seen["decoder"]) == (4, 4) and seen["decoder"].shape[1] == 5
    assert _stride(seen["aspp"]) == (16, 16)  # the encoder at output stride 16
    assert out.shape == (2, 5, H, W)
    # The decoder's input: the ASPP output (128 here) and the 48 reduced low-level channels of layer1.
    assert model.decoder[0].in_channels == 128 + 48 and model.reduce[0].out_channels == 48


def test_deeplab_v3plus_defaults_are_a_small_cpu_network():
    model = _meta("deeplab_v3plus")
    assert isinstance(model.backbone, ResNet) and model.backbone.stage_channels == (64, 128, 256, 512)
    assert model.backbone.output_stride == 16 and model.aspp.out_channels == 128
    assert count_parameters(model) < 14_000_000  # ResNet-18's 11.2M features and a light head


def test_deeplab_v2_sums_four_dilated_branches_on_a_stride_8_resnet():
    model = create_model("deeplab_v2", backbone="resnet18", num_classes=3).eval()
    assert isinstance(model.classifier, ASPPSum) and model.classifier.atrous_rates == (6, 12, 18, 24)
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        (features,) = model.backbone.forward_intermediates(x, (4,))
        assert features.shape[-2:] == (5, 6)  # output stride 8
        ref = sum(
            F.conv2d(features, c.weight, c.bias, padding=r, dilation=r)
            for c, r in zip(model.classifier.branches, (6, 12, 18, 24), strict=True)
        )
        ref = F.interpolate(ref, size=(40, 48), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x)["out"], ref)
    with torch.device("meta"):
        assert create_model("deeplab_v2").backbone.stage_channels[3] == 2048  # ResNet-101 by default


def test_atrous_backbone_keeps_the_receptive_field_at_a_finer_stride():
    # Dilation instead of stride (the notes' point about DeepLab): ResNet-50's layer4 sees 427 pixels
    # (Araujo et al., Distill 2019) at stride 32; dilated, the same 427 pixels at stride 8.
    plain = receptive_field(_meta("resnet50"), (1, 3, 224, 224)).layers["layer4"]
    dilated = receptive_field(_meta("deeplabv3_resnet50"), (1, 3, 224, 224)).layers["backbone.layer4"]
    assert plain.size == dilated.size == (427, 427)
    assert plain.jump == (32, 32) and dilated.jump == (8, 8)


def _random_torchvision(name: str, **kwargs) -> torch.nn.Module:
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, **kwargs)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # random statistics, so eval-mode batch norm is compared
            m.weight.data = 1 + 0.2 * torch.randn(m.weight.shape, generator=g)
            m.bias.data = 0.2 * torch.randn(m.bias.shape, generator=g)
            m.running_mean = 0.2 * torch.randn(m.running_mean.shape, generator=g)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)
    return model.eval()


@pytest.fixture(scope="module")
def tv_deeplabv3_resnet50():
    return _random_torchvision("deeplabv3_resnet50", aux_loss=True)


def test_deeplabv3_resnet50_loads_torchvisions_state_dict_and_agrees(tv_deeplabv3_resnet50):
    ref = tv_deeplabv3_resnet50
    ours = create_model("deeplabv3_resnet50", aux_loss=True).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 41, 50)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert set(a) == set(b) == {"out", "aux"}
    for key in ("out", "aux"):
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "published"), [("deeplabv3_resnet50", 42_004_074), ("deeplabv3_resnet101", 60_996_202)]
)
def test_parameter_count_is_torchvisions_published_count(name, published):
    assert get_model_weights(name).DEFAULT.meta["num_params"] == published
    with torch.device("meta"):
        assert count_parameters(create_model(name, aux_loss=True)) == published


def test_pretrained_deeplabv3_through_torchvisions_weights_api(monkeypatch, tv_deeplabv3_resnet50):
    ref = tv_deeplabv3_resnet50
    monkeypatch.setattr(
        get_model_weights("deeplabv3_resnet50"), "get_state_dict", lambda self, **kw: ref.state_dict()
    )
    ours = create_model("deeplabv3_resnet50", weights="torchvision").eval()
    x = torch.randn(1, 3, 33, 29)
    with torch.no_grad():
        out = ours(x)
        assert set(out) == {"out"}  # loaded with the auxiliary head, which aux_loss=False then drops
        torch.testing.assert_close(out["out"], ref(x)["out"], atol=1e-5, rtol=1e-5)


def test_weights_backbone_starts_the_encoder_from_imagenet(monkeypatch):
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.resnet18().state_dict().items()}
    state = {k: torch.rand(s) if s else torch.tensor(3) for k, s in shapes.items()}
    monkeypatch.setattr(get_model_weights("resnet18"), "get_state_dict", lambda self, **kw: state)
    model = create_model("deeplab_v3plus", weights_backbone="torchvision", num_classes=4)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert set(model.backbone.state_dict()) == {k for k in state if not k.startswith("fc.")}


def test_too_small_image_names_the_limit():
    model = create_model("deeplab_v1", num_classes=2)
    with pytest.raises(ValueError, match="deeplab_v1 needs inputs of at least 8x8 pixels; got 7x20"):
        model(torch.randn(1, 3, 7, 20))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="output_stride"):
        create_model("deeplab_v3plus", output_stride=4)
    with pytest.raises(
        ValueError, match=r"one rate per block of layer4 \(2 blocks in resnet18\); got \(1, 2, 4\)"
    ):
        create_model("deeplab_v3", backbone="resnet18", multi_grid=(1, 2, 4))
    with pytest.raises(ValueError, match="backbone"):
        create_model("deeplab_v3", backbone="vgg16")
    with pytest.raises(ValueError, match="backbone"):
        create_model("deeplab_v1", backbone="resnet50")
