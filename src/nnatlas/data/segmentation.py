"""Semantic segmentation data from files: Pascal VOC 2012 through torchvision, and a plain folder of images
with PNG masks; the colour map and the checks that run before training.

``data_dir`` holds the files in their published layout:

- ``voc`` (Everingham et al. 2010): ``VOCdevkit/VOC2012/JPEGImages/<id>.jpg``,
  ``VOCdevkit/VOC2012/SegmentationClass/<id>.png`` and ``VOCdevkit/VOC2012/ImageSets/Segmentation/
  {train,val}.txt`` (the ids of each split, one a line);
- ``segfolder``: ``{train,val}/images/<stem>.{png,jpg,...}`` and ``{train,val}/masks/<stem>.png``
  (``valid``, ``validation`` or ``test`` also accepted for ``val``).

A mask holds one class id per pixel, ``255`` where a pixel has no label: a palette PNG (mode ``P``, the
palette index is the class, as VOC's ``SegmentationClass``) or a single-channel PNG (mode ``L``: the grey
value is the class; 16-bit and binary PNGs too). Colour-coded RGB masks are refused: their colours would
have to be mapped to classes first.

What is wrong raises :class:`~nnatlas.data.DataError` (a ``ValueError``) with one line naming the file:

- when the data set is loaded, from the folder listings and the image headers (no pixel is decoded): a
  missing folder or split list; images without a mask or masks without an image (the first stems named);
  a mask whose size differs from its image; a mask that is not single-channel; a file whose header cannot
  be read (``on_bad_image``);
- when a sample is read: a class id ``>= num_classes`` other than ``255`` (the file and the ids named;
  checked then because it needs every mask decoded, which the training reads anyway), and an image or
  mask that cannot be decoded (a truncated file: ``on_bad_image``).

``on_bad_image="skip"`` drops a sample whose header is unreadable when loading, and replaces one that
cannot be decoded by the next readable sample of its split (wrapping around, the same in every epoch),
with a warning logged once per file. A wrong size or class id is a labelling error, not an unreadable file:
it always raises.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from nnatlas._choices import ON_BAD_IMAGE
from nnatlas._validate import check_choice, check_int
from nnatlas.data.torchvision_sets import IMAGENET_MEAN, IMAGENET_STD, VAL_FOLDERS, DataError, _root
from nnatlas.data.transforms import IGNORE_INDEX, SegmentationTransform, segmentation_transform

logger = logging.getLogger(__name__)

#: The 20 Pascal VOC object classes after the background, in the order of the class ids.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
#: PIL modes of the masks read as class ids.
MASK_MODES = ("P", "L", "1", "I", "I;16")
MASK_EXTENSION = ".png"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: How many stems a mismatch message names.
SHOWN = 5


def voc_colormap(n: int = 256) -> tuple[tuple[int, int, int], ...]:
    """The Pascal VOC colour map (``VOClabelcolormap.m`` of the VOC devkit): the bits of class ``k``, three
    at a time, fill red, green and blue from their most significant bit down. ``(0, 0, 0)`` is the
    background, ``(128, 0, 0)`` class 1 and ``(224, 224, 192)`` the ignore index 255."""
    check_int("n", n, maximum=256)
    colours = []
    for k in range(n):
        r = g = b = 0
        c = k
        for j in range(8):
            r |= (c & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """The class ids of a mask file, ``(H, W)`` int64 (palette indices of a mode-``P`` PNG, grey values of a
    single-channel one); ``DataError`` for a colour mask. PIL's errors on unreadable files pass through."""
    with Image.open(path) as im:
        if im.mode not in MASK_MODES:
            raise DataError(_mode_message(path, im.mode))
        return np.array(im).astype(np.int64)


def _mode_message(path: Any, mode: str) -> str:
    return (
        f"mask {str(path)!r} is a {mode} image; expected one class id per pixel: a palette PNG (mode P) or a "
        "single-channel PNG (mode L)"
    )


def _few(stems: Sequence[str]) -> str:
    shown = ", ".join(stems[:SHOWN])
    return shown + (f", ... ({len(stems) - SHOWN} more)" if len(stems) > SHOWN else "")


