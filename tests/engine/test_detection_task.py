"""DetectionTask: torchvision's loss contract, and mAP equal to pycocotools' own COCOeval."""

import contextlib
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from nnatlas.engine import DetectionTask

pycocotools = pytest.importorskip("pycocotools")


def _fixture(seed=0, images=6, classes=3, size=64):
    """Ground truth and noisy, partly wrong predictions on a few images, as tensors."""
    g = torch.Generator().manual_seed(seed)
    gts, preds = [], []
    for _ in range(images):
        n = int(torch.randint(0, 5, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * (size - 20)
        wh = 4 + torch.rand(n, 2, generator=g) * 16
        boxes = (torch.cat([xy, xy + wh], dim=1) * 4).round() / 4
        labels = torch.randint(1, classes, (n,), generator=g)
        gts.append({"boxes": boxes, "labels": labels})
        m = n + int(torch.randint(0, 3, (1,), generator=g))  # every object found, plus false alarms
        extra_xy = torch.rand(m - n, 2, generator=g) * (size - 20)
        extra = torch.cat([extra_xy, extra_xy + 4 + torch.rand(m - n, 2, generator=g) * 16], dim=1)
        pb = torch.cat([boxes + torch.randn(n, 4, generator=g) * 1.5, extra])
        pb = torch.cat([torch.minimum(pb[:, :2], pb[:, 2:] - 1), pb[:, 2:]], dim=1)
        # Quarter-pixel coordinates: exact in float32 and float64, so both sides compute the same IoUs.
        pb = (pb * 4).round() / 4
        pl = torch.cat([labels, torch.randint(1, classes, (m - n,), generator=g)])
        flip = torch.rand(m, generator=g) < 0.2
        pl = torch.where(flip, torch.randint(1, classes, (m,), generator=g), pl)
        preds.append({"boxes": pb, "labels": pl, "scores": torch.rand(m, generator=g)})
    return gts, preds


def _cocoeval(gts, preds, classes):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for i, (gt, pr) in enumerate(zip(gts, preds, strict=True)):
        images.append({"id": i, "width": 64, "height": 64})
        for b, label in zip(gt["boxes"].tolist(), gt["labels"].tolist(), strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": label,
                                "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
        for b, label, s in zip(
            pr["boxes"].tolist(), pr["labels"].tolist(), pr["scores"].tolist(), strict=True
        ):
            results.append({"image_id": i, "category_id": label, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s})  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c} for c in range(1, classes)],
        }
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_map_equals_pycocotools_cocoeval():
    gts, preds = _fixture()
    task = DetectionTask(3)
    metrics = task.new_metrics()
    half = len(gts) // 2  # two validation batches
    for sl in (slice(0, half), slice(half, None)):
        metrics["map"].update([task._metric_input(p, prediction=True) for p in preds[sl]], gts[sl])
    ours = task.finalize(metrics.compute())
    stats = _cocoeval(gts, preds, 3)
    names = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100"]
    for name, value in zip(names, stats[:9], strict=True):
        if value == -1:
            assert math.isnan(ours[name]), name
        else:
            assert ours[name] == pytest.approx(value, abs=1e-6), name
    assert 0.1 < ours["map_50"] < 1.0  # a fixture that is neither trivial nor hopeless


class _Toy(nn.Module):
    """A 'detector' that predicts the targets it was given last, to test the task's plumbing."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.memory = None

    def forward(self, images, targets=None):
        if self.training:
            self.memory = targets
            return {"loss_a": self.w**2, "loss_b": 2 * self.w}
        return [
            {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
            for t in self.memory
        ]


def test_training_step_sums_the_losses_and_perfect_predictions_score_1():
    gts, _ = _fixture(images=4)
    gts = [g for g in gts if len(g["labels"])] or gts
    model, task = _Toy(), DetectionTask(3)
    loss, n = task.training_step(model, ([torch.zeros(3, 64, 64)] * len(gts), gts))
    assert n == len(gts) and float(loss.detach()) == pytest.approx(3.0)
    model.eval()
    metrics = task.new_metrics()
    task.validation_step(model, ([torch.zeros(3, 64, 64)] * len(gts), gts), metrics)
    out = task.finalize(metrics.compute())
    assert out["map"] == pytest.approx(1.0) and out["map_50"] == pytest.approx(1.0)


def test_images_without_objects_do_not_break_the_metric():
    task = DetectionTask(3)
    metrics = task.new_metrics()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    metrics["map"].update([task._metric_input({**empty, "scores": torch.zeros(0)}, prediction=True)], [empty])
    out = task.finalize(metrics.compute())
    assert all(math.isnan(v) or v == -1 or 0 <= v <= 1 for v in out.values()) and np.isfinite(len(out))
