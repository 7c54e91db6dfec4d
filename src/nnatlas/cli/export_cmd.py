"""``nnatlas export MODEL|RUN --format onnx|pt2 -o FILE``: a model as one file, checked against eager.

MODEL is a registered name (random weights, seed 0) and RUN a run folder written by ``nnatlas train``
(``config.json`` and ``model.safetensors``: the trained weights). The model is put in eval mode and
exported under ``torch.no_grad()`` with an example input: images ``(B, C, H, W)`` of the registered
input size, token ids ``(B, S)`` and ``(B, T)`` for a seq2seq model (one source row padded).

- ``--format pt2``: ``torch.export.export`` then ``torch.export.save``; checked by loading the file
  with ``torch.export.load`` and running it.
- ``--format onnx``: the dynamo exporter, ``torch.onnx.export(..., dynamo=True)`` (needs ``onnx`` and
  ``onnxscript``); checked with ``onnxruntime`` when it is installed (``pip install 'nnatlas[export]'``).

The check runs the exported file and the eager model on a *fresh* input (other values than the example;
with ``--dynamic`` also another batch size and, for seq2seq, other lengths) and prints the largest
absolute difference of the outputs; above ``atol + rtol * max|eager|`` the command fails with exit
code 1 (the file is kept for inspection). An existing FILE is never replaced without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import math
import os
import warnings
from pathlib import Path
from typing import Any

from nnatlas.cli.common import UsageError, check_free, eprint

FORMATS = ("onnx", "pt2")
SUFFIXES = {".onnx": "onnx", ".pt2": "pt2"}
INSTALL_HINT = "pip install 'nnatlas[export]'"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except ``None`` (whose meaning the help text gives)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model or a trained run to ONNX or a torch.export program, checked against eager",
        description="Export MODEL (a registered name, random weights) or RUN (a folder written by `nnatlas "
        "train`, its trained weights) in eval mode: --format pt2 writes a torch.export program "
        "(torch.export.save), --format onnx an ONNX file from the dynamo exporter. The file is then loaded "
        "and run (ONNX through onnxruntime, when installed) on a fresh input, and the largest absolute "
        "difference from the eager model is printed; above ATOL + RTOL * max|eager| the command exits "
        f"with code 1. ONNX needs the optional packages: {INSTALL_HINT}.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("model", metavar="MODEL|RUN", help="a registered model name or a run folder")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the file to write")
    p.add_argument(
        "--format",
        default=None,
        choices=FORMATS,
        help="file format (default: from FILE's suffix, .onnx or .pt2)",
    )
    p.add_argument("--batch-size", type=int, default=2, help="batch size of the example input")
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="keep the batch size (and a seq2seq model's sequence lengths) dynamic instead of fixed to the "
        "example's; checked on another batch size",
    )
    p.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance of the check")
    p.add_argument("--rtol", type=float, default=1e-4, help="tolerance relative to max|eager output|")
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out_path, fmt = _check_args(args)
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxscript") if not _installed(m)]
        if missing:
            eprint(f"nnatlas export: --format onnx needs {' and '.join(missing)}: {INSTALL_HINT}")
            return 1
    import torch

    model, task, name = _load_model(args.model)
    model.eval()
    example = _example_inputs(model, task, name, args.batch_size, seed=0)
    fresh_batch = args.batch_size + 1 if args.dynamic else args.batch_size
    fresh = _example_inputs(model, task, name, fresh_batch, seed=1, longer=args.dynamic)
    dynamic = _dynamic_shapes(model, task, len(example)) if args.dynamic else None
    with torch.no_grad():
        try:
            export = _export_pt2 if fmt == "pt2" else _export_onnx
            exported = export(model, example, dynamic, out_path)
        except Exception as e:  # the exporter's message is many lines: its first is the reason
            first = next((line for line in str(e).splitlines() if line.strip()), "")
            eprint(f"nnatlas export: {name} could not be exported to {fmt}: {type(e).__name__}: {first}")
            return 1
        if exported is None:
            print(f"wrote {out_path} (onnx, {out_path.stat().st_size:,} bytes); not checked: {INSTALL_HINT}")
            return 0
        reference = _tensors(model(*fresh))
        outputs = [torch.as_tensor(o) for o in exported(*fresh)]
    if len(outputs) != len(reference) or any(
        a.shape != b.shape for a, b in zip(outputs, reference, strict=True)
    ):
        eprint(f"nnatlas export: the exported file returns other outputs than the model; kept {out_path}")
        return 1
    diff = max(float((a.double() - b.double()).abs().max()) for a, b in zip(outputs, reference, strict=True))
    scale = max(float(b.abs().max()) for b in reference)
    tol = args.atol + args.rtol * scale
    shapes = ", ".join(str(tuple(t.shape)) for t in fresh)
    report = (
        f"max |exported - eager| = {diff:.2e} on a fresh input {shapes} (tolerance {args.atol:g} + "
        f"{args.rtol:g} * {scale:.3g} = {tol:.2e})"
    )
    if not diff <= tol:
        eprint(f"nnatlas export: check failed: {report}; kept {out_path}")
        return 1
    print(f"wrote {out_path} ({fmt}, {out_path.stat().st_size:,} bytes); {report}: ok")
    return 0


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module blocked in sys.modules
        return False


# ---- arguments and the model -------------------------------------------------------------------------
def _check_args(args: argparse.Namespace) -> tuple[Path, str]:
    out_path = Path(args.output)
    fmt = args.format or SUFFIXES.get(out_path.suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot tell the format from {str(out_path)!r}: pass --format onnx or --format pt2")
    check_free(out_path, "-o", args.overwrite)
    if not out_path.parent.is_dir():
        raise UsageError(f"the folder of -o {str(out_path)!r} does not exist")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1; got {args.batch_size}")
    if args.dynamic and args.batch_size < 2:
        raise UsageError(
            f"--dynamic needs --batch-size >= 2 (a size of 1 is fixed by torch.export); got {args.batch_size}"
        )
    for name in ("atol", "rtol"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"--{name} must be a finite number >= 0; got {value}")
    return out_path, fmt


def _load_model(spec: str) -> tuple[Any, str, str]:
    """``(model, task, registered name)`` of a registered name or a run folder."""
    import torch

    from nnatlas._suggest import unknown_choice_message
    from nnatlas.models import create_model, get_model_info, list_models

    run_dir = Path(spec)
    if not run_dir.is_dir():
        if spec not in list_models():
            raise UsageError(unknown_choice_message("model", spec, list_models()) + " (or a run folder)")
        torch.manual_seed(0)
        return create_model(spec), get_model_info(spec).task, spec
    from nnatlas.cli.runs import load_run_model

    model, config = load_run_model(run_dir, "final")
    name = config["model"]
    return model, get_model_info(name).task, name


def _example_inputs(
    model: Any, task: str, name: str, batch: int, *, seed: int, longer: bool = False
) -> tuple:
    """Token ids ``(B, S), (B, T)`` for seq2seq (the last source row padded), else images ``(B, C, H, W)``."""
    import torch

    from nnatlas.models import get_model_info

    size = get_model_info(name).input_size
    g = torch.Generator().manual_seed(seed)
    if task == "seq2seq":
        S = min(size[0] + 2 * longer, model.max_len)
        T = max(S - 3, 1)
        src = torch.randint(3, model.src_vocab_size, (batch, S), generator=g)
        tgt = torch.randint(3, model.tgt_vocab_size, (batch, T), generator=g)
        tgt[:, 0] = model.bos_id
        if batch > 1:
            src[-1, S // 2 :] = model.pad_id
        return src, tgt
    channels = getattr(model, "in_channels", None) or _first_conv_channels(model) or size[0]
    return (torch.randn(batch, channels, *size[1:], generator=g),)


def _first_conv_channels(model: Any) -> int | None:
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


def _dynamic_shapes(model: Any, task: str, n: int) -> tuple:
    from torch.export import Dim

    batch = Dim("batch")
    if task == "seq2seq":  # lengths up to the positional table
        return (
            {0: batch, 1: Dim("src_len", max=model.max_len)},
            {0: batch, 1: Dim("tgt_len", max=model.max_len)},
        )
    return tuple({0: batch} for _ in range(n))


def _tensors(output: Any) -> list:
    import torch
    from torch.utils._pytree import tree_leaves

    return [t for t in tree_leaves(output) if isinstance(t, torch.Tensor)]


# ---- the two formats ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warn about their internals; the command reports by itself."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _write(path: Path, save) -> None:
    """Write through a temporary file beside ``path``, so that a failed export leaves nothing half-written."""
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _export_pt2(model: Any, example: tuple, dynamic: tuple | None, path: Path):
    import torch

    with _quiet():
        program = torch.export.export(model, example, dynamic_shapes=dynamic)
    _write(path, lambda tmp: torch.export.save(program, str(tmp)))
    loaded = torch.export.load(str(path)).module()
    return lambda *inputs: _tensors(loaded(*inputs))


def _export_onnx(model: Any, example: tuple, dynamic: tuple | None, path: Path):
    """Export; returns a runner through onnxruntime, or None when onnxruntime is not installed."""
    import torch

    with _quiet():
        program = torch.onnx.export(model, example, dynamo=True, dynamic_shapes=dynamic, verbose=False)
    _write(path, lambda tmp: program.save(str(tmp)))
    if not _installed("onnxruntime"):
        return None
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda *inputs: session.run(None, dict(zip(names, (t.numpy() for t in inputs), strict=True)))
