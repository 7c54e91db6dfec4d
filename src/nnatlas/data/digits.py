"""scikit-learn's 1,797 real 8x8 handwritten digits (UCI optical recognition data), offline.

A fixed, stratified 80/20 split (1,437 train / 360 validation) with a seed; pixels (0..16) are scaled to
[0, 1] and standardised with the training split's mean and standard deviation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

#: The ten class names of the digits, ``"0"`` to ``"9"``: label ``k`` is the digit ``k``.
DIGITS_CLASSES = tuple(str(i) for i in range(10))


def load_digits_split(*, seed: int = 0, val_fraction: float = 0.2) -> tuple[TensorDataset, TensorDataset]:
    """Return ``(train, val)`` datasets of ``((1, 8, 8) float32 image, int64 label)`` pairs.

    >>> train, val = load_digits_split()
    >>> len(train), len(val)
    (1437, 360)
    >>> image, label = train[0]
    >>> image.shape, image.dtype, label.dtype
    (torch.Size([1, 8, 8]), torch.float32, torch.int64)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")
    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0  # (N, 8, 8)
    labels = bunch.target.astype(np.int64)
    idx = np.arange(len(labels))
    tr, va = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=labels)
    mean, std = images[tr].mean(), images[tr].std()
    x = torch.from_numpy((images - mean) / std).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(labels)
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[va], y[va])
