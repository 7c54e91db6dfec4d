"""Accumulation, schedules, EMA, checkpoints, exact resume, the NaN guard and mixed precision."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DistributedSampler, TensorDataset

from nnatlas.engine import (
    CheckpointError,
    ClassificationTask,
    EpochSampler,
    ModelEma,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    build_scheduler,
    load_checkpoint,
    read_jsonl,
    save_checkpoint,
)
from nnatlas.engine.checkpoint import rng_state, set_rng_state

TIME_FIELDS = {"epoch_time", "throughput"}


def _blobs(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])[y] + 0.7 * torch.randn(n, 2, generator=g)
    return TensorDataset(x, y)


def _mlp(dropout=0.0):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 3))


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_gradient_accumulation_equals_the_large_batch():
    # k micro-batches of b samples, averaged, are one batch of k * b for a model without batch statistics.
    runs = []
    for batch, accum in ((32, 1), (8, 4)):
        model = _mlp()
        cfg = TrainConfig(epochs=2, batch_size=batch, grad_accum_steps=accum, lr=0.01, warmup_epochs=0.5)
        trainer = Trainer(model, ClassificationTask(3), _blobs(), None, cfg)
        assert trainer.updates_per_epoch == 4
        trainer.fit()
        runs.append(_params(model))
    torch.testing.assert_close(runs[0], runs[1], atol=1e-5, rtol=1e-5)
    assert not torch.equal(runs[0], _params(_mlp()))  # training did move the weights


def test_clipping_bounds_the_update():
    model = nn.Linear(2, 3)
    cfg = TrainConfig(epochs=1, batch_size=128, lr=1.0, optimizer="sgd", momentum=0.0, weight_decay=0.0,
                      warmup_epochs=0, scheduler="constant", clip_grad_norm=1e-3)  # fmt: skip
    before = _params(model).clone()
    Trainer(model, ClassificationTask(3), _blobs(), None, cfg).fit()
    # One SGD step of lr 1 with the gradient clipped to norm 1e-3 (torch.nn.utils.clip_grad_norm_).
    assert torch.linalg.vector_norm(_params(model) - before).item() == pytest.approx(1e-3, rel=1e-4)


def _lrs(sched_fn, steps):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.4)
    sched = sched_fn(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_schedule_equals_torch_multistep():
    ours = _lrs(lambda o: build_scheduler(o, "step", total_steps=100, milestones=(30, 70), gamma=0.2), 100)
    ref = _lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[30, 70], gamma=0.2), 100)
    assert ours == pytest.approx(ref, abs=1e-12)
    default = _lrs(lambda o: build_scheduler(o, "step", total_steps=64), 64)  # 1/2 and 3/4 of training
    assert default == pytest.approx(_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [32, 48]), 64))


@pytest.mark.parametrize("warmup", [0, 20])
def test_onecycle_equals_torch_onecycle(warmup):
    total = 100
    ours = _lrs(lambda o: build_scheduler(o, "onecycle", total_steps=total, warmup_steps=warmup), total)
    peak = warmup or round(0.3 * total) - 1
    kw = {"max_lr": 0.4, "total_steps": total, "pct_start": (peak + 1) / total}
    lin = _lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, anneal_strategy="linear", **kw), total)
    cos = _lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, anneal_strategy="cos", **kw), total)
    # Linear warm-up as torch's linear strategy, cosine decay as torch's cosine strategy.
    assert ours[: peak + 1] == pytest.approx(lin[: peak + 1], rel=1e-9)
    assert ours[peak:] == pytest.approx(cos[peak:], rel=1e-9)
    assert ours[0] == pytest.approx(0.4 / 25) and min(ours) == pytest.approx(0.4 / 25 / 1e4, rel=1e-2)


def test_ema_follows_the_closed_form():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = ModelEma(model, decay=0.9)
    expected = {k: v.clone().float() for k, v in model.state_dict().items()}
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(8, 3))  # moves the batch-norm running statistics
        ema.update(model)
        for k, v in model.state_dict().items():
            if v.is_floating_point():  # ema = d * ema + (1 - d) * theta, buffers included (timm ModelEmaV2)
                expected[k] = 0.9 * expected[k] + 0.1 * v
    for k, v in ema.module.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, expected[k], rtol=1e-5, atol=1e-6)


def test_epoch_sampler_deals_like_distributed_sampler():
    data = list(range(23))
    for rank in range(3):
        ref = DistributedSampler(data, num_replicas=3, rank=rank, shuffle=True, seed=5)
        ours = EpochSampler(len(data), num_replicas=3, rank=rank, seed=5)
        for epoch in (0, 4):
            ref.set_epoch(epoch)
            ours.set_epoch(epoch)
            assert list(ours) == list(ref)
        ours.set_position(4, start=3)
        assert list(ours) == list(ref)[3:] and len(ours) == len(ref) - 3
    val = [list(EpochSampler(23, shuffle=False, num_replicas=3, rank=r, pad=False)) for r in range(3)]
    assert sorted(sum(val, [])) == data  # validation: every sample exactly once


def test_checkpoint_is_atomic_and_loads_with_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "rng": rng_state()})
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    import os

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))  # the old one survived whole
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # and no temporary file is left

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format_version": 1, "x": Evil()}, tmp_path / "evil.pt", _use_new_zipfile_serialization=True)
    with pytest.raises(CheckpointError, match="objects other than tensors.*posix.system.*refused"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "trunc.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_checkpoint(tmp_path / "trunc.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_roundtrip():
    import random

    import numpy as np

    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


class _StopAt:
    """A progress reporter that raises the stop flag (as SIGINT would) after a given number of steps."""

    def __init__(self, steps):
        self.steps, self.trainer = steps, None

    def start_epoch(self, epoch, epochs, steps):
        pass

    def step(self, loss, lr):
        self.steps -= 1
        if self.steps == 0:
            self.trainer._signals.signum = 2

    def end_epoch(self, record):
        pass


def _resumable(run_dir, progress=None):
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.02, ema_decay=0.9, scheduler="onecycle",
                      grad_accum_steps=2, clip_grad_norm=5.0)  # fmt: skip
    return Trainer(_mlp(dropout=0.3), ClassificationTask(3), _blobs(), _blobs(60, 1), cfg, run_dir=run_dir,
                   progress=progress)  # fmt: skip


def test_mid_epoch_resume_reproduces_the_uninterrupted_run(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = _resumable(tmp_path / "a")
    full.fit()
    stopper = _StopAt(steps=13)  # epoch 2, after the 6th micro-batch: an update boundary mid-epoch
    first = _resumable(tmp_path / "b", stopper)
    stopper.trainer = first
    with pytest.raises(TrainingInterrupted, match="SIGINT at epoch 2, batch 6"):
        first.fit()
    assert len(read_jsonl(tmp_path / "b" / "metrics.jsonl")) == 1
    second = _resumable(tmp_path / "b")
    second.fit(resume=True)
    strip = [[{k: v for k, v in r.items() if k not in TIME_FIELDS} for r in read_jsonl(d / "metrics.jsonl")]
             for d in (tmp_path / "a", tmp_path / "b")]  # fmt: skip
    assert len(strip[0]) == 3 and strip[0] == strip[1]
    assert {"val_ema_acc", "val_ema_loss"} <= set(strip[0][0])
    assert torch.equal(_params(full.model), _params(second.model))
    assert torch.equal(_params(full.ema.module), _params(second.ema.module))
    csv = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert len(csv) == 4 and csv[0].startswith("epoch,step,train_loss")


class _Poison:
    """Fills the weights with NaN when epoch 2 starts."""

    def __init__(self):
        self.model = None

    def start_epoch(self, epoch, epochs, steps):
        if epoch == 2:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.fill_(float("nan"))

    def step(self, loss, lr):
        pass

    def end_epoch(self, record):
        pass


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    poison = _Poison()
    model = _mlp()
    poison.model = model
    cfg = TrainConfig(epochs=3, batch_size=32)
    trainer = Trainer(model, ClassificationTask(3), _blobs(), None, cfg, run_dir=tmp_path, progress=poison)
    with pytest.raises(
        NonFiniteLossError, match=r"loss became nan at epoch 2.*last good checkpoint is .*checkpoint\.pt"
    ):
        trainer.fit()
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["position"] == {"epoch": 2, "batch": 0, "global_step": 4}
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_fp16_needs_cuda_and_bf16_autocasts_on_cpu():
    with pytest.raises(ValueError, match="amp 'fp16' needs a CUDA device.*use amp 'bf16'"):
        Trainer(_mlp(), ClassificationTask(3), _blobs(), None, TrainConfig(amp="fp16", device="cpu"))
    dtypes = []

    class Recording(ClassificationTask):
        def training_step(self, model, batch):
            dtypes.append(model(batch[0]).dtype)
            return super().training_step(model, batch)

    model = _mlp()
    cfg = TrainConfig(epochs=1, batch_size=64, amp="bf16", device="cpu", lr=0.01)
    history = Trainer(model, Recording(3), _blobs(), _blobs(60, 1), cfg).fit()
    assert set(dtypes) == {torch.bfloat16}
    assert model[0].weight.dtype == torch.float32  # autocast keeps float32 master weights
    assert math.isfinite(history[0]["train_loss"]) and math.isfinite(history[0]["val_loss"])


def test_config_validation_names_the_argument():
    for kw, msg in [({"amp": "fp8"}, "amp must be one of"), ({"grad_accum_steps": 0}, "grad_accum_steps"),
                    ({"ema_decay": 1.5}, "ema_decay"), ({"clip_grad_norm": -1}, "clip_grad_norm"),
                    ({"milestones": (0,)}, "milestones")]:  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            TrainConfig(**kw)
