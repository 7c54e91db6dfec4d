"""
Batch norm, global average pooling, activations and exploding gradients
=======================================================================

.. epigraph::

   当 x --> 0 时，导数的值 --> 0，会造成梯度消失。

   *(Sigmoid) As x --> 0 the derivative --> 0, which makes the gradient vanish.*

   且 ReLU 具备很好的稀疏性，大于只有 50% 的神经元会被激活。

   *(ReLU) And ReLU is sparse: only about 50% of the neurons are activated.*

   -- notes, 激活函数

.. epigraph::

   全局平均池化层不需要参数，避免在该层产生过拟合。

   *A global average pooling layer needs no parameters, which avoids overfitting in that layer.*

   -- notes, 全局平均池化

.. epigraph::

   采用批归一化后，深度神经网络的训练过程更加稳定，对初始值不再那么敏感，可以采用较大的学习率来加速收敛。

   *With batch normalisation the training of a deep network is more stable and less sensitive to the
   initial values, and a larger learning rate can be used to converge faster.*

   -- notes, 批归一化

.. epigraph::

   梯度爆炸和梯度消失出现的原因都是因为链式法则。

   *Exploding and vanishing gradients both come from the chain rule.*

   -- notes, 梯度爆炸

The activation functions of the notes and their derivatives (:func:`nnatlas.viz.activation_curves`),
why the sigmoid's derivative makes deep gradients vanish, ReLU's sparsity, the gradient flow through a
deep sigmoid, ReLU and ReLU + batch-norm network (:func:`nnatlas.analysis.gradient_flow`,
:func:`nnatlas.viz.plot_gradient_flow`), the parameters of a global-average-pooling head against a fully
connected one, and, last, what the committed experiments measured for these sections, with their
verdicts.
"""

import textwrap

import matplotlib.pyplot as plt
import torch
from torch import nn

from nnatlas.analysis import GradientFlow, activation_stats, count_parameters, gradient_flow
from nnatlas.layers import get_activation
from nnatlas.viz import activation_curves, plot_gradient_flow

torch.manual_seed(0)

# %%
# Activation functions and their derivatives
# ------------------------------------------
# :func:`~nnatlas.viz.activation_curves` evaluates each function on a grid and differentiates it with
# autograd. The notes write the logistic sigmoid's derivative as ``e^{-x} / (1 + e^{-x})^2``; autograd
# agrees. Its largest value is ``1/4``, at ``x = 0``: the derivative vanishes as ``|x|`` grows (the notes'
# ``x --> 0`` should read ``|x| --> infinity``). ReLU's derivative is 1 for ``x > 0`` and 0 for ``x < 0``;
# leaky ReLU keeps a small slope on the left.

functions = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "ReLU": torch.relu,
    "leaky ReLU": get_activation("LReLU"),
    "swish": get_activation("swish"),
}
curves = activation_curves(functions, low=-6.0, high=6.0)
x, sig, dsig = curves["sigmoid"]
torch.testing.assert_close(dsig, torch.exp(-x) / (1 + torch.exp(-x)) ** 2)
print(f"sigmoid'(0) = {dsig[x.abs().argmin()].item():.4f}, max sigmoid' = {dsig.max().item():.4f}")
print(f"sigmoid'(-6) = {dsig[0].item():.5f}, sigmoid'(6) = {dsig[-1].item():.5f}")
assert abs(dsig.max().item() - 0.25) < 1e-12 and x[dsig.argmax()].abs() < 1e-9
assert dsig[0] < 0.0025 and dsig[-1] < 0.0025
x_relu, _, drelu = curves["ReLU"]
assert (drelu[x_relu > 0] == 1).all() and (drelu[x_relu < 0] == 0).all()

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
for name, (xs, ys, dys) in curves.items():
    style = "--" if name == "leaky ReLU" else "-"  # it lies on ReLU for x > 0
    left.plot(xs, ys, style, label=name)
    right.plot(xs, dys, style, label=name)
