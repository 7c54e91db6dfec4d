"""Augmentation presets built from ``torchvision.transforms.v2``.

- ``none``: only conversion and normalisation;
- ``basic``: a random crop of the padded image (pad ``size // 8``) and a horizontal flip, the CIFAR
  recipe of He et al. (2016, section 4.2: pad 4 pixels of a 32x32 image, random crop, flip);
- ``strong``: ``basic`` plus a random rotation (+-15 degrees) and scale (0.85-1.15). A CNN is
  translation-equivariant by construction but neither rotation- nor scale-invariant, so it can only learn
  those invariances from rotated and rescaled samples.

Digit data sets get no flip: a mirrored digit is a different glyph.

Segmentation transforms move an image and its mask together (:func:`~nnatlas.data.segmentation_transform`): the mask is a
``tv_tensors.Mask``, which torchvision resizes with nearest-neighbour interpolation (a class id is never
blended) and leaves alone under colour transforms. Padding fills the mask with the ignore index (255), so a
padded pixel counts for no class.

- ``none``: validation geometry (:class:`~nnatlas.data.FitAndPad`): scaled down, never up, to fit in ``S x S``, then
  padded at the bottom and right to ``S x S``; no pixel of the image is lost;
- ``basic``: a random scale of the image fitted in ``S x S`` by a factor in ``[0.5, 2.0]``
  (``v2.ScaleJitter``; the range of DeepLab v3's training, Chen et al. 2017), a random ``S x S`` crop,
  padded where the scaled image is smaller (``v2.RandomCrop(pad_if_needed=True)``), and a horizontal flip;
- ``strong``: ``basic`` plus colour jitter of the image only (brightness, contrast, saturation 0.4, timm's
  ``color_jitter=0.4`` default).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import clip_boxes_to_image, remove_small_boxes
from torchvision.transforms import v2

from nnatlas._choices import AUGMENT_PRESETS

STRONG_DEGREES = 15.0
STRONG_SCALE = (0.85, 1.15)
#: Range of the random scale of the segmentation presets, relative to the image fitted in the crop.
SEGMENTATION_SCALE = (0.5, 2.0)
#: Brightness, contrast and saturation jitter of the ``strong`` segmentation preset.
SEGMENTATION_JITTER = 0.4
IGNORE_INDEX = 255


def _check_preset(preset: str) -> None:
    if preset not in AUGMENT_PRESETS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENT_PRESETS)}; got {preset!r}")


def augmentation(
    preset: str, *, image_size: int | tuple[int, int], flip: bool = True, padding_mode: str = "constant"
) -> list[v2.Transform]:
    """The geometric transforms of ``preset`` for images of ``image_size`` (tensors ``(C, H, W)`` or PIL)."""
    _check_preset(preset)
    if preset == "none":
        return []
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    ops: list[v2.Transform] = [v2.RandomCrop(size, padding=max(1, min(size) // 8), padding_mode=padding_mode)]
    if flip:
        ops.append(v2.RandomHorizontalFlip())
    if preset == "strong":
        ops.append(v2.RandomAffine(degrees=STRONG_DEGREES, scale=STRONG_SCALE))
    return ops


def build_transform(
    preset: str,
    *,
    image_size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool = True,
    resize: bool = False,
) -> v2.Compose:
    """PIL image or uint8 array -> normalised float tensor ``(C, H, W)`` with ``preset``'s augmentation.

    ``resize`` first scales the shorter side to ``image_size`` and centre-crops (for image folders of
    mixed sizes).
    """
    ops: list[v2.Transform] = [v2.ToImage()]
    if resize:
        ops += [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    ops += augmentation(preset, image_size=image_size, flip=flip)
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


class TransformedDataset(Dataset):
    """``dataset`` whose samples' first element (the image) goes through ``transform``."""

    def __init__(self, dataset: Dataset, transform: Callable[[Any], Any]) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        image, *rest = self.dataset[index]
        return (self.transform(image), *rest)


# ---------------------------------------------------------------------------- image and mask together


