"""``conv-vs-fc``: local connections and shared weights; a conv net against a fully connected net.

The notes contrast the fully connected layer (every output node joined to every input node) with the
convolution: local connections, shared weights (the same kernel at every position), and an output that
keeps the image's spatial structure where flattening destroys it (LeCun et al. 1998, "Gradient-based
learning applied to document recognition").

Method: first the weights one layer needs to turn the image into a 16-channel map of the same size, as a
3x3 convolution and as a fully connected layer. Then, on two embedded data sets (the shape silhouettes of
20x20 pixels and the 8x8 digits), a small conv net (three 3x3 conv-BN-ReLU stages of 16, 32, 32 channels,
2x2 max pooling, global average pooling, one linear layer) and a multilayer perceptron of about the same
number of parameters (flatten, two hidden layers with batch norm and ReLU) are trained with the same loop
and seeds; held-out accuracy is measured on the images as they are and moved by 1-4 pixels (four directions
each, edge pixels repeated).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from nnatlas.analysis import count_parameters
from nnatlas.experiments import _vision
from nnatlas.experiments._train import accuracy, digits
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

NETS = ("conv", "mlp")
PARAM_TOLERANCE = 0.10  # the two nets' parameter counts may differ by at most this share


def _mlp(inputs: int, hidden: int, classes: int) -> nn.Sequential:
    """Flatten, then two hidden layers of ``hidden`` units (linear-BN-ReLU) and a linear classifier."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(inputs, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, classes),
    )


def _matched_hidden(target: int, inputs: int, classes: int) -> int:
    """The hidden width ``h`` whose :func:`_mlp` has the parameter count closest to ``target``: it holds
    ``inputs * h + h * h + h * classes`` weights, ``2h + 2h`` batch-norm parameters and ``classes`` biases."""

    def params(h: int) -> int:
        return h * h + h * (inputs + 4 + classes) + classes

    return min(range(1, 1024), key=lambda h: abs(params(h) - target))


