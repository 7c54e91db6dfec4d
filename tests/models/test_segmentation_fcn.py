"""FCN (Long et al. 2015): the paper's FCN-32s/16s/8s on VGG-16, and torchvision's FCN-ResNet (the
reference for ``fcn_resnet50`` / ``fcn_resnet101``: same keys, strict load, same outputs)."""

import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import get_model_weights

from nnatlas.analysis import count_parameters, receptive_field
from nnatlas.layers import bilinear_upsampling_kernel
from nnatlas.models import create_model
from nnatlas.models.classification import VGG, ResNet
from nnatlas.models.segmentation.fcn import convolutionalize

# VGG-16's thirteen 3x3 convolutions with bias (widths 64, 64, 128, 128, 256 x 3, 512 x 6).
VGG16_CONVS = sum(
    9 * a * b + b
    for a, b in zip(
        (3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512),
        (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512),
        strict=True,
    )
)


def _fcn_count(stride: int, k: int = 21) -> int:
    """fc6 (7x7, 512 -> 4096), fc7 (1x1), score layers (1x1 with bias), bias-free deconvolutions (k x k x 2f x 2f)."""
    n = VGG16_CONVS + (49 * 512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * k + k)
    deconv = {32: [32], 16: [2, 16], 8: [2, 2, 8]}[stride]
    n += sum(k * k * (2 * f) ** 2 for f in deconv)
    n += {32: 0, 16: 512 * k + k, 8: 512 * k + k + 256 * k + k}[stride]
    return n


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_parameter_counts(stride):
    with torch.device("meta"):
        model = create_model(f"fcn{stride}s")
    assert count_parameters(model) == _fcn_count(stride)
    assert isinstance(model.backbone, VGG) and not any(
        k.startswith("backbone.classifier") for k in model.state_dict()
    )


def test_fcn8s_has_the_count_of_the_paper_network_with_its_deconvolutions():
    # 134,489,759 for 21 classes, the three learnable upsampling layers included (127,008 of them).
    assert VGG16_CONVS == 14_714_688
    assert _fcn_count(8) == 134_489_759


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_output_is_the_input_size_for_any_size(stride):
    with torch.device("meta"):
        model = create_model(f"fcn{stride}s", num_classes=5).eval()
        for h, w in [(1, 1), (7, 30), (31, 33), (64, 64), (100, 77), (500, 375)]:
            assert model(torch.empty(1, 3, h, w))["out"].shape == (1, 5, h, w)


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_crop_offsets_centre_every_prediction_on_its_pixel(stride):
    # Receptive field of each output pixel (the analysis toolkit): a transposed convolution's output
    # phases see windows shifted either way, and with the paper's crops (19; 5, 27; 5, 9, 31) those
    # shifts average to zero over one period; an offset one pixel off would average to one.
    with torch.device("meta"):
        model = create_model(f"fcn{stride}s").eval()
    f = receptive_field(model, (1, 3, 224, 224)).final
    assert f.jump == (1, 1)
    period = len(f.windows[0])
    shifts = [sum(f.interval((j, j))[0]) / 2 - j for j in range(period)]
    assert period == 32 and sum(shifts) == 0


@pytest.fixture(scope="module")
def fcn8s():
    """One FCN-8s for 3 classes (its 134M parameters take seconds to build); tests must not change it."""
    return create_model("fcn8s", num_classes=3).eval()


def test_upsampling_starts_bilinear_and_scores_at_zero(fcn8s):
    model = fcn8s
    for name, factor in (("upscore2", 2), ("upscore_pool4", 2), ("upscore8", 8)):
        layer = getattr(model, name)
        assert layer.bias is None and layer.stride == (factor, factor) and layer.padding == (0, 0)
        expected = torch.zeros(3, 3, 2 * factor, 2 * factor)
        for c in range(3):
            expected[c, c] = bilinear_upsampling_kernel(factor)
        assert torch.equal(layer.weight.detach(), expected)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        assert getattr(model, name).weight.abs().sum() == 0
    # Bilinear weights of a 2f kernel at stride f sum to 1 wherever two inputs overlap: constant in, out.
    up = model.upscore8(torch.ones(1, 3, 4, 4))  # (1, 3, 40, 40)
    torch.testing.assert_close(up[..., 8:-8, 8:-8], torch.ones(1, 3, 24, 24))
    # The paper's 100-pixel padding, Caffe's rounding: pool5 of a 1x1 image is 7x7, fc6's window.
    assert all(m.ceil_mode for m in model.backbone.modules() if isinstance(m, torch.nn.MaxPool2d))


def test_convolutionalized_fc_layer_equals_the_linear_layer():
    # Section 3.1: a fully connected layer on a C x k x k map is a k x k convolution; on a larger map it
    # slides, one output per window.
    linear = torch.nn.Linear(5 * 3 * 3, 7)
    conv = torch.nn.Conv2d(5, 7, 3)
    convolutionalize(linear, conv)
    x = torch.randn(2, 5, 3, 3)
    torch.testing.assert_close(conv(x).flatten(1), linear(x.flatten(1)))
    big = torch.randn(1, 5, 6, 4)
    torch.testing.assert_close(conv(big)[0, :, 2, 1], linear(big[0, :, 2:5, 1:4].flatten()))
    with pytest.raises(ValueError, match="does not fit a convolution"):
        convolutionalize(torch.nn.Linear(10, 7), conv)


