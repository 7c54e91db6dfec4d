"""``nnatlas eval RUN_DIR``: re-evaluate a saved classification run on its validation set.

The model is rebuilt from ``config.json`` (model name, classes, input channels, data set and its
options), the weights are read from ``model.safetensors`` (``--weights ema``: ``model_ema.safetensors``;
``--weights checkpoint``: the model of ``checkpoint.pt``, for a run that was interrupted), and the
validation metrics are printed and written to ``eval.json`` in the run folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nnatlas._choices import AMP_MODES
from nnatlas.cli.common import UsageError

WEIGHTS = ("final", "ema", "checkpoint")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="re-evaluate a saved run (runs/<name>) on its validation set",
        description="Rebuild the model of a saved run from its config.json, load its weights and compute the "
        "validation metrics again; they are printed and written to RUN_DIR/eval.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `nnatlas train`")
    p.add_argument("--weights", default="final", choices=WEIGHTS, help="which weights to evaluate")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size")
    p.add_argument("--amp", default="none", choices=AMP_MODES, help="autocast while evaluating")
    p.add_argument("--data-dir", default=None, help="data folder (default: the one the run used)")
    p.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    p.add_argument("--quiet", action="store_true", help="print only the JSON line")
    p.set_defaults(func=run)


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    if not path.is_file():
        raise UsageError(f"{str(run_dir)!r} is not a run folder: no config.json")
    try:
        config = json.loads(path.read_text())
    except ValueError as e:
        raise UsageError(f"{str(path)!r} is not valid JSON: {e}") from None
    if config.get("task") != "classification":
        raise UsageError(
            f"nnatlas eval re-evaluates classification runs; {str(run_dir)!r} is a {config.get('task')} run"
        )
    for key in ("model", "data", "num_classes", "in_channels"):
        if key not in config:
            raise UsageError(f"{str(path)!r} lacks {key!r}; it was not written by nnatlas train")
    return config


def _weights(run_dir: Path, which: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    from nnatlas.engine import CHECKPOINT_NAME, load_checkpoint

    if which == "checkpoint":
        return load_checkpoint(run_dir / CHECKPOINT_NAME)["model"]
    name = "model_ema.safetensors" if which == "ema" else "model.safetensors"
    path = run_dir / name
    if not path.is_file():
        hint = (
            " (the run used no EMA)" if which == "ema" else "; an interrupted run: use --weights checkpoint"
        )
        raise UsageError(f"no {name} in {str(run_dir)!r}{hint}")
    return load_file(path)


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    config = _read_config(run_dir)
    from torch.utils.data import DataLoader

    from nnatlas.data import load_dataset
    from nnatlas.engine import CheckpointError, ClassificationTask, check_amp, evaluate_model, resolve_device
    from nnatlas.engine.runs import write_json
    from nnatlas.models import create_model

    cli = config.get("cli", {})
    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")
        device = resolve_device(args.device)
        check_amp(args.amp, device)
        data = load_dataset(
            config["data"],
            seed=cli.get("seed", config.get("train", {}).get("seed", 0)),
            data_dir=args.data_dir or cli.get("data_dir"),
            download=False,
            augment="none",
            image_size=cli.get("image_size"),
        )
        model = create_model(
            config["model"], num_classes=config["num_classes"], in_channels=config["in_channels"]
        )
        model.load_state_dict(_weights(run_dir, args.weights))
    except (ValueError, TypeError, CheckpointError) as e:
        raise UsageError(str(e)) from None
    except RuntimeError as e:  # weights that do not fit the model named in config.json
        raise UsageError(f"the weights in {str(run_dir)!r} do not fit {config['model']}: {e}") from None
    model.to(device)
    loader = DataLoader(data.val, batch_size=args.batch_size, num_workers=args.workers)
    metrics = evaluate_model(
        model, ClassificationTask(config["num_classes"]), loader, device=device, amp=args.amp
    )
    result = {"run": str(run_dir), "weights": args.weights, "samples": len(data.val), **metrics}
    write_json(run_dir / "eval.json", result)
    print(json.dumps(result))
    if not args.quiet:
        from rich.console import Console

        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        Console(stderr=True).print(f"{config['model']} on {data.name} ({args.weights} weights): {shown}")
    return 0
