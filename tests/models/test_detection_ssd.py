"""SSD (Liu et al. 2016): ssd300_vgg16 against torchvision's ssd300_vgg16 (the reference implementation),
and the small SSD for CPU training: parameters, default boxes, bad targets, output format, overfit."""

import warnings

import pytest
import torch
import torchvision
from torchvision.models.detection.ssd import SSD300_VGG16_Weights, _vgg_extractor

from nnatlas.analysis import count_parameters
from nnatlas.data.shapes import ShapesDataset
from nnatlas.models import create_model, get_model_info


def _target(boxes, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


@pytest.fixture(scope="module")
def ssd_pair():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None)
    ours = create_model("ssd300_vgg16")
    return ours, ref


def test_ssd300_vgg16_parameters_and_keys(ssd_pair):
    ours, ref = ssd_pair
    # torchvision's metadata of its COCO weights: 35,641,826 parameters.
    assert count_parameters(ours) == count_parameters(ref) == SSD300_VGG16_Weights.COCO_V1.meta["num_params"]
    assert count_parameters(ours) == 35_641_826
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert all(ours_sd[k].shape == ref_sd[k].shape for k in ref_sd)
    assert any(k.startswith("backbone.extra.0.7.") for k in ours_sd)  # fc6 / fc7 after conv5_3
    assert ours.backbone.scale_weight.eq(20).all()


def test_ssd300_vgg16_same_outputs_as_torchvision(ssd_pair):
    ours, ref = ssd_pair
    ours.load_state_dict(ref.state_dict(), strict=True)
    torch.manual_seed(1)
    images = [torch.rand(3, 300, 300), torch.rand(3, 240, 320)]
    ours.eval(), ref.eval()
    with torch.no_grad():
        got, want = ours(images), ref(images)
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w) == {"boxes", "labels", "scores"}
        assert len(w["scores"]) > 0  # random weights: the scores pass the 0.01 threshold
        torch.testing.assert_close(g["boxes"], w["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(g["scores"], w["scores"], atol=1e-4, rtol=0)
        assert torch.equal(g["labels"], w["labels"])
    # Training: the same losses for the same (valid) targets.
    targets = [_target([[20, 30, 120, 200], [150, 150, 290, 260]], [3, 17])]
    ours.train(), ref.train()
    got, want = ours(images[:1], targets), ref(images[:1], targets)
    assert set(got) == set(want) == {"bbox_regression", "classification"}
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-4, rtol=1e-5)


def test_ssd300_vgg16_frozen_stages_as_torchvision():
    with torch.device("meta"):
        ours = create_model("ssd300_vgg16", trainable_backbone_layers=3)
        ref = _vgg_extractor(torchvision.models.vgg16(), False, 3)  # torchvision's freezing rule
    frozen = {n for n, p in ours.backbone.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, p in ref.named_parameters() if not p.requires_grad}
    assert frozen == {f"features.{i}.{w}" for i in (0, 2, 5, 7) for w in ("weight", "bias")}  # conv1, conv2


def test_ssd300_vgg16_sanitizes_what_torchvision_rejects(ssd_pair):
    ours, ref = ssd_pair
    images = [torch.rand(3, 300, 300)]
    targets = [_target([[50, 50, 50, 120], [10, 10, 100, 100]], [2, 5])]  # a zero-width box
    ref.train()
    with pytest.raises(AssertionError, match="positive height and width"):
        ref(images, targets)
    ours.train()
    losses = ours(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())


def test_ssd300_vgg16_pretrained_checks_classes_before_download():
    with pytest.raises(ValueError, match="91 classes"):
        create_model("ssd300_vgg16", weights="torchvision", num_classes=5)


def test_ssd_small_parameters_and_default_boxes():
    model = create_model("ssd_small", num_classes=5)
    # TinyBackbone: per stage a stride-2 3x3 conv and a 3x3 conv, each followed by batch norm (2 c).
    widths, c, backbone = (16, 32, 64, 128, 256), 3, 0
    for w in widths:
        backbone += 9 * c * w + 2 * w + 9 * w * w + 2 * w
        c = w
    # Heads: a 3x3 conv per map (64, 128, 256 channels) giving 4 boxes x (5 classes | 4 offsets).
    heads = sum((9 * ch + 1) * 4 * (5 + 4) for ch in (64, 128, 256))
    assert count_parameters(model) == backbone + heads == 1_325_020
    assert model.anchor_generator.num_anchors_per_location() == [4, 4, 4]
    features = list(model.backbone(torch.zeros(1, 3, 96, 96)).values())
    assert [tuple(f.shape[-2:]) for f in features] == [(12, 12), (6, 6), (3, 3)]
    image_list = torchvision.models.detection.image_list.ImageList(torch.zeros(1, 3, 96, 96), [(96, 96)])
    (anchors,) = model.anchor_generator(image_list, features)
    assert anchors.shape == (4 * (144 + 36 + 9), 4)
    sides = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    # Square default boxes from 0.12 x 96 = 11.5 px to sqrt(0.45 x 0.7) x 96 = 54 px.
    assert sides.sqrt().min().item() == pytest.approx(11.52, abs=0.01)
    assert sides.sqrt().max().item() == pytest.approx(0.5612 * 96, abs=0.05)


BAD_TARGETS = {
    "empty": [],
    "degenerate": [[10, 10, 10, 30], [30, 30, 20, 40]],
    "outside": [[-20, -20, -5, -5], [70, 10, 90, 30], [50, 50, 80, 90]],
}


@pytest.mark.parametrize("case", sorted(BAD_TARGETS))
def test_ssd_small_training_never_crashes_on_bad_targets(case):
    model = create_model("ssd_small", num_classes=5)
    model.train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 80)]
    boxes = BAD_TARGETS[case]
    losses = model(images, [_target(boxes, [1] * len(boxes)), _target([[5, 5, 30, 20]], [4])])
    assert set(losses) == {"bbox_regression", "classification"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_ssd_small_eval_output_format():
    info = get_model_info("ssd_small")
    assert info.task == "detection" and info.input_size == (3, 96, 96)
    model = create_model("ssd_small", num_classes=5)
    model.eval()
    sizes = [(64, 64), (48, 80)]
    with torch.no_grad():
        out = model([torch.rand(3, h, w) for h, w in sizes])
    for det, (h, w) in zip(out, sizes, strict=True):
        assert set(det) == {"boxes", "labels", "scores"}
        n = len(det["scores"])
        assert 0 < n <= 100
        assert det["boxes"].shape == (n, 4) and det["labels"].dtype == torch.int64
        assert det["labels"].min() >= 1 and det["labels"].max() <= 4
        assert (det["boxes"][:, 0::2] <= w + 1e-4).all() and (det["boxes"][:, 1::2] <= h + 1e-4).all()


def test_ssd_small_overfits_a_few_images():
    torch.manual_seed(0)
    data = ShapesDataset(4, size=64, task="detection", seed=0)
    images, targets = (list(x) for x in zip(*(data[i] for i in range(4)), strict=True))
    model = create_model("ssd_small", num_classes=5, image_size=64)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for _ in range(30):
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.4 * history[0], history


def test_ssd_small_resnet_backbone():
    model = create_model("ssd_small", backbone="resnet18", num_classes=5, image_size=64)
    assert model.backbone.out_channels == [128, 256, 512]
    model.train()
    losses = model([torch.rand(3, 64, 64)], [_target([[5, 5, 40, 30]], [2])])
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="backbone"):
        create_model("ssd_small", backbone="vgg99")
