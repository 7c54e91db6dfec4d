"""summary(): parameters and MACs against torchvision's published numbers and torch's FlopCounterMode,
attention and transposed convolution against their closed forms, and clear errors on bad input."""

import csv
import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nnatlas.analysis import (
    MetaDeviceError,
    ShapeError,
    register_module_counter,
    register_op_counter,
    summary,
)

# torchvision publishes, in each weights enum's meta, "num_params" and "_ops" (GFLOPS, which torchvision
# documents as counting multiply-adds: ResNet-50 4.089, VGG-16 15.47, AlexNet 0.714). The published GoogLeNet
# drops its auxiliary classifiers, the published Inception-v3 keeps its one (it does not run in eval mode).
TORCHVISION = [
    ("alexnet", 224, {}),
    ("vgg16", 224, {}),
    ("googlenet", 224, {"aux_logits": False, "init_weights": False}),
    ("inception_v3", 299, {"init_weights": False}),
    ("resnet18", 224, {}),
    ("resnet34", 224, {}),
    ("resnet50", 224, {}),
    ("resnet101", 224, {}),
    ("resnet152", 224, {}),
]


@pytest.mark.parametrize(("name", "size", "kwargs"), TORCHVISION, ids=[t[0] for t in TORCHVISION])
def test_torchvision_params_exact_and_macs_within_one_percent_of_published(name, size, kwargs):
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    with torch.device("meta"):  # no weights allocated, no arithmetic: the counter needs shapes only
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    s = summary(model, (1, 3, size, size))
    assert s.total_params == meta["num_params"] == sum(p.numel() for p in model.parameters())
    assert s.trainable_params == s.total_params
    published = meta["_ops"] * 1e9
    assert abs(s.total_macs - published) / published < 0.01, (name, s.total_macs, published)
    assert s.total_flops > 2 * s.total_macs  # plus norms, activations, pooling, biases


