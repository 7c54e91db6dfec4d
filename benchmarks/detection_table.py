"""Every registered detector on the same images: the notes' single-step vs two-step trade-off, measured.

All detectors get the same batch of 64x64 validation scenes of the embedded shapes set (what they were
trained and scored on), in eval mode. Each model then resizes as its own transform says (the R50-FPN pair
to 800 px as torchvision's, SSD300 to 300 px, the small CPU variants keep 64-96 px), so the MACs are those
of the whole forward pass, resizing included, counted by ``nnatlas.analysis.summary`` on the real run
(region heads count the proposals this image really produced). Images/s is the median of ``--repeats``
eval passes of ``--batch`` images after a warm-up, with ``--threads`` CPU threads (or on ``--device``).

``--runs`` points at run folders of ``nnatlas train detection`` (named by their model): their best
``val_map_50`` fills the mAP@.5 column and the number of epochs trained.

    python -m benchmarks.detection_table --runs runs/yolo_v1-shapes runs/ssd_small-shapes
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import machine
from nnatlas.analysis import summary
from nnatlas.data import load_dataset
from nnatlas.models import create_model, list_models

FAMILY = {
    "yolo_v1": "single-step",
    "ssd_small": "single-step",
    "ssd300_vgg16": "single-step",
    "fasterrcnn_resnet18_fpn_small": "two-step",
    "fasterrcnn_resnet50_fpn": "two-step",
    "maskrcnn_resnet18_fpn_small": "two-step (+ masks)",
    "maskrcnn_resnet50_fpn": "two-step (+ masks)",
    "rfcn": "two-step",
    "detr": "set prediction",
    "detr_resnet50": "set prediction",
}


def _run_scores(paths: list[str]) -> dict[str, tuple[float, int]]:
    """``{model: (best val_map_50, epochs)}`` of the given run folders."""
    scores = {}
    for p in paths:
        folder = Path(p)
        config = json.loads((folder / "config.json").read_text())
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
        values = [r["val_map_50"] for r in rows if r.get("val_map_50") is not None]
        if values:
            scores[config["model"]] = (max(values), len(rows))
    return scores


def bench(name: str, images: list[torch.Tensor], *, repeats: int, device: str) -> dict:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval().to(device)
    images = [x.to(device) for x in images]
    with torch.no_grad():
        s = summary(model, inputs=(images[:1],))
        for _ in range(2):
            model(images)
        times = []
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(images)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "macs": s.total_macs,
        "images_s": len(images) / statistics.median(times),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list_models(task="detection"))
    p.add_argument("--runs", nargs="*", default=[], help="run folders of nnatlas train detection")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    args = p.parse_args(argv)
    if args.repeats < 5:
        p.error(f"--repeats must be >= 5 for a median worth reporting; got {args.repeats}")
    torch.set_num_threads(args.threads)
    scores = _run_scores(args.runs)
    data = load_dataset("shapes", task="detection", num_train=1, num_val=args.batch)
    images = [data.val[i][0] for i in range(args.batch)]
    print(machine())
    print(f"{args.batch} shapes scenes of 64x64 per pass, eval mode, {args.threads} threads on {args.device}")
    print("| model | family | parameters | GMACs / image | images/s | mAP@.5 on shapes (epochs) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        r = bench(name, images, repeats=args.repeats, device=args.device)
        score = f"{scores[name][0]:.3f} ({scores[name][1]})" if name in scores else "not trained"
        print(
            f"| {name} | {FAMILY.get(name, '')} | {r['params']:,} | {r['macs'] / 1e9:.3f} | "
            f"{r['images_s']:.1f} | {score} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
