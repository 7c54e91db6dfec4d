"""U-Net: Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation"
(MICCAI 2015).

A contracting path of four levels (two ``3 x 3`` convolutions and a ``2 x 2`` max pool each, widths 64,
128, 256, 512), a bottom level of 1024, and an expanding path that mirrors it: a ``2 x 2`` up-convolution
halving the channels, concatenation with the contracting path's map of the same level ("copy and crop"),
two ``3 x 3`` convolutions; a final ``1 x 1`` to the classes (:class:`~nnatlas.layers.UNetDoubleConv`,
:class:`~nnatlas.layers.UNetUp`). 31,030,658 parameters for 1 input channel and 2 classes, as the
paper's network (``unet(in_channels=1, num_classes=2)``); ``base_channels`` scales every width.

- ``padding=False`` (the paper): unpadded convolutions, the skips centre-cropped. The network itself maps a
  ``572 x 572`` tile to ``388 x 388`` (each level loses 4 pixels per pair of convolutions, 184 in all).
  To predict a whole image at its own size the paper mirrors the missing context around it (the
  "overlap-tile strategy", Fig. 2): with ``overlap_tile=True`` (default) ``forward`` reflects the image
  into the smallest valid tile whose output covers it, 92 pixels before it, and crops the output to
  ``(H, W)``; ``overlap_tile=False`` runs the bare network (the input must then be a valid tile size).
- ``padding=True``: same-padded convolutions with batch norm (``batch_norm=None`` follows ``padding``):
  ``(B, C, H, W) -> (B, K, H, W)`` for ``H, W >= 2^depth``, the upsampled maps fitted to the skips.
- ``backbone="resnet34"`` (any zoo ResNet): the encoder is that ResNet's stem and four stages (strides 2 to
  32, ``forward_intermediates``), with five up-steps of ``decoder_channels`` (default 256, 128, 64, 32, 16;
  same padding, batch norm), the last without a skip; ``weights_backbone="torchvision"`` starts the encoder
  from ImageNet.

Every variant returns ``{"out": (B, K, H, W)}`` (with ``overlap_tile=False``, the valid output size).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnatlas.layers import UNetDoubleConv, UNetUp, fit_to
from nnatlas.models.registry import register_model
from nnatlas.models.segmentation._common import (
    check_image_input,
    check_num_classes,
    resnet_backbone,
)

torch.fx.wrap("check_image_input")

__all__ = ["valid_output_size", "UNet", "ResNetUNet", "unet"]


def valid_output_size(size: int, depth: int = 4) -> int | None:
    """Output size of the unpadded U-Net of ``depth`` levels for an input of ``size``, ``None`` if invalid.

    Valid: every pool halves an even size and every map keeps at least one pixel (572 -> 388, 188 -> 4).

    >>> valid_output_size(572), valid_output_size(188), valid_output_size(100)
    (388, 4, None)
    """
    s = size
    for _ in range(depth):
        s -= 4
        if s < 2 or s % 2:
            return None
        s //= 2
    s -= 4
    if s < 1:
        return None
    for _ in range(depth):
        s = 2 * s - 4
        if s < 1:
            return None
    return s


def _tile_size(size: int, depth: int) -> int:
    """The smallest valid tile whose output covers ``size`` pixels after ``margin / 2`` of context."""
    margin = 4 * (3 * 2**depth - 2)  # 184 for depth 4
    t = size + margin
    while valid_output_size(t, depth) is None:
        t += 1
    return t


def _mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect ``x`` outwards, repeatedly where the padding exceeds the image (replicate for 1 pixel)."""
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        if h == 1 or w == 1:
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        t, b, l_, r = min(top, h - 1), min(bottom, h - 1), min(left, w - 1), min(right, w - 1)
        x = F.pad(x, (l_, r, t, b), mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - l_, right - r
    return x


class UNet(nn.Module):
    """The U-Net of Ronneberger et al. ``(B, C, H, W) -> {"out": (B, K, H, W)}``.

    **Arguments:**

    - ``num_classes``, ``in_channels``: output classes and image channels.
    - ``base_channels``: width of the first level (64); level ``l`` has ``base * 2^l``.
    - ``depth``: number of poolings (4).
    - ``padding``: same-padded convolutions (``False``: the paper's valid convolutions).
    - ``batch_norm``: batch norm after every convolution (default: ``padding``).
    - ``dropout``: dropout at the end of the contracting path (the paper uses it; default 0).
    - ``overlap_tile``: with ``padding=False``, mirror-pad and crop so that the output is ``(H, W)``.
    """

    def __init__(
        self,
        *,
        num_classes: int = 21,
        in_channels: int = 3,
        base_channels: int = 64,
        depth: int = 4,
        padding: bool = False,
        batch_norm: bool | None = None,
        dropout: float = 0.0,
        overlap_tile: bool = True,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes, in_channels)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an int >= 1; got depth={depth!r}")
        if isinstance(base_channels, bool) or not isinstance(base_channels, int) or base_channels < 1:
            raise ValueError(f"base_channels must be an int >= 1; got base_channels={base_channels!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}")
        batch_norm = padding if batch_norm is None else batch_norm
        norm = nn.BatchNorm2d if batch_norm else None
        self.in_channels, self.depth, self.padding = in_channels, depth, padding
        self.overlap_tile = overlap_tile and not padding
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList()
        c = in_channels
        for w in widths[:-1]:
            self.encoder.append(UNetDoubleConv(c, w, padding=padding, norm_layer=norm))
            c = w
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bottom = UNetDoubleConv(c, widths[-1], padding=padding, norm_layer=norm)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.ModuleList(
            UNetUp(widths[i + 1], widths[i], widths[i], padding=padding, norm_layer=norm)
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        if padding:
            self.min_size = 2**depth
        elif self.overlap_tile:
            self.min_size = 1
        else:
            self.min_size = next(s for s in range(1, 16 * 2**depth) if valid_output_size(s, depth))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="unet")
        h, w = x.shape[-2:]
        if self.overlap_tile:
            th, tw = _tile_size(h, self.depth), _tile_size(w, self.depth)
            half = 2 * (3 * 2**self.depth - 2)  # 92: the context lost on each side
            x = _mirror_pad(x, half, th - h - half, half, tw - w - half)  # (B, C, th, tw)
        elif not self.padding:
            for s in (h, w):
                if valid_output_size(s, self.depth) is None:
                    raise ValueError(
                        f"unet with padding=False, overlap_tile=False needs a valid tile size (each pool "
                        f"on an even size, e.g. 572 -> 388 or {self.min_size} -> "
                        f"{valid_output_size(self.min_size, self.depth)}); got {h}x{w}"
                    )
        skips = []
        for level in self.encoder:
            x = level(x)  # (B, base * 2^l, ., .)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottom(x))  # (B, base * 2^depth, ., .)
        for up, skip in zip(self.decoder, reversed(skips), strict=True):
            x = up(x, skip)
        x = self.head(x)  # (B, K, ., .)
        if self.overlap_tile:
            x = x[..., :h, :w]
        return {"out": x}


class ResNetUNet(nn.Module):
    """U-Net decoder over a zoo ResNet encoder. ``(B, C, H, W) -> {"out": (B, K, H, W)}``.

    The encoder maps (``backbone.forward_intermediates``: stem at stride 2, ``layer1`` .. ``layer4`` at 4
    to 32) are the skips; each up-step is a :class:`~nnatlas.layers.UNetUp` (``2 x 2`` up-convolution to
    half the channels, concatenation, two same-padded ``3 x 3`` convolutions with batch norm); the fifth
    returns to stride 1 without a skip; a ``1 x 1`` gives the classes.
    """

    min_size = 1

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_classes: int = 21,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__()
        if len(decoder_channels) != 5 or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in decoder_channels
        ):
            raise ValueError(f"decoder_channels must give 5 ints >= 1; got {decoder_channels!r}")
        self.backbone, self.in_channels = backbone, backbone.in_channels
        skips = list(reversed(backbone.intermediate_channels[:-1])) + [
            0
        ]  # layer3, layer2, layer1, stem, none
        self.decoder = nn.ModuleList()
        c = backbone.intermediate_channels[-1]
        for skip, out in zip(skips, decoder_channels, strict=True):
            self.decoder.append(
                UNetUp(c, skip, out, up_channels=max(c // 2, 1), padding=True, norm_layer=nn.BatchNorm2d)
            )
            c = out
        self.head = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="unet")
        size = x.shape[-2:]
        *skips, x = self.backbone.forward_intermediates(x)  # stem, layer1, layer2, layer3; layer4
        for up, skip in zip(self.decoder, [*reversed(skips), None], strict=True):
            x = up(x, skip)
        return {"out": self.head(fit_to(x, size))}  # (B, K, H, W)


@register_model(task="segmentation", input_size=(3, 8, 8), min_size=1)
def unet(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    base_channels: int = 64,
    depth: int = 4,
    padding: bool = False,
    batch_norm: bool | None = None,
    dropout: float = 0.0,
    overlap_tile: bool = True,
    backbone: str | None = None,
    weights_backbone: str | None = None,
    decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    progress: bool = True,
) -> nn.Module:
    """U-Net (Ronneberger et al. 2015); ``padding=True`` for same size with batch norm; zoo ResNet encoder.

    ``(B, in_channels, H, W) -> {"out": (B, num_classes, H, W)}``. Without ``backbone``, a :class:`UNet`
    with the arguments of the same names; with ``backbone="resnet18"`` .. ``"resnet152"``, a
    :class:`ResNetUNet` over that zoo ResNet (``weights_backbone="torchvision"`` for its ImageNet
    weights) with ``decoder_channels``.

    >>> import torch
    >>> with torch.device("meta"):  # count without allocating
    ...     paper = unet(num_classes=2)  # Fig. 1: 64 .. 1024 channels, valid convolutions
    >>> sum(p.numel() for p in paper.parameters())
    31031810
    >>> small = unet(num_classes=2, base_channels=4, depth=2).eval()  # overlap-tile: any size in and out
    >>> small(torch.zeros(1, 3, 44, 44))["out"].shape
    torch.Size([1, 2, 44, 44])
    """
    if backbone is None:
        if weights_backbone is not None or tuple(decoder_channels) != (256, 128, 64, 32, 16):
            raise ValueError(
                "weights_backbone and decoder_channels belong to a backbone encoder (e.g. backbone='resnet34'); "
                "got backbone=None"
            )
        return UNet(
            num_classes=num_classes,
            in_channels=in_channels,
            base_channels=base_channels,
            depth=depth,
            padding=padding,
            batch_norm=batch_norm,
            dropout=dropout,
            overlap_tile=overlap_tile,
        )
    plain = {"base_channels": (base_channels, 64), "depth": (depth, 4), "batch_norm": (batch_norm, None)}
    plain |= {"dropout": (dropout, 0.0), "overlap_tile": (overlap_tile, True)}
    changed = [f"{k}={v!r}" for k, (v, default) in plain.items() if v != default]
    if changed:
        raise ValueError(
            f"with a backbone encoder the decoder is set by decoder_channels (same padding, batch norm); "
            f"got backbone={backbone!r} and {', '.join(changed)}"
        )
    check_num_classes(num_classes, in_channels)
    net = resnet_backbone(backbone, in_channels=in_channels, weights=weights_backbone, progress=progress)
    return ResNetUNet(net, num_classes=num_classes, decoder_channels=decoder_channels)
