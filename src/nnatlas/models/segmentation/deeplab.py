"""DeepLab v1, v2, v3 and v3+ (Chen et al.): atrous convolution keeps the resolution of a classification
backbone while its receptive field grows; ASPP looks at several scales at once.

- **v1** (:class:`DeepLabV1`, ``deeplab_v1``): "Semantic Image Segmentation with Deep Convolutional Nets
  and Fully Connected CRFs" (ICLR 2015), DeepLab-LargeFOV. VGG-16 with pool4 and pool5 of stride 1
  (``3 x 3``, padding 1) and conv5 dilated by 2 (the zoo VGG's ``replace_stride_with_dilation=(False,
  True, True)``), output stride 8; fc6 a ``3 x 3`` convolution of dilation 12 to 1024 channels, fc7 a
  ``1 x 1`` 1024 -> 1024 (ReLU and dropout 0.5 after each), fc8 a ``1 x 1`` to the classes. 20,505,429
  parameters for 21 classes: the paper's table 2 gives 20.5M for DeepLab-LargeFOV. The paper's pool1-3
  are ``3 x 3`` of stride 2 (padding 1); the zoo VGG's are ``2 x 2`` (the same stride and parameters).
- **v2** (:class:`DeepLabV2`, ``deeplab_v2``): "DeepLab: Semantic Image Segmentation with Deep
  Convolutional Nets, Atrous Convolution, and Fully Connected CRFs" (TPAMI 2017). ResNet-101 at output
  stride 8 and ASPP-L (:class:`~nnatlas.layers.ASPPSum`): four ``3 x 3`` branches of dilation 6, 12, 18
  and 24, straight to class scores, summed. (The paper's multi-scale input fusion is a training recipe,
  not part of the network.)
- **v3** (:class:`DeepLabV3`, ``deeplab_v3``, ``deeplabv3_resnet50``, ``deeplabv3_resnet101``):
  "Rethinking Atrous Convolution for Semantic Image Segmentation" (2017). ResNet at output stride 16 (or
  8), multi-grid (the three blocks of ``layer4`` dilated by ``rate * (1, 2, 4)``), and
  :class:`~nnatlas.layers.ASPP` with image pooling (rates 6, 12, 18 at stride 16, doubled at 8), then a
  ``1 x 1`` to the classes. ``deeplabv3_resnet50/101`` are torchvision's layout (output stride 8, rates 12,
  24, 36, no multi-grid, an extra ``3 x 3`` conv + BN + ReLU in the head, an optional auxiliary FCN head
  on ``layer3``) and load its ``state_dict`` unchanged: 42,004,074 parameters for ``deeplabv3_resnet50``
  with 21 classes and the auxiliary head, as torchvision's weights metadata.
- **v3+** (:class:`DeepLabV3Plus`, ``deeplab_v3plus``): Chen, Zhu, Papandreou, Schroff, Adam,
  "Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation" (ECCV 2018). The v3
  encoder, then a decoder: ``layer1``'s stride-4 features reduced to 48 channels by a ``1 x 1`` (BN,
  ReLU), concatenated with the ASPP output upsampled 4x, two ``3 x 3`` convolutions (BN, ReLU), a ``1 x 1``
  to the classes, at stride 4; then bilinear upsampling to the input.

Every model returns ``{"out": (B, K, H, W)}`` (plus ``"aux"`` with ``aux_loss=True``), logits upsampled
bilinearly (``align_corners=False``, as torchvision) to the input size. The backbone is the zoo model
itself (``model.backbone``), read through its ``forward_intermediates``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from nnatlas.layers import ASPP, ASPPSum
from nnatlas.models.classification._common import load_torchvision_weights
from nnatlas.models.registry import register_model
from nnatlas.models.segmentation._common import (
    ResNetSegmentationModel,
    check_choice,
    check_image_input,
    check_num_classes,
    drop_vgg_classifier,
    resnet_backbone,
    set_block_dilations,
    torchvision_segmentation_weights,
    upsample_to,
    vgg_backbone,
)
from nnatlas.models.segmentation.fcn import FCNHead

torch.fx.wrap("check_image_input")

__all__ = [
    "V3_RATES",
    "DeepLabV1",
    "DeepLabV2",
    "DeepLabV3",
    "DeepLabHead",
    "DeepLabV3Plus",
    "deeplab_v1",
    "deeplab_v2",
    "deeplab_v3",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplab_v3plus",
]

#: ASPP rates of DeepLab v3 for each output stride (section 3.3 of the v3 paper).
V3_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


class DeepLabV1(nn.Module):
    """DeepLab-LargeFOV on a zoo VGG. ``(B, C, H, W) -> {"out": (B, K, H, W)}``; output stride 8.

    ``classifier`` holds ``fc6`` (``3 x 3``, dilation ``fc6_dilation``, 1024 channels), ``fc7``
    (``1 x 1``, 1024) and ``fc8`` (``1 x 1`` to ``K``), with ReLU and dropout between them.
    """

    def __init__(
        self,
        *,
        num_classes: int = 21,
        in_channels: int = 3,
        backbone: str = "vgg16",
        weights_backbone: str | None = None,
        progress: bool = True,
        fc6_dilation: int = 12,
        fc_channels: int = 1024,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes, in_channels)
        self.in_channels = in_channels
        self.backbone = vgg_backbone(
            backbone,
            in_channels=in_channels,
            weights=weights_backbone,
            progress=progress,
            replace_stride_with_dilation=(False, True, True),
        )
        drop_vgg_classifier(self.backbone)
        self.min_size = self.backbone.min_size  # 8: three 2x2 pools of stride 2
        d, c = fc6_dilation, fc_channels
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=nn.Conv2d(512, c, 3, padding=d, dilation=d),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(dropout),
                fc7=nn.Conv2d(c, c, 1),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(dropout),
                fc8=nn.Conv2d(c, num_classes, 1),
            )
        )
        for conv in (self.classifier.fc6, self.classifier.fc7):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        nn.init.normal_(self.classifier.fc8.weight, 0.0, 0.01)  # as the released prototxt
        nn.init.zeros_(self.classifier.fc8.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="deeplab_v1")
        size = x.shape[-2:]
        (features,) = self.backbone.forward_intermediates(x, (4,))  # (B, 512, H/8, W/8)
        return {"out": upsample_to(self.classifier(features), size)}


class DeepLabV2(ResNetSegmentationModel):
    """A zoo ResNet at output stride 8 and :class:`~nnatlas.layers.ASPPSum` (rates 6, 12, 18, 24).

    ``(B, C, H, W) -> {"out": (B, K, H, W)}`` (plus ``"aux"`` with an auxiliary classifier).
    """


class DeepLabV3(ResNetSegmentationModel):
    """A zoo ResNet at output stride 16 or 8 and :class:`DeepLabHead` (ASPP, ``1 x 1``).

    ``(B, C, H, W) -> {"out": (B, K, H, W)}`` (plus ``"aux"`` with an auxiliary classifier).
    """


class DeepLabHead(nn.Sequential):
    """ASPP, [``3 x 3`` conv + BN + ReLU (torchvision's head)], ``1 x 1`` to the classes.

    ``(B, C, h, w) -> (B, K, h, w)``. With ``extra_conv=True`` the indices are torchvision's
    ``DeepLabHead`` (``0`` ASPP, ``1``-``3`` the ``3 x 3`` block, ``4`` the classifier).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        atrous_rates: Sequence[int],
        *,
        channels: int = 256,
        extra_conv: bool = False,
        dropout: float = 0.5,
    ) -> None:
        layers: list[nn.Module] = [ASPP(in_channels, atrous_rates, channels, dropout=dropout)]
        if extra_conv:
            layers += [
                nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            ]
        layers.append(nn.Conv2d(channels, num_classes, 1))
        super().__init__(*layers)


class DeepLabV3Plus(nn.Module):
    """DeepLab v3 encoder (zoo ResNet + ASPP) and the v3+ decoder on ``layer1`` (stride 4).

    ``(B, C, H, W) -> {"out": (B, K, H, W)[, "aux": ...]}``. ``decoder`` gives logits at stride 4.
    """

    min_size = 1

    def __init__(
        self,
        backbone: nn.Module,
        aspp: ASPP,
        *,
        num_classes: int,
        low_level_channels: int = 48,
        decoder_channels: int = 256,
        aux_classifier: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.aspp, self.in_channels = backbone, aspp, backbone.in_channels
        c1 = backbone.stage_channels[0]
        self.reduce = nn.Sequential(
            nn.Conv2d(c1, low_level_channels, 1, bias=False), nn.BatchNorm2d(low_level_channels), nn.ReLU()
        )
        c = decoder_channels
        self.decoder = nn.Sequential(
            nn.Conv2d(aspp.out_channels + low_level_channels, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, num_classes, 1),
        )
        self.aux_classifier = aux_classifier

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="deeplab_v3plus")
        size = x.shape[-2:]
        aux = self.aux_classifier is not None
        low, *mid, high = self.backbone.forward_intermediates(x, (1, 3, 4) if aux else (1, 4))
        low = self.reduce(low)  # (B, 48, H/4, W/4)
        high = upsample_to(self.aspp(high), low.shape[-2:])  # (B, C_aspp, H/4, W/4)
        logits = self.decoder(torch.cat([high, low], dim=1))  # (B, K, H/4, W/4)
        out = {"out": upsample_to(logits, size)}
        if aux:
            out["aux"] = upsample_to(self.aux_classifier(mid[0]), size)
        return out


def _backbone(
    backbone: str,
    *,
    in_channels: int,
    output_stride: int,
    multi_grid: Sequence[int] | None,
    weights_backbone: str | None,
    progress: bool,
):
    net = resnet_backbone(
        backbone,
        in_channels=in_channels,
        output_stride=output_stride,
        weights=weights_backbone,
        progress=progress,
    )
    if multi_grid is not None:
        if any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in multi_grid):
            raise ValueError(f"multi_grid must give ints >= 1; got {tuple(multi_grid)}")
        if len(multi_grid) != len(net.layer4):
            raise ValueError(
                f"multi_grid must give one rate per block of layer4 ({len(net.layer4)} blocks in {backbone}); "
                f"got {tuple(multi_grid)}"
            )
        rate = {32: 1, 16: 2, 8: 4}[output_stride]  # the dilation of layer4
        set_block_dilations(net.layer4, [rate * g for g in multi_grid])
    return net


