"""Tiny data sets written in their real on-disk formats, for the loaders' tests."""

from __future__ import annotations

import json
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


# ---------------------------------------------------------------------------- detection: VOC XML, COCO JSON


def voc_xml(stem: str, size, objects) -> str:
    """One VOC annotation as the devkit writes it: ``objects`` are ``(name, (xmin, ymin, xmax, ymax),
    difficult)`` with 1-based inclusive pixel corners; a ``person`` gets a ``head`` part (a nested
    ``<name>`` and ``<bndbox>`` that are not an object)."""
    w, h = size
    parts = []
    for name, box, difficult in objects:
        corners = "".join(
            f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)
        )
        part = (
            "<part><name>head</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></part>"
            if name == "person"
            else ""
        )
        parts.append(
            f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
            f"\t\t<difficult>{difficult}</difficult>\n\t\t<bndbox>{corners}</bndbox>{part}\n\t</object>\n"
        )
    return (
        f"<annotation>\n\t<folder>VOC2012</folder>\n\t<filename>{stem}.jpg</filename>\n"
        "\t<source>\n\t\t<database>The VOC2007 Database</database>\n\t\t<annotation>PASCAL VOC2007</annotation>\n"
        "\t\t<image>flickr</image>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        f"\t<segmented>0</segmented>\n{''.join(parts)}</annotation>\n"
    )


#: ``{split: [(id, (W, H), objects)]}``: boxes inside their images, one difficult object, an image without
#: objects.
VOC_DETECTION_SPLITS = {
    "train": [
        ("2007_000027", (24, 20), [("person", (3, 2, 12, 18), 0), ("dog", (10, 8, 24, 20), 0)]),
        ("2007_000032", (20, 16), [("aeroplane", (1, 1, 20, 16), 0)]),
        ("2007_000039", (18, 22), []),
    ],
    "val": [
        ("2007_000033", (22, 18), [("tvmonitor", (5, 4, 15, 14), 0), ("chair", (2, 9, 8, 18), 1)]),
        ("2007_000042", (16, 24), [("train", (2, 3, 16, 20), 0)]),
    ],
}


def write_voc_detection(root: Path, splits=None, seed: int = 0) -> Path:
    """``root/VOCdevkit/VOC2012`` as published for detection: ``JPEGImages/<id>.jpg`` (RGB JPEG),
    ``Annotations/<id>.xml`` and ``ImageSets/Main/{train,val}.txt``; returns the VOC2012 folder."""
    splits = splits or VOC_DETECTION_SPLITS
    rng = np.random.default_rng(seed)
    base = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / d).mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        for stem, size, objects in items:
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(base / "JPEGImages" / f"{stem}.jpg", quality=95)
            (base / "Annotations" / f"{stem}.xml").write_text(voc_xml(stem, size, objects))
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s, _, _ in items))
    return base


#: COCO categories with ids that are neither contiguous nor listed in order (as COCO's 1..90 with gaps).
COCO_CATEGORIES = [
    {"supercategory": "animal", "id": 18, "name": "dog"},
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "vehicle", "id": 3, "name": "car"},
]


def _polygon_box(polygon):
    xs, ys = polygon[0::2], polygon[1::2]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def coco_instances(split: str, *, degenerate: bool = True, masks: bool = True) -> dict:
    """A COCO instances file's contents: polygons (one object of two polygons), an uncompressed-RLE crowd
    region, an image without annotations; with ``degenerate``, a bbox of zero width and one partly outside
    its image (their segments inside). Integer and half-pixel coordinates (exact in float32)."""
    if split == "train":
        images = [
            (7, "000000000007.jpg", 32, 24),
            (3, "000000000003.jpg", 28, 20),
            (12, "000000000012.jpg", 20, 20),
        ]
        anns = [
            (101, 3, 1, [[2, 2, 12, 2, 12, 16, 2, 16]], 0),
            (102, 3, 18, [[14, 4, 26.5, 4, 20, 18]], 0),
            (103, 7, 3, [[1, 1, 8, 1, 8, 6, 1, 6], [10, 10, 20, 10, 20, 20, 10, 20]], 0),
            (104, 7, 1, "rle", 1),
        ]
        if degenerate:
            anns += [(105, 7, 18, [[24, 2, 24, 10, 30, 6]], 0), (106, 3, 3, [[20, 12, 27, 12, 27, 19]], 0)]
    else:
        images = [(42, "000000000042.jpg", 24, 30), (40, "000000000040.jpg", 30, 24)]
        anns = [
            (201, 40, 3, [[3, 3, 20, 3, 20, 12, 3, 12]], 0),
            (202, 40, 1, [[22, 2, 28, 2, 28, 20, 22, 20]], 0),
            (203, 42, 18, [[4, 6, 18, 6, 18, 26, 4, 26]], 0),
            (204, 42, 1, "rle", 1),
            (205, 42, 3, [[6, 8, 10, 8, 10, 12, 6, 12]], 0),
        ]
    sizes = {i: (w, h) for i, _, w, h in images}
    annotations = []
    for ann_id, image_id, cat, segment, crowd in anns:
        w, h = sizes[image_id]
        if segment == "rle":  # a 6x4 block at (2, 12), column-major run lengths as COCO stores crowds
            m = np.zeros((h, w), np.uint8)
            m[12:16, 2:8] = 1
            flat = m.flatten(order="F")
            counts, value, run = [], 0, 0
            for v in flat:
                if v != value:
                    counts.append(run)
                    value, run = v, 0
                run += 1
            counts.append(run)
            ann = {"segmentation": {"counts": counts, "size": [h, w]}, "bbox": [2, 12, 6, 4], "area": 24}
        else:
            boxes = [_polygon_box(p) for p in segment]
            x1 = min(b[0] for b in boxes)
            y1 = min(b[1] for b in boxes)
            x2 = max(b[0] + b[2] for b in boxes)
            y2 = max(b[1] + b[3] for b in boxes)
            ann = {
                "segmentation": segment,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float((x2 - x1) * (y2 - y1)) * 0.8,
            }
        if ann_id == 105:
            ann["bbox"][2] = 0  # zero width
        if ann_id == 106:
            ann["bbox"][2] = 12  # 20 + 12 > 28: partly outside the image
        if not masks:
            del ann["segmentation"]
        annotations.append({"id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": crowd, **ann})
    return {
        "info": {"description": "nnatlas test fixture", "version": "1.0", "year": 2017},
        "licenses": [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 1, "name": "CC BY 2.0"}],
        "images": [
            {
                "license": 1,
                "file_name": f,
                "height": h,
                "width": w,
                "id": i,
                "date_captured": "2013-11-14 17:02:52",
            }
            for i, f, w, h in images
        ],
        "annotations": annotations,
        "categories": [dict(c) for c in COCO_CATEGORIES],
    }


def write_coco(root: Path, *, degenerate: bool = True, masks: bool = True, seed: int = 0) -> Path:
    """``root/{train2017,val2017}/<file_name>`` (RGB JPEGs) and ``root/annotations/instances_{train,val}2017.json``
    as published (:func:`coco_instances`); returns ``root``."""
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        data = coco_instances(split, degenerate=degenerate, masks=masks)
        folder = root / f"{split}2017"
        folder.mkdir(exist_ok=True)
        for image in data["images"]:
            pixels = rng.integers(0, 256, size=(image["height"], image["width"], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / image["file_name"], quality=95)
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(data))
    return root
