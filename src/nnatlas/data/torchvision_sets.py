"""Real data sets on disk, read through torchvision: MNIST, Fashion-MNIST, CIFAR-10/100 and image folders.

``data_dir`` holds the files in their published layout (what ``download=True`` fetches):

| name | files under ``data_dir`` |
| --- | --- |
| ``mnist`` | ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (IDX, LeCun et al. 1998) |
| ``fashion_mnist`` | ``FashionMNIST/raw/...`` (same IDX layout, Xiao et al. 2017) |
| ``cifar10`` | ``cifar-10-batches-py/data_batch_{1..5}``, ``test_batch``, ``batches.meta`` (Krizhevsky 2009) |
| ``cifar100`` | ``cifar-100-python/train``, ``test``, ``meta`` |
| ``imagefolder`` | ``train/<class>/*.png|jpg`` and ``val/<class>/...`` (``test/`` also accepted) |

The published test split is the validation set. What is wrong with the data raises :class:`DataError`
(a ``ValueError``) with one line that names the file and what is wrong, before training starts:

- a missing folder or file;
- an IDX file whose header does not fit: magic number, image size, a payload shorter or longer than the
  header says, image and label counts that differ;
- a CIFAR batch that is no pickle, lacks ``data`` or its labels, or whose ``data`` is not ``(N, 3072)``
  uint8;
- a label outside ``[0, num_classes)``, or class names fewer than the labels need.

CIFAR batches are Python pickles. They are read with a restricted unpickler that admits nothing but
NumPy's array reconstruction, so a foreign file in the data folder cannot run code; after a download the
files are also checked against the published MD5 sums.

Image folders are listed when loaded and every image is opened when its sample is read; an unreadable
image follows ``on_bad_image`` (see :class:`ImageFolder`).
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torchvision
from PIL import Image
from torch.utils.data import Dataset

from nnatlas._choices import ON_BAD_IMAGE
from nnatlas._validate import check_choice
from nnatlas.data.transforms import build_transform

logger = logging.getLogger(__name__)

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: The ten Fashion-MNIST class names, in the order of their labels.
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


class DataError(ValueError):
    """A data folder or file is missing, incomplete, corrupt or unreadable; the message is one line.

    Raised in a :class:`~torch.utils.data.DataLoader` worker, the error reaches the main process rebuilt
    by torch as ``DataError(text)``, where ``text`` is "Caught DataError in DataLoader worker process N"
    followed by the worker's traceback (``torch._utils.ExceptionWrapper.reraise``). The constructor keeps
    the traceback's last line, the original message, so ``str(error)`` is the same one line in both places.
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(_original_message(str(message)))


def _original_message(text: str) -> str:
    if not (text.startswith("Caught ") and "\nOriginal Traceback" in text):
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    _, found, message = last.partition("DataError: ")
    return message if found else last


