"""Where a run's numbers go: ``metrics.jsonl`` and ``metrics.csv`` always, TensorBoard on request."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnatlas.engine.runs import (
    RunDirError,
    append_jsonl,
    atomic_write_bytes,
    json_line,
    json_record,
    read_jsonl,
)

log = logging.getLogger(__name__)


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can be imported (the ``tensorboard`` package is installed)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def write_csv(path: str | Path, records: Sequence[Mapping[str, Any]]) -> None:
    """All ``records`` as a CSV table (columns in order of first appearance), written atomically."""
    columns: list[str] = []
    for r in records:
        columns += [k for k in json_record(r) if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in records:
        r = json_record(r)
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in columns})
    atomic_write_bytes(path, buf.getvalue().encode())


class MetricsLogger:
    """Writes one row per epoch to ``metrics.jsonl`` and ``metrics.csv`` in ``run_dir``, and, with
    ``tensorboard=True``, per-update scalars and per-epoch rows to TensorBoard event files in
    ``run_dir/tensorboard``."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.jsonl = self.run_dir / "metrics.jsonl"
        self.csv = self.run_dir / "metrics.csv"
        self.writer = None
        if tensorboard:
            if not tensorboard_available():
                raise ValueError("tensorboard logging needs the tensorboard package: pip install tensorboard")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def restore(self, before_epoch: int) -> list[dict[str, Any]]:
        """Rows of the epochs before ``before_epoch``; later rows (written after the checkpoint being
        resumed from) are dropped from both files, so a resumed run never repeats an epoch's row."""
        try:
            rows = read_jsonl(self.jsonl) if self.jsonl.exists() else []  # drops a partial last line
        except ValueError as e:  # a damaged line before the last: the run's history cannot be trusted
            raise RunDirError(str(e)) from None
        rows = [r for r in rows if r.get("epoch", 0) < before_epoch]
        atomic_write_bytes(self.jsonl, "".join(json_line(r) for r in rows).encode())
        if rows:
            write_csv(self.csv, rows)
        else:
            self.csv.unlink(missing_ok=True)
        return rows

    def log_step(self, step: int, values: Mapping[str, float]) -> None:
        """Per-update scalars (``train/<name>`` at ``step``) to TensorBoard; nothing without it."""
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"train/{k}", v, step)

    def log_epoch(self, record: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
        """Append ``record`` to ``metrics.jsonl``, rewrite ``metrics.csv`` from ``history`` (every row so far,
        ``record`` included), and write its numbers as ``epoch/<name>`` to TensorBoard."""
        append_jsonl(self.jsonl, record)
        write_csv(self.csv, history)
        if self.writer is not None:
            for k, v in record.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.writer.add_scalar(f"epoch/{k}", v, record["epoch"])
            self.writer.flush()

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any; the metrics files are complete after each epoch."""
        if self.writer is not None:
            self.writer.close()
