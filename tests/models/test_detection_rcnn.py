"""Faster / Mask R-CNN: torchvision's parameter counts, state dicts and outputs (eval boxes, labels, scores,
masks and training losses) for the ResNet-50-FPN models; the small CPU models against the same
configuration assembled from torchvision's parts; the target sanitiser on degenerate, outside and empty
targets; a short overfit on shapes scenes."""

import logging

import pytest
import torch
import torchvision
from torchvision.models import detection as tvd
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from nnatlas.data.shapes import ShapesDataset
from nnatlas.models import create_model, get_model_info, list_models
from nnatlas.models.detection._rcnn_common import freeze_backbone_layers
from nnatlas.models.detection._targets import sanitize_targets
from nnatlas.models.detection.rcnn import (
    FasterRCNN,
    MaskRCNN,
    fasterrcnn_resnet18_fpn_small,
    fasterrcnn_resnet50_fpn,
    maskrcnn_resnet18_fpn_small,
    maskrcnn_resnet50_fpn,
)

PAIRS = {
    "fasterrcnn_resnet50_fpn": (fasterrcnn_resnet50_fpn, tvd.fasterrcnn_resnet50_fpn),
    "maskrcnn_resnet50_fpn": (maskrcnn_resnet50_fpn, tvd.maskrcnn_resnet50_fpn),
}
# Small sizes keep the ResNet-50 tests fast; score threshold 0 keeps the detections of random weights (whose
# softmax over 91 classes stays near 1/91 < torchvision's 0.05) so that parity compares real outputs.
FAST = {
    "min_size": 64,
    "max_size": 80,
    "box_score_thresh": 0.0,
    "rpn_pre_nms_top_n_test": 200,
    "rpn_post_nms_top_n_test": 40,
    "box_detections_per_img": 20,
    "rpn_post_nms_top_n_train": 100,
    "box_batch_size_per_image": 64,
}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _images():
    return [torch.rand(3, 128, 160), torch.rand(3, 112, 144)]  # two sizes in one list


def _targets(masks: bool):
    targets = [
        {"boxes": torch.tensor([[10.0, 20, 60, 90], [30, 30, 100, 70]]), "labels": torch.tensor([3, 7])},
        {"boxes": torch.tensor([[5.0, 5, 50, 40]]), "labels": torch.tensor([1])},
    ]
    if masks:
        for t, (h, w) in zip(targets, [(128, 160), (112, 144)], strict=True):
            m = torch.zeros(len(t["boxes"]), h, w, dtype=torch.uint8)
            for j, (x1, y1, x2, y2) in enumerate(t["boxes"].int().tolist()):
                m[j, y1:y2, x1:x2] = 1
            t["masks"] = m
    return targets


