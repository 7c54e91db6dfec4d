"""YOLO v1 (Redmon et al. 2016): the paper's network and parameter count, its loss against a hand
computation, the decoding and NMS of inference, torchvision's detection contract on bad targets, and a
short overfit."""

import math

import pytest
import torch

from nnatlas.analysis import count_parameters
from nnatlas.data.shapes import ShapesDataset
from nnatlas.models import create_model, get_model_info
from nnatlas.models.detection.yolo import DarkNet24, _encode_targets, yolo_v1_loss

# Figure 3 of the paper, written out: (kernel, in channels, out channels) of the 24 convolutions.
FIGURE_3 = (
    [(7, 3, 64), (3, 64, 192), (1, 192, 128), (3, 128, 256), (1, 256, 256), (3, 256, 512)]
    + [(1, 512, 256), (3, 256, 512)] * 4
    + [(1, 512, 512), (3, 512, 1024)]
    + [(1, 1024, 512), (3, 512, 1024)] * 2
    + [(3, 1024, 1024)] * 4
)


def _target(boxes, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def test_darknet_parameters_follow_figure_3():
    assert len(FIGURE_3) == 24
    convs = sum((k * k * c_in + 1) * c_out for k, c_in, c_out in FIGURE_3)
    fc = (7 * 7 * 1024 + 1) * 4096 + (4096 + 1) * 7 * 7 * (5 * 2 + 20)  # 4096 units, then 7 x 7 x 30
    assert convs == 60_155_968
    with torch.device("meta"):  # 272M parameters: count them without allocating them
        model = create_model("yolo_v1", backbone="darknet", num_classes=21)
        assert count_parameters(model.backbone) == convs
        assert count_parameters(model) == convs + fc == 271_703_550
        assert model.image_size == 448 and model.head.kind == "fc"
        x = torch.empty(1, 3, 448, 448)
        features = model.backbone(x)
        assert features.shape == (1, 1024, 7, 7)
        assert model.head(features).shape == (1, 7, 7, 30)  # S x S x (5B + C) of section 2


def test_darknet_has_leaky_relu_and_no_norm():
    net = DarkNet24()
    acts = [m for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert len(acts) == 24 and all(a.negative_slope == 0.1 for a in acts)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == 4


def _hand_case():
    """S = 2, B = 2, C = 2, one object in a 64 x 64 image; predictions set by hand."""
    pred = torch.zeros(1, 2, 2, 12)
    # Object: box (8, 8) - (40, 24): centre (24, 16) -> (0.375, 0.25), w 0.5, h 0.25, in cell row 0, col 0,
    # at (0.75, 0.5) of the cell; class 2 (index 1).
    pred[0, 0, 0, 0:5] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.8])  # box 0: centre (0.25, 0.25), 0.25 x 0.25
    pred[0, 0, 0, 5:10] = torch.tensor([0.75, 0.5, 0.7, 0.5, 0.3])  # box 1: centre (0.375, 0.25), 0.49 x 0.25
    pred[0, 0, 0, 10:12] = torch.tensor([0.1, 0.6])
    pred[0, 1, 1, 4] = 0.2  # a confident predictor in an empty cell
    pred[0, 1, 1, 10:12] = torch.tensor([0.9, 0.9])  # class scores of an empty cell: not penalised
    target = _target([[8, 8, 40, 24]], [2])
    return pred, target


def test_loss_against_hand_computation():
    pred, target = _hand_case()
    losses = yolo_v1_loss(pred, [target], [(64, 64)], boxes_per_cell=2)
    # IoU of box 0 with the object: intersection 0.25 x 0.25 = 0.0625, union 0.125 -> 0.5.
    # IoU of box 1: it lies inside the object, 0.49 x 0.25 / (0.5 x 0.25) = 0.98 -> box 1 is responsible.
    coord = 5 * (
        (0.75 - 0.75) ** 2 + (0.5 - 0.5) ** 2 + (0.7 - math.sqrt(0.5)) ** 2 + (0.5 - math.sqrt(0.25)) ** 2
    )
    obj = (0.3 - 0.98) ** 2
    noobj = 0.5 * (0.8**2 + 0.2**2)  # box 0 of the object's cell and the empty cell's predictor
    cls = (0.1 - 0) ** 2 + (0.6 - 1) ** 2
    assert losses["loss_coord"].item() == pytest.approx(coord, rel=1e-5)
    assert losses["loss_obj"].item() == pytest.approx(obj, rel=1e-5)
    assert losses["loss_noobj"].item() == pytest.approx(noobj, rel=1e-5)
    assert losses["loss_class"].item() == pytest.approx(cls, rel=1e-5)


def test_loss_responsible_predictor_follows_iou_and_batch_mean():
    pred, target = _hand_case()
    pred[0, 0, 0, 0:5], pred[0, 0, 0, 5:10] = pred[0, 0, 0, 5:10].clone(), pred[0, 0, 0, 0:5].clone()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    batch = torch.cat([pred, torch.zeros_like(pred)])  # a second image, without objects, predicting 0
    losses = yolo_v1_loss(batch, [target, empty], [(64, 64)] * 2, boxes_per_cell=2)
    # Box 0 now holds the 0.98-IoU prediction (confidence 0.3) and is responsible; box 1 (0.8) is not.
    assert losses["loss_obj"].item() == pytest.approx((0.3 - 0.98) ** 2 / 2, rel=1e-5)
    assert losses["loss_noobj"].item() == pytest.approx(0.5 * (0.8**2 + 0.2**2) / 2, rel=1e-5)


