"""Receptive fields against a gradient measurement on the same graph.

The measurement: every convolution becomes a one-channel convolution with the same kernel, stride, padding
and dilation and positive weights (the channel sum goes in, so every input channel still reaches every
output channel), batch norm becomes the identity, max pooling becomes average pooling with the same window
(max pooling passes gradient to one element per window), everything runs in float64 on a positive input.
Then the input pixels with a non-zero gradient of one output element are exactly the pixels in its
receptive field that lie inside the image. Comparing the clipped interval ``[centre - (size-1)/2,
centre + (size-1)/2]`` with the measured one, for the first, second, middle and last output element, is
valid whatever the input size; the inputs are chosen large enough that the first element's far edge and
the last element's near edge fall inside the image, so ``size``, ``jump`` and ``start`` are all pinned down.
"""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from nnatlas.analysis import receptive_field


class OneChannelConv(nn.Module):
    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x):
        c = self.conv
        x = x.sum(1, keepdim=True)  # (B, 1, H, W)
        if isinstance(c, nn.ConvTranspose2d):
            w = torch.ones(1, 1, *c.kernel_size, dtype=x.dtype) / math.prod(c.kernel_size)
            return F.conv_transpose2d(x, w, None, c.stride, c.padding, c.output_padding, 1, c.dilation)
        w = torch.ones(1, 1, *c.kernel_size, dtype=x.dtype) / math.prod(c.kernel_size)
        return F.conv2d(x, w, None, c.stride, c.padding, c.dilation)


def make_twin(model: nn.Module) -> nn.Module:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d)):
                setattr(parent, name, OneChannelConv(child))
            elif isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())
    return model.eval()


class _Stop(Exception):
    pass


