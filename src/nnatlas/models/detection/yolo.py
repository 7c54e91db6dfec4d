"""YOLO v1: Redmon, Divvala, Girshick & Farhadi, "You Only Look Once: Unified, Real-Time Object Detection"
(CVPR 2016).

A single-step detector: one network maps the whole image to an ``S x S`` grid, and each cell predicts
``B`` boxes ``(x, y, sqrt(w), sqrt(h), confidence)`` and ``C`` class probabilities ``Pr(class | object)``,
an ``S x S x (5B + C)`` tensor (7 x 7 x 30 for Pascal VOC). ``(x, y)`` is the box centre relative to its
cell, ``(w, h)`` relative to the image; the network predicts the square roots of ``w`` and ``h`` (section
2.2) so that the same error weighs more on a small box than on a large one.

**Loss** (equation 3), summed over the cells ``i`` and predictors ``j`` of an image, averaged over images::

    lambda_coord sum 1obj_ij [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
    + sum 1obj_ij (C - C^)^2 + lambda_noobj sum 1noobj_ij C^2 + sum_i 1obj_i sum_c (p(c) - p^(c))^2

with ``lambda_coord = 5`` and ``lambda_noobj = 0.5``. The cell that holds an object's centre is
responsible for it; of its ``B`` predictors, the one whose box has the highest IoU with the object is
"responsible" (``1obj_ij``) and is trained towards the box and towards a confidence equal to that IoU
(``C^``, not back-propagated); every other predictor (``1noobj_ij``) towards confidence 0. Where two
objects' centres fall in one cell, the larger object is the cell's target (the paper predicts one class
per cell and does not say which). Outputs are linear, as in the paper (no sigmoid, no softmax).

**Inference** (section 2.2): class-specific confidence ``Pr(class | object) * confidence`` for every box
and class (both clamped to ``[0, 1]``: a linear output can leave that range), scores above
``score_thresh`` kept, then per-class non-maximum suppression (``torchvision.ops.batched_nms``).

**Backbones** (``backbone=``): ``"darknet"``, the paper's 24 convolutional layers of figure 3 with its two
fully connected layers (``head="fc"``, 4096 units and dropout 0.5) at 448 x 448 input: 271,703,550
parameters for ``S = 7, B = 2, C = 20``; a ResNet of the zoo (``"resnet18"`` .. ``"resnet152"``, read
through ``forward_features``, stride 32, 224 x 224 input); ``"tiny"``, a small conv network (stride 16,
112 x 112 input) for training on a CPU. The backbone's map is average-pooled to ``S x S`` (adaptively; a
no-op when it already has that size).

Written by hand: torchvision has no YOLO; the box ops (``box_convert``, ``batched_nms``,
``clip_boxes_to_image``) and the input transform are torchvision's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_convert, clip_boxes_to_image

from nnatlas._validate import check_choice, check_finite, check_int, check_probability
from nnatlas.layers import ConvNormAct
from nnatlas.models.detection._single_common import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_backbone,
    fixed_size_transform,
    prepare_inputs,
)
from nnatlas.models.registry import register_model

__all__ = ["DARKNET_CONFIG", "DarkNet24", "YOLOv1", "YOLOv1Head", "yolo_v1", "yolo_v1_loss"]

#: Convolutional layers of figure 3 as ``(kernel, out_channels, stride)`` tuples, ``"M"`` standing for a
#: 2 x 2 max pool of stride 2. 24 convolutions; 448 x 448 in, 7 x 7 x 1024 out (output stride 64).
DARKNET_CONFIG: tuple[tuple[int, int, int] | str, ...] = (
    (7, 64, 2),
    "M",
    (3, 192, 1),
    "M",
    (1, 128, 1),
    (3, 256, 1),
    (1, 256, 1),
    (3, 512, 1),
    "M",
    *((1, 256, 1), (3, 512, 1)) * 4,
    (1, 512, 1),
    (3, 1024, 1),
    "M",
    *((1, 512, 1), (3, 1024, 1)) * 2,
    (3, 1024, 1),
    (3, 1024, 2),
    (3, 1024, 1),
    (3, 1024, 1),
)


class DarkNet24(nn.Module):
    """The 24 convolutional layers of YOLO v1 (figure 3): ``(B, 3, H, W) -> (B, 1024, H / 64, W / 64)``.

    Every convolution is followed by a leaky ReLU of slope 0.1 (section 2.2) and has "same" padding.
    The paper has no batch norm (YOLO v2 added it); ``norm_layer=nn.BatchNorm2d`` adds one after each
    convolution (and drops the convolution's bias). Parameters without norm: ``sum (k^2 c_in + 1) c_out``
    over :data:`DARKNET_CONFIG` = 60,155,968.
    """

    output_stride = 64

    def __init__(self, *, in_channels: int = 3, norm_layer: type[nn.Module] | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = check_int("in_channels", in_channels)
        for item in DARKNET_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            k, out, stride = item
            layers.append(
                ConvNormAct(
                    c, out, k, stride=stride, norm_layer=norm_layer, act_layer=lambda: nn.LeakyReLU(0.1)
                )
            )
            c = out
        self.features = nn.Sequential(*layers)
        self.out_channels = self.num_features = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.1, mode="fan_out", nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)  # (B, 1024, H / 64, W / 64)


class _LastMap(nn.Module):
    """The deepest map of a :class:`~nnatlas.models.detection._single_common.FeatureBackbone`."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.out_channels = backbone.out_channels[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)[-1]


class YOLOv1Head(nn.Module):
    """``(B, c, h, w) -> (B, S, S, 5 n_boxes + n_classes)``: the map average-pooled to ``S x S``, then

    - ``kind="fc"`` (the paper): flatten, ``Linear(c S^2, hidden)``, leaky ReLU (0.1), dropout,
      ``Linear(hidden, S^2 (5 n_boxes + n_classes))``;
    - ``kind="conv"``: a ``3 x 3`` ConvNormAct of ``hidden`` channels (batch norm, leaky ReLU 0.1) and a
      ``1 x 1`` convolution to ``5 n_boxes + n_classes`` channels, the same small predictor at every cell.
    """

    def __init__(
        self,
        in_channels: int,
        grid_size: int,
        num_outputs: int,
        *,
        kind: str = "fc",
        hidden: int = 4096,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.kind, self.grid_size, self.num_outputs = kind, grid_size, num_outputs
        self.pool = nn.AdaptiveAvgPool2d(grid_size)
        s2 = grid_size * grid_size
        if kind == "fc":
            self.layers = nn.Sequential(
                nn.Flatten(1),
                nn.Linear(in_channels * s2, hidden),
                nn.LeakyReLU(0.1),
                nn.Dropout(dropout),
                nn.Linear(hidden, s2 * num_outputs),
            )
        else:
            self.layers = nn.Sequential(
                ConvNormAct(in_channels, hidden, 3, act_layer=lambda: nn.LeakyReLU(0.1)),
                nn.Conv2d(hidden, num_outputs, 1),
            )
        last = self.layers[-1]  # small initial outputs: every cell starts near "no object", loss near 0
        nn.init.normal_(last.weight, std=0.01)
        nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers(self.pool(x))
        s = self.grid_size
        if self.kind == "fc":
            return x.view(-1, s, s, self.num_outputs)  # (B, S, S, 5 n_boxes + n_classes)
        return x.permute(0, 2, 3, 1)  # (B, S, S, 5 n_boxes + n_classes)


def _iou_cxcywh(a: Tensor, b: Tensor) -> Tensor:
    """Element-wise IoU of boxes ``(..., 4)`` in ``(cx, cy, w, h)`` (broadcast), 0 where the union is 0.

    Written out because ``torchvision.ops.box_iou`` gives the pairwise ``N x M`` matrix."""
    a, b = box_convert(a, "cxcywh", "xyxy"), box_convert(b, "cxcywh", "xyxy")
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def _encode_targets(
    targets: Sequence[dict[str, Tensor]],
    image_sizes: Sequence[tuple[int, int]],
    grid_size: int,
    n_classes: int,
    device: torch.device,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(obj (N, S, S) bool, box (N, S, S, 4) cx, cy, w, h in [0, 1], cls (N, S, S, n_classes) one-hot)``.

    An object belongs to the cell holding its centre; of several in one cell, the largest one is kept."""
    n, s = len(targets), grid_size
    obj = torch.zeros(n, s, s, dtype=torch.bool, device=device)
    box = torch.zeros(n, s, s, 4, device=device)
    cls = torch.zeros(n, s, s, n_classes, device=device)
    for k, (target, (h, w)) in enumerate(zip(targets, image_sizes, strict=True)):
        boxes, labels = target["boxes"], target["labels"]
        if boxes.numel() == 0:
            continue
        scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
        cxcywh = box_convert(boxes / scale, "xyxy", "cxcywh").to(device)  # (M, 4) in [0, 1]
        cols = (cxcywh[:, 0] * s).long().clamp(0, s - 1).tolist()
        rows = (cxcywh[:, 1] * s).long().clamp(0, s - 1).tolist()
        order = torch.argsort(cxcywh[:, 2] * cxcywh[:, 3], descending=True, stable=True).tolist()
        for m in order:
            i, j = rows[m], cols[m]
            if obj[k, i, j]:
                continue  # a larger object already holds this cell
            obj[k, i, j] = True
            box[k, i, j] = cxcywh[m]
            cls[k, i, j, int(labels[m]) - 1] = 1.0
    return obj, box, cls


def yolo_v1_loss(
    pred: Tensor,
    targets: Sequence[dict[str, Tensor]],
    image_sizes: Sequence[tuple[int, int]],
    *,
    boxes_per_cell: int,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
) -> dict[str, Tensor]:
    """The loss of equation 3, as four terms summed over cells and averaged over images.

    Arguments:
        pred: ``(N, S, S, 5 B + C)`` raw outputs; per cell ``B`` times ``(x, y, sqrt w, sqrt h,
            confidence)``, then ``C`` class scores.
        targets: per image ``boxes`` ``(M, 4)`` xyxy in the pixels of ``image_sizes`` and ``labels``
            ``(M,)`` in ``1..C`` (0 is the background, never a target).
        image_sizes: ``(H, W)`` of each image.

    Returns:
        ``{"loss_coord", "loss_obj", "loss_noobj", "loss_class"}``, each already weighted by its lambda;
        their sum is the paper's loss.
    """
    n, s = pred.shape[0], pred.shape[1]
    b = boxes_per_cell
    n_classes = pred.shape[-1] - 5 * b
    obj, gt, cls_t = _encode_targets(targets, image_sizes, s, n_classes, pred.device)
    p = pred[..., : 5 * b].reshape(n, s, s, b, 5)  # (N, S, S, B, 5)
    xy, sqrt_wh, conf = p[..., :2], p[..., 2:4], p[..., 4]
    cls_p = pred[..., 5 * b :]  # (N, S, S, C)

    offsets = torch.arange(s, device=pred.device, dtype=pred.dtype)
    cell_xy = torch.stack(torch.meshgrid(offsets, offsets, indexing="xy"), dim=-1)  # (S, S, 2): (col, row)
    with torch.no_grad():
        boxes = torch.cat(((cell_xy[:, :, None] + xy) / s, sqrt_wh.square()), dim=-1)  # (N, S, S, B, 4)
        iou = _iou_cxcywh(boxes, gt[:, :, :, None])  # (N, S, S, B)
        best = iou.argmax(dim=-1, keepdim=True)  # the responsible predictor: highest IoU (first on ties)
        resp = torch.zeros_like(iou, dtype=torch.bool).scatter_(-1, best, True) & obj[..., None]
        target_xy = (gt[..., :2] * s - cell_xy)[:, :, :, None]  # (N, S, S, 1, 2) centre within the cell
        target_sqrt_wh = gt[..., 2:].sqrt()[:, :, :, None]  # (N, S, S, 1, 2)
    r = resp.to(pred.dtype)
    coord = ((xy - target_xy).square().sum(-1) + (sqrt_wh - target_sqrt_wh).square().sum(-1)) * r
    return {
        "loss_coord": lambda_coord * coord.sum() / n,
        "loss_obj": ((conf - iou).square() * r).sum() / n,
        "loss_noobj": lambda_noobj * (conf.square() * (1.0 - r)).sum() / n,
        "loss_class": ((cls_p - cls_t).square().sum(-1) * obj.to(pred.dtype)).sum() / n,
    }


class YOLOv1(nn.Module):
    """YOLO v1 with torchvision's detection contract.

    ``model(images, targets)`` in training: ``images`` a list of ``(3, H, W)`` floats in ``[0, 1]`` (any
    sizes), ``targets`` ``[{"boxes": (M, 4) xyxy pixels, "labels": (M,) in 1..num_classes-1}]``; returns
    the dict of :func:`yolo_v1_loss`. In eval, ``model(images)`` returns one ``{"boxes" (K, 4) xyxy in the
    input's pixels, "labels" (K,) int64, "scores" (K,)}`` per image, sorted by decreasing score.

    Arguments:
        backbone: ``(B, 3, image_size, image_size) -> (B, c, h, w)``, with an ``out_channels`` attribute.
        num_classes: classes including the background (``C = num_classes - 1`` class scores per cell).
        grid_size: ``S``. boxes_per_cell: ``B``.
        image_size: every image is normalised (``image_mean``, ``image_std``) and resized to it.
        head: ``"fc"`` (the paper) or ``"conv"`` (see :class:`YOLOv1Head`); head_channels: its hidden
            width; dropout: after the first fully connected layer.
        lambda_coord, lambda_noobj: the loss weights.
        score_thresh, nms_thresh, detections_per_img: inference.
    """

    min_size = 1

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_classes: int,
        grid_size: int = 7,
        boxes_per_cell: int = 2,
        image_size: int = 448,
        head: str = "fc",
        head_channels: int = 4096,
        dropout: float = 0.5,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.grid_size = check_int("grid_size", grid_size)
        self.boxes_per_cell = check_int("boxes_per_cell", boxes_per_cell)
        check_choice("head", head, ("fc", "conv"))
        self.lambda_coord = check_finite("lambda_coord", lambda_coord, minimum=0)
        self.lambda_noobj = check_finite("lambda_noobj", lambda_noobj, minimum=0)
        self.score_thresh = check_probability("score_thresh", score_thresh)
        self.nms_thresh = check_finite("nms_thresh", nms_thresh, minimum=0, maximum=1)
        self.detections_per_img = check_int("detections_per_img", detections_per_img)
        self.transform = fixed_size_transform(image_size, image_mean, image_std)
        self.image_size = image_size
        self.backbone = backbone
        self.head = YOLOv1Head(
            backbone.out_channels,
            grid_size,
            5 * boxes_per_cell + num_classes - 1,
            kind=head,
            hidden=check_int("head_channels", head_channels),
            dropout=check_probability("dropout", dropout),
        )

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        image_list, targets, original_sizes = prepare_inputs(
            self.transform,
            images,
            targets,
            training=self.training,
            num_classes=self.num_classes,
            model="YOLOv1",
        )
        pred = self.head(self.backbone(image_list.tensors))  # (N, S, S, 5B + C)
        if self.training:
            return yolo_v1_loss(
                pred,
                targets,
                image_list.image_sizes,
                boxes_per_cell=self.boxes_per_cell,
                lambda_coord=self.lambda_coord,
                lambda_noobj=self.lambda_noobj,
            )
        detections = self.postprocess(pred, image_list.image_sizes)
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)

    @torch.no_grad()
    def postprocess(self, pred: Tensor, image_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Boxes in the pixels of ``image_sizes``, class-specific confidences, per-class NMS."""
        n, s = pred.shape[0], pred.shape[1]
        b = self.boxes_per_cell
        p = pred[..., : 5 * b].reshape(n, s, s, b, 5).float()
        cls_p = pred[..., 5 * b :].float().clamp(0, 1)  # (N, S, S, C)
        n_classes = cls_p.shape[-1]
        offsets = torch.arange(s, device=pred.device, dtype=p.dtype)
        cell_xy = torch.stack(torch.meshgrid(offsets, offsets, indexing="xy"), dim=-1)  # (S, S, 2)
        cxcy = (cell_xy[:, :, None] + p[..., :2]) / s  # (N, S, S, B, 2) in [0, 1] of the image
        boxes = box_convert(torch.cat((cxcy, p[..., 2:4].square()), -1), "cxcywh", "xyxy")
        scores = p[..., 4].clamp(0, 1)[..., None] * cls_p[:, :, :, None, :]  # (N, S, S, B, C)
        labels = torch.arange(1, n_classes + 1, device=pred.device).expand(s * s * b, n_classes)
        out = []
        for k, (h, w) in enumerate(image_sizes):
            bx = boxes[k].reshape(-1, 1, 4) * torch.tensor([w, h, w, h], device=pred.device, dtype=p.dtype)
            bx = clip_boxes_to_image(bx.expand(-1, n_classes, 4).reshape(-1, 4), (h, w))
            sc, lb = scores[k].reshape(-1), labels.reshape(-1)
            keep = torch.where(sc > self.score_thresh)[0]
            bx, sc, lb = bx[keep], sc[keep], lb[keep]
            keep = batched_nms(bx, sc, lb, self.nms_thresh)[: self.detections_per_img]
            out.append({"boxes": bx[keep], "labels": lb[keep], "scores": sc[keep]})
        return out


#: Per backbone: the input size and head of its default configuration.
_DEFAULTS = {"darknet": (448, "fc"), "tiny": (112, "conv")} | {
    name: (224, "conv") for name in BACKBONES if name.startswith("resnet")
}


@register_model(task="detection", input_size=(3, 96, 96), min_size=1)
def yolo_v1(
    *,
    num_classes: int = 21,
    backbone: str = "tiny",
    image_size: int | None = None,
    grid_size: int = 7,
    boxes_per_cell: int = 2,
    head: str | None = None,
    head_channels: int | None = None,
    weights_backbone: str | None = None,
    progress: bool = True,
    darknet_norm: bool = False,
    **kwargs,
) -> YOLOv1:
    """YOLO v1 (Redmon et al. 2016): an S x S grid of B boxes and C class scores per cell.

    ``backbone``: ``"tiny"`` (default, the CPU configuration: a small convolutional network read at stride 16,
    112 x 112 input, a conv head of 128 channels; 443,518 parameters for ``num_classes=5``), ``"darknet"`` (the
    paper's network of figure 3 at 448 x 448 with the fully connected head: 271,703,550 parameters for
    ``num_classes=21``; ``darknet_norm=True`` adds batch norm after each convolution, YOLO v2's change) or
    a zoo ResNet ``"resnet18"`` .. ``"resnet152"`` (``forward_features``, 224 x 224 input, conv head;
    ``weights_backbone="torchvision"`` loads ImageNet weights). ``image_size`` and ``head`` default to
    those of the backbone; ``head_channels`` to 4096 for ``"fc"`` (the paper) and to the backbone's
    channels for ``"conv"``. Other keywords (``lambda_coord``, ``lambda_noobj``, ``score_thresh``,
    ``nms_thresh``, ``detections_per_img``, ``dropout``, ``image_mean``, ``image_std``) go to
    :class:`YOLOv1`.
    """
    check_choice("backbone", backbone, ("darknet", *BACKBONES))
    default_size, default_head = _DEFAULTS[backbone]
    image_size = default_size if image_size is None else image_size
    head = default_head if head is None else head
    if backbone == "darknet":
        if weights_backbone is not None:
            raise ValueError(
                f"backbone='darknet' has no pretrained weights; got weights_backbone={weights_backbone!r}"
            )
        body: nn.Module = DarkNet24(norm_layer=nn.BatchNorm2d if darknet_norm else None)
    else:
        index = 3 if backbone == "tiny" else 4  # stride 16 for the tiny network, ResNet's layer4 (stride 32)
        body = _LastMap(
            build_backbone(backbone, indices=(index,), weights=weights_backbone, progress=progress)
        )
    if head_channels is None:
        head_channels = 4096 if head == "fc" else body.out_channels
    return YOLOv1(
        body,
        num_classes=num_classes,
        grid_size=grid_size,
        boxes_per_cell=boxes_per_cell,
        image_size=image_size,
        head=head,
        head_channels=head_channels,
        **kwargs,
    )
