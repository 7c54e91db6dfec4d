"""Object detection data: the embedded shapes scenes, Pascal VOC XML and COCO JSON, as torchvision's detection
models take them, and their conversion to a COCO ground truth for evaluation.

A sample is ``(image (3, H, W) float32 in [0, 1], target)`` with ``target`` holding ``boxes`` ``(N, 4)``
float32 xyxy in pixels, ``labels`` ``(N,)`` int64 in ``[1, K)`` (0 is the background), ``image_id`` int,
``area`` ``(N,)`` float32, ``iscrowd`` ``(N,)`` int64 and, where the data has instance masks, ``masks``
``(N, H, W)`` uint8 (see :class:`~nnatlas.data.DetectionBundle`). Images are not normalised: torchvision's
detectors (and ours) normalise inside. A batch is two lists (:func:`~nnatlas.data.detection_collate`).

Every sample goes through :class:`~nnatlas.data.DetectionTransform`: boxes are clipped to the
image, and boxes left less than one pixel wide or high (degenerate boxes, boxes outside the image) are
dropped with their labels and masks. An image without objects stays, with ``boxes`` of shape ``(0, 4)``.

``data_dir`` holds the files in their published layout:

- ``voc`` (Everingham et al. 2010): ``VOCdevkit/VOC2012/JPEGImages/<id>.jpg``,
  ``VOCdevkit/VOC2012/Annotations/<id>.xml`` and ``VOCdevkit/VOC2012/ImageSets/Main/{train,val}.txt``,
  listed by ``torchvision.datasets.VOCDetection`` and read with its XML parser. VOC's corners are 1-based
  pixel indices, both inclusive; a box ``(xmin, ymin, xmax, ymax)`` covers the pixel edges
  ``(xmin - 1, ymin - 1, xmax, ymax)``, which is what ``boxes`` holds (Detectron2's reading of VOC).
  Objects marked ``difficult`` are kept with ``iscrowd = 1``: a model trains on them (as Detectron2 does),
  an evaluation that honours ``iscrowd`` neither rewards nor penalises detecting them (as the VOC devkit
  ignores them). ``image_id`` is the index in the split.
- ``coco`` (Lin et al. 2014): ``{train2017,val2017}/<file_name>`` and
  ``annotations/instances_{train,val}2017.json``, read by ``torchvision.datasets.CocoDetection`` through
  ``torchvision.datasets.wrap_dataset_for_transforms_v2`` (pycocotools decodes polygon and RLE segments
  into instance masks). Category ids, sorted, become the contiguous labels ``1..K`` (COCO 2017's 80
  categories with ids 1 to 90: labels 1 to 80); the datasets' ``category_ids`` maps back (label ``k`` is
  category ``category_ids[k - 1]``). Crowd regions keep ``iscrowd = 1``. ``image_id`` is COCO's.

What is wrong raises :class:`~nnatlas.data.DataError` (a ``ValueError``) with one line naming the file,
when the data set is loaded (every annotation file is read then): a missing folder, list or file; XML that
does not parse, an object without a name, a class outside VOC's 20, a missing ``bndbox`` or a coordinate
that is not a number; JSON that does not parse or lacks ``images``, ``annotations`` or ``categories``,
an annotation pointing at an unknown image or category, a ``bbox`` that is not four numbers, a malformed
segment. An image that cannot be decoded when its sample is read follows ``on_bad_image`` (``error``: a
``DataError`` naming it; ``skip``: the next readable sample, with a warning logged once per file).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import CocoDetection, VisionDataset

from nnatlas._choices import ON_BAD_IMAGE
from nnatlas._suggest import unknown_choice_message
from nnatlas._validate import check_choice, check_int
from nnatlas.data.segmentation import VOC_CLASSES, _few, _missing, _voc_listing
from nnatlas.data.shapes import SHAPE_CLASSES, ShapesDataset
from nnatlas.data.torchvision_sets import IMAGENET_MEAN, DataError, _root
from nnatlas.data.transforms import DetectionTransform, detection_transform

logger = logging.getLogger(__name__)

#: The classes of the shapes scenes as detection labels: background, then ``SHAPE_CLASSES``.
SHAPES_DETECTION_CLASSES = ("background", *SHAPE_CLASSES)
#: The corners of a VOC ``bndbox``, in the order of ``boxes``.
VOC_CORNERS = ("xmin", "ymin", "xmax", "ymax")
#: COCO 2017's folders and annotation files under ``data_dir``, by split.
COCO_LAYOUT = {
    "train": ("train2017", "annotations/instances_train2017.json"),
    "val": ("val2017", "annotations/instances_val2017.json"),
}
#: Padding of uint8 images read from files: the ImageNet mean pixel.
MEAN_PIXEL = tuple(round(255 * m) for m in IMAGENET_MEAN)


def detection_collate(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """``[(image, target), ...] -> ([image, ...], [target, ...])``: detection images differ in size and
    targets in length, so a batch stays two lists (torchvision's detection references' ``collate_fn``)."""
    return [image for image, _ in batch], [target for _, target in batch]


# ---------------------------------------------------------------------------- embedded shapes


class ShapesDetection(Dataset):
    """``num_samples`` seeded scenes of :class:`~nnatlas.data.ShapesDataset` as detection samples.

    Scene ``i`` is ``ShapesDataset(num_samples, size=size, task="detection", seed=seed).scene(i)``: its
    visible objects' boxes, labels ``k + 1`` for ``SHAPE_CLASSES[k]``, instance masks (``masks[n]`` is 1
    where object ``n`` is visible), ``area`` the visible pixels of each object, ``image_id = i``.
    ``transform`` (default: none but the box checks) is a :class:`DetectionTransform`.
    """

    def __init__(
        self, num_samples: int, *, size: int = 64, seed: int = 0, transform: DetectionTransform | None = None
    ) -> None:
        self.scenes = ShapesDataset(num_samples, size=size, task="detection", seed=seed)
        self.transform = transform if transform is not None else DetectionTransform()
        self.classes = SHAPES_DETECTION_CLASSES

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        scene = self.scenes.scene(index)
        image = torch.from_numpy(np.ascontiguousarray(scene.image.transpose(2, 0, 1)))  # (3, S, S)
        n = len(scene.labels)
        masks = (scene.instances[None] == np.arange(1, n + 1)[:, None, None]).astype(np.uint8)  # (N, S, S)
        target = {
            "boxes": scene.boxes,
            "labels": scene.labels + 1,
            "image_id": int(index),
            "area": masks.sum(axis=(1, 2)).astype(np.float32),
            "iscrowd": np.zeros(n, dtype=np.int64),
            "masks": masks,
        }
        return self.transform(image, target)


# ---------------------------------------------------------------------------- images read from files


class DetectionFiles(Dataset):
    """Base of the detection sets read from files: an image per sample, decoded when it is read, with
    ``on_bad_image`` for images that cannot be (see the module docstring). Subclasses give ``__len__``,
    ``image_path(j)`` and ``_read(j)``, which returns ``(PIL RGB image, target)`` before the transform.

    ``name`` starts every error message; ``classes`` are the ``K`` names, background first.
    """

    def __init__(
        self, name: str, *, classes: Sequence[str], transform: DetectionTransform, on_bad_image: str = "error"
    ) -> None:
        self.name, self.classes, self.transform = name, tuple(classes), transform
        self.on_bad_image = check_choice("on_bad_image", on_bad_image, ON_BAD_IMAGE)
        self.bad: set[int] = set()  # indices found undecodable in this process

    def __len__(self) -> int:
        raise NotImplementedError

    def image_path(self, index: int) -> str:
        """The path of sample ``index``'s image file (named in error messages and warnings)."""
        raise NotImplementedError

    def _read(self, index: int) -> tuple[Image.Image, dict[str, Any]]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        for j in ((index + step) % n for step in range(n)):
            if j in self.bad:
                continue
            try:
                image, target = self._read(j)
            except DataError:
                raise
            except Exception as e:  # PIL: UnidentifiedImageError, OSError, DecompressionBombError, ...
                self._undecodable(j, e)
                continue
            return self.transform(image, target)
        raise DataError(f"{self.name}: no readable image among the {n} samples")

    def _undecodable(self, j: int, e: Exception) -> None:
        message = f"{self.name}: cannot read image {self.image_path(j)!r}: {type(e).__name__}: " + " ".join(
            str(e).split()
        )
        if self.on_bad_image == "error":
            raise DataError(message) from None
        if j not in self.bad:
            logger.warning("%s; using the next readable sample", message)
        self.bad.add(j)


