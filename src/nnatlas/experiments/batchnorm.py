"""``batchnorm``: batch normalisation lets a network train at larger learning rates and converge faster.

Ioffe and Szegedy 2015 ("Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift") report that with batch norm a network reaches the same accuracy in far fewer steps and
tolerates much higher learning rates. The notes repeat it: training is more stable, less sensitive to
initial values, and a larger learning rate can be used to speed up convergence.

Method: the same deep plain conv net with and without a ``BatchNorm2d`` after every conv, trained with SGD
over a sweep of learning rates on the embedded 8x8 digits. For every run: whether it trains at all (no
divergence and a validation accuracy well above chance) and the number of steps until the validation
accuracy first reaches a target.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from nnatlas.experiments._train import accuracy, digits, fit
from nnatlas.experiments.base import (
    Context,
    Experiment,
    Measurement,
    majority,
    register_experiment,
    seeded,
    spread,
)

LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
TARGET = 0.9  # validation accuracy that counts as converged
TRAINS = 0.5  # validation accuracy that counts as "trains at all" (chance is 0.1)
EVERY = 5  # steps between validation checks


def _net(depth: int, width: int, norm: bool) -> nn.Sequential:
    """``depth`` 3x3 convs (1 -> width -> ... -> width), a 2x2 max pool after half of them, ReLU after each,
    optionally a batch norm between conv and ReLU; a linear classifier on the flattened (width, 4, 4) map."""
    layers: list[nn.Module] = []
    cin = 1
    for i in range(depth):
        layers.append(nn.Conv2d(cin, width, 3, padding=1, bias=not norm))
        if norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU())
        if i == depth // 2 - 1:
            layers.append(nn.MaxPool2d(2))  # (B, width, 4, 4)
        cin = width
    layers += [nn.Flatten(), nn.Linear(width * 16, 10)]
    return nn.Sequential(*layers)


def _largest(lrs: list[float], ok: list[bool]) -> float:
    """The largest learning rate that trains (0 when none does)."""
    return max((lr for lr, good in zip(lrs, ok, strict=True) if good), default=0.0)


@register_experiment
class BatchNorm(Experiment):
    name = "batchnorm"
    title = (
        "with batch norm a deep net trains over a wider range of learning rates and reaches a target sooner"
    )
    section = "批归一化"
    claim_zh = "采用批归一化后，深度神经网络的训练过程更加稳定，对初始值不再那么敏感，可以采用较大的学习率来加速收敛。"
    claim_en = (
        "With batch normalisation the training of a deep network is more stable and less sensitive to initial "
        "values, and a larger learning rate can be used to converge faster. Measured: the range of SGD "
        "learning rates that train and the fewest steps to a target accuracy, with and without batch norm "
        "(Ioffe and Szegedy 2015)."
    )
    method = (
        "A plain conv net of 8 3x3 convs (16 channels, ReLU, a 2x2 max pool after the 4th, a linear "
        "classifier), with a BatchNorm2d between every conv and its ReLU or without (then the convs carry a "
        "bias), PyTorch's default initialisation. Each is trained on the embedded 8x8 digits (1437 images, "
        "10 classes) with SGD (momentum 0.9, batch 64) for 5 epochs at each learning rate of "
        f"{', '.join(f'{lr:g}' for lr in LRS)}, checking the validation accuracy every {EVERY} steps. A run "
        f"'trains' when its loss stays finite and its final validation accuracy is >= {TRAINS} (chance 0.1); "
        f"its steps-to-target is the first check with validation accuracy >= {TARGET}. Repeated per seed. "
        "Under --quick: 4 convs, 1 epoch, three learning rates."
    )
    criterion = (
        "Per seed, batch norm wins when (a) the largest learning rate that trains is larger with batch norm "
        "than without, AND (b) the fewest steps to the target accuracy over the sweep is smaller with batch "
        "norm than without (a net that never reaches the target counts as infinitely many steps; neither "
        "reaching it fails (b)). Supported when batch norm wins in at least 2/3 of the seeds, not supported "
        "when in at most 1/3, inconclusive in between."
    )
    minutes = 1.0

    def run(self, ctx: Context) -> Measurement:
        x, y, xv, yv = digits()
        data = (x, y, xv, yv)
        depth = ctx.size(4, 8)
        epochs = ctx.size(1, 5)
        lrs = list(ctx.size((0.01, 0.3, 3.0), LRS))
        variants = ("no BN", "BN")
        final: dict[str, list[list[float]]] = {v: [] for v in variants}
        trains: dict[str, list[list[bool]]] = {v: [] for v in variants}
        to_target: dict[str, list[list[int | None]]] = {v: [] for v in variants}
        largest: dict[str, list[float]] = {v: [] for v in variants}
        fewest: dict[str, list[int | None]] = {v: [] for v in variants}
        for seed in ctx.seeds:
            for variant in variants:
                accs, oks, steps = [], [], []
                for lr in lrs:
                    ctx.step(f"seed {seed}: {variant}, lr {lr:g}")
                    seeded(seed)
                    model = _net(depth, 16, norm=variant == "BN")
                    reached: list[int] = []

                    def check(m: nn.Module, step: int, reached: list[int] = reached) -> None:
                        if not reached and step % EVERY == 0 and accuracy(m, xv, yv) >= TARGET:
                            reached.append(step)

                    hist = fit(model, data, epochs=epochs, lr=lr, seed=seed, optimizer="sgd", on_step=check)
                    acc = 0.0 if hist.diverged else hist.val_acc[-1]
                    accs.append(acc)
                    oks.append(not hist.diverged and acc >= TRAINS)
                    steps.append(reached[0] if reached else None)
                final[variant].append(accs)
                trains[variant].append(oks)
                to_target[variant].append(steps)
                largest[variant].append(_largest(lrs, oks))
                fewest[variant].append(min((s for s in steps if s is not None), default=None))
        numbers: dict[str, Any] = {
            "learning_rates": lrs,
            "depth": depth,
            "epochs": epochs,
            "target_accuracy": TARGET,
            "trains_accuracy": TRAINS,
            "check_every_steps": EVERY,
            "final_val_accuracy": final,
            "trains": trains,
            "steps_to_target": to_target,
            "largest_lr_that_trains": largest,
            "fewest_steps_to_target": fewest,
            "lrs_that_train_count": {v: [sum(o) for o in trains[v]] for v in variants},
        }
        table = [
            {
                "learning rate": lr,
                **{f"{v} val acc (mean)": round(spread(a[i] for a in final[v])["mean"], 3) for v in variants},
                **{f"{v} trains (seeds)": sum(o[i] for o in trains[v]) for v in variants},
                **{f"{v} steps to {TARGET:g}": _fmt_steps([s[i] for s in to_target[v]]) for v in variants},
            }
            for i, lr in enumerate(lrs)
        ]
        key = (
            f"largest lr that trains: BN {_fmt_lrs(largest['BN'])} vs no BN {_fmt_lrs(largest['no BN'])}; "
            f"fewest steps to {TARGET:g}: BN {_fmt_steps(fewest['BN'])} vs no BN {_fmt_steps(fewest['no BN'])}"
        )
        counts = numbers["lrs_that_train_count"]
        notes = [
            f"Learning rates that train, per seed: BN {counts['BN']}, no BN {counts['no BN']} of {len(lrs)}. "
            "Both nets start from PyTorch's default initialisation, whose weight variance (1 / (3 fan_in)) "
            "shrinks a ReLU signal about 2.4x per layer; batch norm rescales it at every layer, the plain net "
            "does not. Where the plain net trains at no learning rate, the sweep shows batch norm's "
            "insensitivity to the initial values more than a wider range of learning rates.",
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, notes=notes, figure=lambda p: _figure(numbers, p)
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        largest, fewest = numbers["largest_lr_that_trains"], numbers["fewest_steps_to_target"]
        wins = []
        for lr_bn, lr_no, s_bn, s_no in zip(
            largest["BN"], largest["no BN"], fewest["BN"], fewest["no BN"], strict=True
        ):
            faster = s_bn is not None and (s_no is None or s_bn < s_no)
            wins.append(lr_bn > lr_no and faster)
        return majority(wins)


def _fmt_steps(values: list[int | None]) -> str:
    return "/".join("never" if v is None else str(v) for v in values)


def _fmt_lrs(values: list[float]) -> str:
    return "/".join(f"{v:g}" if v > 0 else "none" for v in values)


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import PALETTE, figure, save

    lrs = numbers["learning_rates"]
    fig, (a, b) = figure(1, 2, width=4.6, height=3.4)
    for variant, colour in zip(("no BN", "BN"), (PALETTE[3], PALETTE[0]), strict=True):
        runs = numbers["final_val_accuracy"][variant]
        for r in runs:
            a.plot(lrs, r, color=colour, alpha=0.3, lw=0.8, marker=".")
        a.plot(
            lrs,
            [sum(r[i] for r in runs) / len(runs) for i in range(len(lrs))],
            color=colour,
            lw=2,
            marker="o",
            label=variant,
        )
        steps = numbers["steps_to_target"][variant]
        for r in steps:
            pts = [(lr, s) for lr, s in zip(lrs, r, strict=True) if s is not None]
            b.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                color=colour,
                marker="o",
                alpha=0.6,
                label=variant if r is steps[0] else None,
            )
    a.axhline(numbers["trains_accuracy"], color="grey", ls="--", lw=0.8, label="'trains' threshold")
    a.set_xscale("log")
    a.set_xlabel("learning rate (SGD, momentum 0.9)")
    a.set_ylabel("final validation accuracy")
    a.set_ylim(0, 1)
    a.legend()
    b.set_xscale("log")
    b.set_xlabel("learning rate (SGD, momentum 0.9)")
    b.set_ylabel(f"steps to {numbers['target_accuracy']:g} validation accuracy")
    b.legend()
    save(fig, path, title="batch norm: learning rates that train and steps to a target (one line per seed)")
