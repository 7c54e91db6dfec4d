"""Faster R-CNN (Ren et al., "Faster R-CNN: Towards Real-Time Object Detection with Region Proposal
Networks", NeurIPS 2015) and Mask R-CNN (He et al., ICCV 2017) with a feature pyramid (Lin et al., CVPR 2017).

The notes' two-step detectors: a region proposal network (RPN) slides over the backbone's feature maps and
scores ``A`` anchors per position (object or not, and four box deltas); the best proposals after
non-maximum suppression are cut out of the feature maps by RoIAlign (``7 x 7`` bins), classified into
``num_classes`` (background included) and refined per class; Mask R-CNN adds a small fully convolutional
head that predicts a ``28 x 28`` mask per RoI and class. Box deltas follow R-CNN's parametrisation,
``t_x = (x - x_a) / w_a``, ``t_y = (y - y_a) / h_a``, ``t_w = log(w / w_a)``, ``t_h = log(h / h_a)``.
The loss is ``L = L_rpn_cls + L_rpn_box + L_cls + L_box (+ L_mask)``: binary / softmax cross-entropy and
smooth L1 on the deltas of positive samples (binary cross-entropy per mask pixel).

Everything but the backbone is torchvision's well-kept code (``AnchorGenerator``, ``RegionProposalNetwork``,
``RoIHeads``, ``MultiScaleRoIAlign``, ``GeneralizedRCNNTransform``, ``FeaturePyramidNetwork``); the
backbone is the zoo's :class:`~nnatlas.models.classification.resnet.ResNet`. ``fasterrcnn_resnet50_fpn`` and
``maskrcnn_resnet50_fpn`` have torchvision's modules, ``state_dict`` keys and numbers (they load
torchvision's state dicts with ``strict=True``); the ``*_small`` builders are CPU configurations for
64-96 px scenes such as the embedded shapes.

Contract (torchvision's): ``model(images, targets)`` with ``images`` a list of ``(3, H, W)`` float tensors in
``[0, 1]`` (sizes may differ; normalisation and resizing happen inside). Training mode returns the dict of
losses ``loss_classifier, loss_box_reg, loss_objectness, loss_rpn_box_reg`` (+ ``loss_mask``); eval mode
returns per image ``{"boxes": (N, 4) xyxy in input pixels, "labels": (N,) int64, "scores": (N,)}``
(+ ``"masks": (N, 1, H, W)`` probabilities). Targets first go through
``nnatlas.models.detection._targets.sanitize_targets``: degenerate boxes and boxes outside the image
are dropped with a logged warning (torchvision would assert), images without objects train as background.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn
from torchvision.models import detection as tv_detection
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from nnatlas.models.classification._common import (
    check_positive_int,
    check_pretrained_arguments,
    load_torchvision_weights,
    resolve_torchvision_weights,
)
from nnatlas.models.detection._rcnn_common import (
    SMALL_RCNN_DEFAULTS,
    DetectionContract,
    ResNetFPN,
    featmap_names,
    fpn_anchor_generator,
    overwrite_eps,
    resnet_fpn_backbone,
)
from nnatlas.models.registry import register_model

__all__ = [
    "FasterRCNN",
    "MaskRCNN",
    "fasterrcnn_resnet18_fpn_small",
    "fasterrcnn_resnet50_fpn",
    "maskrcnn_resnet18_fpn_small",
    "maskrcnn_resnet50_fpn",
]


class FasterRCNN(DetectionContract, tv_detection.FasterRCNN):
    """torchvision's ``FasterRCNN`` with nnatlas' input checks and target sanitising.

    ``model(images, targets)``: ``images`` a list of ``(3, H, W)`` floats in ``[0, 1]``; training returns
    the dict of losses, eval one ``{"boxes": (N, 4), "labels": (N,), "scores": (N,)}`` per image.

    Arguments:
        backbone: a module with ``out_channels`` returning an ordered dict of feature maps
            (a zoo ResNet with a feature pyramid, ``nnatlas.models.detection._rcnn_common.ResNetFPN``).
        num_classes: classes including the background (labels ``1 .. num_classes - 1``).
        **kwargs: torchvision's ``FasterRCNN`` options (``min_size``, ``max_size``, ``rpn_*``, ``box_*``,
            ``rpn_anchor_generator``, ``box_roi_pool``, ``box_head``, ``box_predictor``, ...).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, **kwargs: Any) -> None:
        check_positive_int("num_classes", num_classes)
        given = None if kwargs.get("box_predictor") is not None else num_classes
        super().__init__(backbone, num_classes=given, **kwargs)
        self.num_classes = num_classes


