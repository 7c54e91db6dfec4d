"""Incremental decoding with the key/value cache against full recomputation of the prefix at every step.

Both decode the same random source with the same weights and must produce exactly the same tokens; the
figure is generated tokens per second (batch x new tokens / wall time) and the speed-up of the cache at
64 and 256 generated tokens. No end token stops decoding early (``eos_id=None``).

    python -m benchmarks.kv_cache [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import interleaved_ratio, machine
from nnatlas.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    # The registry's default size: d_model 128, 4 heads, 2 + 2 layers, feed-forward 512.
    model = create_model("transformer_seq2seq", vocab_size=32, max_len=512, dropout=0.0).to(dev).eval()
    src = torch.randint(3, 32, (args.batch, 16), device=dev)
    print(f"machine: {machine()}")
    print("| generated tokens | with cache (tokens/s) | without cache (tokens/s) | speed-up | same tokens |")
    print("| --- | --- | --- | --- | --- |")
    for n in (64, 256):

        def cached(n: int = n) -> torch.Tensor:
            return model.generate(src, n, eos_id=None, use_cache=True)

        def full(n: int = n) -> torch.Tensor:
            return model.generate(src, n, eos_id=None, use_cache=False)

        same = torch.equal(cached(), full())
        t_cached, t_full, ratio = interleaved_ratio(cached, full, repeats=5, warmup=1)
        tokens = args.batch * n
        print(
            f"| {n} | {tokens / t_cached:,.0f} | {tokens / t_full:,.0f} | {1 / ratio:.1f}x | {'yes' if same else 'NO'} |"
        )


if __name__ == "__main__":
    main()
