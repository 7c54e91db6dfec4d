"""Data is checked before training starts: corrupt IDX and CIFAR files, labels outside the classes, class
names fewer than the labels, and unreadable images (``on_bad_image``), each one line naming the file."""

import logging
import os
import pickle

import numpy as np
import pytest
import torch
import torchvision
from torch.utils.data import DataLoader

from nnatlas.data import DataError, load_dataset
from tests.data.fixtures import (
    write_cifar10,
    write_cifar100,
    write_cifar_batch,
    write_idx,
    write_image_folder,
    write_mnist,
)


def _error(name, **kwargs) -> str:
    """The message of the DataError that loading raises; it is one line."""
    with pytest.raises(DataError) as info:
        load_dataset(name, **kwargs)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ValueError)  # the CLI's usage error: exit 2
    return message


# ---------------------------------------------------------------------------- IDX files


@pytest.fixture
def raw(tmp_path):
    write_mnist(tmp_path)
    return tmp_path / "MNIST" / "raw"


def test_bad_magic_number_is_named_with_the_expected_one(raw, tmp_path):
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(b"\0\0\0\0" + images.read_bytes()[4:])
    message = _error("mnist", data_dir=tmp_path)
    assert "bad magic number 0x00000000 in IDX file" in message
    assert message.endswith("train-images-idx3-ubyte' (expected 0x00000803: unsigned bytes in 3 dimensions)")
    # An image file where the labels belong: its magic says three dimensions, labels have one.
    (raw / "t10k-labels-idx1-ubyte").write_bytes((raw / "t10k-images-idx3-ubyte").read_bytes())
    images.unlink()
    write_idx(images, np.zeros((20, 28, 28), np.uint8))
    message = _error("mnist", data_dir=tmp_path)
    assert (
        "bad magic number 0x00000803 in IDX file" in message
        and "t10k-labels-idx1-ubyte' (expected 0x00000801" in message
    )


def test_truncated_and_overlong_files_say_what_the_header_promised(raw, tmp_path):
    labels = raw / "train-labels-idx1-ubyte"
    full = labels.read_bytes()  # 8-byte header, then 20 labels
    labels.write_bytes(full[: 8 + 7])
    assert _error("mnist", data_dir=tmp_path).endswith(
        "train-labels-idx1-ubyte' is truncated: header says 20 labels, file holds 7"
    )
    labels.write_bytes(full + b"12345")
    assert _error("mnist", data_dir=tmp_path).endswith(
        "holds 5 bytes more than the 20 labels its header says"
    )
    labels.write_bytes(full)
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[: 16 + 3 * 784 + 100])
    assert "t10k-images-idx3-ubyte' is truncated: header says 10 images, file holds 3" in _error(
        "mnist", data_dir=tmp_path
    )
    images.write_bytes(images.read_bytes()[:6])
    assert "is truncated: 6 bytes, shorter than its 16-byte header" in _error("mnist", data_dir=tmp_path)
    images.write_bytes(b"")
    assert "is truncated: 0 bytes, not even the 4-byte magic number" in _error("mnist", data_dir=tmp_path)


def test_torchvision_alone_does_not_name_the_truncated_file(raw, tmp_path):
    # What the checks replace: torchvision's reader fails on the same file without naming it.
    labels = raw / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:15])
    with pytest.raises((AssertionError, RuntimeError)) as info:
        torchvision.datasets.MNIST(str(tmp_path), train=True)
    assert "labels-idx1" not in str(info.value)
    assert "train-labels-idx1-ubyte' is truncated: header says 20 labels, file holds 7" in _error(
        "mnist", data_dir=tmp_path
    )


def test_image_and_label_counts_and_image_size_must_agree(raw, tmp_path):
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(19, np.uint8))
    message = _error("mnist", data_dir=tmp_path)
    assert "train-images-idx3-ubyte' holds 20 images but" in message
    assert message.endswith("train-labels-idx1-ubyte' holds 19 labels")
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(20, np.uint8))
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((20, 10, 10), np.uint8))
    assert _error("mnist", data_dir=tmp_path).endswith("holds 10x10 images; mnist images are 28x28")
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(0, np.uint8))
    assert _error("mnist", data_dir=tmp_path).endswith("train-images-idx3-ubyte' holds no images")


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_labels_outside_the_classes_name_file_label_and_index(tmp_path, name, folder):
    arrays = write_mnist(tmp_path, folder)
    labels = arrays["t10k"][1].copy()
    labels[5], labels[8] = 12, 10
    write_idx(tmp_path / folder / "raw" / "t10k-labels-idx1-ubyte", labels)
    # torchvision reads these files without complaint: the label would fail only in the loss, mid-epoch.
    ref = getattr(torchvision.datasets, folder)(str(tmp_path), train=False)
    assert int(ref.targets[5]) == 12 and len(ref.classes) == 10
    message = _error(name, data_dir=tmp_path)
    assert message.startswith(f"{name}: label 12 at index 5 of ")
    assert message.endswith(
        f"t10k-labels-idx1-ubyte' is outside [0, 10) ({name} has 10 classes); 2 labels are out of range"
    )


