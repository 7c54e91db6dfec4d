"""DETR (Carion et al. 2020): the R50 configuration's parameters against the official code
(facebookresearch/detr), Hungarian matching against brute force, the 2-D sine encoding, the layers against
torch.nn, the set loss, torchvision's detection contract on bad targets, padding masks, and an overfit."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import box_convert, generalized_box_iou

from nnatlas.analysis import count_parameters
from nnatlas.data.shapes import ShapesDataset
from nnatlas.models import create_model, get_model_info
from nnatlas.models.detection._detr_loss import hungarian_match, set_loss
from nnatlas.models.detection.detr import (
    DETR,
    DETRTransformer,
    SinePositionalEncoding2d,
    _DetrDecoderLayer,
    _DetrEncoderLayer,
)


def _target(boxes, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def _resnet50_conv_weights() -> int:
    """ResNet-50 without its classifier and batch norm (frozen: buffers, not parameters), by formula."""
    n, c = 7 * 7 * 3 * 64, 64  # stem
    for blocks, width in ((3, 64), (4, 128), (6, 256), (3, 512)):
        for b in range(blocks):
            n += c * width + 9 * width * width + width * 4 * width  # 1x1, 3x3, 1x1 (expansion 4)
            if b == 0:
                n += c * 4 * width  # projection shortcut
            c = 4 * width
    return n


def test_detr_resnet50_parameters_as_the_official_code():
    # The official configuration (main.py defaults): hidden_dim 256, 8 heads, 6 + 6 layers, feed-forward
    # 2048, 100 queries, COCO num_classes 91 -> class_embed Linear(256, 92), bbox MLP 256-256-256-4,
    # input_proj Conv2d(2048, 256, 1), frozen batch norm; its main.py prints the trainable count.
    d, ff = 256, 2048
    attention = 4 * d * d + 4 * d  # in_proj (3d x d + 3d) and out_proj (d x d + d)
    ffn = d * ff + ff + ff * d + d
    encoder = 6 * (attention + ffn + 2 * 2 * d)
    decoder = 6 * (2 * attention + ffn + 3 * 2 * d) + 2 * d  # + the shared final LayerNorm
    heads = (2048 * d + d) + 100 * d + (d * 92 + 92) + 2 * (d * d + d) + (d * 4 + 4)
    backbone = _resnet50_conv_weights()
    total = backbone + encoder + decoder + heads
    frozen = 7 * 7 * 3 * 64 + 212_992  # stem and layer1 are not trained
    assert backbone == 23_454_912
    with torch.device("meta"):
        model = create_model("detr_resnet50")
    assert count_parameters(model) == total == 41_524_768  # the paper's table 1: "41M"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == total - frozen == 41_302_368
    assert model.class_embed.out_features == 92 and model.num_queries == 100
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_transformer_keys_are_the_official_ones():
    t = DETRTransformer(32, 4, 1, 1, 64)
    keys = set(t.state_dict())
    mha = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
    ffn = ("linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias")
    enc = {f"encoder.layers.0.self_attn.{k}" for k in mha} | {f"encoder.layers.0.{k}" for k in ffn}
    enc |= {f"encoder.layers.0.norm{i}.{p}" for i in (1, 2) for p in ("weight", "bias")}
    dec = {f"decoder.layers.0.{a}.{k}" for a in ("self_attn", "multihead_attn") for k in mha}
    dec |= {f"decoder.layers.0.{k}" for k in ffn}
    dec |= {f"decoder.layers.0.norm{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")}
    assert keys == enc | dec | {"decoder.norm.weight", "decoder.norm.bias"}


def _brute_force(cost, m):
    """Minimum total cost over every injective assignment of ``m`` targets (columns) to predictions (rows)."""
    q = len(cost)
    best, best_rows = math.inf, None
    for rows in itertools.permutations(range(q), m):
        total = sum(cost[r][j] for j, r in enumerate(rows))
        if total < best:
            best, best_rows = total, rows
    return best, best_rows


def _pair_cost(logit, box, label, tgt_box):
    """The matching cost of one prediction and one object, written out (class 1, L1 5, GIoU 2)."""
    p = torch.softmax(logit, -1)[label].item()
    l1 = (box - tgt_box).abs().sum().item()
    giou = generalized_box_iou(
        box_convert(box[None], "cxcywh", "xyxy"), box_convert(tgt_box[None], "cxcywh", "xyxy")
    ).item()
    return -p + 5 * l1 - 2 * giou


@pytest.mark.parametrize("num_targets", [0, 1, 3, 5])
def test_hungarian_matching_equals_brute_force(num_targets):
    g = torch.Generator().manual_seed(num_targets)
    batch, q, k = 3, 5, 4
    logits = torch.randn(batch, q, k + 1, generator=g) * 2
    boxes = torch.rand(batch, q, 4, generator=g) * 0.5 + 0.2
    targets = []
    for _ in range(batch):
        xy = torch.rand(num_targets, 2, generator=g) * 0.6 + 0.2
        wh = torch.rand(num_targets, 2, generator=g) * 0.3 + 0.05
        labels = torch.randint(1, k, (num_targets,), generator=g)
        targets.append({"labels": labels, "boxes": torch.cat([xy, wh], 1)})
    indices = hungarian_match(logits, boxes, targets)
    for b, (rows, cols) in enumerate(indices):
        t = targets[b]
        cost = [[_pair_cost(logits[b, i], boxes[b, i], t["labels"][j], t["boxes"][j]) for j in range(num_targets)]
                for i in range(q)]  # fmt: skip
        best, best_rows = _brute_force(cost, num_targets)
        assert len(rows) == len(cols) == num_targets and rows.dtype == torch.int64
        assert sum(cost[i][j] for i, j in zip(rows.tolist(), cols.tolist(), strict=True)) == pytest.approx(
            best, abs=1e-5
        )
        if num_targets:
            assert dict(zip(cols.tolist(), rows.tolist(), strict=True)) == dict(enumerate(best_rows))


def test_sine_encoding_formula_and_padding():
    enc = SinePositionalEncoding2d(num_pos_feats=8)
    mask = torch.zeros(1, 3, 4, dtype=torch.bool)
    pos = enc(mask)
    assert pos.shape == (1, 16, 3, 4)
    for r, c in [(0, 0), (1, 2), (2, 3)]:
        y, x = (r + 1) / 3 * 2 * math.pi, (c + 1) / 4 * 2 * math.pi
        for i in range(4):
            t = 10000 ** (2 * i / 8)
            assert pos[0, 2 * i, r, c].item() == pytest.approx(math.sin(y / t), abs=1e-5)
            assert pos[0, 2 * i + 1, r, c].item() == pytest.approx(math.cos(y / t), abs=1e-5)
            assert pos[0, 8 + 2 * i, r, c].item() == pytest.approx(math.sin(x / t), abs=1e-5)
            assert pos[0, 8 + 2 * i + 1, r, c].item() == pytest.approx(math.cos(x / t), abs=1e-5)
    # The last column padded: the valid columns are normalised by 3, not 4.
    mask[..., 3] = True
    padded = enc(mask)
    assert padded[0, 8, 0, 2].item() == pytest.approx(math.sin(2 * math.pi), abs=1e-5)
    torch.testing.assert_close(padded[:, :8, :, :3], pos[:, :8, :, :3])  # y unchanged in the valid columns


def test_layers_equal_torch_without_positions_and_use_them_in_queries_and_keys():
    torch.manual_seed(0)
    d, h = 16, 4
    ref_enc = torch.nn.TransformerEncoderLayer(d, h, 32, dropout=0.0, batch_first=True).eval()
    ref_dec = torch.nn.TransformerDecoderLayer(d, h, 32, dropout=0.0, batch_first=True).eval()
    enc = _DetrEncoderLayer(d, h, 32, 0.0, batch_first=True).eval()
    dec = _DetrDecoderLayer(d, h, 32, 0.0, batch_first=True).eval()
    enc.load_state_dict(ref_enc.state_dict(), strict=True)
    dec.load_state_dict(ref_dec.state_dict(), strict=True)
    src, tgt = torch.randn(2, 6, d), torch.randn(2, 3, d)
    pos, query_pos = torch.randn(2, 6, d), torch.randn(2, 3, d)
    kpm = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    with torch.no_grad():
        torch.testing.assert_close(
            enc(src, torch.zeros_like(src), kpm), ref_enc(src, src_key_padding_mask=kpm)
        )
        zeros = torch.zeros_like(tgt)
        torch.testing.assert_close(
            dec(tgt, src, torch.zeros_like(src), zeros, kpm), ref_dec(tgt, src, memory_key_padding_mask=kpm)
        )
        # With positions: the official layers' formulas, through torch's attention modules.
        sa = ref_enc.self_attn(src + pos, src + pos, src, key_padding_mask=kpm)[0]
        x = ref_enc.norm1(src + sa)
        want = ref_enc.norm2(x + ref_enc.linear2(F.relu(ref_enc.linear1(x))))
        torch.testing.assert_close(enc(src, pos, kpm), want)
        y = ref_dec.norm1(tgt + ref_dec.self_attn(tgt + query_pos, tgt + query_pos, tgt)[0])
        ca = ref_dec.multihead_attn(y + query_pos, src + pos, src, key_padding_mask=kpm)[0]
        y = ref_dec.norm2(y + ca)
        want = ref_dec.norm3(y + ref_dec.linear2(F.relu(ref_dec.linear1(y))))
        torch.testing.assert_close(dec(tgt, src, pos, query_pos, kpm), want)


def test_set_loss_against_hand_computation():
    logits = torch.tensor([[[0.0, 2.0, 0.0], [1.0, 0.0, 1.0]]])  # 2 queries, classes {0, 1} + no object
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]]])
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.6, 0.2, 0.2]])}]
    indices = hungarian_match(logits, boxes, targets)
    assert [x.tolist() for x in indices[0]] == [[0], [0]]
    ce, l1, giou = set_loss(logits, boxes, targets, indices, num_boxes=1.0, eos_coef=0.1)
    # Query 0 -> class 1 (weight 1), query 1 -> no object (weight 0.1): weighted mean of the two.
    ce0 = -math.log(math.exp(2) / (2 + math.exp(2)))
    ce1 = -math.log(math.e / (2 * math.e + 1))
    assert ce.item() == pytest.approx((ce0 + 0.1 * ce1) / 1.1, rel=1e-5)
    assert l1.item() == pytest.approx(0.1, rel=1e-5)
    # Boxes (0.4, 0.4, 0.6, 0.6) and (0.4, 0.5, 0.6, 0.7): IoU 0.02 / 0.06, enclosing box = union.
    assert giou.item() == pytest.approx(1 - 1 / 3, rel=1e-5)


BAD_TARGETS = {
    "empty": [],
    "degenerate": [[10, 10, 10, 30], [30, 30, 20, 40]],
    "outside": [[-20, -20, -5, -5], [70, 10, 90, 30], [50, 50, 80, 90]],
}


@pytest.mark.parametrize("case", sorted(BAD_TARGETS))
def test_training_never_crashes_on_bad_targets(case):
    model = create_model("detr", num_classes=5)
    model.train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 80)]
    boxes = BAD_TARGETS[case]
    losses = model(images, [_target(boxes, [1] * len(boxes)), _target([[5, 5, 30, 20]], [4])])
    names = ("loss_ce", "loss_bbox", "loss_giou")
    assert set(losses) == {n + s for n in names for s in ("", "_0", "_1")}  # 3 decoder layers: 2 auxiliary
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_all_images_without_objects_and_no_aux_loss():
    model = create_model("detr", num_classes=5, aux_loss=False)
    model.train()
    losses = model([torch.rand(3, 64, 64)] * 2, [_target([], [])] * 2)
    assert set(losses) == {"loss_ce", "loss_bbox", "loss_giou"}
    assert losses["loss_bbox"].item() == losses["loss_giou"].item() == 0.0 and losses["loss_ce"] > 0


def test_eval_output_format():
    info = get_model_info("detr")
    assert info.task == "detection" and info.min_size == 1
    model = create_model("detr", num_classes=5)
    model.eval()
    sizes = [(64, 64), (48, 80)]
    with torch.no_grad():
        out = model([torch.rand(3, h, w) for h, w in sizes])
    for det, (h, w) in zip(out, sizes, strict=True):
        assert set(det) == {"boxes", "labels", "scores"}
        assert det["boxes"].shape == (10, 4) and det["scores"].shape == (10,)  # one per query
        assert det["labels"].dtype == torch.int64 and det["labels"].min() >= 1 and det["labels"].max() <= 4
        assert (det["boxes"][:, 0::2] <= w).all() and (det["boxes"][:, 1::2] <= h).all()
        assert (det["boxes"] >= 0).all() and (det["scores"].diff() <= 0).all()


class _Patches(torch.nn.Module):
    """16 x 16 patches, no overlap: a valid patch never sees padding, so only the mask can leak it."""

    out_channels = [8]

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 16, stride=16)

    def forward(self, x):
        return [self.conv(x)]


def test_padding_is_masked_out():
    # A batch of different sizes is padded; an image's predictions must not depend on its batch mates:
    # the padded cells are out of the attention (key padding mask) and of the positional encoding.
    torch.manual_seed(0)
    transform = GeneralizedRCNNTransform(64, 96, [0.5] * 3, [0.25] * 3, size_divisible=1)
    model = DETR(_Patches(), num_classes=5, transform=transform, num_queries=6, hidden_dim=32, nheads=4,
                 enc_layers=2, dec_layers=2, dim_feedforward=64, dropout=0.0).eval()  # fmt: skip
    small, large = torch.rand(3, 64, 64), torch.rand(3, 96, 64)
    with torch.no_grad():
        alone = model([small])[0]
        together = model([small, large])[0]
        padded_logits, _ = model.predict(F.pad(transform.normalize(small), (0, 0, 0, 32))[None], [(64, 64)])
        logits, _ = model.predict(transform.normalize(small)[None], [(64, 64)])
    for k in alone:
        torch.testing.assert_close(alone[k], together[k], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded_logits, logits, atol=1e-5, rtol=1e-5)
    padded_logits, _ = model.predict(F.pad(transform.normalize(small), (0, 0, 0, 32))[None], [(96, 64)])
    assert not torch.allclose(padded_logits, logits, atol=1e-3)  # without the mask the padding counts


def test_overfit_a_few_images():
    torch.manual_seed(0)
    data = ShapesDataset(4, size=64, task="detection", seed=0)
    images, targets = (list(x) for x in zip(*(data[i] for i in range(4)), strict=True))
    model = create_model("detr", num_classes=5, image_size=64)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(40):
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.6 * history[0], history  # 21.7 -> 8.7 on the machine the test was written on


def test_bad_arguments():
    with pytest.raises(ValueError, match="hidden_dim must be even"):
        create_model("detr", hidden_dim=129, nheads=3)
    with pytest.raises(ValueError, match="backbone"):
        create_model("detr", backbone="vit")
    model = create_model("detr", num_classes=5)
    model.train()
    with pytest.raises(ValueError, match="needs targets"):
        model([torch.rand(3, 32, 32)])
    assert isinstance(model, DETR)