right.axhline(0.25, color="grey", ls=":", lw=1)
right.annotate("max sigmoid' = 1/4", (0.3, 0.26), fontsize=8)
left.set_title("activation f(x)")
right.set_title("derivative f'(x) (autograd)")
for ax, label in ((left, "f(x)"), (right, "f'(x)")):
    ax.set_xlabel("x")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
left.set_ylim(-1.5, 3)
left.legend(fontsize=8)
fig.suptitle("Activation functions and their derivatives")
fig.tight_layout()

# %%
# The chain rule through sigmoids
# -------------------------------
# Back-propagating through ``n`` sigmoid layers multiplies the gradient by ``n`` sigmoid derivatives, each
# at most ``1/4``: the factor they contribute is at most ``4^-n``. ReLU contributes a factor of exactly 1
# wherever the unit is active.

depths = torch.arange(1, 21)
fig, ax = plt.subplots(figsize=(6, 3.8))
ax.semilogy(depths, 0.25**depths, "o-", ms=3, label="sigmoid: at most (1/4)^n")
ax.semilogy(depths, torch.ones_like(depths, dtype=torch.float64), "s-", ms=3, label="ReLU, active path: 1")
ax.set_xlabel("layers n")
ax.set_ylabel("product of activation derivatives")
ax.set_title("Why sigmoid gradients vanish with depth")
ax.legend()
ax.grid(alpha=0.3, which="both")
print(f"(1/4)^10 = {0.25**10:.1e}, (1/4)^20 = {0.25**20:.1e}")

# %%
# ReLU's sparsity
# ---------------
# At initialisation the pre-activations of a layer are symmetric around zero, so ReLU zeroes about half
# of them. :func:`nnatlas.analysis.activation_stats` reports the fraction of exact zeros of every layer;
# on average over the layers about half of the units are active, layer by layer it drifts (the deep
# layers of PyTorch's default initialisation are not exactly centred).

WIDTH, DEPTH = 64, 12


