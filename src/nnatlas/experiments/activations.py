"""``activations``: non-linear activations are what let a network separate non-linearly separable data,
and the sigmoid's small derivative makes gradients vanish in deep stacks, where ReLU does not.

Four measurements:

1. **The functions and their derivatives**, by autograd, for the activations the notes list (Sigmoid,
   Tanh, ReLU, LReLU, PReLU, ELU, Swish; :func:`nnatlas.layers.get_activation`). The notes write the
   logistic derivative ``e^{-x} / (1 + e^{-x})^2`` with ``σ`` on the left and say it tends to 0 as
   ``x -> 0``; autograd gives ``σ'(0) = 1/4``, its maximum, and ``σ' -> 0`` as ``|x| -> ∞``.
2. **Gradient flow at initialisation** (:func:`nnatlas.analysis.gradient_flow`) of a deep MLP on the
   embedded digits, one per activation, all with Glorot (Xavier) normal weights and zero biases (Glorot &
   Bengio 2010, who studied the sigmoid's saturation in deep networks with this initialisation): the
   gradient norm of each linear layer, and that of the first over that of the last.
3. **Loss after training** each of those MLPs alike with SGD for the same number of steps.
4. **Linear layers collapse**: a stack of linear layers equals one affine map (the product of its weight
   matrices), and cannot fit XOR; one ReLU between two linear layers can (the 4 XOR points).

ReLU: Nair & Hinton 2010; LReLU: Maas et al. 2013; PReLU: He et al. 2015; ELU: Clevert et al. 2016; Swish:
Ramachandran et al. 2017 (here its ``beta = 1`` form, SiLU).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnatlas.analysis import gradient_flow
from nnatlas.experiments._train import digits, fit
from nnatlas.experiments.base import (
    NOT_SUPPORTED,
    SUPPORTED,
    Context,
    Experiment,
    Measurement,
    majority,
    register_experiment,
    seeded,
    spread,
)
from nnatlas.layers import get_activation

#: Label -> name for get_activation; the notes' list (Swish as torch's SiLU, its beta = 1 form).
ACTIVATIONS = {
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "ReLU": "relu",
    "LReLU": "lrelu",
    "PReLU": "prelu",
    "ELU": "elu",
    "Swish": "swish",
}
#: Thresholds of the criterion, fixed before the run.
VANISHED = 0.01  # sigmoid: first-layer gradient norm below this fraction of the last layer's
HEALTHY = 0.1  # ReLU: first-layer gradient norm above this fraction of the last layer's
XOR_X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = torch.tensor([0.0, 1.0, 1.0, 0.0])


def _deep_mlp(activation: str, depth: int, width: int) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units with ``activation`` on flattened 8x8 digits, 10 classes;
    Glorot-normal weights, zero biases."""
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = 64
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), get_activation(activation)]
        fan_in = width
    layers.append(nn.Linear(fan_in, 10))
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


def _curves(grid: Tensor) -> dict[str, dict[str, list[float]]]:
    """``f(x)`` and ``f'(x)`` (autograd) of every activation on ``grid``."""
    out = {}
    for label, name in ACTIVATIONS.items():
        x = grid.clone().requires_grad_(True)
        y = get_activation(name)(x)
        (dy,) = torch.autograd.grad(y.sum(), x)
        out[label] = {"f": y.detach().tolist(), "df": dy.tolist()}
    return out


def _sigmoid_checks() -> dict[str, float]:
    """Autograd values of the logistic derivative, against the notes' formula ``e^{-x} / (1 + e^{-x})^2``."""
    grid = torch.linspace(-10, 10, 2001, dtype=torch.float64, requires_grad=True)
    (d,) = torch.autograd.grad(torch.sigmoid(grid).sum(), grid)
    notes_formula = torch.exp(-grid.detach()) / (1 + torch.exp(-grid.detach())) ** 2
    x0 = torch.zeros((), dtype=torch.float64, requires_grad=True)
    (d0,) = torch.autograd.grad(torch.sigmoid(x0), x0)
    at = {}
    for v in (-6.0, -3.0, 3.0, 6.0):
        xv = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        at[v] = float(torch.autograd.grad(torch.sigmoid(xv), xv)[0])
    return {
        "derivative_at_0": float(d0),
        "derivative_max_on_grid": float(d.max()),
        "argmax_on_grid": round(float(grid.detach()[d.argmax()]), 12) + 0.0,  # no -0.0
        "derivative_at_3": at[3.0],
        "derivative_at_6": at[6.0],
        "derivative_at_minus_6": at[-6.0],
        "notes_formula_max_abs_error": float((d - notes_formula).abs().max()),
    }


