"""ERFNet: Romera, Alvarez, Bergasa, Arroyo, "ERFNet: Efficient Residual Factorized ConvNet for Real-Time
Semantic Segmentation" (IEEE T-ITS 2018; IEEE IV 2017), table 1, as the authors' PyTorch code
(``Eromera/erfnet_pytorch``, ``train/erfnet.py``).

Encoder (``H -> H/8``): a downsampler 3 -> 16, a downsampler 16 -> 64, five non-bottleneck-1D blocks of
64 (dropout 0.03), a downsampler 64 -> 128, then twice the four blocks of 128 with dilations 2, 4, 8, 16
(dropout 0.3). Decoder (``H/8 -> H``): an upsampler 128 -> 64, two blocks of 64, an upsampler 64 -> 16,
two blocks of 16, and a ``2 x 2`` transposed convolution of stride 2 to the classes (blocks:
:class:`~nnatlas.layers.ERFDownsampler`, :class:`~nnatlas.layers.ERFNonBottleneck1D`,
:class:`~nnatlas.layers.ERFUpsampler`; batch norm ``eps=1e-3``).

Parameters for 20 classes (Cityscapes' 19 and void): 2,064,256; with ``aux_loss=True`` the encoder's own
``1 x 1`` classifier (``encoder.output_conv``, which the authors train first, on 1/8-size labels) adds
``129 K`` = 2,580, 2,066,836 in all: the count of the authors' ``Net(20)``, whose ``state_dict`` keys
(``encoder.initial_block``, ``encoder.layers.<i>``, ``encoder.output_conv``, ``decoder.layers.<i>``,
``decoder.output_conv``) this model keeps. The paper rounds it to 2.1M ("about 2.07M").

The three downsamplers concatenate a stride-2 convolution (``ceil(H/2)``) with a ``2 x 2`` max pool
(``floor(H/2)``), so the network needs ``H`` and ``W`` divisible by 8; other sizes are zero-padded at the
bottom and right to the next multiple of 8 and the output is cropped back to ``(H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnatlas.layers import ERFDownsampler, ERFNonBottleneck1D, ERFUpsampler
from nnatlas.models.registry import register_model
from nnatlas.models.segmentation._common import check_image_input, check_num_classes, upsample_to

torch.fx.wrap("check_image_input")

__all__ = ["ERFNetEncoder", "ERFNetDecoder", "ERFNet", "erfnet"]


class ERFNetEncoder(nn.Module):
    """``(B, C, H, W) -> (B, 128, H/8, W/8)``; ``output_conv`` (``1 x 1`` to the classes) if given."""

    def __init__(self, in_channels: int, num_classes: int | None) -> None:
        super().__init__()
        self.initial_block = ERFDownsampler(in_channels, 16)
        layers: list[nn.Module] = [ERFDownsampler(16, 64)]
        layers += [ERFNonBottleneck1D(64, dropout=0.03) for _ in range(5)]
        layers.append(ERFDownsampler(64, 128))
        for _ in range(2):
            layers += [ERFNonBottleneck1D(128, dilation=d, dropout=0.3) for d in (2, 4, 8, 16)]
        self.layers = nn.ModuleList(layers)
        self.output_conv = nn.Conv2d(128, num_classes, 1) if num_classes is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.initial_block(x)  # (B, 16, H/2, W/2)
        for layer in self.layers:
            x = layer(x)
        return x  # (B, 128, H/8, W/8)


class ERFNetDecoder(nn.Module):
    """``(B, 128, H/8, W/8) -> (B, K, H, W)``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                ERFUpsampler(128, 64),
                ERFNonBottleneck1D(64),
                ERFNonBottleneck1D(64),
                ERFUpsampler(64, 16),
                ERFNonBottleneck1D(16),
                ERFNonBottleneck1D(16),
            ]
        )
        self.output_conv = nn.ConvTranspose2d(16, num_classes, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)  # (B, 64, H/4, W/4), then (B, 16, H/2, W/2)
        return self.output_conv(x)  # (B, K, H, W)


class ERFNet(nn.Module):
    """ERFNet. ``(B, C, H, W) -> {"out": (B, K, H, W)}``, plus ``"aux"`` (the encoder's classifier,
    upsampled bilinearly) with ``aux_loss=True``."""

    min_size = 1

    def __init__(self, *, num_classes: int = 21, in_channels: int = 3, aux_loss: bool = False) -> None:
        super().__init__()
        check_num_classes(num_classes, in_channels)
        if in_channels >= 16:
            raise ValueError(f"ERFNet's first downsampler makes 16 channels; got in_channels={in_channels}")
        self.in_channels = in_channels
        self.encoder = ERFNetEncoder(in_channels, num_classes if aux_loss else None)
        self.decoder = ERFNetDecoder(num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="erfnet")
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % 8, 0, -h % 8))  # (B, C, 8 ceil(H/8), 8 ceil(W/8))
        features = self.encoder(x)  # (B, 128, H/8, W/8)
        out = {"out": self.decoder(features)[..., :h, :w]}
        if self.encoder.output_conv is not None:
            aux = self.encoder.output_conv(features)  # (B, K, H/8, W/8)
            out["aux"] = upsample_to(aux, x.shape[-2:])[..., :h, :w]
        return out


@register_model(task="segmentation", input_size=(3, 32, 32), min_size=1)
def erfnet(*, num_classes: int = 21, in_channels: int = 3, aux_loss: bool = False) -> ERFNet:
    """ERFNet (Romera et al. 2018): factorised residual blocks, dilations 2/4/8/16, 2.06M parameters.

    ``(B, in_channels, H, W) -> {"out": (B, num_classes, H, W)}`` for any ``H, W`` (padded to a multiple
    of 8 inside, cropped back).

    >>> import torch
    >>> with torch.device("meta"):  # count without allocating
    ...     model = erfnet(num_classes=20)  # Cityscapes' 19 classes + void, as the paper
    >>> sum(p.numel() for p in model.parameters())
    2064256
    >>> erfnet(num_classes=3).eval()(torch.zeros(1, 3, 20, 30))["out"].shape
    torch.Size([1, 3, 20, 30])
    """
    return ERFNet(num_classes=num_classes, in_channels=in_channels, aux_loss=aux_loss)