class MaskRCNN(DetectionContract, tv_detection.MaskRCNN):
    """torchvision's ``MaskRCNN`` with nnatlas' input checks and target sanitising; training targets need
    ``"masks"`` ``(N, H, W)`` uint8 (one binary mask per box). Arguments as :class:`FasterRCNN`, plus
    ``mask_roi_pool``, ``mask_head``, ``mask_predictor``.

    ``model(images, targets)``: ``images`` a list of ``(3, H, W)`` floats in ``[0, 1]``; training returns
    the dict of losses, eval one ``{"boxes": (N, 4), "labels": (N,), "scores": (N,)}`` per image (plus
    ``"masks": (N, 1, H, W)`` probabilities).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, **kwargs: Any) -> None:
        check_positive_int("num_classes", num_classes)
        given = None if kwargs.get("box_predictor") is not None else num_classes
        super().__init__(backbone, num_classes=given, **kwargs)
        self.num_classes = num_classes


def _resnet50_fpn(
    arch: str,
    model_cls: type[FasterRCNN] | type[MaskRCNN],
    *,
    weights: str | None,
    progress: bool,
    num_classes: int,
    weights_backbone: str | None,
    trainable_backbone_layers: int | None,
    norm_layer: Callable[..., nn.Module] | None,
    **kwargs: Any,
) -> FasterRCNN | MaskRCNN:
    w = resolve_torchvision_weights(arch, weights)
    if w is not None:
        check_pretrained_arguments(arch, w, num_classes=num_classes, in_channels=3)
        weights_backbone = None  # the detector's weights hold the backbone's, as in torchvision
    backbone = resnet_fpn_backbone(
        "resnet50",
        weights_backbone=weights_backbone,
        progress=progress,
        trainable_backbone_layers=trainable_backbone_layers,
        norm_layer=norm_layer,
        detector_weights=w is not None,
    )
    model = model_cls(backbone, num_classes, **kwargs)
    if w is not None:
        load_torchvision_weights(model, w, progress=progress)
        if w.name == "COCO_V1":  # torchvision's first COCO weights were trained with eps = 0
            overwrite_eps(model, 0.0)
    return model


# The models resize every image inside (torchvision's min_size 800 for the ResNet-50 ones): input_size is
# only a small example input.
_REG_R50 = {"task": "detection", "input_size": (3, 128, 160), "min_size": 1}
_REG_SMALL = {"task": "detection", "input_size": (3, 64, 64), "min_size": 1}


@register_model(**_REG_R50)
def fasterrcnn_resnet50_fpn(
    *,
    weights: str | None = None,
    progress: bool = True,
    num_classes: int = 91,
    weights_backbone: str | None = None,
    trainable_backbone_layers: int | None = None,
    norm_layer: Callable[..., nn.Module] | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN with a ResNet-50-FPN backbone (Ren et al. 2015; Lin et al. 2017), torchvision's layout.

    ``weights="torchvision"`` loads torchvision's COCO weights (``FasterRCNN_ResNet50_FPN_Weights``,
    ``num_classes=91``); ``weights_backbone="torchvision"`` only the ImageNet ResNet-50. As torchvision:
    pretrained models use ``FrozenBatchNorm2d`` and train the last ``trainable_backbone_layers`` (default 3)
    of ``layer4, layer3, layer2, layer1, conv1``; without weights the batch norm is ``nn.BatchNorm2d``
    and every layer trains. 41,755,286 parameters with frozen batch norm (torchvision's metadata),
    41,808,406 with ``nn.BatchNorm2d``. ``kwargs`` go to torchvision's ``FasterRCNN`` (``min_size=800``,
    ``max_size=1333``, ``box_score_thresh=0.05``, ...).
    """
    return _resnet50_fpn(
        "fasterrcnn_resnet50_fpn",
        FasterRCNN,
        weights=weights,
        progress=progress,
        num_classes=num_classes,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        norm_layer=norm_layer,
        **kwargs,
    )


@register_model(**_REG_R50)
def maskrcnn_resnet50_fpn(
    *,
    weights: str | None = None,
    progress: bool = True,
    num_classes: int = 91,
    weights_backbone: str | None = None,
    trainable_backbone_layers: int | None = None,
    norm_layer: Callable[..., nn.Module] | None = None,
    **kwargs: Any,
) -> MaskRCNN:
    """Mask R-CNN with a ResNet-50-FPN backbone (He et al. 2017), torchvision's layout.

    As :func:`fasterrcnn_resnet50_fpn` plus torchvision's mask branch (RoIAlign ``14 x 14``, four 3x3
    convolutions of 256 channels, a 2x transposed convolution, ``28 x 28`` mask logits per class).
    ``weights="torchvision"``: ``MaskRCNN_ResNet50_FPN_Weights``. 44,401,393 parameters with frozen batch
    norm (torchvision's metadata), 44,454,513 with ``nn.BatchNorm2d``.
    """
    return _resnet50_fpn(
        "maskrcnn_resnet50_fpn",
        MaskRCNN,
        weights=weights,
        progress=progress,
        num_classes=num_classes,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        norm_layer=norm_layer,
        **kwargs,
    )


def _small_backbone(
    *,
    weights_backbone: str | None,
    progress: bool,
    trainable_backbone_layers: int | None,
    norm_layer: Callable[..., nn.Module] | None,
    returned_layers: Sequence[int],
    fpn_channels: int,
) -> ResNetFPN:
    return resnet_fpn_backbone(
        "resnet18",
        weights_backbone=weights_backbone,
        progress=progress,
        trainable_backbone_layers=trainable_backbone_layers,
        norm_layer=norm_layer,
        returned_layers=returned_layers,
        out_channels=fpn_channels,
    )


