"""The ``nnatlas`` command: ``models``, ``train TASK``, ``eval``, ``inspect``, ``attention``, ``export``,
``features``, ``predict``, ``experiment``, ``animate``, ``report``.

Bad arguments print one line on stderr and exit with code 2; failures at run time exit with code 1 and a
message; never a traceback (set ``NNATLAS_DEBUG=1`` to see one).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from nnatlas import __version__
from nnatlas.cli import (
    animate_cmd,
    attention_cmd,
    eval_cmd,
    experiment_cmd,
    export_cmd,
    features_cmd,
    inspect_cmd,
    models_cmd,
    predict_cmd,
    report_cmd,
    train_cmd,
)
from nnatlas.cli.common import ArgumentParser, UsageError, eprint


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="nnatlas",
        description="nnatlas: the classic ideas of deep learning as tested, measurable PyTorch code. "
        "Run `nnatlas COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"nnatlas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    models_cmd.add_parser(sub)
    train_cmd.add_parser(sub)
    eval_cmd.add_parser(sub)
    inspect_cmd.add_parser(sub)
    features_cmd.add_parser(sub)
    attention_cmd.add_parser(sub)
    export_cmd.add_parser(sub)
    predict_cmd.add_parser(sub)
    experiment_cmd.add_parser(sub)
    animate_cmd.add_parser(sub)
    report_cmd.add_parser(sub)
    return parser


def parse(argv: Sequence[str]):
    """Parse ``argv`` (with ``nnatlas train`` given its default task); the namespace keeps ``argv``."""
    argv = train_cmd.insert_default_task(argv)
    args = build_parser().parse_args(argv)
    args._argv = argv
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("NNATLAS_DEBUG") == "1"
    try:
        args = parse(argv)
        if args.command is None:
            build_parser().print_help()
            return 2
        return int(args.func(args) or 0)
    except UsageError as e:
        eprint(f"nnatlas: error: {e}" if not str(e).startswith("nnatlas") else f"{e}")
        return 2
    except KeyboardInterrupt:
        eprint("nnatlas: interrupted")
        return 130
    except Exception as e:  # a failure at run time: one message, exit code 1
        if debug:
            raise
        first = str(e).strip().splitlines()
        eprint(f"nnatlas: failed: {type(e).__name__}: {first[0] if first else ''}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
