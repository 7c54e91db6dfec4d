"""``nnatlas eval RUN_DIR``: re-evaluate a saved run of any task on its validation set.

The task's recipe rebuilds the model and the validation data from ``config.json``; the weights are read from
``model.safetensors`` (``--weights ema``: ``model_ema.safetensors``; ``--weights checkpoint``: the model of
``checkpoint.pt``, for a run that was interrupted), and the validation metrics are printed and written to
``eval.json`` in the run folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nnatlas._choices import AMP_MODES
from nnatlas.cli.common import UsageError, markup_safe
from nnatlas.cli.runs import WEIGHT_FILES, WEIGHTS, read_run_config, read_weights, recipe_of, saved_args


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


def run(args: argparse.Namespace) -> int:
    from nnatlas._validate import check_int

    try:
        check_int("--batch-size", args.batch_size, maximum=1 << 20)
        check_int("--workers", args.workers, minimum=0, maximum=512)
    except ValueError as e:
        raise UsageError(str(e)) from None
    run_dir = Path(args.run_dir)
    config = read_run_config(run_dir, flag="RUN_DIR")
    recipe = recipe_of(config, run_dir)
    from torch.utils.data import DataLoader

    from nnatlas.engine import (
        CheckpointError,
        check_amp,
        evaluate_model,
        load_model_state,
        resolve_device,
        write_json,
    )

    overrides = {"download": False, "limit_train": None, "quiet": True}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    try:
        device = resolve_device(args.device)
        check_amp(args.amp, device)
        try:
            built = recipe.build(saved_args(config, **overrides))
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"the run in {str(run_dir)!r} cannot be rebuilt from its config.json: {e}"
            ) from None
        state = read_weights(run_dir, args.weights)
        load_model_state(built.model, state, run_dir / WEIGHT_FILES[args.weights])
    except (ValueError, TypeError, CheckpointError) as e:
        raise UsageError(str(e)) from None
    model = built.model.to(device)
    loader = DataLoader(
        built.val, batch_size=args.batch_size, num_workers=args.workers, collate_fn=built.collate_fn
    )
    metrics = evaluate_model(model, built.task, loader, device=device, amp=args.amp)
    result = {"run": str(run_dir), "weights": args.weights, "samples": len(built.val), **metrics}
    write_json(run_dir / "eval.json", result)
    print(json.dumps(result))
    if not args.quiet:
        from rich.console import Console

        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        Console(stderr=True).print(
            f"{markup_safe(config['model'])} on {markup_safe(built.data_name)} ({args.weights} weights): {shown}",
            soft_wrap=True,
        )
    return 0
