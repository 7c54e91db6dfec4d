"""One test over every registered model: forward shape, gradients reach every parameter, no NaN."""

import pytest
import torch

from nnatlas.models import create_model, get_model_info, list_models


def _example(info, batch: int = 2):
    c, h, w = info.input_size
    return torch.randn(batch, c, h, w)


@pytest.mark.parametrize("name", list_models(task="classification"))
def test_classification_model_forward_backward(name):
    info = get_model_info(name)
    model = create_model(name, num_classes=5)
    model.train()
    x = _example(info)
    out = model(x)
    outputs = list(out) if isinstance(out, (tuple, list)) else [out]
    outputs = [o for o in outputs if o is not None]
    assert outputs[0].shape == (2, 5)
    loss = sum(o.float().pow(2).mean() for o in outputs)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
    assert all(torch.isfinite(o).all() for o in outputs)
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 5) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", list_models(task="seq2seq"))
def test_seq2seq_model_forward_backward(name):
    info = get_model_info(name)
    vocab = info.extra.get("vocab_size", 16)
    model = create_model(name)
    model.train()
    (T,) = info.input_size
    src = torch.randint(3, vocab, (2, T))
    tgt = torch.randint(3, vocab, (2, T - 2))
    out = model(src, tgt)
    assert out.shape == (2, T - 2, vocab)
    out.float().logsumexp(-1).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
    assert torch.isfinite(out).all()
    model.eval()
    with torch.no_grad():
        y = model(src, tgt)
    assert y.shape == (2, T - 2, vocab) and torch.isfinite(y).all()


# The same classes as fcn8s, fcn_resnet50 and deeplabv3_resnet50 with other strides or depths: their
# 55M-135M parameters make each run take seconds, so they run with the exhaustive half (pytest -m exhaustive).
_SEGMENTATION_EXHAUSTIVE = {"fcn16s", "fcn32s", "fcn_resnet101", "deeplabv3_resnet101"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.exhaustive) if n in _SEGMENTATION_EXHAUSTIVE else n
        for n in list_models(task="segmentation")
    ],
)
def test_segmentation_model_forward_backward(name):
    info = get_model_info(name)
    model = create_model(name, num_classes=5)
    model.train()
    x = _example(info)
    out = model(x)
    h, w = info.input_size[1:]
    assert isinstance(out, dict) and set(out) == {"out"}  # "aux" only with aux_loss=True
    assert out["out"].shape == (2, 5, h, w) and torch.isfinite(out["out"]).all()
    out["out"].float().pow(2).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
    assert model.min_size <= min(h, w) and model.min_size == info.min_size
    model.eval()
    with torch.no_grad():
        y = model(x)["out"]
    assert y.shape == (2, 5, h, w) and torch.isfinite(y).all()


# The paper-sized detectors (R50-FPN, SSD300-VGG16, DETR-R50) take seconds each: exhaustive half.
_DETECTION_EXHAUSTIVE = {"fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "ssd300_vgg16", "detr_resnet50"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.exhaustive) if n in _DETECTION_EXHAUSTIVE else n
        for n in list_models(task="detection")
    ],
)
def test_detection_model_losses_and_predictions(name):
    """torchvision's detection contract: losses in training (finite, with gradients), boxes in eval."""
    info = get_model_info(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=5)
    _, h, w = info.input_size
    images = [torch.rand(3, h, w), torch.rand(3, h, w)]
    boxes = torch.tensor([[0.1 * w, 0.2 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.3 * h, 0.9 * w, 0.95 * h]])
    targets = [
        {"boxes": boxes, "labels": torch.tensor([1, 4])},
        {"boxes": boxes[:1], "labels": torch.tensor([2])},
    ]
    if "mask" in name:
        for t in targets:
            masks = torch.zeros(len(t["boxes"]), h, w, dtype=torch.uint8)
            for k, (x0, y0, x1, y1) in enumerate(t["boxes"].long().tolist()):
                masks[k, y0:y1, x0:x1] = 1
            t["masks"] = masks
    model.train()
    losses = model(images, targets)
    assert isinstance(losses, dict) and losses
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    reached = [n for n, p in trainable if p.grad is not None]
    assert len(reached) > 0.9 * len(trainable), f"{name}: gradients reach {len(reached)} of {len(trainable)}"
    assert all(torch.isfinite(p.grad).all() for _, p in trainable if p.grad is not None)
    model.eval()
    with torch.no_grad():
        found = model(images)
    assert isinstance(found, list) and len(found) == 2
    for f in found:
        n = len(f["boxes"])
        assert f["boxes"].shape == (n, 4) and f["labels"].shape == (n,) and f["scores"].shape == (n,)
        assert torch.isfinite(f["boxes"]).all() and ((f["scores"] >= 0) & (f["scores"] <= 1)).all()
        assert ((f["labels"] >= 1) & (f["labels"] < 5)).all()
        if n:
            assert (f["boxes"][:, 2:] >= f["boxes"][:, :2]).all()
            assert f["boxes"][:, 0::2].min() >= 0 and f["boxes"][:, 0::2].max() <= w + 1e-3