@pytest.mark.parametrize(
    ("name", "frozen", "bn"),
    [("fasterrcnn_resnet50_fpn", 41_755_286, 41_808_406), ("maskrcnn_resnet50_fpn", 44_401_393, 44_454_513)],
)
def test_resnet50_fpn_parameters_and_keys_are_torchvisions(name, frozen, bn):
    ours, theirs = PAIRS[name]
    with torch.device("meta"):
        frozen_model = ours(norm_layer=FrozenBatchNorm2d)
        model = ours()
        reference = theirs(weights=None, weights_backbone=None)
    # torchvision's metadata counts the COCO model, whose batch norm is FrozenBatchNorm2d (buffers only).
    weights = torchvision.models.get_model_weights(name).COCO_V1
    assert _params(frozen_model) == weights.meta["num_params"] == frozen
    # Without weights torchvision uses nn.BatchNorm2d and trains every layer: so do we.
    assert _params(model) == _params(reference) == bn
    ours_sd, ref_sd = model.state_dict(), reference.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert all(ours_sd[k].shape == ref_sd[k].shape for k in ref_sd)
    assert "backbone.body.conv1.weight" in ours_sd and "backbone.body.fc.weight" not in ours_sd
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_resnet50_fpn_strict_load_and_parity_with_torchvision(name):
    ours, theirs = PAIRS[name]
    reference = theirs(weights=None, weights_backbone=None, **FAST).eval()
    model = ours(**FAST).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    images = _images()
    with torch.no_grad():
        got, want = model(images), reference(images)
    for g, w, image in zip(got, want, images, strict=True):
        assert set(g) == set(w) == ({"boxes", "labels", "scores"} | ({"masks"} if "mask" in name else set()))
        assert len(w["boxes"]) == FAST["box_detections_per_img"]  # real detections, not two empty lists
        for key in w:
            assert g[key].shape == w[key].shape and g[key].dtype == w[key].dtype
            torch.testing.assert_close(g[key], w[key], rtol=0, atol=1e-4)
        assert g["labels"].dtype == torch.int64
        if "masks" in g:
            assert g["masks"].shape[1:] == (1, *image.shape[-2:])
    # Training mode: the same losses from the same random sampling (torch's generator, same seed).
    model.train()
    reference.train()
    targets = _targets(masks="mask" in name)
    torch.manual_seed(1)
    got = model(images, targets)
    torch.manual_seed(1)
    want = reference(images, targets)
    assert set(got) == set(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("trainable", range(6))
def test_freezing_matches_torchvisions_resnet_fpn_extractor(trainable):
    with torch.device("meta"):
        ours = create_model("resnet50", norm_layer=FrozenBatchNorm2d)
        theirs = torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d)
        freeze_backbone_layers(ours, trainable)
        extractor = _resnet_fpn_extractor(theirs, trainable)
    trainable_ours = {n for n, p in ours.named_parameters() if p.requires_grad and not n.startswith("fc")}
    trainable_theirs = {
        n.removeprefix("body.") for n, p in extractor.body.named_parameters() if p.requires_grad
    }
    assert trainable_ours == trainable_theirs
    assert len(trainable_theirs) > 0 or trainable == 0


def test_pretrained_weights_check_the_classes_before_any_download():
    with pytest.raises(ValueError, match="91 classes; got num_classes=5"):
        fasterrcnn_resnet50_fpn(weights="torchvision", num_classes=5)
    with pytest.raises(ValueError, match="weights must be None"):
        maskrcnn_resnet50_fpn(weights="coco")


def _torchvision_small(mask: bool, num_classes: int) -> torch.nn.Module:
    """The small configuration from torchvision's own parts: its ResNet-18 and BackboneWithFPN."""
    resnet = torchvision.models.resnet18()
    backbone = BackboneWithFPN(resnet, {"layer1": "0", "layer2": "1", "layer3": "2"}, [64, 128, 256], 64)
    names = ["0", "1", "2"]
    kwargs = {
        "rpn_anchor_generator": tvd.anchor_utils.AnchorGenerator(
            ((8,), (16,), (32,), (64,)), ((0.5, 1.0, 2.0),) * 4
        ),
        "box_roi_pool": MultiScaleRoIAlign(names, 7, 2),
        "box_head": TwoMLPHead(64 * 49, 256),
        "box_predictor": FastRCNNPredictor(256, num_classes),
        "min_size": 64,
        "max_size": 96,
        "rpn_pre_nms_top_n_train": 500,
        "rpn_pre_nms_top_n_test": 250,
        "rpn_post_nms_top_n_train": 100,
        "rpn_post_nms_top_n_test": 50,
        "rpn_batch_size_per_image": 64,
        "box_batch_size_per_image": 64,
        "box_detections_per_img": 50,
    }
    if not mask:
        return tvd.FasterRCNN(backbone, None, **kwargs)
    kwargs.update(
        mask_roi_pool=MultiScaleRoIAlign(names, 14, 2),
        mask_head=MaskRCNNHeads(64, (64, 64), 1),
        mask_predictor=MaskRCNNPredictor(64, 64, num_classes),
    )
    return tvd.MaskRCNN(backbone, None, **kwargs)


