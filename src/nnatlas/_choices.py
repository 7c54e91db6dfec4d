"""Names of the engine's and data's choices, importable without torch (the CLI builds its parser from them)."""

#: Names of the optimisers :func:`~nnatlas.engine.build_optimizer` makes.
OPTIMIZERS = ("adamw", "sgd")
#: Names of the learning-rate schedules :func:`~nnatlas.engine.build_scheduler` makes.
SCHEDULERS = ("cosine", "constant", "step", "onecycle")
AMP_MODES = ("none", "bf16", "fp16")
AUGMENT_PRESETS = ("none", "basic", "strong")
#: What a file-based image set does with an image it cannot decode: ``error`` (raise a
#: :class:`~nnatlas.data.DataError` naming the file) or ``skip`` (take the next readable sample).
ON_BAD_IMAGE = ("error", "skip")
#: Registered data sets by task, for help texts that must not import torch (a test keeps them equal to
#: nnatlas.data.list_datasets).
EMBEDDED_IMAGE_DATA = ("digits", "shapes")
FILE_IMAGE_DATA = ("mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder")
SEQUENCE_DATA = ("copy", "reverse", "sort", "add")
SEGMENTATION_DATA = ("shapes", "voc", "segfolder")
DETECTION_DATA = ("shapes", "voc", "coco")
