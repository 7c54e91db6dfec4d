"""The blocks of U-Net: Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation" (MICCAI 2015), Fig. 1.

- :class:`UNetDoubleConv`: two ``3 x 3`` convolutions, each followed by a ReLU. The paper's are unpadded
  ("valid"), so each loses one pixel per side: ``(B, C_in, H, W) -> (B, C_out, H - 4, W - 4)``;
  ``padding=True`` keeps the size (the common variant, usually with batch norm).
- :class:`UNetUp`: the expanding step, "an upsampling of the feature map followed by a 2x2 convolution
  ('up-convolution') that halves the number of feature channels, a concatenation with the correspondingly
  cropped feature map from the contracting path, and two 3x3 convolutions". The up-convolution is a
  ``2 x 2`` transposed convolution of stride 2 (``H -> 2H``).
- :func:`center_crop` and :func:`fit_to`: the two ways to make a skip and an upsampled map the same size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nnatlas.layers.conv import _check_channels

NormLayer = Callable[[int], nn.Module]


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The central ``size = (h, w)`` window of ``x (..., H, W)``, as U-Net crops its skips.

    With unpadded convolutions pixel ``i`` of the smaller map sits over pixel ``i + (H - h) / 2`` of the
    larger one, so the crop is central; ``H - h`` must be even for the two grids to align exactly.
    """
    h, w = size
    H, W = x.shape[-2:]
    if h > H or w > W or (H - h) % 2 or (W - w) % 2:
        raise ValueError(
            f"center_crop needs a target no larger than the map and an even difference; got a {H}x{W} map "
            f"and a {h}x{w} target"
        )
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top : top + h, left : left + w]


def fit_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x (..., H, W)`` zero-padded or cropped at the bottom and right to ``size = (h, w)``.

    With same-padded convolutions, pixel ``i`` of a map upsampled by 2 sits over pixel ``i`` of the skip
    (top-left aligned); it is one row or column short where a 2x2 pool rounded an odd size down (pad), or
    one too long where a strided convolution rounded it up (crop).
    """
    h, w = size
    H, W = x.shape[-2:]
    if (H, W) == (h, w):
        return x
    return F.pad(x, (0, w - W, 0, h - H))  # negative padding crops


class UNetDoubleConv(nn.Sequential):
    """``conv 3x3 -> [norm] -> ReLU -> conv 3x3 -> [norm] -> ReLU``.

    ``(B, in_channels, H, W) -> (B, out_channels, H - 4, W - 4)`` with ``padding=False`` (the paper),
    ``(B, out_channels, H, W)`` with ``padding=True``. The convolutions carry a bias only without a norm
    layer (batch norm would cancel it). ``9 C_in C_out + 9 C_out^2 + 2 C_out`` parameters without norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        padding: bool = False,
        norm_layer: NormLayer | None = None,
    ) -> None:
        _check_channels(in_channels, out_channels, 1)
        p, bias = int(padding), norm_layer is None
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=p, bias=bias))
            if norm_layer is not None:
                layers.append(norm_layer(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        self.in_channels, self.out_channels, self.padding = in_channels, out_channels, padding


class UNetUp(nn.Module):
    """Up-convolution, concatenation with the skip, :class:`UNetDoubleConv`.

    ``x (B, in_channels, h, w)``, ``skip (B, skip_channels, H, W)`` -> ``(B, out_channels, ...)``: ``x`` is
    upsampled to ``(2h, 2w)`` with ``up_channels`` channels (default ``in_channels // 2``, the paper's
    halving). With ``padding=False`` the skip is centre-cropped to ``(2h, 2w)`` (the paper's "copy and
    crop") and the output is ``(2h - 4, 2w - 4)``; with ``padding=True`` the upsampled map is fitted to the
    skip (:func:`fit_to`) and the output is ``(H, W)``. ``skip_channels=0`` upsamples without a skip.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        *,
        up_channels: int | None = None,
        padding: bool = False,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        up_channels = in_channels // 2 if up_channels is None else up_channels
        _check_channels(in_channels, up_channels, 1)
        if isinstance(skip_channels, bool) or not isinstance(skip_channels, int) or skip_channels < 0:
            raise ValueError(f"skip_channels must be an int >= 0; got skip_channels={skip_channels!r}")
        self.up = nn.ConvTranspose2d(in_channels, up_channels, 2, stride=2)
        self.conv = UNetDoubleConv(
            up_channels + skip_channels, out_channels, padding=padding, norm_layer=norm_layer
        )
        self.skip_channels, self.padding = skip_channels, padding

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)  # (B, up_channels, 2h, 2w)
        if skip is not None:
            if self.padding:
                x = fit_to(x, skip.shape[-2:])
            else:
                skip = center_crop(skip, x.shape[-2:])
            x = torch.cat([skip, x], dim=1)  # (B, skip_channels + up_channels, ., .)
        return self.conv(x)
