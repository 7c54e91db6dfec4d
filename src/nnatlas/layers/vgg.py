"""The VGG stage of Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition" (ICLR 2015).

A stage is ``num_convs`` 3x3 convolutions (stride 1, padding 1, so the size is kept), each followed by an
optional normalisation and a ReLU, then a 2x2 max pooling of stride 2 that halves the size. Section 2.3 of
the paper motivates the small kernels: a stack of two 3x3 convolutions sees a 5x5 window and three see
7x7, with fewer parameters (``2 * 9 C^2`` or ``3 * 9 C^2`` against ``25 C^2`` or ``49 C^2``) and more
non-linearities.

:class:`VGGStage` is an ``nn.Sequential`` whose children are exactly the layers torchvision's
``make_layers`` emits for the same stage, in the same order (conv, [norm], ReLU, ..., max pool). A VGG
network flattens its stages into one ``features`` sequence, which gives torchvision's ``state_dict`` keys
(``features.0.weight``, ``features.1.running_mean``, ...).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

NormLayer = Callable[[int], nn.Module]


class VGGStage(nn.Sequential):
    """``(B, in_channels, H, W) -> (B, out_channels, floor(H/2), floor(W/2))`` (or ``(H, W)`` without pool).

    Each convolution keeps its bias, also with a normalisation layer, as torchvision's ``vgg*_bn`` do.

    Args:
        in_channels: channels of the input.
        out_channels: channels of every convolution in the stage.
        num_convs: how many 3x3 convolutions (1 to 4 in the paper's configurations A to E).
        norm_layer: e.g. ``nn.BatchNorm2d`` for the ``_bn`` variants; ``None`` for the paper's network.
        pool: end with the 2x2 max pooling of stride 2.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_convs: int,
        *,
        norm_layer: NormLayer | None = None,
        pool: bool = True,
    ) -> None:
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive int; got {value!r}")
        if not isinstance(num_convs, int) or num_convs < 1:
            raise ValueError(f"num_convs must be a positive int; got {num_convs!r}")
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_convs):
            layers.append(nn.Conv2d(c, out_channels, kernel_size=3, padding=1))
            if norm_layer is not None:
                layers.append(norm_layer(out_channels))
            layers.append(nn.ReLU(inplace=True))
            c = out_channels
        if pool:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        super().__init__(*layers)
        self.in_channels, self.out_channels, self.num_convs = in_channels, out_channels, num_convs
