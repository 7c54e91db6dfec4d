"""``resnet-degradation``: a deeper plain network trains worse than a shallower one; with shortcuts it does not.

He et al. 2016 ("Deep Residual Learning for Image Recognition", figs. 1 and 6) train plain CIFAR nets of
20 and 56 layers and find the 56-layer one with the *higher training error*: degradation, an optimisation
difficulty, not over-fitting. The residual twins (the same layers plus identity shortcuts) reverse it: the
deeper ResNet reaches the lower training error.

Method: ``cifar_plain20``, ``cifar_plain56``, ``cifar_resnet20`` and ``cifar_resnet56`` of the model zoo
(batch norm after every conv, option-A shortcuts, so plain and residual twins hold exactly the same
parameters), narrowed to widths 8/16/32 for a CPU budget, trained with the same seeded SGD budget on the
embedded 8x8 digits. The training loss is recorded every step; the verdict reads the mean training loss
of the last epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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

MODELS = ("cifar_plain20", "cifar_plain56", "cifar_resnet20", "cifar_resnet56")
WIDTHS = (8, 16, 32)
WINDOW = 10  # steps averaged per point of the stored loss curves


def _windows(values: list[float], size: int) -> list[float]:
    return [sum(values[i : i + size]) / len(values[i : i + size]) for i in range(0, len(values), size)]


@register_experiment
class ResNetDegradation(Experiment):
    name = "resnet-degradation"
    title = "a deeper plain net reaches a higher training loss than a shallower one; residual nets do not"
    section = "ResNet"
    claim_zh = (
        "ResNet 的提出源于这样一种现象：随着网络层数的加深，网络的训练误差和测试误差都会上升。"
        "这种现象称为网络的退化（degeneration），它与过拟合显然是不同的，因为过拟合的标志之一是训练误差降低而"
        "测试误差升高。"
    )
    claim_en = (
        "ResNet starts from the observation that as a network gets deeper its training and test errors both "
        "rise: degradation, which differs from over-fitting (where the training error falls). Measured: the "
        "final training loss of plain 20- and 56-layer nets and of their residual twins (He et al. 2016, "
        "figs. 1 and 6)."
    )
    method = (
        "Build cifar_plain20, cifar_plain56, cifar_resnet20 and cifar_resnet56 from the model zoo (3x3 convs "
        "with batch norm, option-A identity shortcuts in the residual ones, so twins share every parameter), "
        "narrowed to widths 8/16/32 and adapted to 1-channel input. Train each on the embedded 8x8 digits "
        "(1437 training images, 10 classes) with the same budget: SGD, momentum 0.9, learning rate 0.05, "
        "batch 64, 8 epochs (184 steps), the same seed for data order in all four. Record the training loss "
        "of every step (stored in windows of 10 steps) and the validation accuracy; the final training loss "
        "is the mean over the last epoch. Repeated per seed. Under --quick: 192 images, 2 epochs."
    )
    criterion = (
        "Per seed, degradation and its cure both hold when the final training loss of plain-56 is higher than "
        "that of plain-20 AND the final training loss of ResNet-56 is at most that of ResNet-20. Supported "
        "when that holds in at least 2 of 3 seeds (2/3 of the seeds), not supported when in at most 1/3, "
        "inconclusive in between."
    )
    minutes = 1.5

    def run(self, ctx: Context) -> Measurement:
        from nnatlas.models import create_model

        x, y, xv, yv = digits()
        n = ctx.size(192, len(x))
        data = (x[:n], y[:n], xv, yv)
        epochs = ctx.size(2, 8)
        final: dict[str, list[float]] = {m: [] for m in MODELS}
        val: dict[str, list[float]] = {m: [] for m in MODELS}
        curves: dict[str, list[list[float]]] = {m: [] for m in MODELS}
        for seed in ctx.seeds:
            for name in MODELS:
                ctx.step(f"seed {seed}: {name}")
                seeded(seed)
                model = create_model(name, num_classes=10, in_channels=1, widths=WIDTHS)
                hist = fit(model, data, epochs=epochs, lr=0.05, seed=seed, optimizer="sgd", momentum=0.9)
                if hist.diverged:
                    raise RuntimeError(f"{name} diverged (seed {seed})")
                final[name].append(hist.train_loss[-1])
                val[name].append(hist.val_acc[-1])
                curves[name].append(_windows(hist.step_loss, WINDOW))
        degraded = [
            p56 > p20 for p20, p56 in zip(final["cifar_plain20"], final["cifar_plain56"], strict=True)
        ]
        cured = [
            r56 <= r20 for r20, r56 in zip(final["cifar_resnet20"], final["cifar_resnet56"], strict=True)
        ]
        numbers: dict[str, Any] = {
            "models": list(MODELS),
            "widths": list(WIDTHS),
            "epochs": epochs,
            "train_images": n,
            "window_steps": WINDOW,
            "final_train_loss": final,
            "final_train_loss_spread": {m: spread(v) for m, v in final.items()},
            "val_accuracy": val,
            "val_accuracy_spread": {m: spread(v) for m, v in val.items()},
            "plain_degrades": degraded,
            "residual_does_not_degrade": cured,
            "loss_curves": curves,
        }
        table = [
            {
                "model": name,
                "final training loss (mean +- std)": f"{spread(final[name])['mean']:.4f} +- "
                f"{spread(final[name])['std']:.4f}",
                "validation accuracy": f"{spread(val[name])['mean']:.3f}",
                "per seed": ", ".join(f"{v:.4f}" for v in final[name]),
            }
            for name in MODELS
        ]
        m = {k: spread(v)["mean"] for k, v in final.items()}
        key = (
            f"train loss plain 20/56 {m['cifar_plain20']:.3f}/{m['cifar_plain56']:.3f}, "
            f"resnet 20/56 {m['cifar_resnet20']:.3f}/{m['cifar_resnet56']:.3f}"
        )
        notes = [
            "Twins share every parameter (option-A shortcuts add none): the gap between plain-56 and "
            "ResNet-56 comes from the shortcuts alone.",
            f"Widths are narrowed to {WIDTHS} (the paper uses 16/32/64) and the budget is {epochs} epochs, "
            "far shorter than the paper's 64k iterations; the comparison is at an equal budget.",
            f"Plain-56 ended above plain-20 in {sum(degraded)} of {len(degraded)} seeds; ResNet-56 ended at or "
            f"below ResNet-20 in {sum(cured)} of {len(cured)} seeds (mean final losses "
            f"{m['cifar_resnet56']:.4f} vs {m['cifar_resnet20']:.4f}, against {m['cifar_plain56']:.3f} for "
            "plain-56). He et al. see the deeper ResNet reach the lower training error only late in a long "
            "schedule; a short budget can leave it at or just above the shallower one.",
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, notes=notes, figure=lambda p: _figure(numbers, p)
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        both = [
            d and c
            for d, c in zip(numbers["plain_degrades"], numbers["residual_does_not_degrade"], strict=True)
        ]
        return majority(both)


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import PALETTE, figure, save

    fig, axes = figure(1, 2, width=4.6, height=3.4, sharey=True)
    window = numbers["window_steps"]
    for ax, kind in zip(axes, ("plain", "resnet"), strict=True):
        for name, colour in zip(
            (f"cifar_{kind}20", f"cifar_{kind}56"), (PALETTE[0], PALETTE[3]), strict=True
        ):
            runs = numbers["loss_curves"][name]
            length = min(len(r) for r in runs)
            for r in runs:
                ax.plot(
                    [window * (i + 1) for i in range(length)], r[:length], color=colour, alpha=0.25, lw=0.8
                )
            mean = [sum(r[i] for r in runs) / len(runs) for i in range(length)]
            ax.plot([window * (i + 1) for i in range(length)], mean, color=colour, lw=2, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("training step (batch 64)")
        ax.set_title("plain" if kind == "plain" else "residual")
        ax.legend()
    axes[0].set_ylabel(f"training loss (cross-entropy, mean of {window} steps)")
    save(fig, path, title="degradation: training loss of 20- vs 56-layer nets (thin: seeds, thick: mean)")