@pytest.mark.parametrize("builder", [fasterrcnn_resnet18_fpn_small, maskrcnn_resnet18_fpn_small])
def test_small_models_are_torchvisions_detectors_on_a_resnet18_fpn(builder):
    mask = builder is maskrcnn_resnet18_fpn_small
    reference = _torchvision_small(mask, 5).eval()
    model = builder(num_classes=5).eval()
    assert _params(model) == _params(reference) == (3_926_253 if mask else 3_835_624)
    model.load_state_dict(reference.state_dict(), strict=True)
    assert isinstance(model, MaskRCNN if mask else FasterRCNN)
    images = [torch.rand(3, 64, 64), torch.rand(3, 96, 80)]
    with torch.no_grad():
        got, want = model(images), reference(images)
    for g, w, image in zip(got, want, images, strict=True):
        for key in w:
            torch.testing.assert_close(g[key], w[key], rtol=0, atol=1e-4)
        n = len(g["boxes"])
        assert g["boxes"].shape == (n, 4) and g["scores"].shape == (n,) and g["labels"].dtype == torch.int64
        assert (g["boxes"][:, 2] <= image.shape[-1]).all() and (g["boxes"][:, 3] <= image.shape[-2]).all()
        if mask:
            assert g["masks"].shape == (n, 1, *image.shape[-2:])


def test_registered_as_detection_models():
    names = set(list_models(task="detection"))
    assert {
        "fasterrcnn_resnet50_fpn",
        "maskrcnn_resnet50_fpn",
        "fasterrcnn_resnet18_fpn_small",
        "maskrcnn_resnet18_fpn_small",
    } <= names
    assert get_model_info("fasterrcnn_resnet18_fpn_small").input_size == (3, 64, 64)
    model = create_model("fasterrcnn_resnet18_fpn_small", num_classes=5)
    assert model.num_classes == 5 and model.roi_heads.box_predictor.cls_score.out_features == 5


# --- targets: degenerate, outside, empty -----------------------------------------------------------------


def test_sanitize_clips_drops_and_keeps_the_per_object_fields(caplog):
    boxes = torch.tensor(
        [
            [10.0, 10, 30, 30],  # fine
            [20, 5, 20, 25],  # zero width
            [40, 40, 35, 50],  # negative width
            [-5, -5, 10, 70],  # partly outside: clipped to [0, 0, 10, 64]
            [70, 10, 90, 30],  # wholly outside (x > W = 64): empty after clipping
            [5, 5, float("nan"), 20],  # not finite
        ]
    )
    masks = torch.arange(6, dtype=torch.uint8)[:, None, None].expand(6, 64, 64).clone()
    target = {"boxes": boxes, "labels": torch.tensor([1, 2, 3, 4, 1, 2]), "masks": masks, "image_id": 7}
    with caplog.at_level(logging.WARNING, logger="nnatlas.models.detection._targets"):
        (out,) = sanitize_targets([target], [(64, 64)])
    torch.testing.assert_close(out["boxes"], torch.tensor([[10.0, 10, 30, 30], [0, 0, 10, 64]]))
    assert out["labels"].tolist() == [1, 4] and out["labels"].dtype == torch.int64
    assert out["masks"][:, 0, 0].tolist() == [0, 3] and out["image_id"] == 7
    assert "dropped 4 of 6" in caplog.text
    assert target["boxes"].shape == (6, 4)  # the input is not modified


def test_sanitize_normalises_empty_targets_and_rejects_malformed_ones():
    (out,) = sanitize_targets([{"boxes": torch.zeros(0), "labels": torch.zeros(0)}], [(32, 32)])
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,) and out["labels"].dtype == torch.int64
    with pytest.raises(ValueError, match=r"'boxes' must be \(N, 4\)"):
        sanitize_targets(
            [{"boxes": torch.zeros(2, 5), "labels": torch.ones(2, dtype=torch.int64)}], [(32, 32)]
        )
    with pytest.raises(ValueError, match="labels must lie in"):
        sanitize_targets(
            [{"boxes": torch.ones(1, 4), "labels": torch.tensor([5])}], [(32, 32)], num_classes=5
        )
    with pytest.raises(ValueError, match="'labels' must be"):
        sanitize_targets([{"boxes": torch.ones(2, 4), "labels": torch.tensor([1])}], [(32, 32)])
    with pytest.raises(ValueError, match="'masks' must be"):
        sanitize_targets(
            [
                {
                    "boxes": torch.ones(1, 4),
                    "labels": torch.ones(1, dtype=torch.int64),
                    "masks": torch.ones(1, 8, 8),
                }
            ],
            [(32, 32)],
        )
    with pytest.raises(ValueError, match="one dict per image"):
        sanitize_targets([], [(32, 32)])


