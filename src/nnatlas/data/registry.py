"""The data-set registry: a plain dict filled by the :func:`~nnatlas.data.register_dataset` decorator, as the model registry.

A data set is registered under a task (the kind of problem it poses) and a name: ``digits`` is a
classification set, ``reverse`` the data set of a seq2seq run. One name may serve several tasks when the
same data poses several problems: ``shapes`` is a classification, a segmentation and a detection set (the
same scenes, with per-pixel masks or boxes), ``voc`` a segmentation and a detection set.
:func:`~nnatlas.data.get_dataset_info` and :func:`~nnatlas.data.load_dataset` take ``task=``; without it a name registered under one
task resolves as before, and a name registered under several raises ``ValueError`` asking for ``task=``.
:func:`~nnatlas.data.load_dataset` returns a :class:`~nnatlas.data.DataBundle` (images), a
:class:`~nnatlas.data.SegmentationBundle` (images with per-pixel masks), a
:class:`~nnatlas.data.DetectionBundle` (images with boxes) or a :class:`~nnatlas.data.SequenceBundle`
(token sequences); :func:`~nnatlas.data.list_datasets` filters names with ``fnmatch``.

Every loader of a task accepts that task's shared options (``SHARED_OPTIONS``), so one call fits
every data set of the task; an option a data set has no use for is checked and then ignored (``data_dir``
for the embedded ``digits``). Any other unknown keyword raises ``TypeError`` naming it.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from torch.utils.data import Dataset

from nnatlas._choices import AUGMENT_PRESETS, ON_BAD_IMAGE
from nnatlas._suggest import unknown_choice_message
from nnatlas._validate import check_bool, check_choice, check_int, check_path
from nnatlas.data.sequences import SequenceDataset, pad_collate

#: The kinds of problem a data set is registered under (the ``task=`` of
#: :func:`~nnatlas.data.load_dataset`).
TASKS = ("classification", "segmentation", "detection", "seq2seq")

#: Options every loader of a task accepts, whether it uses them or not.
SHARED_OPTIONS: dict[str, tuple[str, ...]] = {
    "classification": ("seed", "data_dir", "download", "augment", "image_size", "on_bad_image"),
    "segmentation": ("seed", "data_dir", "download", "augment", "image_size", "on_bad_image"),
    "detection": ("seed", "data_dir", "download", "augment", "image_size", "on_bad_image"),
}


@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows about one data set.

    ``loader`` takes keyword arguments only and returns a :class:`DataBundle`, :class:`SegmentationBundle`,
    :class:`DetectionBundle` or :class:`SequenceBundle`; ``description`` is the first line of its
    docstring; ``from_files`` marks the sets read from ``data_dir`` (the others are embedded or generated).
    """

    name: str
    task: str
    loader: Callable[..., Any]
    description: str = ""
    from_files: bool = False


@dataclass
class DataBundle:
    """Train and validation sets of one image data set, with what a model needs to know about them.

    Samples are ``(image (C, H, W) float32, label int)`` for classification; ``collate_fn`` is the
    :class:`~torch.utils.data.DataLoader` collate function to use (``None``: torch's default).
    """

    name: str
    task: str
    train: Dataset
    val: Dataset
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    classes: tuple[str, ...]
    collate_fn: Callable | None = None


@dataclass(kw_only=True)
class SequenceBundle:
    """Train and validation sets of a sequence task (see :mod:`nnatlas.data.sequences`).

    Samples are ``(src (S,), tgt (T,))`` int64 token ids of their own lengths; ``collate_fn``
    (:func:`~nnatlas.data.pad_collate`) pads a batch to ``(B, S)`` and ``(B, T)``.
    ``max_src_len`` / ``max_tgt_len`` bound ``S`` and ``T`` (a model's positional table needs
    ``max(max_src_len, max_tgt_len)``).
    """

    name: str
    task: str = "seq2seq"
    train: SequenceDataset
    val: SequenceDataset
    vocab_size: int
    max_src_len: int
    max_tgt_len: int
    num_symbols: int
    collate_fn: Callable = field(default=pad_collate)