# ---------------------------------------------------------------------------- CIFAR pickles


def test_cifar_label_outside_the_classes_names_its_batch_and_index(tmp_path):
    folder = write_cifar10(tmp_path)
    data = np.zeros((4, 3072), np.uint8)
    write_cifar_batch(folder / "data_batch_2", data, [0, 10, 3, 4])
    message = _error("cifar10", data_dir=tmp_path)
    assert message.startswith("cifar10: label 10 at index 1 of ")
    assert message.endswith(
        "data_batch_2' is outside [0, 10) ('" + str(folder / "batches.meta") + "' names 10 classes)"
    )


def test_cifar_class_names_fewer_than_the_labels(tmp_path):
    folder = write_cifar10(tmp_path)
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", np.zeros((3, 3072), np.uint8), [0, 8, i % 3])
    write_cifar_batch(folder / "data_batch_4", np.zeros((3, 3072), np.uint8), [1, 2, 9])
    meta = {"label_names": [f"c{i}" for i in range(9)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    message = _error("cifar10", data_dir=tmp_path)
    assert (
        message.startswith("cifar10: label 9 at index 2 of ") and "data_batch_4' is outside [0, 9)" in message
    )
    assert message.endswith("batches.meta' names 9 classes)")


def test_cifar100_fine_labels_are_checked_against_the_fine_names(tmp_path, monkeypatch):
    folder = write_cifar100(tmp_path)
    data = load_dataset("cifar100", data_dir=tmp_path)
    # torchvision checks the official MD5 sums, which a fixture cannot have: skip that check.
    monkeypatch.setattr(torchvision.datasets.CIFAR100, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)
    ref = torchvision.datasets.CIFAR100(str(tmp_path), train=False)
    assert data.num_classes == 100 and data.classes == tuple(ref.classes)
    assert np.array_equal(data.val.data, ref.data) and data.val.targets == ref.targets
    write_cifar_batch(folder / "test", np.zeros((2, 3072), np.uint8), [99, 100], label_key="fine_labels")
    message = _error("cifar100", data_dir=tmp_path)
    assert message.startswith("cifar100: label 100 at index 1 of ") and "names 100 classes" in message


@pytest.mark.parametrize(
    "entry,message",
    [
        (
            {"data": np.zeros((4, 3072), np.uint8)},
            "data_batch_1' has no 'labels' entry (found: batch_label, data)",
        ),
        ({"labels": [0, 1]}, "data_batch_1' has no 'data' entry (found: batch_label, labels)"),
        (
            {"data": np.zeros((4, 1024), np.uint8), "labels": [0] * 4},
            "'data' of '{f}' is an array of shape (4, 1024) and dtype uint8; expected an (N, 3072) uint8 array",
        ),
        (
            {"data": np.zeros((4, 3072), np.float32), "labels": [0] * 4},
            "is an array of shape (4, 3072) and dtype float32; expected",
        ),
        ({"data": [[0] * 3072] * 4, "labels": [0] * 4}, "'data' of '{f}' is a list; expected"),
        (
            {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2]},
            "data_batch_1' holds 4 images but 3 labels",
        ),
        (
            {"data": np.zeros((2, 3072), np.uint8), "labels": ["cat", "dog"]},
            "'labels' of '{f}' is an array of shape (2,) and dtype <U3; expected a list of integer labels",
        ),
    ],
)
def test_cifar_batches_with_missing_keys_or_wrong_shapes(tmp_path, entry, message):
    folder = write_cifar10(tmp_path)
    path = folder / "data_batch_1"
    path.write_bytes(pickle.dumps({"batch_label": "x", **entry}, protocol=2))
    assert message.format(f=path) in _error("cifar10", data_dir=tmp_path)


def test_truncated_cifar_pickle_is_named(tmp_path):
    folder = write_cifar10(tmp_path)
    path = folder / "data_batch_5"
    path.write_bytes(path.read_bytes()[:200])
    message = _error("cifar10", data_dir=tmp_path)
    assert message == f"cifar10: corrupt batch '{path}' (UnpicklingError: pickle data was truncated)"


class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Exec:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


@pytest.mark.parametrize("how", ["system", "exec", "inside_object_array", "meta"])
def test_malicious_cifar_pickles_are_refused_and_never_run(tmp_path, how):
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    payload = {
        "system": _System(f"touch {marker}"),
        "exec": _Exec(f"open({str(marker)!r}, 'w').close()"),
        "inside_object_array": np.array([_Exec(f"open({str(marker)!r}, 'w').close()")], dtype=object),
        "meta": _System(f"touch {marker}"),
    }[how]
    # The same bytes run the code under a plain pickle.load: the payload is real.
    blob = pickle.dumps({"data": payload, "labels": [0]}, protocol=2)
    if how == "meta":
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": payload}, protocol=2))
        bad = folder / "batches.meta"
    else:
        (folder / "data_batch_3").write_bytes(blob)
        bad = folder / "data_batch_3"
    message = _error("cifar10", data_dir=tmp_path)
    assert message.startswith(f"cifar10: corrupt batch '{bad}' (UnpicklingError: refusing to load ")
    assert not marker.exists()
    pickle.loads(blob)
    assert marker.exists()


def test_foreign_codecs_are_refused(tmp_path):
    # Protocol 2 writes bytes as _codecs.encode(text, "latin1"); only that encoding is admitted.
    folder = write_cifar10(tmp_path)
    blob = (
        b"\x80\x02}q\x00(X\x04\x00\x00\x00dataq\x01c_codecs\nencode\nq\x02X\x02\x00\x00\x00abq\x03"
        b"X\x03\x00\x00\x00hexq\x04\x86q\x05Rq\x06u."
    )
    (folder / "test_batch").write_bytes(blob)
    assert "refusing to call _codecs.encode with encoding 'hex'" in _error("cifar10", data_dir=tmp_path)


# ---------------------------------------------------------------------------- image folders


def _corrupt(path, how="garbage"):
    data = path.read_bytes()
    path.write_bytes(b"not an image" if how == "garbage" else data[: len(data) // 2])


def test_images_are_opened_lazily_and_a_bad_one_is_named(tmp_path):
    write_image_folder(tmp_path)
    for path in (tmp_path / "train").rglob("*.png"):
        _corrupt(path)
    data = load_dataset("imagefolder", data_dir=tmp_path, image_size=16)  # nothing opened yet
    assert data.val[0][0].shape == (3, 16, 16)
    with pytest.raises(DataError) as info:
        data.train[4]
    path = tmp_path / "train" / "dog" / "1.png"
    assert str(info.value) == (
        f"imagefolder: cannot read image '{path}': UnidentifiedImageError: cannot identify image file "
        f"<_io.BufferedReader name='{path}'>"
    )


def test_validation_images_follow_the_same_rule(tmp_path, caplog):
    write_image_folder(tmp_path)
    bad = tmp_path / "val" / "dog" / "0.png"
    _corrupt(bad, "truncate")
    data = load_dataset("imagefolder", data_dir=tmp_path, image_size=16)
    with pytest.raises(
        DataError, match=r"cannot read image '.*val/dog/0.png': OSError: image file is truncated"
    ):
        data.val[3]
    skip = load_dataset("imagefolder", data_dir=tmp_path, image_size=16, on_bad_image="skip")
    with caplog.at_level(logging.WARNING, logger="nnatlas.data"):
        x, y = skip.val[3]
        x2, y2 = skip.val[3]
    expected, label = skip.val[4]  # the next readable image of the same class
    assert torch.equal(x, expected) and torch.equal(x2, expected) and y == y2 == label == 1
    warnings = [r.getMessage() for r in caplog.records if str(bad) in r.getMessage()]
    assert len(warnings) == 1 and "image file is truncated" in warnings[0]  # once per path


def test_skip_takes_the_next_readable_image_of_the_same_class_wrapping_around(tmp_path):
    write_image_folder(tmp_path, per_class=3)
    for name in ("1.png", "2.png"):  # the last two cats; the next sample in the folder is a dog
        _corrupt(tmp_path / "train" / "cat" / name)
    data = load_dataset("imagefolder", data_dir=tmp_path, image_size=16, on_bad_image="skip")
    first_cat = data.train[0]
    for i in (1, 2):
        x, y = data.train[i]
        assert y == 0 and torch.equal(x, first_cat[0])
    assert [data.train[i][1] for i in range(6)] == [0, 0, 0, 1, 1, 1]  # class frequencies kept
    _corrupt(tmp_path / "train" / "cat" / "0.png")
    data = load_dataset("imagefolder", data_dir=tmp_path, image_size=16, on_bad_image="skip")
    with pytest.raises(DataError, match=r"no readable image of class 'cat' in '.*train'"):
        data.train[1]


def _error_in_worker(loader) -> DataError:
    it = iter(loader)
    try:
        next(it)
    except DataError as e:
        # Dropping the traceback frees the iterator now, whose workers then stop at once (were it left to
        # the garbage collector, torch would wait 5 s for them).
        return e.with_traceback(None)
    raise AssertionError("no DataError")


@pytest.mark.parametrize("on_bad_image", ["error", "skip"])
def test_a_data_loader_worker_reports_the_same_one_line(tmp_path, on_bad_image):
    write_image_folder(tmp_path, per_class=2)
    bad = tmp_path / "train" / "dog" / "0.png"
    _corrupt(bad)
    data = load_dataset("imagefolder", data_dir=tmp_path, image_size=16, on_bad_image=on_bad_image)
    loader = DataLoader(data.train, batch_size=4, num_workers=1)
    if on_bad_image == "skip":
        (x, y), *_ = list(loader)
        assert torch.equal(x[2], data.train[3][0]) and y.tolist() == [0, 0, 1, 1]
        return
    with pytest.raises(DataError) as in_process:
        data.train[2]
    in_worker = _error_in_worker(loader)  # torch rebuilds it from the worker's traceback text
    assert "DataLoader worker" not in str(in_worker)
    assert str(in_worker) == str(in_process.value) and str(bad) in str(in_worker)