@pytest.fixture
def avg_instead_of_max(monkeypatch):
    avg = F.avg_pool2d

    def max_as_avg(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        assert dilation in (1, (1, 1)) and not return_indices
        return avg(x, kernel_size, stride, padding, ceil_mode, count_include_pad=True)

    monkeypatch.setattr(F, "max_pool2d", max_as_avg)


def measured_intervals(twin: nn.Module, layer: str, size: int, indices):
    """Per output element ``(i, i)`` of ``layer``: ``[(row_lo, row_hi), (col_lo, col_hi)]`` of non-zero gradient."""
    captured = []

    def hook(module, args, output):
        captured.append(output)
        raise _Stop

    handle = dict(twin.named_modules())[layer].register_forward_hook(hook)
    x = (torch.rand(1, 1, size, size, dtype=torch.float64) + 0.5) * 1e-6  # small: ReLU6 must not saturate
    x.requires_grad_(True)
    try:
        twin(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    y = captured[0]
    out = {}
    for i in indices:
        i = i % y.shape[-1]
        (g,) = torch.autograd.grad(y[0, :, i, i].sum(), x, retain_graph=True)
        nz = g[0, 0] != 0
        rows = nz.any(1).nonzero().flatten()
        cols = nz.any(0).nonzero().flatten()
        out[i] = [(int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))]
    return out, y.shape[-1]


# (builder, kwargs, input size, expected final layer); input sizes put the edges of the fields inside the image
CASES = [
    ("resnet18", {}, 320, "layer4"),
    ("resnet50", {}, 320, "layer4"),
    ("googlenet", {"aux_logits": False, "init_weights": False}, 288, "inception5b"),
    ("inception_v3", {"aux_logits": False, "init_weights": False}, 768, "Mixed_7c"),
    ("alexnet", {}, 224, "avgpool"),  # avgpool: 6x6 -> 6x6, still spatial and the identity
    ("vgg11", {}, 224, "avgpool"),
    ("squeezenet1_0", {}, 256, "classifier.2"),  # the 1x1 classifier conv and its ReLU are still spatial
    ("mobilenet_v2", {}, 384, "features"),
]


@pytest.mark.parametrize(("name", "kwargs", "size", "final"), CASES, ids=[c[0] for c in CASES])
def test_final_receptive_field_equals_gradient_measurement(name, kwargs, size, final, avg_instead_of_max):
    with torch.device("meta"):
        rf = receptive_field(torchvision.models.get_model(name, weights=None, **kwargs), (1, 3, size, size))
        twin = make_twin(torchvision.models.get_model(name, weights=None, **kwargs))
    assert rf.final_name == final
    f = rf.final
    assert f.aligned
    measured, n = measured_intervals(twin, final, size, [0, 1, -1, -2])
    assert f.output_shape[-1] == n
    for i, got in measured.items():
        for (lo, hi), (got_lo, got_hi) in zip(f.interval((i, i)), got, strict=True):
            # an edge inside the image must match exactly; one outside is cut at the image border (on the
            # right possibly earlier: a strided layer without padding drops trailing rows of its input)
            assert got_lo == lo if lo > 0 else got_lo == 0, (name, i, f, got)
            assert got_hi == hi if hi < size - 1 else got_hi <= size - 1, (name, i, f, got)
    # the test pins size, jump and start only if these four edges lie inside the image
    hi0, hi1 = f.interval((0, 0))[0][1], f.interval((1, 1))[0][1]
    lo_last, lo_prev = f.interval((n - 1, n - 1))[0][0], f.interval((n - 2, n - 2))[0][0]
    assert hi0 < hi1 < size - 1 and 0 < lo_prev < lo_last, (name, f)


def test_known_published_values():
    # Araujo, Norris & Sim, Distill 2019, table of receptive fields: ResNet-50 427, VGG-16 212,
    # AlexNet 195, Inception-v3 1311 (torchvision's layouts are the same for these four)
    for name, size, expected in [
        ("resnet50", 224, 427),
        ("vgg16", 224, 212),
        ("alexnet", 224, 195),
        ("inception_v3", 299, 1311),
    ]:
        with torch.device("meta"):
            kwargs = {"aux_logits": False, "init_weights": False} if name == "inception_v3" else {}
            f = receptive_field(
                torchvision.models.get_model(name, weights=None, **kwargs), (1, 3, size, size)
            ).final
        assert f.size == (expected, expected), name


def positive(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0 / p[0].numel() if p.dim() > 1 else 0.0)
    return model.double().eval()


def row_supports(model: nn.Module, size: int, rows=None):
    """For output rows ``i`` (all by default; middle column): first and last input row with a non-zero gradient."""
    x = (torch.rand(1, 1, size, size, dtype=torch.float64) + 0.5).requires_grad_(True)
    y = model(x)
    col = y.shape[-1] // 2
    out = {}
    for i in range(y.shape[-2]) if rows is None else rows:
        (g,) = torch.autograd.grad(y[0, :, i, col].sum(), x, retain_graph=True)
        nz = (g[0, 0] != 0).any(1).nonzero().flatten()
        out[i] = (int(nz.min()), int(nz.max())) if nz.numel() else None  # None: sees only padding
    return out


class Decoder(nn.Module):
    """Down, transposed-conv up, dilated conv, interpolation up: windows that alternate from element to element."""

    def __init__(self, mode: str):
        super().__init__()
        self.down = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1)
        self.dilated = nn.Conv2d(2, 2, 3, padding=2, dilation=2)
        self.mode = mode
        self.head = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        x = self.dilated(self.up(self.down(x)))
        kw = {} if self.mode.startswith("nearest") else {"align_corners": self.mode.endswith("corners")}
        x = F.interpolate(x, scale_factor=2, mode=self.mode.split("-corners")[0], **kw)
        return self.head(x)


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "bilinear", "bilinear-corners"])
def test_transposed_conv_and_upsampling_windows_match_gradients_element_by_element(mode):
    model, size = positive(Decoder(mode)), 48
    f = receptive_field(model, (1, 1, size, size)).final
    assert f.jump == (0.5, 0.5)
    widest = 0
    n = f.output_shape[-2]
    rows = [
        *range(10),
        *range(n // 2 - 4, n // 2 + 4),
        n - 2,
        n - 1,
    ]  # both borders, two periods in the middle
    for i, (lo, hi) in row_supports(model, size, rows).items():
        p_lo, p_hi = f.interval((i, 0))[0]
        assert lo == p_lo if p_lo > 0 else lo == 0, (i, lo, hi, p_lo, p_hi)
        assert hi == p_hi if p_hi < size - 1 else hi <= size - 1, (i, lo, hi, p_lo, p_hi)
        if 0 < p_lo and p_hi < size - 1:
            widest = max(widest, hi - lo + 1)
    assert widest == f.size[0]


class Misaligned(nn.Module):
    """Two branches whose outputs have the same shape but are centred half a pixel either side."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 2)
        self.b = nn.Conv2d(1, 1, 2)

    def forward(self, x):
        return self.a(F.pad(x, (1, 0, 1, 0))) + F.pad(self.b(x), (0, 1, 0, 1))


def test_branches_merge_to_the_union_and_report_misalignment():
    model, size = positive(Misaligned()), 12
    f = receptive_field(model, (1, 1, size, size)).final
    assert not f.aligned and f.size == (3, 3)
    for i, (lo, hi) in row_supports(model, size).items():
        p_lo, p_hi = f.interval((i, 0))[0]
        assert (lo, hi) == (max(0, p_lo), min(size - 1, p_hi))


def test_meta_and_real_models_agree_and_every_spatial_layer_has_a_field():
    real = receptive_field(torchvision.models.resnet18(), (1, 3, 64, 64))
    with torch.device("meta"):
        meta = receptive_field(torchvision.models.resnet18(), (1, 3, 64, 64))
    assert real.layers == meta.layers
    assert "fc" not in real.layers and "avgpool" not in real.layers  # global pooling ends the spatial part
    assert real.layers["layer2.0.downsample"].aligned and real.layers["layer2.0"].aligned


layer_spec = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2), st.integers(1, 2)),
    st.tuples(st.just("avgpool"), st.integers(2, 3), st.integers(1, 3), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("convT"), st.integers(1, 4), st.integers(1, 3), st.integers(0, 1), st.integers(1, 2)),
    st.tuples(st.just("up"), st.sampled_from(["nearest", "bilinear"]), st.integers(2, 3)),
)


def build(spec) -> nn.Module:
    layers = []
    for kind, *a in spec:
        if kind == "conv":
            k, s, p, d = a
            layers.append(nn.Conv2d(1, 1, k, stride=s, padding=min(p, (k - 1) * d // 2), dilation=d))
        elif kind == "avgpool":
            k, s, p, ceil = a
            layers.append(nn.AvgPool2d(k, stride=s, padding=min(p, k // 2), ceil_mode=ceil))
        elif kind == "convT":
            k, s, p, d = a
            layers.append(nn.ConvTranspose2d(1, 1, k, stride=s, padding=min(p, (k - 1) * d // 2), dilation=d))
        else:
            mode, f = a
            layers.append(nn.Upsample(scale_factor=f, mode=mode))
    return positive(nn.Sequential(*layers))


@settings(max_examples=20, deadline=None)
@given(spec=st.lists(layer_spec, min_size=1, max_size=4))
def test_any_stack_of_convs_pools_transposed_convs_and_upsampling_matches_gradients(spec):
    # every element's window, not only the first: exact where the window is inside the image.
    # A transposed conv whose taps miss a residue of the stride leaves outputs that see no input at all.
    assume(all(len({t * a[3] % a[1] for t in range(a[0])}) == a[1] for kind, *a in spec if kind == "convT"))
    model, size = build(spec), 24
    try:
        f = receptive_field(model, (1, 1, size, size)).final
    except ValueError:
        assume(False)  # this stack shrinks a 24-pixel image to nothing
    n = f.output_shape[-2]
    assume(n <= 64)
    for i, support in row_supports(model, size).items():
        p_lo, p_hi = f.interval((i, 0))[0]
        if support is None:  # a border element whose window reaches only padding
            assert p_lo < 0 or p_hi > size - 1, (spec, i, p_lo, p_hi)
            continue
        lo, hi = support
        # an edge outside the image is cut at the border, or further in where dilation skips pixels
        assert lo == p_lo if p_lo > 0 else 0 <= lo <= hi, (spec, i, lo, hi, p_lo, p_hi)
        assert hi == p_hi if p_hi < size - 1 else lo <= hi <= size - 1, (spec, i, lo, hi, p_lo, p_hi)


class ChannelsLastBlock(nn.Module):
    """ConvNeXt-style: depthwise 7x7, then ``nn.Linear`` layers on a channels-last ``(B, H, W, C)`` tensor."""

    def __init__(self, c=4):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 2, stride=2)
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.fc1, self.fc2 = nn.Linear(c, 2 * c), nn.Linear(2 * c, c)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.fc2(F.gelu(self.fc1(y))).permute(0, 3, 1, 2)  # (B, C, H, W)
        return x + y


class SqueezeExcite(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.gate = nn.Linear(c, c)

    def forward(self, x):
        x = self.conv(x)
        g = torch.sigmoid(self.gate(x.mean((2, 3))))  # (B, C): a global quantity
        return x * g[:, :, None, None]


def test_linear_layers_on_channels_last_tensors_keep_the_field():
    model, size = positive(ChannelsLastBlock()), 32
    f = receptive_field(model, (1, 1, size, size)).final
    assert f.bounded and f.size == (2 + 6 * 2, 2 + 6 * 2)
    for i, (lo, hi) in row_supports(model, size).items():
        p_lo, p_hi = f.interval((i, 0))[0]
        assert (lo, hi) == (max(0, p_lo), min(size - 1, p_hi))


def test_a_global_gate_makes_the_field_unbounded():
    model, size = positive(SqueezeExcite()), 16
    f = receptive_field(model, (1, 1, size, size)).final
    assert f.size == (3, 3) and not f.bounded
    assert set(row_supports(model, size, rows=[0, 8]).values()) == {(0, size - 1)}  # sees the whole image


def test_swin_field_becomes_global_at_the_first_window_attention():
    # Swin's patch embedding is a 4x4 convolution of stride 4; its first block then partitions the 56x56
    # patches into 7x7 windows and attends within each (and the shifted windows of later blocks and the
    # last stage's single 7x7 window spread that to the whole image). The field used to end "at a permute"
    # with a misleading 32x32 window; it is the patch up to the first attention, and global from there.
    with torch.device("meta"):
        model = torchvision.models.swin_t()
    rf = receptive_field(model, (1, 3, 224, 224))
    patch = model.features[0][0]
    assert rf.final_name == "features.0"
    assert rf.final.size == tuple(patch.kernel_size) and rf.final.jump == tuple(patch.stride) == (4, 4)
    assert (rf.global_at, rf.global_op) == ("features.1.0.attn", "aten.permute")  # the window partition
    # no window is claimed after the attention: only the patch embedding and the norm before the attention
    assert set(rf.layers) == {
        "features.0.0",
        "features.0.1",
        "features.0.2",
        "features.0",
        "features.1.0.norm1",
    }
    assert "global from features.1.0.attn" in str(rf)


def test_vit_field_is_the_patch_until_the_class_token_joins():
    with torch.device("meta"):
        model = torchvision.models.vit_b_16()
    rf = receptive_field(model, (1, 3, 224, 224))
    assert rf.final_name == "conv_proj" and rf.final.size == (16, 16) and rf.final.jump == (16, 16)
    assert (rf.global_at, rf.global_op) == ("", "aten.cat")  # the class token, in the model's own forward


def test_resnet_field_becomes_global_at_global_pooling():
    with torch.device("meta"):
        rf = receptive_field(torchvision.models.resnet50(), (1, 3, 224, 224))
    assert rf.final_name == "layer4" and rf.global_at == "avgpool"


class OutAndAux(nn.Module):
    """Returns ``{"out", "aux"}`` as torchvision's segmentation models do; the auxiliary head runs last."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 1, 3, padding=1)
        self.head = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1))
        self.aux = nn.Conv2d(1, 1, 1)

    def forward(self, x):
        s = self.stem(x)
        return {"out": self.head(s), "aux": self.aux(s)}


