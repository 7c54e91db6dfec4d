"""Reading a run folder back: its config, its options, its model and weights (for ``--resume``, ``eval``,
``attention`` and ``export``), with one rule for every problem: exit code 2 and one line naming the file
and what is wrong."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nnatlas.cli.common import UsageError

WEIGHTS = ("final", "ema", "checkpoint")
WEIGHT_FILES = {"final": "model.safetensors", "ema": "model_ema.safetensors", "checkpoint": "checkpoint.pt"}


def read_run_config(folder: str | Path, *, flag: str = "RUN", options: bool = True) -> dict[str, Any]:
    """``folder/config.json`` as a dict; a missing or foreign file is a :class:`UsageError`.

    ``options``: the config must hold the command-line options (to resume or rebuild the data).
    """
    folder = Path(folder)
    path = folder / "config.json"
    if not folder.is_dir():
        raise UsageError(f"{flag} {str(folder)!r} is not a run folder (no such folder)")
    if not path.is_file():
        raise UsageError(f"{flag} {str(folder)!r} is not a run folder: no config.json there")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("task"), str):
        raise UsageError(f"{str(path)!r} was not written by nnatlas train (no task)")
    if options and not isinstance(config.get("cli"), dict):
        raise UsageError(f"{str(path)!r} holds no command-line options (written by an older nnatlas?)")
    return config


def saved_args(config: dict[str, Any], **overrides: Any) -> argparse.Namespace:
    """The options a run was started with, as a namespace, with ``overrides`` on top."""
    from nnatlas.cli.options import ENGINE_OPTIONS

    base = {o.dest: o.default for o in ENGINE_OPTIONS}
    return argparse.Namespace(**{**base, **config["cli"], **overrides})


def recipe_of(config: dict[str, Any], folder: str | Path) -> Any:
    from nnatlas.cli.tasks import get_recipe

    try:
        return get_recipe(config["task"])
    except ValueError as e:
        raise UsageError(f"{str(Path(folder) / 'config.json')!r}: {e}") from None


def read_weights(folder: str | Path, which: str) -> dict[str, Any]:
    """The model's state dict from ``model.safetensors`` (``final``), ``model_ema.safetensors`` (``ema``) or
    ``checkpoint.pt`` (``checkpoint``); problems are one line naming the file."""
    from nnatlas.engine import CheckpointError, load_checkpoint, read_safetensors

    path = Path(folder) / WEIGHT_FILES[which]
    if not path.is_file():
        hint = {
            "final": "; the run did not finish: use --weights checkpoint",
            "ema": " (the run used no EMA)",
            "checkpoint": "",
        }[which]
        raise UsageError(f"no {path.name} in {str(folder)!r}{hint}")
    try:
        if which == "checkpoint":
            state = load_checkpoint(path)
            if "model" not in state:
                raise CheckpointError(f"{str(path)!r} is not a training checkpoint: no model weights")
            return state["model"]
        return read_safetensors(path)
    except CheckpointError as e:
        raise UsageError(str(e)) from None


def load_run_model(folder: str | Path, which: str = "final") -> tuple[Any, dict[str, Any]]:
    """The model of a run with its weights loaded (eval mode) and the run's config."""
    from nnatlas.engine import CheckpointError, load_model_state
    from nnatlas.models import create_model

    config = read_run_config(folder, options=False)
    try:
        model = create_model(config["model"], **model_kwargs(config))
    except (KeyError, ValueError, TypeError) as e:
        raise UsageError(
            f"{str(Path(folder) / 'config.json')!r} names a model that cannot be built: {e}"
        ) from None
    state = read_weights(folder, which)
    try:
        load_model_state(model, state, Path(folder) / WEIGHT_FILES[which])
    except CheckpointError as e:
        raise UsageError(str(e)) from None
    return model.eval(), config


def model_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments the run passed to ``create_model``."""
    if isinstance(config.get("model_kwargs"), dict):
        return dict(config["model_kwargs"])
    return {"num_classes": config["num_classes"], "in_channels": config["in_channels"]}
