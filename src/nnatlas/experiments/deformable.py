"""``deformable``: the learned sampling offsets of a deformable convolution adapt to the scale of the object.

Claim (notes, 卷积核变种, 可变形卷积): a deformable convolution adds a learnable offset to every sampling
point of the kernel, so the sampling grid is no longer fixed; a stretched grid shows its scale-transform
property (Dai et al., "Deformable Convolutional Networks", ICCV 2017, whose figure 5 shows the sampling
locations spreading over large objects and contracting on small ones).

Method: the shape silhouettes are drawn at three scales (the scene shrunk to 1/2, 3/4 or kept, placed at
random on a 32x32 canvas of its background colour, the pixel noise added afterwards), so the objects'
radii (from the area of the scene's mask, ``sqrt(area / pi)``) range over about 2 to 10 pixels. A small net (two conv-BN-ReLU-maxpool stages, then a 3x3 layer on the
8x8 map, global average pooling, linear) is trained per seed twice: with
:class:`~nnatlas.layers.DeformConv2d` (offset branch zero-initialised, ``torchvision.ops.deform_conv2d``
underneath) as its last 3x3 layer, and with a plain convolution there. On the validation images, the
offsets at the output position nearest to the object's centre give the 9 sampling points in image pixels;
their spread (root-mean-square distance from their mean) and the mean offset length are related to the
object's radius by the Spearman rank correlation. The plain net's accuracy is the reference.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnatlas.data import ShapesDataset
from nnatlas.experiments import _vision
from nnatlas.experiments._train import accuracy
from nnatlas.experiments.base import (
    Context,
    Experiment,
    Measurement,
    majority,
    register_experiment,
    seeded,
    spread,
)
from nnatlas.layers import DeformConv2d

CANVAS = 32
NOISE = 0.08  # the pixel noise of the shapes renderer
SCALES = (0.5, 0.75, 1.0)
STRIDE = 4  # image pixels per cell of the 8x8 map where the deformable layer works
MIN_RHO = 0.3  # the rank correlation between radius and spread the criterion asks for
#: Spread of a regular 3x3 grid of unit spacing, in cells: sqrt(mean(dy^2 + dx^2)) = sqrt(4/3).
GRID_SPREAD = math.sqrt(4 / 3)


@functools.lru_cache(maxsize=4)
def scaled_shapes(num: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``num`` shape silhouettes at several scales: ``(x (num, 1, 32, 32), labels, radius in pixels (from the
    mask area), object centre (num, 2) as (row, column) in pixels)``.

    Each scene is rendered without noise, shrunk by a random factor of :data:`SCALES`, pasted at a random
    position of a ``CANVAS x CANVAS`` canvas of its background colour, and only then given the renderer's
    pixel noise (``NOISE``) everywhere, so that no edge or texture of the pasted patch gives the scale away.
    The silhouette is taken last: the distance of every pixel to the background colour, in units of the
    shape's distance to it (normalised by the shape's contrast, not by image statistics, so that a small
    shape is as bright as a large one)."""
    ds = ShapesDataset(num, size=CANVAS, seed=seed, noise=0.0)
    rng = np.random.default_rng(seed + 777)
    gen = torch.Generator().manual_seed(seed + 778)
    xs, labels, radii, centres = [], [], [], []
    for i in range(num):
        scene = ds.scene(i)
        image = torch.from_numpy(np.ascontiguousarray(scene.image.transpose(2, 0, 1)))[None]  # (1, 3, S, S)
        mask = torch.from_numpy(scene.mask > 0)  # (S, S)
        background = image[0][:, ~mask].median(dim=1).values  # (3,)
        contrast = (image[0][:, mask].median(dim=1).values - background).abs().sum()  # shape vs background
        scale = float(SCALES[rng.integers(len(SCALES))])
        side = round(CANVAS * scale)
        if side != CANVAS:
            image = F.interpolate(
                image, size=(side, side), mode="bilinear", antialias=True, align_corners=False
            )
        top, left = (int(v) for v in rng.integers(0, CANVAS - side + 1, size=2))
        canvas = background[None, :, None, None].repeat(1, 1, CANVAS, CANVAS)  # (1, 3, 32, 32)
        canvas[..., top : top + side, left : left + side] = image
        canvas = (canvas + NOISE * torch.randn(canvas.shape, generator=gen)).clamp(0, 1)
        # silhouette: distance to the background colour over the shape's, ~1 on the shape, ~0 around it
        xs.append((canvas - background[None, :, None, None]).abs().sum(dim=1) / contrast)  # (1, 32, 32)
        labels.append(int(scene.labels[0]))
        radii.append(math.sqrt(float(mask.sum()) / math.pi) * scale)
        rows, cols = torch.nonzero(mask, as_tuple=True)
        # pixel centres at index + 0.5 in the scene, scaled, then shifted onto the canvas
        centres.append(
            [
                top + (rows.float().mean().item() + 0.5) * scale,
                left + (cols.float().mean().item() + 0.5) * scale,
            ]
        )
    return torch.stack(xs), torch.tensor(labels), torch.tensor(radii), torch.tensor(centres)


