"""DETR's set prediction loss (Carion et al. 2020, section 3.1): a bipartite matching between the ``N``
predictions and the ground-truth objects, then a loss on each matched pair and "no object" elsewhere.

**Matching** (equation 1): the permutation ``sigma`` minimising ``sum_i C(y_i, y^_sigma(i))`` over the
objects ``i``, with the pair cost

    C = cost_class * (-p^(c_i)) + cost_bbox * ||b_i - b^||_1 + cost_giou * (-GIoU(b_i, b^))

(``p^`` the softmax probability of the object's class, boxes normalised ``(cx, cy, w, h)``; costs 1, 5 and
2 in the paper's experiments), found by the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``).

**Loss** (equation 2): cross-entropy over all ``N`` predictions towards the matched class or "no object"
(whose weight is ``eos_coef = 0.1``, "to account for class imbalance"), plus on matched pairs
``lambda_L1 ||b - b^||_1 + lambda_iou (1 - GIoU(b, b^))`` with ``lambda_L1 = 5``, ``lambda_iou = 2``, both
divided by the number of objects in the batch (at least 1). The classification weight is 1.

Written by hand (torchvision has no DETR); the box ops are torchvision's (``box_convert``,
``generalized_box_iou``). The layout follows the official code (facebookresearch/detr, ``matcher.py`` and
``SetCriterion`` in ``detr.py``): the last logit is "no object".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou

__all__ = ["hungarian_match", "match_cost", "set_loss"]


def match_cost(
    logits: Tensor,
    boxes: Tensor,
    target_labels: Tensor,
    target_boxes: Tensor,
    *,
    cost_class: float = 1.0,
    cost_bbox: float = 5.0,
    cost_giou: float = 2.0,
) -> Tensor:
    """The ``(Q, M)`` matching cost between ``Q`` predictions and ``M`` objects of one image.

    ``logits`` ``(Q, K + 1)``, ``boxes`` ``(Q, 4)`` and ``target_boxes`` ``(M, 4)`` normalised cxcywh,
    ``target_labels`` ``(M,)``. The class cost is ``-p`` rather than ``-log p`` (as the paper: it makes
    the class and box terms commensurable).
    """
    prob = logits.softmax(-1)  # (Q, K + 1)
    c_class = -prob[:, target_labels]  # (Q, M)
    c_bbox = torch.cdist(boxes, target_boxes, p=1)  # (Q, M)
    c_giou = -generalized_box_iou(
        box_convert(boxes, "cxcywh", "xyxy"), box_convert(target_boxes, "cxcywh", "xyxy")
    )
    return cost_bbox * c_bbox + cost_class * c_class + cost_giou * c_giou


@torch.no_grad()
def hungarian_match(
    logits: Tensor,
    boxes: Tensor,
    targets: Sequence[dict[str, Tensor]],
    *,
    cost_class: float = 1.0,
    cost_bbox: float = 5.0,
    cost_giou: float = 2.0,
) -> list[tuple[Tensor, Tensor]]:
    """For each image, ``(prediction indices, target indices)`` of the minimum-cost one-to-one matching.

    ``logits`` ``(B, Q, K + 1)``, ``boxes`` ``(B, Q, 4)`` normalised cxcywh; ``targets`` with ``labels``
    ``(M,)`` and ``boxes`` ``(M, 4)`` normalised cxcywh. Each pair of tensors has ``min(Q, M)`` int64
    entries, prediction indices increasing; an image without objects gives two empty tensors.
    """
    from scipy.optimize import linear_sum_assignment  # scipy is a dependency; imported when first needed

    out = []
    for logit, box, target in zip(logits, boxes, targets, strict=True):
        if target["labels"].numel() == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            out.append((empty, empty.clone()))
            continue
        cost = match_cost(
            logit.float(),
            box.float(),
            target["labels"],
            target["boxes"].float(),
            cost_class=cost_class,
            cost_bbox=cost_bbox,
            cost_giou=cost_giou,
        )
        i, j = linear_sum_assignment(cost.cpu().numpy())
        out.append((torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64)))
    return out


def set_loss(
    logits: Tensor,
    boxes: Tensor,
    targets: Sequence[dict[str, Tensor]],
    indices: Sequence[tuple[Tensor, Tensor]],
    *,
    num_boxes: float,
    eos_coef: float = 0.1,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(cross-entropy, L1, 1 - GIoU)`` of equation 2 for one decoder layer, unweighted.

    ``logits`` ``(B, Q, K + 1)`` (the last class is "no object"), ``boxes`` ``(B, Q, 4)`` normalised
    cxcywh, ``indices`` from :func:`hungarian_match`. The cross-entropy is the weighted mean over all
    ``B Q`` predictions (PyTorch's ``weight``); L1 and GIoU are summed over matched pairs and divided by
    ``num_boxes``.
    """
    b, q, k1 = logits.shape
    device = logits.device
    batch_idx = torch.cat([torch.full_like(src, n) for n, (src, _) in enumerate(indices)]).to(device)
    src_idx = torch.cat([src for src, _ in indices]).to(device)
    target_classes = torch.full((b, q), k1 - 1, dtype=torch.int64, device=device)
    target_classes[batch_idx, src_idx] = torch.cat(
        [t["labels"][j.to(t["labels"].device)] for t, (_, j) in zip(targets, indices, strict=True)]
    ).to(device)
    weight = torch.ones(k1, device=device, dtype=logits.dtype)
    weight[-1] = eos_coef
    loss_ce = F.cross_entropy(logits.transpose(1, 2), target_classes, weight)

    src_boxes = boxes[batch_idx, src_idx]  # (P, 4)
    tgt_boxes = torch.cat(
        [t["boxes"][j.to(t["boxes"].device)] for t, (_, j) in zip(targets, indices, strict=True)]
    ).to(device, boxes.dtype)
    loss_bbox = F.l1_loss(src_boxes, tgt_boxes, reduction="sum") / num_boxes
    giou = generalized_box_iou(
        box_convert(src_boxes, "cxcywh", "xyxy"), box_convert(tgt_boxes, "cxcywh", "xyxy")
    )
    loss_giou = (1 - torch.diag(giou)).sum() / num_boxes
    return loss_ce, loss_bbox, loss_giou
