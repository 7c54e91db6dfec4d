import pytest
import torch

from nnatlas.analysis import count_parameters
from nnatlas.layers import PadShortcut
from nnatlas.models import create_model

# He et al. 2016, Table 6: 0.27M / 0.46M / 0.66M / 0.85M / 1.7M parameters (CIFAR-10, option A shortcuts).
PAPER = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth,count", PAPER.items())
def test_parameter_counts_match_the_paper(depth, count):
    with torch.device("meta"):
        model = create_model(f"cifar_resnet{depth}")
    assert count_parameters(model) == count
    assert (
        round(count / 1e6, 2 if depth < 100 else 1)
        == {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}[depth]
    )


def test_in_channels_and_small_inputs():
    model = create_model("cifar_resnet20", num_classes=10, in_channels=1)
    assert count_parameters(model) == PAPER[20] - 2 * 16 * 9  # two input channels fewer in the 3x3 stem
    model.eval()
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 10)
    assert model.forward_features(torch.randn(1, 1, 8, 8)).shape == (1, 64, 2, 2)


def test_bad_depth_is_rejected():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        create_model("cifar_resnet20").__class__(21)


def test_pad_shortcut_is_parameter_free_subsample_and_zero_pad():
    sc = PadShortcut(16, 32, 2)
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4) and count_parameters(sc) == 0
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


@pytest.mark.parametrize("depth", PAPER)
def test_plain_twins_have_the_same_parameters_and_no_shortcuts(depth):
    with torch.device("meta"):
        plain, residual = create_model(f"cifar_plain{depth}"), create_model(f"cifar_resnet{depth}")
    assert count_parameters(plain) == count_parameters(residual) == PAPER[depth]
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in residual.named_parameters()]
    assert not plain.residual and residual.residual


def test_plain_blocks_drop_the_shortcut():
    # With every residual branch silenced (last batch norm of each block outputs 0), a residual network
    # still carries its input through the identity shortcuts while a plain network outputs relu(0) = 0.
    plain, residual = create_model("cifar_plain20"), create_model("cifar_resnet20")
    residual.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for model in (plain, residual):
        model.eval()
        for block in [*model.layer1, *model.layer2, *model.layer3]:
            torch.nn.init.zeros_(block.bn2.weight)
            torch.nn.init.zeros_(block.bn2.bias)
    with torch.no_grad():
        assert plain.forward_features(x).abs().max() == 0
        assert residual.forward_features(x).abs().max() > 0
