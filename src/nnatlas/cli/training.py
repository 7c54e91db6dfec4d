"""One path for every training task: :func:`run_training`.

It checks the whole configuration before anything is created (a bad value is one line naming its flag
and exit code 2, and leaves no run folder), resolves ``--resume``, builds the task's model and data through
its recipe, makes the run folder, trains with a progress bar, turns SIGINT / SIGTERM into a checkpoint and
exit code 130 / 143 with the command that continues, stops on divergence with exit code 1, and prints the
summary. Nothing here is specific to a task.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from nnatlas._validate import InvalidValue, check_int, check_name
from nnatlas.cli.common import UsageError, eprint, explicit_dests, markup_safe
from nnatlas.cli.options import ENGINE_OPTIONS, FLAG_OF_FIELD, OPTIONS_BY_DEST
from nnatlas.cli.runs import read_run_config
from nnatlas.cli.tasks.base import Recipe

#: Options that only say where the data lives; they may be given again with ``--resume``.
DATA_LOCATION = {"data_dir"}


def run_training(recipe: Recipe, args: argparse.Namespace) -> int:
    """Train ``recipe``'s task with the parsed ``args``; returns the exit code."""
    explicit = explicit_dests(args._parser, args._argv)
    state = None
    if args.resume:
        args, state = _resumed(recipe, args, explicit)
        if state is None:
            return 0  # a finished run, left as it is
    else:
        defaults = {**recipe.data_defaults(args.data), **recipe.model_defaults(getattr(args, "model", ""))}
        for dest, value in defaults.items():
            if dest not in explicit:
                setattr(args, dest, value)
    config = _checked_config(recipe, args, explicit)
    return _train(recipe, args, config, state)


# ---- the configuration, checked as a whole ----------------------------------------------------------


def train_config(args: argparse.Namespace) -> Any:
    """The :class:`nnatlas.engine.TrainConfig` of ``args``; a bad value raises :class:`InvalidValue` naming
    its flag (``--batch-size``)."""
    from nnatlas.engine import TrainConfig

    values = {o.field: getattr(args, o.dest) for o in ENGINE_OPTIONS if o.field}
    values["milestones"] = tuple(values["milestones"] or ())
    try:
        return TrainConfig(**values)
    except InvalidValue as e:
        raise e.renamed(FLAG_OF_FIELD.get(e.name, e.name)) from None


def _checked_config(recipe: Recipe, args: argparse.Namespace, explicit: set[str]) -> Any:
    try:
        config = train_config(args)
        if args.name is not None:
            check_name("--name", args.name)
        if not args.out:
            raise InvalidValue("--out", "must be a folder", args.out)
        check_int("--threads", args.threads, minimum=0, maximum=4096)
        if args.limit_train is not None:
            check_int("--limit-train", args.limit_train)
        _check_applicable(recipe, args, explicit, config)
        recipe.check(args, explicit)
        _check_machine(config)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return config


def _check_applicable(recipe: Recipe, args: argparse.Namespace, explicit: set[str], config: Any) -> None:
    """Refuse options that would be silently ignored."""
    if "gamma" in explicit and config.scheduler != "step":
        raise InvalidValue(
            "--gamma", f"applies to --scheduler step only (the scheduler is {config.scheduler})", args.gamma
        )
    if "momentum" in explicit and config.optimizer != "sgd":
        raise InvalidValue("--momentum", f"applies to --optimizer sgd only (the optimiser is {config.optimizer})", args.momentum)  # fmt: skip
    for dest, reason in recipe.unsupported.items():
        if dest in explicit and getattr(args, dest) not in (None, False, 0, ()):
            flag = OPTIONS_BY_DEST[dest].flag
            raise InvalidValue(flag, f"does not apply to {recipe.name} ({reason})", getattr(args, dest))


