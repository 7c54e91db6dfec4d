"""Detection data: the embedded shapes scenes, Pascal VOC XML through torchvision's VOCDetection and COCO JSON
through CocoDetection, on fixtures written in their real formats; box-aware transforms; the COCO ground truth
that COCOeval reads."""

import pickle
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms.v2.functional as F
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.datasets import VOCDetection, wrap_dataset_for_transforms_v2
from torchvision.ops import clip_boxes_to_image, remove_small_boxes
from torchvision.transforms import v2

from nnatlas.data import (
    SHAPE_CLASSES,
    VOC_CLASSES,
    DetectionBundle,
    DetectionTransform,
    FitWithin,
    ShapesDetection,
    detection_augmentation,
    detection_collate,
    load_dataset,
    render_scene,
    to_coco,
    voc_colormap,
)
from tests.data.fixtures import coco_instances, voc_xml, write_coco, write_voc_detection

# ---------------------------------------------------------------------------- helpers


def _xyxy(boxes) -> torch.Tensor:
    """COCO ``[x, y, w, h]`` rows as ``(N, 4)`` xyxy."""
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], dim=1)


def _reference_keep(boxes: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision.ops' reading of valid boxes: clipped to the image, then at least 1 pixel wide and high."""
    clipped = clip_boxes_to_image(boxes, size)
    return clipped, remove_small_boxes(clipped, min_size=1.0)


def _pixels(path) -> torch.Tensor:
    """The reference decoding of an image file: PIL RGB, as a ``(3, H, W)`` float in [0, 1]."""
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(
        2, 0, 1
    )


def _check_sample(image, target, *, size=None, num_classes=5):
    """What every detection sample must be, whatever the transform did."""
    assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 3
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    h, w = image.shape[-2:]
    if size is not None:
        assert (h, w) == size
    boxes = target["boxes"]
    n = len(boxes)
    assert boxes.dtype == torch.float32 and boxes.shape == (n, 4)
    assert target["labels"].dtype == target["iscrowd"].dtype == torch.int64
    assert target["labels"].shape == target["iscrowd"].shape == target["area"].shape == (n,)
    assert ((target["labels"] >= 1) & (target["labels"] < num_classes)).all()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all() and (boxes[:, 2] <= w).all()
    assert (
        (boxes[:, 3] <= h).all()
        and (boxes[:, 2] - boxes[:, 0] >= 1).all()
        and (boxes[:, 3] - boxes[:, 1] >= 1).all()
    )
    if "masks" in target:
        masks = target["masks"]
        assert masks.dtype == torch.uint8 and masks.shape == (n, h, w)
        for box, mask in zip(
            boxes, masks, strict=True
        ):  # every mask pixel lies in its box (1 px of resampling)
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(xs):
                assert xs.min() + 1 >= box[0] - 1 and xs.max() <= box[2] + 1
                assert ys.min() + 1 >= box[1] - 1 and ys.max() <= box[3] + 1


# ---------------------------------------------------------------------------- embedded shapes


def test_shapes_detection_bundle_holds_the_rendered_scenes():
    data = load_dataset("shapes", task="detection", num_train=5, num_val=4, seed=1)
    assert isinstance(data, DetectionBundle) and (data.name, data.task) == ("shapes", "detection")
    assert data.classes == ("background", *SHAPE_CLASSES) and data.num_classes == 5
    assert (data.in_channels, data.image_size, data.has_masks) == (3, (64, 64), True)
    assert data.palette == voc_colormap(5) and data.collate_fn is detection_collate
    assert (len(data.train), len(data.val)) == (5, 4)
    for split, seed in ((data.train, 2), (data.val, 3)):  # seeds 2s and 2s + 1: no scene shared
        for i in range(len(split)):
            image, target = split[i]
            scene = render_scene(np.random.default_rng([seed, i]), size=64, num_objects=(1, 4))
            n = len(scene.labels)
            assert torch.equal(image, torch.from_numpy(scene.image).permute(2, 0, 1))
            assert torch.equal(target["boxes"], torch.from_numpy(scene.boxes))
            assert torch.equal(target["labels"], torch.from_numpy(scene.labels) + 1)  # 0 is the background
            masks = torch.stack([torch.from_numpy(scene.instances == j + 1) for j in range(n)]).to(
                torch.uint8
            )
            assert torch.equal(target["masks"], masks)
            assert torch.equal(target["area"], masks.sum((1, 2)).float())  # the visible pixels, as COCO's
            assert (
                torch.equal(target["iscrowd"], torch.zeros(n, dtype=torch.int64)) and target["image_id"] == i
            )
            _check_sample(image, target, size=(64, 64))


def test_detection_batches_are_lists_and_bundles_pickle():
    data = load_dataset("shapes", task="detection", num_train=6, num_val=2, image_size=48, augment="basic")
    images, targets = next(iter(DataLoader(data.train, batch_size=4, collate_fn=data.collate_fn)))
    assert isinstance(images, list) and isinstance(targets, list) and len(images) == len(targets) == 4
    assert all(x.shape == (3, 48, 48) for x in images) and all("boxes" in t for t in targets)
    # Picklable: a DataLoader worker started by spawn (macOS, Windows) receives the dataset pickled.
    again = pickle.loads(pickle.dumps(data))
    x, t = again.val[1]
    assert torch.equal(x, data.val[1][0]) and torch.equal(t["boxes"], data.val[1][1]["boxes"])


@pytest.mark.parametrize("augment", ["basic", "strong"])
def test_shapes_augmentation_keeps_boxes_masks_and_labels_together(augment):
    data = load_dataset("shapes", task="detection", num_train=24, num_val=1, augment=augment)
    plain = ShapesDetection(24, size=64, seed=0)
    torch.manual_seed(0)
    dropped = changed = 0
    for i in range(24):
        image, target = data.train[i]
        _check_sample(image, target, size=(64, 64))
        original = plain[i][1]
        assert set(target["labels"].tolist()) <= set(original["labels"].tolist())
        dropped += len(target["boxes"]) < len(original["boxes"])
        changed += not torch.equal(target["boxes"], original["boxes"])
    assert changed > 18  # the geometry moves boxes
    assert (
        dropped > 0 or augment == "basic"
    )  # IoU crops cut objects out (basic's crops: see the corners test)


# ---------------------------------------------------------------------------- the transforms


def _scene_sample(seed=5):
    return ShapesDetection(1, size=64, seed=seed)[0]


def test_flip_and_fit_move_boxes_masks_and_area_as_torchvision_functionals():
    image, target = _scene_sample()
    x, t = DetectionTransform([v2.RandomHorizontalFlip(p=1.0)])(image, target)
    b = target["boxes"]
    assert torch.equal(x, image.flip(-1)) and torch.equal(t["masks"], target["masks"].flip(-1))
    assert torch.equal(t["boxes"], torch.stack([64 - b[:, 2], b[:, 1], 64 - b[:, 0], b[:, 3]], dim=1))
    assert torch.equal(t["area"], target["area"]) and torch.equal(t["labels"], target["labels"])
    x, t = DetectionTransform([FitWithin(32)])(image, target)  # 64 -> 32: everything halves
    assert torch.equal(x, F.resize(image, [32, 32], antialias=True))
    assert torch.equal(
        t["masks"], F.resize(tv_tensors.Mask(target["masks"]), [32, 32]).as_subclass(torch.Tensor)
    )
    assert torch.equal(t["boxes"], target["boxes"] / 2) and torch.allclose(t["area"], target["area"] / 4)
    x, t = DetectionTransform([FitWithin(100)])(image, target)  # never scaled up
    assert torch.equal(x, image) and torch.equal(t["boxes"], target["boxes"])
    wide = torch.rand(3, 30, 90)
    assert DetectionTransform([FitWithin(45)])(wide, {"boxes": [], "labels": []})[0].shape == (3, 15, 45)


def test_degenerate_and_outside_boxes_are_clipped_or_dropped():
    image = torch.rand(3, 40, 50)
    boxes = torch.tensor(
        [
            [10, 10, 20, 20],  # inside
            [5, 5, 5, 15],  # zero width
            [30, 20, 25, 35],  # negative width
            [-10, -5, 8, 12],  # partly outside, top left
            [45, 30, 70, 55],  # partly outside, bottom right
            [60, 50, 80, 70],  # wholly outside
            [20, 39.5, 30, 45],  # half a pixel high once clipped
            [12, 3, 30, 3],  # zero height
        ],
        dtype=torch.float32,
    )
    n = len(boxes)
    masks = torch.randint(0, 2, (n, 40, 50), dtype=torch.uint8)
    target = {
        "boxes": boxes,
        "labels": torch.arange(1, n + 1),
        "iscrowd": torch.tensor([0, 1] * (n // 2)),
        "area": torch.arange(n, dtype=torch.float32) * 10 + 5,
        "masks": masks,
        "image_id": 9,
    }
    x, t = DetectionTransform()(image, target)
    clipped, keep = _reference_keep(boxes, (40, 50))
    assert keep.tolist() == [0, 3, 4]
    assert torch.equal(x, image) and torch.equal(t["boxes"], clipped[keep])
    for key in ("labels", "iscrowd", "area", "masks"):
        assert torch.equal(t[key], target[key][keep]), key
    assert t["image_id"] == 9
    _check_sample(x, {k: v for k, v in t.items() if k != "masks"}, num_classes=n + 1)  # masks: random
    # Every box degenerate: the image stays, without objects.
    x, t = DetectionTransform()(image, {"boxes": boxes[[1, 2, 5]], "labels": [1, 2, 3]})
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,) and x.shape == (3, 40, 50)


@pytest.mark.parametrize("augment", ["none", "basic", "strong"])
def test_images_without_objects_pass_every_preset(augment):
    ops = detection_augmentation(augment, image_size=32, fill=0.5)
    torch.manual_seed(0)
    for target in (
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
        {"boxes": [], "labels": [], "masks": torch.zeros(0, 40, 30, dtype=torch.uint8)},
    ):
        for _ in range(5):
            x, t = DetectionTransform(ops)(torch.rand(3, 40, 30), target)
            assert t["boxes"].shape == (0, 4) and t["boxes"].dtype == torch.float32
            assert t["labels"].shape == t["iscrowd"].shape == t["area"].shape == (0,)
            assert ("masks" in t) == ("masks" in target)
            if "masks" in t:
                assert t["masks"].shape == (0, *x.shape[-2:])
            if augment != "none":
                assert x.shape == (3, 32, 32)
    _check_sample(x, t)


def test_a_crop_drops_the_boxes_it_empties_and_keeps_each_objects_entries_aligned():
    # Four 6x6 objects in the corners of a 64x64 image, each with its own label, iscrowd and area.
    corners = torch.tensor(
        [[0, 0, 6, 6], [58, 0, 64, 6], [0, 58, 6, 64], [58, 58, 64, 64]], dtype=torch.float32
    )
    masks = torch.zeros(4, 64, 64, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(corners.int().tolist()):
        masks[k, y1:y2, x1:x2] = 1
    target = {
        "boxes": corners,
        "labels": torch.tensor([1, 2, 3, 4]),
        "iscrowd": torch.tensor([0, 1, 0, 1]),
        "area": torch.tensor([10.0, 20.0, 30.0, 40.0]),
        "masks": masks,
    }
    for augment, runs in (("basic", 40), ("strong", 20)):  # an IoU crop of corner objects takes many trials
        transform = DetectionTransform(detection_augmentation(augment, image_size=64, fill=0.5))
        torch.manual_seed(1)
        dropped = 0
        for _ in range(runs):
            x, t = transform(torch.rand(3, 64, 64), target)
            _check_sample(x, t, size=(64, 64))
            dropped += len(t["boxes"]) < 4
            for box, label, crowd, area, mask in zip(
                t["boxes"], t["labels"], t["iscrowd"], t["area"], t["masks"], strict=True
            ):
                k = int(label) - 1
                assert int(crowd) == int(target["iscrowd"][k])
                # area follows its box: the given area times the box's change of area
                ratio = (box[2] - box[0]) * (box[3] - box[1]) / 36.0
                torch.testing.assert_close(area, target["area"][k] * ratio)
                assert mask.any()
        assert dropped > 3, augment


def test_colour_jitter_changes_the_image_only():
    image, target = _scene_sample()
    ops = detection_augmentation("strong", image_size=64, fill=0.5)
    assert isinstance(ops[-1], v2.RandomPhotometricDistort)
    assert not any(
        isinstance(op, v2.RandomPhotometricDistort) for op in detection_augmentation("basic", image_size=64)
    )
    differ = 0
    for seed in range(6):
        torch.manual_seed(seed)
        xg, tg = DetectionTransform(ops[:-1])(image, target)
        torch.manual_seed(seed)
        xs, ts = DetectionTransform(ops)(image, target)  # the same geometry: the jitter comes last
        for key in ("boxes", "labels", "masks", "area", "iscrowd"):
            assert torch.equal(tg[key], ts[key]), key
        differ += not torch.equal(xg, xs)
    assert differ >= 3


# ---------------------------------------------------------------------------- Pascal VOC XML


def test_voc_boxes_are_torchvisions_as_pixel_edges_with_difficult_as_crowd(tmp_path):
    base = write_voc_detection(tmp_path)
    data = load_dataset("voc", task="detection", data_dir=tmp_path)
    assert isinstance(data, DetectionBundle) and (data.num_classes, data.classes) == (21, VOC_CLASSES)
    assert (data.image_size, data.has_masks, data.palette) == ((512, 512), False, voc_colormap(21))
    seen_difficult = 0
    for split, dataset in (("train", data.train), ("val", data.val)):
        raw = VOCDetection(str(tmp_path), year="2012", image_set=split)
        reference = wrap_dataset_for_transforms_v2(raw)
        assert len(dataset) == len(raw) == len((base / f"ImageSets/Main/{split}.txt").read_text().split())
        for i in range(len(raw)):
            image, target = dataset[i]
            _check_sample(image, target, num_classes=21)
            assert torch.allclose(image, _pixels(raw.images[i]), atol=1e-6)  # not resized, not normalised
            objects = ET.parse(raw.annotations[i]).findall("object")
            assert target["image_id"] == i and len(target["boxes"]) == len(objects)
            if not objects:  # torchvision's wrapper cannot take an image without objects; ours keeps it
                assert target["boxes"].shape == (0, 4)
                continue
            _, ref = reference[i]
            # VOC's corners are 1-based and inclusive: the box covers the pixel edges (xmin - 1, ..., xmax).
            edges = ref["boxes"].as_subclass(torch.Tensor).float() - torch.tensor([1.0, 1.0, 0.0, 0.0])
            assert torch.equal(target["boxes"], edges) and torch.equal(target["labels"], ref["labels"])
            difficult = [int(o.find("difficult").text) for o in objects]
            assert target["iscrowd"].tolist() == difficult
            seen_difficult += sum(difficult)
            assert torch.equal(target["area"], (edges[:, 2] - edges[:, 0]) * (edges[:, 3] - edges[:, 1]))
    assert seen_difficult == 1
    again = pickle.loads(pickle.dumps(data.val))
    assert torch.equal(again[0][0], data.val[0][0]) and torch.equal(
        again[0][1]["iscrowd"], data.val[0][1]["iscrowd"]
    )


def test_voc_validation_scales_down_to_fit_and_training_follows_augment(tmp_path):
    write_voc_detection(tmp_path)
    data = load_dataset("voc", task="detection", data_dir=tmp_path, image_size=12)
    image, target = data.val[1]  # 16x24 (W x H) -> 8x12
    raw = VOCDetection(str(tmp_path), image_set="val")
    expected = F.to_dtype(
        F.resize(F.to_image(Image.open(raw.images[1])), [12, 8], antialias=True), scale=True
    )
    assert image.shape == (3, 12, 8) and torch.equal(image, expected.as_subclass(torch.Tensor))
    assert torch.equal(target["boxes"], torch.tensor([[0.5, 1.0, 8.0, 10.0]]))  # (1, 2, 16, 20) halved
    for augment in ("basic", "strong"):
        data = load_dataset("voc", task="detection", data_dir=tmp_path, image_size=20, augment=augment)
        images, targets = next(iter(DataLoader(data.train, batch_size=3, collate_fn=data.collate_fn)))
        assert [x.shape for x in images] == [(3, 20, 20)] * 3
        for x, t in zip(images, targets, strict=True):
            _check_sample(x, t, num_classes=21)
        assert [x.shape[-2:] for x, _ in data.val] == [(16, 20), (20, 13)]  # fitted in 20x20, not padded


def _voc_error(tmp_path, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        load_dataset("voc", task="detection", data_dir=tmp_path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and type(info.value).__name__ == "DataError"
    return message


_BOX = "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>9</xmax><ymax>8</ymax></bndbox>"


@pytest.mark.parametrize(
    "xml,said",
    [
        (
            "<annotation><object><name>dog</name></annotation>",
            "cannot parse annotation '{path}': ParseError: {parse_error}",
        ),
        (
            "<annotation><object><name>dog</name></object></annotation>",
            "annotation '{path}': object 1 ('dog') has no <bndbox>",
        ),
        (
            f"<annotation><object><name>cat</name>{_BOX}</object><object><name>person</name><bndbox><xmin>ten</xmin>"
            "<ymin>2</ymin><xmax>9</xmax><ymax>8</ymax></bndbox></object></annotation>",
            "annotation '{path}': object 2 ('person'): <xmin> is 'ten'; expected a number",
        ),
        (
            "<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>9</xmax></bndbox>"
            "</object></annotation>",
            "annotation '{path}': object 1 ('cat'): <bndbox> lacks <ymax>",
        ),
        (
            f"<annotation><object><name>dgo</name>{_BOX}</object></annotation>",
            "annotation '{path}': object 1: unknown class 'dgo'; valid choices (closest first): dog, ",
        ),
        (f"<annotation><object>{_BOX}</object></annotation>", "annotation '{path}': object 1 has no <name>"),
        (
            f"<annotation><object><name>cat</name>{_BOX}{_BOX}</object></annotation>",
            "annotation '{path}': object 1 ('cat') has 2 <bndbox> elements; expected one",
        ),
        (
            "<picture><object/></picture>",
            "annotation '{path}': the root element is <picture>; expected <annotation>",
        ),
    ],
)
def test_voc_malformed_xml_is_named_when_loading(tmp_path, xml, said):
    base = write_voc_detection(tmp_path)
    path = base / "Annotations" / "2007_000042.xml"  # a validation file: both splits are read when loading
    path.write_text(xml)
    try:  # the parser's own words for the broken file
        ET.fromstring(xml)
        parse_error = None
    except ET.ParseError as e:
        parse_error = str(e)
    message = _voc_error(tmp_path)
    assert message.startswith("voc: " + said.format(path=path, parse_error=parse_error)), message


def test_voc_missing_folders_lists_and_files_are_named(tmp_path):
    assert (
        _voc_error(tmp_path)
        == f"voc: no VOCdevkit/VOC2012 folder in '{tmp_path}'; pass download=True (--download)"
    )
    base = write_voc_detection(tmp_path)
    (base / "JPEGImages" / "2007_000032.jpg").unlink()
    (base / "Annotations" / "2007_000039.xml").unlink()
    listed = base / "ImageSets" / "Main" / "train.txt"
    assert _voc_error(tmp_path) == (
        f"voc: of the 3 ids in '{listed}', 1 without an image in JPEGImages (2007_000032.jpg); "
        "1 without an annotation in Annotations (2007_000039.xml)"
    )
    listed.write_text("")
    assert _voc_error(tmp_path) == f"voc: '{listed}' lists no image"


def test_voc_download_goes_through_torchvision(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, root, filename=None, md5=None):  # what the real one leaves: the extracted tree
        calls.append((url, md5))
        write_voc_detection(tmp_path / "fetched")

    monkeypatch.setattr(torchvision.datasets.voc, "download_and_extract_archive", fake_download)
    data = load_dataset("voc", task="detection", data_dir=tmp_path / "fetched", download=True)
    assert calls == [
        (
            "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            "6cd6e144f989b92b3379bac3b3de84fd",
        )
    ]
    assert (len(data.train), len(data.val)) == (3, 2)


def test_unreadable_images_follow_on_bad_image(tmp_path, caplog):
    base = write_voc_detection(tmp_path)
    broken = base / "JPEGImages" / "2007_000032.jpg"
    broken.write_bytes(b"not an image")
    data = load_dataset("voc", task="detection", data_dir=tmp_path)  # annotations only are read when loading
    with pytest.raises(ValueError) as info:
        data.train[1]
    assert str(info.value).startswith(
        f"voc: cannot read image '{broken}': UnidentifiedImageError: cannot identify"
    )
    skip = load_dataset("voc", task="detection", data_dir=tmp_path, on_bad_image="skip")
    with caplog.at_level("WARNING", logger="nnatlas.data"):
        first, again = skip.train[1], skip.train[1]
    expected = skip.train[2]  # the next readable sample
    assert torch.equal(first[0], expected[0]) and torch.equal(again[1]["boxes"], expected[1]["boxes"])
    assert len([r for r in caplog.records if str(broken) in r.getMessage()]) == 1  # once per file


# ---------------------------------------------------------------------------- COCO JSON


def _coco(path) -> COCO:
    coco = COCO(str(path))
    return coco


def test_coco_samples_are_pycocotools_annotations_with_contiguous_labels(tmp_path):
    write_coco(tmp_path)
    data = load_dataset("coco", data_dir=tmp_path)
    assert isinstance(data, DetectionBundle) and data.has_masks
    # Category ids 1, 3, 18 (listed out of order) become labels 1, 2, 3.
    assert data.classes == ("background", "person", "car", "dog") and data.num_classes == 4
    assert data.train.category_ids == data.val.category_ids == (1, 3, 18)
    label = {1: 1, 3: 2, 18: 3}
    seen = {"crowd": 0, "dropped": 0, "clipped": 0, "empty": 0}
    for split, dataset in (("train", data.train), ("val", data.val)):
        coco = _coco(tmp_path / f"annotations/instances_{split}2017.json")
        ids = sorted(coco.getImgIds())
        assert len(dataset) == len(ids)
        for i, image_id in enumerate(ids):
            image, target = dataset[i]
            _check_sample(image, target, num_classes=4)
            info = coco.loadImgs(image_id)[0]
            assert torch.allclose(image, _pixels(tmp_path / f"{split}2017" / info["file_name"]), atol=1e-6)
            assert target["image_id"] == image_id
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            boxes = _xyxy([a["bbox"] for a in anns])
            clipped, keep = _reference_keep(boxes, (info["height"], info["width"]))
            assert torch.equal(target["boxes"], clipped[keep])
            assert target["labels"].tolist() == [label[anns[k]["category_id"]] for k in keep]
            assert target["iscrowd"].tolist() == [anns[k]["iscrowd"] for k in keep]
            assert torch.equal(
                target["area"], torch.tensor([anns[k]["area"] for k in keep], dtype=torch.float32)
            )
            masks = [torch.from_numpy(coco.annToMask(anns[k])) for k in keep]
            expected = torch.stack(masks) if masks else torch.zeros(0, info["height"], info["width"])
            assert torch.equal(target["masks"], expected.to(torch.uint8))
            seen["crowd"] += int(target["iscrowd"].sum())
            seen["dropped"] += len(anns) - len(keep)
            seen["clipped"] += int((clipped[keep] != boxes[keep]).any())
            seen["empty"] += not anns
    assert seen == {"crowd": 2, "dropped": 1, "clipped": 1, "empty": 1}
    again = pickle.loads(pickle.dumps(data))  # what a spawned DataLoader worker receives
    for split, other in ((data.train, again.train), (data.val, again.val)):
        for (x, t), (y, u) in zip(split, other, strict=True):
            assert (
                torch.equal(x, y)
                and torch.equal(t["boxes"], u["boxes"])
                and torch.equal(t["masks"], u["masks"])
            )


@pytest.mark.parametrize("augment", ["basic", "strong"])
def test_coco_training_presets_move_polygon_and_crowd_masks_with_their_boxes(tmp_path, augment):
    write_coco(tmp_path)
    data = load_dataset("coco", data_dir=tmp_path, augment=augment, image_size=40)
    torch.manual_seed(0)
    for _ in range(4):
        for image, target in data.train:  # the degenerate, the clipped and the empty ones included
            _check_sample(image, target, size=(40, 40), num_classes=4)
            assert "masks" in target


def test_coco_without_segments_has_no_masks(tmp_path):
    write_coco(tmp_path, masks=False)
    data = load_dataset("coco", data_dir=tmp_path, augment="strong", image_size=32)
    assert not data.has_masks
    for split in (data.train, data.val):
        for image, target in split:
            assert "masks" not in target
            _check_sample(image, target, num_classes=4)
    assert {tuple(x.shape) for x, _ in data.train} == {(3, 32, 32)}


def _with(split, change):
    data = coco_instances(split)
    change(data)
    return data


def _set(path, value):
    def change(data):
        *keys, last = path
        node = data
        for key in keys:
            node = node[key]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value

    return change


@pytest.mark.parametrize(
    "change,said",
    [
        (
            '{"images": [',
            "cannot parse '{path}': JSONDecodeError: Expecting value: line 1 column 13 (char 12)",
        ),
        ("[]", "'{path}' holds a JSON list; expected an object with images, annotations and categories"),
        (
            _set(["categories"], KeyError),
            "'{path}' lacks 'categories'; a COCO instances file has images, annotations",
        ),
        (_set(["annotations"], {}), "'{path}': 'annotations' is a dict; expected a list"),
        (
            _set(["annotations", 0, "image_id"], 99),
            "'{path}': annotation 101 refers to the unknown image id 99",
        ),
        (
            _set(["annotations", 1, "category_id"], 2),
            "'{path}': annotation 102 refers to the unknown category id 2",
        ),
        (
            _set(["annotations", 0, "bbox"], [1, 2, 3]),
            "'{path}': annotation 101 has the bbox [1, 2, 3]; expected four",
        ),
        (
            _set(["annotations", 0, "bbox"], [1, "2", 3, 4]),
            "'{path}': annotation 101 has the bbox [1, \"2\", 3, 4];",
        ),
        (
            _set(["annotations", 0, "bbox"], KeyError),
            "'{path}': annotation 101 has the bbox null; expected four",
        ),
        (_set(["annotations", 1, "id"], 101), "'{path}': annotation 101: the id is used twice"),
        (_set(["annotations", 2, "id"], KeyError), "'{path}': annotations[2] has no int 'id'"),
        (
            _set(["annotations", 0, "segmentation"], [[1, 2, 3, 4]]),
            "'{path}': annotation 101 has a polygon of 4 numbers; expected x, y pairs of 3 points or more",
        ),
        (
            _set(["annotations", 3, "segmentation", "size"], [10, 10]),
            "'{path}': annotation 104 has an RLE segmentation of size [10, 10]; its image is [24, 32]",
        ),
        (_set(["annotations", 0, "iscrowd"], 2), "'{path}': annotation 101 has iscrowd 2; expected 0 or 1"),
        (_set(["images", 1, "file_name"], KeyError), "'{path}': image 3 has no 'file_name'"),
        (_set(["images", 1, "id"], 7), "'{path}': the image id 7 is used twice"),
        (_set(["categories", 0, "id"], "18"), "'{path}': categories[0] has no int 'id'"),
    ],
)
def test_coco_malformed_json_is_named_when_loading(tmp_path, change, said):
    write_coco(tmp_path)
    path = tmp_path / "annotations" / "instances_train2017.json"
    import json

    path.write_text(change if isinstance(change, str) else json.dumps(_with("train", change)))
    with pytest.raises(ValueError) as info:
        load_dataset("coco", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and type(info.value).__name__ == "DataError"
    assert message.startswith("coco: " + said.format(path=path)), message


def test_coco_layout_images_and_categories_are_checked(tmp_path):
    import json

    def error() -> str:
        with pytest.raises(ValueError) as info:
            load_dataset("coco", data_dir=tmp_path)
        assert type(info.value).__name__ == "DataError" and "\n" not in str(info.value)
        return str(info.value)

    tmp_path.joinpath("annotations").mkdir()
    train_json = tmp_path / "annotations" / "instances_train2017.json"
    assert error() == (
        f"coco: no annotation file '{train_json}' (expected under data_dir: train2017/, "
        "annotations/instances_train2017.json, val2017/, annotations/instances_val2017.json)"
    )
    write_coco(tmp_path)
    (tmp_path / "train2017" / "000000000003.jpg").unlink()
    assert error() == (
        f"coco: of the 3 images in '{train_json}', 1 are not in '{tmp_path / 'train2017'}' (000000000003.jpg)"
    )
    write_coco(tmp_path)
    val_json = tmp_path / "annotations" / "instances_val2017.json"
    val_json.write_text(json.dumps(_with("val", _set(["categories", 2, "name"], "automobile"))))
    assert error() == (
        f"coco: the categories of '{val_json}' differ from those of '{train_json}' (ids and names must match)"
    )


def test_coco_unreadable_image_is_named(tmp_path):
    write_coco(tmp_path)
    broken = tmp_path / "val2017" / "000000000042.jpg"
    broken.write_bytes(broken.read_bytes()[:100])  # its header reads, its pixels do not
    data = load_dataset("coco", data_dir=tmp_path)
    data.val[0]  # image 40
    with pytest.raises(ValueError, match=rf"^coco: cannot read image '{broken}': OSError: "):
        data.val[1]
    skip = load_dataset("coco", data_dir=tmp_path, on_bad_image="skip")
    assert skip.val[1][1]["image_id"] == 40  # the next readable sample, wrapping around


# ---------------------------------------------------------------------------- the COCO ground truth


def _index(data) -> COCO:
    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    return coco


def _stats(gt: COCO, detections: list, iou_type: str) -> np.ndarray:
    evaluation = COCOeval(gt, gt.loadRes(detections), iou_type)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return evaluation.stats


def test_to_coco_gives_cocoeval_the_ground_truth_of_the_file(tmp_path):
    write_coco(tmp_path, degenerate=False)
    data = load_dataset("coco", data_dir=tmp_path)
    original = _coco(tmp_path / "annotations" / "instances_val2017.json")
    ours = to_coco(data.val)
    assert [c["name"] for c in ours["categories"]] == ["person", "car", "dog"]
    assert [c["id"] for c in ours["categories"]] == [1, 2, 3]  # category ids are the labels
    assert sorted(im["id"] for im in ours["images"]) == sorted(original.getImgIds())
    label = {1: 1, 3: 2, 18: 3}
    # Predictions: every object found again with a jittered box and a random score, plus false positives.
    rng = np.random.default_rng(0)
    detections = []
    for ann in original.dataset["annotations"]:
        x, y, w, h = ann["bbox"]
        jitter = rng.uniform(-2, 2, size=4)
        box = [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])]
        detections.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": box})
    for image_id in original.getImgIds():
        for _ in range(3):
            x, y = rng.uniform(0, 15, size=2)
            category = int(rng.choice([1, 3, 18]))
            detections.append({"image_id": image_id, "category_id": category, "bbox": [x, y, 6.0, 8.0]})
    for det in detections:
        det["score"] = float(rng.uniform(0.05, 1))
    relabelled = [{**d, "category_id": label[d["category_id"]]} for d in detections]
    for iou_type in ("bbox", "segm"):
        expected = _stats(original, detections, iou_type)
        got = _stats(_index(ours), relabelled, iou_type)
        assert 0.1 < expected[0] < 0.99  # a figure that tells good from bad
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_to_coco_of_the_shapes_scenes_scores_their_own_boxes_and_masks_at_one():
    data = load_dataset("shapes", task="detection", num_train=1, num_val=12, seed=3)
    gt = to_coco(data.val)
    targets = [data.val[i][1] for i in range(12)]
    assert len(gt["images"]) == 12 and len(gt["annotations"]) == sum(len(t["boxes"]) for t in targets)
    first = gt["annotations"][0]
    box = targets[0]["boxes"][0].tolist()
    assert first["id"] == 1 and first["bbox"] == [box[0], box[1], box[2] - box[0], box[3] - box[1]]
    perfect = [{**a, "score": 1.0} for a in gt["annotations"]]
    for iou_type in ("bbox", "segm"):
        detections = [
            {k: v for k, v in d.items() if k != "id" and (iou_type == "segm" or k != "segmentation")}
            for d in perfect
        ]
        stats = _stats(_index(gt), detections, iou_type)
        assert stats[0] == pytest.approx(1.0) and stats[1] == pytest.approx(1.0)
    # Masks decoded back from the RLE are the targets' masks.
    from pycocotools import mask as mask_utils

    rle = dict(first["segmentation"])
    assert np.array_equal(mask_utils.decode(rle), targets[0]["masks"][0].numpy())


def test_voc_xml_fixture_is_what_torchvision_parses():
    # The fixture writer's XML read by torchvision's own parser: the same objects, parts not taken as objects.
    xml = voc_xml("x", (10, 8), [("person", (1, 2, 9, 8), 0), ("dog", (3, 3, 5, 6), 1)])
    parsed = VOCDetection.parse_voc_xml(ET.fromstring(xml))["annotation"]
    assert [o["name"] for o in parsed["object"]] == ["person", "dog"]
    assert parsed["object"][1]["difficult"] == "1" and parsed["size"]["width"] == "10"
