"""The data-set registry: names, tasks, bundles, and every loader's argument checks."""

import inspect

import pytest
import torch
from torch.utils.data import DataLoader

import nnatlas.data.registry as registry
from nnatlas.data import (
    DATASETS,
    DETECTION_DATASETS,
    FILE_DATASETS,
    SEGMENTATION_DATASETS,
    DataBundle,
    DetectionBundle,
    SegmentationBundle,
    SequenceBundle,
    get_dataset_info,
    list_datasets,
    load_dataset,
    make_sequence_split,
    pad_collate,
    register_dataset,
    tokens_to_text,
    vocab_size,
)

IMAGE_SETS = {"digits", "shapes", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder"}
SEQUENCE_SETS = {"copy", "reverse", "sort", "add"}
SEGMENTATION_SETS = {"shapes", "voc", "segfolder"}
DETECTION_SETS = {"shapes", "voc", "coco"}
FILE_SETS = {"mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder", "voc", "segfolder", "coco"}
TASK_SETS = {
    "classification": IMAGE_SETS,
    "segmentation": SEGMENTATION_SETS,
    "detection": DETECTION_SETS,
    "seq2seq": SEQUENCE_SETS,
}
#: Names registered under several tasks, which need task=.
SHARED_NAMES = {"shapes", "voc"}


def test_every_name_of_every_task_has_a_description():
    assert list_datasets() == sorted(IMAGE_SETS | SEQUENCE_SETS | SEGMENTATION_SETS | DETECTION_SETS)  # once
    assert set(list_datasets(task="classification")) == IMAGE_SETS
    assert set(list_datasets(task="seq2seq")) == SEQUENCE_SETS
    assert list_datasets(task="segmentation") == sorted(SEGMENTATION_SETS)
    assert list_datasets(task="detection") == ["coco", "shapes", "voc"]
    assert list_datasets("cifar*") == ["cifar10", "cifar100"]
    assert list_datasets("shape*") == ["shapes"]
    assert list_datasets("*mnist", task="classification") == ["fashion_mnist", "mnist"]
    assert set(FILE_DATASETS) == {"mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder"}
    for task, names in TASK_SETS.items():
        for name in names:
            info = get_dataset_info(name, task=task)
            assert (info.name, info.task) == (name, task) and info.from_files == (name in FILE_SETS)
            assert info.description == inspect.getdoc(info.loader).splitlines()[0] != ""
            if name not in SHARED_NAMES:  # a name of one task needs no task=
                assert get_dataset_info(name) is info


def test_a_name_of_several_tasks_needs_task():
    classification = get_dataset_info("shapes", task="classification")
    segmentation = get_dataset_info("shapes", task="segmentation")
    assert classification.loader is not segmentation.loader
    for call in (lambda: get_dataset_info("shapes"), lambda: load_dataset("shapes", num_train=2)):
        with pytest.raises(
            ValueError,
            match=r"^data set 'shapes' exists for several tasks; pass task='classification' or "
            r"task='detection' or task='segmentation'$",
        ):
            call()
    cls = load_dataset("shapes", task="classification", num_train=2, num_val=1)
    seg = load_dataset("shapes", task="segmentation", num_train=2, num_val=1)
    assert isinstance(cls, DataBundle) and isinstance(seg, SegmentationBundle)
    assert (cls.task, seg.task, cls.num_classes, seg.num_classes) == ("classification", "segmentation", 4, 5)
    assert isinstance(cls.train[0][1], int) and seg.train[0][1].shape == (64, 64)
    # A name of another task is refused with the task it belongs to, and the names of the task asked for.
    with pytest.raises(ValueError) as info:
        get_dataset_info("reverse", task="classification")
    assert str(info.value).startswith(
        "classification data set 'reverse' does not exist ('reverse' is a seq2seq data set); "
        "classification data sets: cifar10, cifar100, digits,"
    )
    with pytest.raises(ValueError, match=r"unknown segmentation data set 'vocc'.*closest first\): voc, "):
        load_dataset("vocc", task="segmentation")
    with pytest.raises(ValueError, match=r"unknown task 'segment'.*closest first\): segmentation"):
        get_dataset_info("voc", task="segment")


def test_unknown_names_list_the_closest_first():
    with pytest.raises(
        ValueError, match=r"unknown data set 'revers'; valid choices \(closest first\): reverse, "
    ):
        get_dataset_info("revers")
    with pytest.raises(ValueError, match=r"closest first\): cifar10, cifar100"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match=r"unknown task 'seq'.*closest first\): seq2seq"):
        list_datasets(task="seq")


def test_register_dataset_records_name_task_and_first_docstring_line(monkeypatch):
    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))

    @register_dataset(task="classification")
    def tiny(*, seed: int = 0):
        """Two samples.

        More text that is not the description."""
        return seed

    info = get_dataset_info("tiny")
    assert (info.task, info.description, info.from_files, info.loader) == (
        "classification",
        "Two samples.",
        False,
        tiny,
    )
    assert "tiny" in DATASETS and load_dataset("tiny", seed=3) == 3
    # Options shared by the image sets are accepted (and checked) even where unused.
    assert load_dataset("tiny", data_dir="x", download=False, image_size=None) == 0
    with pytest.raises(ValueError, match="classification data set 'tiny' is already registered"):
        register_dataset("tiny", task="classification")(tiny)
    with pytest.raises(ValueError, match="task must be one of classification, segmentation"):
        register_dataset("other", task="depth")
    # The same name under another task is another data set; the name alone is then ambiguous.
    register_dataset("tiny", task="seq2seq")(lambda *, seed=0: -seed)
    assert (
        load_dataset("tiny", task="seq2seq", seed=2) == -2
        and load_dataset("tiny", task="classification") == 0
    )
    assert list_datasets("tin*") == ["tiny"] and DATASETS["tiny"](seed=4) == 4
    with pytest.raises(ValueError, match="exists for several tasks"):
        load_dataset("tiny")


