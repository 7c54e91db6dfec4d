"""ResNet's stride placement: the paper's bottleneck (v1, stride on the first 1x1) against torchvision's
(v1.5, stride on the 3x3), the default.

References: He et al. 2016, table 1 (the multiply-adds, "FLOPs", of ResNet-50/101/152: 3.8, 7.6 and
11.3 x 10^9), a functional re-implementation of one v1 block, and the MAC formula of a 1x1 convolution.
"""

from functools import cache

import pytest
import torch
import torch.nn.functional as F

from nnatlas.analysis import count_parameters, summary
from nnatlas.layers import Bottleneck, conv1x1
from nnatlas.models import create_model

BOTTLENECK_RESNETS = ["resnet50", "resnet101", "resnet152"]


@cache
def _pair(name: str):
    """(v1.5, v1) on the meta device: shapes, parameters and MACs without allocating anything."""
    with torch.device("meta"):
        return create_model(name), create_model(name, stride_in_1x1=True)


@pytest.mark.parametrize("name", BOTTLENECK_RESNETS)
def test_same_parameters_and_state_dict_keys(name):
    v15, v1 = _pair(name)
    assert {k: v.shape for k, v in v1.state_dict().items()} == {
        k: v.shape for k, v in v15.state_dict().items()
    }
    assert count_parameters(v1) == count_parameters(v15)
    strided = [m for m in v1.modules() if isinstance(m, Bottleneck) and m.stride == 2]
    assert len(strided) == 3  # first block of stages 2, 3, 4
    assert all(m.conv1.stride == (2, 2) and m.conv2.stride == (1, 1) for m in strided)


@pytest.mark.parametrize("size", [224, 57])
def test_output_shapes_agree(size):
    v15, v1 = _pair("resnet50")
    x = torch.empty(2, 3, size, size, device="meta")
    assert v1.forward_features(x).shape == v15.forward_features(x).shape
    assert v1(x).shape == v15(x).shape == (2, 1000)


def test_same_weights_give_another_network():
    torch.manual_seed(0)
    v15 = create_model("resnet50", num_classes=10).eval()
    with torch.device("meta"):
        v1 = create_model("resnet50", num_classes=10, stride_in_1x1=True)
    v1.load_state_dict(v15.state_dict(), strict=True, assign=True)
    v1.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = v15.forward_features(x), v1.forward_features(x)
        assert a.shape == b.shape
        assert (a - b).abs().max() > 0.1 * a.abs().max()
        assert torch.equal(v15.layer1(v15.maxpool(v15.relu(v15.bn1(v15.conv1(x))))),
                           v1.layer1(v1.maxpool(v1.relu(v1.bn1(v1.conv1(x))))))  # fmt: skip


def test_v1_block_is_the_papers_bottleneck():
    # relu(bn3(conv3(relu(bn2(conv3x3(relu(bn1(conv1x1_stride2(x)))))))) + downsample(x)), written out.
    torch.manual_seed(1)
    in_model = _pair("resnet50")[1].layer2[0]
    assert (in_model.conv1.stride, in_model.conv2.stride) == ((2, 2), (1, 1))
    block = Bottleneck(
        256, 128, 2, torch.nn.Sequential(conv1x1(256, 512, 2), torch.nn.BatchNorm2d(512)), stride_in_1x1=True
    ).eval()
    with torch.no_grad():
        for bn in (block.bn1, block.bn2, block.bn3, block.downsample[1]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.1)
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 256, 9, 9)

    def bn(m, t):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    out = F.relu(bn(block.bn1, F.conv2d(x, block.conv1.weight, stride=2)))
    out = F.relu(bn(block.bn2, F.conv2d(out, block.conv2.weight, padding=1)))
    out = bn(block.bn3, F.conv2d(out, block.conv3.weight))
    shortcut = bn(block.downsample[1], F.conv2d(x, block.downsample[0].weight, stride=2))
    with torch.no_grad():
        y = block(x)
    assert y.shape == (2, 512, 5, 5)
    torch.testing.assert_close(y, F.relu(out + shortcut))


def test_stride_on_the_1x1_costs_fewer_macs():
    v15, v1 = _pair("resnet50")
    s15, s1 = summary(v15, (1, 3, 224, 224)), summary(v1, (1, 3, 224, 224))
    rows15, rows1 = {r.name: r.macs for r in s15.rows}, {r.name: r.macs for r in s1.rows}
    # One block, layer2.0: 256 -> 128 channels, 56x56 -> 28x28. Its 1x1 runs on the 28x28 grid instead of
    # the 56x56 one: 256 * 128 * (56^2 - 28^2) fewer MACs; the 3x3, the expansion and the shortcut are equal.
    saved = 256 * 128 * (56 * 56 - 28 * 28)
    assert saved == 77_070_336
    assert rows15["layer2.0.conv1"] == 256 * 128 * 56 * 56 and rows1["layer2.0.conv1"] == 256 * 128 * 28 * 28
    assert rows15["layer2.0"] - rows1["layer2.0"] == saved
    for conv in ("conv2", "conv3", "downsample"):
        assert rows15[f"layer2.0.{conv}"] == rows1[f"layer2.0.{conv}"]
    # layer3.0 (512 -> 256, 28 -> 14) and layer4.0 (1024 -> 512, 14 -> 7) save the same amount.
    assert 512 * 256 * (28 * 28 - 14 * 14) == 1024 * 512 * (14 * 14 - 7 * 7) == saved
    assert s15.total_macs - s1.total_macs == 3 * saved
    assert (s15.total_macs, s1.total_macs) == (4_089_184_256, 3_857_973_248)


@pytest.mark.parametrize("name,paper_gmacs", [("resnet50", 3.8), ("resnet101", 7.6), ("resnet152", 11.3)])
def test_v1_has_the_multiply_adds_of_the_papers_table_1(name, paper_gmacs):
    v15, v1 = _pair(name)
    gmacs_v1 = summary(v1, (1, 3, 224, 224)).total_macs / 1e9
    gmacs_v15 = summary(v15, (1, 3, 224, 224)).total_macs / 1e9
    assert abs(gmacs_v1 - paper_gmacs) < 0.1  # 3.86, 7.57, 11.28
    assert gmacs_v15 - paper_gmacs > 0.2  # 4.09, 7.80, 11.51


def test_stride_in_1x1_needs_bottlenecks_and_no_torchvision_weights():
    with pytest.raises(
        ValueError, match="stride_in_1x1=True moves the stride of a Bottleneck.*got block=BasicBlock"
    ):
        create_model("resnet18", stride_in_1x1=True)
    with pytest.raises(ValueError, match="trained with the stride on the 3x3"):
        create_model("resnet50", weights="torchvision", stride_in_1x1=True)


def test_v1_with_zero_init_residual_and_dilation():
    model = create_model("resnet50", stride_in_1x1=True, zero_init_residual=True)
    assert all(b.bn3.weight.abs().sum() == 0 for b in model.modules() if isinstance(b, Bottleneck))
    with torch.device("meta"):
        dilated = create_model(
            "resnet50", stride_in_1x1=True, replace_stride_with_dilation=(False, True, True)
        )
        assert dilated.forward_features(torch.empty(1, 3, 224, 224)).shape == (1, 2048, 28, 28)
    assert dilated.layer3[0].conv1.stride == (1, 1) and dilated.layer2[0].conv1.stride == (2, 2)
