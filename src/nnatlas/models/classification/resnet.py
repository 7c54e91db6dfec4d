"""ResNet: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), the ImageNet networks of
table 1 (18, 34, 50, 101 and 152 layers).

A 7x7/2 convolution and a 3x3/2 max pool (``H -> H/4``), four stages of residual blocks with 64, 128, 256
and 512 base channels whose first block halves the size (except stage 1), global average pooling and one
linear layer. ResNet-18/34 use :class:`~nnatlas.layers.BasicBlock` (two 3x3); ResNet-50/101/152 use
:class:`~nnatlas.layers.Bottleneck` (1x1 reduce, 3x3, 1x1 expand by 4). Shortcuts are identity, or a
strided 1x1 convolution with batch norm where the shape changes (option B of the paper).
``(B, C, H, W) -> (B, num_classes)`` for any ``H, W >= 1``.

Where the bottleneck halves the grid (first block of stages 2-4), torchvision puts the stride on the 3x3
convolution ("ResNet v1.5", the default here and the layout of torchvision's weights); the paper's
networks (its released Caffe models) put it on the first 1x1 ("ResNet v1", ``stride_in_1x1=True``). Both
have the same parameters and ``state_dict`` keys, but they are different networks: with the stride on the
1x1, that 1x1 runs on the halved grid (4x fewer MACs) and the 3x3 sees only every other pixel of the
block's input, all of which v1.5's 3x3 sees. At 224x224, v1 has the multiply-adds of the paper's table 1
(3.8, 7.6 and 11.3 x 10^9 for ResNet-50/101/152: 3.86G, 7.57G, 11.28G here; v1.5: 4.09G, 7.80G, 11.51G,
``3 * 77,070,336`` more in each).

``replace_stride_with_dilation=(False, True, True)`` turns the stride of stages 3 and 4 into a dilation of
2 and 4, so ``forward_features`` keeps an output stride of 8 instead of 32 with the same receptive field
growth, as DeepLab does (Chen et al. 2017); ``forward_intermediates`` gives the stem and stage outputs to
segmentation and detection heads. ``zero_init_residual=True`` starts the last batch norm of
every residual branch at zero, so every block is the identity at initialisation (Goyal et al. 2017).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from nnatlas.layers import BasicBlock, Bottleneck, conv1x1
from nnatlas.models.classification._common import (
    check_image_input,
    check_positive_int,
    check_pretrained_arguments,
    load_torchvision_weights,
    resolve_torchvision_weights,
)
from nnatlas.models.registry import register_model

torch.fx.wrap("check_image_input")

__all__ = ["ResNet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]

Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """``(B, in_channels, H, W) -> (B, num_classes)``; ``forward_features`` gives
    ``(B, 512 * expansion, H / s, W / s)`` with output stride ``s = 32`` (8 or 16 with dilation).

    Args:
        block: :class:`~nnatlas.layers.BasicBlock` or :class:`~nnatlas.layers.Bottleneck`.
        layers: blocks in each of the four stages, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        num_classes: outputs of the classifier.
        in_channels: channels of the input images.
        zero_init_residual: zero the last batch norm weight of every residual branch.
        groups, width_per_group: grouped 3x3 convolutions of the bottleneck (ResNeXt-style widths).
        replace_stride_with_dilation: for stages 2, 3 and 4, replace the stride 2 by a dilation.
        norm_layer: normalisation class (default ``nn.BatchNorm2d``).
        stride_in_1x1: the paper's bottleneck ("v1", stride on the first 1x1) instead of torchvision's
            ("v1.5", stride on the 3x3); bottleneck networks only.
    """

    min_size = 1

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        replace_stride_with_dilation: Sequence[bool] | None = None,
        norm_layer: Callable[[int], nn.Module] | None = None,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        if block not in (BasicBlock, Bottleneck):
            raise TypeError(f"block must be BasicBlock or Bottleneck; got {block!r}")
        if stride_in_1x1 and block is not Bottleneck:
            raise ValueError(
                "stride_in_1x1=True moves the stride of a Bottleneck block (ResNet-50/101/152); "
                f"got block={block.__name__}"
            )
        self.stride_in_1x1 = stride_in_1x1
        if len(layers) != 4:
            raise ValueError(f"layers must give the blocks of 4 stages; got {layers!r}")
        for i, n in enumerate(layers):
            check_positive_int(f"layers[{i}]", n)
        check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = (False, False, False)
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                "replace_stride_with_dilation must give 3 booleans (stages 2, 3, 4); "
                f"got {replace_stride_with_dilation!r}"
            )
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes, self.dilation = 64, 1
        self.groups, self.base_width = groups, width_per_group
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        dil = replace_stride_with_dilation
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=dil[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=dil[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=dil[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self.num_features = 512 * block.expansion
        #: channels of the outputs of ``layer1`` .. ``layer4`` (for segmentation and detection necks).
        self.stage_channels = tuple(c * block.expansion for c in (64, 128, 256, 512))
        self.output_stride = 4 * 2 ** sum(not d for d in dil)
        #: channels and strides of the maps :meth:`forward_intermediates` returns (stem, layer1 .. layer4).
        self.intermediate_channels = (64, *self.stage_channels)
        #: strides of those maps (2, 4, 8, 16, 32, or less where a stride became a dilation).
        self.intermediate_strides = (2, 4, *(4 * 2 ** sum(not d for d in dil[: i + 1]) for i in range(3)))

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck) and m.bn3.weight is not None:
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock) and m.bn2.weight is not None:
                    nn.init.zeros_(m.bn2.weight)

    def _block_kwargs(self, block: Block) -> dict:
        return {"stride_in_1x1": True} if self.stride_in_1x1 and block is Bottleneck else {}

    def _make_layer(
        self, block: Block, planes: int, blocks: int, stride: int = 1, dilate: bool = False
    ) -> nn.Sequential:
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                norm_layer(planes * block.expansion),
            )
        layers = [
            block(
                self.inplanes,
                planes,
                stride,
                downsample,
                self.groups,
                self.base_width,
                previous_dilation,
                norm_layer,
                **self._block_kwargs(block),
            )
        ]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    groups=self.groups,
                    base_width=self.base_width,
                    dilation=self.dilation,
                    norm_layer=norm_layer,
                )
            )
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem and the four stages: ``(B, in_channels, H, W) -> (B, 512 * expansion, H/s, W/s)``,
        ``s`` the ``output_stride`` (32, or 16 / 8 with dilation; sizes rounded up)."""
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="ResNet")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer1(x)  # (B, 64 e, H/4, W/4), e = block.expansion
        x = self.layer2(x)  # (B, 128 e, H/8, W/8)
        x = self.layer3(x)  # (B, 256 e, H/16, W/16) (H/8 dilated)
        return self.layer4(x)  # (B, 512 e, H/32, W/32) (H/16 or H/8 dilated)

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Feature maps for dense prediction (segmentation, detection), as timm's ``forward_intermediates``.

        Index 0 is the stem after its ReLU, before the max pool (``(B, 64, H/2, W/2)``); 1 to 4 are the
        outputs of ``layer1`` .. ``layer4`` (``stage_channels``), with the strides of
        :attr:`intermediate_strides` (4, 8, 16, 32, or less where a stride became a dilation). Returns the
        maps at ``indices`` (increasing, default all five) and stops after the deepest one asked for.
        """
        indices = _check_indices(indices, 5)
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="ResNet")
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, H/2, W/2)
        out = [x] if 0 in indices else []
        x = self.maxpool(x)  # (B, 64, H/4, W/4)
        for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=1):
            if i > indices[-1]:
                break
            x = layer(x)
            if i in indices:
                out.append(x)
        return out

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pooling and the classifier: ``(B, 512 * expansion, h, w) -> (B, num_classes)``."""
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _check_indices(indices: Sequence[int] | None, n: int) -> tuple[int, ...]:
    """``indices`` as a tuple of increasing ints in ``[0, n)`` (all of them when ``None``)."""
    if indices is None:
        return tuple(range(n))
    out = tuple(indices)
    if not out or any(isinstance(i, bool) or not isinstance(i, int) for i in out):
        raise ValueError(f"indices must be a non-empty sequence of ints in 0..{n - 1}; got {indices!r}")
    if list(out) != sorted(set(out)) or out[0] < 0 or out[-1] >= n:
        raise ValueError(f"indices must be increasing ints in 0..{n - 1}; got {indices!r}")
    return out


