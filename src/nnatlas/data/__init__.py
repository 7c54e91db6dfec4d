"""Data sets: embedded (digits, shapes, sequence tasks) and real formats through torchvision.

:func:`load_dataset` maps a name to a :class:`DataBundle` (train and validation sets with their metadata).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from nnatlas._suggest import unknown_choice_message
from nnatlas.data.digits import DIGITS_CLASSES, load_digits_split
from nnatlas.data.sequences import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SEQUENCE_TASKS,
    SequenceDataset,
    make_sequence_split,
    pad_collate,
    tokens_to_text,
    vocab_size,
)
from nnatlas.data.shapes import SHAPE_CLASSES, Scene, ShapesDataset, render_scene


@dataclass
class DataBundle:
    """Train and validation sets of one data set, with what a model needs to know about them."""

    name: str
    task: str
    train: Dataset
    val: Dataset
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    classes: tuple[str, ...]


def _digits(*, seed: int = 0, **_: Any) -> DataBundle:
    train, val = load_digits_split(seed=seed)
    return DataBundle("digits", "classification", train, val, 10, 1, (8, 8), DIGITS_CLASSES)


def _shapes(
    *, seed: int = 0, size: int = 32, num_train: int = 4000, num_val: int = 1000, **_: Any
) -> DataBundle:
    # Train and validation scenes come from different seeds, so they never share a scene.
    train = ShapesDataset(num_train, size=size, seed=2 * seed)
    val = ShapesDataset(num_val, size=size, seed=2 * seed + 1)
    return DataBundle(
        "shapes", "classification", train, val, len(SHAPE_CLASSES), 3, (size, size), SHAPE_CLASSES
    )


DATASETS: dict[str, Callable[..., DataBundle]] = {"digits": _digits, "shapes": _shapes}


def load_dataset(name: str, **kwargs: Any) -> DataBundle:
    """Load a data set by name; an unknown name raises ``ValueError`` listing the closest names first."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(unknown_choice_message("data set", name, DATASETS)) from None
    return loader(**kwargs)


__all__ = [
    "DATASETS",
    "DIGITS_CLASSES",
    "SHAPE_CLASSES",
    "DataBundle",
    "Scene",
    "ShapesDataset",
    "load_dataset",
    "load_digits_split",
    "render_scene",
]
__all__ += [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "SEQUENCE_TASKS",
    "SequenceDataset",
    "make_sequence_split",
    "pad_collate",
    "tokens_to_text",
    "vocab_size",
]
