"""GoogLeNet (Inception-v1): Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015), table 1.

A stem (7x7/2 conv, 3x3/2 max pool, 1x1 and 3x3 convs, 3x3/2 max pool), nine
:class:`~nnatlas.layers.InceptionV1` modules (3a-3b, pool, 4a-4e, pool, 5a-5b), global average pooling
instead of large fully connected layers (section 5, borrowed from Network in Network), dropout 0.2 and one
linear classifier: 6.6M parameters against AlexNet's 61M. Batch norm after every convolution follows
torchvision (not in the paper). ``(B, C, H, W) -> (B, num_classes)`` for ``H, W >= 15``.

Two auxiliary classifiers (:class:`~nnatlas.layers.InceptionV1Aux`) sit on the outputs of 4a and 4d. In
training mode the model returns ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)`` (torchvision's
order); the paper adds each auxiliary cross-entropy to the loss with weight 0.3, which
``nnatlas.engine.ClassificationTask`` does for any tuple output. In eval mode only the logits are returned.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import nn

from nnatlas.layers import BasicConv2d, InceptionV1, InceptionV1Aux
from nnatlas.models.classification._common import (
    check_image_input,
    check_positive_int,
    check_pretrained_arguments,
    load_torchvision_weights,
    resolve_torchvision_weights,
)
from nnatlas.models.registry import register_model

torch.fx.wrap("check_image_input")


class GoogLeNetOutputs(NamedTuple):
    """Training-mode outputs, in torchvision's order; each ``(B, num_classes)``."""

    logits: torch.Tensor
    aux_logits2: torch.Tensor | None
    aux_logits1: torch.Tensor | None


def transform_input(x: torch.Tensor) -> torch.Tensor:
    """Map an ImageNet-normalised image (torchvision's mean / std) to the ``[-1, 1]`` scaling
    ``(pixel - 0.5) / 0.5`` that the weights ported from TensorFlow expect: ``x * std/0.5 + (mean-0.5)/0.5``.
    """
    x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    return torch.cat((x_ch0, x_ch1, x_ch2), 1)  # (B, 3, H, W)


class GoogLeNet(nn.Module):
    """``(B, in_channels, H, W) -> (B, num_classes)``; ``forward_features`` gives ``(B, 1024, H/32, W/32)``.

    Args:
        num_classes: outputs of the classifier (and of the auxiliary classifiers).
        in_channels: channels of the input images.
        aux_logits: build the two auxiliary classifiers (returned in training mode).
        transform_input: rescale ImageNet-normalised inputs as the ported weights expect (3 channels).
        init_weights: torchvision's initialisation, truncated N(0, 0.01) for convolutions and linear layers.
        dropout: dropout before the classifier; ``dropout_aux`` the one in the auxiliary classifiers.
        branch3_kernel_size: 3 (torchvision, weight-compatible) or 5 (the paper) in each module's third
            branch; see :class:`~nnatlas.layers.InceptionV1`.
    """

    min_size = 15

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        aux_logits: bool = True,
        transform_input: bool = False,
        init_weights: bool = True,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
        branch3_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        if transform_input and in_channels != 3:
            raise ValueError(f"transform_input=True needs in_channels=3; got {in_channels}")
        self.aux_logits, self.transform_input = aux_logits, transform_input
        inception = lambda *ch: InceptionV1(*ch, branch3_kernel_size=branch3_kernel_size)  # noqa: E731

        self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # Table 1: in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
        self.inception3a = inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = inception(832, 384, 192, 384, 48, 128, 128)

        self.aux1: InceptionV1Aux | None = None
        self.aux2: InceptionV1Aux | None = None
        if aux_logits:
            self.aux1 = InceptionV1Aux(512, num_classes, dropout=dropout_aux)
            self.aux2 = InceptionV1Aux(528, num_classes, dropout=dropout_aux)

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        self.num_features = 1024

        if init_weights:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def _features(
        self, x: torch.Tensor, with_aux: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if self.transform_input:
            x = transform_input(x)
        x = self.maxpool1(self.conv1(x))  # (B, 64, H/4, W/4)
        x = self.maxpool2(self.conv3(self.conv2(x)))  # (B, 192, H/8, W/8)
        x = self.inception3b(self.inception3a(x))  # (B, 480, H/8, W/8)
        x = self.inception4a(self.maxpool3(x))  # (B, 512, H/16, W/16)
        aux1 = self.aux1(x) if with_aux and self.aux1 is not None else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (B, 528, H/16, W/16)
        aux2 = self.aux2(x) if with_aux and self.aux2 is not None else None
        x = self.maxpool4(self.inception4e(x))  # (B, 832, H/32, W/32)
        x = self.inception5b(self.inception5a(x))  # (B, 1024, H/32, W/32)
        return x, aux2, aux1

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="GoogLeNet")
        return self._features(x, with_aux=False)[0]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, 1024)
        return self.fc(self.dropout(x))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="GoogLeNet")
        with_aux = self.training and self.aux_logits
        x, aux2, aux1 = self._features(x, with_aux)
        logits = self.forward_head(x)
        return GoogLeNetOutputs(logits, aux2, aux1) if with_aux else logits


@register_model(task="classification", input_size=(3, 15, 15), min_size=15)
def googlenet(
    *,
    weights: str | None = None,
    progress: bool = True,
    num_classes: int = 1000,
    in_channels: int = 3,
    aux_logits: bool | None = None,
    transform_input: bool | None = None,
    **kwargs,
) -> GoogLeNet:
    """GoogLeNet / Inception-v1 (Szegedy et al. 2015) with two auxiliary classifiers.

    As torchvision: with ``weights="torchvision"`` the input transform is on by default and the auxiliary
    classifiers are dropped unless ``aux_logits=True`` (their weights are not pretrained).
    """
    w = resolve_torchvision_weights("googlenet", weights)
    if w is None:
        model = GoogLeNet(
            num_classes=num_classes,
            in_channels=in_channels,
            aux_logits=True if aux_logits is None else aux_logits,
            transform_input=bool(transform_input),
            **kwargs,
        )
        return model
    check_pretrained_arguments("googlenet", w, num_classes=num_classes, in_channels=in_channels)
    kwargs["init_weights"] = False
    model = GoogLeNet(
        num_classes=num_classes,
        in_channels=in_channels,
        aux_logits=True,
        transform_input=True if transform_input is None else transform_input,
        **kwargs,
    )
    load_torchvision_weights(model, w, progress=progress)
    if aux_logits:
        warnings.warn(
            "the auxiliary classifiers of torchvision's pretrained googlenet are not pretrained; train them",
            UserWarning,
            stacklevel=2,
        )
    else:
        model.aux_logits, model.aux1, model.aux2 = False, None, None
    return model
