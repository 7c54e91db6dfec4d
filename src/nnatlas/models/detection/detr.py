"""DETR: Carion, Massa, Synnaeve, Usunier, Kirillov & Zagoruyko, "End-to-End Object Detection with
Transformers" (ECCV 2020).

A CNN backbone gives a ``(B, C, h, w)`` map; a ``1 x 1`` convolution projects it to ``d`` channels and
its ``h w`` cells become the tokens of a Transformer encoder. The decoder takes ``N`` learned "object
queries" (the empty object slots of the notes) and, attending to each other and to the encoder's output,
turns each into one prediction: ``K + 1`` class logits (the last is "no object") and a box
``(cx, cy, w, h)`` normalised to the image by a 3-layer MLP and a sigmoid. There are no anchors and no
non-maximum suppression: training matches predictions to objects one-to-one (Hungarian algorithm, see
``nnatlas.models.detection._detr_loss``) and the loss pushes every unmatched slot to "no object".

As the official code (facebookresearch/detr): the encoder and decoder are post-norm Transformer layers
whose attention adds a positional encoding to the queries and keys but not to the values, at every
layer (section 3.2 and A.3): the fixed 2-D sine encoding (:class:`SinePositionalEncoding2d`) on the image
tokens, the learned query embedding on the object queries, whose decoder input starts at zero; the
encoder has no final norm, the decoder's output (and every intermediate output, for the auxiliary
losses of section 3.2) goes through one shared ``LayerNorm``. The layers are ours
(:class:`~nnatlas.layers.TransformerEncoderLayer` / :class:`~nnatlas.layers.TransformerDecoderLayer`,
``batch_first=True``, same parameters and keys as the official ones); only their ``forward`` is
replaced, to add the positional encodings. Auxiliary decoding losses: the same prediction heads and the
same set loss after each decoder layer.

Images of different sizes are resized (``min_size`` / ``max_size``, or one fixed ``image_size``) and
padded to a batch; a padding mask keeps padded cells out of the attention and out of the positional
encoding, as the official ``NestedTensor``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import box_convert, clip_boxes_to_image
from torchvision.ops.misc import FrozenBatchNorm2d

from nnatlas._validate import check_finite, check_int, check_probability
from nnatlas.layers import TransformerDecoderLayer, TransformerEncoderLayer
from nnatlas.models.detection._detr_loss import hungarian_match, set_loss
from nnatlas.models.detection._single_common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_backbone,
    fixed_size_transform,
    prepare_inputs,
)
from nnatlas.models.registry import register_model

__all__ = ["DETR", "DETRTransformer", "SinePositionalEncoding2d", "detr", "DETR_SCALES", "detr_resnet50"]


class SinePositionalEncoding2d(nn.Module):
    """The 2-D sine encoding of DETR (``PositionEmbeddingSine(normalize=True)`` of the official code).

    ``forward(mask (B, H, W) bool, True at padding) -> (B, 2F, H, W)`` with ``F = num_pos_feats``: for a
    valid cell, ``y`` is its 1-based row among the valid rows divided by their number and times ``2 pi``
    (``x`` likewise for columns), and the channels are ``[enc(y), enc(x)]`` with
    ``enc(t)[2i] = sin(t / T^(2i / F))``, ``enc(t)[2i + 1] = cos(t / T^(2i / F))``, ``T = temperature``.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi):
        super().__init__()
        if not isinstance(num_pos_feats, int) or num_pos_feats < 2 or num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be a positive even int; got {num_pos_feats!r}")
        self.num_pos_feats, self.temperature, self.scale = num_pos_feats, temperature, scale

    def forward(self, mask: Tensor) -> Tensor:
        not_mask = (~mask).float()
        y = not_mask.cumsum(1)  # (B, H, W): 1-based row among the valid ones
        x = not_mask.cumsum(2)
        eps = 1e-6
        y = y / (y[:, -1:, :] + eps) * self.scale
        x = x / (x[:, :, -1:] + eps) * self.scale
        f = self.num_pos_feats
        dim_t = torch.arange(f, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / f)  # (F,)
        pos_x, pos_y = x[..., None] / dim_t, y[..., None] / dim_t  # (B, H, W, F)
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)  # (B, 2F, H, W)