def _check_labels(name: str, labels: Any, num_classes: int, files: Sequence[tuple[Path, int]], names: str):
    """Every label in ``[0, num_classes)``; ``files`` are ``(file, number of labels)`` in reading order."""
    labels = np.asarray(labels, dtype=np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size == 0:
        return
    ends = np.cumsum([count for _, count in files])  # label i comes from the first file with i < end
    k = int(np.searchsorted(ends, bad[0], side="right"))
    path, index = files[k][0], int(bad[0]) - (int(ends[k - 1]) if k else 0)
    more = f"; {bad.size} labels are out of range" if bad.size > 1 else ""
    raise DataError(
        f"{name}: label {int(labels[bad[0]])} at index {index} of {str(path)!r} is outside "
        f"[0, {num_classes}) ({names}){more}"
    )


def _root(data_dir: str | os.PathLike | None, name: str, download: bool) -> Path:
    if data_dir is None:
        raise DataError(f"data set {name!r} is read from files: data_dir is required (got None)")
    root = Path(data_dir).expanduser()
    if not download and not root.is_dir():
        raise DataError(f"{name}: data folder {str(root)!r} does not exist; pass download=True (--download)")
    return root


# ---------------------------------------------------------------------------- MNIST family


IDX_UBYTE = 0x08  # IDX type code of unsigned bytes
MNIST_SIDE = 28


def _idx_dims(name: str, path: Path, ndim: int, noun: str, item_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The sizes in the header of an IDX file of unsigned bytes, after checking it against the file.

    IDX (LeCun et al. 1998): a big-endian int32 magic number ``0x0000TTDD`` (type ``TT``, ``0x08`` =
    unsigned byte; ``DD`` dimensions), ``DD`` big-endian int32 sizes, then the items row-major, one
    byte each: the file holds exactly ``4 + 4 * DD + prod(sizes)`` bytes.
    """
    where = f"{name}: IDX file {str(path)!r}"
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
    expected = IDX_UBYTE << 8 | ndim
    if len(head) < 4:
        raise DataError(f"{where} is truncated: {size} bytes, not even the 4-byte magic number")
    magic = int.from_bytes(head[:4], "big")
    if magic != expected:
        raise DataError(
            f"{name}: bad magic number 0x{magic:08x} in IDX file {str(path)!r} (expected 0x{expected:08x}: "
            f"unsigned bytes in {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    if len(head) < 4 + 4 * ndim:
        raise DataError(f"{where} is truncated: {size} bytes, shorter than its {4 + 4 * ndim}-byte header")
    dims = struct.unpack(f">{ndim}I", head[4:])
    if dims[1:] != item_shape:
        shown = "x".join(map(str, dims[1:]))
        raise DataError(f"{where} holds {shown} {noun}; {name} {noun} are {'x'.join(map(str, item_shape))}")
    count, item = dims[0], int(np.prod(item_shape, dtype=np.int64))
    payload = size - len(head)
    if payload < count * item:
        raise DataError(f"{where} is truncated: header says {count} {noun}, file holds {payload // item}")
    if payload > count * item:
        raise DataError(
            f"{where} holds {payload - count * item} bytes more than the {count} {noun} its header says"
        )
    return dims


def _check_idx_files(name: str, raw: Path) -> None:
    for prefix in ("train", "t10k"):
        images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
        n = _idx_dims(name, images, 3, "images", (MNIST_SIDE, MNIST_SIDE))[0]
        m = _idx_dims(name, labels, 1, "labels", ())[0]
        if n != m:
            raise DataError(f"{name}: {str(images)!r} holds {n} images but {str(labels)!r} holds {m} labels")
        if n == 0:
            raise DataError(f"{name}: {str(images)!r} holds no images")


def _mnist_like(cls: type, name: str, data_dir: Any, download: bool, transforms: tuple) -> tuple:
    root = _root(data_dir, name, download)
    raw = root / cls.__name__ / "raw"
    files = [os.path.splitext(os.path.basename(u))[0] for u, _ in cls.resources]
    present = all((raw / f).is_file() for f in files)
    try:
        if download and not present:
            cls(str(root), train=True, download=True)  # fetches the four files, checked against their MD5
            present = True
        if present:  # our checks first, so a corrupt file is named with what is wrong with it
            _check_idx_files(name, raw)
        train = cls(str(root), train=True, transform=transforms[0])
        val = cls(str(root), train=False, transform=transforms[1])
    except DataError:
        raise
    except RuntimeError as e:
        if "not found" in str(e):
            raise DataError(
                f"{name}: no data in {str(raw)!r} (expected {', '.join(files)}); pass download=True (--download)"
            ) from None
        said = " ".join(str(e).split())  # a failed download lists every mirror on lines of its own
        raise DataError(f"{name}: cannot read the IDX files in {str(raw)!r}: {said}") from None
    except (AssertionError, ValueError, OSError, KeyError) as e:
        raise DataError(f"{name}: corrupt IDX files in {str(raw)!r} ({type(e).__name__}: {e})") from None
    for split, prefix in ((train, "train"), (val, "t10k")):
        labels = raw / f"{prefix}-labels-idx1-ubyte"
        sources = [(labels, len(split.targets))]
        _check_labels(
            name, split.targets, len(cls.classes), sources, f"{name} has {len(cls.classes)} classes"
        )
    return train, val


def mnist_split(
    data_dir: Any, *, download: bool = False, augment: str = "none", fashion: bool = False
) -> tuple[Dataset, Dataset]:
    """``(train, test)`` of MNIST (or Fashion-MNIST): ``((1, 28, 28) float32, int)`` samples."""
    cls = torchvision.datasets.FashionMNIST if fashion else torchvision.datasets.MNIST
    mean, std = (FASHION_MEAN, FASHION_STD) if fashion else (MNIST_MEAN, MNIST_STD)
    # Digits are not flipped; clothes are (a mirrored shoe is still a shoe).
    train_tf = build_transform(augment, image_size=28, mean=mean, std=std, flip=fashion)
    val_tf = build_transform("none", image_size=28, mean=mean, std=std)
    name = "fashion_mnist" if fashion else "mnist"
    return _mnist_like(cls, name, data_dir, download, (train_tf, val_tf))


# ---------------------------------------------------------------------------- CIFAR


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and NumPy arrays; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 writes bytes: encode(str, "latin1")
            return _latin1_encode
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing to call _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors)


def read_cifar_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """One CIFAR batch file (a pickled dict) through the restricted unpickler."""
    with open(path, "rb") as f:
        obj = _ArrayUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(f"expected a dict, found {type(obj).__name__}")
    return obj


class CIFAR(Dataset):
    """CIFAR-10 or CIFAR-100 from the python-pickle batches (Krizhevsky 2009).

    Same files, order and samples as ``torchvision.datasets.CIFAR10`` / ``CIFAR100``: ``data`` is
    ``(N, 32, 32, 3)`` uint8 (HWC), ``targets`` the labels; a sample is ``(transform(image), label)``.
    """

    def __init__(
        self, root: str | os.PathLike, *, train: bool = True, fine: bool = True, hundred: bool = False,
        download: bool = False, transform: Any = None,
    ) -> None:  # fmt: skip
        spec = torchvision.datasets.CIFAR100 if hundred else torchvision.datasets.CIFAR10
        self.name = "cifar100" if hundred else "cifar10"
        self.root, self.transform = Path(root), transform
        folder = self.root / spec.base_folder
        files = [name for name, _ in (spec.train_list if train else spec.test_list)]
        if download and not all((folder / f).is_file() for f in [*files, spec.meta["filename"]]):
            from torchvision.datasets.utils import check_integrity, download_and_extract_archive

            download_and_extract_archive(spec.url, str(self.root), filename=spec.filename, md5=spec.tgz_md5)
            for f, md5 in [*spec.train_list, *spec.test_list, (spec.meta["filename"], spec.meta["md5"])]:
                if not check_integrity(str(folder / f), md5):
                    raise DataError(f"{self.name}: {str(folder / f)!r} does not match its published MD5")
        missing = [f for f in [*files, spec.meta["filename"]] if not (folder / f).is_file()]
        if missing:
            raise DataError(
                f"{self.name}: {str(folder)!r} lacks {', '.join(missing)}; pass download=True (--download)"
            )
        label_key = "labels" if not hundred else ("fine_labels" if fine else "coarse_labels")
        batches = [self._batch(folder / f, label_key) for f in files]
        self.data = np.concatenate([d for d, _ in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.targets = [int(t) for _, labels in batches for t in labels]  # (N, 32, 32, 3) above
        if len(self.data) == 0:
            raise DataError(f"{self.name}: the batches in {str(folder)!r} hold no images")
        meta_path = folder / spec.meta["filename"]
        meta = self._read(meta_path)
        key = spec.meta["key"] if hundred else "label_names"
        if hundred and not fine:
            key = "coarse_label_names"
        names = meta.get(key)
        if not isinstance(names, (list, tuple)) or not all(isinstance(c, (str, bytes)) for c in names):
            found = f"no {key!r}" if names is None else f"{key!r} that is not a list of names"
            raise DataError(f"{self.name}: {str(meta_path)!r} has {found}")
        self.classes = tuple(c.decode("latin1") if isinstance(c, bytes) else c for c in names)
        sources = [(folder / f, len(labels)) for f, (_, labels) in zip(files, batches, strict=True)]
        names_count = f"{str(meta_path)!r} names {len(self.classes)} classes"
        _check_labels(self.name, self.targets, len(self.classes), sources, names_count)

    def _batch(self, path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
        """``data`` ``(N, 3072)`` uint8 and ``labels`` ``(N,)`` of one batch file, checked."""
        entry = self._read(path)
        for key in ("data", label_key):
            if key not in entry:
                found = ", ".join(sorted(map(str, entry))) or "nothing"
                raise DataError(f"{self.name}: {str(path)!r} has no {key!r} entry (found: {found})")
        data = entry["data"]
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3072
        ):
            raise DataError(
                f"{self.name}: 'data' of {str(path)!r} is {_describe(data)}; expected an (N, 3072) uint8 "
                "array (N images of 3x32x32, channel-major)"
            )
        labels = entry[label_key]
        try:
            array = np.asarray(labels) if isinstance(labels, (list, tuple, np.ndarray)) else None
        except (ValueError, TypeError, OverflowError):  # ragged or unconvertible lists
            array = None
        if array is not None and array.size == 0:
            array = array.astype(np.int64)
        if array is None or array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise DataError(
                f"{self.name}: {label_key!r} of {str(path)!r} is {_describe(labels if array is None else array)}; "
                "expected a list of integer labels"
            )
        labels = array
        if len(labels) != len(data):
            raise DataError(f"{self.name}: {str(path)!r} holds {len(data)} images but {len(labels)} labels")
        return data, labels

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            return read_cifar_pickle(path)
        except Exception as e:  # truncated, not a pickle, foreign globals: one message naming the file
            said = " ".join(str(e).split())
            raise DataError(
                f"{self.name}: corrupt batch {str(path)!r} ({type(e).__name__}: {said})"
            ) from None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.data[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def _describe(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        return f"an array of shape {tuple(obj.shape)} and dtype {obj.dtype}"
    return f"a {type(obj).__name__}"


def cifar_split(
    data_dir: Any, *, download: bool = False, augment: str = "none", hundred: bool = False
) -> tuple[CIFAR, CIFAR]:
    """``(train, test)`` of CIFAR-10 (or CIFAR-100, fine labels): ``((3, 32, 32) float32, int)`` samples."""
    name = "cifar100" if hundred else "cifar10"
    root = _root(data_dir, name, download)
    mean, std = (CIFAR100_MEAN, CIFAR100_STD) if hundred else (CIFAR10_MEAN, CIFAR10_STD)
    train_tf = build_transform(augment, image_size=32, mean=mean, std=std)
    val_tf = build_transform("none", image_size=32, mean=mean, std=std)
    train = CIFAR(root, train=True, hundred=hundred, download=download, transform=train_tf)
    val = CIFAR(root, train=False, hundred=hundred, download=False, transform=val_tf)
    return train, val


# ---------------------------------------------------------------------------- image folders

VAL_FOLDERS = ("val", "valid", "validation", "test")


class ImageFolder(torchvision.datasets.ImageFolder):
    """torchvision's ``ImageFolder`` (same files, order, classes and loader) with a rule for bad images.

    The folder is listed when the dataset is built; each image is opened when its sample is read. An
    image PIL cannot read (not an image, truncated, a broken data stream) is handled by
    ``on_bad_image``:

    - ``"error"``: :class:`DataError` naming its path and what PIL said, in one line;
    - ``"skip"``: the sample is replaced by the next readable image of the same class, in the folder's
      sorted order and wrapping around (so the replacement is the same in every epoch and every run),
      and a warning naming the path is logged once per process. A class without one readable image
      raises :class:`DataError`.
    """

    def __init__(
        self, root: str | os.PathLike, *, transform: Any = None, on_bad_image: str = "error"
    ) -> None:
        super().__init__(str(root), transform=transform)
        self.on_bad_image = check_choice("on_bad_image", on_bad_image, ON_BAD_IMAGE)
        self.bad: set[int] = set()  # indices found unreadable in this process

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, target = self._load(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, target

    def _load(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        if self.on_bad_image == "error" or index not in self.bad:
            try:
                return self.loader(path), target
            except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError
                error = self._unreadable(index, e)
                if self.on_bad_image == "error":
                    raise DataError(error) from None
        n = len(self.samples)
        for j in ((index + step) % n for step in range(1, n)):
            if j in self.bad or self.samples[j][1] != target:
                continue
            try:
                return self.loader(self.samples[j][0]), target
            except Exception as e:
                self._unreadable(j, e)
        raise DataError(
            f"imagefolder: no readable image of class {self.classes[target]!r} in {self.root!r} "
            f"(first unreadable: {path!r})"
        )

    def _unreadable(self, index: int, e: Exception) -> str:
        """The one-line message for sample ``index``; logged once per path when skipping."""
        message = f"imagefolder: cannot read image {self.samples[index][0]!r}: {type(e).__name__}: "
        message += " ".join(str(e).split())
        if self.on_bad_image == "skip" and index not in self.bad:
            logger.warning("%s; using the next readable image of its class instead", message)
        self.bad.add(index)
        return message


def image_folder_split(
    data_dir: Any, *, augment: str = "none", image_size: int = 224, on_bad_image: str = "error"
) -> tuple[ImageFolder, ImageFolder]:
    """``(train, val)`` from ``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*`` (ImageNet layout).

    Images are converted to RGB, resized (shorter side) and centre-cropped to ``image_size``, augmented
    (train only) and normalised with the ImageNet statistics: ``(3, image_size, image_size)`` float32.
    Unreadable images of both splits follow ``on_bad_image`` (``"error"`` or ``"skip"``, see
    :class:`ImageFolder`).
    """
    root = _root(data_dir, "imagefolder", download=False)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8 (pixels); got {image_size!r}")
    check_choice("on_bad_image", on_bad_image, ON_BAD_IMAGE)
    train_dir = root / "train"
    val_dir = next((root / v for v in VAL_FOLDERS if (root / v).is_dir()), None)
    if not train_dir.is_dir() or val_dir is None:
        raise DataError(
            f"imagefolder: {str(root)!r} needs train/<class>/ and val/<class>/ folders of images "
            f"(found: {', '.join(sorted(p.name for p in root.iterdir())) or 'nothing'})"
        )
    kw = {"image_size": image_size, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "resize": True}
    train_tf, val_tf = build_transform(augment, **kw), build_transform("none", **kw)
    try:
        train = ImageFolder(train_dir, transform=train_tf, on_bad_image=on_bad_image)
        val = ImageFolder(val_dir, transform=val_tf, on_bad_image=on_bad_image)
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"imagefolder: {e}") from None
    if train.classes != val.classes:
        raise DataError(
            f"imagefolder: the classes of {str(train_dir)!r} ({len(train.classes)}) and {str(val_dir)!r} "
            f"({len(val.classes)}) differ: {sorted(set(train.classes) ^ set(val.classes))[:5]}"
        )
    if len(train.classes) < 2:
        raise DataError(
            f"imagefolder: {str(train_dir)!r} holds {len(train.classes)} class folder(s); need 2 or more"
        )
    return train, val
