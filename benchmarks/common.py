"""Timing helpers shared by the benchmarks: warm-up, then the median of several repeats, and ratios."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch


def median_time(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    if repeats < 5:
        raise ValueError(f"repeats must be >= 5 for a median worth reporting; got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_ratio(
    ours: Callable[[], object], reference: Callable[[], object], *, repeats: int = 7, warmup: int = 2
) -> tuple[float, float, float]:
    """``(median ours, median reference, ratio)`` with the two timed alternately, so drift hits both."""
    for _ in range(warmup):
        ours()
        reference()
    a, b = [], []
    for _ in range(repeats):
        for fn, acc in ((ours, a), (reference, b)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    ma, mb = statistics.median(a), statistics.median(b)
    return ma, mb, ma / mb


def machine() -> str:
    """One line naming the machine, for RESULTS.md."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {gpu}, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )
