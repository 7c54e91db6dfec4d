"""Fully convolutional networks: Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation" (CVPR 2015).

**FCN-32s / 16s / 8s** (:class:`FCN`, ``fcn32s``, ``fcn16s``, ``fcn8s``): VGG-16 made fully
convolutional. Its first fully connected layer becomes ``fc6``, a ``7 x 7`` convolution 512 -> 4096 (the
same ``512 * 7 * 7 * 4096`` weights), ``fc7`` a ``1 x 1`` 4096 -> 4096, and ``score_fr`` a ``1 x 1`` to
the ``K`` classes, at stride 32. Learnable transposed convolutions without bias, initialised to bilinear
interpolation (:func:`~nnatlas.layers.bilinear_upsampling_kernel`), upsample the scores: by 32 at once
(32s); or by 2, fused (summed) with a ``1 x 1`` score of pool4, then by 16 (16s); or by 2 twice with
pool4 and pool3 scores, then by 8 (8s). A factor ``f`` upsampling has kernel ``2f`` and stride ``f``.

As the paper's Caffe models (``voc-fcn*s/net.py``), conv1_1 pads the image by 100 pixels, so that any
image of at least one pixel leaves a map for fc6's ``7 x 7`` window, pooling rounds up, and each map is
cropped to align with the next. Mapping positions to input pixels (a ``k x k`` window of stride ``s``
centres output ``i`` on input ``s i + (k - 1) / 2 - p``): pool5 ``i`` sits at ``32 i - 83.5``, score_fr at
``32 i + 12.5``, and a ``2f``-kernel upsampling puts input ``i`` at output ``f i + f - 0.5``; hence
the crops: 19 after the 32x upsampling (32s); pool4's score by 5, 27 after the 16x (16s); pool4 by 5,
pool3 by 9, 31 after the 8x (8s). The output is then ``(B, K, H, W)``, pixel-aligned with the input.

Parameters for 21 classes, upsampling layers included: FCN-8s 134,489,759 (VGG-16's convolutions
14,714,688, fc6 102,764,544, fc7 16,781,312, three score layers 102,207, deconvolutions
``21 * 21 * (4^2 + 4^2 + 16^2) = 127,008``); FCN-16s 134,815,994; FCN-32s 136,152,917. Score layers start
at zero and the upsampling at bilinear, as the paper; ``weights_backbone="torchvision"`` loads VGG-16's
ImageNet weights, fc6 and fc7 reshaped from the classifier ("convolutionalization", section 3.1).

**FCN-ResNet** (:class:`FCNResNet`, ``fcn_resnet50``, ``fcn_resnet101``): torchvision's layout. A
ResNet with output stride 8 (stages 3 and 4 dilated), :class:`FCNHead` (``3 x 3`` to ``C/4``, BN, ReLU,
dropout 0.1, ``1 x 1``) on ``layer4``, an auxiliary :class:`FCNHead` on ``layer3`` with ``aux_loss=True``,
bilinear upsampling to the input. Loads torchvision's ``state_dict`` unchanged (35,322,218 parameters for
``fcn_resnet50`` with 21 classes and the auxiliary head, as torchvision's weights metadata).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnatlas.layers import bilinear_upsampling_kernel, conv_transpose2d
from nnatlas.models.classification._common import load_torchvision_weights
from nnatlas.models.registry import register_model
from nnatlas.models.segmentation._common import (
    ResNetSegmentationModel,
    check_choice,
    check_image_input,
    check_num_classes,
    drop_vgg_classifier,
    resnet_backbone,
    torchvision_segmentation_weights,
    vgg_backbone,
)

torch.fx.wrap("check_image_input")

__all__ = [
    "FCN_PAD",
    "FCN_OFFSETS",
    "convolutionalize",
    "FCN",
    "FCNHead",
    "FCNResNet",
    "fcn32s",
    "fcn16s",
    "fcn8s",
    "fcn_resnet50",
    "fcn_resnet101",
]

#: Caffe's padding of conv1_1 in the FCN reference models.
FCN_PAD = 100
#: Crop offsets of the reference models for each (score map, output stride of the model).
FCN_OFFSETS = {32: {"out": 19}, 16: {"pool4": 5, "out": 27}, 8: {"pool4": 5, "pool3": 9, "out": 31}}


def _crop(x: torch.Tensor, offset: int, size: tuple[int, int]) -> torch.Tensor:
    h, w = size
    return x[..., offset : offset + h, offset : offset + w]


def convolutionalize(linear: nn.Linear, conv: nn.Conv2d) -> None:
    """Copy a fully connected layer into the convolution that computes it at every window (section 3.1).

    ``W (C_out, C_in k_h k_w) -> (C_out, C_in, k_h, k_w)`` (the flattening order of ``(C, H, W)``): on a
    ``C_in x k_h x k_w`` map the convolution gives exactly the layer's output, on a larger map the same
    output for every window, a coarse map of class scores instead of one vector.
    """
    if linear.weight.numel() != conv.weight.numel() or linear.out_features != conv.out_channels:
        raise ValueError(
            f"a linear layer {linear.in_features} -> {linear.out_features} does not fit a convolution of "
            f"weight shape {tuple(conv.weight.shape)}"
        )
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(conv.weight.shape))
        if conv.bias is not None:
            conv.bias.copy_(linear.bias)


def _bilinear_deconv(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Kernel ``2f``, stride ``f``, no padding, no bias; starts as per-channel bilinear interpolation."""
    layer = conv_transpose2d(channels, channels, 2 * factor, stride=factor, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        idx = torch.arange(channels)
        layer.weight[idx, idx] = bilinear_upsampling_kernel(factor)  # weight (C_in, C_out, 2f, 2f)
    return layer


def _score(in_channels: int, num_classes: int) -> nn.Conv2d:
    layer = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(layer.weight)  # the paper zero-initialises its class scoring layers
    nn.init.zeros_(layer.bias)
    return layer


class FCN(nn.Module):
    """FCN-32s, -16s or -8s on a zoo VGG (the paper: VGG-16). ``(B, C, H, W) -> {"out": (B, K, H, W)}``.

    **Arguments:**

    - ``stride``: 32, 16 or 8, the stride of the coarsest map fused into the prediction (FCN-32s/16s/8s).
    - ``num_classes``, ``in_channels``: classes (21 for Pascal VOC) and image channels.
    - ``backbone``: a zoo VGG name (default ``"vgg16"``), built with ``ceil_mode=True``.
    - ``weights_backbone``: ``"torchvision"`` loads its ImageNet weights, fc6 and fc7 included.
    - ``dropout``: after fc6 and fc7 (0.5).
    """

    min_size = 1

    def __init__(
        self,
        stride: int = 8,
        *,
        num_classes: int = 21,
        in_channels: int = 3,
        backbone: str = "vgg16",
        weights_backbone: str | None = None,
        progress: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_choice("stride", stride, tuple(FCN_OFFSETS))
        check_num_classes(num_classes, in_channels)
        self.stride, self.in_channels, self.model_name = stride, in_channels, f"fcn{stride}s"
        self.backbone = vgg_backbone(
            backbone, in_channels=in_channels, weights=weights_backbone, progress=progress, ceil_mode=True
        )
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.relu6, self.drop6 = nn.ReLU(inplace=True), nn.Dropout(dropout)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.relu7, self.drop7 = nn.ReLU(inplace=True), nn.Dropout(dropout)
        for conv in (self.fc6, self.fc7):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        if weights_backbone is not None:  # the ImageNet classifier's first two layers become fc6, fc7
            convolutionalize(self.backbone.classifier[0], self.fc6)
            convolutionalize(self.backbone.classifier[3], self.fc7)
        drop_vgg_classifier(self.backbone)
        self.score_fr = _score(4096, num_classes)
        if stride == 32:
            self.upscore = _bilinear_deconv(num_classes, 32)
        else:
            self.upscore2 = _bilinear_deconv(num_classes, 2)
            self.score_pool4 = _score(512, num_classes)
        if stride == 16:
            self.upscore16 = _bilinear_deconv(num_classes, 16)
        if stride == 8:
            self.upscore_pool4 = _bilinear_deconv(num_classes, 2)
            self.score_pool3 = _score(256, num_classes)
            self.upscore8 = _bilinear_deconv(num_classes, 8)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model=self.model_name)
        size = (x.shape[-2], x.shape[-1])
        x = F.pad(x, (FCN_PAD - 1,) * 4)  # with conv1_1's own padding 1: Caffe's pad 100
        offsets = FCN_OFFSETS[self.stride]
        indices = {32: (4,), 16: (3, 4), 8: (2, 3, 4)}[self.stride]
        *skips, pool5 = self.backbone.forward_intermediates(x, indices)  # pool3 (256), pool4 (512), pool5
        x = self.drop6(self.relu6(self.fc6(pool5)))  # (B, 4096, h5 - 6, w5 - 6)
        x = self.drop7(self.relu7(self.fc7(x)))
        score = self.score_fr(x)  # (B, K, h, w), stride 32
        if self.stride == 32:
            return {"out": _crop(self.upscore(score), offsets["out"], size)}
        score = self.upscore2(score)  # (B, K, 2h + 2, 2w + 2), stride 16
        score = score + _crop(self.score_pool4(skips[-1]), offsets["pool4"], score.shape[-2:])
        if self.stride == 16:
            return {"out": _crop(self.upscore16(score), offsets["out"], size)}
        score = self.upscore_pool4(score)  # stride 8
        score = score + _crop(self.score_pool3(skips[0]), offsets["pool3"], score.shape[-2:])
        return {"out": _crop(self.upscore8(score), offsets["out"], size)}  # (B, K, H, W)


class FCNHead(nn.Sequential):
    """torchvision's FCN head: ``3 x 3`` conv to ``C/4`` (no bias), BN, ReLU, dropout 0.1, ``1 x 1`` to
    ``K``. ``(B, C, H, W) -> (B, K, H, W)``."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(inter, num_classes, 1),
        )


class FCNResNet(ResNetSegmentationModel):
    """torchvision's FCN: a zoo ResNet at output stride 8, :class:`FCNHead` on ``layer4`` (and on
    ``layer3`` for ``"aux"``). ``(B, C, H, W) -> {"out": (B, K, H, W)[, "aux": (B, K, H, W)]}``."""


def _fcn_resnet(
    arch: str,
    backbone: str,
    *,
    weights: str | None,
    progress: bool,
    num_classes: int,
    in_channels: int,
    aux_loss: bool,
    weights_backbone: str | None,
) -> FCNResNet:
    check_num_classes(num_classes, in_channels)
    w = torchvision_segmentation_weights(arch, weights, num_classes=num_classes, in_channels=in_channels)
    net = resnet_backbone(
        backbone,
        in_channels=in_channels,
        output_stride=8,
        weights=weights_backbone if w is None else None,
        progress=progress,
    )
    c3, c4 = net.stage_channels[2:]
    aux = FCNHead(c3, num_classes) if aux_loss or w is not None else None
    model = FCNResNet(net, FCNHead(c4, num_classes), aux, model_name=arch)
    if w is not None:
        load_torchvision_weights(model, w, progress=progress)  # torchvision's weights hold the aux head
        if not aux_loss:
            model.aux_classifier = None
    return model


_REG = {"task": "segmentation", "input_size": (3, 32, 32), "min_size": 1}


@register_model(**_REG)
def fcn32s(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    weights_backbone: str | None = None,
    progress: bool = True,
    **kwargs,
) -> FCN:
    """FCN-32s (Long et al. 2015): VGG-16, fc6/fc7 as convolutions, one 32x learnable upsampling."""
    return FCN(
        32,
        num_classes=num_classes,
        in_channels=in_channels,
        weights_backbone=weights_backbone,
        progress=progress,
        **kwargs,
    )


@register_model(**_REG)
def fcn16s(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    weights_backbone: str | None = None,
    progress: bool = True,
    **kwargs,
) -> FCN:
    """FCN-16s (Long et al. 2015): FCN-32s fused with pool4's scores, 16x upsampling."""
    return FCN(
        16,
        num_classes=num_classes,
        in_channels=in_channels,
        weights_backbone=weights_backbone,
        progress=progress,
        **kwargs,
    )


