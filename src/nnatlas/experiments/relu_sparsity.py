"""``relu-sparsity``: about half of the ReLU units are active, so ReLU networks are sparse.

The fraction of active (non-zero) outputs of every ReLU layer, from
:func:`nnatlas.analysis.activation_stats` (``1 - zero_fraction``) on the validation digits, for an MLP and
a small CNN with PyTorch's default initialisation, at initialisation and after training; beside it, per
unit, how often it is active over the validation set (units never active are dead). Glorot, Bordes &
Bengio, "Deep Sparse Rectifier Neural Networks" (2011) made the sparsity argument for rectifiers; ReLU as
in Nair & Hinton (2010).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nnatlas.analysis import activation_stats
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

#: Thresholds of the criterion, fixed before the run: "about 50%" at initialisation, "only about half or
#: fewer" after training.
ABOUT_HALF = (0.4, 0.6)
AT_MOST = 0.6


def _mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Linear(128, 128),
        nn.ReLU(),
        nn.Linear(128, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def _cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 32, 4, 4)
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


MODELS = {"MLP": _mlp, "CNN": _cnn}


def _active_fractions(model: nn.Module, x: Tensor) -> list[float]:
    """``1 - zero_fraction`` of every ReLU layer's output on ``x``, in call order."""
    model.eval()
    return [1.0 - r.zero_fraction for r in activation_stats(model, x).of_type("ReLU")]


@torch.no_grad()
def _unit_rates(model: nn.Module, x: Tensor) -> list[list[float]]:
    """Per ReLU layer, per unit (a neuron; for a convolution a channel at a pixel), the fraction of the
    examples of ``x`` on which it is active."""
    model.eval()
    rates: list[list[float]] = []
    handles = [
        m.register_forward_hook(
            lambda mod, inp, out: rates.append((out > 0).float().mean(0).flatten().tolist())
        )
        for m in model.modules()
        if isinstance(m, nn.ReLU)
    ]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return rates


