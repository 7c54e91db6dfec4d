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


def voc_palette() -> list[int]:
    """The VOC devkit's colour map (``VOClabelcolormap.m``), 256 RGB triples flattened, written out here
    independently of the library's implementation."""
    flat = []
    for k in range(256):
        r = g = b = 0
        for j in range(8):
            r, g, b = (
                r | ((k >> (3 * j)) & 1) << (7 - j),
                g | ((k >> (3 * j + 1)) & 1) << (7 - j),
                b | ((k >> (3 * j + 2)) & 1) << (7 - j),
            )
        flat += [r, g, b]
    return flat


def scene_mask(rng, size, num_classes: int, *, boundary: bool = True) -> np.ndarray:
    """``(H, W)`` uint8 class ids: background with 1-3 rectangles of random classes, outlined with 255 (the
    "void" boundary VOC draws around every object) when ``boundary``."""
    h, w = size[1], size[0]
    mask = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        y1, x1 = int(rng.integers(y0 + 3, h + 1)), int(rng.integers(x0 + 3, w + 1))
        mask[y0:y1, x0:x1] = int(rng.integers(1, num_classes))
        if boundary:
            mask[y0, x0:x1] = mask[y1 - 1, x0:x1] = mask[y0:y1, x0] = mask[y0:y1, x1 - 1] = 255
    return mask


def save_palette_mask(path: Path, mask: np.ndarray) -> None:
    """A palette PNG (mode P) whose indices are the class ids, coloured with VOC's colour map."""
    image = Image.fromarray(mask.astype(np.uint8))  # mode L; putpalette makes it P, indices unchanged
    image.putpalette(voc_palette())
    assert image.mode == "P"
    image.save(path)


def write_voc(root: Path, splits=None, seed: int = 0) -> Path:
    """``root/VOCdevkit/VOC2012`` as published: ``JPEGImages/<id>.jpg`` (RGB JPEG), ``SegmentationClass/
    <id>.png`` (palette PNGs, ids 0-20, 255 on boundaries) and ``ImageSets/Segmentation/{train,val}.txt``.

    ``splits``: ``{split: [(id, (W, H)), ...]}``; returns the VOC2012 folder.
    """
    splits = splits or {
        "train": [("2007_000032", (20, 14)), ("2007_000039", (16, 24)), ("2007_000063", (18, 18))],
        "val": [("2007_000033", (22, 16)), ("2007_000042", (14, 20))],
    }
    rng = np.random.default_rng(seed)
    base = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / d).mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        for stem, size in items:
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(base / "JPEGImages" / f"{stem}.jpg", quality=95)
            save_palette_mask(base / "SegmentationClass" / f"{stem}.png", scene_mask(rng, size, 21))
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{s}\n" for s, _ in items))
    return base


def write_segfolder(
    root: Path,
    *,
    num_classes: int = 4,
    per_split: int = 3,
    size=(20, 14),
    mode: str = "L",
    image_ext: str = ".png",
    seed: int = 0,
) -> Path:
    """``root/{train,val}/images/<i>.png|jpg`` (RGB) and ``root/{train,val}/masks/<i>.png``: single-channel
    (``mode="L"``) or palette (``mode="P"``) class-id PNGs with 255 on object boundaries."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(per_split):
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / "images" / f"img{i}{image_ext}")
            mask = scene_mask(rng, size, num_classes)
            path = root / split / "masks" / f"img{i}.png"
            if mode == "P":
                save_palette_mask(path, mask)
            else:
                Image.fromarray(mask).save(path)  # uint8 (H, W): mode L
    return root