class Out(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def test_final_is_the_output_the_model_returns_not_the_last_module_to_finish():
    model, size = positive(OutAndAux()), 16
    rf = receptive_field(model, (1, 1, size, size))
    assert rf.layers["aux"].size == (3, 3)  # the last module to finish: what .final used to be
    assert rf.final_name == "" and rf.final.size == (7, 7)
    for i, (lo, hi) in row_supports(Out(model), size, rows=[3, 8, 12]).items():
        assert (lo, hi) == tuple(rf.final.interval((i, 0))[0])


def test_fcn_with_auxiliary_head_reports_the_out_field():
    # fcn_resnet50's classifier sees 443 px; the bilinear 8x upsampling to the input size mixes two
    # neighbouring classifier outputs 8 px apart, so ``out`` sees 443 + 8; the auxiliary head (283 px),
    # which runs last, used to be reported
    with torch.device("meta"):
        model = torchvision.models.segmentation.fcn_resnet50(
            weights=None, weights_backbone=None, aux_loss=True
        )
    rf = receptive_field(model, (1, 3, 520, 520))
    assert rf.layers["classifier"].size == (443, 443) and rf.layers["aux_classifier"].size == (283, 283)
    assert rf.final_name == "" and rf.final.size == (443 + 8, 443 + 8) and rf.final.jump == (1, 1)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, padding=1)
        self.b = nn.Sequential(nn.Conv2d(1, 1, 5, padding=2), nn.Conv2d(1, 1, 3, padding=1))

    def forward(self, x, y):
        return self.a(x) + self.b(y)


