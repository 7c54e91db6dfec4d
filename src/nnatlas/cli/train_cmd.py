"""``nnatlas train``: train a registered model on a data set, writing ``runs/<name>/``.

The parser is built without importing torch, so ``--help`` answers at once; the heavy imports happen
when the command runs.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from nnatlas._choices import AMP_MODES, AUGMENT_PRESETS, OPTIMIZERS, SCHEDULERS
from nnatlas.cli import seq2seq_cmd
from nnatlas.cli.common import UsageError, eprint

TRAIN_TASKS = ("classification", "seq2seq")
EMBEDDED_DATA = "digits, shapes"
DEFAULT_MODELS = {"classification": "cifar_resnet20", "seq2seq": seq2seq_cmd.DEFAULT_MODEL}
FILE_DATA = "mnist, fashion_mnist, cifar10, cifar100, imagefolder"
#: Options a resumed run takes from the command line (when given there) rather than from the saved config,
#: with their defaults: where the data, which device and how many loader workers may change between runs.
RESUME_OVERRIDES = {"quiet": False, "device": "auto", "workers": 0, "data_dir": "data"}


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
    p.add_argument(
        "--data", default="digits", help=f"data set (embedded: {EMBEDDED_DATA}; from files: {FILE_DATA})"
    )
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
    p.add_argument("--device", default=RESUME_OVERRIDES["device"], help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--workers", type=int, default=RESUME_OVERRIDES["workers"], help="data-loader worker processes"
    )
    p.add_argument("--name", default=None, help="run folder name (default: <model>-<data>)")
    p.add_argument("--out", default="runs", help="folder that holds the run folders")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    add_engine_arguments(p)
    seq2seq_cmd.add_train_arguments(p)
    p.set_defaults(func=run)


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the training engine and of the file-based data sets (shared by every task)."""
    g = p.add_argument_group("data from files")
    g.add_argument(
        "--data-dir", default=RESUME_OVERRIDES["data_dir"], help="folder holding the data set's files"
    )
    g.add_argument("--download", action="store_true", help="download the data set into --data-dir if missing")
    g.add_argument("--augment", default="none", choices=AUGMENT_PRESETS, help="training augmentation preset")
    g.add_argument("--image-size", type=int, default=None, help="image side for imagefolder (default 224)")
    g.add_argument(
        "--limit-train",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N samples only (quick checks)",
    )
    g = p.add_argument_group("engine")
    g.add_argument(
        "--resume", default=None, metavar="RUN_DIR", help="continue runs/<name> from its checkpoint"
    )
    g.add_argument("--amp", default="none", choices=AMP_MODES, help="mixed precision (fp16 on CUDA only)")
    g.add_argument("--accum-steps", type=int, default=1, help="micro-batches per optimiser update")
    g.add_argument("--clip-grad", type=float, default=0.0, help="clip the gradient norm to this (0 = off)")
    g.add_argument("--ema-decay", type=float, default=0.0, help="EMA of the weights, e.g. 0.999 (0 = off)")
    g.add_argument(
        "--milestones", type=float, nargs="+", default=(), help="epochs where --scheduler step decays"
    )
    g.add_argument("--gamma", type=float, default=0.1, help="decay factor of --scheduler step")
    g.add_argument("--eval-batch-size", type=int, default=256, help="validation batch size")
    g.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster convs on GPUs)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--deterministic", action="store_true", help="deterministic kernels (exact reruns)")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (CUDA)")
    g.add_argument(
        "--checkpoint-every", type=int, default=0, help="checkpoint every N updates (0 = epoch ends)"
    )
    g.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard (needs tensorboard)")


def train_config(args: argparse.Namespace) -> Any:
    """A :class:`nnatlas.engine.TrainConfig` from the parsed options (raises ``ValueError`` on bad ones)."""
    from nnatlas.engine import TrainConfig, check_amp, resolve_device, tensorboard_available

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        scheduler=args.scheduler,
        warmup_epochs=args.warmup_epochs,
        milestones=tuple(args.milestones),
        gamma=args.gamma,
        seed=args.seed,
        device=args.device,
        num_workers=args.workers,
        grad_accum_steps=args.accum_steps,
        clip_grad_norm=args.clip_grad,
        ema_decay=args.ema_decay,
        amp=args.amp,
        channels_last=args.channels_last,
        compile=args.compile,
        deterministic=args.deterministic,
        sync_bn=args.sync_bn,
        checkpoint_every=args.checkpoint_every,
        tensorboard=args.tensorboard,
    )
    device = resolve_device(config.device)
    check_amp(config.amp, device)
    if config.sync_bn and device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA devices (torch's SyncBatchNorm runs on GPUs only)")
    if config.tensorboard and not tensorboard_available():
        raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard")
    return config


def load_data(args: argparse.Namespace) -> Any:
    """The data bundle named by ``--data`` (embedded or from ``--data-dir``)."""
    from nnatlas._suggest import unknown_choice_message
    from nnatlas.data import DATASETS, load_dataset

    if args.data not in DATASETS:
        raise ValueError(unknown_choice_message("data set", args.data, DATASETS))
    data = load_dataset(
        args.data,
        seed=args.seed,
        data_dir=args.data_dir,
        download=args.download,
        augment=args.augment,
        image_size=args.image_size,
    )
    limit = getattr(args, "limit_train", None)
    if limit is not None:
        from torch.utils.data import Subset

        if limit < 1:
            raise ValueError(f"--limit-train must be >= 1; got {limit}")
        data.train = Subset(data.train, range(min(limit, len(data.train))))
    return data


def resumed_args(args: argparse.Namespace) -> argparse.Namespace:
    """The options saved with the run in ``--resume``, with those of :data:`RESUME_OVERRIDES` from now."""
    import json
    from pathlib import Path

    folder = Path(args.resume)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UsageError(
            f"--resume {args.resume}: no config.json there; give a run folder such as runs/<name>"
        )
    if not (folder / "checkpoint.pt").is_file():
        raise UsageError(f"--resume {args.resume}: no checkpoint.pt there; the run saved none to resume from")
    try:
        saved = json.loads(config_file.read_text())["cli"]
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"--resume {args.resume}: config.json holds no command-line options") from None
    merged = {**vars(args), **saved}
    for key, default in RESUME_OVERRIDES.items():
        if getattr(args, key, default) != default:
            merged[key] = getattr(args, key)
    merged["quiet"] = args.quiet
    merged["resume"] = str(folder)
    merged["func"] = args.func
    return argparse.Namespace(**merged)