class FitAndPad(v2.Transform):
    """Scale down (never up) so that the image fits in ``size x size``, then pad at the bottom and right to
    ``size x size``: images with ``fill``, masks with ``ignore_index``.

    Every pixel of the input survives, so a prediction on the output, cropped back to the top-left
    ``(h', w')``, covers the whole (rescaled) image; with ``size`` at least the largest side nothing is
    resized and the padded pixels are ignored by the loss and the metrics (DeepLab evaluates Pascal VOC
    on images padded to 513 x 513 the same way: mean pixel for the image, ignore label for the mask).
    """

    def __init__(
        self, size: int, *, fill: float | Sequence[float] = 0.0, ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__()
        self.size, self.fill, self.ignore_index = size, fill, ignore_index

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """The parameters shared by the image and its mask: the size ``(h', w')`` to scale to, whether to
        resize, and the bottom and right padding up to ``size x size``."""
        h, w = v2.query_size(flat_inputs)
        r = min(1.0, self.size / h, self.size / w)  # 1: the image fits already
        nh, nw = (min(self.size, max(1, round(n * r))) for n in (h, w))
        return {
            "size": (nh, nw),
            "resize": (nh, nw) != (h, w),
            "padding": [0, 0, self.size - nw, self.size - nh],
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Resize and pad one input (an image ``(C, H, W)`` or a mask ``(H, W)``) to ``(size, size)`` with
        ``params`` from :meth:`make_params`."""
        if params["resize"]:
            inpt = self._call_kernel(F.resize, inpt, size=list(params["size"]), antialias=True)
        if not any(params["padding"]):
            return inpt
        fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else self.fill
        fill = list(fill) if isinstance(fill, Sequence) else fill
        return self._call_kernel(F.pad, inpt, padding=params["padding"], fill=fill)


class SegmentationTransform:
    """``(image, mask) -> (image (C, S, S) float32, mask (S, S) int64)`` through torchvision v2 transforms.

    ``image``: a PIL image, an ``(H, W, C)`` uint8 array or a ``(C, H, W)`` tensor; ``mask``: an ``(H, W)``
    array, tensor or PIL image of class ids. The mask travels as a ``tv_tensors.Mask``.
    """

    def __init__(self, transforms: Sequence[Callable[..., Any]]) -> None:
        self.transforms = v2.Compose(list(transforms))

    def __call__(self, image: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
        image = tv_tensors.Image(image) if isinstance(image, torch.Tensor) else F.to_image(image)
        mask = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.array(mask, dtype=np.int64))
        if mask.numel() and 0 <= int(mask.min()) and int(mask.max()) <= 255:
            mask = mask.to(torch.uint8)  # resized 6x faster than int64; ToDtype gives int64 at the end
        image, mask = self.transforms(image, tv_tensors.Mask(mask))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"SegmentationTransform({self.transforms!r})"


def segmentation_transform(
    preset: str,
    *,
    image_size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    fill: float | Sequence[float] = 0.0,
    ignore_index: int = IGNORE_INDEX,
) -> SegmentationTransform:
    """The joint image + mask transform of ``preset`` (see the module docstring) with ``S = image_size``.

    The image becomes float32 in ``[0, 1]`` and, with ``mean`` and ``std``, is normalised. ``fill`` pads
    the image in its input units (uint8 images: ``0..255``; choose the mean pixel so that padding is ``0``
    after normalisation); the mask is padded with ``ignore_index``.
    """
    _check_preset(preset)
    size = (image_size, image_size)
    ops: list[Callable[..., Any]] = []
    if preset == "none":
        ops.append(FitAndPad(image_size, fill=fill, ignore_index=ignore_index))
    else:
        pad = {tv_tensors.Image: fill, tv_tensors.Mask: ignore_index}
        ops += [
            v2.ScaleJitter(size, scale_range=SEGMENTATION_SCALE),
            v2.RandomCrop(size, pad_if_needed=True, fill=pad),
            v2.RandomHorizontalFlip(),
        ]
        if preset == "strong":
            j = SEGMENTATION_JITTER
            ops.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    ops.append(
        v2.ToDtype(
            {tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True
        )
    )
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise ValueError("mean and std go together: pass both or neither")
        ops.append(v2.Normalize(list(mean), list(std)))
    return SegmentationTransform(ops)


def prepare_image(
    image: Any, *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> torch.Tensor:
    """An image to predict on, prepared as the validation images of a segmentation bundle but at its own
    size: RGB, float32 in ``[0, 1]``, normalised with ``mean`` / ``std`` when given: ``(3, H, W)``.

    ``image``: a PIL image (converted to RGB), an ``(H, W, 3)`` uint8 array or a ``(3, H, W)`` tensor.
    """
    if hasattr(image, "convert"):
        image = image.convert("RGB")
    ops: list[Callable[..., Any]] = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise ValueError("mean and std go together: pass both or neither")
        ops.append(v2.Normalize(list(mean), list(std)))
    out = v2.Compose(ops)(image)
    if out.ndim != 3 or out.shape[0] != 3:
        raise ValueError(f"expected an RGB image (3 channels); got a tensor of shape {tuple(out.shape)}")
    return out.as_subclass(torch.Tensor)


class JointTransformedDataset(Dataset):
    """``dataset`` of ``(image, mask)`` samples, each pair going through ``transform(image, mask)``."""

    def __init__(self, dataset: Dataset, transform: Callable[[Any, Any], Any]) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        image, mask = self.dataset[index]
        return self.transform(image, mask)


# ---------------------------------------------------------------------------- images with boxes and instances

#: Range of the random scale of the ``basic`` detection preset, relative to the image fitted in ``S x S``.
DETECTION_SCALE = (0.75, 1.33)
#: Range of the canvas side (relative to the image) of the ``strong`` preset's zoom out.
DETECTION_ZOOM_OUT = (1.0, 2.0)
#: The per-object entries of a detection target, indexed with its boxes.
PER_OBJECT = ("labels", "iscrowd", "area", "_box_area")


def _per_object(inputs: Any) -> tuple[torch.Tensor, ...]:
    """``SanitizeBoundingBoxes``' ``labels_getter``: every per-object tensor of the target."""
    target = inputs[1]
    return tuple(target[k] for k in PER_OBJECT if k in target)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(x2 - x1) * (y2 - y1)`` of ``(N, 4)`` xyxy boxes, ``(N,)``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


class FitWithin(v2.Transform):
    """Scale down (never up), keeping the aspect ratio, so that the image fits in ``size x size``; boxes and
    masks follow (masks by nearest neighbour). An image that fits already is left as it is."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """The size ``[h', w']`` that fits in ``size x size``, shared by the image, its boxes and masks, and
        whether it differs from the input's."""
        h, w = v2.query_size(flat_inputs)
        r = min(1.0, self.size / h, self.size / w)
        size = [min(self.size, max(1, round(h * r))), min(self.size, max(1, round(w * r)))]
        return {"size": size, "resize": size != [h, w]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Resize one input (image, boxes or masks) to ``params["size"]`` from :meth:`make_params`."""
        if not params["resize"]:
            return inpt
        return self._call_kernel(F.resize, inpt, size=params["size"], antialias=True)


class DetectionTransform:
    """``(image, target) -> (image (3, H, W) float32 in [0, 1], target)`` through torchvision v2 transforms.

    ``image``: a PIL image, an ``(H, W, 3)`` uint8 array or a ``(3, H, W)`` tensor (uint8, or float in
    ``[0, 1]``). ``target``: ``boxes`` ``(N, 4)`` xyxy in pixels and ``labels`` ``(N,)``, optionally
    ``iscrowd`` ``(N,)`` (default 0), ``area`` ``(N,)`` (default the box area), ``masks`` ``(N, H, W)`` and
    ``image_id``. Through ``transforms`` the boxes travel as ``tv_tensors.BoundingBoxes``, the masks as a
    ``tv_tensors.Mask``.

    First the boxes are clipped to the image and those left less than one pixel wide or high are dropped
    with their label, mask, ``iscrowd`` and ``area`` (``torchvision.ops.clip_boxes_to_image`` and
    ``remove_small_boxes(min_size=1)``): degenerate boxes (``x2 <= x1`` or ``y2 <= y1``) and boxes outside
    the image never reach a model. ``transforms`` are followed by the same rule in v2 form
    (``v2.ClampBoundingBoxes``, ``v2.SanitizeBoundingBoxes``), so a crop drops the boxes it empties.

    Returned: plain tensors, ``boxes`` ``(N, 4)`` float32 (``(0, 4)`` without objects), ``labels`` and
    ``iscrowd`` ``(N,)`` int64, ``area`` ``(N,)`` float32, ``masks`` ``(N, H, W)`` uint8 when given,
    ``image_id`` as given. ``area`` follows its box: it is multiplied by the ratio of the box's area after
    and before ``transforms`` (1 under flips; ``s**2`` under a scale by ``s``).
    """

    def __init__(self, transforms: Sequence[Callable[..., Any]] = ()) -> None:
        clean = [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(labels_getter=_per_object)]
        self.transforms = v2.Compose([*transforms, *clean]) if transforms else None

    def __call__(self, image: Any, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        image = tv_tensors.Image(image) if isinstance(image, torch.Tensor) else F.to_image(image)
        h, w = image.shape[-2:]
        sample = _valid_objects(_as_tensors(target, h, w), (h, w))
        if self.transforms is not None:
            before = box_area(sample["boxes"])
            sample["boxes"] = tv_tensors.BoundingBoxes(sample["boxes"], format="XYXY", canvas_size=(h, w))
            if "masks" in sample:
                sample["masks"] = tv_tensors.Mask(sample["masks"])
            sample["_box_area"] = before
            image, sample = self.transforms(image, sample)
            boxes = sample["boxes"] = sample["boxes"].as_subclass(torch.Tensor)
            if "masks" in sample:
                sample["masks"] = sample["masks"].as_subclass(torch.Tensor)
            before = sample.pop("_box_area")  # > 0: no degenerate box is left
            sample["area"] = sample["area"] * (box_area(boxes) / before)
        image = F.to_dtype(image, torch.float32, scale=True)
        return image.as_subclass(torch.Tensor), sample

    def __repr__(self) -> str:
        return f"DetectionTransform({self.transforms!r})"


def _as_tensors(target: dict[str, Any], h: int, w: int) -> dict[str, Any]:
    """``target`` as plain tensors of the returned dtypes, with the defaults of ``iscrowd`` and ``area``."""
    boxes = torch.as_tensor(np.asarray(target["boxes"], dtype=np.float32)).reshape(-1, 4)
    n = len(boxes)

    def per_object(key: str, dtype: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(target[key], dtype=dtype)).reshape(n)

    out: dict[str, Any] = {"boxes": boxes, "labels": per_object("labels", np.int64)}
    out["iscrowd"] = (
        per_object("iscrowd", np.int64)
        if target.get("iscrowd") is not None
        else torch.zeros(n, dtype=torch.int64)
    )
    out["area"] = (
        per_object("area", np.float32) if target.get("area") is not None else box_area(boxes).clamp(min=0)
    )
    if target.get("masks") is not None:
        out["masks"] = torch.as_tensor(np.asarray(target["masks"], dtype=np.uint8)).reshape(n, h, w)
    if "image_id" in target:
        out["image_id"] = target["image_id"]
    return out


def _valid_objects(sample: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """``sample`` with its boxes clipped to ``size`` ``(H, W)`` and the objects whose box is then less than one
    pixel wide or high left out."""
    boxes = clip_boxes_to_image(sample["boxes"], size)
    keep = remove_small_boxes(boxes, min_size=1.0)
    out = dict(sample, boxes=boxes)
    if len(keep) < len(boxes):
        for key in ("boxes", "masks", *PER_OBJECT):
            if key in out:
                out[key] = out[key][keep]
    return out


def detection_augmentation(
    preset: str, *, image_size: int, fill: float | Sequence[float] = 0.0
) -> list[v2.Transform]:
    """The geometric and colour transforms of a detection ``preset`` with ``S = image_size``.

    - ``none``: :class:`FitWithin` ``S``: scaled down only where a side exceeds ``S``, aspect kept,
      not padded (detectors take lists of images of any size and resize inside);
    - ``basic``: a horizontal flip, a random scale of the image fitted in ``S x S`` by a factor in
      ``DETECTION_SCALE = (0.75, 1.33)`` (``v2.ScaleJitter``) and a random ``S x S`` crop, padded with ``fill`` where
      the scaled image is smaller (``v2.RandomCrop(pad_if_needed=True)``);
    - ``strong``: the augmentation of SSD (Liu et al. 2016, section 2.2; torchvision's detection reference
      ``ssd`` policy): a zoom out onto a canvas up to ``DETECTION_ZOOM_OUT = (1.0, 2.0)`` times the image side,
      filled with ``fill`` (``v2.RandomZoomOut``), a random crop whose minimum IoU with the objects is drawn
      from ``{0.1, 0.3, 0.5, 0.7, 0.9}`` or no crop (``v2.RandomIoUCrop``), a horizontal flip, a resize to
      ``S x S``, then photometric distortions of the image only (brightness, contrast, saturation, hue,
      channel order: ``v2.RandomPhotometricDistort``), last so that they touch no box or mask.

    Boxes emptied by a crop are dropped by :class:`DetectionTransform`; masks are padded with 0 (no object).
    """
    _check_preset(preset)
    if preset == "none":
        return [FitWithin(image_size)]
    size = (image_size, image_size)
    pad = {tv_tensors.Image: fill, tv_tensors.Mask: 0}
    if preset == "basic":
        return [
            v2.RandomHorizontalFlip(),
            v2.ScaleJitter(size, scale_range=DETECTION_SCALE, antialias=True),
            v2.RandomCrop(size, pad_if_needed=True, fill=pad),
        ]
    return [
        v2.RandomZoomOut(fill=pad, side_range=DETECTION_ZOOM_OUT),
        v2.RandomIoUCrop(),
        v2.RandomHorizontalFlip(),
        v2.Resize(size, antialias=True),
        v2.RandomPhotometricDistort(),
    ]


def detection_transform(
    preset: str, *, image_size: int, fill: float | Sequence[float] = 0.0
) -> DetectionTransform:
    """The :class:`DetectionTransform` of ``preset`` (see :func:`detection_augmentation`)."""
    return DetectionTransform(detection_augmentation(preset, image_size=image_size, fill=fill))
