"""Models built from :mod:`nnatlas.layers`, found through the registry.

>>> from nnatlas.models import create_model, list_models
>>> model = create_model("cifar_resnet20", num_classes=10, in_channels=1)
"""

from nnatlas.models import (
    classification,  # noqa: F401  (registers the classification models)
    detection,  # noqa: F401  (registers the detection models)
    segmentation,  # noqa: F401  (registers the segmentation models)
    seq2seq,  # noqa: F401  (registers the sequence-to-sequence models)
)
from nnatlas.models.registry import (
    TASKS,
    ModelInfo,
    create_model,
    get_model_info,
    list_models,
    register_model,
)

__all__ = ["TASKS", "ModelInfo", "create_model", "get_model_info", "list_models", "register_model"]
