"""Object detection models, registered under the task "detection"; they follow torchvision's detection
contract (a list of ``(C, H, W)`` images in; a dict of losses in training, a list of
``{"boxes", "labels", "scores"}`` in eval)."""

from nnatlas.models.detection import (
    detr,  # noqa: F401  (registers DETR)
    rcnn,  # noqa: F401  (registers the R-CNN models)
    rfcn,  # noqa: F401  (registers R-FCN)
    ssd,  # noqa: F401  (registers SSD)
    yolo,  # noqa: F401  (registers YOLO v1)
)
