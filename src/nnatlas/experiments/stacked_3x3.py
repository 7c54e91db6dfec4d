"""``stacked-3x3``: two 3x3 convolutions see what one 5x5 sees, three what one 7x7 sees, with fewer weights.

The receptive field is measured, not computed: the support of the gradient of one output pixel with
respect to the input (the pixels whose change changes it), on randomly initialised stacks; the analysis
toolkit's theoretical field and parameter count are recorded beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnatlas.analysis import count_parameters, receptive_field
from nnatlas.experiments.base import (
    NOT_SUPPORTED,
    SUPPORTED,
    Context,
    Experiment,
    Measurement,
    register_experiment,
    seeded,
)


def _stack(kernel: int, depth: int, channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no non-linearity after the last conv


def _measured_field(model: nn.Module, channels: int, size: int, seed: int) -> tuple[int, torch.Tensor]:
    """Width of the square of input pixels with a non-zero gradient for the centre output pixel."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, size, size, generator=gen, requires_grad=True)
    y = model(x)
    y[0, :, size // 2, size // 2].sum().backward()
    support = (x.grad.abs().sum(dim=(0, 1)) > 0).float()  # (H, W)
    rows = support.sum(dim=1).nonzero().flatten()
    return int(rows.max() - rows.min() + 1), support


@register_experiment
class StackedConvs(Experiment):
    name = "stacked-3x3"
    title = "two 3x3 convs see 5x5 and three see 7x7, with 18C^2 / 27C^2 weights instead of 25C^2 / 49C^2"
    section = "VGGNet"
    claim_zh = (
        "用多个 $3*3$ 小卷积核代替之前的 $5*5$、$7*7$ 等大卷积核，这样可以在更少的参数量、更小的计算量下，"
        "获得同样的感受野以及更大的网络深度。"
    )
    claim_en = (
        "Several small 3x3 kernels replace the earlier large 5x5 and 7x7 kernels: the same receptive field "
        "and a deeper network with fewer parameters and less computation."
    )
    method = (
        "Build stacks of 1, 2 and 3 convolutions of kernel 3 and single convolutions of kernel 5 and 7 "
        "(C in and out channels, no bias, ReLU between stacked convs) with random weights. For each, "
        "back-propagate from the centre output pixel to a random input and measure the width of the input "
        "square with a non-zero gradient (repeated per seed); count the weights with the analysis toolkit "
        "and compute the theoretical field with `receptive_field`."
    )
    criterion = (
        "Supported when, for every seed, the measured field of two 3x3 convs equals that of one 5x5 (5) and "
        "that of three 3x3 equals that of one 7x7 (7), and the stacks hold 18C^2 and 27C^2 weights, fewer "
        "than 25C^2 and 49C^2; otherwise not supported."
    )
    minutes = 0.1

    def run(self, ctx: Context) -> Measurement:
        channels = ctx.size(4, 16)
        size = 21
        configs = {"3x3 x1": (3, 1), "3x3 x2": (3, 2), "3x3 x3": (3, 3), "5x5 x1": (5, 1), "7x7 x1": (7, 1)}
        measured: dict[str, list[int]] = {k: [] for k in configs}
        supports: dict[str, list[list[float]]] = {}
        params: dict[str, int] = {}
        theory: dict[str, int] = {}
        for seed in ctx.seeds:
            for label, (k, d) in configs.items():
                ctx.step(f"seed {seed}: {label}")
                seeded(seed)
                model = _stack(k, d, channels)
                width, support = _measured_field(model, channels, size, seed)
                measured[label].append(width)
                supports.setdefault(label, support.tolist())
                params[label] = count_parameters(model)
                theory[label] = int(receptive_field(model, (1, channels, size, size)).final.size[0])
        c2 = channels * channels
        numbers: dict[str, Any] = {
            "channels": channels,
            "measured_field": measured,
            "theoretical_field": theory,
            "parameters": params,
            "parameters_per_C2": {k: v / c2 for k, v in params.items()},
            "support": supports,
        }
        table = [
            {
                "stack": label,
                "measured field (px, every seed)": "/".join(str(w) for w in sorted(set(measured[label]))),
                "theoretical field": theory[label],
                "weights": params[label],
                "weights / C^2": params[label] / c2,
            }
            for label in configs
        ]
        key = (
            f"field 5 with {params['3x3 x2'] // c2}C^2 vs {params['5x5 x1'] // c2}C^2; "
            f"7 with {params['3x3 x3'] // c2}C^2 vs {params['7x7 x1'] // c2}C^2"
        )
        return Measurement(numbers=numbers, table=table, key=key, figure=lambda p: _figure(numbers, p))

    def decide(self, numbers: Mapping[str, Any]) -> str:
        f, p = numbers["measured_field"], numbers["parameters_per_C2"]
        same = all(a == b for a, b in zip(f["3x3 x2"], f["5x5 x1"], strict=True)) and all(
            a == b for a, b in zip(f["3x3 x3"], f["7x7 x1"], strict=True)
        )
        sizes = set(f["3x3 x2"]) == {5} and set(f["3x3 x3"]) == {7}
        fewer = p["3x3 x2"] == 18 and p["3x3 x3"] == 27 and p["5x5 x1"] == 25 and p["7x7 x1"] == 49
        return SUPPORTED if same and sizes and fewer else NOT_SUPPORTED


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import figure, save

    labels = list(numbers["support"])
    fig, axes = figure(1, len(labels), width=2.2, height=2.6)
    for ax, label in zip(axes, labels, strict=True):
        ax.imshow(numbers["support"][label], cmap="Blues", vmin=0, vmax=1)
        ax.set_title(
            f"{label}\nfield {numbers['measured_field'][label][0]} px, {numbers['parameters_per_C2'][label]:g}C^2"
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    save(fig, path, title="input pixels that reach the centre output (non-zero gradient)")