# ---------------------------------------------------------------------------- Pascal VOC XML


def read_voc_annotation(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The objects of one VOC XML file: ``boxes`` ``(N, 4)`` float32 pixel edges (see the module
    docstring), ``labels`` ``(N,)`` int64 indices into ``VOC_CLASSES``, ``iscrowd`` ``(N,)`` int64 (1 for
    ``difficult``). Parsed by ``torchvision.datasets.VOCDetection.parse_voc_xml``; anything malformed raises
    :class:`DataError` naming ``path``."""
    from torchvision.datasets import VOCDetection
    from torchvision.datasets.voc import ET_parse  # defusedxml where installed, as torchvision reads VOC

    where = f"voc: annotation {str(path)!r}"
    try:
        root = ET_parse(path).getroot()
    except Exception as e:  # xml.etree.ElementTree.ParseError, defusedxml's errors, OSError
        raise DataError(f"voc: cannot parse annotation {str(path)!r}: {type(e).__name__}: {e}") from None
    if root.tag != "annotation":
        raise DataError(f"{where}: the root element is <{root.tag}>; expected <annotation>")
    annotation = VOCDetection.parse_voc_xml(root)["annotation"]
    objects = annotation.get("object", []) if isinstance(annotation, dict) else []
    boxes, labels, difficult = [], [], []
    for k, obj in enumerate(objects, start=1):
        name = obj.get("name") if isinstance(obj, dict) else None
        if not isinstance(name, str) or not name:
            raise DataError(f"{where}: object {k} has no <name>")
        if name not in VOC_CLASSES[1:]:
            raise DataError(f"{where}: object {k}: " + unknown_choice_message("class", name, VOC_CLASSES[1:]))
        what = f"{where}: object {k} ({name!r})"
        box = obj.get("bndbox")
        if isinstance(box, list):
            raise DataError(f"{what} has {len(box)} <bndbox> elements; expected one")
        if not isinstance(box, dict):
            raise DataError(f"{what} has no <bndbox>")
        corners = []
        for key in VOC_CORNERS:
            text = box.get(key)
            if not isinstance(text, str):
                raise DataError(f"{what}: <bndbox> lacks <{key}>")
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DataError(f"{what}: <{key}> is {text!r}; expected a number")
            corners.append(value)
        x1, y1, x2, y2 = corners
        boxes.append([x1 - 1.0, y1 - 1.0, x2, y2])  # 1-based inclusive pixel indices -> pixel edges
        labels.append(VOC_CLASSES.index(name))
        difficult.append(1 if str(obj.get("difficult", "0")).strip() == "1" else 0)
    return {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, dtype=np.int64),
        "iscrowd": np.asarray(difficult, dtype=np.int64),
    }


class VOCDetectionFiles(DetectionFiles):
    """The images listed by ``torchvision.datasets.VOCDetection`` with their XML annotations, every one
    read and checked when built (:func:`read_voc_annotation`)."""

    def __init__(
        self,
        images: Sequence[str | os.PathLike],
        annotations: Sequence[str | os.PathLike],
        *,
        transform: DetectionTransform,
        on_bad_image: str = "error",
    ) -> None:
        super().__init__("voc", classes=VOC_CLASSES, transform=transform, on_bad_image=on_bad_image)
        self.images = [str(p) for p in images]
        self.targets = [read_voc_annotation(p) for p in annotations]

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, index: int) -> str:
        """The path of sample ``index``'s JPEG, ``VOCdevkit/VOC2012/JPEGImages/<id>.jpg``."""
        return self.images[index]

    def _read(self, index: int) -> tuple[Image.Image, dict[str, Any]]:
        with Image.open(self.images[index]) as im:
            image = im.convert("RGB")  # decodes every pixel
        return image, {**self.targets[index], "image_id": index}


def voc_detection_split(
    data_dir: Any,
    *,
    download: bool = False,
    augment: str = "none",
    image_size: int = 512,
    on_bad_image: str = "error",
) -> tuple[VOCDetectionFiles, VOCDetectionFiles]:
    """``(train, val)`` of Pascal VOC 2012 detection (5,717 / 5,823 images, 20 classes and the background),
    listed by ``torchvision.datasets.VOCDetection`` (``ImageSets/Main/{train,val}.txt``).

    Training images follow ``augment`` (:func:`~nnatlas.data.detection_augmentation`, padded
    with the ImageNet mean pixel); validation images are scaled down only where a side exceeds
    ``image_size`` and never padded, so at the default 512 every VOC image (at most 500 x 500) keeps its
    resolution.
    """
    from torchvision.datasets import VOCDetection

    root = _root(data_dir, "voc", download)
    check_int("image_size", image_size, minimum=8)
    check_choice("on_bad_image", on_bad_image, ON_BAD_IMAGE)
    base = root / "VOCdevkit" / "VOC2012"
    splits = []
    for split in ("train", "val"):
        fetch = download and split == "train" and not base.is_dir()  # torchvision would extract 2 GB again
        try:
            listing = _voc_listing(VOCDetection, root, split, fetch)
        except RuntimeError:  # torchvision: "Dataset not found or corrupted"
            raise DataError(
                f"voc: no VOCdevkit/VOC2012 folder in {str(root)!r}; pass download=True (--download)"
            ) from None
        except OSError as e:
            raise DataError(
                f"voc: cannot read the list of {split} images {e.filename!r} ({e.strerror})"
            ) from None
        listed = base / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.images:
            raise DataError(f"voc: {str(listed)!r} lists no image")
        no_image, no_xml = _missing(listing.images), _missing(listing.annotations)
        if no_image or no_xml:
            parts = [f"{len(no_image)} without an image in JPEGImages ({_few(no_image)})"] if no_image else []
            parts += (
                [f"{len(no_xml)} without an annotation in Annotations ({_few(no_xml)})"] if no_xml else []
            )
            raise DataError(f"voc: of the {len(listing.images)} ids in {str(listed)!r}, {'; '.join(parts)}")
        transform = detection_transform(
            augment if split == "train" else "none", image_size=image_size, fill=MEAN_PIXEL
        )
        splits.append(
            VOCDetectionFiles(
                listing.images, listing.annotations, transform=transform, on_bad_image=on_bad_image
            )
        )
    return splits[0], splits[1]


# ---------------------------------------------------------------------------- COCO JSON


#: The types ``json`` reads numbers as (``bool`` is not one of them).
_JSON_NUMBERS = (int, float)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_segment(segment: Any, fail: Any) -> bool:
    """Whether ``segment`` (an annotation's ``segmentation``) holds a mask: polygons, or RLE; ``fail``
    raises for a malformed one."""
    if isinstance(segment, list):
        for polygon in segment:  # COCO train2017 holds ~10^7 coordinates: types checked, then one sum
            if (
                not isinstance(polygon, list)
                or not all(type(v) in _JSON_NUMBERS for v in polygon)
                or not math.isfinite(sum(polygon))
            ):
                fail("has a polygon that is not a list of finite numbers")
            if len(polygon) < 6 or len(polygon) % 2:
                fail(f"has a polygon of {len(polygon)} numbers; expected x, y pairs of 3 points or more")
        return bool(segment)
    if isinstance(segment, dict):
        size, counts = segment.get("size"), segment.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(_is_id(v) and v > 0 for v in size)):
            fail("has an RLE segmentation without a size [height, width]")
        if not (isinstance(counts, str) or (isinstance(counts, list) and all(_is_id(v) for v in counts))):
            fail("has an RLE segmentation whose counts are neither a string nor a list of ints")
        return True
    fail(f"has a segmentation of type {type(segment).__name__}; expected polygons (a list) or RLE (a dict)")
    return False


