"""Data sets: embedded (digits, shapes, sequence tasks) and real formats through torchvision (MNIST,
Fashion-MNIST, CIFAR-10/100, image folders), with the augmentation presets of :mod:`nnatlas.data.transforms`.

:func:`load_dataset` maps a name to a :class:`DataBundle` (train and validation sets with their metadata).
The file-based sets take ``data_dir`` and ``download``; every set takes ``augment`` (none, basic, strong),
applied to the training split only.
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
from nnatlas.data.torchvision_sets import (
    CIFAR,
    FASHION_CLASSES,
    DataError,
    cifar_split,
    image_folder_split,
    mnist_split,
    read_cifar_pickle,
)
from nnatlas.data.transforms import TransformedDataset, augmentation, build_transform

FILE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder")


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


def _augmented(train: Dataset, augment: str, size: int, *, flip: bool) -> Dataset:
    # The embedded sets are tensors already standardised: geometric transforms only, edges replicated.
    ops = augmentation(augment, image_size=size, flip=flip, padding_mode="edge")
    if not ops:
        return train
    from torchvision.transforms import v2

    return TransformedDataset(train, v2.Compose(ops))


def _digits(*, seed: int = 0, augment: str = "none", **_: Any) -> DataBundle:
    train, val = load_digits_split(seed=seed)
    train = _augmented(train, augment, 8, flip=False)
    return DataBundle("digits", "classification", train, val, 10, 1, (8, 8), DIGITS_CLASSES)


def _shapes(
    *,
    seed: int = 0,
    size: int = 32,
    num_train: int = 4000,
    num_val: int = 1000,
    augment: str = "none",
    **_: Any,
) -> DataBundle:
    # Train and validation scenes come from different seeds, so they never share a scene.
    train = _augmented(ShapesDataset(num_train, size=size, seed=2 * seed), augment, size, flip=True)
    val = ShapesDataset(num_val, size=size, seed=2 * seed + 1)
    return DataBundle(
        "shapes", "classification", train, val, len(SHAPE_CLASSES), 3, (size, size), SHAPE_CLASSES
    )


def _mnist(*, data_dir: Any = None, download: bool = False, augment: str = "none", **_: Any) -> DataBundle:
    train, val = mnist_split(data_dir, download=download, augment=augment)
    return DataBundle("mnist", "classification", train, val, 10, 1, (28, 28), DIGITS_CLASSES)


def _fashion_mnist(
    *, data_dir: Any = None, download: bool = False, augment: str = "none", **_: Any
) -> DataBundle:
    train, val = mnist_split(data_dir, download=download, augment=augment, fashion=True)
    return DataBundle("fashion_mnist", "classification", train, val, 10, 1, (28, 28), FASHION_CLASSES)


def _cifar(hundred: bool) -> Callable[..., DataBundle]:
    def load(*, data_dir: Any = None, download: bool = False, augment: str = "none", **_: Any) -> DataBundle:
        train, val = cifar_split(data_dir, download=download, augment=augment, hundred=hundred)
        name = "cifar100" if hundred else "cifar10"
        return DataBundle(name, "classification", train, val, len(train.classes), 3, (32, 32), train.classes)

    return load


def _imagefolder(
    *, data_dir: Any = None, augment: str = "none", image_size: int | None = None, **_: Any
) -> DataBundle:
    size = image_size or 224
    train, val = image_folder_split(data_dir, augment=augment, image_size=size)
    classes = tuple(train.classes)
    return DataBundle("imagefolder", "classification", train, val, len(classes), 3, (size, size), classes)


DATASETS: dict[str, Callable[..., DataBundle]] = {
    "digits": _digits,
    "shapes": _shapes,
    "mnist": _mnist,
    "fashion_mnist": _fashion_mnist,
    "cifar10": _cifar(False),
    "cifar100": _cifar(True),
    "imagefolder": _imagefolder,
}


def load_dataset(name: str, **kwargs: Any) -> DataBundle:
    """Load a data set by name; an unknown name raises ``ValueError`` listing the closest names first."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(unknown_choice_message("data set", name, DATASETS)) from None
    return loader(**kwargs)


__all__ = [
    "BOS_ID",
    "CIFAR",
    "DATASETS",
    "DIGITS_CLASSES",
    "EOS_ID",
    "FASHION_CLASSES",
    "FILE_DATASETS",
    "PAD_ID",
    "SEQUENCE_TASKS",
    "SHAPE_CLASSES",
    "DataBundle",
    "DataError",
    "Scene",
    "SequenceDataset",
    "ShapesDataset",
    "TransformedDataset",
    "augmentation",
    "build_transform",
    "cifar_split",
    "image_folder_split",
    "load_dataset",
    "load_digits_split",
    "make_sequence_split",
    "mnist_split",
    "pad_collate",
    "read_cifar_pickle",
    "render_scene",
    "tokens_to_text",
    "vocab_size",
]
