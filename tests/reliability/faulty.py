"""Run the nnatlas command with a pause at a chosen point, so that a test can send a fault exactly there.

    python -m tests.reliability.faulty POINT MARKER -- nnatlas arguments...

POINT is ``update:N`` (after the N-th optimiser update), ``validation:N`` (at the start of the N-th
evaluation) or ``checkpoint:N`` (in the middle of the N-th checkpoint write: the temporary file holds half
the bytes, the rename has not happened). There the program creates the file MARKER and waits until
``MARKER.go`` exists (the test has sent its signal), then carries on as if nothing happened.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def _pause(marker: Path) -> None:
    marker.touch()
    go = marker.with_name(marker.name + ".go")
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def install(point: str, marker: Path) -> None:
    import nnatlas.engine.checkpoint as checkpoint
    import nnatlas.engine.trainer as trainer

    kind, _, n = point.partition(":")
    n = int(n)
    count = {"calls": 0}

    def hit() -> bool:
        count["calls"] += 1
        return count["calls"] == n

    if kind == "update":
        original_update = trainer.Trainer._update

        def _update(self, epoch):
            original_update(self, epoch)
            if hit():
                _pause(marker)

        trainer.Trainer._update = _update
    elif kind == "validation":
        original_evaluate = trainer.evaluate_model

        def evaluate_model(*args, **kwargs):
            if hit():
                _pause(marker)
            return original_evaluate(*args, **kwargs)

        trainer.evaluate_model = evaluate_model
    elif kind == "checkpoint":
        original_write = checkpoint.atomic_write_bytes

        def atomic_write_bytes(path, data):
            if hit():
                path = Path(path)
                partial = path.with_name(f".{path.name}.partial.tmp")
                partial.write_bytes(data[: len(data) // 2])  # what a write cut short leaves
                _pause(marker)
                partial.unlink()
            original_write(path, data)

        checkpoint.atomic_write_bytes = atomic_write_bytes
    else:
        raise SystemExit(f"unknown point {point!r}")


if __name__ == "__main__":
    point, marker, sep, *argv = sys.argv[1:]
    assert sep == "--"
    install(point, Path(marker))
    from nnatlas.cli.main import main

    sys.exit(main(argv))
