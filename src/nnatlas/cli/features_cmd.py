"""``nnatlas features RUN|MODEL --image IMG``: the feature maps of a network's stages on one real image, and
its first convolution's filters.

TARGET is a run folder of ``nnatlas train`` (classification, segmentation or detection: the model is
rebuilt with its trained weights, the image converted to the run's channels and input size) or a MODEL as
in ``nnatlas inspect`` (a registered name, ``torchvision:NAME`` or ``package.module:factory``, built on the
CPU with its builder's default weights; nothing is downloaded). A TARGET that is an existing folder or
contains a path separator is a run folder, anything else a MODEL.

Default layers (:func:`stage_layers`): the outputs of the main stages, found from the forward pass itself
so that it works on any model: the modules whose outputs are feature maps ``(B, C, H, W)`` larger than
1x1 are taken in the order their forward calls end and cut into runs of equal spatial size; from each run
the last of its shallowest modules is kept (``layer1`` .. ``layer4`` of a ResNet, the last ReLU before
each pooling of a VGG, the encoder and decoder stages of a U-Net).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnatlas.cli.common import UsageError, check_free, markup_safe
from nnatlas.cli.runs import WEIGHTS

IMAGE_TASKS = ("classification", "segmentation", "detection")
# input side of the classification data sets, whose run config stores no image size
DATA_SIDES = {
    "digits": 8,
    "mnist": 28,
    "fashion_mnist": 28,
    "cifar10": 32,
    "cifar100": 32,
    "shapes": 32,
    "imagefolder": 224,
}
# at most this many valid names in the one line that rejects an unknown layer
SHOWN_NAMES = 15


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="feature maps of a model's stages on a real image, and its first conv filters",
        description="Run one image through a trained run or a model and save a grid of feature maps (one row "
        "per layer, its first --channels channels, each scaled to its own range) and a picture of the first "
        "convolution's filters. TARGET is a run folder of `nnatlas train` (classification, segmentation, "
        "detection; its trained weights, the image converted to the run's channels and size) or a MODEL as "
        "in `nnatlas inspect` (registered name, torchvision:NAME, package.module:factory). IMG is a "
        "skimage.data image (astronaut, chelsea, coffee, camera, ...) or an image file. Default layers: the "
        "output of each main stage (the last, shallowest module before each change of spatial size).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("target", metavar="RUN|MODEL", help="run folder (runs/<name>) or model")
    p.add_argument("--image", required=True, metavar="IMG", help="skimage.data name or image file")
    p.add_argument(
        "--layers", nargs="+", default=None, metavar="NAME", help="module names (default: the main stages)"
    )
    p.add_argument("--channels", type=int, default=16, help="channels drawn per layer")
    p.add_argument(
        "-o",
        "--out",
        default=None,
        metavar="PNG",
        help="the grid (default: RUN/features.png or features_<model>.png)",
    )
    p.add_argument(
        "--filters", default=None, metavar="PNG", help="first conv filters (default: <out stem>_filters.png)"
    )
    p.add_argument("--weights", default="final", choices=WEIGHTS, help="RUN: which weights to use")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="image side in pixels (default: the run's or model's input size)",
    )
    p.add_argument(
        "--kwargs",
        nargs="+",
        action="extend",
        default=None,
        metavar="KEY=VALUE",
        help="MODEL: builder arguments",
    )
    p.add_argument("--overwrite", action="store_true", help="allow replacing existing PNGs")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------------------------- layers


def stage_layers(shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """The main stage outputs among ``shapes`` (module name -> output shape, in forward-completion order).

    Feature maps of at least 3 dimensions and more than one spatial element are cut into runs of equal
    spatial size; each run gives the last of its shallowest (fewest dots) modules. The model itself
    (``""``) is left out.
    """
    runs: list[list[str]] = []
    last: tuple[int, ...] | None = None
    for name, shape in shapes.items():
        spatial = tuple(shape[2:])
        if not name or len(shape) < 3 or _prod(spatial) <= 1:
            continue
        if spatial != last:
            runs.append([])
            last = spatial
        runs[-1].append(name)
    out = []
    for names in runs:
        depth = min(n.count(".") for n in names)
        out.append([n for n in names if n.count(".") == depth][-1])
    return out


def spread(names: Sequence[str], most: int) -> list[str]:
    """At most ``most`` of ``names``, evenly spaced, the last one always kept."""
    if len(names) <= most:
        return list(names)
    step = (len(names) - 1) / (most - 1)
    return [names[round(i * step)] for i in range(most)]


def _prod(values: Sequence[int]) -> int:
    n = 1
    for v in values:
        n *= int(v)
    return n


def unknown_layer(name: str, valid: Sequence[str], target: str) -> UsageError:
    """One line: the closest valid layer names (at most :data:`SHOWN_NAMES`)."""
    from nnatlas._suggest import closest_first, unknown_choice_message

    ordered = closest_first(name, valid)
    message = unknown_choice_message(f"layer of {target}", name, ordered[:SHOWN_NAMES])
    if len(ordered) > SHOWN_NAMES:
        message += f" (and {len(ordered) - SHOWN_NAMES} more: see nnatlas inspect)"
    return UsageError(message)


# ------------------------------------------------------------------------------------------------ image


def prepare_image(
    spec: str,
    channels: int,
    hw: tuple[int, int],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    standardise: bool = False,
) -> tuple[Any, Any]:
    """``(shown (3, H, W) in [0, 1], x (1, C, H, W))``: IMG resized (short side, then centre crop) to ``hw``
    and converted to ``channels`` (grey by the ITU-R BT.601 luma weights for one channel, repeated for
    other counts); then ``(x - mean) / std`` where given, else per-image standardisation if asked."""
    import torch

    from nnatlas.data import load_image

    try:
        shown = load_image(spec, size=hw)  # (3, H, W)
    except ValueError as e:
        raise UsageError(f"--image: {e}") from None
    if channels == 3:
        x = shown.clone()
    else:
        grey = (shown * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)  # (1, H, W)
        x = grey.expand(channels, -1, -1).clone()
    if mean is not None and std is not None:
        m = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        s = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
        x = (x - m) / s
    elif standardise:
        x = (x - x.mean()) / x.std().clamp_min(1e-6)
    return shown, x.unsqueeze(0)


def _run_side(config: dict[str, Any]) -> tuple[int, int] | None:
    size = config.get("image_size")
    if isinstance(size, list) and len(size) == 2:
        return int(size[0]), int(size[1])
    cli = config.get("cli") if isinstance(config.get("cli"), dict) else {}
    if isinstance(cli.get("image_size"), int):
        return cli["image_size"], cli["image_size"]
    side = DATA_SIDES.get(str(config.get("data")))
    return (side, side) if side else None


# ------------------------------------------------------------------------------------------ the target


def is_run_folder(target: str) -> bool:
    return Path(target).is_dir() or "/" in target or os.sep in target


def _load_target(args: argparse.Namespace) -> tuple[Any, str, tuple[int, ...], dict[str, Any]]:
    """``(model, kind, (1, C, H, W), config)``; ``config`` is the run's (``{}`` for a MODEL)."""
    import torch

    from nnatlas.cli.inspect_cmd import build, default_shapes, parse_kwargs, resolve_model
    from nnatlas.cli.runs import load_run_model, read_run_config

    if is_run_folder(args.target):
        if args.kwargs:
            raise UsageError("--kwargs applies to a MODEL, not to a run folder (the run's own are used)")
        config = read_run_config(args.target, options=False)
        if config["task"] not in IMAGE_TASKS:
            raise UsageError(
                f"RUN {args.target!r} is a {config['task']} run; features need an image run "
                f"({', '.join(IMAGE_TASKS)})"
            )
        model, config = load_run_model(args.target, args.weights)
        channels = int(config.get("in_channels", 3))
        side = _run_side(config)
        if side is None:
            from nnatlas.models import get_model_info

            side = tuple(get_model_info(config["model"]).input_size[1:3])
        kind = "detection" if config["task"] == "detection" else "registered"
        return model, kind, (1, channels, *side), config
    kwargs = parse_kwargs(args.kwargs) if args.kwargs is not None else {}
    try:
        make, kind = resolve_model(args.target, kwargs)
    except UsageError as e:
        raise UsageError(f"{e} (nor is {args.target!r} a run folder)") from None
    if kind in ("video", "optical_flow"):
        raise UsageError(f"MODEL {args.target!r} is a {kind} model; features need a model of one image")
    torch.manual_seed(0)
    model = build(make, "cpu", args.target).eval()
    shape = default_shapes(model, args.target, kind)[0]
    if len(shape) != 4:
        raise UsageError(f"MODEL {args.target!r} takes input {shape}; features need images (B, C, H, W)")
    return model, kind, tuple(shape), {}


def capture(model: Any, x: Any, kind: str, keep: Sequence[str] = ()) -> tuple[dict, dict, Any]:
    """One forward pass with a hook on every module: ``(shapes, maps, first_conv)``.

    ``shapes``: module name -> output shape of its first call, in forward-completion order; ``maps``: the
    feature map ``(C, H, W)`` of each module named in ``keep`` (first image of the batch); ``first_conv``:
    ``(name, module)`` of the first ``nn.Conv2d`` that ran, or ``None``.
    """
    import torch
    from torch import nn

    from nnatlas.analysis._trace import primary

    shapes: dict[str, tuple[int, ...]] = {}
    maps: dict[str, Any] = {}
    convs: list[tuple[str, Any]] = []
    wanted = set(keep)

    def hook_for(name: str):
        def hook(module, inputs, output):
            if name in shapes:
                return
            y = primary(output)
            if not isinstance(y, torch.Tensor):
                return
            shapes[name] = tuple(y.shape)
            if name in wanted and y.dim() == 4:
                maps[name] = y[0].detach().float().cpu().clone()  # (C, H, W)
            if isinstance(module, nn.Conv2d) and not convs:
                convs.append((name, module))

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model([x[0]] if kind == "detection" else x)
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()
        raise UsageError(
            f"the model cannot run on an image of {tuple(x.shape)}: {first[0] if first else e}"
        ) from None
    finally:
        for h in handles:
            h.remove()
    return shapes, maps, (convs[0] if convs else None)


