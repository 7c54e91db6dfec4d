"""Convolution arithmetic, animated in the style of Dumoulin & Visin's conv_arithmetic figures ("A guide to
convolution arithmetic for deep learning", 2016): the input grid below (padding cells white), the kernel's
taps shaded on it, the output grid above, one frame per output element.

A transposed convolution is drawn as the paper's equivalent direct convolution (section 4): ``stride - 1``
zeros inserted between the input cells, ``dilation * (kernel - 1) - padding`` zeros around them (plus
``output_padding`` on the bottom and right), and a stride-1 kernel sliding over that grid, so the notes'
2x2 -> 4x4 example (kernel 3, stride 1, no padding) comes out as drawn there: a 3x3 kernel over the 2x2
input framed by two rings of zeros.

Sizes come from :mod:`nnatlas.analysis.arithmetic`: :func:`conv_animation` raises its ``ValueError`` for a
configuration that does not fit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from nnatlas.analysis.arithmetic import conv_output_size, conv_transpose_output_size, pool_output_size

__all__ = ["KINDS", "ConvAnimation", "conv_animation", "render_frames", "save_animation", "save_sheet"]

KINDS = ("conv", "transposed", "dilated", "pool")


@dataclass(frozen=True)
class ConvAnimation:
    """One configuration, ready to draw.

    ``grid``: side of the drawn input grid (the input with its padding, or for ``transposed`` the
    zero-inserted and padded grid); ``cells``: the grid coordinates ``(row, col)`` of the real input
    elements; ``output``: side of the output; ``frames``: per output element in row-major order, its
    ``(row, col)`` and the grid cells under the kernel's taps; ``title``: the configuration and sizes.
    """

    kind: str
    input: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    output_padding: int
    grid: int
    cells: frozenset[tuple[int, int]]
    output: int
    frames: tuple[tuple[tuple[int, int], tuple[tuple[int, int], ...]], ...]
    title: str


def conv_animation(
    kind: str,
    *,
    input: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    output_padding: int = 0,
) -> ConvAnimation:
    """The frames of a square ``kind`` (conv, transposed, dilated, pool) over an ``input x input`` map.

    One frame per output element, ``output ** 2`` in all, with the output size of
    :func:`~nnatlas.analysis.conv_output_size` (:func:`~nnatlas.analysis.pool_output_size`,
    :func:`~nnatlas.analysis.conv_transpose_output_size`). A transposed convolution is drawn as the
    convolution it equals: the input with ``stride - 1`` zeros between its elements, padded by
    ``dilation * (kernel - 1) - padding``, under a stride-1 kernel.

    >>> a = conv_animation("conv", input=5, kernel=3)
    >>> a.output, len(a.frames), a.grid
    (3, 9, 5)
    >>> a.frames[0][0], len(a.frames[0][1])  # the first output element and its 3x3 taps
    ((0, 0), 9)
    >>> t = conv_animation("transposed", input=3, kernel=3, stride=2)  # (3 - 1) * 2 + 3 = 7
    >>> t.output, len(t.frames), t.grid  # 5 zero-inserted cells, padded by 2 on each side
    (7, 49, 9)
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if kind == "transposed":
        out = conv_transpose_output_size(input, kernel, stride, padding, output_padding, dilation)
        edge = dilation * (kernel - 1) - padding
        if edge < 0:
            raise ValueError(
                f"padding {padding} exceeds dilation x (kernel - 1) = {dilation * (kernel - 1)}: the "
                "equivalent convolution would crop the input, which this drawing does not show"
            )
        grid = (input - 1) * stride + 1 + 2 * edge + output_padding
        cells = frozenset((edge + i * stride, edge + j * stride) for i in range(input) for j in range(input))
        step = 1
    else:
        if output_padding:
            raise ValueError("output_padding applies to transposed convolutions only")
        size = pool_output_size if kind == "pool" else conv_output_size
        if kind == "pool":
            if dilation != 1:
                raise ValueError("the pooling drawing has no dilation; use kind 'dilated' or 'conv'")
            if padding > kernel // 2:
                raise ValueError(
                    f"pooling padding must be at most kernel // 2 = {kernel // 2}; got {padding}"
                )
            out = size(input, kernel, stride, padding)
        else:
            out = size(input, kernel, stride, padding, dilation)
        grid = input + 2 * padding
        cells = frozenset((padding + i, padding + j) for i in range(input) for j in range(input))
        step = stride
    if not isinstance(out, int):  # pragma: no cover - square inputs give ints
        raise TypeError(out)
    frames = []
    for r in range(out):
        for c in range(out):
            taps = tuple(
                (r * step + a * dilation, c * step + b * dilation)
                for a in range(kernel)
                for b in range(kernel)
            )
            frames.append(((r, c), taps))
    words = {"conv": "convolution", "transposed": "transposed convolution", "dilated": "dilated convolution"}
    title = (
        f"{words.get(kind, 'pooling')}: {input}x{input} input, kernel {kernel}, stride {stride}, "
        f"padding {padding}"
        + (f", dilation {dilation}" if dilation != 1 else "")
        + (f", output padding {output_padding}" if output_padding else "")
        + f" -> {out}x{out} output"
    )
    return ConvAnimation(
        kind=kind,
        input=input,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=output_padding,
        grid=grid,
        cells=cells,
        output=out,
        frames=tuple(frames),
        title=title,
    )


