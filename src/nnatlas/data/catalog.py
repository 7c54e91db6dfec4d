"""The registered data sets: one small loader per name, each checking its arguments and returning a bundle.

| name | task | what |
| --- | --- | --- |
| ``digits`` | classification | scikit-learn's 8x8 digits, embedded |
| ``shapes`` | classification | seeded procedural shapes, embedded |
| ``mnist``, ``fashion_mnist`` | classification | IDX files under ``data_dir`` |
| ``cifar10``, ``cifar100`` | classification | CIFAR pickles under ``data_dir`` |
| ``imagefolder`` | classification | ``data_dir/{train,val}/<class>/*`` |
| ``shapes`` | segmentation | the same seeded scenes with 1-4 shapes and per-pixel masks, embedded |
| ``voc`` | segmentation | Pascal VOC 2012 under ``data_dir/VOCdevkit/VOC2012`` |
| ``segfolder`` | segmentation | ``data_dir/{train,val}/{images,masks}/*`` |
| ``shapes`` | detection | the same seeded scenes with boxes and instance masks, embedded |
| ``voc`` | detection | Pascal VOC 2012 XML under ``data_dir/VOCdevkit/VOC2012`` |
| ``coco`` | detection | COCO 2017 JSON and images under ``data_dir`` |
| ``copy``, ``reverse``, ``sort``, ``add`` | seq2seq | seeded token sequences, generated |
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from nnatlas._choices import AUGMENT_PRESETS
from nnatlas._validate import InvalidValue, check_choice, check_int
from nnatlas.data.detection import (
    SHAPES_DETECTION_CLASSES,
    ShapesDetection,
    coco_split,
    detection_collate,
    voc_detection_split,
)
from nnatlas.data.digits import DIGITS_CLASSES, load_digits_split
from nnatlas.data.registry import (
    DataBundle,
    DetectionBundle,
    SegmentationBundle,
    SequenceBundle,
    register_dataset,
)
from nnatlas.data.segmentation import VOC_CLASSES, segfolder_split, voc_colormap, voc_split
from nnatlas.data.sequences import SEQUENCE_TASKS, make_sequence_split
from nnatlas.data.shapes import SHAPE_CLASSES, ShapesDataset
from nnatlas.data.torchvision_sets import (
    FASHION_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    cifar_split,
    image_folder_split,
    mnist_split,
)
from nnatlas.data.transforms import (
    JointTransformedDataset,
    TransformedDataset,
    augmentation,
    detection_transform,
    segmentation_transform,
)


def _augmented(train: Dataset, augment: str, size: int, *, flip: bool) -> Dataset:
    # The embedded sets are tensors already standardised: geometric transforms only, edges replicated.
    ops = augmentation(augment, image_size=size, flip=flip, padding_mode="edge")
    if not ops:
        return train
    from torchvision.transforms import v2

    return TransformedDataset(train, v2.Compose(ops))


def _fixed_size(name: str, image_size: int | None, native: int) -> None:
    if image_size is not None and image_size != native:
        raise ValueError(
            f"image_size: {name} images are {native}x{native} and are not resized; got {image_size} "
            "(leave it unset)"
        )


# ---------------------------------------------------------------------------- embedded images


@register_dataset("digits", task="classification")
def _digits(*, seed: int = 0, augment: str = "none", image_size: int | None = None) -> DataBundle:
    """scikit-learn's 1,797 handwritten digits, 8x8 grey, 10 classes (embedded)."""
    check_int("seed", seed, minimum=0)
    _fixed_size("digits", image_size, 8)
    train, val = load_digits_split(seed=seed)
    train = _augmented(train, augment, 8, flip=False)
    return DataBundle("digits", "classification", train, val, 10, 1, (8, 8), DIGITS_CLASSES)


@register_dataset("shapes", task="classification")
def _shapes(
    *,
    seed: int = 0,
    image_size: int | None = None,
    num_train: int = 4000,
    num_val: int = 1000,
    augment: str = "none",
) -> DataBundle:
    """Seeded circles, squares, triangles and crosses on noisy backgrounds, RGB (embedded, 32x32 default)."""
    check_int("seed", seed, minimum=0)
    size = 32 if image_size is None else check_int("image_size", image_size, minimum=8)
    check_int("num_train", num_train)
    check_int("num_val", num_val)
    # Train and validation scenes come from different seeds, so they never share a scene.
    train = _augmented(ShapesDataset(num_train, size=size, seed=2 * seed), augment, size, flip=True)
    val = ShapesDataset(num_val, size=size, seed=2 * seed + 1)
    return DataBundle(
        "shapes", "classification", train, val, len(SHAPE_CLASSES), 3, (size, size), SHAPE_CLASSES
    )