@register_model(**_REG)
def fcn8s(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    weights_backbone: str | None = None,
    progress: bool = True,
    **kwargs,
) -> FCN:
    """FCN-8s (Long et al. 2015): fused with pool4's and pool3's scores, 8x upsampling."""
    return FCN(
        8,
        num_classes=num_classes,
        in_channels=in_channels,
        weights_backbone=weights_backbone,
        progress=progress,
        **kwargs,
    )


@register_model(**_REG)
def fcn_resnet50(
    *,
    weights: str | None = None,
    progress: bool = True,
    num_classes: int = 21,
    in_channels: int = 3,
    aux_loss: bool = False,
    weights_backbone: str | None = None,
) -> FCNResNet:
    """torchvision's FCN-ResNet50: dilated ResNet-50 (output stride 8) and an FCN head."""
    return _fcn_resnet(
        "fcn_resnet50",
        "resnet50",
        weights=weights,
        progress=progress,
        num_classes=num_classes,
        in_channels=in_channels,
        aux_loss=aux_loss,
        weights_backbone=weights_backbone,
    )


@register_model(**_REG)
def fcn_resnet101(
    *,
    weights: str | None = None,
    progress: bool = True,
    num_classes: int = 21,
    in_channels: int = 3,
    aux_loss: bool = False,
    weights_backbone: str | None = None,
) -> FCNResNet:
    """torchvision's FCN-ResNet101: dilated ResNet-101 (output stride 8) and an FCN head."""
    return _fcn_resnet(
        "fcn_resnet101",
        "resnet101",
        weights=weights,
        progress=progress,
        num_classes=num_classes,
        in_channels=in_channels,
        aux_loss=aux_loss,
        weights_backbone=weights_backbone,
    )
