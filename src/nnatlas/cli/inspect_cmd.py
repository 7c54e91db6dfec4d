"""``nnatlas inspect MODEL``: shapes, parameters, MACs/FLOPs and receptive fields of any model.

MODEL is a registered name (``nnatlas models``), ``torchvision:NAME`` (random weights, nothing is
downloaded) or ``package.module:factory`` (a callable that returns an ``nn.Module``). The parser imports
nothing heavy, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from nnatlas.cli.common import UsageError

FORMATS = ("table", "json", "csv")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="per-layer shapes, parameters, MACs/FLOPs and receptive fields of a model",
        description="Run one forward pass of MODEL (on the meta device when it can: nothing is computed) and "
        "report every layer's output shape, parameters, MACs and FLOPs (1 MAC = 2 FLOPs) and receptive field. "
        "MODEL is a registered name, torchvision:NAME (random weights) or package.module:factory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "model", metavar="MODEL", help="registered name, torchvision:NAME or package.module:factory"
    )
    p.add_argument(
        "--input",
        default=None,
        help="input shape B,C,H,W (default: the registered model's input, else 1,3,224,224)",
    )
    p.add_argument("--format", default="table", choices=FORMATS, help="output format")
    p.add_argument("--depth", type=int, default=None, help="only layers at most this deep (1 = children)")
    p.add_argument("--erf", default=None, metavar="PNG", help="also save the effective receptive field here")
    p.add_argument("--erf-samples", type=int, default=8, help="random inputs averaged for --erf")
    p.add_argument("--overwrite", action="store_true", help="allow --erf to replace an existing file")
    p.set_defaults(func=run)


def parse_shape(text: str) -> tuple[int, ...]:
    parts = [p for p in re.split(r"[,x\s]+", text.strip()) if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) < 2 or any(v < 1 for v in shape):
        raise UsageError(
            f"--input must be positive ints separated by commas, such as 1,3,224,224; got {text!r}"
        )
    return shape


def resolve_model(spec: str, device: Any) -> tuple[Any, tuple[int, ...] | None]:
    """Build MODEL on ``device``; returns the model and its default input shape (or ``None``)."""
    import importlib

    import torch
    from torch import nn

    from nnatlas._suggest import unknown_choice_message

    if spec.startswith("torchvision:"):
        import torchvision

        name = spec.split(":", 1)[1]
        names = torchvision.models.list_models()
        if name not in names:
            raise UsageError(unknown_choice_message("torchvision model", name, names))
        import inspect

        kwargs: dict[str, Any] = {"weights": None}
        if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(name)).parameters:
            kwargs["weights_backbone"] = None  # random backbone too: nothing is ever downloaded
        with torch.device(device):
            return torchvision.models.get_model(name, **kwargs), None
    if ":" in spec:
        module_name, _, factory = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise UsageError(f"cannot import module {module_name!r} of MODEL {spec!r}: {e}") from e
        fn = getattr(module, factory, None)
        if not callable(fn):
            public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
            raise UsageError(unknown_choice_message(f"factory in {module_name}", factory, public))
        with torch.device(device):
            model = fn()
        if not isinstance(model, nn.Module):
            raise UsageError(f"MODEL {spec!r} must return an nn.Module; got {type(model).__name__}")
        return model, None
    from nnatlas.models import create_model, get_model_info, list_models

    if spec not in list_models():
        raise UsageError(unknown_choice_message("model", spec, list_models()))
    info = get_model_info(spec)
    with torch.device(device):
        return create_model(spec), (1, *info.input_size)


def run(args: argparse.Namespace) -> int:
    import torch

    from nnatlas.analysis import ShapeError, effective_receptive_field, summary

    if args.depth is not None and args.depth < 1:
        raise UsageError(f"--depth must be >= 1; got {args.depth}")
    if args.erf_samples < 1:
        raise UsageError(f"--erf-samples must be >= 1; got {args.erf_samples}")
    erf_path = Path(args.erf) if args.erf else None
    if erf_path is not None and erf_path.exists() and not args.overwrite:
        raise UsageError(f"--erf {str(erf_path)!r} already exists; choose another path or pass --overwrite")
    shape = parse_shape(args.input) if args.input else None

    def measure(device: str):
        model, default = resolve_model(args.model, device)
        size = shape or default or (1, 3, 224, 224)
        return model, size, summary(model, size, depth=args.depth)

    try:
        try:
            _, size, result = measure("meta")
        except (NotImplementedError, RuntimeError, ShapeError) as e:
            if "meta" not in str(e).lower():
                raise
            _, size, result = measure("cpu")  # the model needs real tensors (data-dependent code)
    except ShapeError as e:
        raise UsageError(str(e)) from e
    data = result.to_dict()
    data["model"] = args.model
    if args.format == "json":
        print(json.dumps(data, indent=2))
    elif args.format == "csv":
        print(result.to_csv(), end="")
    else:
        text = str(result).splitlines()
        text[0] = f"{args.model}  input {'x'.join(map(str, size))}"
        print("\n".join(text))
    if erf_path is not None:
        from nnatlas.viz.erf import plot_erf

        torch.manual_seed(0)
        model, _ = resolve_model(args.model, "cpu")
        try:
            erf = effective_receptive_field(model, size, samples=args.erf_samples)
        except ValueError as e:
            raise UsageError(str(e).splitlines()[0]) from e
        erf_path.parent.mkdir(parents=True, exist_ok=True)
        plot_erf(erf, erf_path, title=f"{args.model}: effective receptive field of {erf.layer}")
        if args.format == "table":
            print(
                f"effective receptive field of {erf.layer}: extent {'x'.join(map(str, erf.extent))} px -> {erf_path}"
            )
    return 0