def test_datasets_is_a_read_only_view_of_the_classification_sets():
    assert list(DATASETS) == [
        "digits",
        "shapes",
        "mnist",
        "fashion_mnist",
        "cifar10",
        "cifar100",
        "imagefolder",
    ]
    assert "reverse" not in DATASETS and len(DATASETS) == 7
    with pytest.raises(TypeError):
        DATASETS["reverse"] = None  # type: ignore[index]
    a, b = DATASETS["digits"](seed=1), load_dataset("digits", seed=1)
    assert isinstance(a, DataBundle) and torch.equal(a.val.tensors[0], b.val.tensors[0])
    assert isinstance(DATASETS["shapes"](num_train=2, num_val=1), DataBundle)  # the view knows its task
    assert (
        list(SEGMENTATION_DATASETS) == ["shapes", "voc", "segfolder"]
        and "digits" not in SEGMENTATION_DATASETS
    )
    assert isinstance(SEGMENTATION_DATASETS["shapes"](num_train=2, num_val=1), SegmentationBundle)
    assert list(DETECTION_DATASETS) == ["shapes", "voc", "coco"] and "segfolder" not in DETECTION_DATASETS
    assert isinstance(DETECTION_DATASETS["shapes"](num_train=2, num_val=1), DetectionBundle)


@pytest.mark.parametrize("name", sorted(SEQUENCE_SETS))
def test_sequence_bundle_is_the_split_of_make_sequence_split(name):
    kw = {"num_train": 60, "num_val": 20, "min_len": 2, "max_len": 5, "num_symbols": 7, "seed": 3}
    bundle = load_dataset(name, **kw)
    train, val = make_sequence_split(name, **kw)
    assert isinstance(bundle, SequenceBundle) and (bundle.name, bundle.task) == (name, "seq2seq")
    assert bundle.train.pairs == train.pairs and bundle.val.pairs == val.pairs
    assert (bundle.vocab_size, bundle.num_symbols) == (vocab_size(name, 7), 7)
    assert (bundle.max_src_len, bundle.max_tgt_len) == (train.max_src_len, train.max_tgt_len)
    assert bundle.collate_fn is pad_collate
    src, tgt = next(iter(DataLoader(bundle.train, batch_size=8, collate_fn=bundle.collate_fn)))
    assert src.shape[0] == tgt.shape[0] == 8 and src.shape[1] <= bundle.max_src_len
    assert tgt.shape[1] <= bundle.max_tgt_len and int(src.max()) < bundle.vocab_size


def test_add_in_a_base_above_36_is_integer_addition():
    bundle = load_dataset("add", num_train=40, num_val=5, max_len=3, num_symbols=40, seed=0)
    for src, tgt in bundle.train:
        plus = 3 + 40
        split = (src == plus).nonzero().item()
        digits = [[int(t) - 3 for t in part] for part in (src[:split], src[split + 1 : -1], tgt[1:-1])]
        a, b, total = (sum(d * 40**k for k, d in enumerate(reversed(part))) for part in digits)
        assert total == a + b  # Python's integers as the reference
    assert tokens_to_text([plus], task="add", num_symbols=40) == ["+"]