def _resnet(
    arch: str,
    block: Block,
    layers: tuple[int, int, int, int],
    weights: str | None = None,
    progress: bool = True,
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    **kwargs,
) -> ResNet:
    w = resolve_torchvision_weights(arch, weights)
    if w is not None:
        check_pretrained_arguments(arch, w, num_classes=num_classes, in_channels=in_channels)
        if kwargs.get("stride_in_1x1"):
            raise ValueError(
                f"weights={weights!r} were trained with the stride on the 3x3 convolution (v1.5); got "
                "stride_in_1x1=True, a different network (load the state_dict yourself to fine-tune it)"
            )
    model = ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, **kwargs)
    if w is not None:
        load_torchvision_weights(model, w, progress=progress)
    return model


# 64 px leaves a 2x2 map in layer4: training-mode batch norm over more than 2 values per channel.
_REG = {"task": "classification", "input_size": (3, 64, 64), "min_size": 1}


@register_model(**_REG)
def resnet18(*, weights: str | None = None, progress: bool = True, **kwargs) -> ResNet:
    """ResNet-18 (He et al. 2016): basic blocks (2, 2, 2, 2).

    ``weights="torchvision"`` loads torchvision's ImageNet weights; other keywords go to :class:`ResNet`.
    ``(B, 3, H, W) -> (B, 1000)`` by default.

    >>> import torch, torchvision
    >>> model = resnet18(num_classes=10)
    >>> model(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 10])
    >>> count = lambda m: sum(p.numel() for p in m.parameters())
    >>> count(resnet18()), count(torchvision.models.resnet18())
    (11689512, 11689512)
    >>> resnet18().load_state_dict(torchvision.models.resnet18().state_dict())
    <All keys matched successfully>
    """
    return _resnet("resnet18", BasicBlock, (2, 2, 2, 2), weights, progress, **kwargs)