def _check_machine(config: Any) -> None:
    """What the options ask of this machine: the device, fp16, SyncBatchNorm, TensorBoard."""
    from nnatlas.engine import check_amp, resolve_device, tensorboard_available

    try:
        device = resolve_device(config.device)
    except ValueError as e:
        raise ValueError(f"--device: {e}") from None
    try:
        check_amp(config.amp, device)
    except ValueError as e:
        raise ValueError(f"--amp: {e}") from None
    if config.sync_bn and device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA devices (torch's SyncBatchNorm runs on GPUs only)")
    if config.tensorboard and not tensorboard_available():
        raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard")


# ---- resume -----------------------------------------------------------------------------------------


def _resumed(recipe: Recipe, args: argparse.Namespace, explicit: set[str]) -> tuple[argparse.Namespace, Any]:
    """The saved options with the ones that may change taken from now, and the checkpoint to continue.

    Returns ``(args, None)`` for a run that has already trained all its epochs (after saying so).
    """
    from nnatlas.engine import CHECKPOINT_NAME, CheckpointError, load_checkpoint

    folder = Path(args.resume)
    config = read_run_config(folder, flag="--resume")
    if config["task"] != recipe.name:
        raise UsageError(
            f"--resume {str(folder)!r} is a {config['task']} run; continue it with "
            f"nnatlas train {config['task']} --resume {folder}"
        )
    saved = config["cli"]
    resumable = {o.dest for o in ENGINE_OPTIONS if o.resumable} | DATA_LOCATION
    changed = [
        _flag(dest)
        for dest in sorted(explicit - {"resume"} - resumable)
        if _json(getattr(args, dest)) != _json(saved.get(dest))
    ]
    if changed:
        raise UsageError(
            f"--resume: {', '.join(changed)} cannot change when a run is resumed (they define the run); "
            "start a new run instead (only --epochs, to extend it, and where and how it runs may be given)"
        )
    merged = {**vars(args), **{k: v for k, v in saved.items() if not k.startswith("_")}}
    merged.update({dest: getattr(args, dest) for dest in explicit & resumable})
    merged["resume"] = str(folder)
    merged["milestones"] = tuple(merged.get("milestones") or ())
    new = argparse.Namespace(**merged)
    if new.epochs < saved["epochs"]:
        raise UsageError(
            f"--epochs {new.epochs}: a resumed run can be extended, not shortened (it was started for "
            f"{saved['epochs']} epochs)"
        )
    if not (folder / CHECKPOINT_NAME).is_file():
        raise UsageError(
            f"--resume {str(folder)!r}: no {CHECKPOINT_NAME} there; the run saved none to resume from"
        )
    try:
        state = load_checkpoint(folder / CHECKPOINT_NAME)
        done = int(state["position"]["epoch"]) - 1
    except CheckpointError as e:
        raise UsageError(str(e)) from None
    except (KeyError, TypeError, ValueError):
        raise UsageError(
            f"{str(folder / CHECKPOINT_NAME)!r} is not a training checkpoint (no position)"
        ) from None
    if done >= new.epochs:
        from rich.console import Console

        Console(stderr=True).print(
            f"{markup_safe(folder)} is finished ({done} of {new.epochs} epochs); nothing to do. "
            f"Give --epochs N > {new.epochs} to extend it.",
            soft_wrap=True,
        )
        return new, None
    return new, state


def _flag(dest: str) -> str:
    option = OPTIONS_BY_DEST.get(dest)
    return option.flag if option else "--" + dest.replace("_", "-")


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def cli_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as JSON values, saved in ``config.json`` for ``--resume``."""
    skip = {"func", "resume"}
    return {k: _json(v) for k, v in vars(args).items() if k not in skip and not k.startswith("_")}


# ---- the run ----------------------------------------------------------------------------------------


def _train(recipe: Recipe, args: argparse.Namespace, config: Any, state: Any) -> int:
    import torch
    from rich.console import Console

    from nnatlas.analysis import count_parameters
    from nnatlas.cli.progress import NullProgress, RichProgress, finish_run
    from nnatlas.engine import (
        CheckpointError,
        NonFiniteLossError,
        RunDirError,
        Trainer,
        TrainingInterrupted,
        remove_stale_temporaries,
    )
    from nnatlas.engine.distributed import destroy_distributed, dist_info, init_distributed

    try:
        init_distributed(config.device)
        built = recipe.build(args)
        run_dir = _run_dir(args, recipe.default_name(args))
    except (ValueError, TypeError, RunDirError) as e:
        raise UsageError(str(e)) from None
    if args.threads:
        torch.set_num_threads(args.threads)
    world = dist_info()
    if state is not None and world.is_main:
        remove_stale_temporaries(run_dir)
        _record_extension(run_dir, config)
    quiet = args.quiet or not world.is_main
    console = Console(stderr=True, quiet=quiet)
    action = f"resuming {markup_safe(run_dir)}:" if state is not None else "training"
    console.print(
        f"{action} [bold]{markup_safe(args.model)}[/] ({count_parameters(built.model):,} parameters) on "
        f"{markup_safe(built.data_summary)}"
        + (f" on {world.world_size} processes" if world.enabled else "")
        + f" -> {markup_safe(run_dir)}",
        soft_wrap=True,
    )
    extra = {
        "model": args.model,
        "data": built.data_name,
        "model_kwargs": built.model_kwargs,
        **built.extra_config,
        "cli": cli_options(args),
    }
    reporter = (
        NullProgress()
        if quiet
        else RichProgress(console, samples_per_step=config.batch_size * world.world_size)
    )
    t0 = time.perf_counter()
    trainer = None
    try:
        with reporter:
            trainer = Trainer(
                built.model,
                built.task,
                built.train,
                built.val,
                config,
                run_dir=run_dir,
                progress=reporter,
                extra_config=extra,
                collate_fn=built.collate_fn,
            )
            trainer.fit(resume=state, source=None if state is None else run_dir / "checkpoint.pt")
    except TrainingInterrupted as e:
        if world.is_main:
            eprint(f"nnatlas: {e}; continue with: nnatlas train {recipe.name} --resume {run_dir}")
        return 128 + e.signum
    except NonFiniteLossError as e:
        if world.is_main:
            eprint(f"nnatlas: diverged: {e}")
        return 1
    except (CheckpointError, RunDirError) as e:  # a damaged file in the run folder being resumed
        raise UsageError(str(e)) from None
    finally:
        trainer = None  # the DDP-wrapped model goes before the process group  # noqa: F841
        destroy_distributed()
    if not world.is_main:
        return 0
    finish_run(
        run_dir,
        title=f"{args.model} on {built.data_name}",
        wall=time.perf_counter() - t0,
        keys=recipe.summary_keys,
    )
    return 0


def _run_dir(args: argparse.Namespace, default_name: str) -> Path:
    """The run folder: the one being resumed, or a new one made by the main process and shared with all."""
    from nnatlas.engine import RunDirError, create_run_dir
    from nnatlas.engine.distributed import broadcast_object, dist_info

    if args.resume:
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


def _record_extension(run_dir: Path, config: Any) -> None:
    """A resumed run given more epochs: say so in config.json (the options and the engine config)."""
    from nnatlas.engine import write_json

    saved = read_run_config(run_dir)
    if saved["cli"].get("epochs") == config.epochs:
        return
    saved["cli"]["epochs"] = config.epochs
    saved.setdefault("train", {})["epochs"] = config.epochs
    write_json(run_dir / "config.json", saved)
