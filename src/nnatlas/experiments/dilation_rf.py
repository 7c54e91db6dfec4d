"""``dilation-rf``: dilated (atrous) convolutions grow the receptive field exponentially with depth, at the
cost of ordinary ones; a repeated dilation rate leaves holes in it (gridding).

Claim (notes, 卷积核变种, 空洞卷积): injecting holes into the kernel increases the receptive field. With
kernel 3 and dilation ``d`` a layer adds ``2d`` pixels to the field, so four layers with dilations
1, 1, 1, 1 see ``9`` pixels (linear growth, ``2l + 1``) and with dilations 1, 2, 4, 8 see ``31`` pixels
(exponential growth, ``2^(l+1) - 1``; Yu & Koltun, "Multi-Scale Context Aggregation by Dilated
Convolutions", ICLR 2016), with the same ``36 C^2`` weights.

Method: the field is measured as in ``stacked-3x3``: the support of the gradient of the centre output pixel
with respect to a random input, after each layer of randomly initialised stacks (ReLU between layers),
next to the theoretical field of :func:`~nnatlas.analysis.receptive_field`. The effective receptive field
(:func:`~nnatlas.analysis.effective_receptive_field`, Luo et al., NeurIPS 2016) of the whole stack shows
how the pixels inside the field are covered; a third stack with the repeated rate 2, 2, 2, 2 shows the
gridding problem of Wang et al., "Understanding Convolution for Semantic Segmentation" (WACV 2018): the
fraction of pixels inside the theoretical field whose gradient is exactly zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnatlas.analysis import count_parameters, effective_receptive_field, receptive_field
from nnatlas.experiments.base import (
    NOT_SUPPORTED,
    SUPPORTED,
    Context,
    Experiment,
    Measurement,
    register_experiment,
    seeded,
    spread,
)

#: The stacks compared: dilation rate of each of the four 3x3 layers.
STACKS = {"dense 1,1,1,1": (1, 1, 1, 1), "dilated 1,2,4,8": (1, 2, 4, 8), "repeated 2,2,2,2": (2, 2, 2, 2)}
SIZE = 41  # input side: larger than the widest field (31) plus a margin


def _stack(dilations: tuple[int, ...], channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d in dilations:
        layers += [nn.Conv2d(channels, channels, 3, padding=d, dilation=d, bias=False), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no non-linearity after the last conv


def _support_width(model: nn.Module, channels: int, seed: int) -> int:
    """Width of the input square with a non-zero gradient for the centre output pixel."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, SIZE, SIZE, generator=gen, requires_grad=True)
    model(x)[0, :, SIZE // 2, SIZE // 2].sum().backward()
    rows = (x.grad.abs().sum(dim=(0, 1)) > 0).sum(dim=1).nonzero().flatten()  # rows touched
    return int(rows.max() - rows.min() + 1)


def _holes(heatmap: torch.Tensor, field: int) -> float:
    """Fraction of the pixels of the centred ``field x field`` square whose gradient is zero."""
    c, r = SIZE // 2, field // 2
    window = heatmap[c - r : c + r + 1, c - r : c + r + 1]
    return float((window <= 0).double().mean())


def _roughness(heatmap: torch.Tensor, field: int) -> float:
    """Mean of ``|h - mean of its 4 neighbours|`` over the pixels of the centred ``field x field`` square,
    divided by the mean of ``h`` there: near 0 for a smooth field, large for a speckled or gridded one."""
    c, r = SIZE // 2, field // 2
    h = heatmap[c - r - 1 : c + r + 2, c - r - 1 : c + r + 2]  # one pixel of margin for the neighbours
    centre = h[1:-1, 1:-1]
    neighbours = (h[:-2, 1:-1] + h[2:, 1:-1] + h[1:-1, :-2] + h[1:-1, 2:]) / 4
    return float((centre - neighbours).abs().mean() / centre.mean())


@register_experiment
class DilationField(Experiment):
    name = "dilation-rf"
    title = "dilations 1,2,4,8 grow the field exponentially (31 px) where 1,1,1,1 grows it linearly (9 px)"
    section = "卷积核变种"
    claim_zh = (
        "空洞卷积就是在标准的卷积核中注入“空洞”，以增加卷积核的感受野。空洞卷积引入了扩张率（dilation rate）"
        "这个超参数来指定相邻采样点之间的间隔：扩张率为$r$的空洞卷积，卷积核上相邻数据点之间有$r-1$个空洞"
    )
    claim_en = (
        "Dilated convolution injects holes into the kernel to enlarge the receptive field; rate r leaves r-1 "
        "holes between neighbouring taps. Measured: four 3x3 layers with dilations 1,2,4,8 see 2^(l+1)-1 "
        "pixels after l layers (exponential), four ordinary ones 2l+1 (linear), with the same weights; and "
        "which pixels inside the field are reached (the gridding of a repeated rate)."
    )
    method = (
        "Random stacks of four 3x3 convolutions (C channels, no bias, ReLU between) with dilations 1,1,1,1, "
        "1,2,4,8 and 2,2,2,2 (padding = dilation). After each layer, back-propagate from the centre output "
        f"pixel to a random {SIZE}x{SIZE} input and measure the width of the input square with a non-zero "
        "gradient (per seed); compare with `receptive_field`. Average the effective receptive field of each "
        "whole stack over random inputs and count the pixels inside the theoretical field with zero gradient "
        "(holes)."
    )
    criterion = (
        "Supported when, for every seed, the measured field after layers 1-4 is 3, 5, 7, 9 for dilations "
        "1,1,1,1 and 3, 7, 15, 31 for dilations 1,2,4,8, equal to the theoretical field, and both stacks "
        "hold the same number of weights; otherwise not supported. (The holes are reported, not judged.)"
    )
    minutes = 0.1

    def run(self, ctx: Context) -> Measurement:
        channels = ctx.size(4, 8)
        samples = ctx.size(4, 16)
        measured: dict[str, list[list[int]]] = {k: [] for k in STACKS}  # per seed, per depth
        theory: dict[str, list[int]] = {}
        params: dict[str, int] = {}
        holes: dict[str, list[float]] = {k: [] for k in STACKS}
        extent: dict[str, list[int]] = {k: [] for k in STACKS}
        roughness: dict[str, list[float]] = {k: [] for k in STACKS}
        heatmaps: dict[str, list[list[float]]] = {}
        for seed in ctx.seeds:
            for label, dilations in STACKS.items():
                ctx.step(f"seed {seed}: {label}")
                seeded(seed)
                model = _stack(dilations, channels)
                convs = [i for i, m in enumerate(model) if isinstance(m, nn.Conv2d)]
                widths = [_support_width(model[: i + 1], channels, seed) for i in convs]
                measured[label].append(widths)
                rf = receptive_field(model, (1, channels, SIZE, SIZE))
                theory[label] = [int(rf.layers[str(i)].size[0]) for i in convs]
                params[label] = count_parameters(model)
                erf = effective_receptive_field(model, (1, channels, SIZE, SIZE), samples=samples, seed=seed)
                holes[label].append(_holes(erf.heatmap, theory[label][-1]))
                extent[label].append(int(erf.extent[0]))
                roughness[label].append(_roughness(erf.heatmap, theory[label][-1]))
                heatmaps.setdefault(label, [[round(v, 4) for v in row] for row in erf.heatmap.tolist()])
        numbers: dict[str, Any] = {
            "channels": channels,
            "input_size": SIZE,
            "erf_samples": samples,
            "dilations": {k: list(v) for k, v in STACKS.items()},
            "measured_field": measured,
            "theoretical_field": theory,
            "parameters": params,
            "holes_fraction": holes,
            "holes_fraction_spread": {k: spread(v) for k, v in holes.items()},
            "erf_extent_95": extent,
            "erf_roughness": roughness,
            "erf_heatmap": heatmaps,
        }
        table = [
            {
                "stack (dilations)": label,
                "measured field after layers 1-4 (px)": ", ".join(str(w) for w in measured[label][0]),
                "same in every seed": all(m == measured[label][0] for m in measured[label]),
                "theoretical field": ", ".join(str(w) for w in theory[label]),
                "weights": params[label],
                "ERF 95% extent (px)": round(spread(extent[label])["mean"], 1),
                "holes in field (%)": round(100 * spread(holes[label])["mean"], 1),
                "ERF roughness": round(spread(roughness[label])["mean"], 2),
            }
            for label in STACKS
        ]
        d, x = measured["dense 1,1,1,1"][0][-1], measured["dilated 1,2,4,8"][0][-1]
        key = (
            f"4 layers see {d} px (1,1,1,1) vs {x} px (1,2,4,8); holes "
            f"{100 * spread(holes['dilated 1,2,4,8'])['mean']:.0f}% (1,2,4,8) vs "
            f"{100 * spread(holes['repeated 2,2,2,2'])['mean']:.0f}% (2,2,2,2)"
        )
        notes = [
            "Dilations 1,2,4,8 reach every pixel of their 31x31 field: every offset in [-15, 15] is a sum "
            "a1 + 2 a2 + 4 a3 + 8 a4 with a_i in {-1, 0, 1}, so this exponential schedule (Yu & Koltun 2016) "
            "has no holes; its effective field is uneven, though: offsets are reached by different numbers "
            "of these sums (paths: 1 for the centre, 4 for an offset of 1), so neighbouring pixels carry "
            "very different gradients (column 'ERF roughness': mean |h - mean of the 4 neighbours| / mean h "
            "inside the field, against the smooth field of the dense stack). Holes appear with a repeated rate: 2,2,2,2 "
            "reaches only the even offsets, 81 of the 289 pixels of its 17x17 field (the gridding of Wang "
            "et al. 2018).",
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, figure=lambda p: _figure(numbers, p), notes=notes
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        m, t, p = numbers["measured_field"], numbers["theoretical_field"], numbers["parameters"]
        linear = all(w == [3, 5, 7, 9] for w in m["dense 1,1,1,1"]) and t["dense 1,1,1,1"] == [3, 5, 7, 9]
        exponential = all(w == [3, 7, 15, 31] for w in m["dilated 1,2,4,8"]) and t["dilated 1,2,4,8"] == [
            3,
            7,
            15,
            31,
        ]
        same_weights = p["dense 1,1,1,1"] == p["dilated 1,2,4,8"]
        return SUPPORTED if linear and exponential and same_weights else NOT_SUPPORTED


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import PALETTE, figure, save

    labels = list(numbers["erf_heatmap"])
    fig, axes = figure(1, len(labels) + 1, width=3.0, height=3.0)
    ax = axes[0]
    depth = [1, 2, 3, 4]
    for colour, label in zip(PALETTE, labels, strict=False):
        ax.plot(depth, numbers["measured_field"][label][0], "o-", color=colour, label=label)
    ax.plot(depth, [2 * d + 1 for d in depth], ":", color="grey", label="2l+1")
    ax.plot(depth, [2 ** (d + 1) - 1 for d in depth], "--", color="grey", label="2^(l+1)-1")
    ax.set_xlabel("layers l")
    ax.set_ylabel("measured receptive field (px)")
    ax.set_xticks(depth)
    ax.legend()
    for ax, label in zip(axes[1:], labels, strict=True):
        heat = torch.tensor(numbers["erf_heatmap"][label])
        ax.imshow(heat.clamp_min(1e-4).log10().numpy(), cmap="magma", vmin=-4, vmax=0)
        holes = 100 * numbers["holes_fraction_spread"][label]["mean"]
        ax.set_title(f"ERF {label}\nholes in field: {holes:.0f}%")
        ax.set_xlabel("input x (px)")
        ax.set_ylabel("input y (px)")
        ax.grid(False)
    save(fig, path, title="receptive field growth and effective receptive field (log10 |grad|, peak = 0)")