class _Net(nn.Module):
    """``(B, 1, 32, 32)`` -> conv 16 -> pool -> conv 16 -> pool -> 3x3 layer 16 -> 32 (deformable or plain) on
    8x8 -> GAP -> linear 4. (Sixteen input channels keep torchvision's CPU deformable kernel affordable.)"""

    def __init__(self, deformable: bool) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(*block(1, 16), nn.MaxPool2d(2), *block(16, 16), nn.MaxPool2d(2))
        self.last = (
            DeformConv2d(16, 32, 3, padding=1, bias=False)
            if deformable
            else nn.Conv2d(16, 32, 3, padding=1, bias=False)
        )
        self.head = nn.Sequential(
            nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.last(self.features(x)))


@torch.no_grad()
def sampling_points(model: _Net, x: Tensor, centres: Tensor) -> Tensor:
    """The 9 sampling points of the deformable layer at the 8x8 cell nearest to each object centre, in
    image pixels: ``(B, 9, 2)`` as (row, column)."""
    model.eval()
    feats = model.features(x)  # (B, 16, 8, 8)
    offset = model.last.conv_offset(feats)  # (B, 18, 8, 8): (dy, dx) per tap, taps row-major
    cells = ((centres / STRIDE) - 0.5).round().long().clamp(0, feats.shape[-1] - 1)  # (B, 2)
    b = torch.arange(len(x))
    off = offset[b, :, cells[:, 0], cells[:, 1]].reshape(-1, 9, 2)  # (B, 9, 2)
    taps = torch.stack(torch.meshgrid(torch.arange(-1, 2), torch.arange(-1, 2), indexing="ij"), -1)
    taps = taps.reshape(1, 9, 2).float()
    points = cells[:, None, :].float() + taps + off  # (B, 9, 2) in cells
    return (points + 0.5) * STRIDE  # cell i covers pixels [4i, 4i + 4): its centre is at 4i + 2