@pytest.mark.parametrize("task", ["classification", "segmentation", "detection"])
def test_shapes_take_image_size(task):
    data = load_dataset("shapes", task=task, image_size=24, num_train=3, num_val=2, seed=1)
    assert data.image_size == (24, 24) and data.train[0][0].shape == (3, 24, 24) and len(data.val) == 2


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("reverse", {"num_train": 0}, "num_train must be a positive int; got 0"),
        ("copy", {"num_val": -1}, "num_val must be a positive int; got -1"),
        ("sort", {"num_train": 2.5}, "num_train must be a positive int; got 2.5"),
        ("add", {"min_len": 5, "max_len": 3}, "min_len must be <= max_len (3); got 5"),
        ("copy", {"min_len": 0}, "min_len must be a positive int; got 0"),
        ("copy", {"max_len": True}, "max_len must be a positive int; got True"),
        ("reverse", {"num_symbols": 1}, "num_symbols must be an int >= 2; got 1"),
        ("reverse", {"seed": -1}, "seed must be an int >= 0; got -1"),
        ("digits", {"seed": "0"}, "seed must be an int >= 0; got '0'"),
        ("digits", {"augment": "extreme"}, "augment must be one of"),
        ("digits", {"image_size": 32}, "image_size: digits images are 8x8 and are not resized; got 32"),
        ("mnist", {"image_size": 32}, "image_size: mnist images are 28x28"),
        ("cifar10", {"image_size": 64}, "image_size: cifar10 images are 32x32"),
        ("shapes", {"task": "classification", "image_size": 4}, "image_size must be an int >= 8; got 4"),
        ("shapes", {"task": "classification", "num_train": 0}, "num_train must be a positive int; got 0"),
        ("shapes", {"task": "classification", "num_val": 0}, "num_val must be a positive int; got 0"),
        ("shapes", {"task": "segmentation", "image_size": 4}, "image_size must be an int >= 8; got 4"),
        ("shapes", {"task": "segmentation", "num_train": 0}, "num_train must be a positive int; got 0"),
        ("shapes", {"task": "segmentation", "augment": "heavy"}, "augment must be one of"),
        ("voc", {"task": "segmentation", "image_size": 4}, "image_size must be an int >= 8; got 4"),
        ("voc", {"task": "segmentation", "on_bad_image": "ignore"}, "on_bad_image must be one of"),
        (
            "voc",
            {"task": "segmentation", "data_dir": None},
            "data set 'voc' is read from files: data_dir is required (got None)",
        ),
        ("shapes", {"task": "detection", "image_size": 4}, "image_size must be an int >= 8; got 4"),
        ("shapes", {"task": "detection", "num_val": 0}, "num_val must be a positive int; got 0"),
        ("shapes", {"task": "detection", "augment": "heavy"}, "augment must be one of"),
        ("voc", {"task": "detection", "image_size": 4}, "image_size must be an int >= 8; got 4"),
        ("voc", {"task": "detection", "on_bad_image": "ignore"}, "on_bad_image must be one of"),
        ("voc", {"task": "detection"}, "data set 'voc' is read from files: data_dir is required (got None)"),
        ("coco", {"data_dir": ".", "image_size": 4}, "image_size must be an int >= 8; got 4"),
        ("coco", {"augment": "heavy"}, "augment must be one of"),
        ("coco", {}, "data set 'coco' is read from files: data_dir is required (got None)"),
        ("coco", {"data_dir": ".", "download": True}, "download: coco is not downloaded by nnatlas; fetch"),
        ("segfolder", {"data_dir": ".", "num_classes": 1}, "num_classes must be an int in [2, 255]; got 1"),
        (
            "segfolder",
            {"data_dir": ".", "num_classes": 256},
            "num_classes must be an int in [2, 255]; got 256",
        ),
        ("imagefolder", {"on_bad_image": "ignore"}, "on_bad_image must be one of"),
        ("digits", {"on_bad_image": "ignore"}, "on_bad_image must be one of"),
        ("mnist", {"download": "yes"}, "download must be True or False; got 'yes'"),
        ("cifar10", {"data_dir": 3}, "data_dir must be a folder path"),
    ],
)
def test_loaders_check_their_arguments(name, kwargs, message):
    with pytest.raises(ValueError) as info:
        load_dataset(name, **kwargs)
    assert message in str(info.value)


def test_arguments_a_data_set_does_not_take_are_refused():
    with pytest.raises(
        TypeError, match="data set 'digits' takes no argument 'num_trian'; it takes: augment, "
    ):
        load_dataset("digits", num_trian=3)
    with pytest.raises(TypeError, match="'reverse' takes no argument 'data_dir'; it takes: max_len, min_len"):
        load_dataset("reverse", data_dir="data")
    with pytest.raises(TypeError, match="data set 'voc' takes no argument 'num_classes'; it takes: augment,"):
        load_dataset("voc", task="segmentation", num_classes=21)
    with pytest.raises(
        TypeError, match="data set 'coco' takes no argument 'num_classes'; it takes: augment,"
    ):
        load_dataset("coco", num_classes=81)


def test_the_torch_free_name_lists_of_the_cli_match_the_registry():
    from nnatlas._choices import (
        DETECTION_DATA,
        EMBEDDED_IMAGE_DATA,
        FILE_IMAGE_DATA,
        SEGMENTATION_DATA,
        SEQUENCE_DATA,
    )

    assert FILE_IMAGE_DATA == FILE_DATASETS
    assert set(EMBEDDED_IMAGE_DATA) == IMAGE_SETS - set(FILE_DATASETS)
    assert set(SEQUENCE_DATA) == set(list_datasets(task="seq2seq"))
    assert sorted(SEGMENTATION_DATA) == list_datasets(task="segmentation")
    assert sorted(DETECTION_DATA) == list_datasets(task="detection")
