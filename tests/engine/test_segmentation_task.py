import math

import pytest
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn
from torch.utils.data import TensorDataset

from nnatlas.engine import SegmentationMetrics, SegmentationTask, TrainConfig, Trainer, dice_loss


def _batch(seed=0, b=3, k=4, h=9, w=7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, h, w, generator=g)
    target = torch.randint(0, k, (b, h, w), generator=g)
    target[:, 0, :] = 255  # a band of ignored pixels
    return logits, target


def test_metrics_equal_torchmetrics_on_the_labelled_pixels():
    k = 4
    ours = SegmentationMetrics(k)
    jaccard = torchmetrics.classification.MulticlassJaccardIndex(k, average="none", ignore_index=255)
    accuracy = torchmetrics.classification.MulticlassAccuracy(k, average="micro", ignore_index=255)
    for seed in range(3):
        logits, target = _batch(seed)
        ours.update(logits, target)
        jaccard.update(logits, target)
        accuracy.update(logits, target)
    got = ours.compute()
    torch.testing.assert_close(got["iou"], jaccard.compute())
    assert float(got["pixel_acc"]) == pytest.approx(float(accuracy.compute()))
    assert float(got["miou"]) == pytest.approx(float(jaccard.compute().mean()))


def test_miou_averages_only_the_classes_that_occur():
    m = SegmentationMetrics(3)
    target = torch.tensor([[[0, 0, 1, 1]]])
    preds = torch.tensor([[[0, 1, 1, 1]]])  # class 2 absent from both: its IoU is undefined, not 0
    m.update(preds, target)
    got = m.compute()
    assert got["iou"][:2].tolist() == pytest.approx([1 / 2, 2 / 3]) and math.isnan(got["iou"][2])
    assert float(got["miou"]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\) or be 255"):
        m.update(preds, torch.tensor([[[0, 7, 1, 1]]]))


def test_loss_ignores_255_and_adds_the_auxiliary_head():
    logits, target = _batch()
    aux = torch.randn_like(logits)
    keep = target != 255
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], target[keep])

    class Fixed(nn.Module):
        def __init__(self, out):
            super().__init__()
            self.out = out

        def forward(self, x):
            return self.out

    task = SegmentationTask(4)
    loss, n = task.training_step(Fixed({"out": logits}), (None, target))
    assert n == 3 and float(loss) == pytest.approx(float(expected), rel=1e-6)
    loss, _ = task.training_step(Fixed({"out": logits, "aux": aux}), (None, target))
    aux_expected = F.cross_entropy(aux.permute(0, 2, 3, 1)[keep], target[keep])
    assert float(loss) == pytest.approx(float(expected + 0.5 * aux_expected), rel=1e-6)


def test_dice_loss_limits():
    target = torch.randint(0, 3, (2, 8, 8))
    perfect = 50.0 * F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    assert float(dice_loss(perfect, target, eps=1e-6)) == pytest.approx(0.0, abs=1e-5)
    wrong = 50.0 * F.one_hot((target + 1) % 3, 3).permute(0, 3, 1, 2).float()
    assert float(dice_loss(wrong, target, eps=1e-6)) == pytest.approx(1.0, abs=1e-5)
    ignored = target.clone()
    ignored[:, :4] = 255  # ignored pixels change nothing where the prediction is perfect
    assert float(dice_loss(perfect, ignored, eps=1e-6)) == pytest.approx(0.0, abs=1e-5)


def test_trainer_learns_a_per_pixel_rule_and_names_the_columns(tmp_path):
    # Class of a pixel = the channel with the largest value: a 1x1 convolution can learn it exactly.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 8, 8, generator=g)
    y = x.argmax(dim=1)
    y[:, :, 0] = 255
    data = TensorDataset(x, y)
    model = nn.Conv2d(3, 3, 1)
    task = SegmentationTask(3, class_names=("r", "g", "b"))
    history = Trainer(
        model, task, data, data, TrainConfig(epochs=30, batch_size=16, lr=0.05, warmup_epochs=0)
    ).fit()
    last = history[-1]
    assert {"val_loss", "val_pixel_acc", "val_miou", "val_iou_r", "val_iou_g", "val_iou_b"} <= set(last)
    assert last["val_miou"] > 0.9 and last["val_pixel_acc"] > 0.95
    assert last["val_miou"] == pytest.approx((last["val_iou_r"] + last["val_iou_g"] + last["val_iou_b"]) / 3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="ignore_index must not be a class id"):
        SegmentationTask(4, ignore_index=2)
    with pytest.raises(ValueError, match="class_names must name the 4 classes"):
        SegmentationTask(4, class_names=("a",))
