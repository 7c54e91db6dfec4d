"""Image classification: cross-entropy on logits, top-1 accuracy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from nnatlas._validate import check_finite, check_int, check_probability
from nnatlas.engine.tasks.base import register_task


def _main_output(out: Any) -> torch.Tensor:
    # Models with auxiliary heads (GoogLeNet, Inception-v3) return (main, *aux) in training mode.
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    if isinstance(out, dict) and "out" in out:
        return out["out"]
    raise TypeError(f"cannot find the logits in a model output of type {type(out).__name__}")


@register_task("classification")
class ClassificationTask:
    """Cross-entropy on logits ``(B, K)``; validation loss and top-1 accuracy (torchmetrics).

    Auxiliary logits returned in training mode add ``aux_weight`` times their own cross-entropy
    (0.3 in GoogLeNet, Szegedy et al. 2015, section 5).
    """

    name = "classification"
    main_metric = "val_acc"

    def __init__(self, num_classes: int, *, label_smoothing: float = 0.0, aux_weight: float = 0.3) -> None:
        check_int("num_classes", num_classes, minimum=2)
        check_probability("label_smoothing", label_smoothing)
        check_finite("aux_weight", aux_weight, minimum=0.0)
        self.num_classes, self.label_smoothing, self.aux_weight = num_classes, label_smoothing, aux_weight

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """Cross-entropy of ``model(x)`` (logits ``(B, K)``, plus the weighted auxiliary terms) against
        labels ``(B,)``, for a batch ``(x (B, C, H, W), y (B,))``; and ``B``."""
        x, y = batch
        out = model(x)
        loss = F.cross_entropy(_main_output(out), y, label_smoothing=self.label_smoothing)
        if isinstance(out, (tuple, list)):
            for aux in out[1:]:
                if aux is not None:
                    loss = loss + self.aux_weight * F.cross_entropy(
                        aux, y, label_smoothing=self.label_smoothing
                    )
        return loss, y.shape[0]

    def new_metrics(self) -> torchmetrics.MetricCollection:
        """``loss`` (mean cross-entropy per sample) and ``acc`` (top-1 accuracy over the samples)."""
        return torchmetrics.MetricCollection(
            {
                "loss": torchmetrics.MeanMetric(),
                "acc": torchmetrics.classification.MulticlassAccuracy(self.num_classes, average="micro"),
            }
        )

    def validation_step(self, model: nn.Module, batch: Any, metrics: torchmetrics.MetricCollection) -> None:
        """Update the metrics with the logits ``(B, K)`` of ``x`` and the labels ``(B,)``."""
        x, y = batch
        logits = _main_output(model(x))
        metrics["loss"].update(F.cross_entropy(logits, y, reduction="none"))
        metrics["acc"].update(logits, y)