class _DetrEncoderLayer(TransformerEncoderLayer):
    """Our encoder layer whose self-attention reads ``x + pos`` as queries and keys and ``x`` as values.

    ``forward(src (B, S, d), pos (B, S, d), key_padding_mask (B, S) | None) -> (B, S, d)``.
    """

    def forward(self, src: Tensor, pos: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if self.norm_first:
            x = self.norm1(src)
            src = src + self._attend(x, pos, key_padding_mask)
            return src + self._ff_block(self.norm2(src))
        src = self.norm1(src + self._attend(src, pos, key_padding_mask))
        return self.norm2(src + self._ff_block(src))

    def _attend(self, x: Tensor, pos: Tensor, kpm: Tensor | None) -> Tensor:
        qk = x + pos
        return self.dropout1(self.self_attn(qk, qk, x, key_padding_mask=kpm, need_weights=False)[0])


class _DetrDecoderLayer(TransformerDecoderLayer):
    """Our decoder layer with DETR's positional encodings: self-attention over ``tgt + query_pos``
    (queries and keys), cross-attention from ``tgt + query_pos`` to ``memory + pos`` (values: ``memory``).

    ``forward(tgt (B, N, d), memory (B, S, d), pos (B, S, d), query_pos (B, N, d), memory_key_padding_mask
    (B, S) | None) -> (B, N, d)``; no causal mask: every object query sees every other.
    """

    def forward(  # type: ignore[override]
        self,
        tgt: Tensor,
        memory: Tensor,
        pos: Tensor,
        query_pos: Tensor,
        memory_key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        kpm = memory_key_padding_mask
        if self.norm_first:
            tgt = tgt + self._self(self.norm1(tgt), query_pos)
            tgt = tgt + self._cross(self.norm2(tgt), memory, pos, query_pos, kpm)
            return tgt + self._ff_block(self.norm3(tgt))
        tgt = self.norm1(tgt + self._self(tgt, query_pos))
        tgt = self.norm2(tgt + self._cross(tgt, memory, pos, query_pos, kpm))
        return self.norm3(tgt + self._ff_block(tgt))

    def _self(self, x: Tensor, query_pos: Tensor) -> Tensor:
        qk = x + query_pos
        return self.dropout1(self.self_attn(qk, qk, x, need_weights=False)[0])

    def _cross(self, x: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor, kpm: Tensor | None) -> Tensor:
        out = self.multihead_attn(
            x + query_pos, memory + pos, memory, key_padding_mask=kpm, need_weights=False
        )
        return self.dropout2(out[0])


class _Stack(nn.Module):
    """``num_layers`` copies of a layer (``layers.<i>``) and an optional ``norm``: the official keys."""

    def __init__(self, layer: nn.Module, num_layers: int, norm: nn.Module | None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm


class DETRTransformer(nn.Module):
    """DETR's encoder-decoder: ``forward(src (B, S, d), mask (B, S) | None, query_embed (N, d), pos (B, S, d))
    -> (L, B, N, d)``, the normalised output of each of the ``L`` decoder layers (the last is the
    prediction, the others feed the auxiliary losses).

    Post-norm layers (``norm_first=False``, the paper) and no final encoder norm; with ``norm_first=True``
    the encoder gets a final ``LayerNorm``, as the official ``pre_norm`` option. Every parameter of more
    than one dimension is initialised Xavier-uniform, as the official code.
    """

    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        check_int("num_encoder_layers", num_encoder_layers, minimum=0)
        check_int("num_decoder_layers", num_decoder_layers)
        args = (d_model, nhead, dim_feedforward, dropout)
        enc = _DetrEncoderLayer(*args, batch_first=True, norm_first=norm_first)
        dec = _DetrDecoderLayer(*args, batch_first=True, norm_first=norm_first)
        self.encoder = _Stack(enc, num_encoder_layers, nn.LayerNorm(d_model) if norm_first else None)
        self.decoder = _Stack(dec, num_decoder_layers, nn.LayerNorm(d_model))
        self.d_model, self.nhead = d_model, nhead
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, mask: Tensor | None, query_embed: Tensor, pos: Tensor) -> Tensor:
        memory = src
        for layer in self.encoder.layers:
            memory = layer(memory, pos, mask)
        if self.encoder.norm is not None:
            memory = self.encoder.norm(memory)
        query_pos = query_embed.unsqueeze(0).expand(src.shape[0], -1, -1)  # (B, N, d)
        tgt = torch.zeros_like(query_pos)
        hs = []
        for layer in self.decoder.layers:
            tgt = layer(tgt, memory, pos, query_pos, mask)
            hs.append(self.decoder.norm(tgt))
        return torch.stack(hs)  # (L, B, N, d)


class _MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (the box head: 3 layers, ``d -> d -> d -> 4``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [output_dim], strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class DETR(nn.Module):
    """DETR with torchvision's detection contract.

    ``model(images, targets)`` in training: ``images`` a list of ``(3, H, W)`` floats in ``[0, 1]``,
    ``targets`` ``[{"boxes": (M, 4) xyxy pixels, "labels": (M,) in 1..num_classes-1}]``; returns the
    losses already weighted, their sum the objective: ``loss_ce`` (weight ``loss_ce``), ``loss_bbox``
    (``loss_bbox``, L1), ``loss_giou`` (``loss_giou``) for the last decoder layer and, with ``aux_loss``,
    ``loss_ce_<i>``, ``loss_bbox_<i>``, ``loss_giou_<i>`` for layers ``i = 0 .. L-2`` (the official names).
    In eval, one ``{"boxes" (N, 4) xyxy in the input's pixels, "labels" (N,), "scores" (N,)}`` per image
    for all ``N`` queries, sorted by decreasing score: the score of a query is its highest class
    probability outside "no object" and the background.

    Arguments:
        backbone: ``(B, 3, H, W) -> [..., (B, C, h, w)]`` (the last map is read), with ``out_channels``.
        num_classes: classes including the background 0 (labels ``1..num_classes-1``); the classifier has
            ``num_classes + 1`` outputs, the last "no object" and the first (background) never a target,
            as the official code for COCO (``num_classes = max id + 1 = 91``, 92 outputs).
        num_queries: ``N``, the object slots. hidden_dim, nheads, enc_layers, dec_layers,
            dim_feedforward, dropout, norm_first: the Transformer (:class:`DETRTransformer`).
        aux_loss: auxiliary decoding losses. cost_class, cost_bbox, cost_giou: the matching costs;
            loss_ce, loss_bbox, loss_giou: the loss weights; eos_coef: the "no object" class weight.
        transform: torchvision's ``GeneralizedRCNNTransform`` (normalise, resize, pad).
    """

    min_size = 1

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_classes: int,
        transform: GeneralizedRCNNTransform,
        num_queries: int = 100,
        hidden_dim: int = 256,
        nheads: int = 8,
        enc_layers: int = 6,
        dec_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        norm_first: bool = False,
        aux_loss: bool = True,
        cost_class: float = 1.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        loss_ce: float = 1.0,
        loss_bbox: float = 5.0,
        loss_giou: float = 2.0,
        eos_coef: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.num_queries = check_int("num_queries", num_queries)
        check_int("hidden_dim", hidden_dim, minimum=2)
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (half of it encodes y, half x); got {hidden_dim}")
        check_probability("dropout", dropout)
        self.aux_loss = bool(aux_loss)
        self.costs = {
            "cost_class": check_finite("cost_class", cost_class, minimum=0),
            "cost_bbox": check_finite("cost_bbox", cost_bbox, minimum=0),
            "cost_giou": check_finite("cost_giou", cost_giou, minimum=0),
        }
        self.weights = {
            "loss_ce": check_finite("loss_ce", loss_ce, minimum=0),
            "loss_bbox": check_finite("loss_bbox", loss_bbox, minimum=0),
            "loss_giou": check_finite("loss_giou", loss_giou, minimum=0),
        }
        self.eos_coef = check_probability("eos_coef", eos_coef, allow_one=True)
        self.transform = transform
        self.backbone = backbone
        self.position_encoding = SinePositionalEncoding2d(hidden_dim // 2)
        self.input_proj = nn.Conv2d(backbone.out_channels[-1], hidden_dim, kernel_size=1)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.transformer = DETRTransformer(
            hidden_dim, nheads, enc_layers, dec_layers, dim_feedforward, dropout, norm_first=norm_first
        )
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.bbox_embed = _MLP(hidden_dim, hidden_dim, 4, 3)

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        image_list, targets, original_sizes = prepare_inputs(
            self.transform,
            images,
            targets,
            training=self.training,
            num_classes=self.num_classes,
            model="DETR",
        )
        logits, boxes = self.predict(image_list.tensors, image_list.image_sizes)
        if self.training:
            return self.loss(logits, boxes, targets, image_list.image_sizes)
        detections = self.postprocess(logits[-1], boxes[-1], image_list.image_sizes)
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)

    def predict(self, x: Tensor, image_sizes: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """``(logits (L, B, N, K + 1), boxes (L, B, N, 4) normalised cxcywh)`` of every decoder layer for the
        padded batch ``x`` whose images have ``image_sizes`` (the rest is padding)."""
        feature = self.backbone(x)[-1]  # (B, C, h, w)
        pad = torch.ones(x.shape[0], x.shape[-2], x.shape[-1], dtype=torch.bool, device=x.device)
        for k, (h, w) in enumerate(image_sizes):
            pad[k, :h, :w] = False
        mask = F.interpolate(pad[None].float(), size=feature.shape[-2:])[0].bool()  # (B, h, w), nearest
        pos = self.position_encoding(mask).to(feature.dtype)  # (B, d, h, w)
        src = self.input_proj(feature).flatten(2).transpose(1, 2)  # (B, h w, d)
        pos = pos.flatten(2).transpose(1, 2)  # (B, h w, d)
        kpm = mask.flatten(1) if bool(mask.any()) else None  # (B, h w)
        hs = self.transformer(src, kpm, self.query_embed.weight, pos)  # (L, B, N, d)
        return self.class_embed(hs), self.bbox_embed(hs).sigmoid()

    def loss(
        self,
        logits: Tensor,
        boxes: Tensor,
        targets: Sequence[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
    ) -> dict[str, Tensor]:
        """The weighted set losses of the last decoder layer and (``aux_loss``) of the earlier ones."""
        normalised = []
        for t, (h, w) in zip(targets, image_sizes, strict=True):
            scale = torch.tensor([w, h, w, h], dtype=t["boxes"].dtype, device=t["boxes"].device)
            normalised.append(
                {"labels": t["labels"], "boxes": box_convert(t["boxes"] / scale, "xyxy", "cxcywh")}
            )
        num_boxes = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=logits.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(num_boxes)  # the average number of objects per process, as official
            num_boxes = num_boxes / torch.distributed.get_world_size()
        num_boxes = max(float(num_boxes), 1.0)
        last = logits.shape[0] - 1
        layers = [last, *range(last)] if self.aux_loss else [last]
        losses = {}
        for layer in layers:
            indices = hungarian_match(logits[layer], boxes[layer], normalised, **self.costs)
            ce, l1, giou = set_loss(
                logits[layer], boxes[layer], normalised, indices, num_boxes=num_boxes, eos_coef=self.eos_coef
            )
            suffix = "" if layer == last else f"_{layer}"
            losses["loss_ce" + suffix] = self.weights["loss_ce"] * ce
            losses["loss_bbox" + suffix] = self.weights["loss_bbox"] * l1
            losses["loss_giou" + suffix] = self.weights["loss_giou"] * giou
        return losses

    @torch.no_grad()
    def postprocess(
        self, logits: Tensor, boxes: Tensor, image_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Every query as a detection: best class in ``1..num_classes-1``, its probability, its box in pixels
        (clipped to the image)."""
        prob = logits.float().softmax(-1)[..., 1:-1]  # (B, N, K - 1): neither background nor "no object"
        scores, labels = prob.max(-1)
        out = []
        for k, (h, w) in enumerate(image_sizes):
            scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=boxes.device)
            xyxy = clip_boxes_to_image(box_convert(boxes[k].float(), "cxcywh", "xyxy") * scale, (h, w))
            order = scores[k].argsort(descending=True)
            out.append({"boxes": xyxy[order], "labels": labels[k][order] + 1, "scores": scores[k][order]})
        return out


def _freeze_stem_and_layer1(backbone: nn.Module) -> None:
    """As the official code: only ``layer2`` .. ``layer4`` of the ResNet are trained."""
    for name, p in backbone.named_parameters():
        if not any(f"layer{i}" in name for i in (2, 3, 4)):
            p.requires_grad_(False)


@register_model(task="detection", input_size=(3, 96, 96), min_size=1)
def detr(
    *,
    num_classes: int = 21,
    backbone: str = "tiny",
    image_size: int = 96,
    num_queries: int = 10,
    hidden_dim: int = 128,
    nheads: int = 8,
    enc_layers: int = 2,
    dec_layers: int = 3,
    dim_feedforward: int = 512,
    dropout: float = 0.0,
    weights_backbone: str | None = None,
    progress: bool = True,
    **kwargs,
) -> DETR:
    """DETR (Carion et al. 2020), small configuration for CPU training.

    Defaults: the tiny conv backbone read at stride 16 (128 channels; 96 x 96 input -> 6 x 6 = 36
    tokens), ``hidden_dim`` 128, 8 heads, 2 encoder and 3 decoder layers, feed-forward 512, no dropout
    (the paper uses 0.1: dropout slows down a short training), 10 object queries (at most 4 objects per
    shapes scene); 1,536,634 parameters with ``num_classes=5``. ``backbone`` may be a zoo ResNet
    (``"resnet18"`` .. ``"resnet152"``, ``layer4`` at stride 32, ``weights_backbone="torchvision"``).
    Other keywords go to :class:`DETR` (``aux_loss``, ``cost_*``, ``loss_*``, ``eos_coef``,
    ``norm_first``). For the paper's configuration see :func:`detr_resnet50`.
    """
    index = 3 if backbone == "tiny" else 4
    body = build_backbone(backbone, indices=(index,), weights=weights_backbone, progress=progress)
    return DETR(
        body,
        num_classes=num_classes,
        transform=fixed_size_transform(image_size),
        num_queries=num_queries,
        hidden_dim=hidden_dim,
        nheads=nheads,
        enc_layers=enc_layers,
        dec_layers=dec_layers,
        dim_feedforward=dim_feedforward,
        dropout=dropout,
        **kwargs,
    )


#: The official training scales (shorter side; the longer one at most 1333), evaluation at 800.
DETR_SCALES = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)


@register_model(task="detection", input_size=(3, 224, 224), min_size=1)
def detr_resnet50(
    *,
    num_classes: int = 91,
    weights_backbone: str | None = None,
    progress: bool = True,
    min_size: int | Sequence[int] = DETR_SCALES,
    max_size: int = 1333,
    **kwargs,
) -> DETR:
    """DETR R50 of the paper's table 1 ("41M" parameters): 41,524,768 parameters for ``num_classes=91``,
    41,302,368 of them trained, as the official code.

    A zoo ResNet-50 with frozen batch norm (``torchvision.ops.FrozenBatchNorm2d``; its stem and
    ``layer1`` frozen too, as the official code), ``layer4`` (2048 channels, stride 32) projected to 256;
    6 encoder and 6 decoder layers of 8 heads, feed-forward 2048, dropout 0.1, 100 queries, auxiliary
    losses. Images: shorter side a random one of :data:`DETR_SCALES` in training and 800 in eval, longer
    side at most 1333, ImageNet normalisation. ``weights_backbone="torchvision"`` loads ImageNet weights
    into the ResNet (the paper starts from them). Other keywords go to :class:`DETR`.
    """
    body = build_backbone(
        "resnet50", indices=(4,), weights=weights_backbone, progress=progress, norm_layer=FrozenBatchNorm2d
    )
    _freeze_stem_and_layer1(body)
    sizes = (min_size,) if isinstance(min_size, int) else tuple(min_size)
    for i, s in enumerate(sizes):
        check_int(f"min_size[{i}]", s)
    transform = GeneralizedRCNNTransform(
        sizes, check_int("max_size", max_size), list(IMAGENET_MEAN), list(IMAGENET_STD), size_divisible=1
    )
    return DETR(body, num_classes=num_classes, transform=transform, **kwargs)