def supports(model, size, which):
    """First and last input row of input ``which`` reaching output row ``i`` (middle column), per row."""
    x = (torch.rand(1, 1, size, size, dtype=torch.float64) + 0.5).requires_grad_(True)
    y = (torch.rand(1, 1, size, size, dtype=torch.float64) + 0.5).requires_grad_(True)
    out = model(x, y)
    result = {}
    for i in (2, 7, 12):
        (g,) = torch.autograd.grad(out[0, 0, i, size // 2], [x, y][which], retain_graph=True)
        nz = (g[0, 0] != 0).any(1).nonzero().flatten()
        result[i] = (int(nz.min()), int(nz.max()))
    return result


def test_every_input_starts_a_field_and_fields_say_which_inputs_they_cover():
    # only the first tensor input used to be followed: the second input's branch had no field at all
    model, size = positive(TwoInputs()), 16
    x, y = (torch.randn(1, 1, size, size, dtype=torch.float64) for _ in range(2))
    for inputs, names in [((x, y), (0, 1)), ({"x": x, "y": y}, ("x", "y"))]:
        rf = receptive_field(model, inputs=inputs)
        assert rf.layers["a"].inputs == (names[0],) and rf.layers["b"].inputs == (names[1],)
        assert rf.layers["a"].size == (3, 3) and rf.layers["b"].size == (7, 7)
        assert rf.final_name == "" and rf.final.inputs == names and rf.final.size == (7, 7)  # the union
    for name, which in (("a", 0), ("b", 1)):
        f = rf.layers[name]
        for i, got in supports(model, size, which).items():
            lo, hi = f.interval((i, 0))[0]
            assert got == (max(0, lo), min(size - 1, hi)), (name, i)  # cut at the image border


class Normalised(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.kind = kind
        self.norm = nn.GroupNorm(1, 2)

    def forward(self, x):
        y = self.conv(x)
        if self.kind == "group_norm":
            return self.norm(y)
        if self.kind == "softmax_over_width":
            return y.softmax(dim=-1)
        return y.flip(-1)


def test_statistics_and_lines_over_positions_are_not_windows():
    # group norm: each output keeps its 3x3 window, but the mean and deviation over every position weigh in;
    # a softmax along the width or a flip makes an output depend on the whole line or the far end
    size = 12
    model = Normalised("group_norm").double().eval()
    f = receptive_field(model, (1, 1, size, size)).final
    assert f.size == (3, 3) and not f.bounded
    assert set(row_supports(model, size, rows=[0, 6]).values()) == {(0, size - 1)}  # the whole image
    for kind in ("softmax_over_width", "flip"):
        rf = receptive_field(Normalised(kind), (1, 1, size, size))
        assert (
            rf.final_name == "conv" and rf.global_at == "" and rf.global_op in ("aten._softmax", "aten.flip")
        )


def test_local_response_norm_pools_over_channels_and_keeps_the_field():
    # F.local_response_norm runs avg_pool3d over (channel, H, W) with a window over channels only.
    from nnatlas.analysis import summary

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.LocalResponseNorm(5), nn.Conv2d(8, 4, 3, stride=2))
    final = receptive_field(model, (1, 3, 17, 17)).final
    assert final.size == (5, 5) and final.jump == (2, 2)
    s = summary(model, (1, 3, 17, 17))
    assert s.total_macs == 15 * 15 * 8 * 27 + 7 * 7 * 4 * 72  # the two convolutions; LRN is FLOPs only
