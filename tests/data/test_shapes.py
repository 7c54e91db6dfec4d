import numpy as np
import pytest
import torch

from nnatlas.data import SHAPE_CLASSES, ShapesDataset, load_dataset, render_scene


def test_scenes_are_deterministic_per_seed_and_index():
    a, b = ShapesDataset(10, seed=3), ShapesDataset(10, seed=3)
    for i in range(10):
        xa, ya = a[i]
        xb, yb = b[i]
        assert torch.equal(xa, xb) and ya == yb
    assert not torch.equal(ShapesDataset(10, seed=4)[0][0], a[0][0])


def test_classification_samples():
    ds = ShapesDataset(200, size=24)
    labels = []
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        labels.append(y)
    counts = np.bincount(labels, minlength=len(SHAPE_CLASSES))
    assert counts.min() > 200 / len(SHAPE_CLASSES) / 2  # every class is drawn


def test_masks_boxes_and_labels_come_from_the_same_scene():
    rng = np.random.default_rng(0)
    for _ in range(30):
        s = render_scene(rng, size=48, num_objects=(1, 4))
        assert s.boxes.shape[0] == s.labels.shape[0] >= 1
        for j, (box, label) in enumerate(zip(s.boxes, s.labels, strict=True)):
            ys, xs = np.nonzero(s.instances == j + 1)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(box.astype(int))
            assert (s.mask[ys, xs] == label + 1).all()
        assert ((s.mask > 0) == (s.instances > 0)).all()


def test_segmentation_and_detection_forms():
    seg = ShapesDataset(4, size=32, task="segmentation")
    x, m = seg[0]
    assert m.shape == (32, 32) and m.dtype == torch.int64 and int(m.max()) <= len(SHAPE_CLASSES)
    det = ShapesDataset(4, size=32, task="detection")
    x, t = det[1]
    assert t["boxes"].shape[1] == 4 and (t["labels"] >= 1).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="task must be one of"):
        ShapesDataset(4, task="depth")
    with pytest.raises(ValueError, match="size must be >= 8"):
        render_scene(np.random.default_rng(0), size=4)
    with pytest.raises(ValueError, match="unknown data set 'shape'.*closest first\\): shapes"):
        load_dataset("shape")
