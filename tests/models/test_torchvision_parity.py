"""The ImageNet models against torchvision's models of the same name (the reference implementation).

Same parameter count, same ``state_dict`` keys and shapes, strict loading of a torchvision state dict and
the same outputs; minimum input sizes as published in torchvision's weights metadata.
"""

import warnings

import pytest
import torch
import torchvision
from torchvision.models import get_model_weights

from nnatlas.analysis import count_parameters
from nnatlas.models import create_model, get_model_info

VGGS = [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]
RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
IMAGENET = ["alexnet", *VGGS, "googlenet", "inception_v3", *RESNETS]
# Small but valid inputs: the published minimum (AlexNet 63, VGG 32, GoogLeNet 15, Inception-v3 75), ResNet 32.
SIZE = {"alexnet": 63, "googlenet": 15, "inception_v3": 75} | {n: 32 for n in VGGS + RESNETS}


def _torchvision(name: str, **kwargs) -> torch.nn.Module:
    if name in ("googlenet", "inception_v3"):
        kwargs.setdefault("init_weights", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.get_model(name, **kwargs)


def _random_torchvision(name: str, **kwargs) -> torch.nn.Module:
    """torchvision's model with cheap random weights: He-uniform layers, random batch norm statistics.

    Built on the meta device and filled once (faster than torchvision's own initialisation of VGG's
    120M-parameter classifier); the batch norm affine parameters and running statistics are random too,
    so that eval-mode batch norm is really compared.
    """
    with torch.device("meta"):
        model = _torchvision(name, **kwargs)
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                bound = (6 / m.weight[0].numel()) ** 0.5
                m.weight.uniform_(-bound, bound, generator=g)
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1, generator=g)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.zero_()
    return model


def _ours_from(name: str, ref: torch.nn.Module, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):  # no initialisation work: every tensor comes from the reference
        ours = create_model(name, **kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True, assign=True)
    return ours


@pytest.mark.parametrize("name", IMAGENET)
def test_parameter_count_and_state_dict_layout_equal_torchvision(name):
    with torch.device("meta"):
        ours, ref = create_model(name), _torchvision(name)
    assert count_parameters(ours) == count_parameters(ref)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }


@pytest.mark.parametrize("name", IMAGENET)
def test_published_parameter_count(name):
    # torchvision's weights metadata gives the count of the released model (GoogLeNet without its
    # auxiliary classifiers, whose weights are not released).
    kwargs = {"aux_logits": False} if name == "googlenet" else {}
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    assert count_parameters(model) == get_model_weights(name).DEFAULT.meta["num_params"]


def test_inception_counts_quoted_in_the_documentation():
    with torch.device("meta"):
        assert count_parameters(create_model("googlenet")) == 13_004_888
        assert count_parameters(create_model("googlenet", aux_logits=False)) == 6_624_904
        assert count_parameters(create_model("inception_v3")) == 27_161_264


@pytest.mark.parametrize("name", IMAGENET)
def test_torchvision_state_dict_gives_the_same_eval_output(name):
    ref = _random_torchvision(name).eval()
    ours = _ours_from(name, ref).eval()
    x = torch.randn(2, 3, SIZE[name], SIZE[name])
    with torch.no_grad():
        expected = ref(x)
        got = ours(x)
        if name in ("googlenet", "inception_v3"):  # their forward does not go through the two halves
            torch.testing.assert_close(ours.forward_head(ours.forward_features(x)), expected)
    assert expected.abs().max() > 1e-2  # a meaningful comparison, not of two vectors of zeros
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_training_mode_returns_the_same_main_and_auxiliary_logits():
    # Inception-v3's auxiliary head needs 299x299 inputs: it is compared layer by layer in
    # tests/layers/test_inception.py, and its training-mode outputs are checked on the meta device below.
    ref = _random_torchvision("googlenet").train()
    ours = _ours_from("googlenet", ref).train()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.manual_seed(3)  # the same dropout masks: both draw them in the same order
        expected = ref(x)
        torch.manual_seed(3)
        got = ours(x)
    assert isinstance(got, tuple) and len(got) == len(expected) == 3
    assert got._fields == expected._fields
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_transform_input_matches_torchvision():
    ref = _random_torchvision("googlenet", transform_input=True, aux_logits=False).eval()
    ours = _ours_from("googlenet", ref, transform_input=True, aux_logits=False).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "googlenet", "inception_v3", "resnet18"])
def test_minimum_input_size_is_torchvisions_and_enforced(name, monkeypatch):
    published = get_model_weights(name).DEFAULT.meta["min_size"][0]
    assert get_model_info(name).min_size == published
    with torch.device("meta"):  # shapes only: fast, and meta kernels raise the real size errors
        model = create_model(name).eval()
        assert model(torch.empty(1, 3, published, published)).shape == (1, 1000)
        for shape in [(published - 1, published), (published, published - 1)]:
            with pytest.raises(ValueError, match=f"at least {published}x{published} pixels"):
                model(torch.empty(1, 3, *shape))
        if published > 1:  # without our check the network itself fails one pixel below the minimum
            module = __import__(type(model).__module__, fromlist=["check_image_input"])
            monkeypatch.setattr(module, "check_image_input", lambda x, **k: x)
            with pytest.raises(RuntimeError):
                model(torch.empty(1, 3, published - 1, published - 1))


