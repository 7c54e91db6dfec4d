"""BN-Inception (``inception_v2``) against the paper's figure 5 and against pretrainedmodels' bninception.

Sources: Ioffe & Szegedy 2015, appendix "Variant of the Inception Model Used", figure 5 (transcribed below
as data, and summed by formula); Cadene's ``pretrainedmodels/models/bninception.py`` (the widely used port of
the released Caffe model): 69 ``nn.Conv2d`` layers with bias, each followed by an ``nn.BatchNorm2d``, and
``nn.Linear(1024, 1000)``, 11,295,240 parameters in all.
"""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nnatlas.analysis import count_parameters
from nnatlas.models import create_model, get_model_info

# Figure 5: name, #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, proj (0 = pass through),
# stride, and the output size the figure prints (channels, grid at 224x224).
FIGURE_5 = [
    ("3a", 64, 64, 64, 64, 96, "avg", 32, 1, (256, 28)),
    ("3b", 64, 64, 96, 64, 96, "avg", 64, 1, (320, 28)),
    ("3c", 0, 128, 160, 64, 96, "max", 0, 2, (576, 28)),
    ("4a", 224, 64, 96, 96, 128, "avg", 128, 1, (576, 14)),
    ("4b", 192, 96, 128, 96, 128, "avg", 128, 1, (576, 14)),
    ("4c", 160, 128, 160, 128, 160, "avg", 128, 1, (576, 14)),
    ("4d", 96, 128, 192, 160, 192, "avg", 128, 1, (576, 14)),
    ("4e", 0, 128, 192, 192, 256, "max", 0, 2, (1024, 14)),
    ("5a", 352, 192, 320, 160, 224, "avg", 128, 1, (1024, 7)),
    ("5b", 352, 192, 320, 192, 224, "max", 128, 1, (1024, 7)),
]
PRETRAINEDMODELS_BNINCEPTION_PARAMS = 11_295_240
PRETRAINEDMODELS_BNINCEPTION_CONVS = 69


def _conv_bn(k: int, c_in: int, c_out: int) -> int:
    return k * k * c_in * c_out + 2 * c_out  # bias-free convolution + batch norm (gamma, beta)


def _figure_5_layers(num_classes: int = 1000) -> tuple[list[tuple[int, int, int]], int]:
    """The (kernel, in, out) of every convolution of figure 5, and the module outputs (channels)."""
    convs = [(7, 3, 64), (1, 64, 64), (3, 64, 192)]  # stem: 7x7/2, then "#3x3 reduce 64, #3x3 192"
    c = 192
    outs = []
    for _, n1, r3, n3, rd, nd, _, proj, _, _ in FIGURE_5:
        convs += [(1, c, n1)] if n1 else []
        convs += [(1, c, r3), (3, r3, n3), (1, c, rd), (3, rd, nd), (3, nd, nd)]
        convs += [(1, c, proj)] if proj else []
        c = n1 + n3 + nd + (proj or c)
        outs.append(c)
    return convs, outs


def test_parameter_count_equals_figure_5_and_pretrainedmodels_bninception():
    convs, _ = _figure_5_layers()
    from_figure = sum(_conv_bn(*c) for c in convs) + 1024 * 1000 + 1000
    with torch.device("meta"):
        model = create_model("inception_v2")
    assert count_parameters(model) == from_figure == 11_285_224
    ours = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size[0], m.in_channels, m.out_channels) for m in ours] == convs
    assert len(ours) == PRETRAINEDMODELS_BNINCEPTION_CONVS and all(m.bias is None for m in ours)
    # The port has the same layers plus one bias per output channel of its 69 convolutions.
    conv_biases = sum(c_out for _, _, c_out in convs)
    assert conv_biases == 10_016
    assert from_figure + conv_biases == PRETRAINEDMODELS_BNINCEPTION_PARAMS


