"""``gap-vs-fc``: a global-average-pooling head against a flatten + fully connected head.

Network In Network (Lin, Chen and Yan 2014, section 3.2) replaces the fully connected classifier by global
average pooling of the last feature maps: the pooling has no parameters, so it cannot overfit, and it sums
out the spatial information, so the prediction is more robust to spatial translations of the input.

Method: one conv trunk (three 3x3 conv-BN-ReLU stages of 16, 32, 32 channels with 2x2 max pooling between
them) under two heads: global average pooling and one linear layer, or flatten and two linear layers
(hidden 64, ReLU) as in the classic CNN. Both are trained on the shape silhouettes with the same loop and
seeds. Measured: parameters of each head, training and held-out accuracy and loss after training (their
gap), and the share of held-out predictions that change when the image is moved by 1-4 pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnatlas.analysis import count_parameters
from nnatlas.experiments import _vision
from nnatlas.experiments._train import accuracy
from nnatlas.experiments.base import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    Context,
    Experiment,
    Measurement,
    majority,
    register_experiment,
    spread,
)

HEADS = ("gap", "fc")
LABELS = {"gap": "global average pooling + linear", "fc": "flatten + FC-ReLU-FC"}


def _head(model: nn.Sequential) -> nn.Sequential:
    """The classifier of a :func:`~nnatlas.experiments._vision.small_cnn`: from its global pooling or
    flatten layer on."""
    start = next(i for i, m in enumerate(model) if isinstance(m, (nn.AdaptiveAvgPool2d, nn.Flatten)))
    return model[start:]


@torch.no_grad()
def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return F.cross_entropy(model(x), y).item()


@register_experiment
class GapVsFc(Experiment):
    name = "gap-vs-fc"
    title = "a global-average-pooling head has no weights to overfit and is steadier under input shifts"
    section = "全局平均池化"
    claim_zh = "全局平均池化层不需要参数，避免在该层产生过拟合。全局平均池化对空间信息进行求和，对输入的空间变化的鲁棒性更强。"
    claim_en = (
        "The global average pooling layer needs no parameters, which avoids overfitting in that layer; it "
        "sums out the spatial information and so is more robust to spatial changes of the input. Measured: "
        "the head's parameters, the gap between training and held-out accuracy, and the share of held-out "
        "predictions that change under 1-4 pixel shifts, for a GAP head and a flatten + FC head on the "
        "same trunk."
    )
    method = (
        "Trunk: three 3x3 conv-BN-ReLU stages (16, 32, 32 channels) with 2x2 max pooling between them, on "
        "20x20 shape silhouettes (2000 training, 500 held-out scenes, 4 classes). Heads: global average "
        "pooling + linear (32 -> 4), or flatten (32x5x5) + linear 800 -> 64 + ReLU + linear 64 -> 4. "
        "8 epochs of Adam (lr 2e-3, batch 64), batch-norm statistics re-estimated on the training set, per "
        "seed; then training and held-out accuracy and cross-entropy (all images, eval mode), and the "
        "share of held-out images whose predicted class changes when moved by 1, 2, 3, 4 pixels (mean over "
        "right, left, down, up)."
    )
    criterion = (
        "Two parts, each judged over the seeds by majority (at least 2 of 3 seeds: holds; at most 1 of 3: "
        "fails). Overfitting: the GAP net's train-minus-held-out accuracy gap is smaller than the FC net's. "
        "Robustness: the GAP net's share of changed predictions, averaged over the 1-4 pixel shifts, is "
        "smaller than the FC net's. Supported when the GAP head has fewer parameters and both parts hold; "
        "not supported when its head is not smaller or both parts fail; inconclusive otherwise."
    )
    minutes = 0.8

    def run(self, ctx: Context) -> Measurement:
        epochs = ctx.size(2, 8)
        size = ctx.size(16, 20)
        data = _vision.shape_silhouettes(ctx.size(400, 2000), ctx.size(200, 500), size)
        x, y, xv, yv = data
        numbers: dict[str, Any] = {"epochs": epochs, "image_side": size, "shifts": list(_vision.SHIFTS)}
        for head in HEADS:
            model = _vision.small_cnn(head=head, input_size=size)
            numbers[head] = {
                "params": count_parameters(model),
                "head_params": count_parameters(_head(model)),
                **{k: [] for k in ("train_acc", "val_acc", "acc_gap", "train_loss", "val_loss", "loss_gap")},
                "changed": [],
                "mean_changed": [],
            }
        for seed in ctx.seeds:
            for head in HEADS:
                ctx.step(f"seed {seed}: {head} head")
                res = numbers[head]
                model = _vision.seeded_model(
                    seed, lambda head=head: _vision.small_cnn(head=head, input_size=size)
                )
                _vision.train(model, data, epochs=epochs, seed=seed)
                tr, va = accuracy(model, x, y), accuracy(model, xv, yv)
                tl, vl = _loss(model, x, y), _loss(model, xv, yv)
                changed = _vision.prediction_change(model, xv)
                res["train_acc"].append(tr)
                res["val_acc"].append(va)
                res["acc_gap"].append(tr - va)
                res["train_loss"].append(tl)
                res["val_loss"].append(vl)
                res["loss_gap"].append(vl - tl)
                res["changed"].append(changed)
                res["mean_changed"].append(_vision.mean(changed))
        for head in HEADS:
            res = numbers[head]
            for k in ("val_acc", "acc_gap", "loss_gap", "mean_changed"):
                res[f"{k}_spread"] = spread(res[k])

        def pm(s: Mapping[str, float]) -> str:
            return f"{s['mean']:.3f} ± {s['std']:.3f}"

        table = [
            {
                "head": LABELS[head],
                "head parameters": numbers[head]["head_params"],
                "net parameters": numbers[head]["params"],
                "train acc": f"{spread(numbers[head]['train_acc'])['mean']:.3f}",
                "held-out acc": pm(numbers[head]["val_acc_spread"]),
                "acc gap (train - held-out)": pm(numbers[head]["acc_gap_spread"]),
                "loss gap (held-out - train)": pm(numbers[head]["loss_gap_spread"]),
                "predictions changed, 1-4 px": pm(numbers[head]["mean_changed_spread"]),
            }
            for head in HEADS
        ]
        g, f = numbers["gap"], numbers["fc"]
        key = (
            f"head {g['head_params']} vs {f['head_params']:,} params; acc gap "
            f"{g['acc_gap_spread']['mean']:.3f} vs {f['acc_gap_spread']['mean']:.3f}; changed under shifts "
            f"{g['mean_changed_spread']['mean']:.3f} vs {f['mean_changed_spread']['mean']:.3f}"
        )
        n = len(ctx.seeds)
        fewer_gap = sum(a < b for a, b in zip(g["acc_gap"], f["acc_gap"], strict=True))
        fewer_change = sum(a < b for a, b in zip(g["mean_changed"], f["mean_changed"], strict=True))
        notes = [
            f"The GAP net's train - held-out accuracy gap was the smaller in {fewer_gap} of {n} seeds, its "
            f"share of changed predictions under shifts the smaller in {fewer_change} of {n} seeds.",
            "Both nets share the trunk's 2x2 max pooling and batch norm; the comparison isolates the head.",
            "Accuracy and loss are measured on every image in eval mode after training, not on the "
            "training batches as they were seen.",
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, figure=lambda p: _figure(numbers, p), notes=notes
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        g, f = numbers["gap"], numbers["fc"]
        if g["head_params"] >= f["head_params"]:
            return NOT_SUPPORTED
        overfit = majority([a < b for a, b in zip(g["acc_gap"], f["acc_gap"], strict=True)])
        robust = majority([a < b for a, b in zip(g["mean_changed"], f["mean_changed"], strict=True)])
        if overfit == robust == SUPPORTED:
            return SUPPORTED
        if overfit == robust == NOT_SUPPORTED:
            return NOT_SUPPORTED
        return INCONCLUSIVE


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import PALETTE, figure, save

    fig, (ax_shift, ax_acc) = figure(1, 2, width=4.2, height=3.2)
    xs = numbers["shifts"]
    for head, colour in zip(HEADS, PALETTE, strict=False):
        res = numbers[head]
        label = f"{LABELS[head]} ({res['head_params']:,} head params)"
        _vision.band(ax_shift, xs, res["changed"], label=label, color=colour)
    ax_shift.set_xlabel("shift of the held-out images (pixels)")
    ax_shift.set_ylabel("share of predictions changed")
    ax_shift.set_xticks(xs)
    ax_shift.set_ylim(bottom=0)
    ax_shift.legend(loc="lower right", fontsize=7)
    ax_shift.set_title("prediction change under translation")
    width = 0.38
    for i, (head, colour) in enumerate(zip(HEADS, PALETTE, strict=False)):
        res = numbers[head]
        means = [spread(res["train_acc"])["mean"], res["val_acc_spread"]["mean"]]
        stds = [spread(res["train_acc"])["std"], res["val_acc_spread"]["std"]]
        pos = [j + (i - 0.5) * width for j in range(2)]
        ax_acc.bar(pos, means, width, yerr=stds, color=colour, capsize=3, label=LABELS[head])
    ax_acc.set_xticks([0, 1], ["training", "held-out"])
    ax_acc.set_ylabel("accuracy")
    lows = [min(numbers[h]["val_acc"]) for h in HEADS]
    ax_acc.set_ylim(max(0.0, min(lows) - 0.1), 1.06)
    ax_acc.set_yticks([t for t in ax_acc.get_yticks() if t <= 1.0])
    ax_acc.legend(loc="upper right", fontsize=7)
    ax_acc.set_title("train / held-out gap")
    save(fig, path, title="global average pooling vs fully connected head (mean, range / std over seeds)")
