"""Shared pieces of the segmentation models: zoo backbones, torchvision's weights, the torchvision layout.

A backbone is a model of the classification zoo (:class:`~nnatlas.models.classification.ResNet` or
:class:`~nnatlas.models.classification.VGG`), built by its registered builder with
``replace_stride_with_dilation`` for the output stride, and read through its ``forward_intermediates``.
Its classifier is replaced by ``nn.Identity`` (no parameters, no ``state_dict`` keys), so a ResNet
backbone holds exactly the keys of torchvision's ``IntermediateLayerGetter`` over a ResNet
(``conv1``, ``bn1``, ``layer1`` .. ``layer4``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnatlas._suggest import unknown_choice_message
from nnatlas.models.classification._common import (
    check_image_input,
    check_positive_int,
    check_pretrained_arguments,
    resolve_torchvision_weights,
)
from nnatlas.models.classification.resnet import ResNet
from nnatlas.models.classification.vgg import VGG
from nnatlas.models.registry import get_model_info

torch.fx.wrap("check_image_input")

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
VGGS = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")
#: ``replace_stride_with_dilation`` of a ResNet (stages 2, 3, 4) for each output stride.
DILATION_FOR_STRIDE = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value in choices and type(value) in {type(c) for c in choices}:
        return
    if isinstance(value, str) and all(isinstance(c, str) for c in choices):
        raise ValueError(unknown_choice_message(name, value, choices))
    raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def check_num_classes(num_classes: int, in_channels: int) -> None:
    check_positive_int("num_classes", num_classes)
    check_positive_int("in_channels", in_channels)


def resnet_backbone(
    name: str,
    *,
    in_channels: int = 3,
    output_stride: int = 32,
    weights: str | None = None,
    progress: bool = True,
) -> ResNet:
    """The zoo ResNet ``name`` at ``output_stride`` 32, 16 or 8, without its classifier.

    ``weights`` (``"torchvision"``) loads the ImageNet weights of the classifier before ``fc`` is dropped.
    """
    check_choice("backbone", name, RESNETS)
    check_choice("output_stride", output_stride, tuple(DILATION_FOR_STRIDE))
    model = get_model_info(name).builder(
        weights=weights,
        progress=progress,
        in_channels=in_channels,
        replace_stride_with_dilation=DILATION_FOR_STRIDE[output_stride],
    )
    model.fc = nn.Identity()  # features only, as torchvision's IntermediateLayerGetter
    return model


def vgg_backbone(
    name: str,
    *,
    in_channels: int = 3,
    weights: str | None = None,
    progress: bool = True,
    **kwargs,
) -> VGG:
    """The zoo VGG ``name`` (``replace_stride_with_dilation``, ``ceil_mode`` passed on).

    With ``weights`` the ImageNet classifier is still there for the caller to read, then drop
    (:func:`drop_vgg_classifier`). Without, the model is built on the meta device and only its features
    are materialised and initialised (as ``VGG(init_weights=True)``): the 123M parameters of the classifier
    would be allocated and initialised only to be dropped.
    """
    check_choice("backbone", name, VGGS)
    builder = get_model_info(name).builder
    if weights is not None:
        return builder(weights=weights, progress=progress, in_channels=in_channels, **kwargs)
    device = torch.get_default_device()
    with torch.device("meta"):
        model = builder(in_channels=in_channels, init_weights=False, **kwargs)
    drop_vgg_classifier(model)
    model.to_empty(device=device)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
            m.reset_running_stats()
    return model


def drop_vgg_classifier(model: VGG) -> None:
    """Remove the pooling and the three fully connected layers of a VGG used as a backbone."""
    model.avgpool, model.classifier = nn.Identity(), nn.Identity()


def set_block_dilations(layer: nn.Sequential, dilations: Sequence[int]) -> None:
    """Multi-grid (DeepLab v3, section 3.2): the ``3 x 3`` convolutions of block ``i`` of a ResNet stage
    get dilation ``dilations[i]`` (padding the same, so sizes are kept). No parameter changes."""
    blocks = list(layer)
    if len(dilations) != len(blocks):
        raise ValueError(
            f"dilations must give one rate per block ({len(blocks)} blocks); got {tuple(dilations)}"
        )
    for block, d in zip(blocks, dilations, strict=True):
        for conv in block.modules():
            if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
                conv.dilation = conv.padding = (d, d)


def upsample_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of logits to the input size (``align_corners=False``, as torchvision)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def torchvision_segmentation_weights(arch: str, weights: str | None, *, num_classes: int, in_channels: int):
    """The torchvision weights enum member for ``arch`` (``None`` without ``weights``), arguments checked."""
    w = resolve_torchvision_weights(arch, weights)
    if w is not None:
        check_pretrained_arguments(arch, w, num_classes=num_classes, in_channels=in_channels)
    return w


class ResNetSegmentationModel(nn.Module):
    """A zoo ResNet ``backbone``, a ``classifier`` on ``layer4`` and an optional ``aux_classifier`` on
    ``layer3``, both upsampled bilinearly to the input: torchvision's ``_SimpleSegmentationModel``.

    ``(B, C, H, W) -> {"out": (B, K, H, W)}`` plus ``"aux"`` when there is an auxiliary classifier.
    """

    min_size = 1

    def __init__(
        self,
        backbone: ResNet,
        classifier: nn.Module,
        aux_classifier: nn.Module | None = None,
        *,
        model_name: str = "model",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier
        self.model_name, self.in_channels = model_name, backbone.in_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model=self.model_name)
        size = x.shape[-2:]
        indices = (3, 4) if self.aux_classifier is not None else (4,)
        features = self.backbone.forward_intermediates(x, indices)  # layer3 (B, 256e, .), layer4 (B, 512e, .)
        out = {"out": upsample_to(self.classifier(features[-1]), size)}  # (B, K, H, W)
        if self.aux_classifier is not None:
            out["aux"] = upsample_to(self.aux_classifier(features[0]), size)
        return out