def _awkward_batch(mask: bool):
    """Four images: an empty target, degenerate boxes only, a box partly and one wholly outside, no objects."""
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64), torch.rand(3, 80, 96), torch.rand(3, 64, 64)]
    targets = [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
        {"boxes": torch.tensor([[10.0, 10, 10, 30], [30, 30, 20, 20]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[-10.0, 50, 30, 100], [200, 200, 220, 230]]), "labels": torch.tensor([3, 4])},
        {"boxes": torch.tensor([[8.0, 8, 40, 40]]), "labels": torch.tensor([2])},
    ]
    if mask:
        for t, image in zip(targets, images, strict=True):
            t["masks"] = torch.ones(len(t["boxes"]), *image.shape[-2:], dtype=torch.uint8)
    return images, targets


@pytest.mark.parametrize("name", ["fasterrcnn_resnet18_fpn_small", "maskrcnn_resnet18_fpn_small"])
def test_training_never_crashes_on_awkward_targets(name, caplog):
    model = create_model(name, num_classes=5).train()
    images, targets = _awkward_batch(mask="mask" in name)
    # torchvision's forward asserts on the degenerate boxes that nnatlas drops.
    with pytest.raises(AssertionError, match="positive height and width"):
        torchvision.models.detection.generalized_rcnn.GeneralizedRCNN.forward(model, images, targets)
    with caplog.at_level(logging.WARNING, logger="nnatlas.models.detection._targets"):
        losses = model(images, targets)
    assert "dropped 3 of 5" in caplog.text
    expected = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert set(losses) == expected | ({"loss_mask"} if "mask" in name else set())
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # A batch with no object at all trains the background.
    no_objects = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)} for _ in images]
    if "mask" in name:
        for t, image in zip(no_objects, images, strict=True):
            t["masks"] = torch.zeros(0, *image.shape[-2:], dtype=torch.uint8)
    losses = model(images, no_objects)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_box_reg"] == 0


def test_clear_errors_for_missing_targets_and_bad_images():
    model = fasterrcnn_resnet18_fpn_small(num_classes=5).train()
    with pytest.raises(ValueError, match="needs targets"):
        model([torch.rand(3, 64, 64)])
    with pytest.raises(TypeError, match="list of"):
        model(torch.rand(2, 3, 64, 64), None)
    with pytest.raises(ValueError, match=r"must be \(3, H, W\)"):
        model.eval()([torch.rand(1, 64, 64)])
    with pytest.raises(ValueError, match="labels must lie in"):
        model.train()(
            [torch.rand(3, 64, 64)],
            [{"boxes": torch.ones(1, 4) * torch.tensor([1, 1, 9, 9]), "labels": torch.tensor([5])}],
        )


def _shapes_batch(n: int, mask: bool):
    data = ShapesDataset(n, size=64, task="detection", seed=3)
    images, targets = [], []
    for i in range(n):
        image, target = data[i]
        if mask:
            scene = data.scene(i)
            target["masks"] = torch.stack(
                [torch.from_numpy(scene.instances == j + 1) for j in range(len(target["boxes"]))]
            ).to(torch.uint8)
        images.append(image)
        targets.append(target)
    return images, targets


@pytest.mark.parametrize("builder", [fasterrcnn_resnet18_fpn_small, maskrcnn_resnet18_fpn_small])
def test_small_models_overfit_a_few_shapes_scenes(builder):
    mask = builder is maskrcnn_resnet18_fpn_small
    images, targets = _shapes_batch(2, mask)
    model = builder(num_classes=5).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(10):
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert all(map(torch.isfinite, map(torch.tensor, totals)))
    assert sum(totals[-3:]) / 3 < 0.6 * totals[0], totals
