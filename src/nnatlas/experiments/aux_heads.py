"""``aux-heads``: auxiliary classifiers on intermediate layers send more gradient to the early layers of a
deep plain net, and with it should help it train.

Szegedy et al. 2015 ("Going Deeper with Convolutions", GoogLeNet) attach two auxiliary classifiers to
intermediate Inception modules and add their losses, weighted by 0.3, to the main loss, "to combat the
vanishing gradient problem". Szegedy et al. 2016 (Inception-v3) later found that they do not speed up
early training and act mostly as regularisers.

Method: a deep plain conv net without batch norm (Glorot initialisation, as in networks of that time) with
and without two auxiliary heads (global average pool + linear) after the first and second thirds of its
convs. The analysis toolkit's ``gradient_flow`` gives every layer's gradient norm at initialisation under
the training loss (main + 0.3 x each auxiliary loss); the first conv's gradient norm is also recorded at
every training step; the main head's validation accuracy is measured after the same training budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from nnatlas.analysis import gradient_flow
from nnatlas.experiments._train import digits, fit
from nnatlas.experiments.base import (
    Context,
    Experiment,
    Measurement,
    majority,
    register_experiment,
    seeded,
    spread,
)

AUX_WEIGHT = 0.3
WIDTH = 16
WINDOW = 5  # steps averaged per point of the stored gradient curves


class _PlainNet(nn.Module):
    """``(B, 1, 8, 8) -> (B, 10)``: ``depth`` 3x3 conv + ReLU layers in three equal stages with a 2x2 max
    pool between them, global average pooling and a linear head. With ``aux``, an auxiliary head (global
    average pool + linear) follows the first and the second stage, and in training mode ``forward`` returns
    ``(main, [aux1, aux2])`` as torchvision's GoogLeNet does; in eval mode only the main logits."""

    def __init__(self, depth: int, *, aux: bool) -> None:
        super().__init__()
        if depth % 3 != 0:
            raise ValueError(f"depth must be a multiple of 3; got {depth}")
        self.convs = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else WIDTH, WIDTH, 3, padding=1) for i in range(depth)
        )
        self.stage = depth // 3
        self.aux = nn.ModuleList(nn.Linear(WIDTH, 10) for _ in range(2)) if aux else None
        self.head = nn.Linear(WIDTH, 10)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        side: list[Tensor] = []
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if (i + 1) % self.stage == 0 and i + 1 < len(self.convs):
                if self.aux is not None:
                    side.append(self.aux[len(side)](x.mean(dim=(2, 3))))  # (B, 10)
                x = F.max_pool2d(x, 2)  # 8 -> 4 -> 2 pixels
        main = self.head(x.mean(dim=(2, 3)))  # (B, 10)
        return (main, side) if self.aux is not None and self.training else main


def _loss(out: Tensor | tuple[Tensor, list[Tensor]], y: Tensor) -> Tensor:
    """Cross-entropy of the main logits plus AUX_WEIGHT x that of each auxiliary head."""
    if isinstance(out, Tensor):
        return F.cross_entropy(out, y)
    main, side = out
    return F.cross_entropy(main, y) + AUX_WEIGHT * sum(F.cross_entropy(s, y) for s in side)


