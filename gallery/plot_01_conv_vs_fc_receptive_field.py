"""
Convolution vs fully connected, and the receptive field
=======================================================

.. epigraph::

   局部连接：卷积核尺寸远小于输入特征图的尺寸，输出层上的每个节点都只与输入层的部分节点连接

   *Local connectivity: the kernel is far smaller than the input feature map; each node of the output
   layer connects to only part of the nodes of the input layer.*

   权值共享：卷积核的滑动窗机制，使得输出层上不同位置的节点与输入层的连接权值都是一样的（即卷积核参数）。而在全连接层中，不同节点的连接权值都是不同的。

   *Weight sharing: because the kernel slides over the input, output nodes at different positions use the
   same connection weights (the kernel's parameters); in a fully connected layer every node has its own
   weights.*

   -- notes, 卷积与全连接

.. epigraph::

   对于某层输出特征图上的某个点，在卷积神经网络的原始输入数据上能影响到这个点的取值的区域。

   *For a point of some layer's output feature map: the region of the network's original input that can
   affect its value.*

   -- notes, 感受野

This page maps a ``1 x 16 x 16`` image to a ``4 x 16 x 16`` feature map twice, once with a 3x3
convolution and once with a fully connected layer, and counts their parameters with
:func:`nnatlas.analysis.count_parameters`. It writes the convolution out as the matrix a fully connected
layer would need to do the same thing (local connectivity shows as a band of non-zeros, weight sharing as
the same few values repeated), checks that a convolution commutes with a shift of its input while a fully
connected layer does not, and measures the receptive field of stacked 3x3 convolutions, both the
theoretical one (:func:`nnatlas.analysis.receptive_field`) and the effective one
(:func:`nnatlas.analysis.effective_receptive_field`).
"""

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle
from torch import nn

from nnatlas.analysis import count_parameters, effective_receptive_field, receptive_field

torch.manual_seed(0)
C_IN, C_OUT, H, W = 1, 4, 16, 16

# %%
# Same input, same output, very different parameter counts
# --------------------------------------------------------
# A 3x3 convolution with "same" padding maps ``(1, 16, 16)`` to ``(4, 16, 16)``; a fully connected layer
# that does the same maps the flattened 256 inputs to 1,024 outputs. The convolution needs
# ``(3 * 3 * 1 + 1) * 4`` parameters whatever the image size; the fully connected layer needs
# ``(256 + 1) * 1024``, which grows with the square of the number of pixels.

conv = nn.Conv2d(C_IN, C_OUT, 3, padding=1, padding_mode="circular")
fc = nn.Linear(C_IN * H * W, C_OUT * H * W)

n_conv, n_fc = count_parameters(conv), count_parameters(fc)
assert n_conv == (3 * 3 * C_IN + 1) * C_OUT
assert n_fc == (C_IN * H * W + 1) * C_OUT * H * W
print(f"{'layer':<16}{'parameters':>12}")
print(f"{'conv 3x3':<16}{n_conv:>12,}")
print(f"{'fully connected':<16}{n_fc:>12,}")
print(f"ratio FC / conv: {n_fc / n_conv:,.0f}x")

# %%
# The convolution as a fully connected layer
# ------------------------------------------
# Any linear layer is a matrix. Feeding the convolution (without its bias) every basis image in turn gives
# the ``1024 x 256`` matrix that a fully connected layer would need to compute the same function. Row ``i``
# is output node ``i``: only 9 of its 256 entries are non-zero (local connectivity), and all 1,024 rows
# reuse the same 36 kernel values (weight sharing). The fully connected layer's matrix is dense, and
# every entry is its own parameter.

with torch.no_grad():
    basis = torch.eye(C_IN * H * W).reshape(-1, C_IN, H, W)  # (256, 1, 16, 16)
    conv_matrix = (conv(basis) - conv.bias.view(1, -1, 1, 1)).reshape(C_IN * H * W, -1).T  # (1024, 256)
nonzero = conv_matrix != 0
distinct = torch.unique(conv_matrix[nonzero]).numel()
print(f"conv as a matrix: {tuple(conv_matrix.shape)}, non-zeros per row: {nonzero.sum(1).unique().tolist()}")
print(f"distinct non-zero values: {distinct} (the kernel has {conv.weight.numel()} weights)")
print(f"fully connected matrix: {tuple(fc.weight.shape)}, non-zeros per row: {C_IN * H * W}")
assert (nonzero.sum(1) == 3 * 3 * C_IN).all()
assert distinct <= conv.weight.numel()

fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
rows = slice(0, 64)  # the first 64 output nodes (channel 0, rows 0-3 of the output map)
for ax, matrix, name in [(axes[0], conv_matrix, "3x3 convolution"), (axes[1], fc.weight, "fully connected")]:
    ax.imshow(matrix.detach()[rows].abs(), cmap="magma", aspect="auto", interpolation="nearest")
    ax.set_title(f"{name}: |weight| of output nodes 0-63")
    ax.set_xlabel("input node (pixel index)")
    ax.set_ylabel("output node")
fig.suptitle("Local connectivity and weight sharing: the same map as a dense matrix")
fig.tight_layout()

# %%
# Shift the input, and the convolution's output shifts with it
# ------------------------------------------------------------
# Because the same kernel is applied everywhere, shifting the input shifts the output by the same amount:
# ``conv(shift(x)) == shift(conv(x))`` (exactly here, with circular padding; with zero padding it holds
# away from the border). The fully connected layer has no such structure: each output node has its own
# weights, and a shifted input gives an unrelated output.


def shift(t: torch.Tensor, dy: int = 3, dx: int = 2) -> torch.Tensor:
    return torch.roll(t, shifts=(dy, dx), dims=(-2, -1))


