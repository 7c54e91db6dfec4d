import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import TensorDataset

from nnatlas.engine import ClassificationTask, TrainConfig, Trainer, read_jsonl


def _blobs(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    x = centres[y] + 0.5 * torch.randn(n, 2, generator=g)
    return TensorDataset(x, y)


def test_trainer_learns_and_writes_the_run(tmp_path):
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    cfg = TrainConfig(epochs=6, batch_size=32, lr=0.05, warmup_epochs=0.5)
    history = Trainer(
        model,
        ClassificationTask(3),
        _blobs(),
        _blobs(seed=1),
        cfg,
        run_dir=tmp_path,
        extra_config={"model": "mlp"},
    ).fit()
    assert len(history) == 6
    assert history[-1]["val_acc"] > 0.95 and history[-1]["train_loss"] < history[0]["train_loss"]
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    assert {"epoch", "train_loss", "val_loss", "val_acc", "lr"} <= set(rows[0])
    weights = load_file(tmp_path / "model.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(weights[k], v)
    cfg_json = (tmp_path / "config.json").read_text()
    assert '"model": "mlp"' in cfg_json and '"epochs": 6' in cfg_json


def test_val_metrics_agree_with_a_manual_computation():
    model = nn.Linear(2, 3)
    val = _blobs(100, seed=2)
    trainer = Trainer(model, ClassificationTask(3), _blobs(), val, TrainConfig(epochs=1, eval_batch_size=7))
    metrics = trainer.evaluate()
    with torch.no_grad():
        logits = model(val.tensors[0])
    assert metrics["val_acc"] == pytest.approx((logits.argmax(1) == val.tensors[1]).float().mean().item())
    expected = nn.functional.cross_entropy(logits, val.tensors[1]).item()
    assert metrics["val_loss"] == pytest.approx(expected, rel=1e-5)


def test_non_finite_loss_stops_with_a_message():
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    trainer = Trainer(model, ClassificationTask(3), _blobs(), None, TrainConfig(epochs=1))
    with pytest.raises(FloatingPointError, match="loss became nan"):
        trainer.fit()


def test_config_validation():
    with pytest.raises(ValueError, match=r"epochs must be an int in \[1, 100_000\]; got 0"):
        TrainConfig(epochs=0)
    for field, value in [("lr", float("inf")), ("lr", 0.0), ("weight_decay", float("nan")), ("seed", -1)]:
        with pytest.raises(ValueError, match=f"^{field} must be"):
            TrainConfig(**{field: value})
    with pytest.raises(ValueError, match="milestones apply to the 'step' scheduler only"):
        TrainConfig(milestones=(3,))
    with pytest.raises(ValueError, match="device"):
        Trainer(nn.Linear(2, 3), ClassificationTask(3), _blobs(), None, TrainConfig(device="tpu"))
