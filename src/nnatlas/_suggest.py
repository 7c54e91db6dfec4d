"""Ordering of valid choices by their closeness to what a user typed (used by every error message)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_first(value: str, choices: Iterable[str]) -> list[str]:
    """Return ``choices`` sorted by similarity to ``value`` (most similar first, ties alphabetical)."""
    value = value.lower()

    def score(choice: str) -> float:
        c = choice.lower()
        ratio = difflib.SequenceMatcher(None, value, c).ratio()
        if value and (c.startswith(value) or value in c):
            ratio += 1.0
        return ratio

    return sorted(set(choices), key=lambda c: (-score(c), c))


def unknown_choice_message(kind: str, value: str, choices: Iterable[str]) -> str:
    """One line: ``unknown model 'x'; valid choices (closest first): a, b, c``."""
    ordered = closest_first(value, choices)
    return f"unknown {kind} {value!r}; valid choices (closest first): {', '.join(ordered)}"