def test_inception_v3_aux_head_needs_299_in_training():
    with torch.device("meta"):
        model = create_model("inception_v3").train()
        out = model(torch.empty(2, 3, 299, 299))
        assert out.logits.shape == out.aux_logits.shape == (2, 1000)
        with pytest.raises(ValueError, match="at least 299x299 pixels in training mode.*aux_logits=False"):
            model(torch.empty(2, 3, 298, 298))
        no_aux = create_model("inception_v3", aux_logits=False).train()
        assert no_aux(torch.empty(2, 3, 75, 75)).shape == (2, 1000)


@pytest.mark.parametrize("name", ["alexnet", "vgg11_bn", "googlenet", "inception_v3", "resnet50"])
def test_in_channels_and_num_classes(name):
    with torch.device("meta"):
        three = create_model(name)
        one = create_model(name, in_channels=1, num_classes=7).eval()
        size = get_model_info(name).input_size[-1]
        assert one(torch.empty(2, 1, size, size)).shape == (2, 7)
        with pytest.raises(ValueError, match="in_channels=1; got an input with 3 channels"):
            one(torch.empty(2, 3, size, size))
    stem = next(m for m in three.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.in_channels == 3
    # Only the stem's input channels and the classifier(s) change.
    classifiers = [m for m in three.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1000]
    fewer_outputs = sum((m.in_features + 1) * (1000 - 7) for m in classifiers)
    expected = count_parameters(three) - stem.weight[:, :2].numel() - fewer_outputs
    assert count_parameters(one) == expected


def test_forward_features_shapes_and_resnet_dilation():
    with torch.device("meta"):
        x = torch.empty(1, 3, 224, 224)
        assert create_model("alexnet").forward_features(x).shape == (1, 256, 6, 6)
        assert create_model("vgg16").forward_features(x).shape == (1, 512, 7, 7)
        assert create_model("googlenet").forward_features(x).shape == (1, 1024, 7, 7)
        assert create_model("resnet50").forward_features(x).shape == (1, 2048, 7, 7)
        dilated = create_model("resnet50", replace_stride_with_dilation=(False, True, True))
        assert dilated.forward_features(x).shape == (1, 2048, 28, 28) and dilated.output_stride == 8
        x299 = torch.empty(1, 3, 299, 299)
        assert create_model("inception_v3").forward_features(x299).shape == (1, 2048, 8, 8)


def test_dilated_resnet_matches_torchvision():
    ref = _random_torchvision("resnet50", replace_stride_with_dilation=[False, True, True]).eval()
    ours = _ours_from("resnet50", ref, replace_stride_with_dilation=(False, True, True)).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_zero_init_residual_matches_torchvision():
    torch.manual_seed(0)
    ours = create_model("resnet18", zero_init_residual=True)
    ref = torchvision.models.resnet18(zero_init_residual=True)
    for (k, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items(), strict=True):
        if k.endswith("bn2.weight"):
            assert a.abs().sum() == 0 and b.abs().sum() == 0
    # Every residual branch starts at zero, so each block is relu(x + 0) = x on its (non-negative) input.
    block = ours.layer1[0].eval()
    x = torch.rand(1, 64, 8, 8)
    torch.testing.assert_close(block(x), x)


def test_fx_tracing_keeps_the_size_check():
    from torchvision.models.feature_extraction import create_feature_extractor

    model = create_model("resnet18").eval()
    extractor = create_feature_extractor(model, return_nodes={"layer3": "c4", "layer4": "c5"})
    out = extractor(torch.randn(1, 3, 64, 64))
    assert out["c4"].shape == (1, 256, 4, 4) and out["c5"].shape == (1, 512, 2, 2)
    with pytest.raises(ValueError, match="in_channels=3"):
        extractor(torch.randn(1, 1, 64, 64))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="in_channels must be a positive int; got 0"):
        create_model("resnet18", in_channels=0)
    with pytest.raises(ValueError, match="replace_stride_with_dilation must give 3 booleans"):
        create_model("resnet50", replace_stride_with_dilation=(True,))
    with pytest.raises(ValueError, match="transform_input=True needs in_channels=3"):
        create_model("googlenet", in_channels=1, transform_input=True)
    with pytest.raises(ValueError, match="images \\(B, C, H, W\\)"):
        create_model("resnet18")(torch.randn(3, 32, 32))


def test_auxiliary_logits_enter_the_training_loss_with_weight_0_3():
    # Szegedy et al. 2015, section 5: total loss = main + 0.3 * (aux1 + aux2).
    from nnatlas.engine import ClassificationTask

    model = create_model("googlenet", num_classes=4).train()
    x, y = torch.randn(2, 3, 15, 15), torch.tensor([0, 3])
    torch.manual_seed(5)
    out = model(x)
    expected = torch.nn.functional.cross_entropy(out.logits, y) + 0.3 * (
        torch.nn.functional.cross_entropy(out.aux_logits1, y)
        + torch.nn.functional.cross_entropy(out.aux_logits2, y)
    )
    torch.manual_seed(5)
    loss, n = ClassificationTask(4).training_step(model, (x, y))
    assert n == 2
    torch.testing.assert_close(loss, expected)
