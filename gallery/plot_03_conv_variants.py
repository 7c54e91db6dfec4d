"""
Convolution variants: grouped, transposed, dilated, deformable
==============================================================

.. epigraph::

   将输入特征/图片的通道分成组，每个卷积核也相应地分成组，在对应的组内做卷积。

   *Split the channels of the input features/image into groups, split the kernels into groups to match,
   and convolve within each group.*

   下面这个示意图就是一种反卷积。把原来 $2*2$ 的图片还原成 $4*4$ 的

   *The figure below is one kind of transposed convolution: it turns the original 2x2 image back into a
   4x4 one.*

   尺寸为$k_w*k_h$的标准卷积核，其所对应的扩张率为$r$的空洞卷积核尺寸为 $k_e+(r-1)(k_e-1),e∈{w，h}$。

   *A standard kernel of size k_w x k_h becomes, with dilation rate r, a dilated kernel of size
   k_e + (r - 1)(k_e - 1) for e in {w, h}.*

   可变形卷积在卷积核的每个采样点上添加一个可学习的偏移量（offset），让采样点不再局限于规则的网格点

   *Deformable convolution adds a learnable offset to each sampling point of the kernel, so that the
   sampling points are no longer tied to the regular grid.*

   -- notes, 卷积核变种

Four variants of the convolution, each checked against the plain ``torch.nn.Conv2d`` it generalises:
grouped convolution divides parameters and multiply-adds by the number of groups; transposed convolution
maps the notes' 2x2 input to 4x4 and is a direct convolution over a zero-inserted, zero-padded input;
dilated convolution spreads 3x3 weights over a larger window and grows the receptive field quickly;
deformable convolution (:class:`nnatlas.layers.DeformConv2d`) with zero offsets is the plain convolution,
and its offsets move the sampling points anywhere.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from nnatlas.analysis import conv_transpose_output_size, count_parameters, receptive_field, summary
from nnatlas.layers import (
    DeformConv2d,
    conv_transpose2d,
    dilated_conv2d,
    effective_kernel_size,
    grouped_conv2d,
)
from nnatlas.viz import conv_animation, save_sheet

torch.manual_seed(0)

# %%
# Grouped convolution: groups times fewer weights
# -----------------------------------------------
# With ``g`` groups, each filter sees only ``C_in / g`` input channels, so a layer has
# ``(k_h k_w C_in / g + 1) C_out`` parameters and ``g`` times fewer multiply-adds (MACs, counted by
# :func:`nnatlas.analysis.summary`). :func:`nnatlas.layers.grouped_conv2d` is a ``torch.nn.Conv2d`` with
# ``groups=g``: same parameter count, same output for the same weights.

C_IN, C_OUT, K = 16, 32, 3
x = torch.randn(1, C_IN, 12, 12)
print(f"{'groups':>6}{'formula':>10}{'params':>10}{'MACs':>10}")
macs_dense = None
for g in (1, 2, 4, 8, 16):
    ours = grouped_conv2d(C_IN, C_OUT, K, groups=g)
    ref = nn.Conv2d(C_IN, C_OUT, K, padding=1, groups=g)
    ref.load_state_dict(ours.state_dict())
    params = count_parameters(ours)
    macs = summary(ours, (1, C_IN, 12, 12)).total_macs
    macs_dense = macs_dense or macs
    print(f"{g:>6}{(K * K * C_IN // g + 1) * C_OUT:>10,}{params:>10,}{macs:>10,}")
    assert params == (K * K * C_IN // g + 1) * C_OUT == count_parameters(ref)
    assert macs * g == macs_dense
    torch.testing.assert_close(ours(x), ref(x))

# %%
# Which input channels each filter sees: block-diagonal connectivity. A filter of group ``i`` has
# non-zero weights only on the input channels of group ``i``.

fig, axes = plt.subplots(1, 3, figsize=(10, 3.8))
for ax, g in zip(axes, (1, 2, 4), strict=True):
    layer = grouped_conv2d(C_IN, C_OUT, K, groups=g)
    mask = torch.zeros(C_OUT, C_IN)
    per_in, per_out = C_IN // g, C_OUT // g
    for i in range(g):  # filter group i reads input group i: weight (C_out, C_in / g, k, k)
        mask[i * per_out : (i + 1) * per_out, i * per_in : (i + 1) * per_in] = (
            layer.weight[i * per_out : (i + 1) * per_out].detach().abs().sum(dim=(2, 3)) > 0
        )
    ax.imshow(mask, cmap="Blues", interpolation="nearest")
    ax.set_title(f"groups={g}: {count_parameters(layer):,} parameters")
    ax.set_xlabel("input channel")
    ax.set_ylabel("output channel (filter)")
fig.suptitle("Grouped convolution: each filter connects only to its group's input channels")
fig.tight_layout()

# %%
# Transposed convolution: the notes' 2x2 -> 4x4
# ---------------------------------------------
# A transposed convolution's output size is ``(H - 1) s - 2p + d (k - 1) + output_padding + 1``
# (:func:`nnatlas.analysis.conv_transpose_output_size`). With ``k = 3, s = 1, p = 0`` a 2x2 input gives the
# notes' 4x4. It is the direct convolution, with the kernel flipped, of the input after ``s - 1`` zeros
# are inserted between its elements and ``d (k - 1) - p`` zeros are padded around it.

up = conv_transpose2d(1, 1, 3, bias=False)
small = torch.arange(1.0, 5.0).view(1, 1, 2, 2)
with torch.no_grad():
    out = up(small)
    direct = F.conv2d(F.pad(small, (2, 2, 2, 2)), up.weight.flip(-2, -1))  # 6x6 zero-padded grid, 3x3 kernel
print("input 2x2:\n", small[0, 0])
print("output", tuple(out.shape[-2:]), ":\n", out[0, 0])
assert out.shape[-2:] == (4, 4) == (conv_transpose_output_size(2, 3),) * 2
torch.testing.assert_close(out, direct)

print(f"{'H':>3}{'k':>3}{'s':>3}{'p':>3}{'op':>4}{'formula':>9}{'torch':>7}")
for h, k, s, p, op in [(2, 3, 1, 0, 0), (4, 4, 2, 1, 0), (5, 3, 2, 1, 1), (7, 2, 2, 0, 0), (3, 5, 3, 2, 2)]:
    layer = conv_transpose2d(1, 1, k, stride=s, padding=p, output_padding=op)
    size = conv_transpose_output_size(h, k, s, p, op)
    actual = layer(torch.zeros(1, 1, h, h)).shape[-1]
    print(f"{h:>3}{k:>3}{s:>3}{p:>3}{op:>4}{size:>9}{actual:>7}")
    assert size == (h - 1) * s - 2 * p + (k - 1) + op + 1 == actual

# %%
# Multiply-adds of a transposed convolution are counted per *input* element: each of the ``H W C_in``
# input elements is multiplied by the ``k^2 C_out`` weights it spreads over the output. The equivalent
# direct convolution does more multiplications, but most of them are by inserted zeros.

C_T = 8
up8 = conv_transpose2d(C_T, C_T, 3, stride=2, padding=1, output_padding=1)
macs_t = summary(up8, (1, C_T, 2, 2)).total_macs
print(f"transposed conv 2x2 -> 4x4, {C_T} -> {C_T} channels, stride 2: {macs_t:,} MACs")
print(f"= input elements {2 * 2 * C_T} x weights per element {3 * 3 * C_T}")
assert macs_t == (2 * 2 * C_T) * (3 * 3 * C_T)
equivalent = nn.Conv2d(C_T, C_T, 3)  # over the 6x6 zero-inserted, padded grid: 4x4 outputs
macs_direct = summary(equivalent, (1, C_T, 6, 6)).total_macs
print(f"the equivalent direct conv over the zero-inserted 6x6 grid: {macs_direct:,} MACs")
assert macs_direct == 4 * 4 * C_T * 3 * 3 * C_T

# %%
# Dilated convolution: a larger window for the same weights
# ---------------------------------------------------------
# A ``k x k`` kernel with dilation ``r`` has ``r - 1`` holes between its taps and spans
# ``k + (r - 1)(k - 1)`` pixels (:func:`nnatlas.layers.effective_kernel_size`). It is the dense convolution
# whose kernel of that size is zero in the holes, and has the parameters of the ``k x k`` kernel.

print(f"{'k':>3}{'r':>3}{'k + (r-1)(k-1)':>16}{'effective_kernel_size':>23}")
for k in (3, 5):
    for r in (1, 2, 4):
        assert effective_kernel_size(k, r) == k + (r - 1) * (k - 1)
        print(f"{k:>3}{r:>3}{k + (r - 1) * (k - 1):>16}{effective_kernel_size(k, r):>23}")

r = 3
dil = dilated_conv2d(2, 4, 3, dilation=r)
k_e = effective_kernel_size(3, r)
dense_kernel = torch.zeros(4, 2, k_e, k_e)
dense_kernel[:, :, ::r, ::r] = dil.weight.detach()  # the taps, holes left at zero
xd = torch.randn(1, 2, 15, 15)
with torch.no_grad():
    torch.testing.assert_close(dil(xd), F.conv2d(xd, dense_kernel, dil.bias, padding=k_e // 2))
assert count_parameters(dil) == (3 * 3 * 2 + 1) * 4
print(f"dilation {r}: a {k_e}x{k_e} dense kernel with {9} non-zero taps gives the same output")

fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
for ax, rate in zip(axes, (1, 2, 3), strict=True):
    size = effective_kernel_size(3, rate)
    grid = torch.zeros(size, size)
    grid[::rate, ::rate] = 1
    ax.imshow(grid, cmap="Greens", vmin=0, vmax=1.3, interpolation="nearest")
    ax.set_xticks(torch.arange(size + 1) - 0.5, minor=True)
    ax.set_yticks(torch.arange(size + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="grey", lw=0.5)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_title(f"dilation {rate}: {size}x{size} span, 9 taps")
    ax.set_xlabel("kernel column")
    ax.set_ylabel("kernel row")
fig.suptitle("A 3x3 kernel with dilation r (green: taps, white: holes)")
fig.tight_layout()

# %%
# Stacking dilated convolutions grows the receptive field exponentially with dilations 1, 2, 4, 8 (each
# layer adds ``2 r`` pixels) where plain 3x3 layers grow it linearly, with the same parameters.


def stack(rates: list[int]) -> nn.Sequential:
    return nn.Sequential(*[dilated_conv2d(4, 4, 3, dilation=rate) for rate in rates])


plans = {"dilations 1,1,1,1": [1, 1, 1, 1], "dilations 1,2,4,8": [1, 2, 4, 8]}
fields = {}
for label, rates in plans.items():
    rf = receptive_field(stack(rates), (1, 4, 64, 64))
    fields[label] = [rf.layers[str(i)].size[0] for i in range(len(rates))]
    print(
        f"{label}: receptive field per layer {fields[label]}, {count_parameters(stack(rates)):,} parameters"
    )
assert fields["dilations 1,1,1,1"] == [3, 5, 7, 9]
assert fields["dilations 1,2,4,8"] == [3, 7, 15, 31]

fig, ax = plt.subplots(figsize=(6, 4))
for label, sizes in fields.items():
    ax.plot(range(1, 5), sizes, "o-", label=label)
ax.set_xticks(range(1, 5))
ax.set_xlabel("layer")
ax.set_ylabel("receptive field (pixels across)")
ax.set_title("Receptive field of four stacked 3x3 convolutions")
ax.legend()
ax.grid(alpha=0.3)

# %%
# Conv-arithmetic frames
# ----------------------
# :func:`nnatlas.viz.conv_animation` computes every frame of a convolution in the style of Dumoulin and
# Visin's figures, and :func:`nnatlas.viz.save_sheet` writes them side by side on one PNG. The transposed
# convolution is drawn as its equivalent direct convolution: the 2x2 input (blue) framed by two rings of
# zeros (white), a 3x3 kernel (dark taps) sliding over it, the 4x4 output above.

sheets = {}
with tempfile.TemporaryDirectory() as tmp:
    for name, anim in {
        "transposed": conv_animation("transposed", input=2, kernel=3),
        "dilated": conv_animation("dilated", input=7, kernel=3, dilation=2),
    }.items():
        print(f"{anim.title}: {len(anim.frames)} frames on a {anim.grid}x{anim.grid} grid")
        path = Path(tmp) / f"{name}.png"
        save_sheet(anim, path)
        sheets[name] = (anim, plt.imread(path))
assert sheets["transposed"][0].output == 4 and len(sheets["transposed"][0].frames) == 16
assert sheets["dilated"][0].output == 3 and len(sheets["dilated"][0].frames) == 9

for name, (anim, image) in sheets.items():
    fig, ax = plt.subplots(figsize=(10, 10 * image.shape[0] / image.shape[1]))
    ax.imshow(image)
    ax.set_axis_off()
    ax.set_title(f"{name}: every frame of the animation ({anim.output}x{anim.output} output)")
    fig.tight_layout()

# %%
# The same two configurations as the animations committed with the documentation:
#
# .. image:: /img/transposed_2x2_to_4x4.gif
#    :alt: transposed convolution, 2x2 input, kernel 3, 4x4 output
#
# .. image:: /img/dilated_3x3_d2_on_7x7.gif
#    :alt: dilated 3x3 convolution, dilation 2, on a 7x7 input

# %%
# Deformable convolution: a plain convolution plus learned offsets
# ----------------------------------------------------------------
# :class:`nnatlas.layers.DeformConv2d` predicts an offset ``(dy, dx)`` for each of the 9 taps at every
# output position with its own small convolution, zero-initialised, and samples the input there by
# bilinear interpolation. With zero offsets it is exactly the plain convolution with the same weights; with
# the fixed offsets ``(r - 1) p_n`` it is the dilated convolution: "dilated convolution can be seen as a
# special deformable convolution", as the notes say.

deform = DeformConv2d(4, 8, 3)
plain = nn.Conv2d(4, 8, 3, padding=1)
plain.load_state_dict({"weight": deform.weight, "bias": deform.bias})
xf = torch.randn(2, 4, 10, 10)
with torch.no_grad():
    offsets = deform.conv_offset(xf)
    torch.testing.assert_close(deform(xf), plain(xf))
print(
    f"offset branch output {tuple(offsets.shape)}, all zero at initialisation: {bool((offsets == 0).all())}"
)
assert (offsets == 0).all()

taps = torch.tensor([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)], dtype=torch.float32)  # p_n, row-major
rate = 2
fixed = ((rate - 1) * taps).flatten().view(1, 18, 1, 1).expand(2, 18, 10, 10)  # (dy, dx) per tap
dilated = nn.Conv2d(4, 8, 3, padding=rate, dilation=rate)
dilated.load_state_dict(plain.state_dict())
with torch.no_grad():
    torch.testing.assert_close(deform(xf, fixed), dilated(xf), atol=1e-5, rtol=1e-5)
print("zero offsets = nn.Conv2d; offsets (r - 1) p_n = nn.Conv2d(dilation=r): both checked")

# %%
# Where the 9 taps sample, for one output position, under four offset fields (the notes' figure 1.8):
# the regular grid, offsets predicted by an offset branch with random weights, a horizontal stretch (a
# scale change, like a dilation along x) and a rotation by 30 degrees.

with torch.no_grad():
    nn.init.normal_(deform.conv_offset.weight, std=0.3)
    predicted = deform.conv_offset(xf)[0, :, 5, 5].view(9, 2)  # (dy, dx) per tap at output (5, 5)
angle = torch.tensor(torch.pi / 6)
rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])])
fields_of_offsets = {
    "(a) regular grid: zero offsets": torch.zeros(9, 2),
    "(b) offsets from a random offset branch": predicted,
    "(c) stretched along x (scale)": taps * torch.tensor([0.0, 1.5]),
    "(d) rotated by 30 degrees": taps @ rotation.T - taps,
}
fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
for ax, (title, delta) in zip(axes, fields_of_offsets.items(), strict=True):
    points = taps + delta  # p_n + delta p_n, relative to the output position p_0
    ax.scatter(taps[:, 1], taps[:, 0], s=80, facecolors="none", edgecolors="grey", label="regular grid")
    ax.scatter(points[:, 1], points[:, 0], s=40, color="#0072B2", label="sampled")
    for (y0, x0), (y1, x1) in zip(taps.tolist(), points.tolist(), strict=True):
        ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": "#D55E00", "lw": 0.8})
    ax.set_xlim(-3, 3)
    ax.set_ylim(3, -3)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x offset from p0 (pixels)")
    ax.set_ylabel("y offset from p0 (pixels)")
    ax.grid(alpha=0.3)
axes[0].legend(loc="lower left", fontsize=7)
fig.suptitle("Deformable convolution: sampling points p0 + p_n + delta p_n of a 3x3 kernel")
fig.tight_layout()
