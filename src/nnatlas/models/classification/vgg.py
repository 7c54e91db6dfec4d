"""VGG: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
(ICLR 2015), configurations A (11 layers), B (13), D (16) and E (19) of table 1.

Five :class:`~nnatlas.layers.VGGStage` of 64, 128, 256, 512 and 512 channels, each ending in a 2x2 max
pool of stride 2, then a 7x7 adaptive average pool and three fully connected layers (4096, 4096,
num_classes) with dropout 0.5. ``(B, C, H, W) -> (B, num_classes)`` for ``H, W >= 32`` (five halvings).
Most of the parameters sit in the first fully connected layer: ``512 * 7 * 7 * 4096 = 102.8M`` of
VGG-16's 138.4M. ``_bn`` variants add batch norm after every convolution (not in the paper).

As a backbone for dense prediction: ``forward_intermediates`` gives the output of each stage (after its
pool); ``replace_stride_with_dilation=(False, True, True)`` turns pool4 and pool5 into 3x3 max pools of
stride 1 (padding 1) and dilates the convolutions after them (conv5 by 2), an output stride of 8 as in
DeepLab-LargeFOV (Chen et al., ICLR 2015); ``ceil_mode=True`` rounds pooled sizes up, as Caffe does (FCN,
Long et al. 2015). Both options change no parameter.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from nnatlas.layers import VGGStage
from nnatlas.models.classification._common import (
    check_image_input,
    check_positive_int,
    check_pretrained_arguments,
    load_torchvision_weights,
    resolve_torchvision_weights,
)
from nnatlas.models.classification.resnet import _check_indices
from nnatlas.models.registry import register_model

torch.fx.wrap("check_image_input")

__all__ = [
    "WIDTHS",
    "CONFIGS",
    "VGG",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]

#: Output channels of the five stages.
WIDTHS = (64, 128, 256, 512, 512)
#: 3x3 convolutions per stage in the paper's table 1.
CONFIGS: dict[str, tuple[int, int, int, int, int]] = {
    "A": (1, 1, 2, 2, 2),  # VGG-11
    "B": (2, 2, 2, 2, 2),  # VGG-13
    "D": (2, 2, 3, 3, 3),  # VGG-16
    "E": (2, 2, 4, 4, 4),  # VGG-19
}


class VGG(nn.Module):
    """``(B, in_channels, H, W) -> (B, num_classes)``; ``forward_features`` gives ``(B, 512, H/32, W/32)``.

    Args:
        convs_per_stage: 3x3 convolutions in each of the five stages (see :data:`CONFIGS`).
        num_classes: outputs of the last layer.
        in_channels: channels of the input images.
        norm_layer: normalisation after each convolution (``nn.BatchNorm2d`` for the ``_bn`` variants).
        dropout: dropout probability after the first two fully connected layers.
        init_weights: torchvision's initialisation (Kaiming-normal convolutions, N(0, 0.01) linear layers).
        replace_stride_with_dilation: for pool3, pool4 and pool5, a 3x3 max pool of stride 1 instead of the
            2x2 of stride 2, and every later convolution dilated by 2 more (DeepLab).
        ceil_mode: round the pooled sizes up (Caffe's pooling), not down.
    """

    min_size = 32

    def __init__(
        self,
        convs_per_stage: tuple[int, ...],
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        norm_layer: Callable[[int], nn.Module] | None = None,
        dropout: float = 0.5,
        init_weights: bool = True,
        replace_stride_with_dilation: Sequence[bool] | None = None,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        if len(convs_per_stage) != len(WIDTHS):
            raise ValueError(f"convs_per_stage must have {len(WIDTHS)} entries; got {convs_per_stage!r}")
        dil = tuple(replace_stride_with_dilation or (False, False, False))
        if len(dil) != 3:
            raise ValueError(
                "replace_stride_with_dilation must give 3 booleans (pool3, pool4, pool5); "
                f"got {replace_stride_with_dilation!r}"
            )
        stages, c, dilation, stride, strides = [], in_channels, 1, 1, []
        for i, (width, n) in enumerate(zip(WIDTHS, convs_per_stage, strict=True)):
            stage = VGGStage(c, width, n, norm_layer=norm_layer)
            for m in stage:
                if isinstance(m, nn.Conv2d) and dilation > 1:  # 3x3, padding = dilation keeps the size
                    m.dilation = m.padding = (dilation, dilation)
            stage[-1].ceil_mode = ceil_mode
            if i >= 2 and dil[i - 2]:
                stage[-1] = nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=ceil_mode)
                dilation *= 2
            else:
                stride *= 2
            stages.append(stage)
            strides.append(stride)
            c = width
        #: channels and strides of the maps :meth:`forward_intermediates` returns (one per stage).
        self.intermediate_channels, self.intermediate_strides = WIDTHS, tuple(strides)
        self.output_stride, self.dilation = stride, dilation
        self.min_size = stride  # every 2x2 pool of stride 2 halves the size (rounded down)
        self._stage_ends = tuple(itertools.accumulate(len(s) for s in stages))
        # One flat sequence, as torchvision's ``make_layers``: keys ``features.<i>.weight``.
        self.features = nn.Sequential(*itertools.chain.from_iterable(stages))
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        self.num_features = WIDTHS[-1]
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The five stages: ``(B, in_channels, H, W) -> (B, 512, H // s, W // s)``, ``s`` the
        ``output_stride`` (32, or less with ``replace_stride_with_dilation``)."""
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="VGG")
        return self.features(x)  # (B, 512, H // 32, W // 32)

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Outputs of the stages ``indices`` (increasing, 0..4, default all), each after its pool.

        ``(B, 64, H/2, W/2)``, ``(B, 128, H/4, W/4)``, ..., ``(B, 512, H/32, W/32)`` (strides in
        :attr:`intermediate_strides`); stops after the deepest stage asked for.
        """
        indices = _check_indices(indices, len(self._stage_ends))
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="VGG")
        out, start = [], 0
        for i, end in enumerate(self._stage_ends[: indices[-1] + 1]):
            for j in range(start, end):
                x = self.features[j](x)
            if i in indices:
                out.append(x)
            start = end
        return out

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """The 7x7 adaptive average pool and the three fully connected layers:
        ``(B, 512, h, w) -> (B, num_classes)``."""
        x = torch.flatten(self.avgpool(x), 1)  # (B, 512 * 7 * 7)
        return self.classifier(x)  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _vgg(
    arch: str,
    config: str,
    batch_norm: bool,
    weights: str | None = None,
    progress: bool = True,
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    **kwargs,
) -> VGG:
    w = resolve_torchvision_weights(arch, weights)
    if w is not None:
        check_pretrained_arguments(arch, w, num_classes=num_classes, in_channels=in_channels)
        kwargs["init_weights"] = False
    norm_layer = nn.BatchNorm2d if batch_norm else None
    model = VGG(
        CONFIGS[config], num_classes=num_classes, in_channels=in_channels, norm_layer=norm_layer, **kwargs
    )
    if w is not None:
        load_torchvision_weights(model, w, progress=progress)
    return model


_REG = {"task": "classification", "input_size": (3, 32, 32), "min_size": 32}


@register_model(**_REG)
def vgg11(*, weights: str | None = None, progress: bool = True, **kwargs) -> VGG:
    """VGG-11 (configuration A of Simonyan & Zisserman 2015)."""
    return _vgg("vgg11", "A", False, weights, progress, **kwargs)


@register_model(**_REG)
def vgg11_bn(*, weights: str | None = None, progress: bool = True, **kwargs) -> VGG:
    """VGG-11 with batch norm after every convolution."""
    return _vgg("vgg11_bn", "A", True, weights, progress, **kwargs)


@register_model(**_REG)
def vgg13(*, weights: str | None = None, progress: bool = True, **kwargs) -> VGG:
    """VGG-13 (configuration B of Simonyan & Zisserman 2015)."""
    return _vgg("vgg13", "B", False, weights, progress, **kwargs)


@register_model(**_REG)
def vgg13_bn(*, weights: str | None = None, progress: bool = True, **kwargs) -> VGG:
    """VGG-13 with batch norm after every convolution."""
    return _vgg("vgg13_bn", "B", True, weights, progress, **kwargs)


@register_model(**_REG)
def vgg16(*, weights: str | None = None, progress: bool = True, **kwargs) -> VGG:
    """VGG-16 (configuration D of Simonyan & Zisserman 2015)."""
    return _vgg("vgg16", "D", False, weights, progress, **kwargs)


@register_model(**_REG)
def vgg16_bn(*, weights: str | None = None, progress: bool = True, **kwargs) -> VGG:
    """VGG-16 with batch norm after every convolution."""
    return _vgg("vgg16_bn", "D", True, weights, progress, **kwargs)


@register_model(**_REG)
def vgg19(*, weights: str | None = None, progress: bool = True, **kwargs) -> VGG:
    """VGG-19 (configuration E of Simonyan & Zisserman 2015)."""
    return _vgg("vgg19", "E", False, weights, progress, **kwargs)


@register_model(**_REG)
def vgg19_bn(*, weights: str | None = None, progress: bool = True, **kwargs) -> VGG:
    """VGG-19 with batch norm after every convolution."""
    return _vgg("vgg19_bn", "E", True, weights, progress, **kwargs)
