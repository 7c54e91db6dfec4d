"""``nnatlas inspect MODEL``: shapes, parameters, MACs/FLOPs and receptive fields of any model.

MODEL is a registered name (``nnatlas models``), ``torchvision:NAME`` (random weights, nothing is
downloaded) or ``package.module:factory`` (a callable that returns an ``nn.Module``). The model is built
on the meta device (nothing is allocated or computed); only a model whose forward pass needs real values
is measured again with a real forward pass on the CPU, and the command says so. The parser imports
nothing heavy, so ``--help`` answers at once.

Inputs: every ``--input B,C,H,W`` is one positional input (``--input 1,3,520,960 --input 1,3,520,960``
for RAFT); a detection model gets a list of ``B`` images of ``(C, H, W)``, as torchvision's detectors
take them. Without ``--input`` the model's own default is used: a torchvision model's image size (its
``image_size`` if it has one, else the crop size of its default weights' transforms, the resize size of
a segmentation model, 16 frames for video, the fixed or minimum size of a detector's transform), a
registered model's ``input_size``. Torchvision's detectors are built as their published weights are:
batch norm frozen (``FrozenBatchNorm2d``) in the backbone where the builder does so for trained weights.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from nnatlas.cli.common import UsageError, check_free

FORMATS = ("table", "json", "csv")
RF_LAYERS = 6  # --rf-image draws at most this many stages by default
OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "adamw")

# torchvision builders that build their backbone with FrozenBatchNorm2d when given trained weights
# (``norm_layer = FrozenBatchNorm2d if is_trained else nn.BatchNorm2d`` in torchvision/models/detection)
FROZEN_BN = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "maskrcnn_resnet50_fpn",
    "keypointrcnn_resnet50_fpn",
    "retinanet_resnet50_fpn",
    "fcos_resnet50_fpn",
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="per-layer shapes, parameters, MACs/FLOPs and receptive fields of a model",
        description="Run one forward pass of MODEL (on the meta device when it can: nothing is computed) and "
        "report every layer's output shape, parameters, MACs and FLOPs (1 MAC = 2 FLOPs) and receptive field. "
        "MODEL is a registered name, torchvision:NAME (random weights) or package.module:factory. Without "
        "--input the model's own input size is used (a torchvision model's weights' crop size); a detector gets "
        "a list of B images, and torchvision's detectors are built as their published weights are (batch norm "
        "frozen in the backbone).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "model", metavar="MODEL", help="registered name, torchvision:NAME or package.module:factory"
    )
    p.add_argument(
        "--input",
        action="append",
        default=None,
        metavar="B,C,H,W",
        help="an input shape; repeat for several inputs (default: the model's own input size)",
    )
    p.add_argument(
        "--kwargs",
        nargs="+",
        action="extend",
        default=None,
        metavar="KEY=VALUE",
        help="arguments for the model's builder, e.g. aux_loss=true image_size=518 (values: true, false, "
        "none, numbers, or text)",
    )
    p.add_argument("--format", default="table", choices=FORMATS, help="output format")
    p.add_argument("--depth", type=int, default=None, help="only layers at most this deep (1 = children)")
    p.add_argument(
        "--training",
        action="store_true",
        help="report one training step instead: backward MACs per layer and memory (parameters, gradients, "
        "optimizer state, saved activations, peak) at the --input batch size",
    )
    p.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS, help="optimizer for --training")
    p.add_argument("--erf", default=None, metavar="PNG", help="also save the effective receptive field here")
    p.add_argument("--erf-samples", type=int, default=8, help="random inputs averaged for --erf")
    p.add_argument(
        "--rf-image",
        default=None,
        metavar="IMG",
        help="draw the receptive fields of --rf-layers and the ERF heat map over this image (a skimage.data "
        "name such as astronaut, chelsea, coffee, or an image file), resized to the input size",
    )
    p.add_argument(
        "--rf-layers",
        nargs="+",
        default=None,
        metavar="NAME",
        help="layers for --rf-image (default: the main stages' outputs, at most 6, evenly spread); the ERF "
        "is that of the last one",
    )
    p.add_argument(
        "--rf-out", default=None, metavar="PNG", help="picture of --rf-image (default: rf_<model>.png)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="allow --erf and --rf-out to replace an existing file"
    )
    p.set_defaults(func=run)


_SHAPE = re.compile(r"\s*[0-9]+(\s*[,x]\s*[0-9]+)+\s*")


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` (or ``1x3x224x224``) as a tuple of positive ints; anything else is a usage error."""
    shape = tuple(int(p) for p in re.split(r"[,x]", text)) if _SHAPE.fullmatch(text) else ()
    if not shape or any(v < 1 for v in shape):
        raise UsageError(
            f"--input must be two or more positive ints separated by commas, such as 1,3,224,224; got {text!r}"
        )
    return shape


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_kwargs(items: list[str]) -> dict[str, Any]:
    """``["aux_loss=true", "image_size=518"]`` as ``{"aux_loss": True, "image_size": 518}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not _KEY.fullmatch(key) or not text.strip():
            raise UsageError(
                f"--kwargs takes KEY=VALUE pairs such as aux_loss=true image_size=518; got {item!r}"
            )
        if key in out:
            raise UsageError(f"--kwargs gives {key!r} twice")
        out[key] = _value(text.strip())
    return out


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _torchvision_kind(name: str) -> str:
    import torchvision.models as tvm

    for kind in ("detection", "segmentation", "video", "optical_flow", "quantization"):
        if name in tvm.list_models(module=getattr(tvm, kind)):
            return kind
    return "classification"


def _check_kwargs(builder: Any, kwargs: dict[str, Any], what: str) -> None:
    """Reject a keyword the builder cannot take, or a value of the wrong kind for a plainly annotated one."""
    import inspect
    import typing

    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key, value in kwargs.items():
        p = params.get(key)
        if p is None:
            if not takes_any:
                from nnatlas._suggest import unknown_choice_message

                names = [n for n, q in params.items() if q.kind in (q.KEYWORD_ONLY, q.POSITIONAL_OR_KEYWORD)]
                raise UsageError(f"--kwargs: {unknown_choice_message(f'argument of {what}', key, names)}")
            continue
        members = typing.get_args(p.annotation) or (p.annotation,)
        kinds = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
        if not all(m in kinds or m is type(None) for m in members):
            continue  # not a plain annotation: the builder checks the value itself
        ok = (value is None and type(None) in members) or any(
            isinstance(value, m) and not (m is int and isinstance(value, bool))
            for m in members
            if m is not type(None)
        )
        ok = ok or (float in members and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            expected = " or ".join(kinds[m] for m in members if m in kinds)
            raise UsageError(f"--kwargs {key} of {what} must be {expected}; got {value!r}")


def resolve_model(spec: str, kwargs: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``(build, kind)``: ``build(device)`` makes MODEL on ``"meta"`` or ``"cpu"``; ``kind`` is
    ``classification``, ``detection``, ``segmentation``, ``video``, ``optical_flow``, ``seq2seq`` (a registered
    sequence model: source and target token ids) or ``registered``."""
    import importlib

    from nnatlas._suggest import unknown_choice_message

    kwargs = dict(kwargs or {})
    if spec.startswith("torchvision:"):
        import inspect

        import torchvision

        name = spec.split(":", 1)[1]
        names = torchvision.models.list_models()
        if name not in names:
            raise UsageError(unknown_choice_message("torchvision model", name, names))
        builder = torchvision.models.get_model_builder(name)
        _check_kwargs(builder, kwargs, spec)
        kwargs.setdefault("weights", None)
        if "weights_backbone" in inspect.signature(builder).parameters:
            kwargs.setdefault("weights_backbone", None)  # random backbone too: nothing is ever downloaded
        kind = _torchvision_kind(name)

        def build_torchvision():
            model = builder(**kwargs)
            if name in FROZEN_BN:
                _freeze_batch_norm(model.backbone)
            return model

        return build_torchvision, kind
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
        _check_kwargs(fn, kwargs, spec)
        return (lambda: fn(**kwargs)), "factory"
    from nnatlas.models import create_model, get_model_info, list_models

    if spec not in list_models():
        raise UsageError(unknown_choice_message("model", spec, list_models()))
    info = get_model_info(spec)
    _check_kwargs(info.builder, kwargs, spec)
    kind = info.task if info.task in ("detection", "seq2seq") else "registered"
    return (lambda: create_model(spec, **kwargs)), kind


