"""``transposed-conv``: a transposed convolution turns the notes' 2x2 image into a 4x4 one; it is the ordinary
convolution of the zero-inserted, zero-padded input with the flipped kernel; and with stride 2 its uneven
overlap draws a checkerboard that a resize-then-convolve upsampler does not.

Claim (notes, 卷积核变种, 转置卷积/反卷积): the transposed convolution is the reverse operation of a
convolution and "restores" a 2x2 image to 4x4 (the figure is the no-padding, unit-stride example of
Dumoulin & Visin, "A guide to convolution arithmetic for deep learning", 2016: kernel 3, stride 1).

Method:

- shapes: ``nn.ConvTranspose2d`` and :func:`~nnatlas.analysis.conv_transpose_output_size` on the notes'
  2x2 input (kernel 3, stride 1: 4x4) and on the stride-2 figure shown below it (kernel 3, stride 2: 5x5);
- equivalence: for several kernel / stride / padding settings, ``conv_transpose2d(x, w)`` against
  ``conv2d(pad(insert_zeros(x, s - 1), k - 1 - p), flip(w).swap(in, out))``; the adjoint identity
  ``<conv(x), y> = <x, conv_transpose(y)>`` (the matrix of the one is the transpose of the other's); and how
  far ``conv_transpose(conv(x))`` is from ``x`` (it restores the size, not the image);
- checkerboard artefacts (Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts", Distill
  2016): a constant input through a kernel-3 stride-2 and a kernel-4 stride-2 transposed convolution, and
  through nearest / bilinear 2x upsampling followed by a 3x3 convolution (resize-convolution); the
  spatial variance of the output away from the border, divided by its mean square, per seed of random
  weights, and once with all weights set to one (biases zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnatlas.analysis import conv_transpose_output_size
from nnatlas.experiments.base import (
    NOT_SUPPORTED,
    SUPPORTED,
    Context,
    Experiment,
    Measurement,
    register_experiment,
    seeded,
    spread,
)

UPSAMPLERS = ("transposed k3 s2", "transposed k4 s2", "nearest + conv3", "bilinear + conv3")
#: (kernel, stride, padding, output_padding) of the equivalence check.
SETTINGS = ((3, 1, 0, 0), (3, 2, 0, 0), (3, 2, 1, 1), (4, 2, 1, 0), (5, 3, 2, 2))
BORDER = 4  # output pixels left out at each side in the checkerboard measure (padding effects)
FLAT = 1e-10  # a relative variance at or below this is a flat output


def zero_inserted_conv(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, output_padding: int):
    """The transposed convolution written as an ordinary one: ``stride - 1`` zeros between the input pixels,
    ``k - 1 - padding`` zeros around (plus ``output_padding`` at the bottom / right), then ``conv2d`` with the
    kernel flipped in space and its in / out channels swapped. ``weight``: ``(C_in, C_out, k, k)`` as
    ``nn.ConvTranspose2d`` stores it."""
    B, C, H, W = x.shape
    k = weight.shape[-1]
    z = x.new_zeros(B, C, (H - 1) * stride + 1, (W - 1) * stride + 1)
    z[..., ::stride, ::stride] = x  # (B, C, (H-1)s+1, (W-1)s+1)
    p = k - 1 - padding
    z = F.pad(z, (p, p + output_padding, p, p + output_padding))
    return F.conv2d(z, weight.transpose(0, 1).flip(-1, -2))


def _upsampler(kind: str, channels: int) -> nn.Module:
    if kind == "transposed k3 s2":
        return nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1)
    if kind == "transposed k4 s2":
        return nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
    mode = kind.split()[0]
    return nn.Sequential(nn.Upsample(scale_factor=2, mode=mode), nn.Conv2d(channels, channels, 3, padding=1))


def _checkerboard(model: nn.Module, channels: int, size: int) -> tuple[float, list[list[float]]]:
    """Spatial variance over mean square of the output of a constant input (interior, mean over channels),
    and the interior of channel 0."""
    with torch.no_grad():
        y = model(torch.ones(1, channels, size, size))[0, :, BORDER:-BORDER, BORDER:-BORDER]  # (C, h, w)
    relative = y.var(dim=(-1, -2), correction=0).mean() / y.square().mean().clamp_min(1e-30)
    return float(relative), y[0].tolist()


@register_experiment
class TransposedConv(Experiment):
    name = "transposed-conv"
    title = (
        "a transposed conv maps the notes' 2x2 to 4x4, equals a conv of the zero-inserted input, and checkers"
    )
    section = "卷积核变种"
    claim_zh = "- 卷积的反操作。卷积是提取特征，反卷积是还原图片。\n- 下面这个示意图就是一种反卷积。把原来 $2*2$ 的图片还原成 $4*4$ 的"
    claim_en = (
        "The transposed convolution ('deconvolution') is the reverse of a convolution: a convolution "
        "extracts features, a deconvolution restores the image; the figure restores a 2x2 image to 4x4. "
        "Measured: the shapes of the figure, the equivalence with a convolution of the zero-inserted input "
        "with the flipped kernel, whether it restores the image or only its size, and the checkerboard "
        "artefacts of stride-2 transposed convolutions against resize-convolution (Odena et al. 2016)."
    )
    method = (
        "nn.ConvTranspose2d and conv_transpose_output_size on a 2x2 input (kernel 3, stride 1, no padding, "
        "as in the notes' figure; and kernel 3, stride 2). For five kernel/stride/padding settings, compare "
        "ConvTranspose2d with conv2d of the zero-inserted, padded input and the flipped kernel (max abs "
        "difference), and check the adjoint identity <conv(x), y> = <x, convT(y)>. Checkerboard: feed a "
        "constant 16x16 input to kernel-3 and kernel-4 stride-2 transposed convolutions and to nearest / "
        "bilinear 2x upsampling + 3x3 conv, with random (PyTorch default) weights per seed and with all "
        f"weights one; measure the spatial variance / mean square of the output ({BORDER}-pixel border left "
        "out)."
    )
    criterion = (
        "Supported when (a) the 2x2 input becomes 4x4 (kernel 3, stride 1) and 5x5 (kernel 3, stride 2), "
        "from ConvTranspose2d and conv_transpose_output_size alike; (b) every equivalence and adjoint check "
        "agrees to 1e-4 (relative for the adjoint); and (c) in every seed the relative variance of the "
        "constant-input output is above 1e-3 for the kernel-3 stride-2 transposed conv and at most 1e-10 "
        "for both resize-convolutions, and with all-one weights above 1e-3 for kernel 3 and at most 1e-10 "
        "for kernel 4 (kernel divisible by the stride: even overlap). Otherwise not supported."
    )
    minutes = 0.1

    def run(self, ctx: Context) -> Measurement:
        channels, size = ctx.size(4, 8), 16
        # (a) the figure's shapes
        x22 = torch.arange(1.0, 5.0).reshape(1, 1, 2, 2)
        shapes = {}
        for k, s in ((3, 1), (3, 2)):
            seeded(0)
            layer = nn.ConvTranspose2d(1, 1, k, stride=s, bias=False)
            shapes[f"k{k} s{s}"] = {
                "module": list(layer(x22).shape[-2:]),
                "formula": list(conv_transpose_output_size((2, 2), k, s)),
            }
        # (b) equivalence, adjoint, and reconstruction
        equivalence: dict[str, list[float]] = {}
        adjoint: list[float] = []
        restore: list[float] = []
        for seed in ctx.seeds:
            seeded(seed)
            for k, s, p, op in SETTINGS:
                layer = nn.ConvTranspose2d(3, 5, k, stride=s, padding=p, output_padding=op, bias=False)
                x = torch.randn(2, 3, 5, 5)
                with torch.no_grad():
                    err = (layer(x) - zero_inserted_conv(x, layer.weight, s, p, op)).abs().max()
                equivalence.setdefault(f"k{k} s{s} p{p} op{op}", []).append(float(err))
            w = torch.randn(1, 1, 3, 3)
            x, y = torch.randn(1, 1, 4, 4), torch.randn(1, 1, 2, 2)
            lhs = (F.conv2d(x, w) * y).sum()
            rhs = (x * F.conv_transpose2d(y, w)).sum()
            adjoint.append(float((lhs - rhs).abs() / rhs.abs().clamp_min(1e-12)))
            back = F.conv_transpose2d(F.conv2d(x, w), w)  # (1, 1, 4, 4): the size is restored
            scale = (back * x).sum() / back.square().sum()  # the best rescaling of the reconstruction
            restore.append(float((scale * back - x).norm() / x.norm()))
        # (c) checkerboard
        random_var: dict[str, list[float]] = {k: [] for k in UPSAMPLERS}
        ones_var: dict[str, float] = {}
        images: dict[str, list[list[float]]] = {}
        for seed in ctx.seeds:
            for kind in UPSAMPLERS:
                ctx.step(f"seed {seed}: {kind}")
                seeded(seed)
                v, img = _checkerboard(_upsampler(kind, channels), channels, size)
                random_var[kind].append(v)
                images.setdefault(kind, img)
        for kind in UPSAMPLERS:
            model = _upsampler(kind, channels)
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
            ones_var[kind], images[f"{kind} (ones)"] = _checkerboard(model, channels, size)
        numbers: dict[str, Any] = {
            "figure_shapes": shapes,
            "equivalence_max_abs_error": equivalence,
            "adjoint_relative_error": adjoint,
            "restore_relative_error": restore,
            "restore_relative_error_spread": spread(restore),
            "channels": channels,
            "input_size": size,
            "relative_variance_random": random_var,
            "relative_variance_random_spread": {k: spread(v) for k, v in random_var.items()},
            "relative_variance_ones": ones_var,
            "constant_input_outputs": images,
        }
        table = [
            {
                "upsampler": kind,
                "rel. variance, random weights (mean)": f"{spread(random_var[kind])['mean']:.3g}",
                "rel. variance, random weights (min)": f"{spread(random_var[kind])['min']:.3g}",
                "rel. variance, all-one weights": f"{ones_var[kind]:.3g}",
            }
            for kind in UPSAMPLERS
        ]
        worst = max(max(v) for v in equivalence.values())
        key = (
            f"2x2 -> {'x'.join(map(str, shapes['k3 s1']['module']))}; |convT - conv(zero-inserted)| <= "
            f"{worst:.1g}; checkerboard rel. var {spread(random_var['transposed k3 s2'])['mean']:.2f} (k3s2) vs "
            f"{spread(random_var['nearest + conv3'])['mean']:.0g} (resize-conv)"
        )
        notes = [
            f"The transposed convolution restores the size, not the image: conv_transpose(conv(x)) with the same "
            f"3x3 kernel is {spread(restore)['mean']:.2f} away from x (relative L2 error after the best rescaling, "
            "mean over seeds; 1 would mean no resemblance at all). It "
            "is the transpose (adjoint) of the convolution's matrix, not its inverse.",
            "With random weights the kernel-4 stride-2 transposed convolution checkers as much as the "
            "kernel-3 one (its four output phases sum different weights); even overlap removes the "
            "artefact only for equal weights, as Odena et al. (2016) note. Resize-convolution gives a flat "
            "output for any weights.",
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, figure=lambda p: _figure(numbers, p), notes=notes
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        shapes = numbers["figure_shapes"]
        shape_ok = shapes["k3 s1"]["module"] == shapes["k3 s1"]["formula"] == [4, 4] and shapes["k3 s2"][
            "module"
        ] == shapes["k3 s2"]["formula"] == [5, 5]
        equal_ok = all(e <= 1e-4 for v in numbers["equivalence_max_abs_error"].values() for e in v) and all(
            e <= 1e-4 for e in numbers["adjoint_relative_error"]
        )
        r, ones = numbers["relative_variance_random"], numbers["relative_variance_ones"]
        checker_ok = (
            all(v > 1e-3 for v in r["transposed k3 s2"])
            and all(v <= FLAT for v in r["nearest + conv3"] + r["bilinear + conv3"])
            and ones["transposed k3 s2"] > 1e-3
            and ones["transposed k4 s2"] <= FLAT
        )
        return SUPPORTED if shape_ok and equal_ok and checker_ok else NOT_SUPPORTED


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import PALETTE, figure, save

    fig, axes = figure(2, 5, width=2.4, height=2.4)
    for row, suffix in enumerate(("", " (ones)")):
        for ax, kind in zip(axes[row, :4], UPSAMPLERS, strict=True):
            img = torch.tensor(numbers["constant_input_outputs"][kind + suffix])
            mid = float(img.mean())
            half = max(float((img - mid).abs().max()), 1e-6 * abs(mid), 1e-12)  # a flat image shows grey
            ax.imshow(img.numpy(), cmap="gray", vmin=mid - half, vmax=mid + half)
            ax.set_title(f"{kind}{suffix or ' (random)'}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    ax = axes[0, 4]
    means = [max(numbers["relative_variance_random_spread"][k]["mean"], 1e-12) for k in UPSAMPLERS]
    ax.bar(range(4), means, color=PALETTE[:4])
    ax.set_yscale("log")
    ax.set_xticks(range(4), ["k3s2", "k4s2", "near.", "bilin."])
    ax.set_ylabel("var / mean square")
    ax.set_title("random weights (0 drawn at 1e-12)", fontsize=8)
    ax = axes[1, 4]
    ones = [max(numbers["relative_variance_ones"][k], 1e-12) for k in UPSAMPLERS]
    ax.bar(range(4), ones, color=PALETTE[:4])
    ax.set_yscale("log")
    ax.set_xticks(range(4), ["k3s2", "k4s2", "near.", "bilin."])
    ax.set_ylabel("var / mean square")
    ax.set_title("all-one weights", fontsize=8)
    save(fig, path, title="output of a constant 16x16 input after 2x upsampling (channel 0, border cut)")