def read_coco_annotations(path: str | os.PathLike) -> tuple[dict[str, Any], bool]:
    """The checked contents of a COCO instances file and whether every annotation has a segment (mask).

    Checked (a :class:`DataError` naming ``path`` otherwise): the JSON parses; it is an object with lists
    ``images`` (each with an int ``id``, unique, and a ``file_name``), ``categories`` (an int ``id``,
    unique, and a ``name``) and ``annotations`` (an int ``id``, unique; an ``image_id`` and a
    ``category_id`` that exist; a ``bbox`` of four finite numbers ``[x, y, width, height]``; polygons or
    RLE in ``segmentation`` where given). A missing ``iscrowd`` becomes 0, a missing ``area`` the bbox's.
    """
    where = f"coco: {str(path)!r}"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"coco: no annotation file {str(path)!r}") from None
    except (ValueError, OSError) as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"coco: cannot parse {str(path)!r}: {type(e).__name__}: {e}") from None
    if not isinstance(data, dict):
        raise DataError(
            f"{where} holds a JSON {type(data).__name__}; expected an object with images, annotations and "
            "categories"
        )
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DataError(
                f"{where} lacks {key!r}; a COCO instances file has images, annotations, categories"
            )
        if not isinstance(data[key], list):
            raise DataError(f"{where}: {key!r} is a {type(data[key]).__name__}; expected a list")
    images = _unique_ids(where, data["images"], "image", ("file_name",))
    categories = _unique_ids(where, data["categories"], "category", ("name",))
    seen: set[int] = set()
    has_masks = bool(data["annotations"])
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DataError(f"{where}: annotations[{i}] is a {type(ann).__name__}; expected an object")
        ann_id = ann.get("id")
        what = f"{where}: annotation {ann_id}" if _is_id(ann_id) else f"{where}: annotations[{i}]"
        if not _is_id(ann_id):
            raise DataError(f"{what} has no int 'id'")
        if ann_id in seen:
            raise DataError(f"{what}: the id is used twice")
        seen.add(ann_id)
        if not _is_id(ann.get("image_id")) or ann["image_id"] not in images:
            raise DataError(f"{what} refers to the unknown image id {ann.get('image_id')!r}")
        if not _is_id(ann.get("category_id")) or ann["category_id"] not in categories:
            raise DataError(f"{what} refers to the unknown category id {ann.get('category_id')!r}")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            shown = json.dumps(bbox) if len(json.dumps(bbox)) <= 80 else json.dumps(bbox)[:76] + " ..."
            raise DataError(f"{what} has the bbox {shown}; expected four numbers [x, y, width, height]")

        def fail(message: str, what: str = what) -> None:
            raise DataError(f"{what} {message}")

        if "segmentation" in ann:
            has_masks &= _check_segment(ann["segmentation"], fail)
            image = images[ann["image_id"]]
            size = [image.get("height"), image.get("width")]
            if isinstance(ann["segmentation"], dict) and all(_is_id(v) for v in size):
                if ann["segmentation"]["size"] != size:
                    fail(
                        f"has an RLE segmentation of size {ann['segmentation']['size']}; its image is {size}"
                    )
        else:
            has_masks = False
        ann.setdefault("iscrowd", 0)
        if ann["iscrowd"] not in (0, 1):
            raise DataError(f"{what} has iscrowd {ann['iscrowd']!r}; expected 0 or 1")
        ann.setdefault("area", float(bbox[2] * bbox[3]))
        if not _is_number(ann["area"]):
            raise DataError(f"{what} has the area {ann['area']!r}; expected a number")
    return data, has_masks


