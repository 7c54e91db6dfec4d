"""Run folders: ``<out>/<name>/`` holding ``config.json``, ``metrics.jsonl``, weights and plots.

A run folder is created with an exclusive ``mkdir``; when the name is taken, ``-2``, ``-3``, ... is
appended, so nothing a previous run wrote is ever overwritten.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nnatlas._validate import InvalidValue, check_name

log = logging.getLogger(__name__)

#: The key of a metrics row that lists the fields whose value was NaN or infinite (written as null).
NON_FINITE_KEY = "non_finite"


class RunDirError(ValueError):
    """The output folder cannot be created or written."""


def create_run_dir(out: str | os.PathLike, name: str) -> Path:
    """Create and return a fresh ``out/name`` (or ``out/name-N``); never reuses an existing folder."""
    try:
        check_name("run name", name)
    except InvalidValue as e:
        raise RunDirError(str(e)) from None
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
    """Write ``obj`` as indented JSON with sorted keys (``str()`` of what JSON cannot hold), atomically:
    a reader sees the old file or the new one, never a part."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def json_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` as valid JSON values: a NaN or infinite number becomes ``null`` and its key is listed
    under :data:`NON_FINITE_KEY` (strict JSON has no NaN)."""
    out: dict[str, Any] = {}
    bad: list[str] = []
    for k, v in record.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
            bad.append(k)
        else:
            out[k] = v
    if bad:
        out[NON_FINITE_KEY] = bad
    return out


def json_line(record: Mapping[str, Any]) -> str:
    return json.dumps(json_record(record), default=float, allow_nan=False) + "\n"


def append_jsonl(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one JSON object as a line with a single ``write`` and flush it to disk.

    The line goes out in one system call on a file opened for appending, so a crash leaves either the
    whole line or (rarely) a partial last line, which :func:`read_jsonl` drops with a warning.
    """
    data = json_line(record).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: str | os.PathLike, *, repair: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file.

    A last line that is not valid JSON (a write cut short by a crash) is dropped with a warning; with
    ``repair`` the file is rewritten without it. A bad line elsewhere raises ``ValueError`` naming it.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    rows: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            if all(not rest.strip() for rest in lines[i + 1 :]):
                log.warning("%s: dropped a partial last line (a write cut short): %.60r", path, line)
                if repair:
                    atomic_write_bytes(path, "".join(json_line(r) for r in rows).encode())
                return rows
            raise ValueError(f"{str(path)!r} line {i + 1} is not a JSON object") from None
        rows.append(row)
    return rows


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files that ``atomic_write_bytes`` leaves when killed mid-write."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        log.warning("removed %d temporary file(s) left by an interrupted write in %s", len(removed), folder)
    return removed