@register_model(**_REG)
def resnet34(*, weights: str | None = None, progress: bool = True, **kwargs) -> ResNet:
    """ResNet-34 (He et al. 2016): basic blocks (3, 4, 6, 3)."""
    return _resnet("resnet34", BasicBlock, (3, 4, 6, 3), weights, progress, **kwargs)


@register_model(**_REG)
def resnet50(
    *, weights: str | None = None, progress: bool = True, stride_in_1x1: bool = False, **kwargs
) -> ResNet:
    """ResNet-50 (He et al. 2016): bottleneck blocks (3, 4, 6, 3); ``stride_in_1x1=True``: the paper's v1."""
    return _resnet(
        "resnet50", Bottleneck, (3, 4, 6, 3), weights, progress, stride_in_1x1=stride_in_1x1, **kwargs
    )


@register_model(**_REG)
def resnet101(
    *, weights: str | None = None, progress: bool = True, stride_in_1x1: bool = False, **kwargs
) -> ResNet:
    """ResNet-101 (He et al. 2016): bottleneck blocks (3, 4, 23, 3); ``stride_in_1x1=True``: the paper's v1."""
    return _resnet(
        "resnet101", Bottleneck, (3, 4, 23, 3), weights, progress, stride_in_1x1=stride_in_1x1, **kwargs
    )


@register_model(**_REG)
def resnet152(
    *, weights: str | None = None, progress: bool = True, stride_in_1x1: bool = False, **kwargs
) -> ResNet:
    """ResNet-152 (He et al. 2016): bottleneck blocks (3, 8, 36, 3); ``stride_in_1x1=True``: the paper's v1."""
    return _resnet(
        "resnet152", Bottleneck, (3, 8, 36, 3), weights, progress, stride_in_1x1=stride_in_1x1, **kwargs
    )
