"""``nnatlas report``: wall time of the real command on a 15-epoch digits run and on resnet50, and the
screenshots of both pages in headless Chromium (committed under docs/img/).

The goal is absolute (each report in under 30 s on a 2-core CPU), so the figure is the wall time of the
command in a fresh process, start-up included, the median of ``--repeats`` runs; the ratio column is that
time over the 30 s budget.

    python -m benchmarks.report                 # trains the digits run first (nnatlas train, 15 epochs)
    python -m benchmarks.report --run runs/digits
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 30.0


def nnatlas(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nnatlas", *args], check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=None, help="a digits run folder (default: train one, 15 epochs)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--screenshots", default=str(ROOT / "docs" / "img"), help="folder for the screenshots")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nnatlas-report-"))
    run = Path(args.run) if args.run else None
    if run is None:
        print("training the digits run (15 epochs) ...", flush=True)
        nnatlas("train", "--out", str(tmp), "--name", "digits", "--quiet")
        run = tmp / "digits"
    rows = []
    targets = (
        ("15-epoch digits run", [str(run)], "report_run.png"),
        ("resnet50 at 224 px", ["resnet50", "--input", "1,3,224,224"], "report_resnet50.png"),
    )
    for label, target, shot in targets:
        out = tmp / f"{shot}.html"
        times = [nnatlas("report", *target, "-o", str(out), "--overwrite") for _ in range(args.repeats)]
        wall = statistics.median(times)
        rows.append((label, wall, out, shot))
        print(
            f"{label}: median {wall:.1f} s over {args.repeats} runs ({', '.join(f'{t:.1f}' for t in times)})"
        )
    try:
        sys.path.insert(0, str(ROOT))
        from tests.browser import open_page

        for label, _, out, shot in rows:
            page = open_page(out, width=1000, height=1200)
            assert not page.errors and not page.requests and page.decoded == page.images, label
            (Path(args.screenshots) / shot).write_bytes(page.screenshot)
            print(
                f"screenshot of the {label} report -> {Path(args.screenshots) / shot} ({page.images} images)"
            )
    except BaseException as e:  # pytest.skip raises an exception that is not an Exception
        print(f"no screenshots: {e}")
    print(f"\nmachine: {machine()}")
    print("| report | wall (s), median | of the 30 s budget |")
    print("|---|---|---|")
    for label, wall, _, _ in rows:
        print(f"| {label} | {wall:.1f} | {wall / BUDGET:.2f} |")


if __name__ == "__main__":
    main()
