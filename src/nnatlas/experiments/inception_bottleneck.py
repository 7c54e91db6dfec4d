"""``inception-bottleneck``: a 1x1 convolution before the 5x5 one cuts its computation about tenfold (GoogLeNet's
arithmetic), and small Inception nets with these reductions classify the shapes as well as without.

Claim (notes, inception-v1): the bottleneck structure compresses the channels with a 1x1 convolution before
a computationally large convolution, to reduce computation (Szegedy et al., "Going Deeper with
Convolutions", CVPR 2015, figure 2(b) against the naive module of figure 2(a)).

Method: the analysis toolkit (:func:`~nnatlas.analysis.summary`) counts the multiply-accumulates of the
5x5 branch of GoogLeNet's module 3a on its ``28 x 28 x 192`` input, once as ``5x5, 192 -> 32`` and once as
``1x1, 192 -> 16`` then ``5x5, 16 -> 32``: ``28 * 28 * 32 * 5 * 5 * 192 = 120.4M`` against ``28 * 28 * 16
* 192 + 28 * 28 * 32 * 5 * 5 * 16 = 12.4M`` by hand (the notes state no numbers; these are the commonly
quoted ones). Then two small nets, a stem and two Inception modules, one with GoogLeNet's modules
(:class:`~nnatlas.layers.InceptionV1`, 5x5 branch) and one with the naive module (the same branch widths,
the 3x3 and 5x5 convolutions applied to the input directly), are trained briefly on the shape
silhouettes and compared by validation accuracy, MACs and parameters, per seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnatlas.analysis import summary
from nnatlas.experiments import _vision
from nnatlas.experiments._train import accuracy
from nnatlas.experiments.base import (
    NOT_SUPPORTED,
    Context,
    Experiment,
    Measurement,
    majority,
    register_experiment,
    seeded,
    spread,
)
from nnatlas.layers import BasicConv2d, InceptionV1

GOOGLENET_INPUT = (1, 192, 28, 28)  # the input of module 3a
MAC_RATIO = 5.0  # the reduction must cut the 5x5 branch's MACs at least this many times
ACC_TOLERANCE = 0.03  # accuracy points the reduced net may lose per seed


class NaiveInception(nn.Module):
    """The naive Inception module (Szegedy et al. 2015, figure 2(a)) with a pooling projection so that its
    output width matches :class:`~nnatlas.layers.InceptionV1`: 1x1, 3x3 and 5x5 convolutions on the input
    itself, and 3x3 max pool -> 1x1; ``(B, in_channels, H, W) -> (B, ch1x1 + ch3x3 + ch5x5 + pool_proj, H,
    W)``."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3: int, ch5x5: int, pool_proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = BasicConv2d(in_channels, ch3x3, kernel_size=3, padding=1)
        self.branch3 = BasicConv2d(in_channels, ch5x5, kernel_size=5, padding=2)
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def _net(reduced: bool) -> nn.Sequential:
    """Stem (3x3, 16) -> pool -> module (16 -> 32) -> pool -> module (32 -> 64) -> GAP -> linear (4)."""
    if reduced:  # (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj)
        m1 = InceptionV1(16, 8, 8, 12, 4, 8, 4, branch3_kernel_size=5)
        m2 = InceptionV1(32, 16, 12, 24, 4, 16, 8, branch3_kernel_size=5)
    else:
        m1 = NaiveInception(16, 8, 12, 8, 4)
        m2 = NaiveInception(32, 16, 24, 16, 8)
    return nn.Sequential(
        BasicConv2d(1, 16, kernel_size=3, padding=1),
        nn.MaxPool2d(2),
        m1,
        nn.MaxPool2d(2),
        m2,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 4),
    )


