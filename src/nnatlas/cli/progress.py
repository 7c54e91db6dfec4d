"""A rich progress bar for the trainer (the library reports progress; only the CLI draws it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from nnatlas.cli.common import markup_safe


class ThroughputColumn(ProgressColumn):
    """Samples per second: rich's running estimate of steps per second times the samples of one step."""

    def __init__(self, samples_per_step: int) -> None:
        super().__init__()
        self.samples_per_step = samples_per_step

    def render(self, task: Task) -> Text:
        speed = task.speed
        if speed is None or self.samples_per_step <= 0:
            return Text("-- samples/s")
        return Text(f"{speed * self.samples_per_step:,.0f} samples/s")


class RichProgress:
    """Implements :class:`nnatlas.engine.ProgressReporter` with one bar per epoch (loss, learning rate,
    throughput) and a line of metrics per epoch. ``samples_per_step``: samples of one training step over
    all processes, for the throughput column (0 hides it)."""

    def __init__(self, console: Console | None = None, *, samples_per_step: int = 0) -> None:
        self.console = console or Console(stderr=True)
        columns: list[ProgressColumn] = [
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"),
        ]
        if samples_per_step > 0:
            columns.append(ThroughputColumn(samples_per_step))
        self.progress = Progress(
            *columns,
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
            elif key == "throughput":
                parts.append(f"{value:,.0f} samples/s")
            elif key != "epoch" and isinstance(value, float):
                parts.append(f"{key} {value:.4g}")
            elif key != "epoch" and value is None:
                parts.append(f"{key} n/a")
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


def finish_run(run_dir: Path, *, title: str, wall: float, keys: tuple[str, ...]) -> None:
    """Draw ``curves.png`` from the run's ``metrics.jsonl`` and print one line with the last epoch's ``keys``."""
    from nnatlas.engine import read_jsonl
    from nnatlas.viz import plot_curves

    records = read_jsonl(run_dir / "metrics.jsonl")
    plot_curves(records, run_dir / "curves.png", title=title)
    last = records[-1] if records else {}
    values = ", ".join(f"{k} {_number(last.get(k))}" for k in keys)
    Console().print(f"done in {wall:.1f} s: {values}; run saved in {markup_safe(run_dir)}", soft_wrap=True)


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"