def _aux(net, num_classes: int, aux_loss: bool) -> FCNHead | None:
    return FCNHead(net.stage_channels[2], num_classes) if aux_loss else None


_REG = {"task": "segmentation", "input_size": (3, 32, 32), "min_size": 1}


@register_model(task="segmentation", input_size=(3, 32, 32), min_size=8)
def deeplab_v1(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    backbone: str = "vgg16",
    weights_backbone: str | None = None,
    progress: bool = True,
    **kwargs,
) -> DeepLabV1:
    """DeepLab v1 LargeFOV (Chen et al. 2015): dilated VGG-16 (output stride 8), fc6 3x3 rate 12."""
    return DeepLabV1(
        num_classes=num_classes,
        in_channels=in_channels,
        backbone=backbone,
        weights_backbone=weights_backbone,
        progress=progress,
        **kwargs,
    )


@register_model(**_REG)
def deeplab_v2(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    backbone: str = "resnet101",
    atrous_rates: Sequence[int] = (6, 12, 18, 24),
    aux_loss: bool = False,
    weights_backbone: str | None = None,
    progress: bool = True,
) -> DeepLabV2:
    """DeepLab v2 (Chen et al. 2017): ResNet-101 at output stride 8, ASPP of four 3x3 branches summed."""
    check_num_classes(num_classes, in_channels)
    net = _backbone(
        backbone,
        in_channels=in_channels,
        output_stride=8,
        multi_grid=None,
        weights_backbone=weights_backbone,
        progress=progress,
    )
    head = ASPPSum(net.stage_channels[3], num_classes, atrous_rates)
    return DeepLabV2(net, head, _aux(net, num_classes, aux_loss), model_name="deeplab_v2")


