"""A procedural, seeded world of geometric shapes on noisy backgrounds.

One :class:`Scene` carries everything the vision tasks need from the same pixels: the RGB image, a
semantic mask (class id per pixel, 0 = background), an instance mask, and the visible boxes with their
labels. :class:`ShapesDataset` turns scenes into classification, segmentation or detection samples.
Scene ``i`` of a dataset depends only on ``(seed, i)``, so datasets are reproducible and random-access.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

#: The four shape classes, in the order of their labels (label ``k``, mask class ``k + 1``).
SHAPE_CLASSES = ("circle", "square", "triangle", "cross")
SHAPES_TASKS = ("classification", "segmentation", "detection")


@dataclass(frozen=True)
class Scene:
    """``image`` (H, W, 3) float32 in [0, 1]; ``mask`` (H, W) int64 class ids (0 = background, shape k is
    k + 1); ``instances`` (H, W) int64 (0 = none, object j is j + 1); ``boxes`` (N, 4) float32 xyxy in
    pixels of the visible part; ``labels`` (N,) int64 shape classes (0-based into ``SHAPE_CLASSES``)."""

    image: np.ndarray
    mask: np.ndarray
    instances: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def _shape_mask(kind: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float, theta: float):
    # Local coordinates of every pixel centre in the shape's rotated frame.
    c, s = np.cos(theta), np.sin(theta)
    u = c * (xx - cx) + s * (yy - cy)
    v = -s * (xx - cx) + c * (yy - cy)
    if kind == "circle":
        return u * u + v * v <= r * r
    if kind == "square":
        h = r / np.sqrt(2.0) * 1.1
        return (np.abs(u) <= h) & (np.abs(v) <= h)
    if kind == "triangle":
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):  # equilateral triangle: three half-planes at distance r/2 from the centre
            a = 2.0 * np.pi * k / 3.0
            inside &= np.cos(a) * u + np.sin(a) * v <= r / 2.0
        return inside
    if kind == "cross":
        arm = r * 0.35
        return ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPE_CLASSES}")


def render_scene(
    rng: np.random.Generator,
    *,
    size: int = 32,
    num_objects: int | tuple[int, int] = 1,
    noise: float = 0.08,
    min_pixels: int = 6,
) -> Scene:
    """Draw one scene. ``num_objects`` is a count or an inclusive ``(low, high)`` range; later objects
    occlude earlier ones, and objects with fewer than ``min_pixels`` visible pixels are dropped."""
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels; got {size}")
    low, high = (num_objects, num_objects) if isinstance(num_objects, int) else num_objects
    if not 1 <= low <= high:
        raise ValueError(f"num_objects must be >= 1 (or a range low <= high); got {num_objects}")
    n = int(rng.integers(low, high + 1))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    background = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
    image = np.broadcast_to(background, (size, size, 3)).copy()
    # A smooth gradient and pixel noise make the background more than a constant.
    gradient = rng.uniform(-0.15, 0.15, size=3).astype(np.float32)
    image += (xx / size - 0.5)[..., None] * gradient
    instances = np.zeros((size, size), dtype=np.int64)
    kinds = rng.integers(0, len(SHAPE_CLASSES), size=n)
    for j, k in enumerate(kinds):
        r = rng.uniform(0.18, 0.32) * size if n == 1 else rng.uniform(0.12, 0.22) * size
        cx, cy = rng.uniform(r, size - r, size=2)
        theta = rng.uniform(0.0, 2.0 * np.pi)
        colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        while np.abs(colour - background).max() < 0.35:  # keep every shape visible against its background
            colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        m = _shape_mask(SHAPE_CLASSES[k], xx, yy, cx, cy, r, theta)
        image[m] = colour
        instances[m] = j + 1
    image += rng.normal(0.0, noise, size=image.shape).astype(np.float32)
    np.clip(image, 0.0, 1.0, out=image)

    boxes, labels = [], []
    mask = np.zeros_like(instances)
    kept = np.zeros_like(instances)
    for j, k in enumerate(kinds):
        ys, xs = np.nonzero(instances == j + 1)
        if len(ys) < min_pixels:
            continue
        mask[instances == j + 1] = k + 1
        kept[instances == j + 1] = len(labels) + 1
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        labels.append(k)
    return Scene(
        image=image,
        mask=mask,
        instances=kept,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
    )


class ShapesDataset(Dataset):
    """``len == num_samples`` seeded scenes.

    - ``task="classification"``: one shape per image; ``(image (3, S, S), label)``.
    - ``task="segmentation"``: ``(image, mask (S, S) int64)`` with ``len(SHAPE_CLASSES) + 1`` classes.
    - ``task="detection"``: ``(image, {"boxes": (N, 4) xyxy, "labels": (N,) in 1..K})`` as torchvision's
      detection models expect (0 is their background).

    Images are ``(3, S, S)`` float32 in ``[0, 1]`` with ``S = size``:

    >>> ds = ShapesDataset(num_samples=8, size=32)
    >>> image, label = ds[0]
    >>> len(ds), image.shape, ds.classes[label]
    (8, torch.Size([3, 32, 32]), 'triangle')
    >>> seg = ShapesDataset(num_samples=8, size=32, task="segmentation")
    >>> seg[0][1].shape, seg[0][1].dtype
    (torch.Size([32, 32]), torch.int64)
    """

    def __init__(
        self,
        num_samples: int = 2000,
        *,
        size: int = 32,
        task: str = "classification",
        seed: int = 0,
        num_objects: int | tuple[int, int] | None = None,
        noise: float = 0.08,
    ) -> None:
        if task not in SHAPES_TASKS:
            raise ValueError(f"task must be one of {', '.join(SHAPES_TASKS)}; got {task!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1; got {num_samples}")
        self.num_samples, self.size, self.task, self.seed, self.noise = num_samples, size, task, seed, noise
        self.num_objects = (
            num_objects if num_objects is not None else (1 if task == "classification" else (1, 4))
        )
        if task == "classification" and self.num_objects != 1:
            raise ValueError(f"classification scenes hold exactly one object; got num_objects={num_objects}")
        self.classes = SHAPE_CLASSES

    def __len__(self) -> int:
        return self.num_samples

    def scene(self, index: int) -> Scene:
        """Scene ``index`` (image ``(size, size, 3)``, masks, boxes and labels), rendered from ``(seed,
        index)`` alone: the same scene every time. ``IndexError`` outside ``[0, len(self))``."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} scenes")
        rng = np.random.default_rng([self.seed, index])
        return render_scene(rng, size=self.size, num_objects=self.num_objects, noise=self.noise)

    def __getitem__(self, index: int):
        s = self.scene(index)
        image = torch.from_numpy(np.ascontiguousarray(s.image.transpose(2, 0, 1)))  # (3, S, S)
        if self.task == "classification":
            return image, int(s.labels[0])
        if self.task == "segmentation":
            return image, torch.from_numpy(s.mask)
        return image, {"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels + 1)}
