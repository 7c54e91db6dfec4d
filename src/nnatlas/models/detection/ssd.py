"""SSD: Liu, Anguelov, Erhan, Szegedy, Reed, Fu & Berg, "SSD: Single Shot MultiBox Detector" (ECCV 2016).

A single-step detector: default boxes ("anchors") of several scales and aspect ratios tile feature maps
of decreasing resolution; at every location of map ``k`` a ``3 x 3`` convolution predicts, for each of its
default boxes, ``num_classes`` scores (background included) and 4 offsets. Training matches each default
box to the ground truth of IoU >= 0.5 (and each ground truth to its best default box), and minimises
softmax cross-entropy on the matched boxes plus the hardest negatives (3 negatives per positive) and a
smooth-L1 loss on the offsets, both divided by the number of matches (section 2.2). Inference keeps the
boxes above a score, then per-class non-maximum suppression.

``ssd300_vgg16`` is SSD300 of the paper (figure 2) on our VGG-16 with torchvision's ``state_dict`` layout:
conv1_1 .. conv4_3 (``backbone.features``, pool3 rounding up so that 300 -> 38), conv4_3 L2-normalised
and rescaled by a learned per-channel weight initialised to 20 (``backbone.scale_weight``, section 3.1 and
ParseNet), pool5 as a ``3 x 3`` max pool of stride 1, fc6 as a ``3 x 3`` convolution dilated by 6 and fc7 as
a ``1 x 1`` (the "atrous" fully connected layers, ``backbone.extra.0``), then conv8_2 .. conv11_2
(``backbone.extra.1..4``): six maps of 38, 19, 10, 5, 3 and 1 cells with 4, 6, 6, 6, 4, 4 default boxes,
8732 in all. The head, the default boxes (``DefaultBoxGenerator``), the matching, the loss, the input
transform and the post-processing are torchvision's ``SSD`` class; this module builds the backbone
from :mod:`nnatlas.models.classification.vgg` and sanitises the training targets (degenerate or outside
boxes are dropped with a warning instead of torchvision's assertion).

``ssd_small`` is the same detector on a small backbone for CPU training (see its docstring).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD as _TorchvisionSSD

from nnatlas._validate import check_int
from nnatlas.models.classification._common import (
    check_pretrained_arguments,
    load_torchvision_weights,
    resolve_torchvision_weights,
)
from nnatlas.models.classification.vgg import VGG
from nnatlas.models.detection._single_common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FeatureBackbone,
    build_backbone,
    check_images,
)
from nnatlas.models.detection._targets import sanitize_targets
from nnatlas.models.registry import get_model_info, register_model

__all__ = ["SSD", "SSDVGGBackbone", "ssd300_vgg16", "ssd_small"]


class SSD(_TorchvisionSSD):
    """torchvision's ``SSD`` (same arguments, modules and numbers) with our input checks, and training
    targets passed through ``nnatlas.models.detection._targets.sanitize_targets`` (boxes clipped to
    the image; degenerate and outside boxes dropped with a warning), so that they never stop training.

    ``model(images, targets)``: ``images`` a list of ``(3, H, W)`` floats in ``[0, 1]`` (any sizes, each
    resized to ``size``); training returns ``{"bbox_regression", "classification"}``; eval returns one
    ``{"boxes", "labels", "scores"}`` per image in its own pixels.
    """

    min_size = 1

    def __init__(
        self,
        backbone: nn.Module,
        anchor_generator: DefaultBoxGenerator,
        size: tuple[int, int],
        num_classes: int,
        **kwargs,
    ) -> None:
        super().__init__(
            backbone, anchor_generator, size, check_int("num_classes", num_classes, minimum=2), **kwargs
        )
        self.num_classes = num_classes

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        images = check_images(images, model="SSD")
        if self.training:
            if targets is None:
                raise ValueError("SSD in training mode needs targets (a list of dicts, one per image)")
            sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
            targets = sanitize_targets(targets, sizes, num_classes=self.num_classes)
        else:
            targets = None
        return super().forward(images, targets)


def _xavier_init(module: nn.Module) -> None:
    """torchvision's initialisation of SSD's added layers: Xavier-uniform weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _extra_block(c_in: int, mid: int, c_out: int, *, stride: int, padding: int) -> nn.Sequential:
    """``1 x 1`` reduction then a ``3 x 3`` convolution (conv8_2 .. conv11_2 of figure 2), ReLU after each."""
    return nn.Sequential(
        nn.Conv2d(c_in, mid, kernel_size=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid, c_out, kernel_size=3, padding=padding, stride=stride),
        nn.ReLU(inplace=True),
    )