def _freeze_batch_norm(module: Any) -> None:
    """Every ``nn.BatchNorm2d`` inside ``module`` becomes a ``FrozenBatchNorm2d`` of the same size."""
    from torch import nn
    from torchvision.ops.misc import FrozenBatchNorm2d

    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                frozen = FrozenBatchNorm2d(child.num_features, child.eps).to(child.weight.device)
                setattr(parent, child_name, frozen)


def build(make: Any, device: str, what: str) -> Any:
    """``make()`` on ``device`` (``"meta"``: through :func:`~nnatlas.analysis.build_on_meta`)."""
    import torch
    from torch import nn

    from nnatlas.analysis import build_on_meta

    try:
        if device == "meta":
            model = build_on_meta(make)
        else:
            with torch.device(device):
                model = make()
    except (TypeError, ValueError) as e:
        raise UsageError(f"cannot build {what} with these --kwargs: {str(e).strip().splitlines()[0]}") from e
    if not isinstance(model, nn.Module):
        raise UsageError(f"MODEL {what!r} must return an nn.Module; got {type(model).__name__}")
    return model


def default_shapes(model: Any, spec: str, kind: str) -> list[tuple[int, ...]]:
    """The model's own input shapes (see the module documentation)."""
    if spec.startswith("torchvision:"):
        import torchvision

        name = spec.split(":", 1)[1]
        if kind == "detection":
            t = model.transform
            size = t.fixed_size or (t.min_size[0], t.min_size[0])
            return [(1, 3, *size)]
        if kind == "optical_flow":
            return [(1, 3, 520, 960), (1, 3, 520, 960)]
        transforms = torchvision.models.get_model_weights(name).DEFAULT.transforms()
        image = getattr(model, "image_size", None)
        if isinstance(image, int):
            side: int = image
        elif kind == "segmentation":
            side = transforms.resize_size[0]
        else:
            side = transforms.crop_size[0]
        if kind == "video":
            return [(1, 3, 16, side, side)]
        return [(1, 3, side, side)]
    if kind in ("registered", "detection", "seq2seq") and not spec.count(":"):
        from nnatlas.models import get_model_info

        shape = (1, *get_model_info(spec).input_size)
        return [shape, shape] if kind == "seq2seq" else [shape]  # seq2seq: source and target token ids
    return [(1, 3, 224, 224)]