@register_experiment
class ReluSparsity(Experiment):
    name = "relu-sparsity"
    title = (
        "about half of the ReLU units are active at initialisation, and about half or fewer after training"
    )
    section = "ReLU"
    claim_zh = "且 ReLU 具备很好的稀疏性，大于只有 50% 的神经元会被激活。"
    claim_en = (
        "ReLU has good sparsity: only about 50% of the neurons are active (the notes' '大于' reads as "
        "'大约', about). Measured: the fraction of ReLU outputs that are non-zero, per layer, at "
        "initialisation and after training."
    )
    method = (
        "An MLP (64-128-128-128-10, three ReLU layers) and a CNN (conv 16, conv 32, max-pool, conv 32, each "
        "followed by ReLU, global average pooling, linear) on the embedded 8x8 digits, PyTorch's default "
        "initialisation. activation_stats on the 360 validation images gives each ReLU layer's fraction of "
        "exact zeros; active = 1 - zero fraction. Measured at initialisation and after training with Adam "
        "(lr 1e-3, batch 64); per unit, the fraction of validation images on which it is active (dead: "
        "never). Repeated per seed."
    )
    criterion = (
        "Supported when, in at least 2 of 3 seeds and for both models, the active fraction averaged over the "
        "ReLU layers lies in [0.4, 0.6] at initialisation and is at most 0.6 after training; not supported "
        "when this holds in at most 1 of 3 seeds; otherwise inconclusive."
    )
    minutes = 0.5

    def run(self, ctx: Context) -> Measurement:
        epochs = ctx.size(1, 10)
        data = digits()
        x_val, y_val = data[2], data[3]
        init: dict[str, list[list[float]]] = {k: [] for k in MODELS}
        trained: dict[str, list[list[float]]] = {k: [] for k in MODELS}
        val_acc: dict[str, list[float]] = {k: [] for k in MODELS}
        dead: dict[str, list[float]] = {k: [] for k in MODELS}
        rates: dict[str, dict[str, list[float]]] = {}
        for seed in ctx.seeds:
            for label, build in MODELS.items():
                ctx.step(f"seed {seed}: {label}")
                seeded(seed)
                model = build()
                init[label].append(_active_fractions(model, x_val))
                if label not in rates:
                    rates[label] = {"init": [r for layer in _unit_rates(model, x_val) for r in layer]}
                fit(model, data, epochs=epochs, lr=1e-3, seed=seed)
                trained[label].append(_active_fractions(model, x_val))
                val_acc[label].append(accuracy(model, x_val, y_val))
                unit = [r for layer in _unit_rates(model, x_val) for r in layer]
                dead[label].append(sum(r == 0 for r in unit) / len(unit))
                rates[label].setdefault("trained", unit)

        def mean_over_layers(runs: list[list[float]]) -> list[float]:
            return [sum(r) / len(r) for r in runs]

        numbers: dict[str, Any] = {
            "epochs": epochs,
            "active_fraction_per_layer": {"init": init, "trained": trained},
            "active_fraction": {
                "init": {k: mean_over_layers(v) for k, v in init.items()},
                "trained": {k: mean_over_layers(v) for k, v in trained.items()},
            },
            "dead_unit_fraction": dead,
            "val_acc": val_acc,
            # per unit, how often it is active: a histogram over 20 bins of [0, 1] (the last bin holds 1)
            "unit_active_rate_histogram_seed0": {
                k: {t: _histogram(v) for t, v in d.items()} for k, d in rates.items()
            },
        }
        numbers["summary"] = {
            f"{label} {when}": spread(numbers["active_fraction"][when][label])
            for label in MODELS
            for when in ("init", "trained")
        }
        table = []
        for label in MODELS:
            layers = len(init[label][0])
            for i in range(layers):
                table.append(
                    {
                        "model": label,
                        "ReLU layer": i + 1,
                        "active at init": spread(r[i] for r in init[label])["mean"],
                        "active trained": spread(r[i] for r in trained[label])["mean"],
                        "+- (std, trained)": spread(r[i] for r in trained[label])["std"],
                        "dead units (trained, all layers)": spread(dead[label])["mean"],
                        "val acc": spread(val_acc[label])["mean"],
                    }
                )
        s = numbers["summary"]
        key = ", ".join(
            f"{label} active {s[f'{label} init']['mean']:.0%} -> {s[f'{label} trained']['mean']:.0%}"
            for label in MODELS
        )
        notes = [
            f"{label}: active fraction {s[f'{label} init']['mean']:.1%} at initialisation (pre-activations of "
            f"either sign about equally often: symmetric weights and biases), {s[f'{label} trained']['mean']:.1%} "
            f"after {epochs} epochs of training (validation accuracy {spread(val_acc[label])['mean']:.3f}); "
            f"{spread(dead[label])['mean']:.1%} of the units are never active on the validation images."
            for label in MODELS
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, figure=lambda p: _figure(numbers, p), notes=notes
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        af = numbers["active_fraction"]
        lo, hi = ABOUT_HALF
        n = len(af["init"]["MLP"])
        passes = [
            all(
                lo <= af["init"][label][i] <= hi and af["trained"][label][i] <= AT_MOST
                for label in af["init"]
            )
            for i in range(n)
        ]
        return majority(passes)


def _histogram(values: list[float], bins: int = 20) -> list[int]:
    counts = [0] * bins
    for v in values:
        counts[min(int(v * bins), bins - 1)] += 1
    return counts


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    import numpy as np

    from nnatlas.viz import PALETTE, figure, save

    fig, axes = figure(1, 3, width=4.0, height=3.3)
    per_layer = numbers["active_fraction_per_layer"]
    for ax, label in zip(axes[:2], MODELS, strict=True):
        for j, (when, colour) in enumerate((("init", PALETTE[0]), ("trained", PALETTE[1]))):
            runs = np.asarray(per_layer[when][label])  # (seeds, layers)
            x = np.arange(runs.shape[1]) + 1 + (j - 0.5) * 0.35
            ax.bar(x, runs.mean(0), width=0.35, yerr=runs.std(0), capsize=3, color=colour, label=when)
        ax.axhline(0.5, color="black", lw=0.8, ls="--", label="50%")
        ax.set_ylim(0, 1)
        ax.set_xticks(range(1, runs.shape[1] + 1))
        ax.set_xlabel("ReLU layer")
        ax.set_ylabel("fraction of active outputs (> 0)")
        ax.set_title(f"{label}, validation digits")
        ax.legend()
    ax = axes[2]
    for label, colour in zip(MODELS, (PALETTE[2], PALETTE[3]), strict=True):
        for when, ls in (("init", ":"), ("trained", "-")):
            counts = np.asarray(numbers["unit_active_rate_histogram_seed0"][label][when], dtype=float)
            edges = np.linspace(0, 1, len(counts) + 1)
            ax.stairs(counts / counts.sum(), edges, color=colour, ls=ls, lw=1.5, label=f"{label} {when}")
    ax.set_xlabel("fraction of images on which a unit is active")
    ax.set_ylabel("fraction of units")
    ax.set_title("per unit (seed 0)")
    ax.legend()
    save(fig, path, title="ReLU sparsity: active units at initialisation and after training")
