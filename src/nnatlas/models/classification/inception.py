"""Inception-v3: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (CVPR 2016).

The paper's table 1 network ("Inception-v2") replaces GoogLeNet's 7x7 stem and large convolutions by
stacks of 3x3 convolutions, then runs three groups of factorized Inception modules separated by grid-size
reduction modules (all in :mod:`nnatlas.layers`)::

    stem (3x3/2, 3x3, 3x3, pool, 1x1, 3x3, pool)      299 -> 35 (192 channels)
    3 x InceptionA (figure 5: 5x5 -> two 3x3)          35x35, 256 / 288 / 288 channels
    InceptionB (figure 10: grid reduction)             35 -> 17, 768
    4 x InceptionC (figure 6: 7x7 -> 1x7 + 7x1)        17x17, 768   <- auxiliary classifier here
    InceptionD (figure 10)                             17 -> 8, 1280
    2 x InceptionE (figure 7: expanded filter bank)    8x8, 2048
    global average pool, dropout 0.5, linear           (B, num_classes)

"Inception-v3" is that network trained with RMSProp, label smoothing, the factorized 7x7 stem ideas and a
batch-normalised auxiliary classifier (section 10). Label smoothing (section 7) replaces the one-hot
target by ``(1 - eps) * onehot + eps / K`` with ``eps = 0.1``; use
``nnatlas.engine.ClassificationTask(num_classes, label_smoothing=0.1)``. The auxiliary classifier's loss
is added with weight 0.3 by the same task (the paper does not state a weight; 0.3 is GoogLeNet's).

Layer names follow torchvision (``Conv2d_1a_3x3``, ``Mixed_5b``, ``AuxLogits``, ...), so torchvision's
weights load. ``(B, C, H, W) -> (B, num_classes)`` for ``H, W >= 75``; in training mode with the auxiliary
classifier, for ``H, W >= 299`` (it needs a 17x17 map), when the output is
``InceptionOutputs(logits, aux_logits)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from nnatlas.layers import (
    BasicConv2d,
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
    InceptionV3Aux,
)
from nnatlas.models.classification._common import (
    check_image_input,
    check_positive_int,
    check_pretrained_arguments,
    load_torchvision_weights,
    resolve_torchvision_weights,
)
from nnatlas.models.classification.googlenet import transform_input as _transform_input
from nnatlas.models.registry import register_model

torch.fx.wrap("check_image_input")

__all__ = ["InceptionOutputs", "Inception3", "inception_v3"]


class InceptionOutputs(NamedTuple):
    """Training-mode outputs, as torchvision's; each ``(B, num_classes)``."""

    logits: torch.Tensor
    aux_logits: torch.Tensor | None


class Inception3(nn.Module):
    """``(B, in_channels, H, W) -> (B, num_classes)``; ``forward_features`` gives ``(B, 2048, h, w)``
    with ``h = 8`` for ``H = 299``.

    Args:
        num_classes: outputs of the classifier (and of the auxiliary classifier).
        in_channels: channels of the input images.
        aux_logits: build the auxiliary classifier on the 17x17 grid (returned in training mode).
        transform_input: rescale ImageNet-normalised inputs as the ported weights expect (3 channels).
        init_weights: torchvision's initialisation, truncated normal with std 0.1 (0.01 / 0.001 in the
            auxiliary head).
        dropout: dropout before the classifier.
    """

    min_size = 75
    min_size_aux = 299

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        aux_logits: bool = True,
        transform_input: bool = False,
        init_weights: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        if transform_input and in_channels != 3:
            raise ValueError(f"transform_input=True needs in_channels=3; got {in_channels}")
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.Conv2d_1a_3x3 = BasicConv2d(in_channels, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.AuxLogits: InceptionV3Aux | None = InceptionV3Aux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)
        self.num_features = 2048
        if init_weights:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    std = float(getattr(m, "stddev", 0.1))
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def _features(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.transform_input:
            x = _transform_input(x)
        x = self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))  # (B, 32, 147, 147) for 299
        x = self.maxpool1(self.Conv2d_2b_3x3(x))  # (B, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (B, 192, 71, 71)
        x = self.maxpool2(x)  # (B, 192, 35, 35)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # (B, 288, 35, 35)
        x = self.Mixed_6a(x)  # (B, 768, 17, 17)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # (B, 768, 17, 17)
        aux = self.AuxLogits(x) if with_aux and self.AuxLogits is not None else None
        x = self.Mixed_7a(x)  # (B, 1280, 8, 8)
        x = self.Mixed_7c(self.Mixed_7b(x))  # (B, 2048, 8, 8)
        return x, aux

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem and the eleven Inception modules, without the auxiliary classifier:
        ``(B, in_channels, H, W) -> (B, 2048, h, w)``, ``h = 8`` for ``H = 299``."""
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="Inception3")
        return self._features(x, with_aux=False)[0]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pooling, dropout and the classifier: ``(B, 2048, h, w) -> (B, num_classes)``."""
        x = self.dropout(self.avgpool(x))  # (B, 2048, 1, 1)
        return self.fc(torch.flatten(x, 1))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | InceptionOutputs:
        with_aux = self.training and self.aux_logits and self.AuxLogits is not None
        if with_aux:
            x = check_image_input(
                x,
                in_channels=self.in_channels,
                min_size=self.min_size_aux,
                model="Inception3",
                hint=" in training mode with the auxiliary classifier (or build it with aux_logits=False)",
            )
        else:
            x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="Inception3")
        x, aux = self._features(x, with_aux)
        logits = self.forward_head(x)
        return InceptionOutputs(logits, aux) if with_aux else logits


@register_model(task="classification", input_size=(3, 299, 299), min_size=75)
def inception_v3(
    *,
    weights: str | None = None,
    progress: bool = True,
    num_classes: int = 1000,
    in_channels: int = 3,
    aux_logits: bool = True,
    transform_input: bool | None = None,
    **kwargs,
) -> Inception3:
    """Inception-v3 (Szegedy et al. 2016); 299x299 inputs in training with the auxiliary head, else >= 75.

    As torchvision: with ``weights="torchvision"`` the input transform is on by default, and the
    pretrained auxiliary classifier is kept unless ``aux_logits=False``.
    """
    w = resolve_torchvision_weights("inception_v3", weights)
    if w is None:
        return Inception3(
            num_classes=num_classes,
            in_channels=in_channels,
            aux_logits=aux_logits,
            transform_input=bool(transform_input),
            **kwargs,
        )
    check_pretrained_arguments("inception_v3", w, num_classes=num_classes, in_channels=in_channels)
    kwargs["init_weights"] = False
    model = Inception3(
        num_classes=num_classes,
        in_channels=in_channels,
        aux_logits=True,
        transform_input=True if transform_input is None else transform_input,
        **kwargs,
    )
    load_torchvision_weights(model, w, progress=progress)
    if not aux_logits:
        model.aux_logits, model.AuxLogits = False, None
    return model