def make_inputs(model: Any, shapes: list[tuple[int, ...]], kind: str) -> tuple:
    """Positional inputs: one random tensor per shape; a detector gets a list of ``B`` images instead."""
    import torch

    from nnatlas.analysis._trace import _placement

    device, dtype = _placement(model)
    if kind == "detection":
        return tuple([torch.randn(*s[1:], device=device, dtype=dtype) for _ in range(s[0])] for s in shapes)
    if kind == "seq2seq":  # token ids below each side's vocabulary
        vocab = (model.src_vocab_size, model.tgt_vocab_size)
        return tuple(torch.randint(0, vocab[min(i, 1)], s, device=device) for i, s in enumerate(shapes))
    return tuple(torch.randn(*s, device=device, dtype=dtype) for s in shapes)


def run(args: argparse.Namespace) -> int:
    import torch

    from nnatlas.analysis import MetaDeviceError, ShapeError, effective_receptive_field, summary
    from nnatlas.analysis.training import training_cost

    if args.depth is not None and args.depth < 1:
        raise UsageError(f"--depth must be >= 1; got {args.depth}")
    if args.erf_samples < 1:
        raise UsageError(f"--erf-samples must be >= 1; got {args.erf_samples}")
    erf_path = Path(args.erf) if args.erf else None
    if erf_path is not None:
        check_free(erf_path, "--erf", args.overwrite)
    rf_path = _rf_path(args)
    shapes = [parse_shape(text) for text in args.input] if args.input is not None else None
    kwargs = parse_kwargs(args.kwargs) if args.kwargs is not None else {}
    make, kind = resolve_model(args.model, kwargs)
    images = kind not in ("detection", "seq2seq")  # one (B, C, H, W) tensor, unless --input says otherwise
    if erf_path is not None and (not images or (shapes and len(shapes) > 1)):
        raise UsageError("--erf needs a model with one image input (B,C,H,W)")
    if rf_path is not None and (not images or (shapes and (len(shapes) > 1 or len(shapes[0]) != 4))):
        raise UsageError("--rf-image needs a model with one image input (B,C,H,W)")
    if rf_path is not None:
        _check_image(args.rf_image)  # a bad image is reported before anything is measured

    def measure(device: str):
        model = build(make, device, args.model)
        sizes = shapes or default_shapes(model, args.model, kind)
        inputs = make_inputs(model, sizes, kind)
        if args.training:
            return (
                model,
                sizes,
                training_cost(model, inputs=inputs, optimizer=args.optimizer, depth=args.depth),
            )
        return model, sizes, summary(model, inputs=inputs, depth=args.depth)

    try:
        try:
            _, sizes, result = measure("meta")
        except MetaDeviceError as e:
            print(f"nnatlas: note: {e}; measuring with a real forward pass on the CPU", file=sys.stderr)
            _, sizes, result = measure("cpu")
    except ShapeError as e:
        raise UsageError(str(e)) from e
    # drawn before the report is printed, so that a bad --rf-layers is the only output
    rf_note = _draw_rf_image(args, make, sizes[0], rf_path) if rf_path is not None else None
    data = result.to_dict()
    data["model"] = args.model
    shown = ", ".join("x".join(map(str, s)) for s in sizes)
    if args.format == "json":
        print(json.dumps(data, indent=2))
    elif args.format == "csv":
        print(_training_csv(result) if args.training else result.to_csv(), end="")
    else:
        text = str(result).splitlines()
        text[0] = f"{args.model}  input {shown}" + (f"  optimizer {args.optimizer}" if args.training else "")
        print("\n".join(text))
    if erf_path is not None:
        from nnatlas.viz.erf import plot_erf

        torch.manual_seed(0)
        model = build(make, "cpu", args.model)
        try:
            erf = effective_receptive_field(model, sizes[0], samples=args.erf_samples)
        except ValueError as e:
            raise UsageError(str(e).splitlines()[0]) from e
        erf_path.parent.mkdir(parents=True, exist_ok=True)
        plot_erf(erf, erf_path, title=f"{args.model}: effective receptive field of {erf.layer}")
        if args.format == "table":
            print(
                f"effective receptive field of {erf.layer}: extent {'x'.join(map(str, erf.extent))} px -> {erf_path}"
            )
    if rf_note is not None and args.format == "table":
        print(rf_note)
    return 0


