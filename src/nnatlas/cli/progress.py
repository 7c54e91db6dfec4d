"""A rich progress bar for the trainer (the library reports progress; only the CLI draws it)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """Implements :class:`nnatlas.engine.ProgressReporter` with one bar per epoch and a line of metrics."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._task = None

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self._task is not None:
            self.progress.remove_task(self._task)
        self._task = self.progress.add_task(
            "train", total=steps, epoch=f"{epoch}/{epochs}", loss=float("nan"), lr=0.0
        )

    def step(self, loss: float, lr: float) -> None:
        self.progress.update(self._task, advance=1, loss=loss, lr=lr)

    def end_epoch(self, record: dict[str, Any]) -> None:
        parts = [f"epoch {record['epoch']:>3}"]
        for key, value in record.items():
            if key == "epoch_time":
                parts.append(f"{value:.1f}s")
            elif key != "epoch" and isinstance(value, float):
                parts.append(f"{key} {value:.4g}")
        self.progress.console.print("  ".join(parts), soft_wrap=True)


class NullProgress:
    """Reports nothing (``--quiet``)."""

    def __enter__(self) -> NullProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        return None

    def step(self, loss: float, lr: float) -> None:
        return None

    def end_epoch(self, record: dict[str, Any]) -> None:
        return None
