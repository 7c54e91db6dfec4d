"""Target sanitising shared by every detector: the one place where bad boxes are dropped, never a crash.

torchvision's detectors assert on degenerate boxes in training ("All bounding boxes should have positive
height and width"), and a box outside the image gives regression targets outside the anchors' reach. Real
annotations have both (zero-width boxes in COCO, boxes left outside after a random crop), so every detector
of nnatlas passes its training targets through :func:`sanitize_targets` first:

1. ``boxes`` must be a float tensor of ``N x 4`` numbers ``(x1, y1, x2, y2)`` (an empty tensor of any shape
   is ``(0, 4)``) and ``labels`` an integer tensor of ``N`` entries; anything else is a ``TypeError`` /
   ``ValueError`` naming the image, the key and what came.
2. Boxes are clipped to the image, ``0 <= x <= W`` and ``0 <= y <= H``.
3. Boxes with a non-finite coordinate, or whose width or height after clipping is below ``min_size``
   pixels (degenerate boxes, boxes wholly outside the image), are dropped with one ``logging`` warning per
   call, together with their labels and the other per-object fields (``masks``, ``area``, ``iscrowd``,
   ``keypoints``). An image left without objects stays in the batch as a background-only image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["PER_OBJECT_KEYS", "sanitize_targets"]

log = logging.getLogger(__name__)

#: Target fields holding one entry per object, filtered together with ``boxes``.
PER_OBJECT_KEYS = ("boxes", "labels", "masks", "area", "iscrowd", "keypoints")


def sanitize_targets(
    targets: Sequence[dict[str, Tensor]],
    image_sizes: Sequence[tuple[int, int]],
    *,
    num_classes: int | None = None,
    min_size: float = 0.01,
) -> list[dict[str, Tensor]]:
    """Copies of ``targets`` with boxes clipped to their image and unusable boxes dropped.

    Arguments:
        targets: one dict per image with ``boxes`` ``(N, 4)`` xyxy in pixels and ``labels`` ``(N,)``
            (optionally ``masks`` ``(N, H, W)`` and the other :data:`PER_OBJECT_KEYS`; other keys are
            passed through unchanged).
        image_sizes: ``(H, W)`` of each image, in the same pixels as the boxes.
        num_classes: when given, labels must lie in ``[1, num_classes)`` (0 is the background); a label
            outside is a ``ValueError``, not a silent drop, because it is a wrong data set, not a bad box.
        min_size: smallest width and height in pixels a kept box may have after clipping.

    Returns:
        A new list of new dicts: ``boxes`` ``(M, 4)`` in the dtype that came if floating (else float32),
        ``labels`` ``(M,)`` int64, ``M <= N``. The inputs are not modified.
    """
    if isinstance(targets, dict) or not isinstance(targets, Sequence):
        raise TypeError(f"targets must be a list of dicts, one per image; got {type(targets).__name__}")
    if len(targets) != len(image_sizes):
        raise ValueError(f"targets must give one dict per image ({len(image_sizes)}); got {len(targets)}")
    out, dropped, total = [], 0, 0
    for i, (target, size) in enumerate(zip(targets, image_sizes, strict=True)):
        h, w = int(size[0]), int(size[1])
        boxes, labels, masks = _check_target(i, target, num_classes, (h, w))
        finite = torch.isfinite(boxes).all(dim=1)
        boxes = torch.stack(
            (
                boxes[:, 0].clamp(0, w),
                boxes[:, 1].clamp(0, h),
                boxes[:, 2].clamp(0, w),
                boxes[:, 3].clamp(0, h),
            ),
            dim=1,
        )
        keep = finite & (boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
        n = int(boxes.shape[0])
        total += n
        new = dict(target)
        new["boxes"], new["labels"] = boxes, labels
        if masks is not None:
            new["masks"] = masks
        if not bool(keep.all()):
            dropped += n - int(keep.sum())
            for key in PER_OBJECT_KEYS:
                value = new.get(key)
                if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n:
                    new[key] = value[keep]
        out.append(new)
    if dropped:
        log.warning(
            "dropped %d of %d target boxes that were degenerate (width or height < %g px), outside the "
            "image or not finite",
            dropped,
            total,
            min_size,
        )
    return out


def _check_target(
    i: int, target: dict[str, Tensor], num_classes: int | None, size: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(boxes (N, 4) float, labels (N,) int64, masks (N, H, W) or None)`` of image ``i``, or a clear error."""
    if not isinstance(target, dict):
        raise TypeError(f"target {i} must be a dict with 'boxes' and 'labels'; got {type(target).__name__}")
    for key in ("boxes", "labels"):
        if key not in target:
            raise ValueError(f"target {i} must have 'boxes' and 'labels'; got keys {sorted(target)}")
        if not isinstance(target[key], Tensor):
            raise TypeError(f"target {i}: {key!r} must be a tensor; got {type(target[key]).__name__}")
    boxes, labels = target["boxes"], target["labels"]
    if boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"target {i}: 'boxes' must be (N, 4) xyxy; got shape {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        boxes = boxes.float()
    if labels.numel() == 0:
        labels = labels.reshape(0)
    if labels.dim() != 1 or labels.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"target {i}: 'labels' must be (N,) with N = {boxes.shape[0]} boxes; got shape {tuple(labels.shape)}"
        )
    if labels.numel() and (labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool):
        raise TypeError(f"target {i}: 'labels' must be an integer tensor; got {labels.dtype}")
    labels = labels.long()
    if num_classes is not None and labels.numel() and (labels.min() < 1 or labels.max() >= num_classes):
        raise ValueError(
            f"target {i}: labels must lie in [1, {num_classes}) (0 is the background); "
            f"got values from {int(labels.min())} to {int(labels.max())}"
        )
    masks = target.get("masks")
    if masks is not None:
        want = (int(boxes.shape[0]), *size)
        if isinstance(masks, Tensor) and masks.numel() == 0 and want[0] == 0:
            masks = masks.reshape(want)
        if not isinstance(masks, Tensor) or tuple(masks.shape) != want:
            got = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
            raise ValueError(f"target {i}: 'masks' must be (N, H, W) = {want}, one per box; got {got}")
    return boxes, labels, masks
