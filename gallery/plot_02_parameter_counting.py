"""
Counting the parameters of a convolution
========================================

.. epigraph::

   $(卷积核w*卷积核h*输入通道+偏置)*输出通道$

   *(kernel width x kernel height x input channels + bias) x output channels.*

   -- notes, 卷积核参数计算

The notes check this formula on the three residual blocks compared by ERFNet (Romera et al. 2017,
fig. 2): non-bottleneck ``18w^2 + 2w``, bottleneck ``17w^2/16 + 3w/2`` and non-bottleneck-1D
``12w^2 + 4w``. This page checks the formula against :func:`nnatlas.analysis.count_parameters` on a few
layers, then the three ERFNet formulas against the real blocks of :mod:`nnatlas.layers`, and explains the
difference that their batch norms make.
"""

import matplotlib.pyplot as plt
import torch
from torch import nn

from nnatlas.analysis import count_parameters, receptive_field
from nnatlas.layers import ERFBottleneck, ERFNonBottleneck, ERFNonBottleneck1D

torch.manual_seed(0)

# %%
# The formula on single layers
# ----------------------------
# Each output channel has one kernel of ``k_w * k_h * C_in`` weights plus one bias. Without a bias (as
# before a batch norm, which has its own shift) the ``+ 1`` goes away.


def formula(k_w: int, k_h: int, c_in: int, c_out: int, bias: bool = True) -> int:
    return (k_w * k_h * c_in + int(bias)) * c_out


layers = {
    "AlexNet conv1 11x11, 3 -> 96": (nn.Conv2d(3, 96, 11, stride=4), (11, 11, 3, 96, True)),
    "VGG 3x3, 64 -> 128": (nn.Conv2d(64, 128, 3, padding=1), (3, 3, 64, 128, True)),
    "1x1 bottleneck, 256 -> 64": (nn.Conv2d(256, 64, 1), (1, 1, 256, 64, True)),
    "ERFNet 3x1, 64 -> 64": (nn.Conv2d(64, 64, (3, 1)), (1, 3, 64, 64, True)),
    "ResNet 3x3 without bias, 64 -> 64": (nn.Conv2d(64, 64, 3, bias=False), (3, 3, 64, 64, False)),
    "5x5 dilated 4, 32 -> 32": (nn.Conv2d(32, 32, 5, dilation=4), (5, 5, 32, 32, True)),
}
print(f"{'layer':<36}{'formula':>12}{'count_parameters':>18}")
for name, (layer, args) in layers.items():
    expected, counted = formula(*args), count_parameters(layer)
    print(f"{name:<36}{expected:>12,}{counted:>18,}")
    assert expected == counted, name

# %%
# The ERFNet blocks, exactly as the notes count them
# --------------------------------------------------
# The notes add up the convolutions of each block, with a bias on every one:
#
# - non-bottleneck: two 3x3 convolutions ``w -> w``: ``2 (9w + 1) w = 18w^2 + 2w``;
# - bottleneck: 1x1 ``w -> w/4``, 3x3 ``w/4 -> w/4``, 1x1 ``w/4 -> w``: ``17w^2/16 + 3w/2``;
# - non-bottleneck-1D: each 3x3 factorised into 3x1 then 1x3, four convolutions
#   ``4 (3w + 1) w = 12w^2 + 4w``.
#
# The blocks of :mod:`nnatlas.layers` carry batch norms as the authors' code does; with ``norm=False``
# only the convolutions remain, and the counts are the notes' exactly.