class Mixed(nn.Module):
    """Grouped, dilated, strided and transposed convolutions, a linear layer and an einsum."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 8, 3, stride=2, padding=2, dilation=2, groups=2)
        self.b = nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False)
        self.up = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = self.up(self.b(self.a(x)))  # (B, 6, H, W)
        t = x.flatten(2).transpose(1, 2)  # (B, HW, 6)
        return torch.einsum("btc,bsc->bts", t, t).mean() + self.fc(t).sum()


def test_macs_equal_torch_flop_counter_for_convs_linear_and_einsum():
    model, x = Mixed().eval(), torch.randn(2, 4, 15, 17)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    # FlopCounterMode counts 2 FLOPs per multiply-add of conv/mm/bmm and nothing else
    assert summary(model, inputs=x).total_macs * 2 == fc.get_total_flops()


@settings(max_examples=15, deadline=None)
@given(
    dims=st.integers(1, 3),
    groups=st.sampled_from([1, 2]),
    k=st.integers(1, 3),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 2),
    transposed=st.booleans(),
)
def test_conv_macs_equal_torch_flop_counter_for_any_configuration(
    dims, groups, k, stride, dilation, transposed
):
    cls = (
        [nn.Conv1d, nn.Conv2d, nn.Conv3d][dims - 1]
        if not transposed
        else [nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d][dims - 1]
    )
    conv = cls(4, 6, k, stride=stride, dilation=dilation, groups=groups)
    x = torch.randn(2, 4, *[7] * dims)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        conv(x)
    assert 2 * summary(conv, inputs=x).total_macs == fc.get_total_flops()


def test_transposed_conv_macs_count_input_elements():
    up = nn.ConvTranspose2d(6, 9, kernel_size=(3, 4), stride=3, padding=1, groups=3)
    x = torch.randn(2, 6, 5, 7)
    s = summary(up, inputs=x)
    assert s.total_macs == x.numel() * (9 // 3) * 3 * 4  # in_elements * c_out/groups * k_h * k_w
    out_elements = up(x).numel()
    assert s.total_macs != out_elements * (6 // 3) * 3 * 4  # the output-size formula is a different number


def mha_closed_form(b, l, s, e, heads):
    proj = b * l * e * e + 2 * b * s * e * e + b * l * e * e  # Q, K, V, output projections
    return proj + b * heads * l * s * (e // heads) * 2  # Q K^T and A V


@pytest.mark.parametrize("batch_first", [True, False], ids=["fused_fast_path", "python_path"])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_multihead_attention_macs_equal_closed_form(batch_first, cross):
    b, l, s, e, h = 2, 5, 7 if cross else 5, 16, 4
    mha = nn.MultiheadAttention(e, h, batch_first=batch_first)
    q = torch.randn(b, l, e) if batch_first else torch.randn(l, b, e)
    kv = (torch.randn(b, s, e) if batch_first else torch.randn(s, b, e)) if cross else q
    got = summary(mha, inputs=(q, kv, kv)).total_macs
    assert got == mha_closed_form(b, l, s, e, h)


def test_fused_fast_path_is_the_one_measured():
    # in eval mode without gradients nn.MultiheadAttention (batch_first) runs one fused ATen operator,
    # which torch's own FlopCounterMode does not know: proof that the counter above saw that operator
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    q = torch.randn(2, 5, 16)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        mha(q, q, q)
    assert fc.get_total_flops() == 0
    assert summary(mha, inputs=(q, q, q)).total_macs == mha_closed_form(2, 5, 5, 16, 4)


@pytest.mark.parametrize("batch_first", [True, False], ids=["fused_fast_path", "python_path"])
def test_transformer_encoder_layer_macs_equal_closed_form(batch_first):
    b, l, e, h, f = 2, 6, 16, 4, 32
    layer = nn.TransformerEncoderLayer(e, h, f, dropout=0.0, batch_first=batch_first)
    x = torch.randn(b, l, e) if batch_first else torch.randn(l, b, e)
    assert summary(layer, inputs=x).total_macs == mha_closed_form(b, l, l, e, h) + 2 * b * l * e * f


class CausalSDPA(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_sdpa_counts_full_products_under_a_causal_mask(device):
    b, h, l, s, e, ev = 2, 3, 8, 8, 16, 12
    q, k, v = (torch.randn(b, h, n, d, device=device) for n, d in [(l, e), (s, e), (s, ev)])
    assert summary(CausalSDPA(), inputs=(q, k, v)).total_macs == b * h * l * s * (e + ev)


class TiedLM(nn.Module):
    def __init__(self, vocab=50, dim=8):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied

    def forward(self, tokens):
        return self.head(self.embed(tokens))


def test_tied_parameters_counted_once():
    s = summary(TiedLM(), inputs=torch.randint(0, 50, (2, 3)))
    assert s.total_params == 50 * 8
    assert s.total_macs == 2 * 3 * 8 * 50


def test_rows_match_the_module_outputs_and_inputs_may_be_tuple_or_dict():
    with torch.device("meta"):  # torch's own forward on meta tensors is the reference for the shapes
        model = torchvision.models.resnet18(num_classes=10)
        x = torch.randn(1, 3, 64, 64)
    seen = {}

    def record(name):
        def hook(module, args, output):
            seen[name] = list(output.shape)

        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if n]
    model.eval()(x)
    for h in hooks:
        h.remove()
    for kind in (x, (x,), {"x": x}):
        s = summary(model, inputs=kind)
        assert {r.name: r.output_shape for r in s.rows} == seen
        assert s.input == [[1, 3, 64, 64]]
    rows = {r.name: r for r in summary(model, inputs=x, depth=1).rows}
    assert set(rows) == {n for n, _ in model.named_children()}
    assert rows["layer1"].params == sum(p.numel() for p in model.layer1.parameters())
    assert rows["layer4"].macs == sum(
        r.macs for r in summary(model, inputs=x, depth=2).rows if r.name.startswith("layer4.")
    )


def test_summary_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Dropout(0.5), nn.ReLU()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary(model, (2, 3, 16, 16))
    assert all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_formats():
    s = summary(torchvision.models.resnet18(num_classes=10), (1, 3, 64, 64))
    d = json.loads(s.to_json())
    assert set(d) == {
        "model",
        "input",
        "total_params",
        "trainable_params",
        "total_macs",
        "total_flops",
        "partial",
        "unsupported",
        "upper_bound",
        "receptive_field",
        "layers",
    }
    assert d["partial"] is False and d["unsupported"] == {} and d["upper_bound"] == {}
    assert d["receptive_field"]["size"] == [435, 435] and d["receptive_field"]["jump"] == [32, 32]
    rows = list(csv.DictReader(io.StringIO(s.to_csv())))
    assert len(rows) == len(s.rows) and rows[0]["name"] == "conv1" and rows[0]["output_shape"] == "1x64x32x32"
    text = str(s)
    assert f"{s.total_params:,}" in text and "layer4.1.conv2" in text and "1 MAC = 2 FLOPs" in text


def test_wrong_channel_count_names_the_layer():
    with pytest.raises(ShapeError, match=r"layer 'conv1' \(Conv2d\) expects 3 input channels") as e:
        summary(torchvision.models.resnet18(), (1, 4, 64, 64))
    assert e.value.layer == "conv1"


def test_too_small_image_names_the_layer_where_torch_fails():
    model = torchvision.models.alexnet().eval()
    with pytest.raises(ShapeError) as e:
        summary(model, (1, 3, 32, 32))
    index = int(e.value.layer.split(".")[1])
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        model.features[:index](x)  # fits up to the named layer ...
        with pytest.raises(RuntimeError):
            model.features[: index + 1](x)  # ... and not through it
    assert f"'{e.value.layer}'" in str(e.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one of input_size and inputs"):
        summary(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="depth"):
        summary(nn.Linear(2, 2), (1, 2), depth=0)


def test_input_size_takes_whole_floats_and_numpy_ints_and_rejects_the_rest():
    # these used to fail with "TypeError: 'int' object is not iterable" from the error path
    model = nn.Linear(2, 3)
    reference = summary(model, (1, 2))
    for size in [(1, 2.0), (np.int64(1), np.int32(2)), np.array([1, 2]), torch.Size([1, 2]), [(1.0, 2)]]:
        s = summary(model, size)
        assert s.input == [[1, 2]] and s.total_macs == reference.total_macs == 6
    for bad in [(1, 2.5), (1, "2"), (1, 0), (1, -2), (1, True), [(1, 2), 3], (), "1,2", 3, (1, float("nan"))]:
        with pytest.raises(ValueError, match="input_size must"):
            summary(model, bad)


class Kernel(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn()


def test_every_fused_attention_kernel_counts_the_closed_form():
    # the CUDA kernels of F.scaled_dot_product_attention (flash, memory-efficient, cuDNN) and their
    # lower-level forms, called on the meta device (their shape functions exist there, no GPU needed);
    # (B, H, L, E) layout for the _scaled_dot_product_* ops, (B, L, H, E) for the _*_forward ones
    aten = torch.ops.aten
    b, h, l, s, e, ev = 2, 3, 8, 10, 16, 8
    q, k, v = (torch.randn(b, h, n, d, device="meta") for n, d in [(l, e), (s, e), (s, ev)])
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    kernels = {
        "flash": lambda: aten._scaled_dot_product_flash_attention(q, k, v, 0.0, True),
        "efficient": lambda: aten._scaled_dot_product_efficient_attention(q, k, v, None, False, 0.0, True),
        "cudnn": lambda: aten._scaled_dot_product_cudnn_attention(q, k, v, None, False, 0.0, True),
        "cpu_flash": lambda: aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, True),
        "overrideable": lambda: aten._scaled_dot_product_fused_attention_overrideable(
            q, k, v, None, 0.0, True
        ),
        "flash_forward": lambda: aten._flash_attention_forward(
            qt, kt, vt, None, None, l, s, 0.0, True, False
        ),
        "efficient_forward": lambda: aten._efficient_attention_forward(
            qt, kt, vt, None, None, None, l, s, 0.0, 1
        ),
    }
    for name, fn in kernels.items():
        assert summary(Kernel(fn), inputs=q).total_macs == b * h * l * s * (e + ev), name


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_padding_mask_fast_path_counts_the_real_tokens():
    # in eval mode nn.TransformerEncoder packs a padded batch into a nested tensor and computes only the
    # real tokens; the count follows (closed form per sample, summed)
    b, l, e, h, f = 2, 6, 16, 4, 32
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(e, h, f, batch_first=True), 2, enable_nested_tensor=True
    )
    x = torch.randn(b, l, e)
    mask = torch.zeros(b, l, dtype=torch.bool)
    mask[0, 4:] = True  # sample 0 has 4 real tokens, sample 1 has 6
    got = summary(enc.eval(), inputs={"src": x, "src_key_padding_mask": mask}).total_macs
    per_layer = sum(mha_closed_form(1, n, n, e, h) + 2 * n * e * f for n in (4, 6))
    assert got == 2 * per_layer


class Thresholded(nn.Module):
    """Reads a value in its forward pass (``int(x.sum())``), which the meta device cannot give."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return y[:, : 1 + int(y.abs().sum() > 0)]


