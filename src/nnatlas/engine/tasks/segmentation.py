"""Semantic segmentation: per-pixel cross-entropy (with an ignore index, auxiliary heads and an optional Dice
term); pixel accuracy, per-class IoU and mIoU from one confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor, nn

from nnatlas._validate import check_finite, check_int
from nnatlas.engine.tasks.base import register_task

__all__ = ["SegmentationMetrics", "SegmentationTask", "dice_loss"]


def _outputs(out: Any) -> tuple[Tensor, Tensor | None]:
    """``(main logits, auxiliary logits or None)`` of a model output: a dict ``{"out", "aux"}`` as
    torchvision's segmentation models return, or a bare tensor."""
    if isinstance(out, Tensor):
        return out, None
    if isinstance(out, dict) and "out" in out:
        return out["out"], out.get("aux")
    raise TypeError(
        f"a segmentation model must return a tensor or a dict with 'out'; got {type(out).__name__}"
    )


def dice_loss(logits: Tensor, target: Tensor, *, ignore_index: int = 255, eps: float = 1.0) -> Tensor:
    """Soft Dice loss averaged over classes (Milletari et al. 2016, V-Net), ignoring ``ignore_index`` pixels.

    ``1 - mean_c (2 sum p_c t_c + eps) / (sum p_c + sum t_c + eps)`` with ``p = softmax(logits)`` and ``t`` the
    one-hot target; ``logits (B, K, H, W)``, ``target (B, H, W)``.
    """
    k = logits.shape[1]
    keep = (target != ignore_index).unsqueeze(1)  # (B, 1, H, W)
    probs = logits.softmax(dim=1) * keep
    onehot = F.one_hot(target.clamp(0, k - 1), k).permute(0, 3, 1, 2) * keep  # (B, K, H, W)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    return 1.0 - ((2 * inter + eps) / (total + eps)).mean()


class SegmentationMetrics(torchmetrics.Metric):
    """A ``K x K`` confusion matrix over the pixels whose label is not ``ignore_index``, summed across
    processes; ``compute()`` gives ``pixel_acc`` (correct / labelled pixels), ``iou`` per class
    (``TP / (TP + FP + FN)``, NaN for a class absent from both prediction and labels) and ``miou`` (the mean
    over the classes that occur), the rule of the Pascal VOC evaluation and of torchvision's reference
    scripts."""

    full_state_update = False

    def __init__(self, num_classes: int, *, ignore_index: int = 255) -> None:
        super().__init__()
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state(
            "confmat", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds``: logits ``(B, K, H, W)`` or labels ``(B, H, W)``; ``target`` labels ``(B, H, W)``."""
        if preds.dim() == target.dim() + 1:
            preds = preds.argmax(dim=1)
        keep = target != self.ignore_index
        t, p = target[keep].long(), preds[keep].long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}) or be {self.ignore_index}; "
                f"got values in [{int(t.min())}, {int(t.max())}]"
            )
        k = self.num_classes
        self.confmat += torch.bincount(t * k + p, minlength=k * k).view(k, k)

    def compute(self) -> dict[str, Tensor]:
        """``pixel_acc`` and ``miou`` (scalars) and ``iou`` ``(K,)`` from the summed confusion matrix."""
        cm = self.confmat.double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        return {
            "pixel_acc": (tp.sum() / cm.sum().clamp(min=1)).float(),
            "miou": iou.nanmean().float(),
            "iou": iou.float(),
        }


@register_task("segmentation")
class SegmentationTask:
    """Per-pixel cross-entropy on logits ``(B, K, H, W)`` against labels ``(B, H, W)``.

    Pixels labelled ``ignore_index`` (255: object boundaries in Pascal VOC) take no part in the loss or the
    metrics. An auxiliary head (``{"aux": ...}`` in training) adds ``aux_weight`` times its own loss (0.5, as
    torchvision's reference training of FCN and DeepLab v3); ``dice_weight > 0`` adds a soft Dice term.

    Validation metrics (the ``val_*`` columns): ``loss``, ``pixel_acc``, ``miou`` and ``iou_<class>`` for
    every class (``class_names``, or the class index).
    """

    name = "segmentation"
    main_metric = "val_miou"

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int = 255,
        aux_weight: float = 0.5,
        dice_weight: float = 0.0,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.ignore_index = check_int("ignore_index", ignore_index, minimum=0)
        if 0 <= ignore_index < num_classes:
            raise ValueError(
                f"ignore_index must not be a class id (0..{num_classes - 1}); got {ignore_index}"
            )
        self.aux_weight = check_finite("aux_weight", aux_weight, minimum=0.0)
        self.dice_weight = check_finite("dice_weight", dice_weight, minimum=0.0)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names must name the {num_classes} classes; got {len(class_names)}")
        self.class_names = tuple(class_names) if class_names is not None else None

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Mean cross-entropy of ``logits (B, K, H, W)`` against ``target (B, H, W)`` over the labelled
        pixels, plus ``dice_weight`` times :func:`~nnatlas.engine.dice_loss`; a scalar."""
        loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index)
        if self.dice_weight > 0:
            loss = loss + self.dice_weight * dice_loss(logits, target, ignore_index=self.ignore_index)
        return loss

    def training_step(self, model: nn.Module, batch: Any) -> tuple[Tensor, int]:
        """:meth:`loss` of the model's logits (plus ``aux_weight`` times that of the auxiliary head) for a
        batch ``(x (B, C, H, W), y (B, H, W))``; and ``B``."""
        x, y = batch
        out, aux = _outputs(model(x))
        loss = self.loss(out, y)
        if aux is not None and self.aux_weight > 0:
            loss = loss + self.aux_weight * self.loss(aux, y)
        return loss, y.shape[0]

    def new_metrics(self) -> torchmetrics.MetricCollection:
        """``loss`` (mean cross-entropy per labelled pixel) and ``seg``, a
        :class:`~nnatlas.engine.SegmentationMetrics`."""
        return torchmetrics.MetricCollection(
            {
                "loss": torchmetrics.MeanMetric(),
                "seg": SegmentationMetrics(self.num_classes, ignore_index=self.ignore_index),
            }
        )

    def validation_step(self, model: nn.Module, batch: Any, metrics: torchmetrics.MetricCollection) -> None:
        """Update the metrics with the main logits ``(B, K, H, W)`` against the labels ``(B, H, W)``."""
        x, y = batch
        logits, _ = _outputs(model(x))
        losses = F.cross_entropy(logits, y, ignore_index=self.ignore_index, reduction="none")  # (B, H, W)
        keep = y != self.ignore_index
        if bool(keep.any()):
            metrics["loss"].update(losses[keep])
        metrics["seg"].update(logits, y)

    def finalize(self, computed: dict[str, Any]) -> dict[str, float]:
        """The scalars of the computed metrics: ``loss``, ``pixel_acc``, ``miou``, ``iou_<class>``."""
        seg = computed["seg"] if "seg" in computed else computed
        names = self.class_names or tuple(str(i) for i in range(self.num_classes))
        out = {
            "loss": float(computed["loss"]),
            "pixel_acc": float(seg["pixel_acc"]),
            "miou": float(seg["miou"]),
        }
        out.update({f"iou_{n}": float(v) for n, v in zip(names, seg["iou"].tolist(), strict=True)})
        return out