# -------------------------------------------------------------------------------------------- command


def _default_out(args: argparse.Namespace) -> Path:
    if is_run_folder(args.target):
        return Path(args.target) / "features.png"
    return Path(f"features_{safe_name(args.target)}.png")


def safe_name(spec: str) -> str:
    """A model spec as a file name part: ``torchvision:resnet18`` -> ``torchvision_resnet18``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", spec).strip("_") or "model"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    if args.channels < 1:
        raise UsageError(f"--channels must be >= 1; got {args.channels}")
    if args.size is not None and not 1 <= args.size <= 4096:
        raise UsageError(f"--size must be in [1, 4096]; got {args.size}")
    out = Path(args.out) if args.out else _default_out(args)
    filters = Path(args.filters) if args.filters else out.with_name(f"{out.stem}_filters.png")
    if filters == out:
        raise UsageError(f"--filters and -o are the same file {str(out)!r}")
    for path, flag in ((out, "-o"), (filters, "--filters")):
        check_free(path, flag, args.overwrite)

    model, kind, shape, config = _load_target(args)
    hw = (args.size, args.size) if args.size else (int(shape[2]), int(shape[3]))
    _, x = prepare_image(
        args.image,
        int(shape[1]),
        hw,
        mean=config.get("mean"),
        std=config.get("std"),
        standardise=bool(config) and config.get("mean") is None,
    )
    valid = [n for n, _ in model.named_modules() if n]
    for name in args.layers or []:
        if name not in valid:
            raise unknown_layer(name, valid, args.target)
    shapes, maps, first_conv = capture(model, x, kind, args.layers or ())
    spatial = [n for n, s in shapes.items() if len(s) == 4]
    if args.layers:
        layers = list(dict.fromkeys(args.layers))
        for name in layers:
            if name not in shapes:
                raise UsageError(f"layer {name!r} did not run in the forward pass of {args.target}")
            if name not in maps:
                raise UsageError(
                    f"layer {name!r} gives {shapes[name]}, not a feature map (B, C, H, W); "
                    f"feature maps: {', '.join(spread(spatial, SHOWN_NAMES))}"
                )
    else:
        layers = stage_layers({n: shapes[n] for n in spatial})
        if not layers:
            raise UsageError(f"{args.target} has no feature map larger than 1x1 at input {tuple(x.shape)}")
        _, maps, _ = capture(model, x, kind, layers)  # again, keeping only the stages' maps

    from nnatlas.viz import plot_feature_maps, plot_filters

    for path in (out, filters):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create the folder of {str(path)!r}: {e.strerror}") from None
    size = "x".join(map(str, x.shape[2:]))
    title = f"{args.target}: feature maps on {Path(args.image).name} ({size} px)"
    plot_feature_maps({n: maps[n] for n in layers}, out, channels=args.channels, title=title)
    console = Console()
    shown = markup_safe(", ".join(layers))
    console.print(f"feature maps of {len(layers)} layers ({shown}) -> {markup_safe(out)}", soft_wrap=True)
    if first_conv is None:
        console.print("no nn.Conv2d ran: no filters to draw", soft_wrap=True)
        return 0
    name, conv = first_conv
    plot_filters(conv.weight, filters, title=f"{args.target}: {name}")
    kernel = "x".join(map(str, conv.weight.shape))
    console.print(
        f"filters of the first convolution {name} ({kernel}) -> {markup_safe(filters)}", soft_wrap=True
    )
    return 0