def test_one_object_per_cell_the_larger_one():
    targets = [_target([[0, 0, 10, 10], [0, 0, 30, 30], [40, 40, 60, 60]], [1, 3, 2])]
    obj, box, cls = _encode_targets(targets, [(64, 64)], 2, 3, torch.device("cpu"))
    assert obj.tolist() == [[[True, False], [False, True]]]
    assert box[0, 0, 0].tolist() == pytest.approx([15 / 64, 15 / 64, 30 / 64, 30 / 64])
    assert cls[0, 0, 0].tolist() == [0, 0, 1] and cls[0, 1, 1].tolist() == [0, 1, 0]


def test_postprocess_decodes_and_suppresses():
    model = create_model("yolo_v1", num_classes=3, grid_size=2, image_size=100)
    pred = torch.zeros(1, 2, 2, 12)
    # Cell row 0, col 1, box 0: centre ((1 + 0.5) / 2, 0.5 / 2) = (0.75, 0.25), w 0.4, h 0.2 of 100 px.
    pred[0, 0, 1, 0:5] = torch.tensor([0.5, 0.5, math.sqrt(0.4), math.sqrt(0.2), 0.9])
    pred[0, 0, 1, 5:10] = torch.tensor([0.55, 0.5, math.sqrt(0.4), math.sqrt(0.2), 0.5])  # 1 px right
    pred[0, 0, 1, 10:12] = torch.tensor([0.2, 0.8])
    (out,) = model.postprocess(pred, [(100, 100)])
    # Four candidates (2 boxes x 2 classes) above 0.05; NMS keeps the best box of each class.
    assert out["labels"].tolist() == [2, 1]
    assert out["scores"].tolist() == pytest.approx([0.9 * 0.8, 0.9 * 0.2])
    torch.testing.assert_close(out["boxes"], torch.tensor([[55.0, 15.0, 95.0, 35.0]] * 2))


def _batch(n=4, size=64, seed=0):
    data = ShapesDataset(n, size=size, task="detection", seed=seed)
    images, targets = zip(*(data[i] for i in range(n)), strict=True)
    return list(images), list(targets)


BAD_TARGETS = {
    "empty": [],
    "degenerate": [[10, 10, 10, 30], [30, 30, 20, 40]],
    "outside": [[-20, -20, -5, -5], [70, 10, 90, 30], [50, 50, 80, 90]],
}


@pytest.mark.parametrize("case", sorted(BAD_TARGETS))
def test_training_never_crashes_on_bad_targets(case):
    model = create_model("yolo_v1", num_classes=5)
    model.train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 80)]  # two sizes in one list
    boxes = BAD_TARGETS[case]
    targets = [_target(boxes, [1] * len(boxes)), _target([[5, 5, 30, 20]], [4])]
    losses = model(images, targets)
    assert set(losses) == {"loss_coord", "loss_obj", "loss_noobj", "loss_class"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_eval_output_format():
    model = create_model("yolo_v1", num_classes=5, score_thresh=0.0)
    with torch.no_grad():  # confidence and class scores of 0.5 everywhere: every box is a candidate
        model.head.layers[-1].bias.fill_(0.5)
    model.eval()
    sizes = [(64, 64), (48, 80)]
    with torch.no_grad():
        out = model([torch.rand(3, h, w) for h, w in sizes])
    assert len(out) == 2
    for det, (h, w) in zip(out, sizes, strict=True):
        assert set(det) == {"boxes", "labels", "scores"}
        n = len(det["scores"])
        assert 0 < n <= model.detections_per_img
        assert det["boxes"].shape == (n, 4) and det["boxes"].dtype == torch.float32
        assert det["labels"].dtype == torch.int64 and det["labels"].min() >= 1 and det["labels"].max() <= 4
        assert (det["boxes"][:, 0::2] <= w).all() and (det["boxes"][:, 1::2] <= h).all()
        assert (det["boxes"] >= 0).all() and (det["scores"].diff() <= 0).all()


def test_overfit_a_few_images():
    torch.manual_seed(0)
    images, targets = _batch()
    model = create_model("yolo_v1", num_classes=5, image_size=64, grid_size=4)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for _ in range(40):
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.3 * history[0], history


def test_resnet_backbone_and_registry():
    info = get_model_info("yolo_v1")
    assert info.task == "detection" and info.min_size == 1
    model = create_model("yolo_v1", backbone="resnet18", num_classes=5, image_size=64, grid_size=2)
    assert model.head.kind == "conv" and model.head.layers[0].conv.in_channels == 512
    model.train()
    images, targets = _batch(2)
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())


def test_bad_arguments():
    with pytest.raises(ValueError, match="backbone"):
        create_model("yolo_v1", backbone="darknet53")
    with pytest.raises(ValueError, match="head"):
        create_model("yolo_v1", head="mlp")
    with pytest.raises(ValueError, match="pretrained"):
        create_model("yolo_v1", backbone="darknet", weights_backbone="torchvision")
    model = create_model("yolo_v1", num_classes=5)
    model.train()
    with pytest.raises(ValueError, match="needs targets"):
        model([torch.rand(3, 32, 32)])
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        model([torch.rand(32, 32)], [_target([], [])])
    with pytest.raises(ValueError, match=r"labels must lie in \[1, 5\)"):
        model([torch.rand(3, 32, 32)], [_target([[1, 1, 9, 9]], [5])])
