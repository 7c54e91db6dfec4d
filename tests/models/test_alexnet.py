"""AlexNet's paper options: local response normalisation and the two-group (two-GPU) convolutions."""

import pytest
import torch

from nnatlas.analysis import count_parameters
from nnatlas.models import create_model
from nnatlas.models.classification.alexnet import PAPER_WIDTHS, paper_lrn


def test_lrn_is_the_papers_formula():
    # Krizhevsky et al. 2012, section 3.3: b_i = a_i / (k + alpha * sum_{|j-i|<=n/2} a_j^2)^beta,
    # k=2, n=5, alpha=1e-4, beta=0.75, the sum running over the channels that exist.
    a = torch.randn(2, 9, 3, 4) * 30
    c = a.shape[1]
    expected = torch.empty_like(a)
    for i in range(c):
        window = a[:, max(0, i - 2) : min(c, i + 3)]
        expected[:, i] = a[:, i] / (2 + 1e-4 * window.pow(2).sum(1)).pow(0.75)
    torch.testing.assert_close(paper_lrn()(a), expected)


def test_paper_configuration_has_the_papers_layers_and_parameter_count():
    with torch.device("meta"):
        model = create_model("alexnet", lrn=True, groups=2, widths=PAPER_WIDTHS)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [m.groups for m in convs] == [1, 2, 1, 2, 2]  # conv3 connects both GPUs' halves (figure 2)
    assert sum(isinstance(m, torch.nn.LocalResponseNorm) for m in model.features) == 2
    # Figure 2, weights + biases per layer: 11x11x3 -> 96; 5x5x48 -> 256; 3x3x256 -> 384; 3x3x192 -> 384;
    # 3x3x192 -> 256; 6*6*256 -> 4096 -> 4096 -> 1000: about 60 million parameters (section "Abstract").
    layers = [(11 * 11 * 3, 96), (5 * 5 * 48, 256), (3 * 3 * 256, 384), (3 * 3 * 192, 384),
              (3 * 3 * 192, 256), (6 * 6 * 256, 4096), (4096, 4096), (4096, 1000)]  # fmt: skip
    paper = sum((fan_in + 1) * out for fan_in, out in layers)
    assert count_parameters(model) == paper and round(paper / 1e6) == 61
    # torchvision's single-tower network has no LRN and no groups, and its own state_dict keys.
    assert set(model.state_dict()) != set(create_model("alexnet").state_dict())


def test_paper_alexnet_runs_at_its_minimum_size():
    model = create_model("alexnet", lrn=True, groups=2, num_classes=4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 63, 63)).shape == (1, 4)
    with pytest.raises(ValueError, match="at least 63x63"):
        model(torch.randn(1, 3, 63, 62))


def test_groups_must_divide_the_widths():
    with pytest.raises(ValueError, match="groups=5 must divide the channels of conv2"):
        create_model("alexnet", groups=5)