def test_module_outputs_follow_the_columns_of_figure_5():
    _, outs = _figure_5_layers()
    with torch.device("meta"):
        model = create_model("inception_v2").eval()
        shapes = {}
        for name, *_ in FIGURE_5:
            module = getattr(model, f"inception{name}")
            module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
        model(torch.empty(1, 3, 224, 224))
    grids = {"3a": 28, "3b": 28, "3c": 14, "4a": 14, "4b": 14, "4c": 14, "4d": 14, "4e": 7, "5a": 7, "5b": 7}
    for (name, *_), c in zip(FIGURE_5, outs, strict=True):
        assert shapes[name] == (1, c, grids[name], grids[name])
        assert getattr(model, f"inception{name}").out_channels == c
    # The figure's printed sizes disagree with its own columns in four rows: 3c prints its input grid, 4c
    # and 4d print 576 channels for 608, 4e prints 1024 for 1056.
    off = {name for (name, *_, printed), c in zip(FIGURE_5, outs, strict=True) if printed != (c, grids[name])}
    assert off == {"3c", "4c", "4d", "4e"}
    assert [outs[i] for i in (5, 6, 7)] == [608, 608, 1056]


def _macs(model: nn.Module, size: int = 224) -> int:
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, size, size))
    return counter.get_total_flops() // 2  # torch's counter reports 2 FLOPs per multiply-accumulate


def test_cost_is_about_30_percent_above_googlenet():
    # Appendix: replacing the 5x5 convolutions (and the other changes) "the computational cost is
    # increased by about 30%". GoogLeNet as published (paper=True) is the baseline: 1.58G MACs.
    with torch.device("meta"):
        bn_inception = create_model("inception_v2").eval()
        googlenet = create_model("googlenet", paper=True, aux_logits=False).eval()
    ours, base = _macs(bn_inception), _macs(googlenet)
    assert ours == 2_032_600_064 and base == 1_582_671_872
    assert 1.25 < ours / base < 1.35


def test_separable_stem_is_the_papers_first_layer():
    # "Our model employed separable convolution with depth multiplier 8 on the first convolutional layer":
    # 7x7 depthwise 3 -> 24 channels, then 1x1 24 -> 64 (+ batch norm): 7*7*3*8 + 24*64 weights.
    dense = create_model("inception_v2", num_classes=4).eval()
    separable = create_model("inception_v2", separable_stem=True, num_classes=4).eval()
    depthwise = separable.conv1.depthwise
    assert depthwise.groups == 3 and depthwise.out_channels == 24 and depthwise.kernel_size == (7, 7)
    assert count_parameters(separable.conv1) == 7 * 7 * 3 * 8 + 24 * 64 + 2 * 64 == 2_840
    assert count_parameters(dense) - count_parameters(separable) == 7 * 7 * 3 * 64 - (7 * 7 * 3 * 8 + 24 * 64)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert separable.conv1(x).shape == dense.conv1(x).shape == (2, 64, 16, 16)
        assert separable(x).shape == (2, 4)


def test_minimum_size_is_enforced_and_is_the_networks_own(monkeypatch):
    info = get_model_info("inception_v2")
    assert info.min_size == 7 and info.input_size == (3, 32, 32)
    model = create_model("inception_v2", num_classes=3, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 7, 7)).shape == (2, 3)
        assert model.forward_features(torch.randn(1, 1, 64, 64)).shape == (1, 1024, 2, 2)
        with pytest.raises(ValueError, match="at least 7x7 pixels; got 6x7"):
            model(torch.randn(1, 1, 6, 7))
        with pytest.raises(ValueError, match="in_channels=1; got an input with 3 channels"):
            model(torch.randn(1, 3, 32, 32))
        # without the check, the second stem max pool itself fails one pixel below
        module = __import__(type(model).__module__, fromlist=["check_image_input"])
        monkeypatch.setattr(module, "check_image_input", lambda x, **k: x)
        with pytest.raises(RuntimeError):
            model(torch.randn(1, 1, 6, 6))


def test_batch_norm_everywhere_and_no_dropout_by_default():
    model = create_model("inception_v2")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == len(convs) and all(n.eps == 1e-5 for n in norms)
    assert model.dropout.p == 0.0 and not any(isinstance(m, nn.LocalResponseNorm) for m in model.modules())
    assert create_model("inception_v2", dropout=0.4).dropout.p == 0.4
