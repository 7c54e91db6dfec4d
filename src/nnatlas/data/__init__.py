"""Data sets: embedded (digits, shapes), generated (the sequence tasks copy, reverse, sort, add) and real
formats through torchvision (MNIST, Fashion-MNIST, CIFAR-10/100, image folders, Pascal VOC segmentation
and detection, folders of images and masks, COCO detection), with the augmentation presets of
:mod:`nnatlas.data.transforms`.

Every data set has a task and a name in the registry (:mod:`nnatlas.data.registry`): :func:`list_datasets`,
:func:`get_dataset_info` and :func:`load_dataset`, which returns a :class:`DataBundle` (images: train and
validation sets with their metadata), a :class:`SegmentationBundle` (images with per-pixel masks), a
:class:`DetectionBundle` (images with boxes, labels and instance masks) or a :class:`SequenceBundle` (token
sequences). ``shapes`` is a classification, a segmentation and a detection set and ``voc`` a segmentation
and a detection set, so they are loaded with ``task=``. The file-based sets take ``data_dir`` and
``download``; every image set takes ``augment`` (none, basic, strong), applied to the training split only;
``imagefolder``, ``voc``, ``segfolder`` and ``coco`` take ``on_bad_image`` (error, skip). Files are checked
before training or when they are read: a corrupt file, a label outside the classes, a mask that does not
fit its image, a malformed annotation file or an unreadable image raises :class:`DataError` (a
``ValueError``) with one line naming the file and what is wrong. :func:`load_image` reads one image to look
at (a ``skimage.data`` photograph that ships with scikit-image, or an image file) as ``(3, H, W)``.
"""

from __future__ import annotations

from nnatlas.data import catalog as _catalog  # noqa: F401  (fills the registry)
from nnatlas.data.detection import (
    SHAPES_DETECTION_CLASSES,
    CocoDetectionFiles,
    DetectionFiles,
    ShapesDetection,
    VOCDetectionFiles,
    coco_split,
    detection_collate,
    read_coco_annotations,
    read_voc_annotation,
    to_coco,
    voc_detection_split,
)
from nnatlas.data.digits import DIGITS_CLASSES, load_digits_split
from nnatlas.data.images import SKIMAGE_IMAGES, load_image
from nnatlas.data.registry import (
    ON_BAD_IMAGE,
    SHARED_OPTIONS,
    TASKS,
    DataBundle,
    DatasetInfo,
    DatasetLoaders,
    DetectionBundle,
    SegmentationBundle,
    SequenceBundle,
    get_dataset_info,
    list_datasets,
    load_dataset,
    register_dataset,
)
from nnatlas.data.segmentation import (
    VOC_CLASSES,
    SegmentationFiles,
    read_mask,
    segfolder_split,
    voc_colormap,
    voc_split,
)
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
    ImageFolder,
    cifar_split,
    image_folder_split,
    mnist_split,
    read_cifar_pickle,
)
from nnatlas.data.transforms import (
    DetectionTransform,
    FitAndPad,
    FitWithin,
    JointTransformedDataset,
    SegmentationTransform,
    TransformedDataset,
    augmentation,
    build_transform,
    detection_augmentation,
    detection_transform,
    prepare_image,
    segmentation_transform,
)

#: Read-only view ``name -> load`` of the classification data sets (``DATASETS[n](**kw)`` is
#: ``load_dataset(n, task="classification", **kw)``); :func:`list_datasets` and :func:`get_dataset_info`
#: cover every task.
DATASETS = DatasetLoaders("classification")
#: The same view of the segmentation data sets.
SEGMENTATION_DATASETS = DatasetLoaders("segmentation")
#: The same view of the detection data sets.
DETECTION_DATASETS = DatasetLoaders("detection")
#: The classification data sets read from files under ``data_dir``, in the order they were registered.
FILE_DATASETS = tuple(n for n in DATASETS if get_dataset_info(n, task="classification").from_files)

__all__ = [
    "BOS_ID",
    "CIFAR",
    "DATASETS",
    "DETECTION_DATASETS",
    "DIGITS_CLASSES",
    "EOS_ID",
    "FASHION_CLASSES",
    "FILE_DATASETS",
    "SEGMENTATION_DATASETS",
    "VOC_CLASSES",
    "PAD_ID",
    "SEQUENCE_TASKS",
    "SHAPE_CLASSES",
    "SHAPES_DETECTION_CLASSES",
    "SKIMAGE_IMAGES",
    "ON_BAD_IMAGE",
    "SHARED_OPTIONS",
    "TASKS",
    "DataBundle",
    "DataError",
    "DatasetInfo",
    "DatasetLoaders",
    "CocoDetectionFiles",
    "DetectionFiles",
    "DetectionBundle",
    "DetectionTransform",
    "FitAndPad",
    "FitWithin",
    "JointTransformedDataset",
    "SegmentationBundle",
    "SegmentationFiles",
    "SegmentationTransform",
    "ImageFolder",
    "SequenceBundle",
    "Scene",
    "SequenceDataset",
    "ShapesDataset",
    "ShapesDetection",
    "TransformedDataset",
    "VOCDetectionFiles",
    "augmentation",
    "build_transform",
    "cifar_split",
    "coco_split",
    "detection_augmentation",
    "detection_collate",
    "detection_transform",
    "get_dataset_info",
    "image_folder_split",
    "list_datasets",
    "load_dataset",
    "load_digits_split",
    "load_image",
    "make_sequence_split",
    "mnist_split",
    "pad_collate",
    "prepare_image",
    "read_cifar_pickle",
    "read_coco_annotations",
    "read_mask",
    "read_voc_annotation",
    "register_dataset",
    "render_scene",
    "segfolder_split",
    "segmentation_transform",
    "to_coco",
    "tokens_to_text",
    "vocab_size",
    "voc_colormap",
    "voc_detection_split",
    "voc_split",
]
