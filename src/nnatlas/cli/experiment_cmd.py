"""``nnatlas experiment list`` and ``nnatlas experiment run NAME``: the claims of the notes, measured."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from nnatlas.cli.common import UsageError, markup_safe


def add_parser(sub: argparse._SubParsersAction) -> None:
    from nnatlas.cli.common import ArgumentParser

    p = sub.add_parser(
        "experiment",
        help="measure a claim of the course notes: numbers, a figure and a verdict",
        description="Every claim of the course notes as a seeded experiment on embedded data (digits, "
        "shapes, sequences). `list` names them; `run NAME` measures one, judges the claim by a criterion "
        "fixed before the run (supported / not supported / inconclusive) and writes OUT/NAME/result.json, "
        "figure.png and README.md.",
    )
    s = p.add_subparsers(dest="experiment_command", metavar="{list,run,summary}", parser_class=ArgumentParser)
    ls = s.add_parser(
        "list",
        help="the experiments: name, claim, section of the notes, expected minutes",
        description="List the experiments in the order of the notes: the name, the claim in one line, the "
        "section of the notes it comes from, and the expected minutes of a full run on a 2-core CPU.",
    )
    ls.set_defaults(func=run_list)
    r = s.add_parser(
        "run",
        help="run experiments and write their results",
        description="Run one or more experiments (or `all`) and write OUT/NAME/result.json (the claim, the "
        "method, every number, the seeds, mean and spread, the criterion, the verdict, versions, wall "
        "time), figure.png and README.md. The result folder appears only once complete: an interrupted "
        "run leaves the previous result (or nothing) in place.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    r.add_argument("names", nargs="+", metavar="NAME", help="experiment names (see `list`), or `all`")
    r.add_argument("--quick", action="store_true", help="small sizes: seconds instead of minutes, for tests")
    r.add_argument("--seeds", type=int, default=3, help="repetitions with seeds 0 .. N-1")
    r.add_argument("--out", default="experiments", help="folder for the results (OUT/NAME/)")
    r.add_argument("--threads", type=int, default=1, help="torch CPU threads (small models run best on one)")
    r.add_argument("--quiet", action="store_true", help="no progress, only the final line per experiment")
    r.set_defaults(func=run_run)
    t = s.add_parser(
        "summary",
        help="a Markdown table of the results in a folder",
        description="Print a Markdown table of every result.json under DIR (as written by `run`): the claim, "
        "the verdict, the key number, the seeds and the wall time of each experiment.",
    )
    t.add_argument("folder", metavar="DIR", help="folder of results (the --out of `run`)")
    t.add_argument("--link", default=None, help="link each name to LINK/NAME/README.md")
    t.set_defaults(func=run_summary)
    p.set_defaults(func=lambda args: _missing(p))


def _missing(parser: argparse.ArgumentParser) -> int:
    raise UsageError("nnatlas experiment: choose `list` or `run NAME` (see nnatlas experiment --help)")


def run_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from nnatlas.experiments import get_experiment, list_experiments

    table = Table(title="experiments (nnatlas experiment run NAME)")
    table.add_column("name", no_wrap=True)
    table.add_column("claim", overflow="fold", ratio=3)
    table.add_column("section", overflow="fold", ratio=1)
    table.add_column("minutes", justify="right", no_wrap=True)
    for name in list_experiments():
        e = get_experiment(name)
        table.add_row(name, e.title, e.section, f"{e.minutes:g}")
    Console().print(table)
    return 0


def run_summary(args: argparse.Namespace) -> int:
    from nnatlas.experiments.base import load_results, summary_table

    try:
        results = load_results(args.folder)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not results:
        raise UsageError(f"no experiment results (*/result.json) under {args.folder!r}")
    print(summary_table(results, link=args.link))
    return 0


def _check(args: argparse.Namespace) -> list[str]:
    from nnatlas._validate import check_int
    from nnatlas.experiments import get_experiment, list_experiments
    from nnatlas.experiments.base import check_output_folder

    names = list_experiments() if args.names == ["all"] else list(dict.fromkeys(args.names))
    try:
        for n in names:
            get_experiment(n)
        check_int("--seeds", args.seeds, maximum=100)
        check_int("--threads", args.threads, maximum=1024)
        out = Path(args.out)
        for n in names:
            check_output_folder(out, n)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return names


def run_run(args: argparse.Namespace) -> int:
    names = _check(args)  # every argument is checked before anything runs or is written

    import torch
    from rich.console import Console

    from nnatlas.experiments import run_experiment

    torch.set_num_threads(args.threads)
    console = Console(stderr=True, quiet=args.quiet)
    out = Path(args.out)
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):  # SIGTERM ends the run as Ctrl-C does: the result folder is not written
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        for name in names:
            t0 = time.perf_counter()
            with console.status(f"[bold]{markup_safe(name)}[/]: starting") as status:

                def step(text: str, name: str = name, status=status) -> None:
                    status.update(f"[bold]{markup_safe(name)}[/]: {markup_safe(text)}")

                result = run_experiment(name, out, quick=args.quick, seeds=args.seeds, step=step)
            print(
                f"{name}: {result['verdict']} ({result['key_number']}) in {time.perf_counter() - t0:.1f} s "
                f"-> {out / name}"
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
