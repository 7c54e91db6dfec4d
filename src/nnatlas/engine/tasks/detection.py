"""Object detection with torchvision's contract: the model computes its own losses in training and returns
boxes in eval; COCO mean average precision through torchmetrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchmetrics
from torch import Tensor, nn

from nnatlas._validate import check_int
from nnatlas.engine.tasks.base import register_task

__all__ = ["DetectionTask"]

#: The summary numbers of COCO's evaluation that become ``val_*`` columns (Lin et al. 2014).
MAP_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100")


@register_task("detection")
class DetectionTask:
    """A detector following torchvision's detection contract.

    ``model(images, targets)`` in training returns a dict of losses (their sum is minimised and is the
    ``train_loss`` column); ``model(images)`` in eval returns one ``{"boxes" (N, 4) xyxy, "labels", "scores"}``
    (and ``"masks" (N, 1, H, W)``) per image. Batches are ``(list of (C, H, W) images, list of target dicts)``.

    Validation metrics (the ``val_*`` columns): COCO's mAP@[.5:.95] (``map``), mAP@.5 (``map_50``), mAP@.75,
    by object size (``map_small`` / ``medium`` / ``large``) and the recalls ``mar_1`` / ``mar_10`` /
    ``mar_100``, from ``torchmetrics.detection.MeanAveragePrecision`` (pycocotools' COCOeval underneath);
    with ``masks=True`` the same for the instance masks, prefixed ``segm_``. A size class without objects
    gives NaN (written as ``null``), where COCOeval prints -1.
    """

    name = "detection"
    main_metric = "val_map_50"

    def __init__(
        self, num_classes: int, *, masks: bool = False, class_names: Sequence[str] | None = None
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.masks = bool(masks)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names must name the {num_classes} classes; got {len(class_names)}")
        self.class_names = tuple(class_names) if class_names is not None else None

    def training_step(self, model: nn.Module, batch: Any) -> tuple[Tensor, int]:
        """The sum of the losses ``model(images, targets)`` returns, and the number of images."""
        images, targets = batch
        losses = model(list(images), list(targets))
        if not isinstance(losses, dict) or not losses:
            raise TypeError(
                f"a detector in training mode must return a dict of losses; got {type(losses).__name__}"
            )
        return sum(losses.values()), len(images)

    def new_metrics(self) -> torchmetrics.MetricCollection:
        """One ``map``: COCO's ``MeanAveragePrecision`` (boxes, and masks with ``masks=True``), with COCOeval's
        IoU and recall thresholds."""
        from torchmetrics.detection import MeanAveragePrecision

        iou_type = ("bbox", "segm") if self.masks else "bbox"
        # COCOeval's own thresholds in float64: torchmetrics' defaults come from a float32 linspace, which moves
        # a recall threshold such as 0.51 off COCO's by 1e-8 and changes the AP where a recall lands on it.
        metric = MeanAveragePrecision(
            iou_type=iou_type,
            backend="pycocotools",
            iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(),
            rec_thresholds=np.linspace(0.0, 1.0, 101).tolist(),
        )
        return torchmetrics.MetricCollection({"map": metric})

    def validation_step(self, model: nn.Module, batch: Any, metrics: torchmetrics.MetricCollection) -> None:
        """Update the metrics with ``model(images)``'s detections against the targets (crowd regions kept
        as ``iscrowd``; masks ``(N, 1, H, W)`` thresholded at 0.5)."""
        images, targets = batch
        preds = model(list(images))
        metrics["map"].update(
            [self._metric_input(p, prediction=True) for p in preds],
            [self._metric_input(t, prediction=False) for t in targets],
        )

    def _metric_input(self, d: dict[str, Tensor], *, prediction: bool) -> dict[str, Tensor]:
        out = {"boxes": d["boxes"].float(), "labels": d["labels"].long()}
        if prediction:
            out["scores"] = d["scores"].float()
        if self.masks:
            masks = d.get("masks")
            if masks is None:
                h, w = (0, 0)
                masks = torch.zeros((len(out["boxes"]), h, w), dtype=torch.bool)
            elif masks.dim() == 4:  # (N, 1, H, W) probabilities from Mask R-CNN
                masks = masks[:, 0] > 0.5
            out["masks"] = masks.bool()
        if not prediction and "iscrowd" in d:
            out["iscrowd"] = d["iscrowd"].long()
        return out

    def finalize(self, computed: dict[str, Any]) -> dict[str, float]:
        """The COCO summary numbers as scalars (``map``, ``map_50``, ... and ``segm_*`` with masks)."""
        prefixes = (("bbox_", ""), ("segm_", "segm_")) if self.masks else (("", ""),)
        out: dict[str, float] = {}
        for source, target in prefixes:
            for key in MAP_KEYS:
                value = computed.get(source + key, computed.get(key) if not source else None)
                if value is not None:
                    # COCOeval writes -1 where no object of that size exists: not applicable, not a score.
                    out[target + key] = float("nan") if float(value) == -1.0 else float(value)
        return out
