"""``nnatlas train TASK``: one sub-command per registered recipe, each showing only its own options and the
shared engine options, with that task's defaults in ``--help``. ``nnatlas train`` with no task trains the
classification default (ResNet-20 on the embedded digits); ``nnatlas train --resume RUN`` finds the task in
the run's ``config.json``.

The parsers are built without importing torch, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from nnatlas.cli.common import ArgumentParser, UsageError
from nnatlas.cli.options import add_engine_options
from nnatlas.cli.tasks import get_recipe, list_recipes

DEFAULT_TASK = "classification"


def add_parser(sub: argparse._SubParsersAction) -> None:
    tasks = list_recipes()
    p = sub.add_parser(
        "train",
        help="train a model: " + ", ".join(tasks) + " (default: cifar_resnet20 on the embedded digits)",
        description="Train a model for a task. `nnatlas train` alone trains the classification default "
        "(a ResNet-20 on scikit-learn's 8x8 digits, shipped with the package); `nnatlas train TASK --help` "
        "shows the options of one task. Every task writes runs/<name>/ (config.json, metrics.jsonl, "
        "metrics.csv, checkpoint.pt, model.safetensors, curves.png), never overwrites a run, and continues "
        "one after Ctrl-C, SIGTERM or a crash with `nnatlas train --resume runs/<name>`.",
    )
    tasks_sub = p.add_subparsers(dest="task", metavar="TASK", parser_class=ArgumentParser)
    for name in tasks:
        recipe = get_recipe(name)
        tp = tasks_sub.add_parser(
            name,
            help=recipe.help,
            description=recipe.description,
            epilog=recipe.epilog() or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        recipe.add_arguments(tp)
        add_engine_options(tp, recipe.defaults)
        tp.set_defaults(func=run, _parser=tp, **recipe.defaults)
    p.set_defaults(func=_no_task, _train_parser=p)


def _no_task(args: argparse.Namespace) -> int:
    args._train_parser.print_help()
    return 2


def insert_default_task(argv: Sequence[str]) -> list[str]:
    """``nnatlas train [options]`` means ``nnatlas train TASK [options]``: the task of the run given to
    ``--resume``, else classification. An unknown task is a one-line error listing the tasks."""
    from nnatlas._suggest import unknown_choice_message

    argv = list(argv)
    try:
        i = next(k for k, a in enumerate(argv) if not a.startswith("-"))
    except StopIteration:
        return argv
    if argv[i] != "train":
        return argv
    rest = argv[i + 1 :]
    if rest and rest[0] in ("-h", "--help"):
        return argv
    if rest and not rest[0].startswith("-"):
        if rest[0] not in list_recipes():
            raise UsageError(unknown_choice_message("task", rest[0], list_recipes()))
        return argv
    return [*argv[: i + 1], _task_of_resume(rest) or DEFAULT_TASK, *rest]


def _task_of_resume(rest: Sequence[str]) -> str | None:
    folder = None
    for k, a in enumerate(rest):
        if a == "--resume" and k + 1 < len(rest):
            folder = rest[k + 1]
        elif a.startswith("--resume="):
            folder = a.split("=", 1)[1]
    if folder is None:
        return None
    try:
        task = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("task")
    except (OSError, ValueError, AttributeError):
        return None  # the resume path reports what is wrong with the folder
    return task if task in list_recipes() else None


def run(args: argparse.Namespace) -> int:
    from nnatlas.cli.training import run_training

    return run_training(get_recipe(args.task), args)
