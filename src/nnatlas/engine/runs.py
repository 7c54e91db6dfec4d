"""Run folders: ``<out>/<name>/`` holding ``config.json``, ``metrics.jsonl``, weights and plots.

A run folder is created with an exclusive ``mkdir``; when the name is taken, ``-2``, ``-3``, ... is
appended, so nothing a previous run wrote is ever overwritten.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class RunDirError(ValueError):
    """The output folder cannot be created or written."""


def create_run_dir(out: str | os.PathLike, name: str) -> Path:
    """Create and return a fresh ``out/name`` (or ``out/name-N``); never reuses an existing folder."""
    if not name or "/" in name or name in {".", ".."}:
        raise RunDirError(f"run name must be a plain folder name; got {name!r}")
    base = Path(out)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create output folder {str(base)!r}: {e.strerror or e}") from None
    if not base.is_dir():
        raise RunDirError(f"output path {str(base)!r} exists and is not a folder")
    for i in range(1, 10_000):
        candidate = base / (name if i == 1 else f"{name}-{i}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise RunDirError(f"cannot create run folder {str(candidate)!r}: {e.strerror or e}") from None
        return candidate
    raise RunDirError(f"too many runs named {name!r} in {str(base)!r}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def append_jsonl(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one JSON object as a line and flush it to disk."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(record), default=float) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
