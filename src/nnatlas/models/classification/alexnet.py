"""AlexNet: Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks" (NeurIPS 2012), in torchvision's single-tower form (Krizhevsky, "One weird trick for
parallelizing convolutional neural networks", 2014).

Five convolutions (11x11 stride 4, 5x5, then three 3x3), ReLU after each, 3x3 max pooling of stride 2
("overlapping pooling", section 3.4) after the 1st, 2nd and 5th, a 6x6 adaptive average pool, then three
fully connected layers with dropout 0.5 (section 4.2). ``(B, C, H, W) -> (B, num_classes)`` for
``H, W >= 63``: a 63-pixel input leaves 15 -> 7 -> 3 -> 1 pixels after the stem and the three poolings.

The default network has torchvision's layer widths (64, 192, 384, 256, 256) and state_dict keys.
``lrn=True`` adds the paper's local response normalisation after the first two ReLUs (section 3.3) and
``groups=2`` splits conv2, conv4 and conv5 into two groups, as the paper's two GPUs did (figure 2; conv3
and the fully connected layers see both halves). ``widths=(96, 256, 384, 384, 256)`` gives the paper's
widths. Either option changes the layer list, so torchvision's weights no longer load.
"""

from __future__ import annotations

import torch
from torch import nn

from nnatlas.models.classification._common import (
    check_image_input,
    check_positive_int,
    check_pretrained_arguments,
    load_torchvision_weights,
    resolve_torchvision_weights,
)
from nnatlas.models.registry import register_model

torch.fx.wrap("check_image_input")

__all__ = ["TORCHVISION_WIDTHS", "PAPER_WIDTHS", "paper_lrn", "AlexNet", "alexnet"]

#: Output channels of the five convolutions in torchvision's single-tower AlexNet (the default).
TORCHVISION_WIDTHS = (64, 192, 384, 256, 256)
#: Output channels of the five convolutions in the paper (figure 2, both GPUs together).
PAPER_WIDTHS = (96, 256, 384, 384, 256)


def paper_lrn() -> nn.LocalResponseNorm:
    """The paper's response normalisation (section 3.3), ``k=2, n=5, alpha=1e-4, beta=0.75``:

    ``b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2) ** beta``.

    ``nn.LocalResponseNorm`` divides its ``alpha`` by the window size ``n``, so it is given ``n * alpha``.
    """
    return nn.LocalResponseNorm(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0)


class AlexNet(nn.Module):
    """``(B, in_channels, H, W) -> (B, num_classes)``; ``forward_features`` gives ``(B, widths[4], h, w)``.

    Args:
        num_classes: outputs of the last layer.
        in_channels: channels of the input images.
        dropout: dropout probability before the first two fully connected layers.
        lrn: the paper's local response normalisation after conv1 and conv2 (not in torchvision).
        groups: groups of conv2, conv4 and conv5 (the paper's two-GPU split is 2; torchvision's 1).
        widths: output channels of the five convolutions.
    """

    min_size = 63

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.5,
        lrn: bool = False,
        groups: int = 1,
        widths: tuple[int, int, int, int, int] = TORCHVISION_WIDTHS,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        check_positive_int("groups", groups)
        if len(widths) != 5:
            raise ValueError(f"widths must give the 5 convolution widths; got {widths!r}")
        for i, w in enumerate(widths):
            check_positive_int(f"widths[{i}]", w)
        c1, c2, c3, c4, c5 = widths
        for name, (cin, cout) in {"conv2": (c1, c2), "conv4": (c3, c4), "conv5": (c4, c5)}.items():
            if cin % groups or cout % groups:
                raise ValueError(
                    f"groups={groups} must divide the channels of {name} ({cin} -> {cout}); choose other widths"
                )
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c1, kernel_size=11, stride=4, padding=2)]
        layers += [nn.ReLU(inplace=True)] + ([paper_lrn()] if lrn else [])
        layers += [nn.MaxPool2d(kernel_size=3, stride=2)]
        layers += [nn.Conv2d(c1, c2, kernel_size=5, padding=2, groups=groups), nn.ReLU(inplace=True)]
        layers += ([paper_lrn()] if lrn else []) + [nn.MaxPool2d(kernel_size=3, stride=2)]
        layers += [nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(c3, c4, kernel_size=3, padding=1, groups=groups), nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(c4, c5, kernel_size=3, padding=1, groups=groups), nn.ReLU(inplace=True)]
        layers += [nn.MaxPool2d(kernel_size=3, stride=2)]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c5 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
        self.num_features = c5

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The five convolutions and three max pools: ``(B, in_channels, H, W) -> (B, widths[4], h, w)``,
        ``h = (H - 63) // 32 + 1`` (6 for a 224x224 input)."""
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="AlexNet")
        return self.features(x)  # (B, widths[4], (H - 63) // 32 + 1, ...)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """The 6x6 adaptive average pool and the three fully connected layers:
        ``(B, widths[4], h, w) -> (B, num_classes)``."""
        x = torch.flatten(self.avgpool(x), 1)  # (B, widths[4] * 36)
        return self.classifier(x)  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(task="classification", input_size=(3, 63, 63), min_size=63)
def alexnet(
    *,
    weights: str | None = None,
    progress: bool = True,
    num_classes: int = 1000,
    in_channels: int = 3,
    **kwargs,
) -> AlexNet:
    """AlexNet (Krizhevsky et al. 2012), torchvision's layout; lrn=True, groups=2 for the paper's."""
    w = resolve_torchvision_weights("alexnet", weights)
    if w is not None:
        check_pretrained_arguments("alexnet", w, num_classes=num_classes, in_channels=in_channels)
        if kwargs.get("lrn") or kwargs.get("groups", 1) != 1 or "widths" in kwargs:
            raise ValueError("weights='torchvision' needs the torchvision layout: no lrn, groups or widths")
    model = AlexNet(num_classes=num_classes, in_channels=in_channels, **kwargs)
    if w is not None:
        load_torchvision_weights(model, w, progress=progress)
    return model
