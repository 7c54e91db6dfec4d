"""gradient_flow and activation_stats on our models and torchvision's, checked against autograd by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from nnatlas.analysis import activation_stats, gradient_flow
from nnatlas.models import create_model


def _mlp(act: type[nn.Module], depth: int = 10, width: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def test_sigmoid_mlp_gradient_vanishes_towards_the_input_relu_does_not():
    torch.manual_seed(0)
    x, y = torch.randn(256, 64), torch.randint(0, 10, (256,))
    sig = gradient_flow(_mlp(nn.Sigmoid), x, F.cross_entropy, target=y)
    assert [r.name for r in sig.rows] == [str(2 * i) for i in range(11)]
    # sigma' <= 1/4 per layer: ten sigmoid layers shrink the first layer's gradient by orders of magnitude.
    assert sig.ratio_first_to_last() < 1e-4
    assert all(a < b for a, b in zip(sig.norms()[:-1], sig.norms()[1:], strict=True))
    torch.manual_seed(0)
    relu = nn.Sequential(*_mlp(nn.ReLU))
    for m in relu:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    assert gradient_flow(relu, x, F.cross_entropy, target=y).ratio_first_to_last() > 1e-2


def test_gradient_flow_equals_autograd_on_torchvision_resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([1, 3])
    model.conv1.weight.grad = torch.full_like(model.conv1.weight, 7.0)  # existing gradients are kept
    flow = gradient_flow(model, x, F.cross_entropy, target=y, lr=0.1)
    assert torch.all(model.conv1.weight.grad == 7.0) and model.fc.weight.grad is None
    assert len(flow.rows) == 41 and flow.rows[0].name == "conv1" and flow.rows[-1].name == "fc"
    assert [r.name for r in flow.rows[1:3]] == ["bn1", "layer1.0.conv1"]  # call order, not definition order
    reference = torchvision.models.resnet18(num_classes=5)
    reference.load_state_dict(model.state_dict())
    F.cross_entropy(reference(x), y).backward()
    mods = dict(reference.named_modules())
    for row in flow.rows:
        own = list(mods[row.name].parameters(recurse=False))
        g = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in own))
        w = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in own))
        assert row.grad_norm == pytest.approx(g, rel=1e-5)
        assert row.weight_norm == pytest.approx(w, rel=1e-9)
        assert row.update_ratio == pytest.approx(0.1 * g / w, rel=1e-5)
        assert row.numel == sum(p.numel() for p in own)


def test_gradient_flow_on_our_cifar_resnet_and_errors():
    model = create_model("cifar_resnet20", num_classes=4)
    flow = gradient_flow(model, torch.randn(4, 3, 16, 16), lambda out: out.pow(2).mean())
    assert flow.rows[0].type == "Conv2d" and flow.rows[-1].type == "Linear"
    assert all(math.isfinite(r.grad_norm) for r in flow.rows)
    with pytest.raises(ValueError, match="scalar"):
        gradient_flow(model, torch.randn(2, 3, 16, 16), lambda out: out)
    with pytest.raises(ValueError, match="trainable"):
        gradient_flow(nn.ReLU(), torch.randn(2, 3), lambda out: out.sum())
    with pytest.raises(ValueError, match="not finite"):
        gradient_flow(model, torch.randn(2, 3, 16, 16), lambda out: out.sum() * float("nan"))


def test_activation_stats_match_a_direct_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.Sigmoid(), nn.Tanh())
    x = torch.randn(512, 32)
    stats = activation_stats(model, x)
    assert [r.name for r in stats.rows] == ["0", "1", "2", "3", "4"]
    with torch.no_grad():
        h0 = model[0](x)
        h1 = model[1](h0)
        h3 = model[3](model[2](h1))
    assert stats.rows[0].mean == pytest.approx(float(h0.mean()), abs=1e-6)
    assert stats.rows[0].std == pytest.approx(float(h0.std()), rel=1e-5)
    assert stats.rows[1].zero_fraction == pytest.approx(float((h1 == 0).float().mean()))
    assert 0.4 < stats.rows[1].zero_fraction < 0.6  # half the ReLU units are off at initialisation
    assert stats.rows[1].saturated_fraction is None
    sat = float(((h3 <= 0.01) | (h3 >= 0.99)).float().mean())
    assert stats.rows[3].saturated_fraction == pytest.approx(sat)


def test_sigmoid_saturates_with_large_weights():
    torch.manual_seed(0)
    small, large = (
        nn.Sequential(nn.Linear(64, 64), nn.Sigmoid()),
        nn.Sequential(nn.Linear(64, 64), nn.Sigmoid()),
    )
    nn.init.normal_(large[0].weight, std=5.0)
    x = torch.randn(256, 64)
    assert activation_stats(small, x).rows[1].saturated_fraction < 0.01
    assert activation_stats(large, x).rows[1].saturated_fraction > 0.8


def test_activation_stats_on_torchvision_models():
    model = torchvision.models.mobilenet_v3_small(num_classes=3).eval()
    stats = activation_stats(model, torch.randn(2, 3, 64, 64))
    types = {r.type for r in stats.rows}
    assert {"Conv2d", "BatchNorm2d", "Hardswish", "ReLU", "Hardsigmoid", "Linear"} <= types
    hs = stats.of_type("Hardsigmoid")
    assert hs and all(0.0 <= r.saturated_fraction <= 1.0 for r in hs)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32
    )
    rows = activation_stats(vit, torch.randn(1, 3, 32, 32)).rows
    assert any(r.type == "GELU" for r in rows) and all(math.isfinite(r.mean) for r in rows)