NOTES = {
    "non-bottleneck": (ERFNonBottleneck, lambda w: 18 * w**2 + 2 * w),
    "bottleneck": (ERFBottleneck, lambda w: 17 * w**2 // 16 + 3 * w // 2),
    "non-bottleneck-1D": (ERFNonBottleneck1D, lambda w: 12 * w**2 + 4 * w),
}
widths = [16, 32, 64, 128, 256]  # multiples of 4: the bottleneck's inner width is w / 4

print(f"{'w':>5}" + "".join(f"{name:>20}" for name in NOTES))
counts: dict[str, list[int]] = {name: [] for name in NOTES}
for w in widths:
    for name, (block, notes_formula) in NOTES.items():
        with torch.device("meta"):  # counting only: no memory, no initialisation
            n = count_parameters(block(w, norm=False))
        assert n == notes_formula(w), (name, w)
        counts[name].append(n)
    print(f"{w:>5}" + "".join(f"{counts[name][-1]:>20,}" for name in NOTES))

# %%
# What the batch norms add
# ------------------------
# With their default ``norm=True`` the blocks have a ``BatchNorm2d`` after some of their convolutions.
# Each one has two learnable parameters per channel (the scale and the shift); its running mean and
# variance are buffers, not parameters. So the real blocks have, on top of the notes' counts:
#
# - non-bottleneck: ``bn1`` and ``bn2`` on ``w`` channels, ``+ 4w``;
# - bottleneck: ``bn1`` and ``bn2`` on ``w/4``, ``bn3`` on ``w``, ``+ 2 (w/4 + w/4 + w) = + 3w``;
# - non-bottleneck-1D: batch norm only after the second and the fourth convolution (as in the authors'
#   ``non_bottleneck_1d``), ``+ 4w``.
#
# Every convolution keeps its bias even where a batch norm follows, as in the authors' code; there the
# bias is redundant (the batch norm subtracts the mean and adds its own shift), which is why torchvision's
# ResNet leaves it out. The dilation of a block changes its receptive field, not its parameter count.

BN_EXTRA = {
    "non-bottleneck": lambda w: 4 * w,
    "bottleneck": lambda w: 3 * w,
    "non-bottleneck-1D": lambda w: 4 * w,
}
print(f"{'block':<20}{'w':>5}{'notes':>10}{'with BN':>10}{'extra':>8}")
for name, (block, notes_formula) in NOTES.items():
    for w in (64, 128):
        with torch.device("meta"):
            with_bn = count_parameters(block(w))
            dilated = count_parameters(block(w, dilation=8))
        assert with_bn == notes_formula(w) + BN_EXTRA[name](w)
        assert dilated == with_bn
        print(f"{name:<20}{w:>5}{notes_formula(w):>10,}{with_bn:>10,}{with_bn - notes_formula(w):>8,}")

# %%
# Which width? The notes' ``w_0``
# -------------------------------
# The notes also write the counts in terms of ``w_0``: ``18w_0^2 + 2w_0``, ``17w_0^2 + 6w_0`` and
# ``12w_0^2 + 4w_0``. These compare the blocks as ERFNet's figure 2 draws them: the non-bottleneck blocks
# on ``w_0`` channels, the bottleneck on ``4 w_0`` channels (inner width ``w_0``), as in ResNet. With
# ``w = 4 w_0`` the bottleneck's ``17w^2/16 + 3w/2`` becomes ``17w_0^2 + 6w_0``.

for w0 in (16, 32, 64):
    with torch.device("meta"):
        assert count_parameters(ERFNonBottleneck(w0, norm=False)) == 18 * w0**2 + 2 * w0
        assert count_parameters(ERFBottleneck(4 * w0, norm=False)) == 17 * w0**2 + 6 * w0
        assert count_parameters(ERFNonBottleneck1D(w0, norm=False)) == 12 * w0**2 + 4 * w0
print("the w_0 forms hold for w_0 = 16, 32, 64 (bottleneck built on 4 w_0 channels)")

# %%
# Same receptive field, a third fewer weights
# -------------------------------------------
# Factorising a 3x3 convolution into 3x1 then 1x3 keeps its 3x3 window, so the 1D block sees what the
# non-bottleneck block sees (5x5 undilated, ``3 + 2d`` pixels across with dilation ``d`` in the second half) with ``12w^2 + 4w``
# instead of ``18w^2 + 2w`` parameters: the ratio tends to 2/3 as ``w`` grows.

for d in (1, 2, 4):
    with torch.device("meta"):
        rf_nb = receptive_field(ERFNonBottleneck(16, dilation=d), (1, 16, 64, 64)).final.size
        rf_1d = receptive_field(ERFNonBottleneck1D(16, dilation=d), (1, 16, 64, 64)).final.size
    print(f"dilation {d}: non-bottleneck field {rf_nb}, non-bottleneck-1D field {rf_1d}")
    assert rf_nb == rf_1d == (3 + 2 * d,) * 2

ratios = [b / a for a, b in zip(counts["non-bottleneck"], counts["non-bottleneck-1D"], strict=True)]
print("1D / non-bottleneck:", ", ".join(f"w={w}: {r:.4f}" for w, r in zip(widths, ratios, strict=True)))
assert all(r > 2 / 3 for r in ratios) and abs(ratios[-1] - 2 / 3) < 1e-2

# %%
# The three formulas against the measured counts
# ----------------------------------------------
# Lines: the notes' formulas; markers: :func:`~nnatlas.analysis.count_parameters` on the blocks built
# with ``norm=False``.

ws = torch.linspace(widths[0], widths[-1], 200)
curves = {
    "non-bottleneck": 18 * ws**2 + 2 * ws,
    "bottleneck": 17 * ws**2 / 16 + 3 * ws / 2,
    "non-bottleneck-1D": 12 * ws**2 + 4 * ws,
}
fig, ax = plt.subplots(figsize=(6.5, 4.2))
for (name, curve), marker in zip(curves.items(), "osD", strict=True):
    (line,) = ax.plot(ws, curve, label=f"{name} (notes)")
    ax.plot(widths, counts[name], marker, color=line.get_color(), label=f"{name} (measured)")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("block width w (channels)")
ax.set_ylabel("parameters")
ax.set_title("ERFNet residual blocks: notes' formulas vs count_parameters")
ax.legend(fontsize=8)
ax.grid(alpha=0.3, which="both")
