"""Convolution variants against their torch / torchvision references, on the same input, in one process.

- ``ConvNormAct`` vs ``torchvision.ops.Conv2dNormActivation`` (same layers: the ratio should be ~1);
- ``DeformConv2d`` (offset branch + bilinear sampling) vs ``nn.Conv2d`` of the same shape: the price of
  deformability;
- ``DepthwiseSeparableConv2d`` vs a dense ``3 x 3`` conv with the same channels: MobileNets promise
  ``1 / C_out + 1 / 9`` of the multiply-adds; the wall-time ratio shows how much of it a CPU delivers.

Each pair is timed in both orders and the medians combined by geometric mean. Run:
``python -m benchmarks.conv_variants``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation

from benchmarks.common import interleaved_ratio, machine
from nnatlas.layers import ConvNormAct, DeformConv2d, DepthwiseSeparableConv2d


def _forward(module: nn.Module, x: torch.Tensor):
    module.eval()

    def run():
        with torch.inference_mode():
            module(x)

    return run


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 64, 56, 56)
    rows = []
    ours = ConvNormAct(64, 64, 3)
    ref = Conv2dNormActivation(64, 64, 3)
    ref.load_state_dict(ours.state_dict())
    rows.append(("ConvNormAct 64->64 3x3 / torchvision Conv2dNormActivation", ours, ref))
    rows.append(
        ("DeformConv2d 64->64 3x3 / nn.Conv2d 3x3", DeformConv2d(64, 64, 3), nn.Conv2d(64, 64, 3, padding=1))
    )
    rows.append(
        (
            "DeformConv2d modulated 64->64 3x3 / nn.Conv2d 3x3",
            DeformConv2d(64, 64, 3, modulated=True),
            nn.Conv2d(64, 64, 3, padding=1),
        )
    )
    sep = DepthwiseSeparableConv2d(64, 128, 3, norm_layer=None, act_layer=None, mid_norm=False, mid_act=False)
    rows.append(
        ("DepthwiseSeparable 64->128 3x3 / nn.Conv2d 64->128 3x3", sep, nn.Conv2d(64, 128, 3, padding=1))
    )
    print(f"machine: {machine()}; input {tuple(x.shape)}, forward, inference mode")
    print("| comparison | ours (ms) | reference (ms) | ratio |")
    print("| --- | --- | --- | --- |")
    for name, a, b in rows:
        # timed in both orders (the first of a pair pays for the other's freed memory), geometric mean
        ta1, tb1, _ = interleaved_ratio(_forward(a, x), _forward(b, x), repeats=7, warmup=2)
        tb2, ta2, _ = interleaved_ratio(_forward(b, x), _forward(a, x), repeats=7, warmup=2)
        ta, tb = math.sqrt(ta1 * ta2), math.sqrt(tb1 * tb2)
        print(f"| {name} | {ta * 1e3:.1f} | {tb * 1e3:.1f} | {ta / tb:.2f} |")
    print(f"MobileNets' multiply-add ratio for this case: 1/128 + 1/9 = {1 / 128 + 1 / 9:.3f}")


if __name__ == "__main__":
    main()