class SegmentationFiles(Dataset):
    """Images and their masks listed in ``samples`` (``(image path, mask path)`` pairs), checked when built
    (see the module docstring) and read when a sample is asked for.

    A sample is ``transform(image, mask)``: the image a PIL RGB image, the mask an ``(H, W)`` int64 array
    of class ids in ``[0, num_classes)`` or ``ignore_index``.

    **Arguments**

    - ``name``: the data set's name, which starts every error message;
    - ``num_classes``: ``K``; ``None`` skips the class-id check (for a caller that reads every mask first);
    - ``on_bad_image``: ``"error"`` or ``"skip"``, for files that cannot be read.

    ``palette`` is the palette of the first palette-PNG mask (768 values, ``None`` if no mask has one).
    """

    def __init__(
        self,
        name: str,
        samples: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
        *,
        num_classes: int | None,
        transform: SegmentationTransform,
        on_bad_image: str = "error",
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        self.name, self.num_classes, self.transform = name, num_classes, transform
        self.on_bad_image = check_choice("on_bad_image", on_bad_image, ON_BAD_IMAGE)
        self.ignore_index = ignore_index
        self.palette: list[int] | None = None
        self.bad: set[int] = set()  # indices found undecodable in this process
        self.samples = self._checked([(str(i), str(m)) for i, m in samples])
        if not self.samples:
            raise DataError(f"{name}: no readable image and mask among {len(samples)} listed")

    def _checked(self, samples: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The pairs whose headers are readable, of equal sizes, with a single-channel mask."""
        kept = []
        for image_path, mask_path in samples:
            try:
                with Image.open(image_path) as im:
                    image_size = im.size
            except Exception as e:  # PIL: UnidentifiedImageError, OSError, DecompressionBombError, ...
                self._unreadable(image_path, "image", e, loading=True)
                continue
            try:
                with Image.open(mask_path) as im:
                    mask_size, mode = im.size, im.mode
                    palette = im.getpalette() if mode == "P" else None
            except Exception as e:
                self._unreadable(mask_path, "mask", e, loading=True)
                continue
            if mode not in MASK_MODES:
                raise DataError(f"{self.name}: {_mode_message(mask_path, mode)}")
            if mask_size != image_size:
                raise DataError(
                    f"{self.name}: mask {mask_path!r} is {mask_size[0]}x{mask_size[1]} but its image "
                    f"{image_path!r} is {image_size[0]}x{image_size[1]} (width x height)"
                )
            if self.palette is None and palette is not None:
                self.palette = palette
            kept.append((image_path, mask_path))
        return kept

    def _unreadable(self, path: str, what: str, e: Exception, *, loading: bool = False) -> str:
        """The one-line message for an unreadable file; raised (``error``) or logged once (``skip``)."""
        message = f"{self.name}: cannot read {what} {path!r}: {type(e).__name__}: " + " ".join(str(e).split())
        if self.on_bad_image == "error":
            raise DataError(message) from None
        logger.warning(
            "%s; %s", message, "leaving the sample out" if loading else "using the next readable sample"
        )
        return message

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        image, mask = self._load(index)
        return self.transform(image, mask)

    def _load(self, index: int) -> tuple[Image.Image, np.ndarray]:
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        for j in ((index + step) % n for step in range(n)):
            if j in self.bad:
                continue
            pair = self._read(j)
            if pair is not None:
                return pair
        raise DataError(f"{self.name}: no readable image and mask among the {n} samples")

    def _read(self, j: int) -> tuple[Image.Image, np.ndarray] | None:
        """Sample ``j`` decoded and checked, or ``None`` (skip) if a file cannot be decoded."""
        image_path, mask_path = self.samples[j]
        try:
            with Image.open(image_path) as im:
                image = im.convert("RGB")  # decodes every pixel
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError
            return self._undecodable(j, image_path, "image", e)
        try:
            mask = read_mask(mask_path)
        except DataError as e:
            raise DataError(f"{self.name}: {e}") from None
        except Exception as e:
            return self._undecodable(j, mask_path, "mask", e)
        if self.num_classes is not None:
            self.check_ids(mask, mask_path)
        return image, mask

    def _undecodable(self, j: int, path: str, what: str, e: Exception) -> None:
        if j not in self.bad:
            self._unreadable(path, what, e)
        self.bad.add(j)
        return None

    def check_ids(self, mask: np.ndarray, path: str) -> None:
        """``DataError`` naming ``path`` if ``mask`` holds ids outside ``[0, num_classes)`` other than the
        ignore index."""
        k = self.num_classes
        bad = (mask < 0) | ((mask >= k) & (mask != self.ignore_index))
        if bad.any():
            ids = np.unique(mask[bad])
            shown = ", ".join(str(int(v)) for v in ids[:SHOWN]) + (", ..." if len(ids) > SHOWN else "")
            raise DataError(
                f"{self.name}: mask {path!r} holds class id{'s' if len(ids) > 1 else ''} {shown} outside "
                f"[0, {k}) ({int(bad.sum())} pixels; {self.ignore_index} marks ignored pixels)"
            )


# ---------------------------------------------------------------------------- Pascal VOC 2012


def _image_transforms(augment: str, image_size: int) -> tuple[SegmentationTransform, SegmentationTransform]:
    """Train (``augment``) and validation transforms of RGB files: ImageNet statistics, padding with the
    mean pixel (0 after normalisation) and the ignore index."""
    fill = [round(255 * m) for m in IMAGENET_MEAN]
    kw = {"image_size": image_size, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "fill": fill}
    return segmentation_transform(augment, **kw), segmentation_transform("none", **kw)


def _voc_listing(cls: Any, root: Path, split: str, fetch: bool) -> Any:
    """torchvision's listing of ``split``; a failed download becomes one :class:`DataError` line."""
    try:
        return cls(root=str(root), year="2012", image_set=split, download=fetch)
    except (RuntimeError, OSError) as e:
        if not fetch:
            raise
        said = " ".join(str(e).split())
        raise DataError(f"voc: cannot download Pascal VOC 2012 into {str(root)!r}: {said}") from None


def _missing(paths: Sequence[str]) -> list[str]:
    return [Path(p).name for p in paths if not Path(p).is_file()]


def voc_split(
    data_dir: Any,
    *,
    download: bool = False,
    augment: str = "none",
    image_size: int = 512,
    on_bad_image: str = "error",
) -> tuple[SegmentationFiles, SegmentationFiles]:
    """``(train, val)`` of Pascal VOC 2012 segmentation (1,464 / 1,449 images, 21 classes, 255 on object
    boundaries), listed by ``torchvision.datasets.VOCSegmentation``.

    Samples are ``((3, S, S) float32, (S, S) int64)`` with ``S = image_size``, normalised with the ImageNet
    statistics. Training images follow ``augment`` (:func:`~nnatlas.data.segmentation_transform`);
    validation images are scaled down only if a side exceeds ``S`` and padded to ``S x S`` (mask: 255), so
    at the default 512 every validation pixel is scored at its original resolution (VOC images are at
    most 500 x 500).
    """
    from torchvision.datasets import VOCSegmentation

    root = _root(data_dir, "voc", download)
    check_int("image_size", image_size, minimum=8)
    check_choice("on_bad_image", on_bad_image, ON_BAD_IMAGE)
    base = root / "VOCdevkit" / "VOC2012"
    train_tf, val_tf = _image_transforms(augment, image_size)
    splits = []
    for split, transform in (("train", train_tf), ("val", val_tf)):
        fetch = download and split == "train" and not base.is_dir()  # torchvision would extract 2 GB again
        try:
            listing = _voc_listing(VOCSegmentation, root, split, fetch)
        except RuntimeError:  # torchvision: "Dataset not found or corrupted"
            raise DataError(
                f"voc: no VOCdevkit/VOC2012 folder in {str(root)!r}; pass download=True (--download)"
            ) from None
        except OSError as e:
            raise DataError(
                f"voc: cannot read the list of {split} images {e.filename!r} ({e.strerror})"
            ) from None
        listed = base / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.images:
            raise DataError(f"voc: {str(listed)!r} lists no image")
        no_image, no_mask = _missing(listing.images), _missing(listing.masks)
        if no_image or no_mask:
            parts = [f"{len(no_image)} without an image in JPEGImages ({_few(no_image)})"] if no_image else []
            parts += (
                [f"{len(no_mask)} without a mask in SegmentationClass ({_few(no_mask)})"] if no_mask else []
            )
            raise DataError(f"voc: of the {len(listing.images)} ids in {str(listed)!r}, {'; '.join(parts)}")
        samples = list(zip(listing.images, listing.masks, strict=True))
        splits.append(
            SegmentationFiles(
                "voc", samples, num_classes=len(VOC_CLASSES), transform=transform, on_bad_image=on_bad_image
            )
        )
    return splits[0], splits[1]


# ---------------------------------------------------------------------------- a folder of images and masks


def _folder_pairs(split_dir: Path) -> list[tuple[Path, Path]]:
    """``(image, mask)`` pairs of ``split_dir/images`` and ``split_dir/masks`` matched by stem."""
    images_dir, masks_dir = split_dir / "images", split_dir / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise DataError(
                f"segfolder: {str(d)!r} is not a folder (expected images/ and masks/ in {str(split_dir)!r})"
            )
    visible = [p for p in sorted(images_dir.iterdir()) if p.is_file() and not p.name.startswith(".")]
    images: dict[str, Path] = {}
    for p in visible:
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.stem in images:
            raise DataError(
                f"segfolder: {images[p.stem].name!r} and {p.name!r} in {str(images_dir)!r} share the stem "
                f"{p.stem!r}"
            )
        images[p.stem] = p
    files = [p for p in sorted(masks_dir.iterdir()) if p.is_file() and not p.name.startswith(".")]
    masks = {p.stem: p for p in files if p.suffix.lower() == MASK_EXTENSION}
    no_mask, no_image = sorted(images.keys() - masks.keys()), sorted(masks.keys() - images.keys())
    if no_mask or no_image:
        parts = [f"{len(no_mask)} image(s) without a mask ({_few(no_mask)})"] if no_mask else []
        parts += [f"{len(no_image)} mask(s) without an image ({_few(no_image)})"] if no_image else []
        others = [p.name for p in files if p.suffix.lower() != MASK_EXTENSION]
        hint = f"; masks must be .png files (found {_few(others)})" if others else ""
        raise DataError(
            f"segfolder: the masks in {str(masks_dir)!r} do not match the images in {str(images_dir)!r}: "
            f"{'; '.join(parts)}{hint}"
        )
    if not images:
        raise DataError(f"segfolder: {str(images_dir)!r} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    return [(images[s], masks[s]) for s in sorted(images)]


def segfolder_split(
    data_dir: Any,
    *,
    augment: str = "none",
    image_size: int = 256,
    on_bad_image: str = "error",
    num_classes: int | None = None,
) -> tuple[SegmentationFiles, SegmentationFiles, int]:
    """``(train, val, num_classes)`` from ``data_dir/{train,val}/{images,masks}/`` (masks matched by stem).

    ``num_classes`` given (2 to 255): class ids are checked as each sample is read. ``None``: every mask of
    both splits is read once now and ``num_classes`` is the largest id other than 255, plus one.
    Transforms as :func:`voc_split` (ImageNet statistics; validation scaled down to fit ``image_size`` and
    padded).
    """
    root = _root(data_dir, "segfolder", download=False)
    check_int("image_size", image_size, minimum=8)
    check_choice("on_bad_image", on_bad_image, ON_BAD_IMAGE)
    if num_classes is not None:
        check_int("num_classes", num_classes, minimum=2, maximum=IGNORE_INDEX)
    train_dir = root / "train"
    val_dir = next((root / v for v in VAL_FOLDERS if (root / v).is_dir()), None)
    if not train_dir.is_dir() or val_dir is None:
        raise DataError(
            f"segfolder: {str(root)!r} needs train/ and val/ folders, each with images/ and masks/ "
            f"(found: {', '.join(sorted(p.name for p in root.iterdir())) or 'nothing'})"
        )
    train_tf, val_tf = _image_transforms(augment, image_size)
    kw = {"num_classes": num_classes, "on_bad_image": on_bad_image}
    train = SegmentationFiles("segfolder", _folder_pairs(train_dir), transform=train_tf, **kw)
    val = SegmentationFiles("segfolder", _folder_pairs(val_dir), transform=val_tf, **kw)
    if num_classes is None:
        num_classes = _largest_id(train, val) + 1
        if num_classes < 2:
            raise DataError(
                f"segfolder: the masks in {str(root)!r} hold class 0 only; need 2 or more classes"
            )
        train.num_classes = val.num_classes = num_classes
    return train, val, num_classes


def _largest_id(*splits: SegmentationFiles) -> int:
    """The largest class id other than the ignore index over every readable mask of ``splits``."""
    largest = 0
    for split in splits:
        for j, (_, mask_path) in enumerate(split.samples):
            try:
                mask = read_mask(mask_path)
            except DataError as e:
                raise DataError(f"{split.name}: {e}") from None
            except Exception as e:
                split._undecodable(j, mask_path, "mask", e)
                continue
            labelled = mask[mask != split.ignore_index]
            if labelled.size and int(labelled.min()) < 0:
                raise DataError(
                    f"segfolder: mask {mask_path!r} holds the negative class id {int(labelled.min())}"
                )
            if labelled.size and int(labelled.max()) >= IGNORE_INDEX:
                raise DataError(
                    f"segfolder: mask {mask_path!r} holds class id {int(labelled.max())}; ids run from 0 to "
                    f"{IGNORE_INDEX - 1} ({IGNORE_INDEX} marks ignored pixels)"
                )
            largest = max(largest, int(labelled.max()) if labelled.size else 0)
    return largest
