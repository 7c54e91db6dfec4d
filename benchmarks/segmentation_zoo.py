"""Training-step time of our torchvision-layout segmentation models against torchvision's.

One step is forward + loss (per-pixel cross-entropy of ``out`` plus 0.5 times that of ``aux``, as
torchvision's segmentation reference recipe) + backward, in training mode, with the same weights
(torchvision's state dict loaded into ours, ``aux_loss=True`` on both) and the same input. The two models
are timed alternately in the same process (the first of each pair alternating too), median of
``--repeats`` after two warm-up steps each, by wall clock (``time.perf_counter``) and by the CPU time of
the process (``time.process_time``; the steadier figure on a shared CPU, with one thread by default).

    python -m benchmarks.segmentation_zoo                       # fcn_resnet50, deeplabv3_resnet50
    python -m benchmarks.segmentation_zoo --batch 2 --size 128 --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision

from benchmarks.common import machine
from nnatlas.models import create_model

DEFAULT_MODELS = ("fcn_resnet50", "deeplabv3_resnet50")
NUM_CLASSES = 21


def _loss(out: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out["out"], y, ignore_index=255) + 0.5 * F.cross_entropy(
        out["aux"], y, ignore_index=255
    )


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    def run() -> None:
        model.zero_grad(set_to_none=True)
        _loss(model(x), y).backward()

    return run


def bench(name: str, *, batch: int, size: int, repeats: int, device: str) -> dict:
    ref = torchvision.models.get_model(
        name, weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=True
    )
    ours = create_model(name, num_classes=NUM_CLASSES, aux_loss=True)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.to(device).train()
    ours.to(device).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    y = torch.randint(0, NUM_CLASSES, (batch, size, size), generator=g).to(device)

    steps = {"ours": _step(ours, x, y), "ref": _step(ref, x, y)}
    wall: dict[str, list[float]] = {"ours": [], "ref": []}
    cpu: dict[str, list[float]] = {"ours": [], "ref": []}
    for i in range(2 + repeats):
        order = ("ours", "ref") if i % 2 == 0 else ("ref", "ours")  # alternate who goes first
        for key in order:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            w0, c0 = time.perf_counter(), time.process_time()
            steps[key]()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
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
        "batch": batch,
        "size": size,
        **med,
        "wall_ratio": med["wall_ours"] / med["wall_ref"],
        "cpu_ratio": med["cpu_ours"] / med["cpu_ref"],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=DEFAULT_MODELS)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = p.parse_args(argv)
    if args.repeats < 5:
        p.error(f"--repeats must be >= 5 for a median worth reporting; got {args.repeats}")
    torch.set_num_threads(args.threads)
    print(machine())
    print(
        "| model | batch x size | ours wall (s) | torchvision wall (s) | wall ratio "
        "| ours CPU (s) | torchvision CPU (s) | CPU ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        r = bench(name, batch=args.batch, size=args.size, repeats=args.repeats, device=args.device)
        print(
            f"| {r['model']} | {r['batch']} x {r['size']}px | {r['wall_ours']:.3f} | {r['wall_ref']:.3f} | "
            f"{r['wall_ratio']:.3f} | {r['cpu_ours']:.3f} | {r['cpu_ref']:.3f} | {r['cpu_ratio']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