def _rf_path(args: argparse.Namespace) -> Path | None:
    """Where ``--rf-image`` draws (``--rf-out``, default ``rf_<model>.png``); refuses to overwrite."""
    if args.rf_image is None:
        if args.rf_layers is not None or args.rf_out is not None:
            raise UsageError("--rf-layers and --rf-out need --rf-image IMG")
        return None
    from nnatlas.cli.features_cmd import safe_name

    path = Path(args.rf_out) if args.rf_out else Path(f"rf_{safe_name(args.model)}.png")
    check_free(path, "--rf-out", args.overwrite)
    return path


def _check_image(spec: str) -> None:
    from nnatlas.data import load_image

    try:
        load_image(spec)
    except ValueError as e:
        raise UsageError(f"--rf-image: {e}") from None


def _draw_rf_image(args: argparse.Namespace, make: Any, shape: tuple[int, ...], path: Path) -> str:
    """Draw the theoretical fields of ``--rf-layers`` and the ERF of the last one over ``--rf-image``, at
    the model's input size; returns the line to print."""
    import torch

    from nnatlas.analysis import effective_receptive_field, receptive_field
    from nnatlas.cli.features_cmd import prepare_image, spread, stage_layers, unknown_layer
    from nnatlas.viz import plot_receptive_fields_on_image

    if len(shape) != 4:
        raise UsageError(f"--rf-image needs an image input (B,C,H,W); the model takes {shape}")
    shown, _ = prepare_image(args.rf_image, int(shape[1]), (int(shape[2]), int(shape[3])))
    shape = (1, *shape[1:])
    torch.manual_seed(0)
    model = build(make, "cpu", args.model)
    rf = receptive_field(model, shape)
    if args.rf_layers:
        names = [n for n, _ in model.named_modules() if n]
        for name in args.rf_layers:
            if name not in names:
                raise unknown_layer(name, names, args.model)
            if name not in rf.layers:
                raise UsageError(
                    f"layer {name!r} of {args.model} has no bounded spatial receptive field at input "
                    f"{'x'.join(map(str, shape))}; layers with one: {', '.join(spread(list(rf.layers), 15))}"
                )
        layers = list(dict.fromkeys(args.rf_layers))
    else:
        layers = spread(stage_layers({n: f.output_shape for n, f in rf.layers.items()}), RF_LAYERS)
        if not layers:
            raise UsageError(f"{args.model} has no spatial layer at input {'x'.join(map(str, shape))}")
    try:
        erf = effective_receptive_field(model, shape, layers[-1], samples=args.erf_samples)
    except ValueError as e:
        raise UsageError(str(e).splitlines()[0]) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {n: rf.layers[n] for n in layers}
    image = Path(args.rf_image).name
    plot_receptive_fields_on_image(shown, fields, erf, path, title=f"{args.model} on {image}")
    sizes = ", ".join(f"{n} {'x'.join(f'{v:g}' for v in f.size)}" for n, f in fields.items())
    return f"receptive fields over {image} ({sizes}; ERF of {erf.layer}) -> {path}"


def _training_csv(result: Any) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    fields = ["name", "type", "depth", "forward_macs", "backward_macs", "backward_flops", "saved_bytes"]
    writer.writerow(fields)
    for r in result.rows:
        writer.writerow([getattr(r, f) for f in fields])
    return buf.getvalue()
