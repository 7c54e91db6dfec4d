"""``nnatlas train``: train a registered model on a data set, writing ``runs/<name>/``.

The parser is built without importing torch, so ``--help`` answers at once; the heavy imports happen
when the command runs.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from nnatlas._choices import OPTIMIZERS, SCHEDULERS
from nnatlas.cli import seq2seq_cmd
from nnatlas.cli.common import UsageError

TRAIN_TASKS = ("classification", "seq2seq")
EMBEDDED_DATA = "digits, shapes"
DEFAULT_MODELS = {"classification": "cifar_resnet20", "seq2seq": seq2seq_cmd.DEFAULT_MODEL}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (default: cifar_resnet20 on the embedded digits data)",
        description="Train a registered model on a data set. With no arguments it trains a ResNet-20 on "
        "scikit-learn's 8x8 digits, which ships with the package (no download), and writes the run to "
        "runs/<name>/: config.json, metrics.jsonl (one line per epoch), model.safetensors and curves.png. "
        "An existing run folder is never overwritten: a second run gets the suffix -2, -3, ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "kind",
        nargs="?",
        default="classification",
        metavar="TASK",
        help=f"what to train: {', '.join(TRAIN_TASKS)}",
    )
    p.add_argument(
        "--model",
        default=argparse.SUPPRESS,  # per task, see DEFAULT_MODELS (and no "(default: None)" in --help)
        help="registered model name (see `nnatlas models`; default: "
        + ", ".join(f"{m} for {k}" for k, m in DEFAULT_MODELS.items())
        + ")",
    )
    p.add_argument("--data", default="digits", help=f"data set (embedded: {EMBEDDED_DATA})")
    p.add_argument("--epochs", type=int, default=15, help="number of passes over the training set")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS, help="optimiser")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="decay of weights (not of norms/biases)")
    p.add_argument(
        "--scheduler", default="cosine", choices=SCHEDULERS, help="learning-rate schedule, per step"
    )
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="length of the linear warm-up")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and data split")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    p.add_argument("--name", default=None, help="run folder name (default: <model>-<data>)")
    p.add_argument("--out", default="runs", help="folder that holds the run folders")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    seq2seq_cmd.add_train_arguments(p)
    p.set_defaults(func=run)


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Validate everything and build the parts; any ValueError here is a usage error (exit 2)."""
    from nnatlas._suggest import unknown_choice_message

    if args.kind not in TRAIN_TASKS:
        raise UsageError(unknown_choice_message("task", args.kind, TRAIN_TASKS))
    args.model = getattr(args, "model", None) or DEFAULT_MODELS[args.kind]
    import torch

    from nnatlas.data import DATASETS, load_dataset
    from nnatlas.engine import RunDirError, TrainConfig, create_run_dir, resolve_device
    from nnatlas.models import create_model, get_model_info

    try:
        info = get_model_info(args.model)
        if info.task != args.kind:
            raise ValueError(f"model {args.model!r} is a {info.task} model; the task is {args.kind}")
        if args.data not in DATASETS:
            raise ValueError(unknown_choice_message("data set", args.data, DATASETS))
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            optimizer=args.optimizer,
            weight_decay=args.weight_decay,
            scheduler=args.scheduler,
            warmup_epochs=args.warmup_epochs,
            seed=args.seed,
            device=args.device,
            num_workers=args.workers,
        )
        resolve_device(config.device)
        data = load_dataset(args.data, seed=args.seed)
        if min(data.image_size) < info.min_size:
            h, w = data.image_size
            raise ValueError(
                f"model {args.model!r} needs images of at least {info.min_size}x{info.min_size} pixels; "
                f"data set {data.name!r} has {h}x{w}"
            )
        torch.manual_seed(args.seed)
        model = create_model(args.model, num_classes=data.num_classes, in_channels=data.in_channels)
        run_dir = create_run_dir(args.out, args.name or f"{args.model}-{args.data}")
    except (ValueError, TypeError, RunDirError) as e:
        raise UsageError(str(e)) from None
    return {"config": config, "data": data, "model": model, "run_dir": run_dir}


def run(args: argparse.Namespace) -> int:
    if args.kind == "seq2seq":
        return seq2seq_cmd.run_train(args)
    parts = _prepare(args)
    from rich.console import Console

    from nnatlas.analysis import count_parameters
    from nnatlas.cli.progress import NullProgress, RichProgress
    from nnatlas.engine import ClassificationTask, Trainer, read_jsonl
    from nnatlas.viz import plot_curves

    config, data, model, run_dir = parts["config"], parts["data"], parts["model"], parts["run_dir"]
    console = Console(stderr=True, quiet=args.quiet)
    console.print(
        f"training [bold]{args.model}[/] ({count_parameters(model):,} parameters) on [bold]{data.name}[/] "
        f"({len(data.train)} train / {len(data.val)} val) -> {run_dir}",
        soft_wrap=True,
    )
    task = ClassificationTask(data.num_classes)
    extra = {
        "model": args.model,
        "data": data.name,
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
    }
    reporter = NullProgress() if args.quiet else RichProgress(console)
    t0 = time.perf_counter()
    with reporter:
        trainer = Trainer(
            model, task, data.train, data.val, config, run_dir=run_dir, progress=reporter, extra_config=extra
        )
        trainer.fit()
    wall = time.perf_counter() - t0
    records = read_jsonl(run_dir / "metrics.jsonl")
    plot_curves(records, run_dir / "curves.png", title=f"{args.model} on {data.name}")
    last = records[-1]
    Console().print(
        f"done in {wall:.1f} s: val_acc {last.get('val_acc', float('nan')):.4f}, "
        f"val_loss {last.get('val_loss', float('nan')):.4f}; run saved in {run_dir}",
        soft_wrap=True,
    )
    return 0