x = torch.zeros(1, C_IN, H, W)
x[..., 4:8, 3:6] = 1.0  # a small bright rectangle
with torch.no_grad():
    conv_error = (conv(shift(x)) - shift(conv(x))).abs().max().item()
    fc_out = fc(x.flatten(1)).view(1, C_OUT, H, W)
    fc_out_shifted = fc(shift(x).flatten(1)).view(1, C_OUT, H, W)
    fc_error = ((fc_out_shifted - shift(fc_out)).norm() / fc_out.norm()).item()
print(f"conv: max |conv(shift(x)) - shift(conv(x))| = {conv_error:.2e}")
print(f"FC:   ||fc(shift(x)) - shift(fc(x))|| / ||fc(x)|| = {fc_error:.2f}")
assert conv_error < 1e-5
assert fc_error > 0.5

fig, axes = plt.subplots(2, 3, figsize=(9, 6))
with torch.no_grad():
    panels = [
        ("input x", x[0, 0]),
        ("conv(x), channel 0", conv(x)[0, 0]),
        ("fc(x), channel 0", fc_out[0, 0]),
        ("shift(x) by (3, 2)", shift(x)[0, 0]),
        ("conv(shift(x)): shifted too", conv(shift(x))[0, 0]),
        ("fc(shift(x)): unrelated", fc_out_shifted[0, 0]),
    ]
for ax, (title, image) in zip(axes.flat, panels, strict=True):
    ax.imshow(image, cmap="viridis", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
fig.suptitle("Shift equivariance: convolution yes, fully connected no")
fig.tight_layout()

# %%
# Receptive field of stacked 3x3 convolutions
# -------------------------------------------
# One 3x3 convolution (stride 1) sees a 3x3 window; each further one adds a ring of one pixel, so ``n``
# stacked layers see ``2n + 1`` pixels across. :func:`~nnatlas.analysis.receptive_field` follows one
# forward pass and reports the field of every layer; a stride-2 layer doubles how fast it grows after it.


def stack(depth: int, channels: int = 4, stride_at: int | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        stride = 2 if i == stride_at else 1
        layers += [nn.Conv2d(C_IN if i == 0 else channels, channels, 3, stride=stride, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


depths = list(range(1, 9))
with torch.device("meta"):  # the field needs shapes only: nothing is allocated or computed
    rf_plain = receptive_field(stack(8), (1, C_IN, 64, 64))
    rf_strided = receptive_field(stack(8, stride_at=0), (1, C_IN, 64, 64))
# the n-th convolution is module "2n - 2" of the Sequential (conv, ReLU, conv, ReLU, ...)
plain = [rf_plain.layers[str(2 * n - 2)].size[0] for n in depths]
strided = [rf_strided.layers[str(2 * n - 2)].size[0] for n in depths]
print(f"{'layers':>6} {'RF stride 1':>12} {'RF first layer stride 2':>24}")
for n, a, b in zip(depths, plain, strided, strict=True):
    print(f"{n:>6} {a:>12} {b:>24}")
assert plain == [2 * n + 1 for n in depths]
assert strided == [4 * n - 1 for n in depths]  # 3, then +4 per layer: the jump is 2 after the first

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(depths, plain, "o-", label="all stride 1: 2n + 1")
ax.plot(depths, strided, "s-", label="first layer stride 2: 4n - 1")
ax.set_xlabel("number of stacked 3x3 conv layers n")
ax.set_ylabel("receptive field (pixels across)")
ax.set_title("Theoretical receptive field of stacked 3x3 convolutions")
ax.legend()
ax.grid(alpha=0.3)

# %%
# The effective receptive field is smaller than the theoretical one
# -----------------------------------------------------------------
# The theoretical field says which input pixels *can* change an output. Luo et al. (NeurIPS 2016) measure
# how much each one *does*: put a gradient of 1 on the centre output, back-propagate to the input and
# average ``|dy/dx|`` over random inputs. The heat map is roughly Gaussian; its 95 % extent fills only part
# of the theoretical square (dashed), and a smaller part the deeper the stack.

torch.manual_seed(0)
net = stack(16, channels=8)
size = 41
erfs = {
    n: effective_receptive_field(net, (1, C_IN, size, size), layer=str(2 * n - 2), samples=4)
    for n in (2, 4, 8, 16)
}

print(f"{'layers':>6} {'theoretical':>12} {'ERF 95% extent':>15} {'fraction':>9}")
fractions = []
for n, erf in erfs.items():
    theory = erf.theoretical.size[0]
    fractions.append(erf.extent[0] / theory)
    print(f"{n:>6} {theory:>12} {erf.extent[0]:>15} {fractions[-1]:>9.2f}")
    assert 0 < erf.extent[0] <= theory
assert fractions[-1] < fractions[0]

fig, axes = plt.subplots(1, len(erfs), figsize=(12, 3.4))
for ax, (n, erf) in zip(axes, erfs.items(), strict=True):
    ax.imshow(erf.heatmap, cmap="magma", interpolation="nearest")
    (y0, y1), (x0, x1) = erf.theoretical.interval(erf.centre)
    y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, size - 1), min(x1, size - 1)
    ax.add_patch(
        Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ls="--", color="white")
    )
    (b0, b1), (c0, c1) = erf.bounds
    ax.add_patch(Rectangle((c0 - 0.5, b0 - 0.5), c1 - c0 + 1, b1 - b0 + 1, fill=False, color="cyan"))
    ax.set_title(f"{n} layers: ERF {erf.extent[0]} vs RF {erf.theoretical.size[0]}", fontsize=9)
    ax.set_xlabel("x (input pixels)")
    ax.set_ylabel("y (input pixels)")
fig.suptitle("Effective receptive field (cyan: 95% of the mass; dashed: theoretical field)")
fig.tight_layout()