def test_a_meta_device_limitation_is_reported_as_such_not_as_a_shape_error():
    # it used to be "ShapeError: input ... does not fit the model"
    with torch.device("meta"):
        model = Thresholded()
    with pytest.raises(MetaDeviceError) as e:
        summary(model, (1, 3, 8, 8))
    assert not isinstance(e.value, ShapeError)
    assert (
        e.value.layer == ""
        and "meta device" in str(e.value)
        and "Build the model on a real device" in str(e.value)
    )
    assert summary(Thresholded(), (1, 3, 8, 8)).total_macs == 4 * 6 * 6 * 3 * 9  # fine on the CPU


def test_data_dependent_operators_take_their_largest_output_on_meta():
    # torch.nonzero on the meta device: every element counts as selected; the totals are an upper bound
    class Select(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 5)

        def forward(self, x):
            return self.fc(x[x[:, 0] > 0])  # boolean-mask indexing: data-dependent rows

    x = torch.randn(6, 4)
    x[:, 0] = torch.tensor([1.0, -1.0, 2.0, -2.0, 3.0, -3.0])
    real = summary(Select(), inputs=x)
    assert real.total_macs == 3 * 4 * 5 and real.upper_bound == {}
    with torch.device("meta"):
        meta = summary(Select(), (6, 4))
    assert meta.total_macs == 6 * 4 * 5 and meta.upper_bound == {"aten.index": 1}
    assert "upper bound" in str(meta)


