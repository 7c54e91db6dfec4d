"""R-FCN (Dai et al. 2016): position-sensitive pooling checked against torchvision's RoIAlign and FPN level
rule, average voting, class-agnostic boxes through torchvision's RoIHeads, parameter count from torchvision's
parts plus the hand-written head, the detection contract on awkward targets, and a short overfit."""

import logging

import pytest
import torch
import torchvision
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign, roi_align

from nnatlas.data.shapes import ShapesDataset
from nnatlas.models import create_model, get_model_info, list_models
from nnatlas.models.detection.rfcn import RFCN, BinVote, PSRoIAlignScores, RFCNPredictor, rfcn


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _proposals(image: int, n: int, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * (image - 40)
    wh = 4 + torch.rand(n, 2, generator=g) * 36  # 4-40 px: spread over the levels of a 128 px image
    return torch.cat((xy, xy + wh), dim=1)


@pytest.mark.parametrize("k", [3, 7])
def test_position_sensitive_pooling_reads_bin_ij_from_its_own_map(k):
    # Reference: torchvision's roi_align on the score maps of the level that torchvision's MultiScaleRoIAlign
    # picks (FPN's rule); position-sensitive pooling keeps, for output c and bin (i, j), channel
    # c k^2 + i k + j at bin (i, j). ps_roi_align samples as roi_align(aligned=True) does (half-pixel offset).
    g = torch.Generator().manual_seed(0)
    num_classes, names, scales = 5, ["0", "1", "2"], [1 / 4, 1 / 8, 1 / 16]
    head = PSRoIAlignScores(16, num_classes, featmap_names=names, output_size=k, head_channels=8)
    for p in head.parameters():
        torch.nn.init.normal_(p, generator=g)
    features = {n: torch.randn(2, 16, 32 // 2**i, 32 // 2**i, generator=g) for i, n in enumerate(names)}
    image_shapes = [(128, 128), (120, 128)]
    proposals = [_proposals(128, 30, g), _proposals(120, 20, g)]
    proposals[0][0] = torch.tensor([0.0, 0.0, 127.0, 127.0])  # a large RoI for a coarser level
    got = head(features, proposals, image_shapes)
    assert got.shape == (50, num_classes + 4, k, k)
    # The level of each RoI, read from MultiScaleRoIAlign by pooling maps that hold their level's index.
    probe = {n: torch.full((2, 1, *f.shape[-2:]), float(i)) for i, (n, f) in enumerate(features.items())}
    levels = MultiScaleRoIAlign(names, 1, 1)(probe, proposals, image_shapes).flatten().round().long()
    assert len(levels.unique()) >= 2  # the level rule is exercised
    maps = [head.score_maps(features[n]) for n in names]
    assert maps[0].shape == (2, k * k * (num_classes + 4), 32, 32)
    rois = torch.cat([torch.cat((torch.full((len(b), 1), float(i)), b), 1) for i, b in enumerate(proposals)])
    reference = torch.stack(
        [
            roi_align(maps[lv], rois[r : r + 1], k, spatial_scale=scales[lv], sampling_ratio=2, aligned=True)[
                0
            ]
            for r, lv in enumerate(levels.tolist())
        ]
    )  # (R, k^2 (C + 4), k, k)
    i, j = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    channels = torch.arange(num_classes + 4)[:, None, None] * k * k + i * k + j  # (C + 4, k, k)
    torch.testing.assert_close(got, reference[:, channels, i, j], rtol=1e-5, atol=1e-5)


def test_single_level_pooling_is_roi_align_of_the_bin_channel():
    g = torch.Generator().manual_seed(1)
    k, num_classes = 3, 2
    head = PSRoIAlignScores(4, num_classes, featmap_names=["0"], output_size=k, head_channels=4)
    x = torch.randn(1, 4, 16, 16, generator=g)
    boxes = [torch.tensor([[2.0, 3, 40, 50], [10, 10, 20, 60]])]
    got = head({"0": x}, boxes, [(64, 64)])
    maps = head.score_maps(x)
    ref = roi_align(maps, boxes, k, spatial_scale=0.25, sampling_ratio=2, aligned=True)
    for c in range(num_classes + 4):
        for a in range(k):
            for b in range(k):
                torch.testing.assert_close(got[:, c, a, b], ref[:, c * k * k + a * k + b, a, b])


def test_vote_and_predictor_give_class_scores_and_class_agnostic_boxes():
    pooled = torch.randn(6, 5 + 4, 7, 7)
    voted = BinVote()(pooled)
    torch.testing.assert_close(voted, pooled.flatten(2).mean(-1))
    logits, deltas = RFCNPredictor(5)(voted)
    assert logits.shape == (6, 5) and deltas.shape == (6, 20)
    torch.testing.assert_close(logits, voted[:, :5])
    torch.testing.assert_close(deltas.view(6, 5, 4), voted[:, None, 5:].expand(6, 5, 4))
    # torchvision's Fast R-CNN loss on the repeated deltas is smooth L1 on the class-agnostic ones.
    labels = [torch.tensor([0, 1, 3, 4, 0, 2])]
    targets = [torch.randn(6, 4)]
    _, box_loss = fastrcnn_loss(logits, deltas, labels, targets)
    fg = labels[0] > 0
    want = torch.nn.functional.smooth_l1_loss(voted[fg, 5:], targets[0][fg], beta=1 / 9, reduction="sum") / 6
    torch.testing.assert_close(box_loss, want)


def test_default_rfcn_is_the_small_configuration_with_its_parameter_count():
    with torch.device("meta"):
        model = rfcn(num_classes=5)
        # torchvision's pieces: ResNet-18 up to layer3 with an FPN of 64 channels, RPN head with 3 anchors.
        resnet = torchvision.models.resnet18()
        fpn = BackboneWithFPN(resnet, {"layer1": "0", "layer2": "1", "layer3": "2"}, [64, 128, 256], 64)
        rpn_head = RPNHead(64, 3)
    k2, h = 7 * 7, 256
    head = (64 * h + h) + (h * k2 * 5 + k2 * 5) + (h * k2 * 4 + k2 * 4)  # conv_new, class maps, box maps
    assert _params(model) == _params(fpn) + _params(rpn_head) + head == 3_090_312
    assert isinstance(model, RFCN) and model.num_classes == 5
    assert model.transform.min_size == (64,) and model.transform.max_size == 96
    assert model.rpn.anchor_generator.sizes == ((8,), (16,), (32,), (64,))
    assert model.roi_heads.detections_per_img == 50 and model.roi_heads.box_roi_pool.output_size == 7
    assert "rfcn" in list_models(task="detection") and get_model_info("rfcn").input_size == (3, 64, 64)


def test_eval_outputs_follow_the_detection_contract():
    model = create_model("rfcn", num_classes=5, box_score_thresh=0.0).eval()
    images = [torch.rand(3, 64, 64), torch.rand(3, 96, 80)]
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for o, image in zip(out, images, strict=True):
        n = len(o["boxes"])
        assert 0 < n <= 50 and set(o) == {"boxes", "labels", "scores"}
        assert o["boxes"].shape == (n, 4) and o["scores"].shape == (n,) and o["labels"].dtype == torch.int64
        assert o["labels"].min() >= 1 and o["labels"].max() < 5
        assert (o["boxes"][:, 2] <= image.shape[-1]).all() and (o["boxes"][:, 3] <= image.shape[-2]).all()


def test_training_never_crashes_on_awkward_targets(caplog):
    model = rfcn(num_classes=5).train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64), torch.rand(3, 80, 96)]
    targets = [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # no objects
        {"boxes": torch.tensor([[10.0, 10, 10, 30], [30, 30, 20, 20]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[-10.0, 50, 30, 100], [200, 200, 220, 230]]), "labels": torch.tensor([3, 4])},
    ]
    with caplog.at_level(logging.WARNING, logger="nnatlas.models.detection._targets"):
        losses = model(images, targets)
    assert "dropped 3 of 4" in caplog.text
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_heads.box_roi_pool.cls_maps.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs targets"):
        model(images)


def test_rfcn_overfits_a_few_shapes_scenes():
    data = ShapesDataset(4, size=64, task="detection", seed=3)
    images, targets = map(list, zip(*(data[i] for i in range(4)), strict=True))
    model = rfcn(num_classes=5).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(12):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert sum(totals[-3:]) / 3 < 0.6 * totals[0], totals


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="backbone must be one of"):
        rfcn(backbone="vgg16")
    with pytest.raises(TypeError, match="unexpected options"):
        rfcn(box_sore_thresh=0.1)
    with pytest.raises(ValueError, match="anchor_sizes must give"):
        rfcn(anchor_sizes=((8,), (16,)))
    with pytest.raises(ValueError, match="returned_layers"):
        rfcn(returned_layers=(3, 1))
