"""Tiny data sets written in their real on-disk formats, for the loaders' tests."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def write_idx(path: Path, array: np.ndarray) -> None:
    """LeCun's IDX format: magic (0, 0, type 0x08 = ubyte, ndim), big-endian int32 dims, raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 20, n_test: int = 10, seed: int = 0):
    """``root/folder/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[prefix] = (images, labels)
    return out


def write_cifar10(root: Path, per_batch: int = 4, seed: int = 0):
    """``root/cifar-10-batches-py`` with the five training batches, the test batch and the meta file, as
    the published Python pickles (dicts with ``data`` (N, 3072) uint8 and ``labels``)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        entry = {
            "batch_label": name,
            "data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, size=per_batch).tolist(),
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {"label_names": classes, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_image_folder(root: Path, classes=("cat", "dog"), per_class: int = 3, size=(20, 14), seed: int = 0):
    """``root/{train,val}/<class>/<i>.png`` RGB images of ``size`` (W, H)."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"{i}.png")
    return root


def write_cifar_batch(path: Path, data, labels, *, label_key: str = "labels", **extra) -> None:
    """One CIFAR batch: a pickled dict with ``data`` and the labels under ``label_key``."""
    entry = {"batch_label": path.name, "data": data, label_key: labels, **extra}
    path.write_bytes(pickle.dumps(entry, protocol=2))


def write_cifar100(root: Path, per_split: int = 6, seed: int = 0):
    """``root/cifar-100-python/{train,test,meta}`` as published: ``fine_labels`` (100 classes),
    ``coarse_labels`` (20 superclasses), and their names in ``meta``."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name in ("train", "test"):
        write_cifar_batch(
            folder / name,
            rng.integers(0, 256, size=(per_split, 3072), dtype=np.uint8),
            rng.integers(0, 100, size=per_split).tolist(),
            label_key="fine_labels",
            coarse_labels=rng.integers(0, 20, size=per_split).tolist(),
        )
    meta = {
        "fine_label_names": [f"fine{i}" for i in range(100)],
        "coarse_label_names": [f"coarse{i}" for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder
