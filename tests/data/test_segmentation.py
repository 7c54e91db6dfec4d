"""Segmentation data: the embedded shapes scenes, Pascal VOC 2012 through torchvision's VOCSegmentation and a
folder of images and PNG masks, on fixtures written in their real formats; joint image + mask transforms."""

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms.v2.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from nnatlas.data import (
    SHAPE_CLASSES,
    VOC_CLASSES,
    FitAndPad,
    SegmentationBundle,
    ShapesDataset,
    load_dataset,
    prepare_image,
    render_scene,
    segmentation_transform,
    voc_colormap,
)
from nnatlas.data.torchvision_sets import IMAGENET_MEAN, IMAGENET_STD
from tests.data.fixtures import write_segfolder, write_voc

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _normalised(path) -> torch.Tensor:
    """The reference preprocessing of an RGB file: PIL decode, [0, 1], ImageNet statistics."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return (torch.from_numpy(pixels).permute(2, 0, 1) - MEAN) / STD


# ---------------------------------------------------------------------------- embedded shapes


def test_shapes_segmentation_bundle_holds_the_rendered_scenes():
    data = load_dataset("shapes", task="segmentation", num_train=6, num_val=3, seed=2)
    assert isinstance(data, SegmentationBundle) and (data.name, data.task) == ("shapes", "segmentation")
    assert data.classes == ("background", *SHAPE_CLASSES) and data.num_classes == 5
    assert (data.in_channels, data.image_size, data.ignore_index) == (3, (64, 64), 255)
    assert (data.mean, data.std, data.collate_fn) == (None, None, None)
    assert (len(data.train), len(data.val)) == (6, 3)
    for split, seed in ((data.train, 4), (data.val, 5)):  # seeds 2s and 2s + 1: no scene shared
        for i in range(len(split)):
            image, mask = split[i]
            scene = render_scene(np.random.default_rng([seed, i]), size=64, num_objects=(1, 4))
            assert image.dtype == torch.float32 and mask.dtype == torch.int64 and mask.shape == (64, 64)
            assert torch.equal(image, torch.from_numpy(scene.image).permute(2, 0, 1))
            assert torch.equal(mask, torch.from_numpy(scene.mask))
    # Class k + 1 is shape k: inside every visible object's box the mask holds its class.
    scene = render_scene(np.random.default_rng([4, 0]), size=64, num_objects=(1, 4))
    for j, label in enumerate(scene.labels):
        assert (scene.mask[scene.instances == j + 1] == label + 1).all()
    assert data.palette == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128))


def test_shapes_segmentation_augmentation_keeps_masks_on_their_pixels():
    data = load_dataset("shapes", task="segmentation", num_train=8, num_val=1, augment="basic", image_size=48)
    plain = ShapesDataset(8, size=48, task="segmentation", seed=0)
    for i in range(8):
        image, mask = data.train[i]
        assert image.shape == (3, 48, 48) and mask.shape == (48, 48) and mask.dtype == torch.int64
        _, original = plain[i]
        assert set(mask.unique().tolist()) <= set(original.unique().tolist()) | {255}  # nearest: no blends
        padded = mask == 255
        assert torch.allclose(image[:, padded], torch.full_like(image[:, padded], 0.5))  # grey padding


# ---------------------------------------------------------------------------- the colour map


def test_voc_colormap_is_the_devkits():
    # VOClabelcolormap.m of the VOC 2012 devkit: the colours of SegmentationClass/*.png.
    published = {
        0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128), 5: (128, 0, 128),
        6: (0, 128, 128), 7: (128, 128, 128), 8: (64, 0, 0), 9: (192, 0, 0), 10: (64, 128, 0),
        11: (192, 128, 0), 12: (64, 0, 128), 13: (192, 0, 128), 14: (64, 128, 128), 15: (192, 128, 128),
        16: (0, 64, 0), 17: (128, 64, 0), 18: (0, 192, 0), 19: (128, 192, 0), 20: (0, 64, 128),
        255: (224, 224, 192),
    }  # fmt: skip
    colours = voc_colormap()
    assert len(colours) == 256 and len(set(colours)) == 256
    assert {k: colours[k] for k in published} == published
    assert voc_colormap(21) == colours[:21]
    # The class names and their order are torchvision's VOC categories (its segmentation weights' meta).
    weights = torchvision.models.segmentation.FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1
    assert VOC_CLASSES[1:] == tuple(weights.meta["categories"][1:]) and VOC_CLASSES[0] == "background"


# ---------------------------------------------------------------------------- Pascal VOC


def test_voc_reads_what_torchvision_lists_and_pads_validation_with_255(tmp_path):
    base = write_voc(tmp_path)
    data = load_dataset("voc", task="segmentation", data_dir=tmp_path, image_size=32)
    assert (data.num_classes, data.classes, data.image_size, data.in_channels) == (
        21,
        VOC_CLASSES,
        (32, 32),
        3,
    )
    assert data.palette == voc_colormap(21) and (data.mean, data.std) == (IMAGENET_MEAN, IMAGENET_STD)
    for split, dataset in (("train", data.train), ("val", data.val)):
        reference = torchvision.datasets.VOCSegmentation(str(tmp_path), year="2012", image_set=split)
        assert (
            len(dataset)
            == len(reference)
            == len((base / f"ImageSets/Segmentation/{split}.txt").read_text().split())
        )
        for i in range(len(reference)):
            ref_image, ref_mask = reference[i]  # PIL RGB image, PIL palette mask
            w, h = ref_image.size
            image, mask = dataset[i]
            assert image.shape == (3, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.int64
            # augment="none" (training too): smaller than 32x32, so nothing is resized, only padded.
            assert torch.equal(mask[:h, :w], torch.from_numpy(np.array(ref_mask)).long())
            assert (mask[h:] == 255).all() and (mask[:, w:] == 255).all()
            assert torch.allclose(image[:, :h, :w], _normalised(reference.images[i]), atol=1e-6)
            assert image[:, h:].abs().max() < 0.02  # padded with the mean pixel: ~0 after normalising
    assert 255 in np.array(Image.open(reference.masks[0])) and data.val[0][1].max() == 255
    # An image to predict on is prepared as the validation images, at its own size.
    ref_image = Image.open(reference.images[0])
    w, h = ref_image.size
    prepared = prepare_image(ref_image, mean=data.mean, std=data.std)
    assert prepared.shape == (3, h, w) and torch.equal(prepared, data.val[0][0][:, :h, :w])
    grey = prepare_image(ref_image.convert("L"))  # converted to RGB; no statistics: [0, 1]
    assert grey.shape == (3, h, w) and 0 <= float(grey.min()) and float(grey.max()) <= 1


def test_voc_validation_scales_down_to_fit_and_keeps_every_pixel(tmp_path):
    write_voc(tmp_path, {"train": [("a", (40, 30))], "val": [("b", (40, 30))]})
    data = load_dataset("voc", task="segmentation", data_dir=tmp_path, image_size=16)
    image, mask = data.val[0]
    reference = torchvision.datasets.VOCSegmentation(str(tmp_path), image_set="val")
    ref = tv_tensors.Mask(torch.from_numpy(np.array(reference[0][1])).long())
    assert torch.equal(mask[:12], F.resize(ref, [12, 16]))  # 40x30 -> 16x12, nearest for masks
    assert (mask[12:] == 255).all() and image.shape == (3, 16, 16)


def test_voc_training_batches_are_fixed_size_with_every_preset(tmp_path):
    write_voc(tmp_path)
    for augment in ("none", "basic", "strong"):
        data = load_dataset("voc", task="segmentation", data_dir=tmp_path, image_size=24, augment=augment)
        for split in (data.train, data.val):
            images, masks = next(iter(DataLoader(split, batch_size=len(split), collate_fn=data.collate_fn)))
            assert images.shape == (len(split), 3, 24, 24) and masks.shape == (len(split), 24, 24)
            assert set(masks.unique().tolist()) <= set(range(21)) | {255}


def test_voc_download_goes_through_torchvision_once(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, root, filename=None, md5=None):  # what the real one leaves: the extracted tree
        calls.append((url, filename, md5))
        write_voc(tmp_path / "fetched")

    monkeypatch.setattr(torchvision.datasets.voc, "download_and_extract_archive", fake_download)
    data = load_dataset(
        "voc", task="segmentation", data_dir=tmp_path / "fetched", download=True, image_size=32
    )
    assert calls == [
        (
            "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            "VOCtrainval_11-May-2012.tar",
            "6cd6e144f989b92b3379bac3b3de84fd",
        )
    ]
    assert (len(data.train), len(data.val)) == (3, 2)
    load_dataset(
        "voc", task="segmentation", data_dir=tmp_path / "fetched", download=True
    )  # present: not fetched or unpacked again
    assert len(calls) == 1


def _voc_error(tmp_path, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        data = load_dataset("voc", task="segmentation", data_dir=tmp_path, **kwargs)
        data.train[0]
    message = str(info.value)
    assert "\n" not in message and type(info.value).__name__ == "DataError"
    return message


def test_voc_missing_folders_lists_and_files_are_named(tmp_path):
    assert _voc_error(tmp_path) == (
        f"voc: no VOCdevkit/VOC2012 folder in '{tmp_path}'; pass download=True (--download)"
    )
    base = write_voc(tmp_path)
    (base / "JPEGImages" / "2007_000039.jpg").unlink()
    (base / "SegmentationClass" / "2007_000063.png").unlink()
    listed = base / "ImageSets" / "Segmentation" / "train.txt"
    assert _voc_error(tmp_path) == (
        f"voc: of the 3 ids in '{listed}', 1 without an image in JPEGImages (2007_000039.jpg); "
        "1 without a mask in SegmentationClass (2007_000063.png)"
    )
    listed.write_text("")
    assert _voc_error(tmp_path) == f"voc: '{listed}' lists no image"
    listed.unlink()
    message = _voc_error(tmp_path)
    assert message.startswith("voc: cannot read the list of train images") and "train.txt" in message


def test_voc_masks_of_another_size_or_with_unknown_classes_are_named(tmp_path):
    base = write_voc(tmp_path)
    mask_path = base / "SegmentationClass" / "2007_000039.png"
    mask = Image.open(mask_path)
    mask.resize((15, 24), Image.NEAREST).save(mask_path)  # the image is 16x24
    assert _voc_error(tmp_path) == (
        f"voc: mask '{mask_path}' is 15x24 but its image '{base / 'JPEGImages' / '2007_000039.jpg'}' is "
        "16x24 (width x height)"
    )
    ids = np.array(mask)
    ids[0, :3] = [21, 40, 254]  # outside the 21 classes; 255 stays the ignore mark
    bad = Image.fromarray(ids)
    bad.putpalette(mask.getpalette())
    bad.save(mask_path)
    data = load_dataset(
        "voc", task="segmentation", data_dir=tmp_path
    )  # the ids are checked when the sample is read
    data.train[0]
    with pytest.raises(ValueError) as info:
        data.train[1]
    assert str(info.value) == (
        f"voc: mask '{mask_path}' holds class ids 21, 40, 254 outside [0, 21) (3 pixels; 255 marks ignored "
        "pixels)"
    )


# ---------------------------------------------------------------------------- a folder of images and masks


def _masks(root, split="train"):
    return [np.array(Image.open(p)) for p in sorted((root / split / "masks").glob("*.png"))]


@pytest.mark.parametrize("mode,image_ext", [("L", ".png"), ("P", ".jpg")])
def test_segfolder_pairs_by_stem_and_infers_the_classes(tmp_path, mode, image_ext):
    write_segfolder(tmp_path, num_classes=5, mode=mode, image_ext=image_ext)
    data = load_dataset("segfolder", data_dir=tmp_path, image_size=24)
    written = _masks(tmp_path) + _masks(tmp_path, "val")
    largest = max(int(m[m != 255].max()) for m in written)
    assert data.num_classes == largest + 1 and data.classes[0] == "background"
    assert len(data.classes) == data.num_classes and data.image_size == (24, 24)
    assert data.palette == voc_colormap(data.num_classes)  # palette masks bring VOC's; L masks get it
    for i, reference in enumerate(_masks(tmp_path)):
        image, mask = data.train[i]
        h, w = reference.shape
        assert torch.equal(mask[:h, :w], torch.from_numpy(reference).long()) and (mask[h:] == 255).all()
        path = tmp_path / "train" / "images" / f"img{i}{image_ext}"
        assert torch.allclose(image[:, :h, :w], _normalised(path), atol=1e-6)


def test_segfolder_takes_num_classes_and_checks_ids_when_read(tmp_path):
    write_segfolder(tmp_path, num_classes=5)
    data = load_dataset("segfolder", data_dir=tmp_path, num_classes=9, image_size=24)
    assert data.num_classes == 9 and len(data.palette) == 9
    path = tmp_path / "train" / "masks" / "img0.png"
    ids = np.zeros((14, 20), np.uint8)
    ids[0, :6] = [1, 3, 4, 4, 255, 255]
    Image.fromarray(ids).save(path)
    small = load_dataset("segfolder", data_dir=tmp_path, num_classes=2, image_size=24)  # nothing read yet
    with pytest.raises(ValueError) as info:
        small.train[0]
    assert str(info.value) == (
        f"segfolder: mask '{path}' holds class ids 3, 4 outside [0, 2) (3 pixels; 255 marks ignored pixels)"
    )


def test_segfolder_palette_comes_from_palette_masks(tmp_path):
    write_segfolder(tmp_path, num_classes=3, mode="P")
    for path in (tmp_path / "train" / "masks").glob("*.png"):
        mask = Image.open(path)
        mask.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * (768 - 9))
        mask.save(path)
    data = load_dataset("segfolder", data_dir=tmp_path, num_classes=3)
    assert data.palette == ((10, 20, 30), (40, 50, 60), (70, 80, 90))


def _segfolder_error(tmp_path, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        load_dataset("segfolder", data_dir=tmp_path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and type(info.value).__name__ == "DataError"
    return message


def test_segfolder_mask_folder_that_does_not_match_the_images_is_named(tmp_path):
    write_segfolder(tmp_path, per_split=8)
    masks, images = tmp_path / "train" / "masks", tmp_path / "train" / "images"
    for i in range(6):
        (masks / f"img{i}.png").unlink()
    Image.new("L", (20, 14)).save(masks / "extra.png")
    assert _segfolder_error(tmp_path) == (
        f"segfolder: the masks in '{masks}' do not match the images in '{images}': 6 image(s) without a mask "
        "(img0, img1, img2, img3, img4, ... (1 more)); 1 mask(s) without an image (extra)"
    )
    (masks / "extra.png").unlink()
    for i in range(6):
        Image.new("L", (20, 14)).save(masks / f"img{i}.jpg")
    assert _segfolder_error(tmp_path).endswith(
        "; masks must be .png files (found img0.jpg, img1.jpg, img2.jpg, img3.jpg, img4.jpg, ... (1 more))"
    )


def test_segfolder_layout_sizes_modes_and_classes_are_checked(tmp_path):
    assert _segfolder_error(tmp_path).startswith(f"segfolder: '{tmp_path}' needs train/ and val/ folders")
    write_segfolder(tmp_path)
    mask_path = tmp_path / "val" / "masks" / "img1.png"
    Image.new("L", (14, 20)).save(mask_path)
    assert _segfolder_error(tmp_path) == (
        f"segfolder: mask '{mask_path}' is 14x20 but its image '{tmp_path / 'val/images/img1.png'}' is "
        "20x14 (width x height)"
    )
    Image.new("RGB", (20, 14)).save(mask_path)
    assert _segfolder_error(tmp_path) == (
        f"segfolder: mask '{mask_path}' is a RGB image; expected one class id per pixel: a palette PNG "
        "(mode P) or a single-channel PNG (mode L)"
    )
    for path in tmp_path.glob("*/masks/*.png"):  # background (and 255) only: nothing to segment
        Image.fromarray(np.where(np.arange(20) < 3, 255, 0).astype(np.uint8)[None].repeat(14, 0)).save(path)
    assert _segfolder_error(tmp_path) == (
        f"segfolder: the masks in '{tmp_path}' hold class 0 only; need 2 or more classes"
    )
    Image.fromarray(np.full((14, 20), 300, np.uint16)).save(mask_path)  # a 16-bit PNG
    assert _segfolder_error(tmp_path) == (
        f"segfolder: mask '{mask_path}' holds class id 300; ids run from 0 to 254 (255 marks ignored pixels)"
    )


def _corrupt(path, how="garbage"):
    data = path.read_bytes()
    path.write_bytes(b"not an image" if how == "garbage" else data[: len(data) // 2])


def test_unreadable_files_follow_on_bad_image(tmp_path, caplog):
    write_segfolder(tmp_path, per_split=4)
    garbage = tmp_path / "train" / "images" / "img1.png"
    truncated = tmp_path / "train" / "masks" / "img2.png"
    _corrupt(garbage)
    assert _segfolder_error(tmp_path, num_classes=4).startswith(
        f"segfolder: cannot read image '{garbage}': UnidentifiedImageError: cannot identify image file"
    )
    skip = load_dataset("segfolder", data_dir=tmp_path, num_classes=4, on_bad_image="skip")
    assert len(skip.train) == 3  # an unreadable header: left out when loading
    garbage.unlink()
    (tmp_path / "train" / "masks" / "img1.png").unlink()
    _corrupt(truncated, "truncate")  # its header reads; its pixels do not
    data = load_dataset("segfolder", data_dir=tmp_path, num_classes=4)
    with pytest.raises(ValueError, match=rf"^segfolder: cannot read mask '{truncated}': "):
        data.train[1]
    skip = load_dataset("segfolder", data_dir=tmp_path, num_classes=4, on_bad_image="skip")
    with caplog.at_level("WARNING", logger="nnatlas.data"):
        first, again = skip.train[1], skip.train[1]
    expected = skip.train[2]  # the next readable sample
    assert torch.equal(first[1], expected[1]) and torch.equal(again[0], expected[0])
    assert len([r for r in caplog.records if str(truncated) in r.getMessage()]) == 1  # once per file


def test_inferring_the_classes_reads_every_mask_and_follows_on_bad_image(tmp_path):
    write_segfolder(tmp_path, per_split=3)
    truncated = tmp_path / "val" / "masks" / "img0.png"
    _corrupt(truncated, "truncate")
    assert _segfolder_error(tmp_path).startswith(f"segfolder: cannot read mask '{truncated}': ")
    data = load_dataset("segfolder", data_dir=tmp_path, on_bad_image="skip")
    assert torch.equal(data.val[0][1], data.val[1][1])


def _error_in_worker(loader) -> ValueError:
    it = iter(loader)
    try:
        next(it)
    except ValueError as e:
        # Without its traceback the iterator is freed now and its worker stops at once (left to the garbage
        # collector, torch would wait 5 s for it).
        return e.with_traceback(None)
    raise AssertionError("no error")


def test_a_data_loader_worker_reports_the_same_one_line(tmp_path):
    write_segfolder(tmp_path, per_split=2)
    path = tmp_path / "train" / "masks" / "img1.png"
    Image.fromarray(np.full((14, 20), 7, np.uint8)).save(path)
    data = load_dataset("segfolder", data_dir=tmp_path, num_classes=4, image_size=24)
    with pytest.raises(ValueError) as in_process:
        data.train[1]
    in_worker = _error_in_worker(DataLoader(data.train, batch_size=2, num_workers=1))
    message = (
        f"segfolder: mask '{path}' holds class id 7 outside [0, 4) (280 pixels; 255 marks ignored pixels)"
    )
    assert str(in_worker) == str(in_process.value) == message
    assert type(in_worker).__name__ == "DataError"


# ---------------------------------------------------------------------------- joint transforms


def _quadrants(size=64):
    """A uint8 image whose four quadrants are four flat colours, and the mask of their classes 1-4."""
    mask = np.zeros((size, size), np.int64)
    h = size // 2
    mask[:h, :h], mask[:h, h:], mask[h:, :h], mask[h:, h:] = 1, 2, 3, 4
    colours = np.array([[0, 0, 0], [200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]], np.uint8)
    return Image.fromarray(colours[mask]), mask, colours


def _interior(m: torch.Tensor, r: int = 3) -> torch.Tensor:
    """Labelled pixels whose ``(2r + 1)^2`` neighbourhood (inside the image) holds their class only."""
    h, w = m.shape
    padded = torch.nn.functional.pad(m, (r, r, r, r), value=-1)
    same = m != 255
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            near = padded[dy : dy + h, dx : dx + w]
            same &= (near == m) | (near == -1)
    return same


def test_random_scale_crop_and_flip_move_image_and_mask_together():
    image, mask, colours = _quadrants()
    t = segmentation_transform("basic", image_size=48, fill=(7, 7, 7))
    torch.manual_seed(0)
    flips = padded = checked = 0
    for _ in range(40):
        x, m = t(image, mask)
        assert x.shape == (3, 48, 48) and m.shape == (48, 48) and m.dtype == torch.int64
        assert set(m.unique().tolist()) <= {1, 2, 3, 4, 255}  # nearest for masks: no blended ids
        # Away from the seams the interpolation blends, each pixel has the colour of its class in the mask.
        inside = _interior(m)
        expected = torch.from_numpy(colours).float()[m[inside]] / 255
        checked += int(inside.sum())
        torch.testing.assert_close(x.permute(1, 2, 0)[inside], expected, atol=1e-6, rtol=0)
        pad = x.permute(1, 2, 0)[m == 255]
        assert torch.allclose(pad, torch.full_like(pad, 7 / 255))  # the image is padded with fill
        padded += int((m == 255).any())
        if (m == 1).any() and (m == 2).any():  # class 2 is right of class 1 unless flipped
            cols = [torch.nonzero(m == k, as_tuple=True)[1].float().mean() for k in (1, 2)]
            flips += int(cols[0] > cols[1])
    assert flips > 5 and padded > 5  # both flips and scales below 1 happen
    assert checked > 0.25 * 40 * 48 * 48


def test_colour_jitter_changes_the_image_only():
    image, mask, _ = _quadrants()
    basic = segmentation_transform("basic", image_size=48)
    strong = segmentation_transform("strong", image_size=48)
    for seed in range(5):
        torch.manual_seed(seed)
        xb, mb = basic(image, mask)
        torch.manual_seed(seed)
        xs, ms = strong(image, mask)  # the same geometry: the jitter comes last
        assert torch.equal(mb, ms) and not torch.equal(xb, xs)


def test_fit_and_pad_against_torchvision_functionals():
    image = tv_tensors.Image(torch.randint(0, 256, (3, 30, 50), dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.randint(0, 5, (30, 50)))
    x, m = FitAndPad(40, fill=[1, 2, 3])(image, mask)
    assert torch.equal(x[:, :24, :40], F.resize(image, [24, 40], antialias=True))
    assert torch.equal(m[:24], F.resize(mask, [24, 40])) and (m[24:] == 255).all()
    assert (x[:, 24:] == torch.tensor([1, 2, 3]).view(3, 1, 1)).all()
    same = FitAndPad(64)(image, mask)  # never scaled up
    assert torch.equal(same[0][:, :30, :50], image) and (same[1][30:] == 255).all()
    t = segmentation_transform("none", image_size=50, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x, m = t(image.numpy().transpose(1, 2, 0), mask.numpy())  # arrays in, plain tensors out
    assert type(x) is torch.Tensor and type(m) is torch.Tensor
    pixels = image.as_subclass(torch.Tensor).float()
    torch.testing.assert_close(x[:, :30], (pixels / 255 - 0.5) / 0.25)
    assert torch.equal(m[:30], mask.as_subclass(torch.Tensor)) and (m[30:] == 255).all()
    with pytest.raises(ValueError, match="augment must be one of"):
        segmentation_transform("heavy", image_size=8)
