"""Masks in captured graphs: torch.compile(fullgraph=True), torch.export, torch.jit.trace and ONNX (dynamo).

The guard for fully masked query rows is computed without a data-dependent branch, so every capture keeps
it: a row whose keys are all blocked gives the output projection's bias in the captured graph as in eager
mode, also when the example used for the capture had no such row. ``torch.compile`` runs with the
``aot_eager`` backend: ``fullgraph=True`` fails on any graph break as with the default backend, without
the C++ compilation of inductor.
"""

import warnings

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from nnatlas.layers import MultiheadAttention, TransformerEncoderLayer, causal_mask, padding_mask
from nnatlas.models import create_model

TOL = {"atol": 1e-5, "rtol": 1e-5}
E, H = 16, 4


class Attend(nn.Module):
    """Self-attention under a padding mask and a causal mask, the two masks of a decoder."""

    def __init__(self, causal: str):
        super().__init__()
        torch.manual_seed(0)
        self.mha = MultiheadAttention(E, H, batch_first=True)
        nn.init.normal_(self.mha.out_proj.bias)  # a fully masked row returns this bias: make it non-zero
        self.causal = causal

    def forward(self, x, kpm):
        if self.causal == "mask":
            return self.mha(x, x, x, key_padding_mask=kpm, attn_mask=causal_mask(x.shape[1]))[0]
        if self.causal == "float_mask":
            mask = torch.zeros(x.shape[1], x.shape[1]).masked_fill(causal_mask(x.shape[1]), float("-inf"))
            return self.mha(x, x, x, key_padding_mask=kpm, attn_mask=mask, need_weights=False)[0]
        return self.mha(x, x, x, key_padding_mask=kpm, is_causal=True, need_weights=False)[0]


def _inputs():
    x = torch.randn(3, 5, E)
    example = padding_mask(torch.tensor([5, 3, 1]), 5)  # no fully masked row
    fully = padding_mask(torch.tensor([5, 0, 2]), 5)  # row 1 has no key at all
    return x, example, fully


def _check_guard(fn, module, x, fully):
    out, ref = fn(x, fully), module(x, fully)
    assert torch.isfinite(out).all()
    assert_close(out, ref, **TOL)
    assert_close(out[1], module.mha.out_proj.bias.expand(5, E), **TOL)


@pytest.mark.parametrize("causal", ["mask", "float_mask", "is_causal"])
def test_compile_fullgraph_with_padding_and_causal_masks(causal):
    module = Attend(causal).eval()
    x, example, fully = _inputs()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")  # raises on a graph break
    assert_close(compiled(x, example), module(x, example), **TOL)
    _check_guard(compiled, module, x, fully)
    torch._dynamo.reset()


def test_compile_fullgraph_encoder_layer_with_gradients():
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(E, H, 32, dropout=0.0, batch_first=True)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x, _, fully = _inputs()
    kw = {"src_mask": causal_mask(5), "src_key_padding_mask": fully}
    a, b = layer(x, **kw), compiled(x, **kw)
    assert_close(b, a, **TOL)
    ga = torch.autograd.grad(a.sum(), layer.self_attn.in_proj_weight)[0]
    gb = torch.autograd.grad(b.sum(), layer.self_attn.in_proj_weight)[0]
    assert torch.isfinite(gb).all()
    assert_close(gb, ga, **TOL)
    torch._dynamo.reset()


@pytest.mark.parametrize("causal", ["mask", "is_causal"])
def test_torch_export_with_padding_and_causal_masks(causal):
    module = Attend(causal).eval()
    x, example, fully = _inputs()
    program = torch.export.export(module, (x, example))
    _check_guard(program.module(), module, x, fully)


def test_torch_export_of_the_seq2seq_model_with_dynamic_lengths():
    model = _seq2seq()
    src, tgt = _tokens(2, 7, 5)
    batch, s, t = torch.export.Dim("batch"), torch.export.Dim("S", max=32), torch.export.Dim("T", max=32)
    program = torch.export.export(model, (src, tgt), dynamic_shapes=({0: batch, 1: s}, {0: batch, 1: t}))
    src2, tgt2 = _tokens(3, 9, 4, seed=1)
    assert_close(program.module()(src2, tgt2), model(src2, tgt2), **TOL)


def test_traced_module_keeps_the_fully_masked_guard():
    # torch.jit.trace records the operations of one example; the guard is among them, not a branch
    # that the example's lack of a fully masked row would have frozen.
    module = Attend("mask").eval()
    x, example, fully = _inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trace's deprecation and shape-to-int warnings
        traced = torch.jit.trace(module, (x, example))
    _check_guard(traced, module, x, fully)


# ---- ONNX through the dynamo exporter, checked under onnxruntime ------------------------------------
def _seq2seq():
    torch.manual_seed(0)
    kw = {"vocab_size": 11, "d_model": 16, "nhead": 2, "dim_feedforward": 32, "max_len": 32}
    return create_model("transformer_seq2seq", **kw).eval()


def _tokens(B, S, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    src, tgt = torch.randint(3, 11, (B, S), generator=g), torch.randint(3, 11, (B, T), generator=g)
    src[-1, S // 2 :] = 0  # a padded source row
    tgt[:, 0] = 1
    return src, tgt


def _onnx_run(module, example, check, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, example, dynamo=True, verbose=False)
    path = tmp_path / "model.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return torch.from_numpy(session.run(None, dict(zip(names, (t.numpy() for t in check), strict=True)))[0])


def test_onnx_multihead_attention_agrees_with_eager(tmp_path):
    module = Attend("mask").eval()
    x, example, fully = _inputs()
    out = _onnx_run(module, (x, example), (x, fully), tmp_path)
    with torch.no_grad():
        ref = module(x, fully)
    assert torch.isfinite(out).all()
    assert_close(out, ref, **TOL)


def test_onnx_encoder_layer_agrees_with_eager(tmp_path):
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(E, H, 32, batch_first=True).eval()

    class Encode(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x, kpm):
            return self.layer(x, src_mask=causal_mask(x.shape[1]), src_key_padding_mask=kpm)

    module = Encode().eval()
    x, example, fully = _inputs()
    out = _onnx_run(module, (x, example), (x, fully), tmp_path)
    with torch.no_grad():
        ref = module(x, fully)
    assert torch.isfinite(out).all()
    assert_close(out, ref, **TOL)


def test_onnx_seq2seq_model_agrees_with_eager(tmp_path):
    model = _seq2seq()
    example, check = _tokens(2, 7, 5), _tokens(2, 7, 5, seed=1)
    out = _onnx_run(model, example, check, tmp_path)
    with torch.no_grad():
        ref = model(*check)
    assert_close(out, ref, **TOL)