# ---------------------------------------------------------------------------- images from files


@register_dataset("mnist", task="classification", from_files=True)
def _mnist(
    *, data_dir: Any = None, download: bool = False, augment: str = "none", image_size: int | None = None
) -> DataBundle:
    """MNIST handwritten digits, 28x28 grey, 10 classes (IDX files, LeCun et al. 1998)."""
    _fixed_size("mnist", image_size, 28)
    train, val = mnist_split(data_dir, download=download, augment=augment)
    return DataBundle("mnist", "classification", train, val, 10, 1, (28, 28), DIGITS_CLASSES)


@register_dataset("fashion_mnist", task="classification", from_files=True)
def _fashion_mnist(
    *, data_dir: Any = None, download: bool = False, augment: str = "none", image_size: int | None = None
) -> DataBundle:
    """Fashion-MNIST clothes, 28x28 grey, 10 classes (IDX files, Xiao et al. 2017)."""
    _fixed_size("fashion_mnist", image_size, 28)
    train, val = mnist_split(data_dir, download=download, augment=augment, fashion=True)
    return DataBundle("fashion_mnist", "classification", train, val, 10, 1, (28, 28), FASHION_CLASSES)


def _cifar(name: str, hundred: bool, data_dir: Any, download: bool, augment: str, image_size: int | None):
    _fixed_size(name, image_size, 32)
    train, val = cifar_split(data_dir, download=download, augment=augment, hundred=hundred)
    return DataBundle(name, "classification", train, val, len(train.classes), 3, (32, 32), train.classes)


@register_dataset("cifar10", task="classification", from_files=True)
def _cifar10(
    *, data_dir: Any = None, download: bool = False, augment: str = "none", image_size: int | None = None
) -> DataBundle:
    """CIFAR-10, 32x32 RGB, 10 classes (Python pickles, Krizhevsky 2009)."""
    return _cifar("cifar10", False, data_dir, download, augment, image_size)


@register_dataset("cifar100", task="classification", from_files=True)
def _cifar100(
    *, data_dir: Any = None, download: bool = False, augment: str = "none", image_size: int | None = None
) -> DataBundle:
    """CIFAR-100, 32x32 RGB, 100 fine classes (Python pickles, Krizhevsky 2009)."""
    return _cifar("cifar100", True, data_dir, download, augment, image_size)


@register_dataset("imagefolder", task="classification", from_files=True)
def _imagefolder(
    *,
    data_dir: Any = None,
    augment: str = "none",
    image_size: int | None = None,
    on_bad_image: str = "error",
) -> DataBundle:
    """Your images in data_dir/train/<class>/ and data_dir/val/<class>/, RGB, resized (224 default)."""
    size = 224 if image_size is None else check_int("image_size", image_size, minimum=8)
    train, val = image_folder_split(data_dir, augment=augment, image_size=size, on_bad_image=on_bad_image)
    classes = tuple(train.classes)
    return DataBundle("imagefolder", "classification", train, val, len(classes), 3, (size, size), classes)


# ---------------------------------------------------------------------------- segmentation

#: Grey padding of the embedded scenes (their backgrounds are uniform in [0, 1]); the mask is padded with 255.
SHAPES_FILL = 0.5


@register_dataset("shapes", task="segmentation")
def _shapes_segmentation(
    *,
    seed: int = 0,
    image_size: int | None = None,
    num_train: int = 4000,
    num_val: int = 1000,
    augment: str = "none",
) -> SegmentationBundle:
    """Seeded scenes of 1-4 circles, squares, triangles and crosses with per-pixel masks (embedded, 64x64).

    Class ``k + 1`` is ``SHAPE_CLASSES[k]``, 0 the background; the same scenes as the classification set's
    renderer with 1-4 objects, so several classes meet in one image.
    """
    check_int("seed", seed, minimum=0)
    size = 64 if image_size is None else check_int("image_size", image_size, minimum=8)
    check_int("num_train", num_train)
    check_int("num_val", num_val)
    check_choice("augment", augment, AUGMENT_PRESETS)
    # Train and validation scenes come from different seeds, so they never share a scene.
    train = ShapesDataset(num_train, size=size, task="segmentation", seed=2 * seed)
    if augment != "none":
        train = JointTransformedDataset(
            train, segmentation_transform(augment, image_size=size, fill=SHAPES_FILL)
        )
    val = ShapesDataset(num_val, size=size, task="segmentation", seed=2 * seed + 1)
    classes = ("background", *SHAPE_CLASSES)
    return SegmentationBundle(
        name="shapes",
        train=train,
        val=val,
        num_classes=len(classes),
        in_channels=3,
        image_size=(size, size),
        classes=classes,
        palette=voc_colormap(len(classes)),
    )


