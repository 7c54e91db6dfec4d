"""Atrous spatial pyramid pooling (ASPP) of DeepLab: parallel dilated convolutions over one feature map.

Chen, Papandreou, Kokkinos, Murphy, Yuille, "DeepLab: Semantic Image Segmentation with Deep Convolutional
Nets, Atrous Convolution, and Fully Connected CRFs" (TPAMI 2017, "v2"), section 3.1 and Fig. 4: four
``3 x 3`` branches with dilations 6, 12, 18, 24 on the last feature map, each straight to class scores,
summed (:class:`ASPPSum`). A ``3 x 3`` kernel of dilation ``r`` spans ``2r + 1`` pixels, so the four
branches look at the same position at four scales for the weights of four ``3 x 3`` convolutions.

Chen, Papandreou, Schroff, Adam, "Rethinking Atrous Convolution for Semantic Image Segmentation" (2017,
"v3"), section 3.3: with a large rate most taps of a ``3 x 3`` kernel fall outside a small map, so the
``3 x 3`` branch degenerates to a ``1 x 1``; v3 therefore has one ``1 x 1`` branch, three ``3 x 3``
branches (rates 6, 12, 18 at output stride 16; doubled at 8) and an image-level branch (global average
pool, ``1 x 1``, broadcast back), each with batch norm and ReLU, concatenated and projected by a ``1 x 1``
(:class:`ASPP`). Module names and order are torchvision's (``convs.0`` .. ``convs.4``, ``project``), so
torchvision's DeepLabV3 ``state_dict`` loads unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from nnatlas.layers.conv import _check_channels

NormLayer = Callable[[int], nn.Module]


def _check_rates(atrous_rates: Sequence[int]) -> tuple[int, ...]:
    rates = tuple(atrous_rates)
    if not rates or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rates):
        raise ValueError(f"atrous_rates must be a non-empty sequence of ints >= 1; got {atrous_rates!r}")
    return rates


class ASPPConv(nn.Sequential):
    """``3 x 3`` convolution of dilation ``dilation`` (padding ``dilation`` keeps the size), norm, ReLU.

    ``(B, in_channels, H, W) -> (B, out_channels, H, W)``; ``9 C_in C_out`` weights, no bias.
    """

    def __init__(
        self, in_channels: int, out_channels: int, dilation: int, *, norm_layer: NormLayer | None = None
    ) -> None:
        _check_channels(in_channels, out_channels, 1)
        (dilation,) = _check_rates((dilation,))
        norm_layer = norm_layer or nn.BatchNorm2d
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
            norm_layer(out_channels),
            nn.ReLU(),
        )


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool, ``1 x 1`` convolution, norm, ReLU, broadcast to ``H x W``.

    ``(B, in_channels, H, W) -> (B, out_channels, H, W)``, the same vector at every position. torchvision
    upsamples the ``1 x 1`` map bilinearly, which gives exactly this constant map; broadcasting skips the
    interpolation.
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm_layer: NormLayer | None = None) -> None:
        _check_channels(in_channels, out_channels, 1)
        norm_layer = norm_layer or nn.BatchNorm2d
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            norm_layer(out_channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        for module in self:
            x = module(x)  # (B, C_out, 1, 1)
        return x.expand(-1, -1, h, w)  # (B, C_out, H, W)


class ASPP(nn.Module):
    """DeepLab v3's ASPP: ``project(cat(1x1(x), conv_r1(x), ..., conv_rn(x), pool(x)))``.

    ``(B, in_channels, H, W) -> (B, out_channels, H, W)``. The branches give ``out_channels`` each; the
    projection is ``1 x 1``, norm, ReLU and dropout, as torchvision's ``ASPP``.

    **Arguments:**

    - ``in_channels``: channels of the feature map (2048 for a ResNet-50's ``layer4``).
    - ``atrous_rates``: dilations of the ``3 x 3`` branches (v3: ``(6, 12, 18)`` at output stride 16,
      ``(12, 24, 36)`` at 8).
    - ``out_channels``: width of every branch and of the output (256 in the paper).
    - ``image_pooling``: add the image-level branch (:class:`ASPPPooling`).
    - ``dropout``: after the projection (torchvision 0.5; DeepLab's own code 0.1).
    - ``norm_layer``: normalisation class (default ``nn.BatchNorm2d``).

    The parameters of torchvision's ``ASPP``:

    >>> import torch
    >>> from torchvision.models.segmentation import deeplabv3
    >>> aspp = ASPP(64, (6, 12, 18), 32).eval()
    >>> aspp(torch.zeros(2, 64, 9, 9)).shape
    torch.Size([2, 32, 9, 9])
    >>> count = lambda m: sum(p.numel() for p in m.parameters())
    >>> count(aspp), count(deeplabv3.ASPP(64, [6, 12, 18], 32))
    (64896, 64896)
    """

    def __init__(
        self,
        in_channels: int,
        atrous_rates: Sequence[int],
        out_channels: int = 256,
        *,
        image_pooling: bool = True,
        dropout: float = 0.5,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        _check_channels(in_channels, out_channels, 1)
        rates = _check_rates(atrous_rates)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}")
        norm_layer = norm_layer or nn.BatchNorm2d
        branches: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), norm_layer(out_channels), nn.ReLU()
            )
        ]
        branches += [ASPPConv(in_channels, out_channels, r, norm_layer=norm_layer) for r in rates]
        if image_pooling:
            branches.append(ASPPPooling(in_channels, out_channels, norm_layer=norm_layer))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            norm_layer(out_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.atrous_rates, self.out_channels = rates, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([branch(x) for branch in self.convs], dim=1)  # (B, n_branches * C_out, H, W)
        return self.project(x)  # (B, C_out, H, W)


class ASPPSum(nn.Module):
    """DeepLab v2's ASPP: ``sum_r conv_r(x)``, one ``3 x 3`` convolution of dilation ``r`` per rate, each
    from the features straight to ``num_classes`` scores (with bias), as the ResNet-101 DeepLab v2.

    ``(B, in_channels, H, W) -> (B, num_classes, H, W)``; ``len(rates) (9 C_in + 1) K`` parameters. The
    weights start as N(0, 0.01) and the biases at zero, as the released prototxt.

    >>> import torch
    >>> head = ASPPSum(64, num_classes=5)
    >>> sum(p.numel() for p in head.parameters())  # 4 * (9 * 64 + 1) * 5
    11540
    >>> head(torch.zeros(1, 64, 9, 9)).shape
    torch.Size([1, 5, 9, 9])
    """

    def __init__(
        self, in_channels: int, num_classes: int, atrous_rates: Sequence[int] = (6, 12, 18, 24)
    ) -> None:
        super().__init__()
        _check_channels(in_channels, num_classes, 1)
        rates = _check_rates(atrous_rates)
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates
        )
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)
        self.atrous_rates = rates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)  # (B, K, H, W)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out