class SSDVGGBackbone(nn.Module):
    """The six feature maps of SSD300 from the ``features`` of a VGG-16 (``(B, 3, 300, 300)`` in).

    ``forward`` returns an ``OrderedDict`` ``"0".."5"``: conv4_3 normalised, ``scale_weight * x / ||x||``
    over channels (``(B, 512, 38, 38)``), fc7 ``(B, 1024, 19, 19)``, conv8_2 ``(B, 512, 10, 10)``, conv9_2
    ``(B, 256, 5, 5)``, conv10_2 ``(B, 256, 3, 3)``, conv11_2 ``(B, 256, 1, 1)``. Keys and modules as
    torchvision's ``SSDFeatureExtractorVGG``.
    """

    def __init__(self, vgg_features: nn.Sequential) -> None:
        super().__init__()
        pools = [i for i, m in enumerate(vgg_features) if isinstance(m, nn.MaxPool2d)]
        if len(pools) != 5:
            raise ValueError(f"vgg_features must hold the 5 max pools of a VGG; got {len(pools)}")
        vgg_features[pools[2]].ceil_mode = True  # pool3 rounds up: 75 -> 38, as the paper's Caffe model
        self.scale_weight = nn.Parameter(torch.full((512,), 20.0))
        self.features = nn.Sequential(*vgg_features[: pools[3]])  # conv1_1 .. conv4_3 (+ ReLU)
        fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),  # pool5, 3 x 3 of stride 1
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),  # fc6, atrous
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, kernel_size=1),  # fc7
            nn.ReLU(inplace=True),
        )
        extra = [
            _extra_block(1024, 256, 512, stride=2, padding=1),  # conv8_2: 19 -> 10
            _extra_block(512, 128, 256, stride=2, padding=1),  # conv9_2: 10 -> 5
            _extra_block(256, 128, 256, stride=1, padding=0),  # conv10_2: 5 -> 3
            _extra_block(256, 128, 256, stride=1, padding=0),  # conv11_2: 3 -> 1
        ]
        _xavier_init(fc)
        for block in extra:
            _xavier_init(block)
        # pool4 .. conv5_3 (+ ReLU) then fc6, fc7; pool5 of the VGG is dropped.
        self.extra = nn.ModuleList([nn.Sequential(*vgg_features[pools[3] : -1], fc), *extra])
        self.out_channels = [512, 1024, 512, 256, 256, 256]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        x = self.features(x)  # (B, 512, 38, 38) conv4_3
        out = [self.scale_weight.view(1, -1, 1, 1) * F.normalize(x)]
        for block in self.extra:
            x = block(x)
            out.append(x)
        return OrderedDict((str(i), v) for i, v in enumerate(out))


def _vgg16_features(weights: str | None, progress: bool) -> nn.Sequential:
    """The ``features`` of our VGG-16, with torchvision's ImageNet weights when ``weights`` is given.

    ``"torchvision"`` means torchvision's ``IMAGENET1K_FEATURES`` (the Caffe-trained features that
    torchvision's SSD starts from); ``"torchvision:<TAG>"`` any other tag of ``vgg16``.
    """
    if weights is None:  # no classifier allocated: only the features are materialised
        with torch.device("meta"):
            model = get_model_info("vgg16").builder(init_weights=False)
        features = model.features.to_empty(device=torch.get_default_device())
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        return features
    w = resolve_torchvision_weights(
        "vgg16", "torchvision:IMAGENET1K_FEATURES" if weights == "torchvision" else weights
    )
    model: VGG = get_model_info("vgg16").builder(init_weights=False)
    load_torchvision_weights(model, w, progress=progress)
    return model.features


def _freeze_vgg_stages(features: nn.Sequential, trainable: int) -> None:
    """Freeze all but the last ``trainable`` of the 5 stages of VGG ``features`` (torchvision's rule)."""
    stage_starts = [0] + [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)][:-1]
    freeze_before = len(features) if trainable == 0 else stage_starts[len(stage_starts) - trainable]
    for m in features[:freeze_before]:
        for p in m.parameters():
            p.requires_grad_(False)


