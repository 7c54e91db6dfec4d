"""CIFAR ResNets of He et al. 2016, section 4.2, and their plain twins.

The network is ``6n + 2`` layers deep: a 3x3 conv with 16 filters, three stages of ``n`` basic blocks on
feature maps of 32, 16 and 8 pixels (16, 32, 64 filters), global average pooling and a linear classifier.
Shortcuts are option A (identity, zero-padded channels when the width doubles), so residual and plain
twins have exactly the same parameters: 0.27M / 0.46M / 0.66M / 0.85M / 1.7M for n = 3 / 5 / 7 / 9 / 18.
``in_channels`` adapts the stem, e.g. to 1-channel 8x8 digits.
"""

from __future__ import annotations

import torch
from torch import nn

from nnatlas.layers import BasicBlock, PadShortcut
from nnatlas.models.registry import register_model

__all__ = [
    "CifarResNet",
    "cifar_resnet20",
    "cifar_resnet32",
    "cifar_resnet44",
    "cifar_resnet56",
    "cifar_resnet110",
    "cifar_plain20",
    "cifar_plain32",
    "cifar_plain44",
    "cifar_plain56",
    "cifar_plain110",
]


class CifarResNet(nn.Module):
    """``(B, in_channels, H, W) -> (B, num_classes)``; ``forward_features`` returns ``(B, 64, H/4, W/4)``.

    Args:
        depth: ``6n + 2`` layers (20, 32, 44, 56, 110, ...), ``n`` basic blocks per stage.
        num_classes: outputs of the classifier.
        in_channels: channels of the input images.
        residual: keep the shortcuts (``False``: the plain network of the degradation experiment).
        widths: channels of the three stages (the paper's 16, 32, 64).

    >>> import torch
    >>> model = CifarResNet(20, num_classes=10)
    >>> sum(p.numel() for p in model.parameters())  # the paper's "0.27M"
    269722
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> model.forward_features(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 64, 8, 8])
    """

    def __init__(
        self,
        depth: int,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        residual: bool = True,
        widths: tuple[int, int, int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...); got {depth}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1; got {in_channels}")
        n = (depth - 2) // 6
        self.depth, self.residual, self.num_classes = depth, residual, num_classes
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages = []
        inplanes = widths[0]
        for i, planes in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                shortcut = (
                    PadShortcut(inplanes, planes, stride) if (stride != 1 or inplanes != planes) else None
                )
                blocks.append(BasicBlock(inplanes, planes, stride, shortcut, residual=residual))
                inplanes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)
        self.num_features = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem and the three stages: ``(B, in_channels, H, W) -> (B, widths[2], H/4, W/4)``."""
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 16, H, W)
        x = self.layer1(x)  # (B, 16, H, W)
        x = self.layer2(x)  # (B, 32, H/2, W/2)
        return self.layer3(x)  # (B, 64, H/4, W/4)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pooling and the classifier: ``(B, widths[2], h, w) -> (B, num_classes)``."""
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cifar(depth: int, residual: bool, **kwargs) -> CifarResNet:
    return CifarResNet(depth, residual=residual, **kwargs)


@register_model(task="classification", input_size=(3, 32, 32))
def cifar_resnet20(**kwargs) -> CifarResNet:
    """ResNet-20 for 32x32 images (n=3, 0.27M parameters)."""
    return _cifar(20, True, **kwargs)


@register_model(task="classification", input_size=(3, 32, 32))
def cifar_resnet32(**kwargs) -> CifarResNet:
    """ResNet-32 for 32x32 images (n=5, 0.46M parameters)."""
    return _cifar(32, True, **kwargs)


@register_model(task="classification", input_size=(3, 32, 32))
def cifar_resnet44(**kwargs) -> CifarResNet:
    """ResNet-44 for 32x32 images (n=7, 0.66M parameters)."""
    return _cifar(44, True, **kwargs)


@register_model(task="classification", input_size=(3, 32, 32))
def cifar_resnet56(**kwargs) -> CifarResNet:
    """ResNet-56 for 32x32 images (n=9, 0.85M parameters)."""
    return _cifar(56, True, **kwargs)


@register_model(task="classification", input_size=(3, 32, 32))
def cifar_resnet110(**kwargs) -> CifarResNet:
    """ResNet-110 for 32x32 images (n=18, 1.7M parameters)."""
    return _cifar(110, True, **kwargs)


@register_model(task="classification", input_size=(3, 32, 32))
def cifar_plain20(**kwargs) -> CifarResNet:
    """Plain-20: ResNet-20 without shortcuts, for the degradation experiment (He et al. 2016, fig. 6)."""
    return _cifar(20, False, **kwargs)


@register_model(task="classification", input_size=(3, 32, 32))
def cifar_plain32(**kwargs) -> CifarResNet:
    """Plain-32: ResNet-32 without shortcuts (same 0.46M parameters)."""
    return _cifar(32, False, **kwargs)


@register_model(task="classification", input_size=(3, 32, 32))
def cifar_plain44(**kwargs) -> CifarResNet:
    """Plain-44: ResNet-44 without shortcuts (same 0.66M parameters)."""
    return _cifar(44, False, **kwargs)


@register_model(task="classification", input_size=(3, 32, 32))
def cifar_plain56(**kwargs) -> CifarResNet:
    """Plain-56: ResNet-56 without shortcuts; trains worse than plain-20 in the paper (fig. 6)."""
    return _cifar(56, False, **kwargs)


@register_model(task="classification", input_size=(3, 32, 32))
def cifar_plain110(**kwargs) -> CifarResNet:
    """Plain-110: ResNet-110 without shortcuts (same 1.7M parameters)."""
    return _cifar(110, False, **kwargs)