@register_dataset("voc", task="segmentation", from_files=True)
def _voc(
    *,
    data_dir: Any = None,
    download: bool = False,
    augment: str = "none",
    image_size: int | None = None,
    on_bad_image: str = "error",
) -> SegmentationBundle:
    """Pascal VOC 2012, 21 classes, 255 on object boundaries, RGB (VOCdevkit files, 512x512 default)."""
    size = 512 if image_size is None else check_int("image_size", image_size, minimum=8)
    train, val = voc_split(
        data_dir, download=download, augment=augment, image_size=size, on_bad_image=on_bad_image
    )
    return SegmentationBundle(
        name="voc",
        train=train,
        val=val,
        num_classes=len(VOC_CLASSES),
        in_channels=3,
        image_size=(size, size),
        classes=VOC_CLASSES,
        palette=voc_colormap(len(VOC_CLASSES)),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


@register_dataset("segfolder", task="segmentation", from_files=True)
def _segfolder(
    *,
    data_dir: Any = None,
    augment: str = "none",
    image_size: int | None = None,
    on_bad_image: str = "error",
    num_classes: int | None = None,
) -> SegmentationBundle:
    """Your images and PNG masks in data_dir/{train,val}/{images,masks}/, RGB (256x256 default).

    ``num_classes`` given (2 to 255) is checked against each mask as it is read; ``None`` reads every mask
    once when loading and takes the largest class id (other than 255) plus one.
    """
    size = 256 if image_size is None else check_int("image_size", image_size, minimum=8)
    train, val, k = segfolder_split(
        data_dir, augment=augment, image_size=size, on_bad_image=on_bad_image, num_classes=num_classes
    )
    own = train.palette or val.palette  # the palette of palette-PNG masks, 768 values
    palette = (
        tuple(tuple(own[3 * i : 3 * i + 3]) for i in range(k))
        if own and len(own) >= 3 * k
        else voc_colormap(k)
    )
    return SegmentationBundle(
        name="segfolder",
        train=train,
        val=val,
        num_classes=k,
        in_channels=3,
        image_size=(size, size),
        classes=("background", *(f"class_{i}" for i in range(1, k))),
        palette=palette,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


# ---------------------------------------------------------------------------- detection


def _palette(k: int) -> tuple[tuple[int, int, int], ...]:
    colours = voc_colormap(256)
    return tuple(colours[i % 256] for i in range(k))


@register_dataset("shapes", task="detection")
def _shapes_detection(
    *,
    seed: int = 0,
    image_size: int | None = None,
    num_train: int = 4000,
    num_val: int = 1000,
    augment: str = "none",
) -> DetectionBundle:
    """Seeded scenes of 1-4 circles, squares, triangles and crosses, boxed, instance masks (embedded, 64x64).

    Label ``k + 1`` is ``SHAPE_CLASSES[k]`` (``num_classes`` 5 with the background). At the default 64x64
    the objects' boxes are 7 to 44 pixels on their shorter side, 20 at the median (an occluded object
    keeps the box of its visible part; 1.3 % of them are under 8 pixels). Training scenes follow
    ``augment`` (padded with grey), validation scenes are as rendered; every image is ``S x S``.
    """
    check_int("seed", seed, minimum=0)
    size = 64 if image_size is None else check_int("image_size", image_size, minimum=8)
    check_int("num_train", num_train)
    check_int("num_val", num_val)
    check_choice("augment", augment, AUGMENT_PRESETS)
    # Train and validation scenes come from different seeds, so they never share a scene.
    # Rendered at S x S already: without augmentation only the box checks run.
    train_tf = detection_transform(augment, image_size=size, fill=SHAPES_FILL) if augment != "none" else None
    train = ShapesDetection(num_train, size=size, seed=2 * seed, transform=train_tf)
    val = ShapesDetection(num_val, size=size, seed=2 * seed + 1)
    return DetectionBundle(
        name="shapes",
        train=train,
        val=val,
        num_classes=len(SHAPES_DETECTION_CLASSES),
        classes=SHAPES_DETECTION_CLASSES,
        image_size=(size, size),
        palette=_palette(len(SHAPES_DETECTION_CLASSES)),
        collate_fn=detection_collate,
        has_masks=True,
    )


@register_dataset("voc", task="detection", from_files=True)
def _voc_detection(
    *,
    data_dir: Any = None,
    download: bool = False,
    augment: str = "none",
    image_size: int | None = None,
    on_bad_image: str = "error",
) -> DetectionBundle:
    """Pascal VOC 2012 boxes of 20 classes, difficult objects iscrowd=1, RGB (VOCdevkit XML, 512 max side)."""
    size = 512 if image_size is None else check_int("image_size", image_size, minimum=8)
    train, val = voc_detection_split(
        data_dir, download=download, augment=augment, image_size=size, on_bad_image=on_bad_image
    )
    return DetectionBundle(
        name="voc",
        train=train,
        val=val,
        num_classes=len(VOC_CLASSES),
        classes=VOC_CLASSES,
        image_size=(size, size),
        palette=_palette(len(VOC_CLASSES)),
        collate_fn=detection_collate,
    )


@register_dataset("coco", task="detection", from_files=True)
def _coco(
    *,
    data_dir: Any = None,
    download: bool = False,
    augment: str = "none",
    image_size: int | None = None,
    on_bad_image: str = "error",
) -> DetectionBundle:
    """COCO 2017 instances: boxes and masks, category ids mapped to labels 1..K (JSON, 640 max side)."""
    if download:
        raise ValueError(
            "download: coco is not downloaded by nnatlas; fetch train2017.zip, val2017.zip and "
            "annotations_trainval2017.zip from cocodataset.org and unpack them into data_dir"
        )
    size = 640 if image_size is None else check_int("image_size", image_size, minimum=8)
    train, val = coco_split(data_dir, augment=augment, image_size=size, on_bad_image=on_bad_image)
    return DetectionBundle(
        name="coco",
        train=train,
        val=val,
        num_classes=len(train.classes),
        classes=train.classes,
        image_size=(size, size),
        palette=_palette(len(train.classes)),
        collate_fn=detection_collate,
        has_masks=train.has_masks,
    )


# ---------------------------------------------------------------------------- token sequences

_SEQUENCE_DESCRIPTIONS = {
    "copy": "Token sequences whose target is the source (generated, seeded).",
    "reverse": "Token sequences whose target is the source reversed (generated, seeded).",
    "sort": "Token sequences whose target is the source sorted ascending (generated, seeded).",
    "add": "Two numbers digit by digit in base num_symbols; the target is their sum (generated, seeded).",
}


def check_lengths(min_len: Any, max_len: Any) -> None:
    """``1 <= min_len <= max_len``, both ints."""
    check_int("min_len", min_len)
    check_int("max_len", max_len)
    if min_len > max_len:
        raise InvalidValue("min_len", f"must be <= max_len ({max_len})", min_len)


def _sequence_loader(task: str):
    def load(
        *,
        num_train: int = 20_000,
        num_val: int = 1_000,
        min_len: int = 1,
        max_len: int = 12,
        num_symbols: int = 10,
        seed: int = 0,
    ) -> SequenceBundle:
        check_int("num_train", num_train)
        check_int("num_val", num_val)
        check_lengths(min_len, max_len)
        check_int("num_symbols", num_symbols, minimum=2)
        check_int("seed", seed, minimum=0)
        train, val = make_sequence_split(
            task,
            num_train=num_train,
            num_val=num_val,
            min_len=min_len,
            max_len=max_len,
            num_symbols=num_symbols,
            seed=seed,
        )
        return SequenceBundle(
            name=task,
            train=train,
            val=val,
            vocab_size=train.vocab_size,
            max_src_len=train.max_src_len,
            max_tgt_len=train.max_tgt_len,
            num_symbols=num_symbols,
        )

    load.__name__ = load.__qualname__ = f"_{task}"
    load.__doc__ = (
        f"{_SEQUENCE_DESCRIPTIONS[task]}\n\n"
        "Held-out validation sources; lengths uniform in min_len..max_len (operand digits for add)."
    )
    return load


for _task in SEQUENCE_TASKS:
    register_dataset(_task, task="seq2seq")(_sequence_loader(_task))