@register_model(task="detection", input_size=(3, 300, 300), min_size=1)
def ssd300_vgg16(
    *,
    weights: str | None = None,
    progress: bool = True,
    num_classes: int = 91,
    weights_backbone: str | None = None,
    trainable_backbone_layers: int | None = None,
    **kwargs,
) -> SSD:
    """SSD300 (Liu et al. 2016) on VGG-16: torchvision's ``ssd300_vgg16``, 35,641,826 parameters (91 classes).

    Same ``state_dict`` keys, modules and outputs as ``torchvision.models.detection.ssd300_vgg16``;
    ``weights="torchvision"`` loads its COCO weights (``num_classes`` must stay 91),
    ``weights_backbone="torchvision"`` the ImageNet features torchvision's SSD starts from.
    ``trainable_backbone_layers`` (0..5) freezes the first VGG stages as torchvision does (default 4 with
    pretrained weights, else 5: all trainable). Inputs are resized to 300 x 300 and normalised as
    torchvision (mean ``(0.48235, 0.45882, 0.40784)``, std ``1/255``); other keywords go to :class:`SSD`.
    """
    w = resolve_torchvision_weights("ssd300_vgg16", weights)
    if w is not None:
        check_pretrained_arguments("ssd300_vgg16", w, num_classes=num_classes, in_channels=3)
        weights_backbone = None
    pretrained = w is not None or weights_backbone is not None
    if trainable_backbone_layers is None:
        trainable_backbone_layers = 4 if pretrained else 5
    check_int("trainable_backbone_layers", trainable_backbone_layers, minimum=0, maximum=5)
    features = _vgg16_features(weights_backbone, progress)
    _freeze_vgg_stages(features, trainable_backbone_layers)
    anchor_generator = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        steps=[8, 16, 32, 64, 100, 300],
    )
    kwargs = {"image_mean": [0.48235, 0.45882, 0.40784], "image_std": [1.0 / 255.0] * 3, **kwargs}
    model = SSD(SSDVGGBackbone(features), anchor_generator, (300, 300), num_classes, **kwargs)
    if w is not None:
        load_torchvision_weights(model, w, progress=progress)
    return model


class _DictBackbone(nn.Module):
    """A :class:`FeatureBackbone` whose maps come as the ``OrderedDict`` torchvision's SSD reads."""

    def __init__(self, backbone: FeatureBackbone) -> None:
        super().__init__()
        self.body = backbone
        self.out_channels = list(backbone.out_channels)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict((str(i), f) for i, f in enumerate(self.body(x)))


@register_model(task="detection", input_size=(3, 96, 96), min_size=1)
def ssd_small(
    *,
    num_classes: int = 21,
    backbone: str = "tiny",
    image_size: int = 96,
    scales: Sequence[float] = (0.12, 0.25, 0.45, 0.7),
    aspect_ratios: Sequence[Sequence[int]] = ((2,), (2,), (2,)),
    weights_backbone: str | None = None,
    progress: bool = True,
    **kwargs,
) -> SSD:
    """A small SSD (Liu et al. 2016) for CPU training: default boxes on three maps of strides 8, 16, 32.

    ``backbone``: ``"tiny"`` (default; a small convolutional network of the detection package,
    widths 64, 128, 256 at those strides) or a zoo ResNet ``"resnet18"`` .. ``"resnet152"`` (``layer2`` ..
    ``layer4``; ``weights_backbone="torchvision"`` for ImageNet weights). Images are resized to
    ``image_size`` (96: maps of 12, 6 and 3 cells). Default-box ``scales`` (fractions of the image; map
    ``k`` gets ``s_k`` and ``sqrt(s_k s_{k+1})`` squares plus ``s_k`` at ratios ``1:a`` and ``a:1``): 0.12 and
    0.17, 0.25 and 0.34, 0.45 and 0.56 of 96 pixels, 11 to 54 pixels, for objects of 8-40 pixels in 64-96
    pixel images; 4 default boxes per cell, 756 in all. 1,325,020 parameters with ``num_classes=5``.
    Other keywords (``score_thresh``, ``nms_thresh``, ``detections_per_img``, ``topk_candidates``,
    ``iou_thresh``, ``positive_fraction``, ``image_mean``, ``image_std``) go to :class:`SSD`.
    """
    check_int("image_size", image_size)
    body = build_backbone(backbone, indices=(2, 3, 4), weights=weights_backbone, progress=progress)
    anchor_generator = DefaultBoxGenerator([list(a) for a in aspect_ratios], scales=list(scales))
    if len(aspect_ratios) != 3 or len(scales) != 4:
        raise ValueError(
            "ssd_small reads 3 maps: aspect_ratios must give 3 lists and scales 4 numbers; "
            f"got {len(aspect_ratios)} and {len(scales)}"
        )
    kwargs = {
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
        "detections_per_img": 100,
        "topk_candidates": 100,
        **kwargs,
    }
    return SSD(_DictBackbone(body), anchor_generator, (image_size, image_size), num_classes, **kwargs)
