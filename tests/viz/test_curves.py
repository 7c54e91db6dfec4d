import pytest

from nnatlas.viz import plot_curves


def test_curves_png(tmp_path):
    records = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_acc": 1 - 1 / (e + 1)} for e in (1, 2, 3)
    ]
    plot_curves(records, tmp_path / "c.png", title="t")
    data = (tmp_path / "c.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_no_records():
    with pytest.raises(ValueError, match="no records"):
        plot_curves([], "x.png")