def _unique_ids(where: str, entries: list, kind: str, keys: tuple[str, ...]) -> dict[int, dict]:
    """``id -> entry`` of ``entries``, each an object with a unique int ``id`` and the strings ``keys``."""
    ids: dict[int, dict] = {}
    plural = "categories" if kind == "category" else f"{kind}s"
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not _is_id(entry.get("id")):
            raise DataError(f"{where}: {plural}[{i}] has no int 'id'")
        for key in keys:
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise DataError(f"{where}: {kind} {entry['id']} has no {key!r}")
        if entry["id"] in ids:
            raise DataError(f"{where}: the {kind} id {entry['id']} is used twice")
        ids[entry["id"]] = entry
    return ids


def _coco_api(data: dict[str, Any]) -> Any:
    """A ``pycocotools.coco.COCO`` over ``data`` already read, its progress lines kept off stdout."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class _IndexedCocoDetection(CocoDetection):
    """``torchvision.datasets.CocoDetection`` of ``root`` over a ``COCO`` index built already (its own
    constructor would read and parse the file again)."""

    def __init__(self, root: str | os.PathLike, coco: Any) -> None:
        VisionDataset.__init__(self, str(root))
        self.coco = coco
        self.ids = sorted(coco.imgs.keys())


class CocoDetectionFiles(DetectionFiles):
    """A COCO split read by ``torchvision.datasets.CocoDetection`` wrapped for transforms v2
    (``wrap_dataset_for_transforms_v2``: boxes as xyxy ``BoundingBoxes``, segments decoded into a
    ``Mask``), with category ids mapped to labels ``1..K`` and images in the order of their ids.

    **Arguments**

    - ``root``: the image folder; ``data``: the checked contents of the annotation file
      (:func:`read_coco_annotations`);
    - ``category_ids``: the sorted category ids: label ``k`` is ``category_ids[k - 1]``;
    - ``masks``: decode the segments into ``masks``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        data: dict[str, Any],
        *,
        classes: Sequence[str],
        category_ids: Sequence[int],
        masks: bool,
        transform: DetectionTransform,
        on_bad_image: str = "error",
    ) -> None:
        from torchvision.datasets import wrap_dataset_for_transforms_v2

        super().__init__("coco", classes=classes, transform=transform, on_bad_image=on_bad_image)
        self.root, self.category_ids, self.has_masks = Path(root), tuple(category_ids), masks
        self.label_of = {c: k for k, c in enumerate(self.category_ids, start=1)}
        keys = {"image_id", "boxes", "labels", "iscrowd", "area"} | ({"masks"} if masks else set())
        self.dataset = wrap_dataset_for_transforms_v2(_IndexedCocoDetection(self.root, _coco_api(data)), keys)

    def __len__(self) -> int:
        return len(self.dataset)

    def image_path(self, index: int) -> str:
        """The path of sample ``index``'s image, ``<split folder>/<file_name>`` as the JSON names it."""
        return str(self.root / self.dataset.coco.imgs[self.dataset.ids[index]]["file_name"])

    def _read(self, index: int) -> tuple[Image.Image, dict[str, Any]]:
        image, wrapped = self.dataset[index]
        target: dict[str, Any] = {"image_id": int(wrapped["image_id"])}
        if "boxes" not in wrapped:  # the wrapper gives an image without annotations its id only
            h, w = image.height, image.width
            target.update(boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64))
            if self.has_masks:
                target["masks"] = np.zeros((0, h, w), np.uint8)
            return image, target
        target["boxes"] = wrapped["boxes"].as_subclass(torch.Tensor)
        target["labels"] = [self.label_of[int(c)] for c in wrapped["labels"]]
        target["iscrowd"] = wrapped["iscrowd"]
        target["area"] = wrapped["area"]
        if self.has_masks:
            masks = wrapped["masks"].as_subclass(torch.Tensor)
            if masks.shape[-2:] != (image.height, image.width):
                raise DataError(
                    f"coco: the segments of image {self.image_path(index)!r} are "
                    f"{masks.shape[-1]}x{masks.shape[-2]} but the image is {image.width}x{image.height} "
                    "(width x height)"
                )
            target["masks"] = masks
        return image, target