@register_experiment
class ConvVsFc(Experiment):
    name = "conv-vs-fc"
    title = "a conv net beats a fully connected net of the same size, and keeps its accuracy under shifts"
    section = "卷积与全连接"
    claim_zh = (
        "权值共享：卷积核的滑动窗机制，使得输出层上不同位置的节点与输入层的连接权值都是一样的（即卷积核参数）。"
        "而在全连接层中，不同节点的连接权值都是不同的。"
        "输入/输出数据的结构化：全连接（将图片展平成一维数组）会破坏图片的空间信息，而卷积运算可以保留图片的空间信息。"
    )
    claim_en = (
        "Weight sharing: the sliding kernel gives every output position the same weights, where a fully "
        "connected layer has different weights for every node; flattening the image for a fully connected "
        "layer destroys its spatial information, which a convolution keeps. Measured: the weights of one "
        "layer each way, and the held-out accuracy, as they are and under 1-4 pixel shifts, of a conv net "
        "and a fully connected net of about the same parameter count."
    )
    method = (
        "One layer: the weights that map a 1x20x20 image to a 16x20x20 map as a 3x3 convolution and as a "
        "fully connected layer. Trained nets, on the 20x20 shape silhouettes (2000 training, 500 held-out "
        "scenes, 4 classes) and on the 8x8 digits (1437 / 360, 10 classes): a conv net (3x3 conv-BN-ReLU "
        "stages of 16, 32, 32 channels, 2x2 max pooling, global average pooling, linear) and an MLP "
        "(flatten, two hidden linear-BN-ReLU layers, linear) whose hidden width is chosen to match the conv "
        "net's parameter count; 8 epochs of Adam (lr 2e-3, batch 64), batch-norm statistics re-estimated "
        "on the training set, per seed. Held-out accuracy on the images as they are and moved by 1, 2, 3 "
        "and 4 pixels (mean over right, left, down, up)."
    )
    criterion = (
        "On each data set, per seed: the conv net passes when its held-out accuracy is higher than the "
        "MLP's AND its accuracy averaged over the 1-4 pixel shifts is higher than the MLP's. A data set "
        "supports the claim when the conv net passes in at least 2 of 3 seeds (majority), refutes it when "
        "it passes in at most 1 of 3. Supported when both data sets support it, not supported when either "
        "refutes it, otherwise inconclusive; inconclusive as well when the two nets' parameter counts "
        "differ by more than 10%."
    )
    minutes = 0.7

    def run(self, ctx: Context) -> Measurement:
        epochs = ctx.size(2, 8)
        size = ctx.size(16, 20)
        sets = {
            "shapes": (_vision.shape_silhouettes(ctx.size(400, 2000), ctx.size(200, 500), size), size, 4),
            "digits": (digits(), 8, 10),
        }
        conv_w = count_parameters(nn.Conv2d(1, 16, 3, padding=1))
        fc_w = count_parameters(nn.Linear(20 * 20, 16 * 20 * 20))
        numbers: dict[str, Any] = {
            "one_layer": {"conv3x3_params": conv_w, "fully_connected_params": fc_w, "ratio": fc_w / conv_w},
            "shifts": list(_vision.SHIFTS),
            "epochs": epochs,
        }
        for dname, (data, side, classes) in sets.items():
            x, y, xv, yv = data

            def build_conv(side: int = side, classes: int = classes) -> nn.Module:
                return _vision.small_cnn(num_classes=classes, input_size=side)

            target = count_parameters(build_conv())
            hidden = _matched_hidden(target, side * side, classes)

            def build_mlp(side: int = side, classes: int = classes, hidden: int = hidden) -> nn.Module:
                return _mlp(side * side, hidden, classes)

            builds = {"conv": build_conv, "mlp": build_mlp}
            res: dict[str, Any] = {
                "params": {k: count_parameters(b()) for k, b in builds.items()},
                "mlp_hidden": hidden,
                "image_side": side,
                "val_acc": {k: [] for k in NETS},
                "train_acc": {k: [] for k in NETS},
                "shifted_acc": {k: [] for k in NETS},
                "mean_shifted_acc": {k: [] for k in NETS},
            }
            for seed in ctx.seeds:
                for net, build in builds.items():
                    ctx.step(f"{dname}, seed {seed}: {net}")
                    model = _vision.seeded_model(seed, build)
                    _vision.train(model, data, epochs=epochs, seed=seed)
                    shifted = _vision.shifted_accuracy(model, xv, yv)
                    res["val_acc"][net].append(accuracy(model, xv, yv))
                    res["train_acc"][net].append(accuracy(model, x, y))
                    res["shifted_acc"][net].append(shifted)
                    res["mean_shifted_acc"][net].append(_vision.mean(shifted))
            res["val_acc_spread"] = {k: spread(v) for k, v in res["val_acc"].items()}
            res["mean_shifted_acc_spread"] = {k: spread(v) for k, v in res["mean_shifted_acc"].items()}
            numbers[dname] = res

        table = [
            {
                "data": "one layer, 1x20x20 -> 16x20x20",
                "net": "3x3 conv layer" if net == "conv" else "fully connected layer",
                "parameters": conv_w if net == "conv" else fc_w,
                "held-out acc": "-",
                "acc, 1-4 px shifts": "-",
                "train acc": "-",
            }
            for net in NETS
        ]
        for dname in sets:
            res = numbers[dname]
            for net in NETS:
                v, s = res["val_acc_spread"][net], res["mean_shifted_acc_spread"][net]
                table.append(
                    {
                        "data": dname,
                        "net": "conv net" if net == "conv" else "MLP",
                        "parameters": res["params"][net],
                        "held-out acc": f"{v['mean']:.3f} ± {v['std']:.3f}",
                        "acc, 1-4 px shifts": f"{s['mean']:.3f} ± {s['std']:.3f}",
                        "train acc": f"{spread(res['train_acc'][net])['mean']:.3f}",
                    }
                )
        sh = numbers["shapes"]
        key = (
            f"shapes: conv {sh['val_acc_spread']['conv']['mean']:.3f} vs MLP "
            f"{sh['val_acc_spread']['mlp']['mean']:.3f} held-out at {sh['params']['conv']:,} vs "
            f"{sh['params']['mlp']:,} params; one layer {conv_w} vs {fc_w:,} weights"
        )
        notes = [
            "The shape scenes are reduced to one-channel silhouettes (distance to the background colour), "
            "since their class does not depend on colour; see nnatlas.experiments._vision.",
            "A shift of 4 pixels moves an 8x8 digit by half its width: on the digits both nets fall towards "
            "chance at large shifts, and the comparison rests mostly on the 1-2 pixel shifts.",
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, figure=lambda p: _figure(numbers, p), notes=notes
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        verdicts = []
        for dname in ("shapes", "digits"):
            res = numbers[dname]
            p = res["params"]
            if abs(p["conv"] - p["mlp"]) > PARAM_TOLERANCE * p["conv"]:
                return INCONCLUSIVE
            passes = [
                acc_c > acc_m and sh_c > sh_m
                for acc_c, acc_m, sh_c, sh_m in zip(
                    res["val_acc"]["conv"],
                    res["val_acc"]["mlp"],
                    res["mean_shifted_acc"]["conv"],
                    res["mean_shifted_acc"]["mlp"],
                    strict=True,
                )
            ]
            verdicts.append(majority(passes))
        if all(v == SUPPORTED for v in verdicts):
            return SUPPORTED
        if NOT_SUPPORTED in verdicts:
            return NOT_SUPPORTED
        return INCONCLUSIVE


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import PALETTE, figure, save

    fig, axes = figure(1, 2, width=4.2, height=3.2)
    xs = [0, *numbers["shifts"]]
    for ax, dname in zip(axes, ("shapes", "digits"), strict=True):
        res = numbers[dname]
        for net, colour in zip(NETS, PALETTE, strict=False):
            runs = [[v, *s] for v, s in zip(res["val_acc"][net], res["shifted_acc"][net], strict=True)]
            label = f"{'conv net' if net == 'conv' else 'MLP'} ({res['params'][net]:,} params)"
            _vision.band(ax, xs, runs, label=label, color=colour)
        side = res["image_side"]
        ax.set_title(f"{dname} ({side}x{side} px)")
        ax.set_xlabel("shift of the held-out images (pixels)")
        ax.set_ylabel("held-out accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left")
    save(fig, path, title="conv net vs fully connected net of the same size (mean, range over seeds)")