def make_run_dir(args: argparse.Namespace, default_name: str) -> Any:
    """The run folder: the one being resumed, or a new one made by the main process and shared with all."""
    from pathlib import Path

    from nnatlas.engine import RunDirError, create_run_dir
    from nnatlas.engine.distributed import broadcast_object, dist_info

    if getattr(args, "resume", None):
        return Path(args.resume)
    path, error = None, None
    if dist_info().is_main:
        try:
            path = str(create_run_dir(args.out, args.name or default_name))
        except RunDirError as e:
            error = str(e)
    # Every process learns the folder, or the error, so none waits for a folder that never comes.
    path, error = broadcast_object((path, error))
    if error is not None:
        raise RunDirError(error)
    return Path(path)


def cli_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as JSON-friendly values, saved in config.json for --resume."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items() if k != "func"}


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Validate everything and build the parts; any ValueError here is a usage error (exit 2)."""
    from nnatlas._suggest import unknown_choice_message

    if args.kind not in TRAIN_TASKS:
        raise UsageError(unknown_choice_message("task", args.kind, TRAIN_TASKS))
    args.model = getattr(args, "model", None) or DEFAULT_MODELS[args.kind]
    import torch

    from nnatlas.engine import RunDirError
    from nnatlas.engine.distributed import init_distributed
    from nnatlas.models import create_model, get_model_info

    if getattr(args, "resume", None):
        args = resumed_args(args)
    try:
        info = get_model_info(args.model)
        if info.task != args.kind:
            raise ValueError(f"model {args.model!r} is a {info.task} model; the task is {args.kind}")
        config = train_config(args)
        init_distributed(config.device)
        data = load_data(args)
        if min(data.image_size) < info.min_size:
            h, w = data.image_size
            raise ValueError(
                f"model {args.model!r} needs images of at least {info.min_size}x{info.min_size} pixels; "
                f"data set {data.name!r} has {h}x{w}"
            )
        torch.manual_seed(args.seed)
        model = create_model(args.model, num_classes=data.num_classes, in_channels=data.in_channels)
        run_dir = make_run_dir(args, f"{args.model}-{args.data}")
    except (ValueError, TypeError, RunDirError) as e:
        raise UsageError(str(e)) from None
    return {"config": config, "data": data, "model": model, "run_dir": run_dir, "args": args}


def run(args: argparse.Namespace) -> int:
    if args.kind == "seq2seq":
        return seq2seq_cmd.run_train(args)
    parts = _prepare(args)
    from rich.console import Console

    from nnatlas.analysis import count_parameters
    from nnatlas.cli.progress import NullProgress, RichProgress, finish_run
    from nnatlas.engine import ClassificationTask, Trainer, TrainingInterrupted
    from nnatlas.engine.distributed import destroy_distributed, dist_info

    config, data, model, run_dir = parts["config"], parts["data"], parts["model"], parts["run_dir"]
    args = parts["args"]
    world = dist_info()
    quiet = args.quiet or not world.is_main
    console = Console(stderr=True, quiet=quiet)
    action = f"resuming {run_dir}:" if args.resume else "training"
    console.print(
        f"{action} [bold]{args.model}[/] ({count_parameters(model):,} parameters) on [bold]{data.name}[/] "
        f"({len(data.train)} train / {len(data.val)} val)"
        + (f" on {world.world_size} processes" if world.enabled else "")
        + f" -> {run_dir}",
        soft_wrap=True,
    )
    task = ClassificationTask(data.num_classes)
    extra = {
        "model": args.model,
        "data": data.name,
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
        "cli": cli_options(args),
    }
    samples_per_step = config.batch_size * world.world_size
    reporter = NullProgress() if quiet else RichProgress(console, samples_per_step=samples_per_step)
    t0 = time.perf_counter()
    trainer = None
    try:
        with reporter:
            trainer = Trainer(
                model,
                task,
                data.train,
                data.val,
                config,
                run_dir=run_dir,
                progress=reporter,
                extra_config=extra,
            )
            trainer.fit(resume=bool(args.resume))
    except TrainingInterrupted as e:
        if world.is_main:
            eprint(f"nnatlas: {e}; continue with: nnatlas train --resume {run_dir}")
        return 128 + e.signum
    finally:
        trainer = None  # the DDP-wrapped model goes before the process group  # noqa: F841
        destroy_distributed()
    if not world.is_main:
        return 0
    wall = time.perf_counter() - t0
    finish_run(run_dir, title=f"{args.model} on {data.name}", wall=wall, keys=("val_acc", "val_loss"))
    return 0