@dataclass(kw_only=True)
class SegmentationBundle:
    """Train and validation sets of a semantic segmentation data set (see :mod:`nnatlas.data.segmentation`).

    Samples are ``(image (C, H, W) float32, mask (H, W) int64)``: the mask holds a class id in
    ``[0, num_classes)`` per pixel, or ``ignore_index`` (255) where a pixel has no label (object boundaries
    in VOC, padding added by a crop). Every sample of a split has ``image_size`` ``(H, W)``, so torch's
    default collate applies (``collate_fn`` is ``None``).

    **Arguments**

    - ``num_classes``: ``K``, the background (class 0) included;
    - ``classes``: ``K`` names, background first;
    - ``palette``: ``K`` RGB triples in ``[0, 255]`` for coloured masks (class ``k`` is drawn in
      ``palette[k]``); the Pascal VOC colour map unless the masks bring their own;
    - ``mean``, ``std``: the per-channel normalisation the images went through after scaling to
      ``[0, 1]`` (``None``: none; an image to predict on must be prepared the same way).
    """

    name: str
    task: str = "segmentation"
    train: Dataset
    val: Dataset
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    classes: tuple[str, ...]
    ignore_index: int = 255
    palette: tuple[tuple[int, int, int], ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    collate_fn: Callable | None = None


@dataclass(kw_only=True)
class DetectionBundle:
    """Train and validation sets of an object detection data set (see :mod:`nnatlas.data.detection`).

    Samples are ``(image (3, H, W) float32 in [0, 1], target)``, the image not normalised (detectors
    normalise inside, as torchvision's do), with ``target``:

    - ``boxes`` ``(N, 4)`` float32, ``(x1, y1, x2, y2)`` in pixels of the image, inside it, each at least
      one pixel wide and high (``(0, 4)`` for an image without objects);
    - ``labels`` ``(N,)`` int64 in ``[1, num_classes)`` (0 is the background, torchvision's convention);
    - ``image_id`` int; ``area`` ``(N,)`` float32 (pixels; the segment's area where there are masks);
    - ``iscrowd`` ``(N,)`` int64: 1 for objects an evaluation ignores (COCO crowds, VOC ``difficult``);
    - ``masks`` ``(N, H, W)`` uint8 (1 inside object ``n``) when ``has_masks``.

    Images of a split may differ in size, so a batch is two lists: ``collate_fn``
    (:func:`~nnatlas.data.detection_collate`) makes ``(list[image], list[target])``.

    **Arguments**

    - ``num_classes``: ``K``, the background included (labels run from 1 to ``K - 1``);
    - ``classes``: ``K`` names, ``"background"`` first;
    - ``image_size``: the nominal ``(H, W)``: what training images are cropped or resized to and what no
      validation image exceeds;
    - ``palette``: ``K`` RGB triples in ``[0, 255]`` to draw class ``k`` in ``palette[k]`` (the Pascal VOC
      colour map).
    """

    name: str
    task: str = "detection"
    train: Dataset
    val: Dataset
    num_classes: int
    classes: tuple[str, ...]
    in_channels: int = 3
    image_size: tuple[int, int]
    palette: tuple[tuple[int, int, int], ...]
    collate_fn: Callable
    has_masks: bool = False


#: ``(task, name) -> info``: one name may be registered under several tasks.
_DATASETS: dict[tuple[str, str], DatasetInfo] = {}


def register_dataset(
    name: str | None = None, *, task: str, from_files: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that records a loader under ``(task, name)`` (``name`` default: the function's name)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        key = name or fn.__name__
        if (task, key) in _DATASETS:
            raise ValueError(f"{task} data set {key!r} is already registered")
        doc = (fn.__doc__ or "").strip().splitlines()
        _DATASETS[task, key] = DatasetInfo(
            name=key, task=task, loader=fn, description=doc[0] if doc else "", from_files=from_files
        )
        return fn

    return wrap


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(unknown_choice_message("task", task, TASKS))


def list_datasets(pattern: str = "*", task: str | None = None) -> list[str]:
    """Sorted names (each once) of registered data sets matching the fnmatch ``pattern`` and, if given,
    ``task``.

    >>> list_datasets(task="seq2seq")
    ['add', 'copy', 'reverse', 'sort']
    >>> list_datasets("*mnist")
    ['fashion_mnist', 'mnist']
    """
    if task is not None:
        _check_task(task)
    return sorted({n for (t, n) in _DATASETS if fnmatch.fnmatch(n, pattern) and (task is None or t == task)})


def get_dataset_info(name: str, task: str | None = None) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` registered under ``task``.

    With ``task=None``, ``name`` must be registered under one task only; a name of several tasks raises
    ``ValueError`` naming them. An unknown name raises ``ValueError`` with the closest names of ``task``
    (of every task when ``task`` is ``None``) first.
    """
    if task is not None:
        _check_task(task)
        info = _DATASETS.get((task, name))
        if info is not None:
            return info
        others = sorted(t for (t, n) in _DATASETS if n == name)
        message = unknown_choice_message(f"{task} data set", name, list_datasets(task=task))
        if others:
            message = (
                f"{task} data set {name!r} does not exist ({name!r} is a {' and '.join(others)} data set)"
            )
            message += f"; {task} data sets: {', '.join(list_datasets(task=task)) or 'none'}"
        raise ValueError(message)
    found = [info for (t, n), info in _DATASETS.items() if n == name]
    if not found:
        raise ValueError(unknown_choice_message("data set", name, list_datasets()))
    if len(found) > 1:
        tasks = " or ".join(f"task={info.task!r}" for info in sorted(found, key=lambda i: i.task))
        raise ValueError(f"data set {name!r} exists for several tasks; pass {tasks}")
    return found[0]


def load_dataset(
    name: str, *, task: str | None = None, **kwargs: Any
) -> DataBundle | SegmentationBundle | DetectionBundle | SequenceBundle:
    """Load a registered data set: a :class:`DataBundle` (classification), a :class:`SegmentationBundle`
    (segmentation), a :class:`DetectionBundle` (detection) or a :class:`SequenceBundle` (seq2seq).

    ``task`` picks among the data sets of that name (see :func:`get_dataset_info`). ``kwargs`` go to the
    data set's loader; the task's ``SHARED_OPTIONS`` are checked and passed on only to loaders that
    take them. An unknown name raises ``ValueError`` listing the closest names first; an argument the data
    set does not take raises ``TypeError`` listing those it takes.

    The embedded digits: 1,437 training and 360 validation images ``(1, 8, 8)`` of 10 classes:

    >>> bundle = load_dataset("digits")
    >>> bundle.num_classes, bundle.in_channels, bundle.image_size, len(bundle.train), len(bundle.val)
    (10, 1, (8, 8), 1437, 360)
    """
    info = get_dataset_info(name, task)
    takes = {p.name for p in inspect.signature(info.loader).parameters.values() if p.kind is p.KEYWORD_ONLY}
    shared = SHARED_OPTIONS.get(info.task, ())
    for key in kwargs:
        if key not in takes and key not in shared:
            accepted = ", ".join(sorted(takes | set(shared)))
            raise TypeError(f"data set {name!r} takes no argument {key!r}; it takes: {accepted}")
    _check_shared_options(**{k: v for k, v in kwargs.items() if k in shared})
    return info.loader(**{k: v for k, v in kwargs.items() if k in takes})


def _check_shared_options(
    *,
    seed: Any = 0,
    data_dir: Any = None,
    download: Any = False,
    augment: Any = "none",
    image_size: Any = None,
    on_bad_image: Any = "error",
) -> None:
    """Check the options shared by the image data sets; ``ValueError`` naming the first bad one."""
    check_int("seed", seed, minimum=0)
    check_path("data_dir", data_dir)
    check_bool("download", download)
    check_choice("augment", augment, AUGMENT_PRESETS)
    if image_size is not None:
        check_int("image_size", image_size, minimum=8)
    check_choice("on_bad_image", on_bad_image, ON_BAD_IMAGE)


class DatasetLoaders(Mapping[str, Callable[..., Any]]):
    """A read-only, live view ``name -> load`` of the registered data sets of one task.

    ``view[name](**kwargs)`` is ``load_dataset(name, task=view.task, **kwargs)``.
    """

    def __init__(self, task: str) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
        self.task = task

    def __getitem__(self, name: str) -> Callable[..., Any]:
        if (self.task, name) not in _DATASETS:
            raise KeyError(name)
        return partial(load_dataset, name, task=self.task)

    def __iter__(self) -> Iterator[str]:
        return iter([n for (t, n) in _DATASETS if t == self.task])

    def __len__(self) -> int:
        return sum(t == self.task for (t, _) in _DATASETS)

    def __repr__(self) -> str:
        return f"DatasetLoaders(task={self.task!r}: {', '.join(self)})"
