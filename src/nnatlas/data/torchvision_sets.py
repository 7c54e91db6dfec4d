"""Real data sets on disk, read through torchvision: MNIST, Fashion-MNIST, CIFAR-10/100 and image folders.

``data_dir`` holds the files in their published layout (what ``download=True`` fetches):

| name | files under ``data_dir`` |
| --- | --- |
| ``mnist`` | ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (IDX, LeCun et al. 1998) |
| ``fashion_mnist`` | ``FashionMNIST/raw/...`` (same IDX layout, Xiao et al. 2017) |
| ``cifar10`` | ``cifar-10-batches-py/data_batch_{1..5}``, ``test_batch``, ``batches.meta`` (Krizhevsky 2009) |
| ``cifar100`` | ``cifar-100-python/train``, ``test``, ``meta`` |
| ``imagefolder`` | ``train/<class>/*.png|jpg`` and ``val/<class>/...`` (``test/`` also accepted) |

The published test split is the validation set. A missing or unreadable folder raises :class:`DataError`
(a ``ValueError``) with one line that names the path and what was expected.

CIFAR batches are Python pickles. They are read with a restricted unpickler that admits nothing but
NumPy's array reconstruction, so a foreign file in the data folder cannot run code; after a download the
files are also checked against the published MD5 sums.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torchvision
from PIL import Image
from torch.utils.data import Dataset

from nnatlas.data.transforms import build_transform

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


class DataError(ValueError):
    """A data folder is missing, incomplete or unreadable."""


def _root(data_dir: str | os.PathLike | None, name: str, download: bool) -> Path:
    if data_dir is None:
        raise DataError(f"data set {name!r} is read from files: data_dir is required (got None)")
    root = Path(data_dir).expanduser()
    if not download and not root.is_dir():
        raise DataError(f"{name}: data folder {str(root)!r} does not exist; pass download=True (--download)")
    return root


# ---------------------------------------------------------------------------- MNIST family


def _mnist_like(cls: type, name: str, data_dir: Any, download: bool, transforms: tuple) -> tuple:
    root = _root(data_dir, name, download)
    raw = root / cls.__name__ / "raw"
    try:
        train = cls(str(root), train=True, download=download, transform=transforms[0])
        val = cls(str(root), train=False, download=download, transform=transforms[1])
    except RuntimeError as e:
        if "not found" in str(e):
            files = ", ".join(os.path.splitext(os.path.basename(u))[0] for u, _ in cls.resources)
            raise DataError(
                f"{name}: no data in {str(raw)!r} (expected {files}); pass download=True (--download)"
            ) from None
        raise DataError(f"{name}: cannot read the IDX files in {str(raw)!r}: {e}") from None
    except (AssertionError, ValueError, OSError, KeyError) as e:
        raise DataError(f"{name}: corrupt IDX files in {str(raw)!r} ({type(e).__name__}: {e})") from None
    for split in (train, val):
        if split.data.ndim != 3 or len(split.data) != len(split.targets) or len(split.data) == 0:
            raise DataError(
                f"{name}: corrupt IDX files in {str(raw)!r}: {tuple(split.data.shape)} images, "
                f"{len(split.targets)} labels"
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
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


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
        data, targets = [], []
        for f in files:
            entry = self._read(folder / f)
            try:
                data.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                targets.extend(int(t) for t in entry[label_key])
            except (KeyError, ValueError, TypeError) as e:
                raise DataError(
                    f"{self.name}: corrupt batch {str(folder / f)!r} ({type(e).__name__}: {e})"
                ) from None
        self.data = np.concatenate(data).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
        self.targets = targets
        if len(self.data) != len(self.targets):
            raise DataError(
                f"{self.name}: {len(self.data)} images but {len(self.targets)} labels in {str(folder)!r}"
            )
        meta = self._read(folder / spec.meta["filename"])
        key = spec.meta["key"] if hundred else "label_names"
        if hundred and not fine:
            key = "coarse_label_names"
        try:
            self.classes = tuple(str(c) for c in meta[key])
        except KeyError:
            raise DataError(f"{self.name}: {str(folder / spec.meta['filename'])!r} has no {key!r}") from None

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            return read_cifar_pickle(path)
        except Exception as e:  # truncated, not a pickle, foreign globals: one message naming the file
            raise DataError(f"{self.name}: corrupt batch {str(path)!r} ({type(e).__name__}: {e})") from None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.data[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


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


def image_folder_split(
    data_dir: Any, *, augment: str = "none", image_size: int = 224
) -> tuple[torchvision.datasets.ImageFolder, torchvision.datasets.ImageFolder]:
    """``(train, val)`` from ``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*`` (ImageNet layout).

    Images are converted to RGB, resized (shorter side) and centre-cropped to ``image_size``, augmented
    (train only) and normalised with the ImageNet statistics: ``(3, image_size, image_size)`` float32.
    """
    root = _root(data_dir, "imagefolder", download=False)
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8 pixels; got {image_size}")
    train_dir = root / "train"
    val_dir = next((root / v for v in VAL_FOLDERS if (root / v).is_dir()), None)
    if not train_dir.is_dir() or val_dir is None:
        raise DataError(
            f"imagefolder: {str(root)!r} needs train/<class>/ and val/<class>/ folders of images "
            f"(found: {', '.join(sorted(p.name for p in root.iterdir())) or 'nothing'})"
        )
    kw = {"image_size": image_size, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "resize": True}
    try:
        train = torchvision.datasets.ImageFolder(str(train_dir), transform=build_transform(augment, **kw))
        val = torchvision.datasets.ImageFolder(str(val_dir), transform=build_transform("none", **kw))
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
    # Open one image now, so an unreadable file is reported before training starts.
    try:
        train[0]
    except Exception as e:
        raise DataError(
            f"imagefolder: cannot read {train.samples[0][0]!r} ({type(e).__name__}: {e})"
        ) from None
    return train, val
