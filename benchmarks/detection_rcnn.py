"""Training-step time of our two-stage detectors against torchvision's models of the same name.

One step is forward (losses of the RPN and the RoI heads) + backward of their sum, in training mode, with
the same weights (torchvision's random state dict loaded into ours), the same images and targets, and the
same seed before each step (so both sample the same anchors and RoIs). The models are timed alternately
in one process (the first of each pair alternating too), median of ``--repeats`` after two warm-up steps
each, by wall clock and by the CPU time of the process; with one thread (the default) the CPU time is not
inflated by OpenMP threads spinning on a shared machine. Images are resized inside the models to
``--min-size`` / ``--max-size`` (torchvision's 800 / 1333 would make a CPU step take tens of seconds).

    python -m benchmarks.detection_rcnn                 # fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn
    python -m benchmarks.detection_rcnn --models fasterrcnn_resnet50_fpn --repeats 15
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from benchmarks.common import machine
from nnatlas.models import create_model

DEFAULT_MODELS = ("fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn")


def _batch(batch: int, height: int, width: int, masks: bool) -> tuple[list[torch.Tensor], list[dict]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, height, width, generator=g) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        n = 3
        xy = torch.rand(n, 2, generator=g) * torch.tensor([width * 0.6, height * 0.6])
        wh = 16 + torch.rand(n, 2, generator=g) * torch.tensor([width * 0.3, height * 0.3])
        boxes = torch.cat((xy, xy + wh), dim=1)
        t = {"boxes": boxes, "labels": torch.randint(1, 91, (n,), generator=g)}
        if masks:
            m = torch.zeros(n, height, width, dtype=torch.uint8)
            for j, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
                m[j, y1:y2, x1:x2] = 1
            t["masks"] = m
        targets.append(t)
    return images, targets


def _step(model: torch.nn.Module, images: list[torch.Tensor], targets: list[dict]):
    def run() -> None:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same anchor and RoI sampling in both models
        sum(model(images, targets).values()).backward()

    return run


def bench(
    name: str, *, batch: int, height: int, width: int, repeats: int, min_size: int, max_size: int
) -> dict:
    kwargs = {"min_size": min_size, "max_size": max_size}
    ref = torchvision.models.get_model(name, weights=None, weights_backbone=None, **kwargs)
    ours = create_model(name, **kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.train()
    ours.train()
    images, targets = _batch(batch, height, width, masks="mask" in name)
    steps = {"ours": _step(ours, images, targets), "ref": _step(ref, images, targets)}
    wall: dict[str, list[float]] = {"ours": [], "ref": []}
    cpu: dict[str, list[float]] = {"ours": [], "ref": []}
    for i in range(2 + repeats):
        order = ("ours", "ref") if i % 2 == 0 else ("ref", "ours")  # alternate who goes first
        for key in order:
            w0, c0 = time.perf_counter(), time.process_time()
            steps[key]()
            if i >= 2:  # two warm-up steps each
                wall[key].append(time.perf_counter() - w0)
                cpu[key].append(time.process_time() - c0)
    med = {
        f"{kind}_{k}": statistics.median(v)
        for kind, d in (("wall", wall), ("cpu", cpu))
        for k, v in d.items()
    }
    return {
        "model": name,
        **med,
        "wall_ratio": med["wall_ours"] / med["wall_ref"],
        "cpu_ratio": med["cpu_ours"] / med["cpu_ref"],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--min-size", type=int, default=128, help="the models' resize target (shorter side)")
    p.add_argument("--max-size", type=int, default=160, help="the models' resize limit (longer side)")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = p.parse_args(argv)
    if args.repeats < 5:
        p.error(f"--repeats must be >= 5 for a median worth reporting; got {args.repeats}")
    torch.set_num_threads(args.threads)
    print(machine())
    print(
        f"batch {args.batch} x (3, {args.height}, {args.width}), min_size {args.min_size}, max_size {args.max_size}"
    )
    print(
        "| model | ours wall (s) | torchvision wall (s) | wall ratio | ours CPU (s) | torchvision CPU (s) | CPU ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        r = bench(
            name,
            batch=args.batch,
            height=args.height,
            width=args.width,
            repeats=args.repeats,
            min_size=args.min_size,
            max_size=args.max_size,
        )
        print(
            f"| {r['model']} | {r['wall_ours']:.3f} | {r['wall_ref']:.3f} | {r['wall_ratio']:.3f} | "
            f"{r['cpu_ours']:.3f} | {r['cpu_ref']:.3f} | {r['cpu_ratio']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
