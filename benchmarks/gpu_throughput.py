"""Training throughput on a GPU: ResNet-50 images/s (bf16 autocast, channels_last) against torchvision's
ResNet-50 in the same run, and the seq2seq Transformer's tokens/s.

Each measurement is a bare training step (forward under autocast, cross-entropy, backward, AdamW step)
on a synthetic batch already on the device, so the figure is the model's, not the data loader's; median
of at least 5 repeats after warm-up (``benchmarks.common.median_time``, which synchronises CUDA).

    bash benchmarks/gpu.sh                 # on a machine with a GPU
    python -m benchmarks.gpu_throughput --dry-run   # tiny sizes on the CPU: checks the script runs

A model that is not registered in ``nnatlas.models`` is skipped with a message, not an error.
"""

from __future__ import annotations

import argparse
import inspect
import json
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import machine, median_time


def _registered(name: str) -> bool:
    from nnatlas.models import list_models

    return name in list_models()


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: Any, device_type: str, amp: bool):
    def step() -> None:
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def image_throughput(model: nn.Module, *, batch: int, size: int, device: torch.device, amp: bool, steps: int,
                     channels_last: bool, repeats: int) -> float:  # fmt: skip
    """Training images per second of ``model`` on ``(batch, 3, size, size)`` inputs."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=memory_format)
    y = torch.randint(0, 1000, (batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def loss_fn(m: nn.Module) -> torch.Tensor:
        out = m(x)
        return F.cross_entropy(out if isinstance(out, torch.Tensor) else out[0], y)

    one = _train_step(model, opt, loss_fn, device.type, amp)

    def run() -> None:
        for _ in range(steps):
            one()

    return batch * steps / median_time(run, repeats=repeats, warmup=2)


def _token_inputs(model: nn.Module, batch: int, length: int, device: torch.device) -> tuple[list, int]:
    """Random token ids below the smallest embedding table, for every positional argument of forward."""
    vocab = min((m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)), default=None)
    if vocab is None:
        raise TypeError("the model has no nn.Embedding; cannot tell its vocabulary size")
    params = [
        p for p in inspect.signature(model.forward).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]  # fmt: skip
    return [torch.randint(0, vocab, (batch, length), device=device) for _ in params], vocab


def transformer_throughput(name: str, *, batch: int, length: int, device: torch.device, amp: bool, steps: int,
                           repeats: int) -> float:  # fmt: skip
    """Training target tokens per second of a registered seq2seq model, teacher-forced on random ids."""
    from nnatlas.models import create_model

    model = create_model(name).to(device).train()
    inputs, _ = _token_inputs(model, batch, length, device)
    target = torch.randint(0, 2, (batch, length), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def loss_fn(m: nn.Module) -> torch.Tensor:
        out = m(*inputs)
        logits = out if isinstance(out, torch.Tensor) else out[0]  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, -2).float(), target[:, : logits.shape[1]].flatten())

    one = _train_step(model, opt, loss_fn, device.type, amp)

    def run() -> None:
        for _ in range(steps):
            one()

    return batch * length * steps / median_time(run, repeats=repeats, warmup=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="GPU training throughput: ResNet-50 and the seq2seq Transformer")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, to check the script runs")
    p.add_argument("--batch-size", type=int, default=256, help="ResNet-50 batch")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=10, help="training steps per timed repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seq-batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--no-amp", action="store_true", help="float32 instead of bf16 autocast")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.dry_run:
        args.batch_size, args.image_size, args.steps, args.seq_batch, args.seq_len = 2, 64, 1, 2, 16
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        print("no CUDA device: run with --dry-run to check the script on the CPU")
        return 2
    amp = not args.no_amp
    print(f"machine: {machine()}")
    print(f"ResNet-50: batch {args.batch_size}, {args.image_size}px, bf16 autocast {amp}, channels_last")
    results: dict[str, Any] = {"machine": machine(), "dry_run": args.dry_run}
    kw = dict(batch=args.batch_size, size=args.image_size, device=device, amp=amp, steps=args.steps,
              channels_last=True, repeats=args.repeats)  # fmt: skip

    import torchvision

    torch.manual_seed(0)
    ref = image_throughput(torchvision.models.resnet50(), **kw)
    results["torchvision_resnet50_images_per_s"] = ref
    print(f"  torchvision resnet50: {ref:,.1f} images/s")
    if _registered("resnet50"):
        from nnatlas.models import create_model

        torch.manual_seed(0)
        ours = image_throughput(create_model("resnet50"), **kw)
        results["nnatlas_resnet50_images_per_s"] = ours
        results["resnet50_ratio"] = ours / ref
        print(f"  nnatlas resnet50:     {ours:,.1f} images/s  (ours / torchvision = {ours / ref:.3f})")
    else:
        print("  nnatlas resnet50: not registered in nnatlas.models on this checkout; skipped")
    if device.type == "cuda":
        torch.cuda.empty_cache()

    name = "transformer_seq2seq"
    if _registered(name):
        try:
            tps = transformer_throughput(name, batch=args.seq_batch, length=args.seq_len, device=device, amp=amp,
                                         steps=args.steps, repeats=args.repeats)  # fmt: skip
            results[f"{name}_tokens_per_s"] = tps
            print(f"{name}: batch {args.seq_batch} x {args.seq_len} tokens: {tps:,.0f} tokens/s")
        except (TypeError, RuntimeError, ValueError) as e:
            print(f"{name}: skipped, cannot drive its forward with token ids ({type(e).__name__}: {e})")
    else:
        print(f"{name}: not registered in nnatlas.models on this checkout; skipped")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
