"""Shared pieces of the command line: the argument parser whose errors are one line, and the error types."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class UsageError(Exception):
    """A bad argument: one line on stderr, exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def eprint(message: str) -> None:
    print(message, file=sys.stderr)
