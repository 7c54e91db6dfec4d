"""Training checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint holds everything an exact resume needs: model, optimiser, scheduler, gradient scaler and EMA
state, the random-number generators (torch CPU and CUDA, NumPy, Python) and the position in the data
(epoch, batch within the epoch). It holds tensors, numbers, strings and containers of them only, so the
restricted unpickler of ``weights_only=True`` reads it and no code in a checkpoint is ever executed.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import random
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnatlas.engine.runs import atomic_write_bytes

#: The file name of the resumable checkpoint in a run folder (model, optimiser, scheduler, random
#: states and position).
CHECKPOINT_NAME = "checkpoint.pt"
#: What a training checkpoint holds besides ``format_version``.
TRAINING_KEYS = ("model", "optimizer", "scheduler", "scaler", "ema", "rng", "position", "epoch_sums")
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not match the run."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Serialise ``state`` and write it to ``path`` through a temporary file and a rename.

    A reader (or a crash half-way through) sees either the previous checkpoint or the new one, never a
    truncated file.
    """
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_torch_file(path: str | os.PathLike, *, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors that say what is wrong with the file.

    Raises :class:`CheckpointError` naming the file: missing, empty, not a PyTorch file, truncated or
    damaged, or holding objects other than tensors and plain containers (which are refused, never run).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{str(path)!r} is empty")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            zip_start = f.read(4) == b"PK\x03\x04"
        if zip_start:  # a zip archive whose end (the central directory) is missing
            raise CheckpointError(f"{str(path)!r} is truncated or damaged (no end of archive)")
        raise CheckpointError(f"{str(path)!r} is not a PyTorch checkpoint (not a torch.save zip archive)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{str(path)!r} holds objects other than tensors and plain containers{what}; refused: "
            "nnatlas never runs code from a file"
        ) from None
    except Exception as e:  # damaged archive, missing records, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{str(path)!r} is truncated or damaged ({first[:120]})") from None


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, or a one-line :class:`CheckpointError` naming the file."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{str(path)!r} is empty")
    try:
        return load_file(path)
    except Exception as e:  # SafetensorError: bad header, file shorter than its header says, ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "not fully covered" in reason or "incomplete" in reason:
            reason = "truncated: the file is shorter than its header says"
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({reason})") from None


def load_checkpoint(path: str | os.PathLike, *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a missing or corrupt file raises :class:`CheckpointError`."""
    state = read_torch_file(path, map_location=map_location)
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{str(path)!r} is not an nnatlas checkpoint (format {FORMAT_VERSION})")
    return state


def _listed(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" ({len(names) - limit} more)" if len(names) > limit else "")


def with_tied_weights(model: nn.Module, state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with the entries of tied weights filled in.

    ``safetensors`` stores a tensor shared by several names once (a tied output layer and embedding);
    a missing name whose tensor in ``model`` is the same storage as a name present in ``state`` gets that
    entry.
    """
    state = dict(state)
    own = model.state_dict(keep_vars=True)
    by_ptr: dict[tuple[int, int], str] = {}
    for k, v in own.items():
        if k in state and isinstance(v, torch.Tensor) and v.device.type != "meta":
            by_ptr.setdefault((v.data_ptr(), v.numel()), k)
    for k, v in own.items():
        if k not in state and isinstance(v, torch.Tensor) and v.device.type != "meta":
            twin = by_ptr.get((v.data_ptr(), v.numel()))
            if twin is not None:
                state[k] = state[twin]
    return state


def describe_mismatch(model: nn.Module, state: Mapping[str, Any]) -> str | None:
    """``None`` when ``state`` fits ``model`` exactly; otherwise one line naming what differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing {_listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {_listed(unexpected)}")
    if shapes:
        parts.append(f"shape of {_listed(shapes, 2)}")
    return "; ".join(parts) if parts else None


def load_model_state(model: nn.Module, state: Mapping[str, Any], source: str | os.PathLike) -> None:
    """``model.load_state_dict(state, strict=True)``, or a one-line :class:`CheckpointError` naming ``source``."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{str(source)!r} does not hold a state dict of tensors")
    state = with_tied_weights(model, state)
    problem = describe_mismatch(model, state)
    if problem is not None:
        raise CheckpointError(f"{str(source)!r} holds weights of another model: {problem}")
    model.load_state_dict(state, strict=True)


def non_finite_tensors(tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity (one reduction per tensor)."""
    named = [(n, t) for n, t in tensors if t.is_floating_point() and t.numel()]
    if not named:
        return []
    with torch.no_grad():
        sums = torch.stack([t.detach().sum(dtype=torch.float32) for _, t in named])
        bad = ~torch.isfinite(sums)
        if not bool(bad.any()):
            return []
        # A sum also overflows for huge finite entries: name only the tensors that really are non-finite.
        suspects = [t_named for t_named, b in zip(named, bad.tolist(), strict=True) if b]
        return [n for n, t in suspects if not bool(torch.isfinite(t).all())]


def state_is_finite(state: Any) -> bool:
    """True when every floating-point tensor nested in ``state`` is finite."""
    found: list[torch.Tensor] = []

    def walk(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            if x.is_floating_point():
                found.append(x)
        elif isinstance(x, Mapping):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif isinstance(x, float) and not math.isfinite(x):
            found.append(torch.tensor(x))

    walk(state)
    return not non_finite_tensors((str(i), t) for i, t in enumerate(found))


def rng_state() -> dict[str, Any]:
    """The state of every generator the training loop may draw from, as tensors and plain containers."""
    np_state = np.random.get_state()  # ('MT19937', keys uint32[624], pos, has_gauss, cached_gaussian)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    keys = n["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
