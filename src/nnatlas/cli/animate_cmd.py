"""``nnatlas animate conv|transposed|dilated|pool``: convolution arithmetic as a GIF (or a PNG sheet)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnatlas.cli.common import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "animate",
        help="animate a convolution, transposed convolution, dilated convolution or pooling (GIF)",
        description="Draw a square convolution frame by frame in the style of Dumoulin & Visin's "
        "conv_arithmetic figures: the input grid (padding white), the kernel's taps, the output grid, one "
        "frame per output element; the sizes come from nnatlas.analysis and are printed in the title. A "
        "transposed convolution is drawn as its equivalent direct convolution over the zero-inserted, "
        "zero-padded input (the notes' 2x2 -> 4x4 example: `nnatlas animate transposed --input 2 "
        "--kernel 3`).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("kind", choices=("conv", "transposed", "dilated", "pool"), help="what to draw")
    p.add_argument("--input", type=int, default=5, help="side of the square input")
    p.add_argument("--kernel", type=int, default=3, help="side of the square kernel")
    p.add_argument("--stride", type=int, default=None, help="stride (default: 1; the kernel for pool)")
    p.add_argument("--padding", type=int, default=0, help="zero padding on each side")
    p.add_argument("--dilation", type=int, default=None, help="dilation (default: 1; 2 for dilated)")
    p.add_argument("--output-padding", type=int, default=0, help="extra rows/columns (transposed only)")
    p.add_argument("-o", "--output", default=None, help="the GIF to write (default: KIND.gif)")
    p.add_argument("--sheet", action="store_true", help="also write every frame on one PNG sheet (.png)")
    p.add_argument("--duration", type=int, default=500, help="milliseconds per frame")
    p.set_defaults(func=run_animate)


def run_animate(args: argparse.Namespace) -> int:
    from nnatlas._validate import InvalidValue, check_int
    from nnatlas.viz.animate import conv_animation, save_animation, save_sheet

    stride = args.stride if args.stride is not None else (args.kernel if args.kind == "pool" else 1)
    dilation = args.dilation if args.dilation is not None else (2 if args.kind == "dilated" else 1)
    try:
        for flag, value, low in (
            ("--input", args.input, 1),
            ("--kernel", args.kernel, 1),
            ("--stride", stride, 1),
            ("--padding", args.padding, 0),
            ("--dilation", dilation, 1),
            ("--output-padding", args.output_padding, 0),
            ("--duration", args.duration, 1),
        ):
            check_int(flag, value, minimum=low, maximum=64 if flag != "--duration" else 60_000)
        if args.output_padding >= max(stride, dilation):
            raise InvalidValue("--output-padding", f"must be smaller than the stride or the dilation ({max(stride, dilation)})", args.output_padding)  # fmt: skip
        anim = conv_animation(
            args.kind,
            input=args.input,
            kernel=args.kernel,
            stride=stride,
            padding=args.padding,
            dilation=dilation,
            output_padding=args.output_padding,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    if len(anim.frames) > 1024:
        raise UsageError(f"{len(anim.frames)} frames ({anim.output}x{anim.output} output): at most 1024; use a smaller --input")  # fmt: skip
    out = Path(args.output or f"{args.kind}.gif")
    if out.suffix.lower() != ".gif":
        raise UsageError(f"-o/--output must end in .gif; got {str(out)!r}")
    if not out.parent.is_dir():
        raise UsageError(f"the folder of -o/--output does not exist: {str(out.parent)!r}")
    save_animation(anim, out, duration_ms=args.duration)
    print(f"{anim.title}; {len(anim.frames)} frames -> {out}")
    if args.sheet:
        sheet = out.with_suffix(".png")
        save_sheet(anim, sheet)
        print(f"sheet -> {sheet}")
    return 0