def lstm_macs(seq, batch, inputs, hidden, gates, layers=1, directions=1):
    """Per step and sample: gates * hidden * (input + hidden) multiply-adds (x W_ih^T and h W_hh^T)."""
    total, size = 0, inputs
    for _ in range(layers):
        total += directions * seq * batch * gates * hidden * (size + hidden)
        size = hidden * directions
    return total


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_recurrent_layers_count_their_gates(device):
    # on the CPU an LSTM runs as one aten.mkldnn_rnn_layer kernel, which used to count 0 MACs silently
    with torch.device(device):
        lstm = nn.LSTM(32, 64)
        gru = nn.GRU(32, 64, num_layers=2, bidirectional=True, batch_first=True)
        rnn = nn.RNN(32, 64, nonlinearity="relu")
    s = summary(lstm, (10, 2, 32))
    assert s.total_macs == lstm_macs(10, 2, 32, 64, gates=4) == 491_520 and not s.unsupported
    assert summary(gru, (2, 10, 32)).total_macs == lstm_macs(10, 2, 32, 64, 3, layers=2, directions=2)
    assert summary(rnn, (10, 2, 32)).total_macs == lstm_macs(10, 2, 32, 64, gates=1)


class Products(nn.Module):
    def __init__(self):
        super().__init__()
        self.bilinear = nn.Bilinear(5, 6, 7)

    def forward(self, x1, x2, m, v, c, b1, b2, i):
        return self.bilinear(x1, x2).sum() + torch.addmv(c, m, v).sum() + torch.addbmm(i, b1, b2).sum()


