"""A task of the command line is a registered recipe: its options, its defaults and how it builds the model
and the data. :func:`nnatlas.cli.training.run_training` does everything else (validation, run folder,
resume, signals, progress, the final summary) the same way for every task.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nnatlas._suggest import unknown_choice_message

__all__ = ["Built", "Recipe", "get_recipe", "list_recipes", "register_recipe"]


@dataclass
class Built:
    """What a recipe builds from the options: the parts of a run and what ``config.json`` records."""

    model: Any
    task: Any  # an nnatlas.engine Task
    train: Any
    val: Any
    data_name: str
    model_kwargs: dict[str, Any]
    collate_fn: Callable | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)
    #: One phrase for the start line, e.g. "digits (1,437 train / 360 val)".
    data_summary: str = ""


class Recipe:
    """Base of the recipes. Subclasses set the class attributes and implement :meth:`add_arguments`,
    :meth:`check` and :meth:`build`; nothing here imports torch, so ``--help`` stays fast."""

    #: The task (kind of problem), also the name of ``nnatlas train TASK``.
    name: str = ""
    help: str = ""
    description: str = ""
    default_model: str = ""
    default_data: str = ""
    #: Engine-option defaults of this task, by dest (``{"epochs": 15, "threads": 1}``).
    defaults: dict[str, Any] = {}
    #: Columns of the last metrics row printed at the end of a run.
    summary_keys: tuple[str, ...] = ()
    #: Builder arguments a model gets unless ``--model-kwargs`` says otherwise, by model name.
    builder_defaults: dict[str, dict[str, Any]] = {}
    #: Options (by dest) a model trains with unless they are given, by model name.
    run_defaults: dict[str, dict[str, Any]] = {}
    #: Engine options that have no meaning for this task (refused when given), by dest, with the reason.
    unsupported: dict[str, str] = {}

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the task's own options (the engine options are added by the caller)."""

    def data_defaults(self, data: str) -> dict[str, Any]:
        """Defaults that depend on the data set (by dest); applied where the option was not given."""
        return {}

    def model_defaults(self, model: str) -> dict[str, Any]:
        """Defaults that depend on the model (by dest, e.g. its epochs and learning rate); applied where
        the option was not given, after :meth:`data_defaults`."""
        return dict(self.run_defaults.get(model, {}))

    def epilog(self) -> str:
        """Text after the options in ``--help``: the per-model defaults."""
        return per_model_epilog(self.builder_defaults, self.run_defaults)

    def check(self, args: argparse.Namespace, explicit: set[str]) -> None:
        """Refuse bad or inapplicable task options before anything is built (``ValueError``)."""

    def build(self, args: argparse.Namespace) -> Built:
        """Load the data and build the model (``ValueError`` / ``TypeError`` for bad options)."""
        raise NotImplementedError

    def default_name(self, args: argparse.Namespace) -> str:
        return f"{args.model}-{args.data}"


def per_model_epilog(model_kwargs: dict[str, dict[str, Any]], options: dict[str, dict[str, Any]]) -> str:
    """``--help``'s account of what a model gets unless told otherwise: builder arguments and options."""
    lines = []
    for model in sorted(set(model_kwargs) | set(options)):
        said = [f"{k}={v!r}" for k, v in model_kwargs.get(model, {}).items()]
        said += [f"--{k.replace('_', '-')} {v}" for k, v in options.get(model, {}).items()]
        lines.append(f"  {model}: {', '.join(said)}")
    if not lines:
        return ""
    head = "defaults of a model unless given (--model-kwargs for the builder's arguments):"
    return "\n".join([head, *lines])


_RECIPES: dict[str, Recipe] = {}


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: one instance of the recipe, registered under its ``name``."""
    if not cls.name or cls.name in _RECIPES:
        raise ValueError(f"recipe name must be new and non-empty; got {cls.name!r}")
    _RECIPES[cls.name] = cls()
    return cls


def list_recipes() -> list[str]:
    return list(_RECIPES)


def get_recipe(name: str) -> Recipe:
    try:
        return _RECIPES[name]
    except KeyError:
        raise ValueError(unknown_choice_message("task", name, _RECIPES)) from None