def mlp(act: type[nn.Module], batch_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(DEPTH):
        layers.append(nn.Linear(32 if i == 0 else WIDTH, WIDTH))
        if batch_norm:
            layers.append(nn.BatchNorm1d(WIDTH))
        layers.append(act())
    layers.append(nn.Linear(WIDTH, 10))
    return nn.Sequential(*layers)


torch.manual_seed(0)
batch, target = torch.randn(256, 32), torch.randint(0, 10, (256,))
stats = activation_stats(mlp(nn.ReLU), batch)
active = [1 - r.zero_fraction for r in stats.of_type("ReLU")]
print("active fraction per ReLU layer:", " ".join(f"{a:.2f}" for a in active))
print(f"mean over the layers: {sum(active) / len(active):.2f}")
assert 0.4 < sum(active) / len(active) < 0.6 and all(0.3 < a < 0.75 for a in active)

# %%
# Gradient flow: sigmoid vs ReLU vs ReLU + batch norm
# ---------------------------------------------------
# One forward and backward pass of a 12-layer MLP (64 units, PyTorch's default initialisation) on random
# data; :func:`~nnatlas.analysis.gradient_flow` reports the gradient norm of each layer's weights, input
# side first. Through sigmoids it shrinks by many orders of magnitude towards the input. With ReLU it
# shrinks too under PyTorch's default initialisation (its weight variance ``1 / (3 fan_in)`` shrinks the
# signal at every layer), but far less; with batch norm, which rescales every layer, the first layer's
# gradient is at least as large as the last one's.

flows = {}
for label, act, bn in [
    ("sigmoid", nn.Sigmoid, False),
    ("ReLU", nn.ReLU, False),
    ("ReLU + BN", nn.ReLU, True),
]:
    torch.manual_seed(0)
    flow = gradient_flow(mlp(act, bn), batch, nn.functional.cross_entropy, target=target)
    # keep the Linear layers only, so that the three nets line up layer by layer (BN has weights too)
    flows[label] = GradientFlow(rows=tuple(r for r in flow.rows if r.type == "Linear"), loss=flow.loss)
ratio = {label: flow.ratio_first_to_last() for label, flow in flows.items()}
for label, r in ratio.items():
    print(f"{label:<10} first / last Linear gradient norm: {r:.1e}")
assert ratio["sigmoid"] < 1e-3 * ratio["ReLU"]
assert ratio["ReLU"] < 1 <= ratio["ReLU + BN"]

fig = plot_gradient_flow(flows, title="Gradient norm per layer, 12-layer MLP")  # no path: the open figure

# %%
# Global average pooling: no parameters
# -------------------------------------
# A classifier head on ResNet-18's last feature map (512 channels, 7x7): flattening it into a fully
# connected layer needs ``512 * 7 * 7 * 1000 + 1000`` parameters; global average pooling needs none, and
# only the final ``512 -> 1000`` layer remains. Averaging also forgets where a feature was: a circular
# shift of the feature map leaves the pooled vector unchanged, while the flattened head sees a different
# input.

fc_head = nn.Sequential(nn.Flatten(), nn.Linear(512 * 7 * 7, 1000))
gap = nn.AdaptiveAvgPool2d(1)
gap_head = nn.Sequential(gap, nn.Flatten(), nn.Linear(512, 1000))
heads = {"flatten + FC": fc_head, "GAP": gap, "GAP + FC": gap_head}
for name, head in heads.items():
    print(f"{name:<14}{count_parameters(head):>14,} parameters")
assert count_parameters(gap) == 0
assert count_parameters(fc_head) == 512 * 49 * 1000 + 1000 and count_parameters(gap_head) == 512 * 1000 + 1000

features = torch.randn(1, 512, 7, 7)
shifted = torch.roll(features, shifts=(2, 3), dims=(-2, -1))
with torch.no_grad():
    gap_change = (gap_head(shifted) - gap_head(features)).abs().max().item()
    fc_change = ((fc_head(shifted) - fc_head(features)).norm() / fc_head(features).norm()).item()
print(f"GAP head: max change of the logits under the shift {gap_change:.1e}")
print(f"FC head:  relative change of the logits under the shift {fc_change:.2f}")
assert gap_change < 1e-5 and fc_change > 0.5

fig, ax = plt.subplots(figsize=(6, 3.6))
names = list(heads)
ax.bar(names, [max(count_parameters(h), 1) for h in heads.values()], color=["#D55E00", "#009E73", "#0072B2"])
ax.set_yscale("log")
ax.set_ylabel("parameters (log; GAP has 0)")
ax.set_xlabel("classifier head on a 512 x 7 x 7 feature map")
ax.set_title("Global average pooling removes the big fully connected layer")
ax.grid(alpha=0.3, axis="y")

# %%
# What the experiments measured
# -----------------------------
# ``nnatlas experiment run NAME`` trains and measures each claim over 3 seeds and gives a verdict by a
# criterion written before the run; the full runs are committed under ``docs/experiments/``. The table
# below is read from their ``result.json`` files (:func:`~nnatlas.experiments.load_results` and
# :func:`~nnatlas.experiments.summary_table`); where the verdict is not "supported", the experiment's own notes
# explain what the numbers show.

from _committed import committed_results
from nnatlas.experiments import summary_table

NAMES = ["batchnorm", "gap-vs-fc", "activations", "relu-sparsity", "exploding-gradients"]
results = committed_results(*NAMES)
print(summary_table(results))
for r in results:
    if r["verdict"] != "supported":
        print(f"\n{r['name']} ({r['verdict']}):")
        for note in r["notes"]:
            print(textwrap.fill(note, 100, initial_indent="  ", subsequent_indent="  "))
