"""``pooling``: max pooling, average pooling and strided convolutions as the downsampling of a CNN.

The notes describe max pooling (each window is represented by its largest value) in the typical CNN
structure conv -> pool -> conv -> pool -> flatten -> fully connected. The usual argument for pooling is a
little robustness to small shifts of the input (LeCun et al. 1998; Scherer, Mueller and Behnke 2010,
"Evaluation of Pooling Operations in Convolutional Architectures for Object Recognition"); Springenberg et
al. 2015 ("Striving for Simplicity: The All Convolutional Net") replace pooling by strided convolutions,
and Zhang 2019 ("Making Convolutional Networks Shift-Invariant Again") shows that none of them is truly
shift-invariant.

Method: three nets alike but for their downsampling, on the shape silhouettes: two stages of two 3x3
conv-BN-ReLU layers and a third of one, each of the first two stages ending in 2x2 max pooling, 2x2
average pooling, or (no pooling layer) a stride of 2 on its last conv; then flatten and two fully connected
layers. Measured: parameters, MACs, held-out accuracy, accuracy under 1-4 pixel shifts and the share of
predictions that change under them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from nnatlas.analysis import summary
from nnatlas.experiments import _vision
from nnatlas.experiments._train import accuracy
from nnatlas.experiments.base import (
    Context,
    Experiment,
    Measurement,
    majority,
    register_experiment,
    spread,
)

DOWNS = {"max pooling": "max", "average pooling": "avg", "strided conv": "stride"}
STAGES = ((3, 3), (3, 3), (3,))
SMALL = (1, 2)  # the shifts (pixels) that count as small in the criterion
TOLERANCE = 0.01  # held-out accuracy the max-pooling net may lose against the strided net


def _net(down: str, size: int) -> nn.Module:
    return _vision.small_cnn(stages=STAGES, down=DOWNS[down], head="fc", input_size=size)


@register_experiment
class Pooling(Experiment):
    name = "pooling"
    title = "max pooling keeps a CNN's predictions steadier under small shifts than strided convolutions"
    section = "Pooling"
    claim_zh = "选最大的像素值作为代表。"
    claim_en = (
        "Max pooling takes the largest value of each window as its representative. Measured (the usual "
        "argument for pooling, not stated in the notes): whether max pooling makes a CNN's predictions more "
        "robust to 1-2 pixel shifts than downsampling by strided convolutions at the same accuracy, with "
        "average pooling alongside."
    )
    method = (
        "20x20 shape silhouettes (2000 training, 500 held-out scenes, 4 classes). Three nets: stages of "
        "3x3 conv-BN-ReLU layers (2 x 16, 2 x 32, 1 x 32 channels); the first two stages end in 2x2 max "
        "pooling, 2x2 average pooling, or no pooling layer with stride 2 on their last conv (the same "
        "weights); flatten, linear 800 -> 64, ReLU, linear 64 -> 4. 8 epochs of Adam (lr 2e-3, batch 64), "
        "batch-norm statistics re-estimated on the training set, per seed. Held-out accuracy, and accuracy "
        "and the share of changed predictions when the held-out images move by 1, 2, 3, 4 pixels (mean "
        "over right, left, down, up)."
    )
    criterion = (
        "A seed passes when the max-pooling net's share of changed predictions, averaged over the 1 and "
        "2 pixel shifts, is smaller than the strided-conv net's AND its held-out accuracy is no more than "
        "1 point below the strided-conv net's. Supported when at least 2 of 3 seeds pass, not supported "
        "when at most 1 of 3 do (majority). Average pooling is measured and shown, not judged."
    )
    minutes = 1.2

    def run(self, ctx: Context) -> Measurement:
        epochs = ctx.size(2, 8)
        size = ctx.size(16, 20)
        data = _vision.shape_silhouettes(ctx.size(400, 2000), ctx.size(200, 500), size)
        _, _, xv, yv = data
        numbers: dict[str, Any] = {
            "epochs": epochs,
            "image_side": size,
            "shifts": list(_vision.SHIFTS),
            "nets": {},
        }
        for down in DOWNS:
            s = summary(_net(down, size), (1, 1, size, size))
            numbers["nets"][down] = {
                "params": s.total_params,
                "macs": s.total_macs,
                **{k: [] for k in ("val_acc", "shifted_acc", "changed", "small_changed")},
            }
        for seed in ctx.seeds:
            for down, res in numbers["nets"].items():
                ctx.step(f"seed {seed}: {down}")
                model = _vision.seeded_model(seed, lambda down=down: _net(down, size))
                _vision.train(model, data, epochs=epochs, seed=seed)
                changed = _vision.prediction_change(model, xv)
                res["val_acc"].append(accuracy(model, xv, yv))
                res["shifted_acc"].append(_vision.shifted_accuracy(model, xv, yv))
                res["changed"].append(changed)
                res["small_changed"].append(_vision.mean([changed[_vision.SHIFTS.index(d)] for d in SMALL]))
        for res in numbers["nets"].values():
            res["val_acc_spread"] = spread(res["val_acc"])
            res["small_changed_spread"] = spread(res["small_changed"])

        def pm(s: Mapping[str, float]) -> str:
            return f"{s['mean']:.3f} ± {s['std']:.3f}"

        table = [
            {
                "downsampling": down,
                "parameters": res["params"],
                "MACs": res["macs"],
                "held-out acc": pm(res["val_acc_spread"]),
                "acc, 1-4 px shifts": f"{spread(_vision.mean(a) for a in res['shifted_acc'])['mean']:.3f}",
                "changed, 1-2 px": pm(res["small_changed_spread"]),
                "changed, 4 px": f"{spread(c[-1] for c in res['changed'])['mean']:.3f}",
            }
            for down, res in numbers["nets"].items()
        ]
        n = numbers["nets"]
        key = (
            "changed under 1-2 px shifts: max "
            + " vs ".join(
                f"{n[d]['small_changed_spread']['mean']:.3f}" for d in ("max pooling", "strided conv")
            )
            + f" strided (avg pool {n['average pooling']['small_changed_spread']['mean']:.3f}); held-out "
            + " / ".join(f"{n[d]['val_acc_spread']['mean']:.3f}" for d in DOWNS)
        )
        mx, av = n["max pooling"], n["average pooling"]
        notes = [
            f"Average pooling (not judged): held-out {av['val_acc_spread']['mean']:.3f} against max pooling's "
            f"{mx['val_acc_spread']['mean']:.3f}, and {av['small_changed_spread']['mean']:.3f} of the "
            f"predictions changed under 1-2 px shifts against {mx['small_changed_spread']['mean']:.3f}.",
            "The strided conv net has the same parameters as the pooling nets but computes its downsampling "
            "convs at half the resolution, so it needs fewer MACs (see the table).",
            "Shifts repeat the edge pixels (background) into the uncovered border.",
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, figure=lambda p: _figure(numbers, p), notes=notes
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        m, s = numbers["nets"]["max pooling"], numbers["nets"]["strided conv"]
        return majority(
            [
                cm < cs and am >= as_ - TOLERANCE
                for cm, cs, am, as_ in zip(
                    m["small_changed"], s["small_changed"], m["val_acc"], s["val_acc"], strict=True
                )
            ]
        )


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import PALETTE, figure, save

    fig, (ax_acc, ax_chg) = figure(1, 2, width=4.2, height=3.2)
    shifts = numbers["shifts"]
    for (down, res), colour in zip(numbers["nets"].items(), PALETTE, strict=False):
        runs = [[v, *s] for v, s in zip(res["val_acc"], res["shifted_acc"], strict=True)]
        _vision.band(ax_acc, [0, *shifts], runs, label=down, color=colour)
        _vision.band(
            ax_chg, shifts, res["changed"], label=f"{down} ({res['macs'] / 1e6:.2f}M MACs)", color=colour
        )
    ax_acc.set_xlabel("shift of the held-out images (pixels)")
    ax_acc.set_ylabel("held-out accuracy")
    ax_acc.set_title("accuracy under shifts")
    ax_acc.legend(loc="lower left")
    ax_chg.set_xlabel("shift of the held-out images (pixels)")
    ax_chg.set_ylabel("share of predictions changed")
    ax_chg.set_xticks(shifts)
    ax_chg.set_ylim(bottom=0)
    ax_chg.set_title("prediction change under shifts")
    ax_chg.legend(loc="upper left")
    save(fig, path, title="downsampling by max / average pooling or strided convs (mean, range over seeds)")