def test_weights_backbone_loads_vgg16_and_convolutionalizes_its_classifier(monkeypatch):
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg16().state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {k: torch.rand(shape, generator=g) for k, shape in shapes.items()}
    monkeypatch.setattr(get_model_weights("vgg16"), "get_state_dict", lambda self, **kw: state)
    model = create_model("fcn8s", weights_backbone="torchvision")
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert torch.equal(model.fc6.weight.flatten(1), state["classifier.0.weight"])
    assert torch.equal(model.fc7.bias, state["classifier.3.bias"])


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
def tv_fcn_resnet50():
    return _random_torchvision("fcn_resnet50", aux_loss=True)


def test_fcn_resnet50_loads_torchvisions_state_dict_and_agrees(tv_fcn_resnet50):
    ref = tv_fcn_resnet50
    ours = create_model("fcn_resnet50", aux_loss=True).eval()
    assert isinstance(ours.backbone, ResNet)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 45, 38)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert set(a) == set(b) == {"out", "aux"} and a["out"].shape == (2, 21, 45, 38)
    for key in ("out", "aux"):
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "published"), [("fcn_resnet50", 35_322_218), ("fcn_resnet101", 54_314_346)])
def test_parameter_count_is_torchvisions_published_count(name, published):
    # torchvision's weights metadata (num_params) counts the released model, auxiliary head included.
    assert get_model_weights(name).DEFAULT.meta["num_params"] == published
    with torch.device("meta"):
        assert count_parameters(create_model(name, aux_loss=True)) == published
        without = create_model(name)
    assert without.aux_classifier is None and count_parameters(without) < published


def test_pretrained_fcn_resnet50_through_torchvisions_weights_api(monkeypatch, tv_fcn_resnet50):
    ref = tv_fcn_resnet50
    enum = get_model_weights("fcn_resnet50")
    monkeypatch.setattr(enum, "get_state_dict", lambda self, **kw: ref.state_dict())
    with_aux = create_model("fcn_resnet50", weights="torchvision", aux_loss=True).eval()
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        torch.testing.assert_close(with_aux(x)["aux"], ref(x)["aux"], atol=1e-5, rtol=1e-5)
    plain = create_model("fcn_resnet50", weights="torchvision").eval()  # the auxiliary head is dropped
    with torch.no_grad():
        out = plain(x)
    assert set(out) == {"out"}
    torch.testing.assert_close(out["out"], ref(x)["out"], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="21 classes; got num_classes=5"):
        create_model("fcn_resnet50", weights="torchvision", num_classes=5)


def test_offline_weights_fail_with_the_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with torch.device("meta"), pytest.raises(RuntimeError) as e:
        create_model("fcn_resnet50", weights="torchvision", progress=False)
    url = get_model_weights("fcn_resnet50").DEFAULT.url
    assert url in str(e.value) and str(tmp_path / "checkpoints") in str(e.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes must be a positive int; got 0"):
        create_model("fcn8s", num_classes=0)
    with pytest.raises(ValueError, match="backbone"):
        create_model("fcn8s", backbone="resnet50")
    model = create_model("fcn_resnet50", num_classes=3)
    with pytest.raises(ValueError, match="fcn_resnet50 was built for in_channels=3; got an input with 1"):
        model(torch.randn(1, 1, 32, 32))


def test_fcn8s_prediction_equals_the_caffe_stages_written_out(fcn8s):
    # The reference: conv1_1 with Caffe's padding of 100, the VGG layers one by one, the score fusion
    # with the crops of the Caffe model (voc-fcn8s: 5, 9, 31). Random score layers replace the zero ones
    # (through functional_call, leaving the shared model unchanged).
    model = fcn8s
    g = torch.Generator().manual_seed(0)
    score = {
        f"{name}.weight": 0.01 * torch.randn(getattr(model, name).weight.shape, generator=g)
        for name in ("score_fr", "score_pool4", "score_pool3")
    }
    x = torch.randn(1, 3, 20, 26)
    with torch.no_grad():
        out = torch.func.functional_call(model, score, (x,))["out"]
        conv1_1, *rest = model.backbone.features
        y, pools = F.conv2d(x, conv1_1.weight, conv1_1.bias, padding=100), []
        for layer in rest:
            y = layer(y)
            if isinstance(layer, torch.nn.MaxPool2d):
                pools.append(y)
        p3, p4, p5 = pools[2:]

        def conv(name, t):
            return F.conv2d(t, score[f"{name}.weight"], getattr(model, name).bias)

        s = conv("score_fr", F.relu(model.fc7(F.relu(model.fc6(p5)))))
        s = model.upscore2(s)
        s = s + conv("score_pool4", p4)[..., 5 : 5 + s.shape[-2], 5 : 5 + s.shape[-1]]
        s = model.upscore_pool4(s)
        s = s + conv("score_pool3", p3)[..., 9 : 9 + s.shape[-2], 9 : 9 + s.shape[-1]]
        s = model.upscore8(s)[..., 31 : 31 + 20, 31 : 31 + 26]
    assert s.abs().max() > 0
    torch.testing.assert_close(out, s)
