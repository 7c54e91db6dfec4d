"""The file-based data sets read fixtures in their real formats; missing or corrupt folders are one error."""

import os
import pickle

import numpy as np
import pytest
import torch
import torchvision

from nnatlas.data import CIFAR, DataError, augmentation, build_transform, load_dataset
from tests.data.fixtures import write_cifar10, write_image_folder, write_mnist


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_idx_files_load_as_written(tmp_path, name, folder):
    arrays = write_mnist(tmp_path, folder)
    data = load_dataset(name, data_dir=tmp_path)
    assert (len(data.train), len(data.val), data.num_classes, data.in_channels) == (20, 10, 10, 1)
    mean, std = (0.1307, 0.3081) if name == "mnist" else (0.2860, 0.3530)
    images, labels = arrays["t10k"]
    for i in (0, 9):
        x, y = data.val[i]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == labels[i]
        expected = (torch.from_numpy(images[i]).float() / 255 - mean) / std  # ToTensor then Normalize
        torch.testing.assert_close(x[0], expected)


def test_cifar_pickles_match_torchvision(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    ours = CIFAR(tmp_path, train=True)
    # torchvision's reader checks the official MD5 sums, which a fixture cannot have: skip that check.
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)
    ref = torchvision.datasets.CIFAR10(str(tmp_path), train=True)
    assert np.array_equal(ours.data, ref.data) and ours.targets == ref.targets
    assert list(ours.classes) == ref.classes
    data = load_dataset("cifar10", data_dir=tmp_path, augment="basic")
    assert (len(data.train), len(data.val), data.image_size) == (20, 4, (32, 32))
    x, y = data.train[3]
    assert x.shape == (3, 32, 32) and y == ref.targets[3]


def test_cifar_reader_never_executes_code_from_a_data_file(tmp_path):
    folder = write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": Evil(), "labels": []}))
    with pytest.raises(DataError, match=r"corrupt batch .*data_batch_3.*refusing to load"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_image_folder_matches_torchvision(tmp_path):
    write_image_folder(tmp_path)
    data = load_dataset("imagefolder", data_dir=tmp_path, image_size=16, augment="strong")
    ref = torchvision.datasets.ImageFolder(str(tmp_path / "val"))
    assert data.classes == ("cat", "dog") and data.num_classes == 2
    assert [y for _, y in data.val.samples] == [y for _, y in ref.samples]
    x, y = data.val[4]
    assert x.shape == (3, 16, 16) and y == ref[4][1]
    assert data.train[0][0].shape == (3, 16, 16)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "imagefolder"])
def test_missing_folder_is_one_clear_error(tmp_path, name):
    with pytest.raises(DataError, match=f"{name}: data folder .*nope.* does not exist"):
        load_dataset(name, data_dir=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=name):
        load_dataset(name, data_dir=tmp_path / "empty")


def test_corrupt_files_are_one_clear_error(tmp_path):
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])  # truncated
    with pytest.raises(DataError, match="mnist: .*IDX"):
        load_dataset("mnist", data_dir=tmp_path)
    folder = write_cifar10(tmp_path / "c")
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="corrupt batch .*test_batch"):
        load_dataset("cifar10", data_dir=tmp_path / "c")
    write_image_folder(tmp_path / "f")
    (tmp_path / "f" / "val" / "cat").rename(tmp_path / "f" / "val" / "cow")
    with pytest.raises(DataError, match="classes of .* differ"):
        load_dataset("imagefolder", data_dir=tmp_path / "f")


def test_presets():
    # "none" is conversion plus normalisation, as torchvision's ToTensor + Normalize.
    img = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    ref = torchvision.transforms.Compose(
        [torchvision.transforms.ToTensor(), torchvision.transforms.Normalize((0.5,) * 3, (0.25,) * 3)]
    )
    ours = build_transform("none", image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    torch.testing.assert_close(ours(img), ref(img))
    assert [type(t).__name__ for t in augmentation("basic", image_size=32)] == [
        "RandomCrop",
        "RandomHorizontalFlip",
    ]
    strong = augmentation("strong", image_size=32, flip=False)
    assert [type(t).__name__ for t in strong] == ["RandomCrop", "RandomAffine"]
    x = torch.rand(3, 32, 32)
    outs = {tuple(torch.nn.Sequential(*strong)(x).flatten()[:50].tolist()) for _ in range(4)}
    assert len(outs) > 1  # random, and shape-preserving
    with pytest.raises(ValueError, match="augment must be one of .*; got 'extreme'"):
        augmentation("extreme", image_size=32)
    digits = load_dataset("digits", augment="basic")
    assert digits.train[0][0].shape == (1, 8, 8)
