"""Convolution animations: every frame's taps are exactly the input elements torch's own layer reads for that
output element, and the frame count and output grid equal the arithmetic functions."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image
from torch import nn

from nnatlas.analysis import conv_output_size, conv_transpose_output_size, pool_output_size
from nnatlas.viz.animate import conv_animation, save_animation, save_sheet
from tests.cli.helpers import run, usage_error_in_process


def _layer(a):
    if a.kind == "transposed":
        return nn.ConvTranspose2d(1, 1, a.kernel, a.stride, a.padding, a.output_padding, dilation=a.dilation, bias=False)  # fmt: skip
    if a.kind == "pool":
        return nn.AvgPool2d(a.kernel, a.stride, a.padding, count_include_pad=True)
    return nn.Conv2d(1, 1, a.kernel, a.stride, a.padding, dilation=a.dilation, bias=False)


def _reads(a) -> dict[tuple[int, int], set[tuple[int, int]]]:
    """Per input element (in the drawn grid's coordinates), the output elements whose frame taps it."""
    reads: dict[tuple[int, int], set[tuple[int, int]]] = {cell: set() for cell in a.cells}
    for out, taps in a.frames:
        for t in taps:
            if t in reads:
                reads[t].add(out)
    return reads


def _configs(n=40, seed=0):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        kind = rng.choice(["conv", "transposed", "dilated", "pool"])
        k, s = rng.randint(1, 4), rng.randint(1, 3)
        d = 1 if kind == "pool" else rng.randint(1, 3) if kind != "dilated" else rng.randint(2, 3)
        p = rng.randint(0, k // 2 if kind == "pool" else max(0, d * (k - 1)))
        op = rng.randint(0, max(s, d) - 1) if kind == "transposed" else 0
        n_in = rng.randint(1, 7)
        try:
            out.append(
                conv_animation(kind, input=n_in, kernel=k, stride=s, padding=p, dilation=d, output_padding=op)
            )
        except ValueError:
            continue
    return out


@pytest.mark.parametrize(
    "a", _configs(), ids=lambda a: a.title.split(":")[0][:5] + a.title.split(":")[1][:60]
)
def test_frames_and_taps_equal_torch_and_the_arithmetic(a):
    if a.kind == "transposed":
        side = conv_transpose_output_size(
            a.input, a.kernel, a.stride, a.padding, a.output_padding, a.dilation
        )
    elif a.kind == "pool":
        side = pool_output_size(a.input, a.kernel, a.stride, a.padding)
    else:
        side = conv_output_size(a.input, a.kernel, a.stride, a.padding, a.dilation)
    assert a.output == side and len(a.frames) == side * side
    assert [f[0] for f in a.frames] == [(r, c) for r in range(side) for c in range(side)]
    assert all(0 <= i < a.grid and 0 <= j < a.grid for _, taps in a.frames for i, j in taps)
    layer = _layer(a)
    if hasattr(layer, "weight"):
        nn.init.ones_(layer.weight)
    cells = sorted(a.cells)
    rows = sorted({i for i, _ in cells})
    cols = sorted({j for _, j in cells})
    reads = _reads(a)
    for cell in cells:
        x = torch.zeros(1, 1, a.input, a.input)
        x[0, 0, rows.index(cell[0]), cols.index(cell[1])] = 1.0
        with torch.no_grad():
            y = layer(x)[0, 0]
        assert tuple(y.shape) == (side, side)
        touched = {(int(i), int(j)) for i, j in (y != 0).nonzero()}
        assert touched == reads[cell], (cell, a.title)


def test_the_notes_transposed_example_is_drawn_as_there():
    a = conv_animation("transposed", input=2, kernel=3)
    assert a.output == 4 and len(a.frames) == 16 and a.grid == 6  # 2x2 framed by two rings of zeros
    assert sorted(a.cells) == [(2, 2), (2, 3), (3, 2), (3, 3)]
    assert a.frames[0][1] == tuple((i, j) for i in range(3) for j in range(3))
    assert "2x2 input" in a.title and "4x4 output" in a.title


def test_gif_and_sheet(tmp_path):
    a = conv_animation("dilated", input=7, kernel=3, dilation=2)
    save_animation(a, tmp_path / "d.gif")
    save_sheet(a, tmp_path / "d.png")
    with Image.open(tmp_path / "d.gif") as im:
        assert im.n_frames == 9 == len(a.frames)
    with Image.open(tmp_path / "d.png") as im:
        assert im.width > im.height > 0


@pytest.mark.parametrize(
    "args, expect",
    [
        (["conv", "--input", "2", "--kernel", "5"], "smaller than the dilated kernel"),
        (["conv", "--stride", "0"], "--stride must be"),
        (["transposed", "--padding", "3"], "exceeds dilation x (kernel - 1)"),
        (["transposed", "--stride", "2", "--output-padding", "2"], "--output-padding must be smaller"),
        (["pool", "--padding", "3"], "pooling padding must be at most"),
        (["conv", "-o", "x.png"], "must end in .gif"),
        (["conv", "-o", "missing/x.gif"], "does not exist"),
        (["spiral"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line(capsys, monkeypatch, tmp_path, args, expect):
    monkeypatch.chdir(tmp_path)
    assert expect in usage_error_in_process(["animate", *args], capsys)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_gif_and_sheet(nnatlas_exe, tmp_path):
    proc = run(nnatlas_exe, "animate", "transposed", "--input", "2", "--kernel", "3", "-o", "t.gif", "--sheet", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "2x2 input" in proc.stdout and "16 frames" in proc.stdout
    with Image.open(tmp_path / "t.gif") as im:
        assert im.n_frames == 16
    assert (tmp_path / "t.png").is_file()


@pytest.mark.parametrize(
    "path, kw",
    [
        ("docs/img/transposed_2x2_to_4x4.gif", {"kind": "transposed", "input": 2, "kernel": 3}),
        ("docs/img/dilated_3x3_d2_on_7x7.gif", {"kind": "dilated", "input": 7, "kernel": 3, "dilation": 2}),
    ],
)
def test_committed_animations_are_current(path, kw):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    a = conv_animation(kw.pop("kind"), **kw)
    with Image.open(root / path) as im:
        assert im.n_frames == len(a.frames)
        im.seek(0)
        first = im.convert("RGB")
    from nnatlas.viz.animate import render_frames

    assert first.size == render_frames(a)[0].size