@register_model(**_REG)
def deeplab_v3(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    backbone: str = "resnet101",
    output_stride: int = 16,
    multi_grid: Sequence[int] | None = (1, 2, 4),
    atrous_rates: Sequence[int] | None = None,
    aspp_channels: int = 256,
    aspp_dropout: float = 0.1,
    aux_loss: bool = False,
    weights_backbone: str | None = None,
    progress: bool = True,
) -> DeepLabV3:
    """DeepLab v3 (Chen et al. 2017): ResNet (output stride 16 or 8, multi-grid), ASPP with image pooling."""
    check_num_classes(num_classes, in_channels)
    check_choice("output_stride", output_stride, tuple(V3_RATES))
    net = _backbone(
        backbone,
        in_channels=in_channels,
        output_stride=output_stride,
        multi_grid=multi_grid,
        weights_backbone=weights_backbone,
        progress=progress,
    )
    rates = V3_RATES[output_stride] if atrous_rates is None else atrous_rates
    head = DeepLabHead(
        net.stage_channels[3], num_classes, rates, channels=aspp_channels, dropout=aspp_dropout
    )
    return DeepLabV3(net, head, _aux(net, num_classes, aux_loss), model_name="deeplab_v3")


def _deeplabv3_torchvision(
    arch: str,
    backbone: str,
    *,
    weights: str | None,
    progress: bool,
    num_classes: int,
    in_channels: int,
    aux_loss: bool,
    weights_backbone: str | None,
) -> DeepLabV3:
    check_num_classes(num_classes, in_channels)
    w = torchvision_segmentation_weights(arch, weights, num_classes=num_classes, in_channels=in_channels)
    net = _backbone(
        backbone,
        in_channels=in_channels,
        output_stride=8,
        multi_grid=None,
        weights_backbone=weights_backbone if w is None else None,
        progress=progress,
    )
    head = DeepLabHead(net.stage_channels[3], num_classes, V3_RATES[8], extra_conv=True, dropout=0.5)
    model = DeepLabV3(net, head, _aux(net, num_classes, aux_loss or w is not None), model_name=arch)
    if w is not None:
        load_torchvision_weights(model, w, progress=progress)  # torchvision's weights hold the aux head
        if not aux_loss:
            model.aux_classifier = None
    return model


