"""Shared pieces of the command line: the argument parser whose errors are one line, the error types,
which options a user gave, and safe printing of user text."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn


class UsageError(Exception):
    """A bad argument: one line on stderr, exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` that raises :class:`UsageError` instead of printing usage and exiting, and that never
    takes an abbreviation of an option (``--lr`` is ``--lr``, not a prefix of ``--lr-something``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def eprint(message: str) -> None:
    """One line on stderr, printed as written (no markup), control characters shown escaped."""
    print(printable(message), file=sys.stderr)


def printable(text: str) -> str:
    """``text`` with control characters (escape, newline, ...) written as escapes, so one message stays one
    line and cannot drive the terminal."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))


def markup_safe(text: object) -> str:
    """User text for a rich ``console.print`` with markup on: ``[red]`` prints as written."""
    from rich.markup import escape

    return escape(printable(str(text)))


def explicit_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The ``dest`` of every option of ``parser`` written in ``argv`` (``--lr 0.1`` or ``--lr=0.1``).

    Tells an option a user gave from one left at its default, even when both hold the same value.
    """
    by_flag = {s: a.dest for a in parser._actions for s in a.option_strings}
    found = set()
    for token in argv:
        if token == "--":
            break
        flag = token.split("=", 1)[0] if token.startswith("--") else token
        if flag in by_flag:
            found.add(by_flag[flag])
    return found


def parse_kwargs(items: Sequence[str], flag: str) -> dict:
    """``["k=v", ...]`` as a dict; each value a Python literal (``8``, ``True``, ``(1, 2)``, ``'x'``) or else
    the plain string. A malformed item is a ``ValueError`` naming ``flag``."""
    import ast

    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"{flag} takes KEY=VALUE items with a Python name as KEY; got {item!r}")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def check_free(path, flag: str, overwrite: bool) -> None:
    """An output file the command may write: refused (:class:`UsageError`) when it exists and ``overwrite``
    is not given, or when it is a folder, so that nothing a user wrote is replaced by accident."""
    if path.exists() and not overwrite:
        raise UsageError(f"{flag} {str(path)!r} already exists; choose another path or pass --overwrite")
    if path.exists() and path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is a folder; give a file")
