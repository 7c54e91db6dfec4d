"""Tasks plug into the task-agnostic :class:`~nnatlas.engine.trainer.Trainer`.

A task turns a batch into a loss (``training_step``) and accumulates its validation metrics
(``new_metrics`` / ``validation_step``); the trainer knows nothing else about the problem.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn


class Task(Protocol):
    name: str

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """Mean loss of the batch and the number of samples it holds."""

    def new_metrics(self) -> torchmetrics.MetricCollection:
        """Fresh validation metrics; their names become the ``val_*`` columns of ``metrics.jsonl``."""

    def validation_step(self, model: nn.Module, batch: Any, metrics: torchmetrics.MetricCollection) -> None:
        """Update ``metrics`` with one batch (the model is in eval mode, gradients are off)."""


def _main_output(out: Any) -> torch.Tensor:
    # Models with auxiliary heads (GoogLeNet, Inception-v3) return (main, *aux) in training mode.
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    if isinstance(out, dict) and "out" in out:
        return out["out"]
    raise TypeError(f"cannot find the logits in a model output of type {type(out).__name__}")


class ClassificationTask:
    """Cross-entropy on logits ``(B, K)``; validation loss and top-1 accuracy (torchmetrics).

    Auxiliary logits returned in training mode add ``aux_weight`` times their own cross-entropy
    (0.3 in GoogLeNet, Szegedy et al. 2015, section 5).
    """

    name = "classification"

    def __init__(self, num_classes: int, *, label_smoothing: float = 0.0, aux_weight: float = 0.3) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}")
        self.num_classes, self.label_smoothing, self.aux_weight = num_classes, label_smoothing, aux_weight

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
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
        return torchmetrics.MetricCollection(
            {
                "loss": torchmetrics.MeanMetric(),
                "acc": torchmetrics.classification.MulticlassAccuracy(self.num_classes, average="micro"),
            }
        )

    def validation_step(self, model: nn.Module, batch: Any, metrics: torchmetrics.MetricCollection) -> None:
        x, y = batch
        logits = _main_output(model(x))
        metrics["loss"].update(F.cross_entropy(logits, y, reduction="none"))
        metrics["acc"].update(logits, y)