def _spearman(a: Tensor, b: Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


@register_experiment
class Deformable(Experiment):
    name = "deformable"
    title = "the sampling points of a learned deformable conv spread with the object's size"
    section = "卷积核变种"
    claim_zh = (
        "为了克服这个限制，可变形卷积在卷积核的每个采样点上添加一个可学习的偏移量（offset），让采样点不再局限于"
        "规则的网格点，如图 1.8（b）所示。图 1.8（c）和图 1.8（d）是可变形卷积的两个特例：前者在水平方向上对卷积核有"
        "较大拉伸，体现了可变形卷积的尺度变换特性；后者则是对卷积核进行旋转。"
    )
    claim_en = (
        "A deformable convolution adds a learnable offset to every sampling point of the kernel, freeing the "
        "sampling points from the regular grid; a stretched kernel shows its scale-transform property. "
        "Measured: after training on shapes of several sizes, do the sampling points at the object spread "
        "further on larger objects (Dai et al. 2017, figure 5), and how does the net compare in accuracy "
        "with the same net with a plain convolution?"
    )
    method = (
        "Shape silhouettes shrunk to 1/2, 3/4 or kept and placed at random on a 32x32 canvas (radius "
        "sqrt(mask area / pi), about 2-10 px). A net conv-pool-conv-pool-(3x3 layer on 8x8)-GAP-linear is "
        "trained with Adam per seed with DeformConv2d (zero-initialised offsets) and with a plain Conv2d as "
        "its 3x3 layer. On held-out scenes, the 9 sampling points of the deformable layer at the cell "
        "nearest the object centre, in image pixels: their spread (RMS distance from their mean; 4.6 px "
        "for the regular grid) and mean offset length, against the radius (Spearman rank correlation, "
        "and the mean spread per third of the radii), also for a control: the same net with its offset "
        "branch replaced by random weights of the same norm."
    )
    criterion = (
        f"Supported when in at least 2/3 of the seeds (2 of 3) the Spearman correlation between object "
        f"radius and the spread of the sampling points is at least {MIN_RHO:g}, higher than with a random "
        "offset branch of the trained one's norm (offsets that merely scale with the features), and the "
        "mean spread on the largest third of the objects exceeds that on the smallest third; not supported "
        "when at most 1/3 of the seeds pass; inconclusive in between. (Accuracy against the plain net is "
        "reported, not judged.)"
    )
    minutes = 1.5

    def run(self, ctx: Context) -> Measurement:
        n_train, n_val = ctx.size((300, 150), (1500, 600))
        epochs = ctx.size(2, 6)
        x, y, _, _ = scaled_shapes(n_train, 0)
        xv, yv, radius, centres = scaled_shapes(n_val, 10_000)
        data = (x, y, xv, yv)
        acc: dict[str, list[float]] = {"deformable": [], "plain": []}
        rho_spread, rho_offset, rho_control = [], [], []
        by_scale: list[list[float]] = []  # per seed: mean spread per radius tercile
        offset_len: list[float] = []
        binned: list[list[list[float]]] = []  # per seed: [radius bin centre, mean spread] per 1-px bin
        outside: list[float] = []  # per seed: share of the sampling points outside the image
        example: dict[str, Any] = {}
        scatter: dict[str, list[float]] = {}
        edges = torch.quantile(radius, torch.tensor([1 / 3, 2 / 3]))
        tercile = torch.bucketize(radius, edges)  # 0 small, 1 middle, 2 large
        for seed in ctx.seeds:
            for kind in ("deformable", "plain"):
                ctx.step(f"seed {seed}: {kind}")
                seeded(seed)
                model = _Net(kind == "deformable")
                _vision.train(model, data, epochs=epochs, seed=seed, lr=3e-3)
                acc[kind].append(accuracy(model, xv, yv))
                if kind != "deformable":
                    continue
                points = sampling_points(model, xv, centres)  # (N, 9, 2) image pixels
                spread_px = (points - points.mean(1, keepdim=True)).square().sum(-1).mean(-1).sqrt()  # (N,)
                grid = sampling_points(_zero_offsets(model), xv, centres)
                length = (points - grid).norm(dim=-1).mean(-1)  # (N,) mean offset length in pixels
                rho_spread.append(_spearman(radius, spread_px))
                rho_offset.append(_spearman(radius, length))
                control = sampling_points(_random_offsets(model, seed), xv, centres)
                control_spread = (control - control.mean(1, keepdim=True)).square().sum(-1).mean(-1).sqrt()
                rho_control.append(_spearman(radius, control_spread))
                by_scale.append([float(spread_px[tercile == t].mean()) for t in range(3)])
                offset_len.append(float(length.mean()))
                bins = radius.floor()
                binned.append(
                    [
                        [float(b) + 0.5, float(spread_px[bins == b].mean())]
                        for b in bins.unique()
                        if (bins == b).sum() >= 5
                    ]
                )
                outside.append(float(((points < 0) | (points > CANVAS)).any(-1).double().mean()))
                if not scatter:
                    scatter = {"radius": radius.tolist(), "spread": spread_px.tolist()}
                    small, large = int(radius.argmin()), int(radius.argmax())
                    example = {
                        "images": [xv[small, 0].tolist(), xv[large, 0].tolist()],
                        "radius": [float(radius[small]), float(radius[large])],
                        "points": [points[small].tolist(), points[large].tolist()],
                    }
        numbers: dict[str, Any] = {
            "train_size": n_train,
            "val_size": n_val,
            "epochs": epochs,
            "scales": list(SCALES),
            "radius_px": spread(radius.tolist()),
            "radius_tercile_edges_px": edges.tolist(),
            "regular_grid_spread_px": GRID_SPREAD * STRIDE,
            "val_accuracy": acc,
            "val_accuracy_spread": {k: spread(v) for k, v in acc.items()},
            "spearman_radius_spread": rho_spread,
            "spearman_radius_offset_length": rho_offset,
            "spearman_radius_spread_random_branch": rho_control,
            "spread_px_by_radius_tercile": by_scale,
            "mean_offset_length_px": offset_len,
            "spread_px_by_radius_bin": binned,
            "share_of_points_outside_image": outside,
            "scatter_seed0": scatter,
            "example": example,
        }
        table = [
            {
                "seed": seed,
                "acc. deformable": round(acc["deformable"][i], 3),
                "acc. plain": round(acc["plain"][i], 3),
                "spread small / mid / large objects (px)": " / ".join(f"{v:.2f}" for v in by_scale[i]),
                "Spearman(radius, spread)": round(rho_spread[i], 3),
                "Spearman(radius, offset length)": round(rho_offset[i], 3),
                "Spearman, random offset branch": round(rho_control[i], 3),
                "mean offset length (px)": round(offset_len[i], 2),
            }
            for i, seed in enumerate(ctx.seeds)
        ]
        key = (
            f"Spearman(radius, spread) {spread(rho_spread)['mean']:.2f}; accuracy "
            f"{spread(acc['deformable'])['mean']:.3f} deformable vs {spread(acc['plain'])['mean']:.3f} plain"
        )
        peaks = [max(curve, key=lambda bc: bc[1])[0] for curve in binned]
        beats = sum(r > c for r, c in zip(rho_spread, rho_control, strict=True))
        notes = [
            f"The offsets are large: {spread(offset_len)['mean']:.1f} px on average (the regular taps are "
            f"{STRIDE} px apart), and {100 * spread(outside)['mean']:.0f}% of the sampling points at the "
            "object centres fall outside the 32-px image (in either coordinate), where deform_conv2d samples zeros.",
            "Mean spread per 1-px radius bin (bins of at least 5 scenes) peaks at a radius of "
            + ", ".join(f"{p:.1f}" for p in peaks)
            + f" px (per seed; the largest radius is {spread(radius.tolist())['max']:.1f} px): a peak below "
            "the largest radius means the spread levels off or falls for the largest objects (figure).",
            "Control: a random offset branch with the trained norm gives Spearman "
            + ", ".join(f"{c:.2f}" for c in rho_control)
            + f"; offsets that merely scale with the features can correlate with the size, and the trained "
            f"branch exceeds the control in {beats} of {len(rho_control)} seeds.",
            f"Accuracy: deformable {spread(acc['deformable'])['mean']:.3f} against plain "
            f"{spread(acc['plain'])['mean']:.3f} (mean over seeds) after {epochs} epochs.",
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, figure=lambda p: _figure(numbers, p), notes=notes
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        passes = [
            rho >= MIN_RHO and rho > control and terciles[2] > terciles[0]
            for rho, control, terciles in zip(
                numbers["spearman_radius_spread"],
                numbers["spearman_radius_spread_random_branch"],
                numbers["spread_px_by_radius_tercile"],
                strict=True,
            )
        ]
        return majority(passes)


def _random_offsets(model: _Net, seed: int) -> _Net:
    """A copy of ``model`` whose offset branch has random weights and bias of the trained ones' norms: the
    control for offsets that grow with the features' magnitude alone, without learning anything."""
    import copy

    control = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in (control.last.conv_offset.weight, control.last.conv_offset.bias):
            r = torch.randn(p.shape, generator=gen)
            p.copy_(r * p.norm() / r.norm())
    return control


def _zero_offsets(model: _Net) -> _Net:
    """A copy of ``model`` whose offset branch outputs zero: the regular sampling grid."""
    import copy

    grid = copy.deepcopy(model)
    nn.init.zeros_(grid.last.conv_offset.weight)
    nn.init.zeros_(grid.last.conv_offset.bias)
    return grid


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import PALETTE, figure, save

    fig, axes = figure(1, 4, width=3.2, height=3.2)
    ex = numbers["example"]
    for ax, img, pts, r, name in zip(
        axes[:2], ex["images"], ex["points"], ex["radius"], ("smallest", "largest"), strict=True
    ):
        ax.imshow(img, cmap="gray", extent=(0, CANVAS, CANVAS, 0))
        p = torch.tensor(pts)
        ax.scatter(p[:, 1].numpy(), p[:, 0].numpy(), s=18, color=PALETTE[1], edgecolor="black", linewidth=0.5)
        ax.set_title(f"{name} object (r = {r:.1f} px)\nsampling points, seed 0")
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
        ax.grid(False)
    ax = axes[2]
    sc = numbers["scatter_seed0"]
    ax.scatter(sc["radius"], sc["spread"], s=6, alpha=0.5, color=PALETTE[0])
    ax.axhline(numbers["regular_grid_spread_px"], color="grey", linestyle="--", label="regular 3x3 grid")
    ax.set_xlabel("object radius (px)")
    ax.set_ylabel("spread of the 9 sampling points (px)")
    ax.set_title(f"seed 0: Spearman {numbers['spearman_radius_spread'][0]:.2f}")
    ax.legend()
    ax = axes[3]
    kinds = list(numbers["val_accuracy"])
    for i, k in enumerate(kinds):
        vals = numbers["val_accuracy"][k]
        ax.bar(i, sum(vals) / len(vals), color=PALETTE[i])
        ax.scatter([i] * len(vals), vals, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("accuracy (bars: mean, dots: seeds)")
    save(fig, path, title="deformable convolution on shapes of several sizes")