@register_experiment
class InceptionBottleneck(Experiment):
    name = "inception-bottleneck"
    title = "a 1x1 reduction before GoogLeNet's 5x5 conv cuts its MACs ~10x, and the nets learn as well"
    section = "inception-v1"
    claim_zh = (
        "提出了瓶颈（bottleneck）结构，即在计算比较大的卷积层之前，先使用 $1*1$ 卷积对其通道进行压缩以减少计算量"
        "（在较大卷积层完成计算之后，根据需要有时候会再次使用 $1*1$ 卷积将其通道数复原），如图1.11（b）所示。"
    )
    claim_en = (
        "The bottleneck: before a computationally large convolution, a 1x1 convolution compresses the "
        "channels to reduce computation. Measured: the MACs of GoogLeNet's 5x5 branch on 28x28x192 with and "
        "without a 1x1 reduction to 16 channels (the notes give no numbers; 120M vs 12.4M is the common "
        "arithmetic), and whether small Inception nets with the reductions lose accuracy on the shapes."
    )
    method = (
        "summary() counts the MACs and parameters of Conv2d(192, 32, 5) against Conv2d(192, 16, 1) -> "
        "Conv2d(16, 32, 5) on a 1x192x28x28 input. Two small nets (stem 3x3 conv, two Inception modules, "
        "global average pooling, linear) differ only in the 1x1 reductions before their 3x3 and 5x5 "
        "convolutions (InceptionV1 with a 5x5 branch vs the naive module of figure 2(a)); each is trained "
        "with Adam on the 20x20 shape silhouettes (4 classes) per seed, batch-norm statistics re-estimated "
        "after training, and evaluated on held-out scenes."
    )
    criterion = (
        f"Supported when the 1x1 reduction divides the measured MACs of the 5x5 branch by at least "
        f"{MAC_RATIO:g} and, in at least 2/3 of the seeds (2 of 3), the net with reductions reaches a "
        f"validation accuracy no more than {ACC_TOLERANCE * 100:g} points below the net without. Not "
        "supported when the MACs fall less than that, or when at most 1/3 of the seeds pass the accuracy "
        "test; inconclusive in between."
    )
    minutes = 1.5

    def run(self, ctx: Context) -> Measurement:
        # GoogLeNet's 5x5 branch of module 3a
        direct = nn.Conv2d(192, 32, 5, padding=2)
        reduced = nn.Sequential(nn.Conv2d(192, 16, 1), nn.Conv2d(16, 32, 5, padding=2))
        s_direct, s_reduced = summary(direct, GOOGLENET_INPUT), summary(reduced, GOOGLENET_INPUT)
        branch = {
            "direct 5x5": {"macs": s_direct.total_macs, "params": s_direct.total_params},
            "1x1 -> 5x5": {
                "macs": s_reduced.total_macs,
                "params": s_reduced.total_params,
                "macs_1x1": s_reduced.rows[0].macs,
                "macs_5x5": s_reduced.rows[1].macs,
            },
        }
        by_hand = {
            "direct 5x5": 28 * 28 * 32 * 5 * 5 * 192,
            "1x1 -> 5x5": 28 * 28 * (16 * 192 + 32 * 25 * 16),
        }
        ratio = branch["direct 5x5"]["macs"] / branch["1x1 -> 5x5"]["macs"]

        # small nets on the shapes
        n_train, n_val, size = ctx.size((400, 200, 20), (2000, 500, 20))
        epochs = ctx.size(2, 6)
        data = _vision.shape_silhouettes(n_train, n_val, size)
        nets = {"without 1x1 (naive)": False, "with 1x1 (InceptionV1)": True}
        acc: dict[str, list[float]] = {k: [] for k in nets}
        curves: dict[str, list[list[float]]] = {k: [] for k in nets}
        cost: dict[str, dict[str, int]] = {}
        for seed in ctx.seeds:
            for label, red in nets.items():
                ctx.step(f"seed {seed}: {label}")
                seeded(seed)
                model = _net(red)
                if label not in cost:
                    s = summary(model, (1, 1, size, size))
                    cost[label] = {"macs": s.total_macs, "params": s.total_params}
                hist = _vision.train(model, data, epochs=epochs, seed=seed, lr=3e-3)
                acc[label].append(accuracy(model, data[2], data[3]))
                curves[label].append(hist.val_acc)
        naive, red = acc["without 1x1 (naive)"], acc["with 1x1 (InceptionV1)"]
        numbers: dict[str, Any] = {
            "googlenet_branch": branch,
            "googlenet_branch_by_hand": by_hand,
            "mac_ratio": ratio,
            "net_cost": cost,
            "net_mac_ratio": cost["without 1x1 (naive)"]["macs"] / cost["with 1x1 (InceptionV1)"]["macs"],
            "val_accuracy": acc,
            "val_accuracy_spread": {k: spread(v) for k, v in acc.items()},
            "accuracy_drop": [a - b for a, b in zip(naive, red, strict=True)],
            "val_curves": curves,
            "train_size": n_train,
            "val_size": n_val,
            "image_size": size,
            "epochs": epochs,
        }
        table = [
            {
                "model": "GoogLeNet 3a 5x5 branch, " + label,
                "MACs": f"{v['macs']:,}",
                "params": f"{v['params']:,}",
                "val. accuracy (mean ± std)": "-",
            }
            for label, v in branch.items()
        ] + [
            {
                "model": f"small net {label}",
                "MACs": f"{cost[label]['macs']:,}",
                "params": f"{cost[label]['params']:,}",
                "val. accuracy (mean ± std)": f"{spread(acc[label])['mean']:.3f} ± {spread(acc[label])['std']:.3f}",
            }
            for label in nets
        ]
        key = (
            f"5x5 branch {branch['direct 5x5']['macs'] / 1e6:.1f}M -> {branch['1x1 -> 5x5']['macs'] / 1e6:.1f}M "
            f"MACs ({ratio:.1f}x); accuracy {spread(red)['mean']:.3f} with vs {spread(naive)['mean']:.3f} without"
        )
        return Measurement(numbers=numbers, table=table, key=key, figure=lambda p: _figure(numbers, p))

    def decide(self, numbers: Mapping[str, Any]) -> str:
        if numbers["mac_ratio"] < MAC_RATIO:
            return NOT_SUPPORTED
        return majority([drop <= ACC_TOLERANCE for drop in numbers["accuracy_drop"]])


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import PALETTE, figure, save

    fig, (ax1, ax2) = figure(1, 2, width=4.4, height=3.4)
    branch = numbers["googlenet_branch"]
    labels = list(branch)
    ax1.bar(labels, [branch[k]["macs"] / 1e6 for k in labels], color=PALETTE[:1] + PALETTE[1:2])
    red = branch["1x1 -> 5x5"]
    ax1.bar(["1x1 -> 5x5"], [red["macs_1x1"] / 1e6], color=PALETTE[2], label="of which the 1x1")
    for i, k in enumerate(labels):
        ax1.text(i, branch[k]["macs"] / 1e6, f"{branch[k]['macs'] / 1e6:.1f}M", ha="center", va="bottom")
    ax1.set_ylabel("MACs (millions)")
    ax1.set_title("GoogLeNet 3a, 5x5 branch on 28x28x192")
    ax1.legend()
    for colour, (label, runs) in zip(PALETTE, numbers["val_curves"].items(), strict=False):
        for i, curve in enumerate(runs):
            ax2.plot(
                range(1, len(curve) + 1), curve, color=colour, alpha=0.8, label=label if i == 0 else None
            )
    epochs = numbers["epochs"]
    for colour, final in zip(PALETTE, numbers["val_accuracy"].values(), strict=False):
        ax2.scatter([epochs] * len(final), final, marker="*", s=60, color=colour, edgecolor="black", zorder=3)
    ax2.plot([], [], "k*", label="final, BN re-estimated")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation accuracy")
    ax2.set_title("small Inception nets on the shape silhouettes")
    ax2.set_ylim(0, 1)
    ax2.legend()
    save(fig, path)
