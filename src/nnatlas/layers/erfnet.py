"""Residual blocks of ERFNet, and its down- and upsampling blocks.

Romera, Alvarez, Bergasa, Arroyo, "Efficient ConvNet for Real-time Semantic Segmentation" (IEEE IV 2017)
and "ERFNet: Efficient Residual Factorized ConvNet for Real-Time Semantic Segmentation" (IEEE T-ITS 2018).

The paper (Fig. 2) compares three residual layers of width ``w``, all ``(B, w, H, W) -> (B, w, H, W)``:

- non-bottleneck: two ``3 x 3`` convolutions, ``(9w + 1)w * 2 = 18w^2 + 2w`` parameters with bias;
- bottleneck: ``1 x 1`` to ``w/4``, ``3 x 3``, ``1 x 1`` back to ``w``,
  ``(w + 1)w/4 + (9w/4 + 1)w/4 + (w/4 + 1)w = 17w^2/16 + 3w/2``;
- non-bottleneck-1D, ERFNet's own: each ``3 x 3`` factorised into ``3 x 1`` then ``1 x 3`` with a ReLU in
  between, ``4(3w + 1)w = 12w^2 + 4w``: a third fewer weights than the non-bottleneck for the same
  receptive field, and more non-linearities.

These counts are those of the convolutions alone. The blocks carry batch norms as in the authors' code
(``eps=1e-3``, after the second and fourth convolution of the 1D block); ``norm=False`` removes them
and reproduces the counts above. ``bias=True`` everywhere, as in the authors' code. Attribute names follow
the authors' reference implementation (``conv3x1_1``, ``conv1x3_1``, ``bn1``, ...), so its ``state_dict``
loads unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nnatlas.layers.conv import _check_channels

NormLayer = Callable[[int], nn.Module]

_default_norm: NormLayer = functools.partial(nn.BatchNorm2d, eps=1e-3)


def _check_width(name: str, value: int, multiple: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {name}={value!r}")
    if value % multiple != 0:
        raise ValueError(f"{name} must be divisible by {multiple}; got {name}={value}")


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}")


def _norm(norm: bool, norm_layer: NormLayer | None, width: int) -> nn.Module:
    if not norm:
        return nn.Identity()
    return (norm_layer or _default_norm)(width)


class ERFNonBottleneck(nn.Module):
    """ResNet's basic block with a shortcut: ``relu(x + bn2(conv2(relu(bn1(conv1(x))))))``.

    Two ``3 x 3`` convolutions of width ``w`` (dilation ``dilation`` in the second one, as ERFNet dilates
    its blocks): ``18w^2 + 2w`` parameters without norms. ``(B, w, H, W) -> (B, w, H, W)``.

    >>> import torch
    >>> block = ERFNonBottleneck(16, norm=False)
    >>> sum(p.numel() for p in block.parameters())  # 18 * 16^2 + 2 * 16
    4640
    >>> block(torch.zeros(1, 16, 8, 8)).shape
    torch.Size([1, 16, 8, 8])
    """

    def __init__(
        self,
        width: int,
        *,
        dilation: int = 1,
        dropout: float = 0.0,
        norm: bool = True,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        _check_width("width", width)
        _check_width("dilation", dilation)
        _check_dropout(dropout)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=True)
        self.bn1 = _norm(norm, norm_layer, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation, bias=True)
        self.bn2 = _norm(norm, norm_layer, width)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.dropout(self.bn2(self.conv2(out)))
        return F.relu(out + x)


class ERFBottleneck(nn.Module):
    """ResNet's bottleneck at constant width: ``1 x 1`` ``w -> w/4``, ``3 x 3``, ``1 x 1`` ``w/4 -> w``.

    ``17w^2/16 + 3w/2`` parameters without norms (``width`` must be divisible by 4).
    ``(B, w, H, W) -> (B, w, H, W)``.

    >>> import torch
    >>> block = ERFBottleneck(16, norm=False)
    >>> sum(p.numel() for p in block.parameters())  # 17 * 16^2 / 16 + 3 * 16 / 2
    296
    >>> block(torch.zeros(1, 16, 8, 8)).shape
    torch.Size([1, 16, 8, 8])
    """

    def __init__(
        self,
        width: int,
        *,
        dilation: int = 1,
        dropout: float = 0.0,
        norm: bool = True,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        _check_width("width", width, 4)
        _check_width("dilation", dilation)
        _check_dropout(dropout)
        mid = width // 4
        self.conv1 = nn.Conv2d(width, mid, 1, bias=True)
        self.bn1 = _norm(norm, norm_layer, mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=dilation, dilation=dilation, bias=True)
        self.bn2 = _norm(norm, norm_layer, mid)
        self.conv3 = nn.Conv2d(mid, width, 1, bias=True)
        self.bn3 = _norm(norm, norm_layer, width)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.dropout(self.bn3(self.conv3(out)))
        return F.relu(out + x)


class ERFNonBottleneck1D(nn.Module):
    """ERFNet's factorised residual block (the paper's Fig. 2c, ``non_bottleneck_1d`` in the authors' code).

    ``3x1 -> relu -> 1x3 -> bn -> relu -> 3x1 (dilated) -> relu -> 1x3 (dilated) -> bn -> dropout``, added to
    the input, then ReLU. ``12w^2 + 4w`` parameters without norms. ``(B, w, H, W) -> (B, w, H, W)``.

    >>> import torch
    >>> block = ERFNonBottleneck1D(16, dilation=2, norm=False)
    >>> sum(p.numel() for p in block.parameters())  # 12 * 16^2 + 4 * 16, a third less than 4640
    3136
    >>> block(torch.zeros(1, 16, 8, 8)).shape
    torch.Size([1, 16, 8, 8])
    """

    def __init__(
        self,
        width: int,
        *,
        dilation: int = 1,
        dropout: float = 0.0,
        norm: bool = True,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        _check_width("width", width)
        _check_width("dilation", dilation)
        _check_dropout(dropout)
        d = dilation
        self.conv3x1_1 = nn.Conv2d(width, width, (3, 1), padding=(1, 0), bias=True)
        self.conv1x3_1 = nn.Conv2d(width, width, (1, 3), padding=(0, 1), bias=True)
        self.bn1 = _norm(norm, norm_layer, width)
        self.conv3x1_2 = nn.Conv2d(width, width, (3, 1), padding=(d, 0), dilation=(d, 1), bias=True)
        self.conv1x3_2 = nn.Conv2d(width, width, (1, 3), padding=(0, d), dilation=(1, d), bias=True)
        self.bn2 = _norm(norm, norm_layer, width)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv3x1_1(x))
        out = F.relu(self.bn1(self.conv1x3_1(out)))
        out = F.relu(self.conv3x1_2(out))
        out = self.dropout(self.bn2(self.conv1x3_2(out)))
        return F.relu(out + x)


class ERFDownsampler(nn.Module):
    """ERFNet's downsampler (from ENet's initial block): a stride-2 ``3 x 3`` convolution to
    ``out - in`` channels concatenated with a ``2 x 2`` max pool of the input, then BN and ReLU.

    ``(B, in_channels, H, W) -> (B, out_channels, H/2, W/2)`` (``H`` and ``W`` even).

    >>> import torch
    >>> ERFDownsampler(3, 16)(torch.zeros(1, 3, 8, 8)).shape  # 13 convolved + 3 pooled channels
    torch.Size([1, 16, 4, 4])
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, norm: bool = True, norm_layer: NormLayer | None = None
    ) -> None:
        super().__init__()
        _check_channels(in_channels, out_channels, 1)
        if out_channels <= in_channels:
            raise ValueError(
                f"out_channels must exceed in_channels (the pooled input is concatenated); got "
                f"in_channels={in_channels}, out_channels={out_channels}"
            )
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=True)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = _norm(norm, norm_layer, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.conv(x), self.pool(x)], dim=1)  # (B, out_channels, H/2, W/2)
        return F.relu(self.bn(out))


class ERFUpsampler(nn.Module):
    """ERFNet's upsampler: ``3 x 3`` transposed convolution with stride 2, padding 1, output padding 1,
    then BN and ReLU. ``(B, in_channels, H, W) -> (B, out_channels, 2H, 2W)``.

    >>> import torch
    >>> ERFUpsampler(16, 8)(torch.zeros(1, 16, 4, 4)).shape
    torch.Size([1, 8, 8, 8])
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, norm: bool = True, norm_layer: NormLayer | None = None
    ) -> None:
        super().__init__()
        _check_channels(in_channels, out_channels, 1)
        self.conv = nn.ConvTranspose2d(
            in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=True
        )
        self.bn = _norm(norm, norm_layer, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))
