"""Training checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint holds everything an exact resume needs: model, optimiser, scheduler, gradient scaler and EMA
state, the random-number generators (torch CPU and CUDA, NumPy, Python) and the position in the data
(epoch, batch within the epoch). It holds tensors, numbers, strings and containers of them only, so the
restricted unpickler of ``weights_only=True`` reads it and no code in a checkpoint is ever executed.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnatlas.engine.runs import atomic_write_bytes

CHECKPOINT_NAME = "checkpoint.pt"
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


def load_checkpoint(path: str | os.PathLike, *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a missing or corrupt file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...: one message naming the file
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {type(e).__name__}: {e}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{str(path)!r} is not an nnatlas checkpoint (format {FORMAT_VERSION})")
    return state


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
