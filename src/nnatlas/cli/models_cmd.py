"""``nnatlas models [PATTERN]``: the registered models with their task and exact parameter count."""

from __future__ import annotations

import argparse

TASKS = ("classification", "segmentation", "detection", "seq2seq")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list registered models with their task and parameter count",
        description="List the registered models. PATTERN is a shell-style pattern such as 'resnet*' or '*vgg*'. "
        "Parameter counts are exact, for the default configuration (num_classes as in the builder).",
    )
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern over model names (default: all)")
    p.add_argument("--task", choices=TASKS, help="only models of this task")
    p.add_argument(
        "--wide", action="store_true", help="the whole description, wrapped (default: one line per model)"
    )
    p.set_defaults(func=run)


def parameter_count(name: str) -> int:
    """Exact count without allocating weights: the model is built on the meta device."""
    import torch

    from nnatlas.analysis import count_parameters
    from nnatlas.models import create_model

    try:
        with torch.device("meta"):
            return count_parameters(create_model(name))
    except (RuntimeError, NotImplementedError):
        return count_parameters(create_model(name))


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from nnatlas.models import get_model_info, list_models

    names = list_models(args.pattern, task=args.task)
    console = Console()
    if not names:
        console.print(f"no registered model matches {args.pattern!r}")
        return 0
    rows = [
        (n, get_model_info(n).task, f"{parameter_count(n):,}", get_model_info(n).description) for n in names
    ]
    table = Table(title=f"nnatlas models ({len(names)})")
    # Name, task and count are never cut: they take their full width, the description what is left.
    widths = []
    for i, (header, justify) in enumerate((("name", "left"), ("task", "left"), ("parameters", "right"))):
        widths.append(max(len(header), *(len(r[i]) for r in rows)))
        table.add_column(header, no_wrap=True, min_width=widths[-1], justify=justify)
    if args.wide:
        table.add_column("description", overflow="fold")
    else:  # one line per model: 4 columns take 13 characters of borders and padding
        room = max(12, console.width - sum(widths) - 13)
        table.add_column("description", no_wrap=True, overflow="ellipsis", max_width=room)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return 0
