"""The few validators every configuration uses, importable without torch.

Each raises :class:`InvalidValue`, a ``ValueError`` that keeps the name of the value, what it must be and
what came, so that the command line can say ``--batch-size`` where the library says ``batch_size``
(:meth:`InvalidValue.renamed`).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from typing import Any

from nnatlas._suggest import closest_first

__all__ = [
    "InvalidValue",
    "check_bool",
    "check_path",
    "check_choice",
    "check_finite",
    "check_int",
    "check_name",
    "check_probability",
]


class InvalidValue(ValueError):
    """``{name} {requirement}; got {value!r}``: a bad value, named."""

    def __init__(self, name: str, requirement: str, value: Any, *, show: str | None = None) -> None:
        self.name, self.requirement, self.value, self.show = name, requirement, value, show
        super().__init__(str(self))

    def __str__(self) -> str:
        got = self.show if self.show is not None else repr(self.value)
        return f"{self.name} {self.requirement}; got {got}"

    def renamed(self, name: str) -> InvalidValue:
        """The same error under another name (``batch_size`` -> ``--batch-size``)."""
        return InvalidValue(name, self.requirement, self.value, show=self.show)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in ``[minimum, maximum]`` (``maximum`` None: no upper bound)."""
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        if maximum is None:
            want = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        else:
            want = f"an int in [{minimum}, {maximum:_}]"
        raise InvalidValue(name, f"must be {want}", value)
    return int(value)


def check_finite(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
) -> float:
    """A finite real number within the given bounds (``*_open``: the bound itself is excluded)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if min_open else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if max_open else value <= maximum
    if not ok:
        if minimum is not None and maximum is not None:
            want = f"a finite number in {'(' if min_open else '['}{minimum:g}, {maximum:g}{')' if max_open else ']'}"
        elif minimum is not None:
            want = f"a finite number {'>' if min_open else '>='} {minimum:g}"
        elif maximum is not None:
            want = f"a finite number {'<' if max_open else '<='} {maximum:g}"
        else:
            want = "a finite number"
        raise InvalidValue(name, f"must be {want}", value)
    return float(value)


def check_probability(name: str, value: Any, *, allow_one: bool = False) -> float:
    """A probability in ``[0, 1)`` (``[0, 1]`` with ``allow_one``)."""
    return check_finite(name, value, minimum=0.0, maximum=1.0, max_open=not allow_one)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """One of ``choices``; the error lists them, closest to ``value`` first."""
    choices = tuple(choices)
    if value not in choices:
        ordered = closest_first(str(value), choices)
        raise InvalidValue(name, f"must be one of {', '.join(ordered)} (closest first)", value)
    return value


def check_name(name: str, value: Any) -> str:
    """A plain folder name: not empty, no path separator, not ``.``/``..``, no control characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(name, "must be a non-empty folder name", value)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidValue(name, "must not hold control characters (escape, newline, tab, ...)", value)
    if "/" in value or "\\" in value or value in {".", ".."} or value.startswith("-"):
        raise InvalidValue(name, "must be a plain folder name (no '/', not '.', '..' or '-...')", value)
    return value


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise InvalidValue(name, "must be True or False", value)
    return value


def check_path(name: str, value: Any) -> None:
    """A folder path (``str`` or ``os.PathLike``) or ``None``."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise InvalidValue(name, "must be a folder path (str or os.PathLike) or None", value)
