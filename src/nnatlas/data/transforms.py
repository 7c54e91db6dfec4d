"""Augmentation presets built from ``torchvision.transforms.v2``.

- ``none``: only conversion and normalisation;
- ``basic``: a random crop of the padded image (pad ``size // 8``) and a horizontal flip, the CIFAR
  recipe of He et al. (2016, section 4.2: pad 4 pixels of a 32x32 image, random crop, flip);
- ``strong``: ``basic`` plus a random rotation (+-15 degrees) and scale (0.85-1.15). A CNN is
  translation-equivariant by construction but neither rotation- nor scale-invariant, so it can only learn
  those invariances from rotated and rescaled samples.

Digit data sets get no flip: a mirrored digit is a different glyph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from nnatlas._choices import AUGMENT_PRESETS

STRONG_DEGREES = 15.0
STRONG_SCALE = (0.85, 1.15)


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
