"""``vgg-3x3-vs-5x5``: stacked 3x3 convolutions against 5x5 convolutions of the same receptive field, trained.

VGGNet (Simonyan and Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
section 2.3) replaces every large kernel by a stack of 3x3 kernels: two 3x3 layers see the 5x5 field of
one 5x5 layer with 18C^2 instead of 25C^2 weights, and put a non-linearity between them, which "makes the
decision function more discriminative". ``stacked-3x3`` measures the field on random weights; this
experiment trains both designs.

Method: two nets on the shape silhouettes, alike but for their blocks. A 3x3 stem conv (1 -> 16 channels),
then two stages of 16 channels separated by 2x2 max pooling, global average pooling and a linear layer.
In the 3x3 net every stage holds two 3x3 conv-BN-ReLU layers, in the 5x5 net one 5x5 conv-BN-ReLU layer.
Parameters, MACs and the theoretical receptive field come from the analysis toolkit; held-out accuracy
from training both with the same loop and seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from nnatlas.analysis import count_parameters, summary
from nnatlas.experiments import _vision
from nnatlas.experiments._train import accuracy
from nnatlas.experiments.base import (
    NOT_SUPPORTED,
    Context,
    Experiment,
    Measurement,
    majority,
    register_experiment,
    spread,
)

#: The kernels of each stage; the first stage starts with the shared 3x3 stem conv.
DESIGNS = {"3x3 stacks": ((3, 3, 3), (3, 3)), "5x5": ((3, 5), (5,))}
WIDTH = 16
TOLERANCE = 0.01  # held-out accuracy the 3x3 net may lose and still count as "as accurate"


def _net(design: str, size: int) -> nn.Module:
    return _vision.small_cnn(stages=DESIGNS[design], widths=(WIDTH, WIDTH), input_size=size)


@register_experiment
class Vgg3x3Vs5x5(Experiment):
    name = "vgg-3x3-vs-5x5"
    title = "stacked 3x3 convs match 5x5 convs' field with fewer weights and more depth, trained on shapes"
    section = "VGGNet"
    claim_zh = (
        "用多个 $3*3$ 小卷积核代替之前的 $5*5$、$7*7$ 等大卷积核，这样可以在更少的参数量、更小的计算量下，"
        "获得同样的感受野以及更大的网络深度。"
    )
    claim_en = (
        "Several small 3x3 kernels replace the earlier large 5x5 and 7x7 kernels: the same receptive field "
        "and a deeper network with fewer parameters and less computation. Measured on trained nets: "
        "parameters, MACs, receptive field and depth of a net of stacked 3x3 convs and of the same net "
        "with one 5x5 conv in place of every pair, and their held-out accuracy (VGG's further argument: "
        "the extra non-linearities make the stack at least as good a classifier)."
    )
    method = (
        "Two nets on 20x20 shape silhouettes (2000 training, 500 held-out scenes, 4 classes): a 3x3 stem "
        "conv 1 -> 16, two stages of 16 channels with 2x2 max pooling between them, global average pooling, "
        "a linear layer. Each stage of the 3x3 net holds two 3x3 conv-BN-ReLU layers, each stage of the "
        "5x5 net one 5x5 conv-BN-ReLU layer. Parameters, MACs (one image) and theoretical receptive field "
        "from nnatlas.analysis; 8 epochs of Adam (lr 2e-3, batch 64), batch-norm statistics re-estimated "
        "on the training set, then held-out and training accuracy, per seed."
    )
    criterion = (
        "Supported when the 3x3 net has fewer parameters and fewer MACs than the 5x5 net, the same "
        "receptive field, more conv layers, AND in at least 2 of 3 seeds a held-out accuracy no more than "
        "1 point below the 5x5 net's. Not supported when any of the counts fails or the accuracy condition "
        "holds in at most 1 of 3 seeds; inconclusive otherwise."
    )
    minutes = 0.9

    def run(self, ctx: Context) -> Measurement:
        epochs = ctx.size(2, 8)
        size = ctx.size(16, 20)
        data = _vision.shape_silhouettes(ctx.size(400, 2000), ctx.size(200, 500), size)
        x, y, xv, yv = data
        numbers: dict[str, Any] = {"epochs": epochs, "image_side": size, "designs": {}}
        for design, stages in DESIGNS.items():
            s = summary(_net(design, size), (1, 1, size, size))
            numbers["designs"][design] = {
                "kernels": [list(k) for k in stages],
                "params": s.total_params,
                "macs": s.total_macs,
                "receptive_field": int(s.receptive_field.final.size[0]),
                "conv_layers": sum(len(k) for k in stages),
                "val_acc": [],
                "train_acc": [],
                "val_curve": [],
            }
        for seed in ctx.seeds:
            for design, res in numbers["designs"].items():
                ctx.step(f"seed {seed}: {design}")
                model = _vision.seeded_model(seed, lambda design=design: _net(design, size))
                assert count_parameters(model) == res["params"]
                hist = _vision.train(model, data, epochs=epochs, seed=seed)
                res["val_acc"].append(accuracy(model, xv, yv))
                res["train_acc"].append(accuracy(model, x, y))
                res["val_curve"].append(hist.val_acc)
        for res in numbers["designs"].values():
            res["val_acc_spread"] = spread(res["val_acc"])
            res["train_acc_spread"] = spread(res["train_acc"])
        a, b = numbers["designs"]["3x3 stacks"], numbers["designs"]["5x5"]
        numbers["param_ratio"] = a["params"] / b["params"]
        numbers["mac_ratio"] = a["macs"] / b["macs"]

        table = [
            {
                "net": design,
                "kernels per stage": " | ".join("+".join(f"{k}x{k}" for k in ks) for ks in res["kernels"]),
                "conv layers": res["conv_layers"],
                "receptive field (px)": res["receptive_field"],
                "parameters": res["params"],
                "MACs": res["macs"],
                "held-out acc": f"{res['val_acc_spread']['mean']:.3f} ± {res['val_acc_spread']['std']:.3f}",
                "train acc": f"{res['train_acc_spread']['mean']:.3f}",
            }
            for design, res in numbers["designs"].items()
        ]
        key = (
            f"field {a['receptive_field']} px both; {a['params']:,} vs {b['params']:,} params, held-out "
            f"{a['val_acc_spread']['mean']:.3f} vs {b['val_acc_spread']['mean']:.3f}"
        )
        notes = [
            "The MACs count the per-image multiply-accumulates of the forward pass; one MAC is two FLOPs.",
            "The curves in the figure use the running batch-norm statistics of training; the final numbers "
            "use statistics re-estimated on the training set after training.",
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, figure=lambda p: _figure(numbers, p), notes=notes
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        a, b = numbers["designs"]["3x3 stacks"], numbers["designs"]["5x5"]
        counts = (
            a["params"] < b["params"]
            and a["macs"] < b["macs"]
            and a["receptive_field"] == b["receptive_field"]
            and a["conv_layers"] > b["conv_layers"]
        )
        if not counts:
            return NOT_SUPPORTED
        return majority([va >= vb - TOLERANCE for va, vb in zip(a["val_acc"], b["val_acc"], strict=True)])


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import PALETTE, figure, save

    fig, (ax_curve, ax_bar) = figure(1, 2, width=4.2, height=3.2)
    designs = numbers["designs"]
    for (design, res), colour in zip(designs.items(), PALETTE, strict=False):
        epochs = list(range(1, len(res["val_curve"][0]) + 1))
        label = f"{design}: {res['params']:,} params, {res['conv_layers']} convs"
        _vision.band(ax_curve, epochs, res["val_curve"], label=label, color=colour)
    ax_curve.set_xlabel("epoch")
    ax_curve.set_ylabel("held-out accuracy (running BN statistics)")
    ax_curve.set_ylim(0, 1.02)
    ax_curve.legend(loc="lower right")
    ax_curve.set_title("training")
    names = list(designs)
    params = [designs[d]["params"] / 1000 for d in names]
    accs = [designs[d]["val_acc_spread"]["mean"] for d in names]
    errs = [designs[d]["val_acc_spread"]["std"] for d in names]
    bars = ax_bar.bar(names, params, color=PALETTE[: len(names)], alpha=0.6)
    ax_bar.set_ylabel("parameters (thousands)")
    ax_bar.set_ylim(0, max(params) * 1.35)
    ax_acc = ax_bar.twinx()
    ax_acc.errorbar(names, accs, yerr=errs, fmt="D", color="black", capsize=4, label="held-out accuracy")
    ax_acc.set_ylim(0, 1.35)
    ax_acc.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax_acc.set_ylabel("held-out accuracy (after training)")
    ax_acc.legend(loc="lower right")
    field = designs[names[0]]["receptive_field"]
    ax_bar.set_title(f"same receptive field ({field} px)")
    ax_bar.bar_label(bars, labels=[f"{p:.1f}k" for p in params])
    save(fig, path, title="stacked 3x3 vs 5x5 convolutions on shape silhouettes (mean, range over seeds)")
