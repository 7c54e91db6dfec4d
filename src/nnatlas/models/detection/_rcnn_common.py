"""Shared pieces of the two-stage detectors (Faster / Mask R-CNN, R-FCN): the ResNet-FPN backbone, layer
freezing, and the forward that checks images and sanitises targets before torchvision's ``GeneralizedRCNN``.

The backbone is a ResNet of the classification zoo read through its ``forward_intermediates``, with
torchvision's ``FeaturePyramidNetwork`` (Lin et al. 2017) on top: the same modules, ``state_dict`` keys
(``body.conv1.weight``, ``body.layer1.0.conv1.weight``, ``fpn.inner_blocks.0.0.weight``, ...) and numbers
as torchvision's ``BackboneWithFPN`` over ``IntermediateLayerGetter(resnet50)``. The ResNet's classifier
and the stages above the deepest returned one become ``nn.Identity`` (no parameters, no keys).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool

from nnatlas.models.classification._common import check_positive_int
from nnatlas.models.classification.resnet import ResNet
from nnatlas.models.detection._targets import sanitize_targets
from nnatlas.models.registry import get_model_info

log = logging.getLogger(__name__)

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
#: ImageNet mean and standard deviation, as torchvision's R-CNN transform normalises.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ResNetFPN(nn.Module):
    """``(B, 3, H, W) -> OrderedDict`` of FPN maps ``"0", "1", ...`` (and ``"pool"``), all ``out_channels``.

    Level ``i`` comes from ``layer{returned_layers[i]}`` of the ResNet (stride ``2 ** (layer + 1)``:
    4, 8, 16, 32); ``LastLevelMaxPool`` adds ``"pool"`` at twice the last stride (torchvision's default).

    Arguments:
        body: a zoo :class:`~nnatlas.models.classification.ResNet`; its ``fc`` and the stages above the
            deepest returned one are replaced by ``nn.Identity``.
        returned_layers: increasing stage numbers in 1..4 whose outputs feed the FPN.
        out_channels: channels of every FPN level.
        extra_blocks: torchvision's ``ExtraFPNBlock`` (default ``LastLevelMaxPool()``).
        norm_layer: normalisation inside the FPN (torchvision's default: none).
    """

    def __init__(
        self,
        body: ResNet,
        *,
        returned_layers: Sequence[int] = (1, 2, 3, 4),
        out_channels: int = 256,
        extra_blocks: ExtraFPNBlock | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(body, ResNet):
            raise TypeError(f"body must be an nnatlas ResNet; got {type(body).__name__}")
        returned = tuple(returned_layers)
        if not returned or list(returned) != sorted(set(returned)) or returned[0] < 1 or returned[-1] > 4:
            raise ValueError(
                f"returned_layers must be increasing stage numbers in 1..4; got {returned_layers!r}"
            )
        check_positive_int("out_channels", out_channels)
        body.fc = nn.Identity()
        for i in range(returned[-1] + 1, 5):
            setattr(body, f"layer{i}", nn.Identity())
        self.body = body
        self.returned_layers = returned
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=[body.stage_channels[i - 1] for i in returned],
            out_channels=out_channels,
            extra_blocks=extra_blocks if extra_blocks is not None else LastLevelMaxPool(),
            norm_layer=norm_layer,
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        maps = self.body.forward_intermediates(x, self.returned_layers)  # (B, c_i, H / s_i, W / s_i)
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def freeze_backbone_layers(body: nn.Module, trainable_layers: int) -> None:
    """Freeze all but the last ``trainable_layers`` of ``layer4, layer3, layer2, layer1, conv1`` (5: all,
    ``bn1`` included), as torchvision's ``_resnet_fpn_extractor`` does."""
    if (
        isinstance(trainable_layers, bool)
        or not isinstance(trainable_layers, int)
        or not 0 <= trainable_layers <= 5
    ):
        raise ValueError(f"trainable_backbone_layers must be an int in [0, 5]; got {trainable_layers!r}")
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        layers_to_train.append("bn1")
    for name, parameter in body.named_parameters():
        if not any(name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)


def resolve_backbone_training(
    is_trained: bool, trainable_backbone_layers: int | None, norm_layer: Callable[..., nn.Module] | None
) -> tuple[int, Callable[..., nn.Module]]:
    """torchvision's defaults: with pretrained weights, 3 trainable layers and ``FrozenBatchNorm2d``;
    without, all 5 layers trainable (a value given is ignored with a warning) and ``nn.BatchNorm2d``."""
    if not is_trained:
        if trainable_backbone_layers is not None and trainable_backbone_layers != 5:
            log.warning(
                "trainable_backbone_layers=%r has no effect without pretrained weights; all 5 layers train",
                trainable_backbone_layers,
            )
        trainable_backbone_layers = 5
    elif trainable_backbone_layers is None:
        trainable_backbone_layers = 3
    if norm_layer is None:
        norm_layer = FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    return trainable_backbone_layers, norm_layer


def build_resnet_body(
    name: str,
    *,
    weights_backbone: str | None,
    progress: bool,
    norm_layer: Callable[..., nn.Module],
    replace_stride_with_dilation: Sequence[bool] | None = None,
) -> ResNet:
    """The zoo ResNet ``name`` (with ImageNet weights when ``weights_backbone`` is given)."""
    if name not in RESNETS:
        raise ValueError(f"backbone must be one of {', '.join(RESNETS)}; got {name!r}")
    builder = get_model_info(name).builder
    return builder(
        weights=weights_backbone,
        progress=progress,
        norm_layer=norm_layer,
        replace_stride_with_dilation=replace_stride_with_dilation,
    )


#: RPN and RoI sampling of the small CPU configurations: scenes hold a few objects, so a few proposals do.
SMALL_RCNN_DEFAULTS: dict[str, Any] = {
    "rpn_pre_nms_top_n_train": 500,
    "rpn_pre_nms_top_n_test": 250,
    "rpn_post_nms_top_n_train": 100,
    "rpn_post_nms_top_n_test": 50,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 64,
    "box_detections_per_img": 50,
}


def resnet_fpn_backbone(
    name: str,
    *,
    weights_backbone: str | None,
    progress: bool,
    trainable_backbone_layers: int | None,
    norm_layer: Callable[..., nn.Module] | None,
    returned_layers: Sequence[int] = (1, 2, 3, 4),
    out_channels: int = 256,
    detector_weights: bool = False,
) -> ResNetFPN:
    """The zoo ResNet ``name`` with an FPN, frozen and normalised by torchvision's rules
    (:func:`resolve_backbone_training`; pretrained when ``weights_backbone`` is given or the whole detector's
    weights will be loaded, ``detector_weights``)."""
    is_trained = detector_weights or weights_backbone is not None
    trainable, norm = resolve_backbone_training(is_trained, trainable_backbone_layers, norm_layer)
    body = build_resnet_body(name, weights_backbone=weights_backbone, progress=progress, norm_layer=norm)
    freeze_backbone_layers(body, trainable)
    return ResNetFPN(body, returned_layers=returned_layers, out_channels=out_channels)


def fpn_anchor_generator(
    backbone: ResNetFPN,
    anchor_sizes: Sequence[Sequence[int]] | None,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
) -> AnchorGenerator:
    """torchvision's ``AnchorGenerator`` with one tuple of sizes per FPN level (the ``"pool"`` level
    included); ``anchor_sizes=None``: one size per level, twice its stride (8, 16, 32, 64 for strides
    4, 8, 16 and the pool level 32 of ``returned_layers=(1, 2, 3)``)."""
    levels = len(backbone.returned_layers) + 1
    if anchor_sizes is None:
        strides = [2 ** (i + 1) for i in backbone.returned_layers]
        anchor_sizes = tuple((2 * s,) for s in (*strides, 2 * strides[-1]))
    anchor_sizes = tuple(tuple(int(a) for a in sizes) for sizes in anchor_sizes)
    if len(anchor_sizes) != levels or any(not sizes or min(sizes) < 1 for sizes in anchor_sizes):
        raise ValueError(
            f"anchor_sizes must give positive sizes for each of the {levels} FPN levels "
            f"(returned_layers {backbone.returned_layers} and 'pool'); got {anchor_sizes!r}"
        )
    ratios = tuple(float(r) for r in aspect_ratios)
    if not ratios or min(ratios) <= 0:
        raise ValueError(f"aspect_ratios must be positive numbers; got {aspect_ratios!r}")
    return AnchorGenerator(anchor_sizes, (ratios,) * levels)


def featmap_names(backbone: ResNetFPN) -> list[str]:
    """Names of the FPN levels RoIs are pooled from (all but ``"pool"``, as torchvision)."""
    return [str(i) for i in range(len(backbone.returned_layers))]


def check_images(images: Any, channels: int) -> list[Tensor]:
    """``images`` as a list of ``(channels, H, W)`` floating tensors, or a clear error."""
    if isinstance(images, Tensor) or not isinstance(images, (list, tuple)):
        raise TypeError(
            f"a detector takes a list of (C, H, W) image tensors; got {type(images).__name__} "
            "(pass list(batch) for a (B, C, H, W) batch)"
        )
    if not images:
        raise ValueError("a detector needs at least one image; got an empty list")
    for i, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise TypeError(f"image {i} must be a tensor; got {type(image).__name__}")
        if image.dim() != 3 or image.shape[0] != channels or image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"image {i} must be ({channels}, H, W); got shape {tuple(image.shape)}")
        if not image.is_floating_point():
            raise TypeError(f"image {i} must be a float tensor in [0, 1]; got {image.dtype}")
    return list(images)


class DetectionContract:
    """Mixin for torchvision's ``GeneralizedRCNN`` subclasses: the forward of every nnatlas R-CNN.

    Checks the images, refuses training without targets, and passes targets through
    ``nnatlas.models.detection._targets.sanitize_targets`` (boxes clipped to the image, degenerate
    ones dropped with a logged warning, labels checked against ``num_classes``) before torchvision's
    forward, which would assert on a degenerate box.
    """

    num_classes: int

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        images = check_images(images, len(self.transform.image_mean))
        if targets is not None:
            sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
            targets = sanitize_targets(targets, sizes, num_classes=self.num_classes)
        elif self.training:
            raise ValueError(
                "a detector in training mode needs targets (a list of {'boxes', 'labels'} dicts, one per "
                "image); call model.eval() to predict"
            )
        return super().forward(images, targets)


def overwrite_eps(model: nn.Module, eps: float) -> None:
    """Set ``eps`` of every ``FrozenBatchNorm2d`` (torchvision's COCO_V1 R-CNN weights use 0)."""
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = eps


__all__ = [
    "DetectionContract",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESNETS",
    "ResNetFPN",
    "build_resnet_body",
    "SMALL_RCNN_DEFAULTS",
    "check_images",
    "featmap_names",
    "fpn_anchor_generator",
    "resnet_fpn_backbone",
    "freeze_backbone_layers",
    "overwrite_eps",
    "resolve_backbone_training",
]