def _small_box_branch(
    backbone: ResNetFPN, num_classes: int, representation_size: int, kwargs: dict[str, Any]
) -> dict[str, Any]:
    check_positive_int("num_classes", num_classes)
    check_positive_int("representation_size", representation_size)
    names = featmap_names(backbone)
    options = {
        **SMALL_RCNN_DEFAULTS,
        "box_roi_pool": MultiScaleRoIAlign(featmap_names=names, output_size=7, sampling_ratio=2),
        "box_head": TwoMLPHead(backbone.out_channels * 7 * 7, representation_size),
        "box_predictor": FastRCNNPredictor(representation_size, num_classes),
    }
    options.update(kwargs)
    return options


_SMALL_DOC = """

    Small CPU configuration for 64-96 px scenes with objects of 8-40 px (the embedded shapes): ResNet-18
    (stem and ``returned_layers=(1, 2, 3)``: ``layer4`` is dropped, its map would be 2x2) with an FPN of
    ``fpn_channels=64`` at strides 4, 8, 16 and a max-pool level at 32; one anchor size per level,
    twice its stride (8, 16, 32, 64 px), ratios 0.5, 1, 2; images resized inside to ``min_size=64``
    (``max_size=96``); 500 / 250 RPN candidates per level before NMS and 100 / 50 proposals after
    (training / eval), 64 anchors and 64 RoIs sampled per image, a two-layer box head of
    ``representation_size=256``, at most 50 detections per image. Trained from scratch by default
    (``nn.BatchNorm2d``, all layers trainable); ``weights_backbone="torchvision"`` starts from ImageNet
    (then ``FrozenBatchNorm2d`` and 3 trainable layers, as torchvision). Other ``kwargs`` go to
    torchvision's detector class.
    """


@register_model(**_REG_SMALL)
def fasterrcnn_resnet18_fpn_small(
    *,
    num_classes: int = 21,
    weights_backbone: str | None = None,
    progress: bool = True,
    trainable_backbone_layers: int | None = None,
    norm_layer: Callable[..., nn.Module] | None = None,
    returned_layers: Sequence[int] = (1, 2, 3),
    fpn_channels: int = 64,
    anchor_sizes: Sequence[Sequence[int]] | None = None,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    representation_size: int = 256,
    min_size: int = 64,
    max_size: int = 96,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN with a ResNet-18-FPN backbone, small enough to train on a CPU."""
    backbone = _small_backbone(
        weights_backbone=weights_backbone,
        progress=progress,
        trainable_backbone_layers=trainable_backbone_layers,
        norm_layer=norm_layer,
        returned_layers=returned_layers,
        fpn_channels=fpn_channels,
    )
    options = _small_box_branch(backbone, num_classes, representation_size, kwargs)
    anchors = fpn_anchor_generator(backbone, anchor_sizes, aspect_ratios)
    return FasterRCNN(
        backbone, num_classes, rpn_anchor_generator=anchors, min_size=min_size, max_size=max_size, **options
    )


@register_model(**_REG_SMALL)
def maskrcnn_resnet18_fpn_small(
    *,
    num_classes: int = 21,
    weights_backbone: str | None = None,
    progress: bool = True,
    trainable_backbone_layers: int | None = None,
    norm_layer: Callable[..., nn.Module] | None = None,
    returned_layers: Sequence[int] = (1, 2, 3),
    fpn_channels: int = 64,
    anchor_sizes: Sequence[Sequence[int]] | None = None,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    representation_size: int = 256,
    mask_channels: int = 64,
    min_size: int = 64,
    max_size: int = 96,
    **kwargs: Any,
) -> MaskRCNN:
    """Mask R-CNN with a ResNet-18-FPN backbone, small enough to train on a CPU; the mask branch pools
    ``14 x 14`` and runs two 3x3 convolutions of ``mask_channels=64`` before torchvision's predictor."""
    check_positive_int("mask_channels", mask_channels)
    backbone = _small_backbone(
        weights_backbone=weights_backbone,
        progress=progress,
        trainable_backbone_layers=trainable_backbone_layers,
        norm_layer=norm_layer,
        returned_layers=returned_layers,
        fpn_channels=fpn_channels,
    )
    options = {
        "mask_roi_pool": MultiScaleRoIAlign(
            featmap_names=featmap_names(backbone), output_size=14, sampling_ratio=2
        ),
        "mask_head": MaskRCNNHeads(backbone.out_channels, (mask_channels, mask_channels), 1),
        "mask_predictor": MaskRCNNPredictor(mask_channels, mask_channels, num_classes),
        **_small_box_branch(backbone, num_classes, representation_size, kwargs),
    }
    anchors = fpn_anchor_generator(backbone, anchor_sizes, aspect_ratios)
    return MaskRCNN(
        backbone, num_classes, rpn_anchor_generator=anchors, min_size=min_size, max_size=max_size, **options
    )


fasterrcnn_resnet18_fpn_small.__doc__ += _SMALL_DOC
maskrcnn_resnet18_fpn_small.__doc__ += _SMALL_DOC