def _fit_loss(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    out = model(x)
    return _loss(out, y), out if isinstance(out, Tensor) else out[0]


@register_experiment
class AuxHeads(Experiment):
    name = "aux-heads"
    title = "auxiliary classifiers raise the early layers' gradient of a deep plain net and its accuracy"
    section = "inception-v1"
    claim_zh = (
        "从网络中间层拉出多条支线，连接辅助分类器，用于计算损失并进行误差反向传播，以缓解梯度消失问题。"
    )
    claim_en = (
        "Branches drawn from intermediate layers feed auxiliary classifiers whose losses are back-propagated "
        "too, to mitigate vanishing gradients. Measured: the gradient norm of the first conv and the main "
        "head's validation accuracy of a deep plain net with and without two auxiliary heads weighted 0.3 "
        "(Szegedy et al. 2015)."
    )
    method = (
        "A plain conv net of 12 3x3 convs (16 channels, ReLU, no batch norm, Glorot-normal weights, zero "
        "biases) in three stages of 4 with 2x2 max pooling between them, global average pooling and a linear "
        "head, on the embedded 8x8 digits (1437 training images, 10 classes). The auxiliary variant adds two "
        "heads (global average pool + linear) after stages 1 and 2 and trains on main loss + 0.3 x each "
        "auxiliary loss; the same seed gives both variants the same conv weights. Per seed: gradient_flow on "
        "256 training images at initialisation under each variant's training loss (the first conv's norm is "
        "the early-layer gradient), the first conv's gradient norm at every training step, and the main "
        "head's validation accuracy after 8 epochs of Adam (lr 1e-3, batch 64); Adam because SGD (momentum "
        "0.9) left both variants at chance within this budget. Under --quick: 6 convs, 2 epochs."
    )
    criterion = (
        "Per seed, the claim holds when (a) the first conv's gradient norm at initialisation is at least 2x "
        "larger with the auxiliary heads than without, AND (b) the main head's final validation accuracy is "
        "higher with them than without. Supported when this holds in at least 2/3 of the seeds, not "
        "supported when in at most 1/3, inconclusive in between."
    )
    minutes = 0.5

    def run(self, ctx: Context) -> Measurement:
        x, y, xv, yv = digits()
        data = (x, y, xv, yv)
        depth = ctx.size(6, 12)
        epochs = ctx.size(2, 8)
        variants = ("without aux", "with aux")
        per_layer: dict[str, list[list[float]]] = {v: [] for v in variants}
        first: dict[str, list[float]] = {v: [] for v in variants}
        during: dict[str, list[list[float]]] = {v: [] for v in variants}
        val: dict[str, list[float]] = {v: [] for v in variants}
        for seed in ctx.seeds:
            for variant in variants:
                ctx.step(f"seed {seed}: {variant}")
                seeded(seed)
                model = _PlainNet(depth, aux=variant == "with aux")
                flow = gradient_flow(model, x[:256], _loss, target=y[:256])
                convs = [r.grad_norm for r in flow.rows if r.type == "Conv2d"]
                per_layer[variant].append(convs)
                first[variant].append(convs[0])
                norms: list[float] = []

                def record(m: nn.Module, step: int, norms: list[float] = norms) -> None:
                    norms.append(float(m.convs[0].weight.grad.norm()))

                hist = fit(model, data, epochs=epochs, lr=1e-3, seed=seed, loss_fn=_fit_loss, on_step=record)
                if hist.diverged:
                    raise RuntimeError(f"{variant} diverged (seed {seed})")
                during[variant].append(
                    [
                        sum(norms[i : i + WINDOW]) / len(norms[i : i + WINDOW])
                        for i in range(0, len(norms), WINDOW)
                    ]
                )
                val[variant].append(hist.val_acc[-1])
        ratio = [a / b for a, b in zip(first["with aux"], first["without aux"], strict=True)]
        numbers: dict[str, Any] = {
            "depth": depth,
            "epochs": epochs,
            "aux_weight": AUX_WEIGHT,
            "window_steps": WINDOW,
            "conv_grad_norm_per_layer_at_init": per_layer,
            "first_conv_grad_norm_at_init": first,
            "first_conv_grad_ratio_aux_over_plain": ratio,
            "first_conv_grad_ratio_spread": spread(ratio),
            "first_conv_grad_norm_during_training": during,
            "val_accuracy": val,
            "val_accuracy_spread": {v: spread(a) for v, a in val.items()},
        }
        table = [
            {
                "variant": v,
                "first-conv grad norm at init (mean)": f"{spread(first[v])['mean']:.3g}",
                "first-conv grad norm in training (mean)": f"{spread(sum(r) / len(r) for r in during[v])['mean']:.3g}",
                "val accuracy (mean +- std)": f"{spread(val[v])['mean']:.3f} +- {spread(val[v])['std']:.3f}",
                "val accuracy per seed": ", ".join(f"{a:.3f}" for a in val[v]),
            }
            for v in variants
        ]
        key = (
            f"first-conv gradient x{spread(ratio)['mean']:.3g} with aux heads; val acc "
            f"{spread(val['with aux'])['mean']:.3f} with vs {spread(val['without aux'])['mean']:.3f} without"
        )
        better = sum(a > b for a, b in zip(val["with aux"], val["without aux"], strict=True))
        notes = [
            f"The auxiliary losses raise the first conv's gradient {spread(ratio)['mean']:.3g}x at "
            f"initialisation; the main head's accuracy is higher with them in {better} of {len(ratio)} seeds. "
            "More gradient reaching the early layers comes from the auxiliary objectives, which need not "
            "agree with what the main head needs from those layers.",
            "Szegedy et al. 2016 (Inception-v3, section 4) report the same: the auxiliary classifiers did not "
            "speed up early training and acted mainly as regularisers late in training.",
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, notes=notes, figure=lambda p: _figure(numbers, p)
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        ratio, val = numbers["first_conv_grad_ratio_aux_over_plain"], numbers["val_accuracy"]
        passes = [
            r >= 2 and a > b for r, a, b in zip(ratio, val["with aux"], val["without aux"], strict=True)
        ]
        return majority(passes)


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import PALETTE, figure, save

    fig, (a, b, c) = figure(1, 3, width=4.0, height=3.4)
    variants = ("without aux", "with aux")
    colours = (PALETTE[3], PALETTE[0])
    for v, colour in zip(variants, colours, strict=True):
        rows = numbers["conv_grad_norm_per_layer_at_init"][v]
        for i, r in enumerate(rows):
            a.plot(
                range(1, len(r) + 1),
                r,
                color=colour,
                marker="o",
                ms=3,
                alpha=0.7,
                label=v if i == 0 else None,
            )
        window = numbers["window_steps"]
        for i, r in enumerate(numbers["first_conv_grad_norm_during_training"][v]):
            b.plot(
                [window * (k + 1) for k in range(len(r))],
                r,
                color=colour,
                alpha=0.7,
                label=v if i == 0 else None,
            )
    a.set_yscale("log")
    a.set_xlabel("conv layer (input side left)")
    a.set_ylabel("gradient norm at init")
    a.legend()
    b.set_yscale("log")
    b.set_xlabel("training step (batch 64)")
    b.set_ylabel(f"first-conv gradient norm (mean of {window} steps)")
    b.legend()
    spreads = numbers["val_accuracy_spread"]
    c.bar(
        [0, 1],
        [spreads[v]["mean"] for v in variants],
        yerr=[spreads[v]["std"] for v in variants],
        color=colours,
        capsize=3,
    )
    for i, v in enumerate(variants):
        c.plot([i] * len(numbers["val_accuracy"][v]), numbers["val_accuracy"][v], "k.", ms=4)
    c.set_xticks([0, 1], list(variants))
    c.set_ylabel(f"main-head validation accuracy after {numbers['epochs']} epochs")
    c.set_ylim(0, 1)
    save(
        fig,
        path,
        title=f"auxiliary heads (weight {numbers['aux_weight']:g}) on a {numbers['depth']}-conv plain net",
    )