def _collapse_check(seed: int, width: int = 16, depth: int = 3) -> tuple[nn.Sequential, float]:
    """A stack of ``depth`` linear layers (2 -> width ... -> 1) and the largest difference between its
    output and that of the single affine map ``x W^T + b`` with ``W = W_depth ... W_1``."""
    seeded(seed)
    dims = [2] + [width] * (depth - 1) + [1]
    stack = nn.Sequential(*(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)))
    W = torch.eye(2)
    b = torch.zeros(2)
    for layer in stack:
        W, b = layer.weight @ W, layer.weight @ b + layer.bias  # compose x -> W x + b
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        err = float((stack(x) - (x @ W.T + b)).abs().max())
    return stack, err


def _fit_xor(model: nn.Module, steps: int) -> dict[str, Any]:
    """Full-batch Adam on the 4 XOR points (logistic loss); final loss, accuracy, and the model's
    probability on a 21 x 21 grid over [-0.25, 1.25]^2."""
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(model(XOR_X).squeeze(1), XOR_Y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        logits = model(XOR_X).squeeze(1)
        axis = torch.linspace(-0.25, 1.25, 21)
        gy, gx = torch.meshgrid(axis, axis, indexing="ij")
        surface = torch.sigmoid(model(torch.stack([gx.flatten(), gy.flatten()], 1))).view(21, 21)
    return {
        "loss": F.binary_cross_entropy_with_logits(logits, XOR_Y).item(),
        "accuracy": float(((logits > 0).float() == XOR_Y).float().mean()),
        "curve": losses[:: max(1, steps // 50)],
        "surface": surface.tolist(),
    }


@register_experiment
class Activations(Experiment):
    name = "activations"
    title = (
        "sigmoid gradients vanish through depth (sigma' <= 1/4), ReLU's do not; linear stacks cannot fit XOR"
    )
    section = "激活函数 / Sigmoid / ReLU"
    claim_zh = (
        "非线性激活函数是用于分离非线性可分的数据，是最常用的激活函数。 …… "
        "当 x --> 0 时，导数的值 --> 0，会造成梯度消失。 …… "
        "且 ReLU 函数为左饱和函数，在 x>0 时导数为 1，在一定程度上可以缓解神经网络梯度消失问题。"
    )
    claim_en = (
        "Non-linear activations separate data that are not linearly separable. The logistic sigmoid's "
        "derivative makes gradients vanish; ReLU, whose derivative is 1 for x > 0, alleviates this. The "
        "notes write the derivative e^{-x}/(1+e^{-x})^2 with sigma on the left and say it tends to 0 as "
        "x -> 0; in fact sigma'(0) = 1/4 is its maximum and it tends to 0 as |x| -> infinity, so every "
        "sigmoid layer scales the backward signal by at most 1/4. Measured: that derivative (autograd), "
        "gradient norms per layer of deep MLPs at initialisation for seven activations, their loss after "
        "the same training, and XOR with a stack of linear layers vs one ReLU."
    )
    method = (
        "Autograd derivatives of Sigmoid, Tanh, ReLU, LReLU (slope 0.01), PReLU (initial 0.25), ELU and "
        "Swish (SiLU) on [-6, 6]; the sigmoid's on [-10, 10] in float64 against the notes' formula. For "
        "each activation, an MLP of 10 hidden layers of 64 units on the embedded 8x8 digits with "
        "Glorot-normal weights and zero biases: gradient_flow on 256 training images (cross-entropy) gives "
        "the gradient norm of every linear layer at initialisation; then SGD (lr 0.05, momentum 0.9, batch "
        "64) for the same number of epochs; the final-epoch training loss and validation accuracy. XOR: a "
        "stack of 3 linear layers (2-16-16-1, no activation) is checked against the single affine map "
        "given by the product of its weight matrices on 256 random inputs, then it and a 2-16-1 net with "
        "one ReLU are trained with Adam (lr 0.03, full batch, logistic loss) on the 4 XOR points. Repeated "
        "per seed."
    )
    criterion = (
        "Supported when all hold: (a) autograd gives sigma'(0) = 0.25 within 1e-6 and the maximum of sigma' "
        "on [-10, 10] lies at x = 0; (b) in at least 2 of 3 seeds the sigmoid MLP's first-layer gradient "
        "norm at initialisation is below 0.01 of its last layer's while the ReLU MLP's is above 0.1 of its "
        "last layer's; (c) in at least 2 of 3 seeds the sigmoid MLP's final training loss is higher than "
        "the ReLU MLP's; (d) in every seed the linear stack equals its single affine map (largest "
        "difference below 1e-5), and in at least 2 of 3 seeds the linear stack fits at most 3 of the 4 XOR "
        "points while the one-ReLU net fits all 4. Otherwise not supported."
    )
    minutes = 1.0

    def run(self, ctx: Context) -> Measurement:
        depth, width = 10, 64
        epochs = ctx.size(1, 12)
        xor_steps = ctx.size(200, 400)
        grid = torch.linspace(-6, 6, 241)
        curves = _curves(grid)
        sig = _sigmoid_checks()
        x_train, y_train, x_val, y_val = data = digits()
        batch = (x_train[:256], y_train[:256])

        grad_norms: dict[str, list[list[float]]] = {k: [] for k in ACTIVATIONS}
        ratio: dict[str, list[float]] = {k: [] for k in ACTIVATIONS}
        final_loss: dict[str, list[float]] = {k: [] for k in ACTIVATIONS}
        val_acc: dict[str, list[float]] = {k: [] for k in ACTIVATIONS}
        loss_curves: dict[str, list[list[float]]] = {k: [] for k in ACTIVATIONS}
        xor: dict[str, dict[str, list[Any]]] = {
            k: {"loss": [], "accuracy": [], "curve": [], "surface": []} for k in ("linear stack", "one ReLU")
        }
        collapse_err: list[float] = []
        for seed in ctx.seeds:
            for label, name in ACTIVATIONS.items():
                ctx.step(f"seed {seed}: {label}")
                seeded(seed)
                model = _deep_mlp(name, depth, width)
                flow = gradient_flow(model, batch[0], F.cross_entropy, target=batch[1])
                norms = [r.grad_norm for r in flow.rows if r.type == "Linear"]
                grad_norms[label].append(norms)
                ratio[label].append(norms[0] / norms[-1])
                hist = fit(model, data, epochs=epochs, lr=0.05, seed=seed, optimizer="sgd")
                # A diverged run keeps the loss of its last finished epoch (or ln 10 before any).
                final_loss[label].append(hist.train_loss[-1] if hist.train_loss else math.log(10))
                val_acc[label].append(hist.val_acc[-1] if hist.val_acc else 0.1)
                loss_curves[label].append(hist.train_loss)
            ctx.step(f"seed {seed}: XOR")
            stack, err = _collapse_check(seed)
            collapse_err.append(err)
            seeded(seed)
            relu_net = nn.Sequential(nn.Linear(2, 16), get_activation("relu"), nn.Linear(16, 1))
            for label, model in (("linear stack", stack), ("one ReLU", relu_net)):
                r = _fit_xor(model, xor_steps)
                for k in xor[label]:
                    xor[label][k].append(r[k])

        numbers: dict[str, Any] = {
            "depth": depth,
            "width": width,
            "epochs": epochs,
            "sigmoid_derivative": sig,
            "curves_x": grid.tolist(),
            "curves": curves,
            "grad_norms_per_linear_layer": grad_norms,
            "first_to_last_grad_ratio": ratio,
            "final_train_loss": final_loss,
            "val_acc": val_acc,
            "train_loss_curves": loss_curves,
            "collapse_max_error": collapse_err,
            "xor": xor,
            "summary": {
                "first_to_last_grad_ratio": {k: spread(v) for k, v in ratio.items()},
                "final_train_loss": {k: spread(v) for k, v in final_loss.items()},
                "val_acc": {k: spread(v) for k, v in val_acc.items()},
            },
        }
        table = [
            {
                "activation": label,
                "max f' (autograd)": max(curves[label]["df"]),
                "grad ratio first/last layer": spread(ratio[label])["mean"],
                "final train loss": spread(final_loss[label])["mean"],
                "+- (std)": spread(final_loss[label])["std"],
                "val acc": spread(val_acc[label])["mean"],
            }
            for label in ACTIVATIONS
        ]
        for label in xor:
            table.append(
                {
                    "activation": f"XOR: {label}",
                    "max f' (autograd)": "",
                    "grad ratio first/last layer": "",
                    "final train loss": spread(xor[label]["loss"])["mean"],
                    "+- (std)": spread(xor[label]["loss"])["std"],
                    "val acc": f"{spread(xor[label]['accuracy'])['mean']:.2f} (on the 4 points)",
                }
            )
        sm = numbers["summary"]
        key = (
            f"sigma'(0) = {sig['derivative_at_0']:.4g} (max); grad first/last sigmoid "
            f"{sm['first_to_last_grad_ratio']['Sigmoid']['mean']:.1e} vs ReLU "
            f"{sm['first_to_last_grad_ratio']['ReLU']['mean']:.2f}; loss sigmoid "
            f"{sm['final_train_loss']['Sigmoid']['mean']:.2f} vs ReLU {sm['final_train_loss']['ReLU']['mean']:.2f}"
        )
        notes = [
            "The notes' formula e^{-x}/(1+e^{-x})^2 is the derivative sigma' (largest difference to autograd "
            f"{sig['notes_formula_max_abs_error']:.1e}), written with sigma on the left. Their sentence 'as "
            "x -> 0 the derivative -> 0' is contradicted: autograd gives sigma'(0) = "
            f"{sig['derivative_at_0']:.6g}, the maximum on [-10, 10] (at x = {sig['argmax_on_grid']:g}); the "
            f"derivative vanishes for large |x| (sigma'(6) = {sig['derivative_at_6']:.2e}). Gradients vanish "
            "through depth because every sigmoid layer multiplies the backward signal by at most 1/4.",
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, figure=lambda p: _figure(numbers, p), notes=notes
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        sig = numbers["sigmoid_derivative"]
        derivative = abs(sig["derivative_at_0"] - 0.25) <= 1e-6 and abs(sig["argmax_on_grid"]) < 1e-9
        r, loss, xor = numbers["first_to_last_grad_ratio"], numbers["final_train_loss"], numbers["xor"]
        vanish = [s < VANISHED and g > HEALTHY for s, g in zip(r["Sigmoid"], r["ReLU"], strict=True)]
        slower = [s > g for s, g in zip(loss["Sigmoid"], loss["ReLU"], strict=True)]
        collapse = all(e < 1e-5 for e in numbers["collapse_max_error"])
        separates = [
            lin <= 0.75 and one == 1.0
            for lin, one in zip(xor["linear stack"]["accuracy"], xor["one ReLU"]["accuracy"], strict=True)
        ]
        ok = (
            derivative
            and collapse
            and majority(vanish) == SUPPORTED
            and majority(slower) == SUPPORTED
            and majority(separates) == SUPPORTED
        )
        return SUPPORTED if ok else NOT_SUPPORTED


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    import numpy as np

    from nnatlas.viz import PALETTE, figure, save

    fig, axes = figure(2, 3, width=4.0, height=3.2)
    (a, b, c), (d, e, f) = axes
    xs = numbers["curves_x"]
    colours = dict(zip(ACTIVATIONS, PALETTE, strict=False))
    for label, cv in numbers["curves"].items():
        a.plot(xs, cv["f"], color=colours[label], label=label)
        b.plot(xs, cv["df"], color=colours[label], label=label)
    a.set_ylim(-1.5, 3)
    a.set_xlabel("x")
    a.set_ylabel("f(x)")
    a.set_title("activations")
    a.legend(ncol=2)
    sig = numbers["sigmoid_derivative"]
    b.annotate(
        f"sigma'(0) = {sig['derivative_at_0']:.3g} (max)",
        xy=(0, sig["derivative_at_0"]),
        xytext=(1.0, 0.5),
        arrowprops={"arrowstyle": "->"},
        fontsize=8,
    )
    b.set_ylim(-0.2, 1.3)
    b.set_xlabel("x")
    b.set_ylabel("f'(x) (autograd)")
    b.set_title("derivatives")
    for label, runs in numbers["grad_norms_per_linear_layer"].items():
        mean = np.exp(np.log(np.maximum(np.asarray(runs), 1e-30)).mean(0))  # geometric mean over seeds
        c.plot(range(1, len(mean) + 1), mean, marker="o", ms=3, color=colours[label], label=label)
    c.set_yscale("log")
    c.set_xlabel("linear layer (input side left)")
    c.set_ylabel("gradient norm ||dL/dW|| at init")
    c.set_title(f"gradient flow, {numbers['depth']}-hidden-layer MLP")
    for label, runs in numbers["train_loss_curves"].items():
        n = min(len(r) for r in runs)
        if n:
            mean = np.asarray([r[:n] for r in runs]).mean(0)
            d.plot(range(1, n + 1), mean, marker="o", ms=3, color=colours[label], label=label)
    d.set_xlabel("epoch (SGD)")
    d.set_ylabel("training loss (cross-entropy)")
    d.set_title("training the same MLPs, digits")
    d.legend(ncol=2)
    for ax, label in ((e, "linear stack"), (f, "one ReLU")):
        run = numbers["xor"][label]
        im = ax.imshow(
            np.asarray(run["surface"][0]), origin="lower", extent=(-0.25, 1.25, -0.25, 1.25), vmin=0, vmax=1
        )
        for (x0, x1), y in zip(XOR_X.tolist(), XOR_Y.tolist(), strict=True):
            ax.scatter([x0], [x1], c="white" if y else "black", edgecolors="red", s=60)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.set_title(f"XOR, {label}: {int(run['accuracy'][0] * 4)}/4 right")
        ax.grid(False)
    fig.colorbar(im, ax=f, shrink=0.8, label="p(y = 1)")
    save(fig, path, title="activations: derivatives, gradient flow, training, and why non-linearity")