def coco_split(
    data_dir: Any,
    *,
    augment: str = "none",
    image_size: int = 640,
    on_bad_image: str = "error",
) -> tuple[CocoDetectionFiles, CocoDetectionFiles]:
    """``(train, val)`` of COCO 2017 instances (118,287 / 5,000 images, 80 categories), in the layout of
    the module docstring, both files checked (:func:`read_coco_annotations`) and their images looked for.

    The two files must declare the same categories. Masks are decoded when every annotation of both files
    has a segment (``train.has_masks``). Transforms as :func:`voc_detection_split`: at the default 640
    no COCO image (at most 640 x 640) is scaled.
    """
    root = _root(data_dir, "coco", download=False)
    check_int("image_size", image_size, minimum=8)
    check_choice("on_bad_image", on_bad_image, ON_BAD_IMAGE)
    read = {}
    for split, (folder, file) in COCO_LAYOUT.items():
        path = root / file
        if not path.is_file():
            raise DataError(
                f"coco: no annotation file {str(path)!r} (expected under data_dir: "
                f"{', '.join(f'{folder}/, {file}' for folder, file in COCO_LAYOUT.values())})"
            )
        data, masks = read_coco_annotations(path)
        images = root / folder
        if not images.is_dir():
            raise DataError(f"coco: no image folder {str(images)!r} for {str(path)!r}")
        absent = sorted(
            {im["file_name"] for im in data["images"] if not (images / im["file_name"]).is_file()}
        )
        if absent:
            raise DataError(
                f"coco: of the {len(data['images'])} images in {str(path)!r}, {len(absent)} are not in "
                f"{str(images)!r} ({_few(absent)})"
            )
        read[split] = (images, path, data, masks)
    (train_images, train_path, train, train_masks), (val_images, val_path, val, val_masks) = read.values()
    categories = sorted((c["id"], c["name"]) for c in train["categories"])
    if sorted((c["id"], c["name"]) for c in val["categories"]) != categories:
        raise DataError(
            f"coco: the categories of {str(val_path)!r} differ from those of {str(train_path)!r} "
            "(ids and names must match)"
        )
    if not categories:
        raise DataError(f"coco: {str(train_path)!r} declares no category")
    classes = ("background", *(name for _, name in categories))
    category_ids = [c for c, _ in categories]
    masks = train_masks and val_masks
    splits = []
    for split, images, data in (("train", train_images, train), ("val", val_images, val)):
        transform = detection_transform(
            augment if split == "train" else "none", image_size=image_size, fill=MEAN_PIXEL
        )
        splits.append(
            CocoDetectionFiles(
                images,
                data,
                classes=classes,
                category_ids=category_ids,
                masks=masks,
                transform=transform,
                on_bad_image=on_bad_image,
            )
        )
    return splits[0], splits[1]


