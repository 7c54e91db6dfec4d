import csv

import pytest

from nnatlas.engine import MetricsLogger, read_jsonl, tensorboard_available


def test_jsonl_and_csv_hold_the_same_rows(tmp_path):
    logger = MetricsLogger(tmp_path)
    history = []
    for epoch, extra in ((1, {}), (2, {"val_ema_acc": 0.5})):
        record = {"epoch": epoch, "train_loss": 1.0 / epoch, **extra}
        history.append(record)
        logger.log_epoch(record, history)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [float(r["train_loss"]) for r in rows] == [
        r["train_loss"] for r in read_jsonl(tmp_path / "metrics.jsonl")
    ]
    assert rows[0]["val_ema_acc"] == "" and rows[1]["val_ema_acc"] == "0.5"
    # A resumed run drops the rows written after its checkpoint.
    assert logger.restore(before_epoch=2) == [history[0]]
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 1


def test_tensorboard_is_optional(tmp_path):
    if not tensorboard_available():
        with pytest.raises(ValueError, match="pip install tensorboard"):
            MetricsLogger(tmp_path, tensorboard=True)
        return
    logger = MetricsLogger(tmp_path, tensorboard=True)
    logger.log_step(1, {"loss": 1.0})
    logger.log_epoch({"epoch": 1, "train_loss": 1.0}, [{"epoch": 1, "train_loss": 1.0}])
    logger.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