# Colours of the conv_arithmetic figures, in the Okabe-Ito family of nnatlas.viz.style.
_INPUT, _PAD, _TAP, _OUT, _DONE, _NOW, _LINE = (
    (158, 202, 225),
    (255, 255, 255),
    (0, 114, 178),
    (230, 246, 240),
    (120, 200, 170),
    (0, 158, 115),
    (90, 90, 90),
)


def render_frames(anim: ConvAnimation, *, cell: int = 28):
    """One ``PIL.Image`` per frame: the output grid above the input grid, the title on top."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1 has one fixed size
        font = ImageFont.load_default()
    gap, margin, title_h = cell, cell // 2, 40
    side = max(anim.grid, anim.output)
    width = max(side * cell + 2 * margin, 560)
    height = title_h + (anim.output + anim.grid) * cell + gap + 2 * margin
    out_x = (width - anim.output * cell) // 2
    in_x = (width - anim.grid * cell) // 2
    out_y = title_h + margin
    in_y = out_y + anim.output * cell + gap
    frames = []
    for k, (_, taps) in enumerate(anim.frames):
        im = Image.new("RGB", (width, height), "white")
        d = ImageDraw.Draw(im)
        d.text((margin, 6), anim.title, fill=(0, 0, 0), font=font)
        d.text((margin, 22), f"frame {k + 1}/{len(anim.frames)}", fill=(80, 80, 80), font=font)
        for r in range(anim.output):
            for c in range(anim.output):
                index = r * anim.output + c
                fill = _NOW if index == k else _DONE if index < k else _OUT
                box = (out_x + c * cell, out_y + r * cell, out_x + (c + 1) * cell, out_y + (r + 1) * cell)
                d.rectangle(box, fill=fill, outline=_LINE)
        tapped = set(taps)
        for r in range(anim.grid):
            for c in range(anim.grid):
                real = (r, c) in anim.cells
                box = (in_x + c * cell, in_y + r * cell, in_x + (c + 1) * cell, in_y + (r + 1) * cell)
                d.rectangle(box, fill=_INPUT if real else _PAD, outline=_LINE if real else (190, 190, 190))
                if (r, c) in tapped:
                    inner = (box[0] + 4, box[1] + 4, box[2] - 4, box[3] - 4)
                    d.rectangle(inner, fill=_TAP)
        frames.append(im)
    return frames


def save_animation(anim: ConvAnimation, path: str | os.PathLike, *, duration_ms: int = 500) -> None:
    """Write the frames as a looping GIF."""
    frames = render_frames(anim)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0, format="GIF")


def save_sheet(anim: ConvAnimation, path: str | os.PathLike, *, columns: int | None = None) -> None:
    """Write every frame side by side on one PNG sheet (``columns`` per row; default: the output side)."""
    from PIL import Image

    frames = render_frames(anim)
    cols = columns or anim.output
    rows = -(-len(frames) // cols)
    w, h = frames[0].size
    sheet = Image.new("RGB", (cols * w, rows * h), "white")
    for i, f in enumerate(frames):
        sheet.paste(f, ((i % cols) * w, (i // cols) * h))
    sheet.save(path, format="PNG")