# ---------------------------------------------------------------------------- COCO ground truth


def to_coco(dataset: Dataset, *, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """A COCO ground-truth dict (``images``, ``annotations``, ``categories``) of every sample of
    ``dataset`` as it comes out (transforms included: pass a validation split), for
    ``pycocotools.coco.COCO`` and ``COCOeval``.

    - ``images``: ``{"id": target["image_id"], "width": W, "height": H, "file_name"}`` (``image_id``
      defaults to the index);
    - ``annotations``: one per object, ids from 1 (``COCOeval`` counts id 0 as unmatched), ``bbox``
      ``[x1, y1, x2 - x1, y2 - y1]``, ``area`` and ``iscrowd`` from the target, and ``segmentation`` as
      compressed RLE (``pycocotools.mask.encode``) where the target has ``masks``;
    - ``categories``: ``{"id": k, "name": classes[k]}`` for ``k`` in ``1..K-1``: category ids are the
      labels, so predictions' labels serve as their ``category_id``.

    ``classes``: the ``K`` names, background first (default ``dataset.classes``; without either, the
    labels found, named by their number).
    """
    from pycocotools import mask as mask_utils

    images, annotations, found = [], [], set()
    for i in range(len(dataset)):  # type: ignore[arg-type]
        image, target = dataset[i]
        h, w = image.shape[-2:]
        image_id = int(target.get("image_id", i))
        images.append({"id": image_id, "width": int(w), "height": int(h), "file_name": f"{image_id}"})
        boxes = target["boxes"].tolist()
        n = len(boxes)
        labels = target["labels"].tolist()
        areas = (
            target["area"].tolist() if "area" in target else [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
        )
        crowd = target["iscrowd"].tolist() if "iscrowd" in target else [0] * n
        masks = target.get("masks")
        for j, (x1, y1, x2, y2) in enumerate(boxes):
            ann = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(labels[j]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(areas[j]),
                "iscrowd": int(crowd[j]),
            }
            if masks is not None:
                rle = mask_utils.encode(np.asfortranarray(masks[j].numpy().astype(np.uint8)))
                ann["segmentation"] = {"size": [int(h), int(w)], "counts": rle["counts"].decode("ascii")}
            annotations.append(ann)
            found.add(int(labels[j]))
    names = tuple(classes) if classes is not None else getattr(dataset, "classes", None)
    if names is None:
        names = tuple(str(k) for k in range(max(found, default=0) + 1))
    categories = [{"id": k, "name": str(names[k])} for k in range(1, len(names))]
    return {"images": images, "annotations": annotations, "categories": categories}