def test_bilinear_addmv_and_addbmm_are_counted():
    # each counted 0 MACs with no warning before
    shapes = [(3, 5), (3, 6), (4, 5), (5,), (4,), (3, 4, 5), (3, 5, 6), (4, 6)]
    s = summary(Products(), inputs=tuple(torch.randn(*sh) for sh in shapes))
    rows = {r.name: r for r in s.rows}
    assert rows["bilinear"].macs == 3 * 7 * 5 * 6  # B * out * in1 * in2 (torch.nn.Bilinear's sum)
    assert s.total_macs == 3 * 7 * 5 * 6 + 4 * 5 + 3 * 4 * 5 * 6  # addmv m*k, addbmm B*m*k*n
    assert not s.unsupported


class Spectral(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return torch.fft.rfft2(self.conv(x)).abs()


def test_unsupported_operators_are_listed_with_their_calls_and_the_totals_marked_partial():
    s = summary(Spectral(), (1, 1, 8, 8))
    assert s.unsupported == {"aten._fft_r2c": 1} and s.partial
    assert s.total_macs == 2 * 6 * 6 * 9  # the convolution is still counted
    text = str(s)
    assert "partial" in next(line for line in text.splitlines() if line.startswith("total MACs"))
    assert "not counted       aten._fft_r2c x1" in text
    assert s.to_dict()["partial"] is True and s.to_dict()["unsupported"] == {"aten._fft_r2c": 1}


@torch.library.custom_op("nnatlas_test::scaled_tanh", mutates_args=())
def scaled_tanh(x: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.tanh(x) * scale


@scaled_tanh.register_fake
def _(x, scale):
    return torch.empty_like(x)


class UsesCustomOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return scaled_tanh(self.fc(x), 2.0)


def test_a_registered_counter_counts_a_custom_operator_until_removed():
    x = torch.randn(3, 4)
    before = summary(UsesCustomOp(), inputs=x)
    assert before.unsupported == {"nnatlas_test.scaled_tanh": 1}
    with register_op_counter(
        torch.ops.nnatlas_test.scaled_tanh, lambda args, out: (0, 2 * args["x"].numel())
    ):
        after = summary(UsesCustomOp(), inputs=x)
    assert not after.unsupported and after.total_flops == before.total_flops + 2 * 12
    assert summary(UsesCustomOp(), inputs=x).unsupported == {"nnatlas_test.scaled_tanh": 1}  # removed again
    with pytest.raises(TypeError, match="operator"):
        register_op_counter("scaled_tanh", lambda args, out: (0, 0))


class Gate(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


def test_a_registered_module_counter_replaces_the_operators_it_runs():
    model = nn.Sequential(nn.Linear(4, 4), Gate(), nn.Linear(4, 2))
    x = torch.randn(3, 4)
    base = summary(model, inputs=x)
    rows = {r.name: r for r in base.rows}
    assert rows["1"].flops == 2 * 12  # sigmoid and multiply: one FLOP per element each
    handle = register_module_counter(Gate, lambda module, args, out: (5, 7))
    try:
        s = summary(model, inputs=x)
    finally:
        handle.remove()
    rows2 = {r.name: r for r in s.rows}
    assert (rows2["1"].macs, rows2["1"].flops) == (5, 7)
    assert s.total_macs == base.total_macs + 5 and s.total_flops == base.total_flops - 2 * 12 + 7
    assert rows2["0"].macs == rows["0"].macs and rows2["2"].macs == rows["2"].macs
