"""R-FCN: Dai et al., "R-FCN: Object Detection via Region-based Fully Convolutional Networks" (NeurIPS 2016).

The notes' last two-step variant. Faster R-CNN runs a per-RoI sub-network (two fully connected layers)
on every proposal; R-FCN moves all learned computation before the RoI step, so it is shared by every
proposal. A 1x1 convolution turns the feature map into ``k^2 (C + 1)`` *position-sensitive score maps*
(``C + 1`` classes, background included) and a sibling one into ``4 k^2`` box maps. A RoI of size
``w x h`` is split into ``k x k`` bins; bin ``(i, j)`` reads only its own maps
(position-sensitive RoI pooling, here ``torchvision.ops.ps_roi_align``):

    r_c(i, j) = mean over (x, y) in bin(i, j) of z_{i, j, c}(x, y),

and the bins vote by averaging, ``r_c = (1 / k^2) sum_{i, j} r_c(i, j)``, giving ``C + 1`` class scores
(softmax) and 4 class-agnostic box deltas per RoI. No weights act after the pooling, so the per-RoI cost
is a pooling and an average. Loss: cross-entropy plus smooth L1 on the deltas of foreground RoIs, as Fast
R-CNN.

What is written here by hand, because torchvision has no R-FCN: the score maps, their pooling and the
vote (:class:`PSRoIAlignScores`, :class:`BinVote`, :class:`RFCNPredictor`). Everything else is
torchvision's: the same ResNet-FPN backbone and ``RegionProposalNetwork`` as the Faster R-CNN of
:mod:`nnatlas.models.detection.rcnn`, and ``RoIHeads`` for proposal sampling, matching, the box coder,
``fastrcnn_loss`` and the post-processing (per-class NMS). The class-agnostic deltas are repeated for every
class so that ``RoIHeads`` reads them as its per-class regression (the loss picks the target class's copy:
the same value). Unlike the paper (one dilated ``conv5`` map at stride 16), the maps are computed on the
FPN levels and each RoI is pooled from the level that FPN's rule assigns (``k0 = 4``, canonical size 224,
torchvision's ``LevelMapper``); online hard example mining is not used. ``ps_roi_align`` samples each bin
as ``roi_align(..., aligned=True)`` does (half-pixel offset).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import ps_roi_align
from torchvision.ops.poolers import LevelMapper

from nnatlas.models.classification._common import check_positive_int
from nnatlas.models.detection._rcnn_common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESNETS,
    SMALL_RCNN_DEFAULTS,
    DetectionContract,
    ResNetFPN,
    featmap_names,
    fpn_anchor_generator,
    resnet_fpn_backbone,
)
from nnatlas.models.registry import register_model

__all__ = ["RFCN", "BinVote", "PSRoIAlignScores", "RFCNPredictor", "rfcn"]


class PSRoIAlignScores(nn.Module):
    """Position-sensitive score maps and their pooling: ``(features, proposals, image_shapes) ->
    (R, num_classes + 4, k, k)``, ``R`` the proposals of all images in order.

    On every level ``f`` of ``featmap_names``: ``h = ReLU(conv_new(f))`` (1x1, ``head_channels``, the
    paper's extra layer), then ``cls_maps(h)`` ``(B, k^2 num_classes, H_l, W_l)`` and ``box_maps(h)``
    ``(B, 4 k^2, H_l, W_l)``. Channel ``c k^2 + i k + j`` is output ``c``'s map for bin ``(i, j)``, the
    layout ``ps_roi_align`` reads. Each RoI is pooled from one level (FPN's ``LevelMapper``) with
    ``sampling_ratio`` x ``sampling_ratio`` bilinear samples per bin.

    Arguments:
        in_channels: channels of the feature maps.
        num_classes: classes including the background.
        featmap_names: the levels RoIs are pooled from, finest first, each half the size of the previous.
        output_size: ``k``, the bins per side (the paper's 7).
        head_channels: channels of the 1x1 convolution before the score maps.
        sampling_ratio: bilinear samples per bin side.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        featmap_names: Sequence[str],
        output_size: int = 7,
        head_channels: int = 256,
        sampling_ratio: int = 2,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("output_size", output_size),
            ("head_channels", head_channels),
            ("sampling_ratio", sampling_ratio),
        ):
            check_positive_int(name, value)
        if not featmap_names:
            raise ValueError("featmap_names must name at least one feature map; got none")
        self.featmap_names = [str(n) for n in featmap_names]
        self.num_classes, self.output_size, self.sampling_ratio = num_classes, output_size, sampling_ratio
        k2 = output_size * output_size
        self.conv_new = nn.Conv2d(in_channels, head_channels, 1)
        self.cls_maps = nn.Conv2d(head_channels, k2 * num_classes, 1)
        self.box_maps = nn.Conv2d(head_channels, k2 * 4, 1)
        for conv in (self.conv_new, self.cls_maps, self.box_maps):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def score_maps(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W) -> (B, k^2 (num_classes + 4), H, W)``: class maps, then box maps."""
        h = torch.relu(self.conv_new(x))  # (B, head_channels, H, W)
        return torch.cat((self.cls_maps(h), self.box_maps(h)), dim=1)

    def forward(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        maps = [features[name] for name in self.featmap_names]
        scales = _level_scales(maps, image_shapes)
        rois = torch.cat(
            [torch.cat((torch.full_like(p[:, :1], i), p), dim=1) for i, p in enumerate(proposals)]
        )  # (R, 5): image index, x1, y1, x2, y2
        k = self.output_size
        out = rois.new_zeros((rois.shape[0], self.num_classes + 4, k, k))
        if len(maps) == 1:
            levels = torch.zeros(rois.shape[0], dtype=torch.int64, device=rois.device)
        else:
            k_min, k_max = (round(-math.log2(s)) for s in (scales[0], scales[-1]))
            levels = LevelMapper(k_min, k_max)(proposals)
        for level, (x, scale) in enumerate(zip(maps, scales, strict=True)):
            idx = torch.nonzero(levels == level).squeeze(1)
            if idx.numel() == 0:
                continue
            pooled = ps_roi_align(
                self.score_maps(x), rois[idx], k, spatial_scale=scale, sampling_ratio=self.sampling_ratio
            )  # (R_l, num_classes + 4, k, k)
            out[idx] = pooled.to(out.dtype)
        return out


def _level_scales(maps: list[Tensor], image_shapes: list[tuple[int, int]]) -> list[float]:
    """Feature size over (padded) image size for each map, rounded to a power of two (torchvision's rule)."""
    height = max(int(s[0]) for s in image_shapes)
    return [2.0 ** round(math.log2(m.shape[-2] / height)) for m in maps]


class BinVote(nn.Module):
    """Average voting over the ``k x k`` bins: ``(R, D, k, k) -> (R, D)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))


class RFCNPredictor(nn.Module):
    """``(R, num_classes + 4) -> (class logits (R, num_classes), box deltas (R, 4 num_classes))``: the
    class-agnostic deltas repeated for every class, the layout torchvision's ``RoIHeads`` reads."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logits, deltas = x.split((self.num_classes, 4), dim=1)  # (R, C + 1), (R, 4)
        return logits, deltas.repeat(1, self.num_classes)  # (R, 4 (C + 1))


class RFCN(DetectionContract, GeneralizedRCNN):
    """R-FCN on torchvision's ``GeneralizedRCNN``: transform, backbone, ``RegionProposalNetwork``, and
    ``RoIHeads`` whose RoI pooling, head and predictor are the position-sensitive ones.

    ``model(images, targets)``: ``images`` a list of ``(3, H, W)`` floats in ``[0, 1]``; training returns
    the dict of losses, eval one ``{"boxes": (N, 4), "labels": (N,), "scores": (N,)}`` per image.

    Arguments:
        backbone: a zoo ResNet with a feature pyramid (``nnatlas.models.detection._rcnn_common.ResNetFPN``).
        num_classes: classes including the background.
        output_size: ``k``, bins per RoI side.
        head_channels: channels of the 1x1 convolution before the score maps.
        min_size, max_size, image_mean, image_std: torchvision's ``GeneralizedRCNNTransform``.
        rpn_anchor_generator: torchvision's ``AnchorGenerator``, one size tuple per backbone level.
        **kwargs: torchvision's ``FasterRCNN`` names for the RPN and box options (``rpn_pre_nms_top_n_train``,
            ``rpn_post_nms_top_n_test``, ``rpn_batch_size_per_image``, ``box_score_thresh``,
            ``box_batch_size_per_image``, ``box_detections_per_img``, ...), with its defaults.
    """

    def __init__(
        self,
        backbone: ResNetFPN,
        num_classes: int,
        *,
        output_size: int = 7,
        head_channels: int = 256,
        min_size: int = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        rpn_anchor_generator: Any,
        **kwargs: Any,
    ) -> None:
        check_positive_int("num_classes", num_classes)
        o = {**_FASTER_RCNN_DEFAULTS, **kwargs}
        unknown = set(o) - set(_FASTER_RCNN_DEFAULTS)
        if unknown:
            raise TypeError(
                f"RFCN got unexpected options {sorted(unknown)}; known: {sorted(_FASTER_RCNN_DEFAULTS)}"
            )
        rpn = RegionProposalNetwork(
            rpn_anchor_generator,
            RPNHead(backbone.out_channels, rpn_anchor_generator.num_anchors_per_location()[0]),
            o["rpn_fg_iou_thresh"],
            o["rpn_bg_iou_thresh"],
            o["rpn_batch_size_per_image"],
            o["rpn_positive_fraction"],
            {"training": o["rpn_pre_nms_top_n_train"], "testing": o["rpn_pre_nms_top_n_test"]},
            {"training": o["rpn_post_nms_top_n_train"], "testing": o["rpn_post_nms_top_n_test"]},
            o["rpn_nms_thresh"],
            score_thresh=o["rpn_score_thresh"],
        )
        pool = PSRoIAlignScores(
            backbone.out_channels,
            num_classes,
            featmap_names=featmap_names(backbone),
            output_size=output_size,
            head_channels=head_channels,
        )
        roi_heads = RoIHeads(
            pool,
            BinVote(),
            RFCNPredictor(num_classes),
            o["box_fg_iou_thresh"],
            o["box_bg_iou_thresh"],
            o["box_batch_size_per_image"],
            o["box_positive_fraction"],
            o["bbox_reg_weights"],
            o["box_score_thresh"],
            o["box_nms_thresh"],
            o["box_detections_per_img"],
        )
        transform = GeneralizedRCNNTransform(min_size, max_size, list(image_mean), list(image_std))
        super().__init__(backbone, rpn, roi_heads, transform)
        self.num_classes = num_classes


#: torchvision's ``FasterRCNN`` defaults for the RPN and box options that :class:`RFCN` takes.
_FASTER_RCNN_DEFAULTS: dict[str, Any] = {
    "rpn_pre_nms_top_n_train": 2000,
    "rpn_pre_nms_top_n_test": 1000,
    "rpn_post_nms_top_n_train": 2000,
    "rpn_post_nms_top_n_test": 1000,
    "rpn_nms_thresh": 0.7,
    "rpn_fg_iou_thresh": 0.7,
    "rpn_bg_iou_thresh": 0.3,
    "rpn_batch_size_per_image": 256,
    "rpn_positive_fraction": 0.5,
    "rpn_score_thresh": 0.0,
    "box_score_thresh": 0.05,
    "box_nms_thresh": 0.5,
    "box_detections_per_img": 100,
    "box_fg_iou_thresh": 0.5,
    "box_bg_iou_thresh": 0.5,
    "box_batch_size_per_image": 512,
    "box_positive_fraction": 0.25,
    "bbox_reg_weights": None,
}


@register_model(task="detection", input_size=(3, 64, 64), min_size=1)
def rfcn(
    *,
    num_classes: int = 21,
    backbone: str = "resnet18",
    weights_backbone: str | None = None,
    progress: bool = True,
    trainable_backbone_layers: int | None = None,
    norm_layer: Callable[..., nn.Module] | None = None,
    returned_layers: Sequence[int] = (1, 2, 3),
    fpn_channels: int = 64,
    anchor_sizes: Sequence[Sequence[int]] | None = None,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    output_size: int = 7,
    head_channels: int = 256,
    min_size: int = 64,
    max_size: int = 96,
    **kwargs: Any,
) -> RFCN:
    """R-FCN (Dai et al. 2016): position-sensitive score maps and RoI pooling on a ResNet-FPN and its RPN.

    The default is the small CPU configuration of ``fasterrcnn_resnet18_fpn_small`` with R-FCN's head in
    place of the two fully connected layers: ResNet-18 stem and ``returned_layers=(1, 2, 3)`` with an FPN
    of ``fpn_channels=64`` (strides 4, 8, 16 and a max-pool level at 32), anchors twice each level's
    stride (8, 16, 32, 64 px) with ratios 0.5, 1, 2, images resized inside to ``min_size=64``
    (``max_size=96``), 500 / 250 RPN candidates per level and 100 / 50 proposals (training / eval), 64
    anchors and 64 RoIs sampled per image, at most 50 detections; ``k = output_size = 7`` bins per side
    (the paper's), a 1x1 convolution of ``head_channels=256`` before the score maps. ``backbone`` may be
    any zoo ResNet (``resnet101`` with ``returned_layers=(1, 2, 3, 4)``, ``fpn_channels=256`` and
    torchvision's sampling sizes is the paper's scale); ``weights_backbone="torchvision"`` starts from
    ImageNet (``FrozenBatchNorm2d``, 3 trainable layers, as torchvision). Other ``kwargs``: the RPN and box
    options of :class:`RFCN`.
    """
    if backbone not in RESNETS:
        raise ValueError(f"backbone must be one of {', '.join(RESNETS)}; got {backbone!r}")
    check_positive_int("num_classes", num_classes)
    body = resnet_fpn_backbone(
        backbone,
        weights_backbone=weights_backbone,
        progress=progress,
        trainable_backbone_layers=trainable_backbone_layers,
        norm_layer=norm_layer,
        returned_layers=returned_layers,
        out_channels=fpn_channels,
    )
    return RFCN(
        body,
        num_classes,
        output_size=output_size,
        head_channels=head_channels,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=fpn_anchor_generator(body, anchor_sizes, aspect_ratios),
        **{**SMALL_RCNN_DEFAULTS, **kwargs},
    )
