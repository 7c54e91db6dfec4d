import numpy as np
import torch

from nnatlas.data import load_dataset, load_digits_split


def test_split_is_stratified_fixed_and_standardised():
    train, val = load_digits_split(seed=0)
    assert len(train) == 1437 and len(val) == 360  # 1,797 digits, 80/20
    xt, yt = train.tensors
    xv, yv = val.tensors
    assert xt.shape == (1437, 1, 8, 8) and xt.dtype == torch.float32 and yt.dtype == torch.int64
    assert abs(float(xt.mean())) < 1e-4 and abs(float(xt.std()) - 1) < 1e-3
    ft = np.bincount(yt.numpy(), minlength=10) / len(yt)
    fv = np.bincount(yv.numpy(), minlength=10) / len(yv)
    assert np.abs(ft - fv).max() < 0.01  # stratified: the same class proportions in both splits
    train2, val2 = load_digits_split(seed=0)
    assert torch.equal(val2.tensors[1], yv) and torch.equal(train2.tensors[0], xt)
    _, val3 = load_digits_split(seed=1)
    assert not torch.equal(val3.tensors[0], xv)


def test_bundle_metadata():
    b = load_dataset("digits")
    assert (b.num_classes, b.in_channels, b.image_size, b.task) == (10, 1, (8, 8), "classification")