@register_model(**_REG)
def deeplabv3_resnet50(
    *,
    weights: str | None = None,
    progress: bool = True,
    num_classes: int = 21,
    in_channels: int = 3,
    aux_loss: bool = False,
    weights_backbone: str | None = None,
) -> DeepLabV3:
    """torchvision's DeepLabV3-ResNet50: dilated ResNet-50 (output stride 8), ASPP rates 12/24/36."""
    return _deeplabv3_torchvision(
        "deeplabv3_resnet50",
        "resnet50",
        weights=weights,
        progress=progress,
        num_classes=num_classes,
        in_channels=in_channels,
        aux_loss=aux_loss,
        weights_backbone=weights_backbone,
    )


@register_model(**_REG)
def deeplabv3_resnet101(
    *,
    weights: str | None = None,
    progress: bool = True,
    num_classes: int = 21,
    in_channels: int = 3,
    aux_loss: bool = False,
    weights_backbone: str | None = None,
) -> DeepLabV3:
    """torchvision's DeepLabV3-ResNet101: dilated ResNet-101 (output stride 8), ASPP rates 12/24/36."""
    return _deeplabv3_torchvision(
        "deeplabv3_resnet101",
        "resnet101",
        weights=weights,
        progress=progress,
        num_classes=num_classes,
        in_channels=in_channels,
        aux_loss=aux_loss,
        weights_backbone=weights_backbone,
    )


@register_model(task="segmentation", input_size=(3, 64, 64), min_size=1)
def deeplab_v3plus(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    backbone: str = "resnet18",
    output_stride: int = 16,
    multi_grid: Sequence[int] | None = None,
    atrous_rates: Sequence[int] | None = None,
    aspp_channels: int = 128,
    aspp_dropout: float = 0.1,
    low_level_channels: int = 48,
    decoder_channels: int = 128,
    aux_loss: bool = False,
    weights_backbone: str | None = None,
    progress: bool = True,
) -> DeepLabV3Plus:
    """DeepLab v3+ (Chen et al. 2018): v3 encoder and a decoder on stride-4 features; small CPU defaults."""
    check_num_classes(num_classes, in_channels)
    check_choice("output_stride", output_stride, tuple(V3_RATES))
    net = _backbone(
        backbone,
        in_channels=in_channels,
        output_stride=output_stride,
        multi_grid=multi_grid,
        weights_backbone=weights_backbone,
        progress=progress,
    )
    rates = V3_RATES[output_stride] if atrous_rates is None else atrous_rates
    aspp = ASPP(net.stage_channels[3], rates, aspp_channels, dropout=aspp_dropout)
    return DeepLabV3Plus(
        net,
        aspp,
        num_classes=num_classes,
        low_level_channels=low_level_channels,
        decoder_channels=decoder_channels,
        aux_classifier=_aux(net, num_classes, aux_loss),
    )
