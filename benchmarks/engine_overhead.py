"""The engine's cost per training step against a bare PyTorch loop, and cifar_resnet20's images/s.

Same model (cifar_resnet20, 3x32x32 inputs, 10 classes), same data (a shuffled in-memory TensorDataset
through a DataLoader), same optimiser (AdamW, weight decay on weights only) and schedule. The bare loop is
what a user would write: forward, cross-entropy, zero_grad, backward, step, scheduler step, ``loss.item()``.
The engine runs the same through ``Trainer.train_epoch`` (task, the divergence guard on the loss, the
gradient norm and every weight and buffer, accumulation bookkeeping,
sampler, progress hook); both update the same model, optimiser and schedule objects, alternately.
Median of 7 after warm-up; ratio = engine / bare.

    python -m benchmarks.engine_overhead [--batch-size 128] [--steps 4] [--threads N]
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import interleaved_ratio, machine
from nnatlas.engine import ClassificationTask, TrainConfig, Trainer
from nnatlas.models import create_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=4, help="training steps per timed repeat")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    b, steps = args.batch_size, args.steps
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(b * steps, 3, 32, 32, generator=g), torch.randint(0, 10, (b * steps,), generator=g)
    )

    torch.manual_seed(0)
    engine_model = create_model("cifar_resnet20", num_classes=10)
    cfg = TrainConfig(epochs=1000, batch_size=b, device="cpu", lr=1e-3)
    trainer = Trainer(engine_model, ClassificationTask(10), data, None, cfg)
    assert trainer.steps_per_epoch == steps

    # The bare loop trains the very same model with the very same optimiser and schedule objects, so the
    # two differ only in the code around the step (two separate models drift apart in speed on a CPU).
    bare_model, opt, sched = trainer.model, trainer.optimizer, trainer.scheduler
    loader = DataLoader(data, batch_size=b, shuffle=True, generator=g, drop_last=True)
    epoch = [0]

    def engine() -> None:
        epoch[0] += 1
        trainer.position.batch = 0
        trainer.train_epoch(epoch[0])

    def bare() -> None:
        bare_model.train()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(bare_model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss.item()

    t_engine, t_bare, ratio = interleaved_ratio(engine, bare, repeats=args.repeats, warmup=1)
    print(f"machine: {machine()}")
    print(f"cifar_resnet20, batch {b}, {steps} steps per repeat, median of {args.repeats}")
    print(f"engine step {1e3 * t_engine / steps:.1f} ms, bare loop step {1e3 * t_bare / steps:.1f} ms")
    print(f"engine / bare = {ratio:.3f} (overhead {100 * (ratio - 1):+.1f} %)")
    print(f"throughput: engine {b * steps / t_engine:.1f} images/s, bare {b * steps / t_bare:.1f} images/s")


if __name__ == "__main__":
    main()
