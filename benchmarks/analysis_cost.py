"""Cost of ``nnatlas.analysis.summary`` and of other counters, each as a ratio to one forward pass.

For each of ten representative torchvision models (CNNs old and new, a vision transformer, Swin, MaxViT)
at batch 1 and their default resolution, in one process with one thread: one plain forward pass (eval
mode, ``torch.no_grad()``) is the reference, timed alternately with each tool on the same model and
input; the figure is the median over the repeats (after a warm-up) of the tool's time over the median
forward time, in CPU time of the thread (steady when other processes share the machine) and in wall time.
The MACs each tool reports are compared with torchvision's published ``_ops`` (GFLOPS that count
multiply-adds).

Tools, where installed (``pip install -e '.[bench-analysis]'``): ptflops (its ``pytorch`` hooks backend
and its ``aten`` dispatch backend), torchinfo, thop, calflops, fvcore (a TorchScript trace). A tool that
is missing is skipped and said so. ``nnatlas (meta)`` is summary on the same model built on the meta
device (nothing computed), against the same real forward pass.

``--memory`` instead compares the peak memory of one training step that
``nnatlas.analysis.training_cost`` estimates on the meta device with the one
``nnatlas.analysis.measure_training_memory`` measures on the CPU (the allocator's figures through
``torch.profiler``), for ResNet-50 and ViT-B/16 at batch 2, with SGD + momentum and AdamW.

Run: ``python -m benchmarks.analysis_cost [--models resnet50 vit_b_16] [--repeats 5] [--batch 1] [--memory]``
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import logging
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torchvision

from benchmarks.common import machine
from nnatlas.analysis import build_on_meta, measure_training_memory, summary, training_cost

MODELS = [
    "resnet50",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "densenet121",
    "regnet_y_400mf",
    "inception_v3",
    "convnext_tiny",
    "swin_t",
    "vit_b_16",
    "maxvit_t",
]


def _tools(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], float | None]]:
    """Each tool as a function that runs it once and returns the MACs it reports (``None`` if none)."""
    tools: dict[str, Callable[[], float | None]] = {"nnatlas": lambda: summary(model, inputs=x).total_macs}
    shape = tuple(x.shape[1:])
    if importlib.util.find_spec("ptflops"):
        from ptflops import get_model_complexity_info

        def ptflops(backend: str) -> Callable[[], float]:
            def run() -> float:
                macs, _ = get_model_complexity_info(
                    model, shape, as_strings=False, print_per_layer_stat=False, verbose=False, backend=backend
                )
                return float(macs)

            return run

        tools["ptflops (pytorch)"] = ptflops("pytorch")
        tools["ptflops (aten)"] = ptflops("aten")
    if importlib.util.find_spec("torchinfo"):
        import torchinfo

        tools["torchinfo"] = lambda: float(torchinfo.summary(model, input_data=x, verbose=0).total_mult_adds)
    if importlib.util.find_spec("thop"):
        from thop import profile

        twin = copy.deepcopy(model)  # thop leaves total_ops/total_params buffers in the model it profiles
        tools["thop"] = lambda: float(profile(twin, inputs=(x,), verbose=False)[0])
    if importlib.util.find_spec("calflops") and importlib.util.find_spec("transformers"):
        from calflops import calculate_flops

        def calflops() -> float:
            _, macs, _ = calculate_flops(
                model=model,
                input_shape=tuple(x.shape),
                output_as_string=False,
                print_results=False,
                print_detailed=False,
            )
            return float(macs)

        tools["calflops"] = calflops
    if importlib.util.find_spec("fvcore"):
        from fvcore.nn import FlopCountAnalysis

        def fvcore() -> float:
            analysis = FlopCountAnalysis(model, x)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            return float(analysis.total())  # fvcore's "flops" are multiply-adds

        tools["fvcore"] = fvcore
    return tools


def _time(fn: Callable[[], object]) -> tuple[float, float, object]:
    cpu, wall = time.thread_time(), time.perf_counter()
    out = fn()
    return time.thread_time() - cpu, time.perf_counter() - wall, out


def measure(name: str, batch: int, repeats: int) -> list[dict[str, object]]:
    torch.manual_seed(0)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    side = weights.transforms().crop_size[0]
    kwargs = {"init_weights": False} if name == "inception_v3" else {}
    model = torchvision.models.get_model(name, **kwargs).eval()
    meta = build_on_meta(torchvision.models.get_model, name, **kwargs).eval()
    x = torch.randn(batch, 3, side, side)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    tools = _tools(model, x)
    tools["nnatlas (meta)"] = lambda: summary(meta, (batch, 3, side, side)).total_macs
    macs: dict[str, object] = {}
    for tool, fn in tools.items():  # warm-up (and the MACs each tool reports)
        forward()
        macs[tool] = fn()
    times: dict[str, list[tuple[float, float]]] = {t: [] for t in ["forward", *tools]}
    for _ in range(repeats):
        for tool, fn in tools.items():
            cpu, wall, _ = _time(forward)
            times["forward"].append((cpu, wall))
            cpu, wall, _ = _time(fn)
            times[tool].append((cpu, wall))
    ref_cpu = statistics.median(c for c, _ in times["forward"])
    ref_wall = statistics.median(w for _, w in times["forward"])
    published = weights.meta["_ops"] * 1e9 * batch
    rows = []
    for tool in tools:
        cpu = statistics.median(c for c, _ in times[tool])
        wall = statistics.median(w for _, w in times[tool])
        got = macs[tool]
        rows.append(
            {
                "model": name,
                "side": side,
                "tool": tool,
                "forward_ms": ref_cpu * 1e3,
                "cpu_ratio": cpu / ref_cpu,
                "wall_ratio": wall / ref_wall,
                "macs_vs_published": (float(got) / published) if isinstance(got, (int, float)) else None,
            }
        )
    return rows


def memory() -> None:
    """Estimated (meta) and measured (CPU) peak of one training step."""
    print("| model | batch x size | optimizer | estimate (MiB) | measured (MiB) | estimate / measured |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, side in (("resnet50", 112), ("vit_b_16", 64)):
        kwargs = {"image_size": side} if name.startswith("vit") else {}
        for optimizer in ("sgd_momentum", "adamw"):
            with torch.device("meta"):
                meta = torchvision.models.get_model(name, **kwargs)
            estimate = training_cost(meta, (2, 3, side, side), optimizer=optimizer).memory.peak
            torch.manual_seed(0)
            model = torchvision.models.get_model(name, **kwargs)
            measured = measure_training_memory(model, (2, 3, side, side), optimizer=optimizer).peak
            print(
                f"| {name} | 2 x {side}px | {optimizer} | {estimate / 2**20:.1f} | {measured / 2**20:.1f} | "
                f"{estimate / measured:.3f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="training-step memory: estimate vs measurement")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error(f"--repeats must be >= 5; got {args.repeats}")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    if args.memory:
        print(machine())
        memory()
        return
    missing = [
        t for t in ("ptflops", "torchinfo", "thop", "calflops", "fvcore") if not importlib.util.find_spec(t)
    ]
    if importlib.util.find_spec("calflops") and not importlib.util.find_spec("transformers"):
        missing.append("calflops (needs transformers)")
    print(machine())
    if missing:
        print("skipped (not installed):", ", ".join(missing))
    rows = []
    for name in args.models:
        rows += measure(name, args.batch, args.repeats)
        print(f"measured {name}", flush=True)
    tools = list(dict.fromkeys(r["tool"] for r in rows))
    print()
    print(
        f"CPU-time ratio to one forward pass (batch {args.batch}, {args.threads} thread(s), median of {args.repeats})"
    )
    print("| model | forward (ms) | " + " | ".join(tools) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in tools) + " |")
    for name in args.models:
        mine = {r["tool"]: r for r in rows if r["model"] == name}
        first = next(iter(mine.values()))
        cells = [f"{mine[t]['cpu_ratio']:.2f}" for t in tools]
        print(f"| {name} {first['side']}px | {first['forward_ms']:.1f} | " + " | ".join(cells) + " |")
    print()
    print("wall-time ratio")
    print("| model | " + " | ".join(tools) + " |")
    print("| --- | " + " | ".join("---" for _ in tools) + " |")
    for name in args.models:
        mine = {r["tool"]: r for r in rows if r["model"] == name}
        print(f"| {name} | " + " | ".join(f"{mine[t]['wall_ratio']:.2f}" for t in tools) + " |")
    print()
    print("MACs reported / torchvision's published _ops")
    print("| model | " + " | ".join(tools) + " |")
    print("| --- | " + " | ".join("---" for _ in tools) + " |")
    for name in args.models:
        mine = {r["tool"]: r for r in rows if r["model"] == name}
        cells = [
            f"{mine[t]['macs_vs_published']:.3f}" if mine[t]["macs_vs_published"] is not None else "-"
            for t in tools
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
