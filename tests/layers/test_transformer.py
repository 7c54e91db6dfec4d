"""Transformer layers and stacks against torch.nn.TransformerEncoderLayer / DecoderLayer / Encoder / Decoder."""

import math

import pytest
import torch
from torch.testing import assert_close

from nnatlas.layers import (
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    causal_mask,
    padding_mask,
)

TOL = {"atol": 1e-6, "rtol": 0.0}
D, H, FF = 16, 4, 32


def _layers(kind, norm_first, activation="relu"):
    ref_cls = torch.nn.TransformerEncoderLayer if kind == "encoder" else torch.nn.TransformerDecoderLayer
    our_cls = TransformerEncoderLayer if kind == "encoder" else TransformerDecoderLayer
    ref = ref_cls(D, H, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first)
    ours = our_cls(D, H, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _run(mode, ref, ours, *args, **kwargs):
    for m in (ref, ours):
        m.train(mode == "train")
    # Under no_grad in eval mode torch's encoder layer takes its fused "fast path" (a different kernel);
    # with gradients enabled it runs the same composite code as in training.
    with torch.set_grad_enabled(mode != "eval_no_grad"):
        return ref(*args, **kwargs), ours(*args, **kwargs)


@pytest.mark.parametrize("mode", ["train", "eval", "eval_no_grad"])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_equals_torch(mode, norm_first, activation):
    ref, ours = _layers("encoder", norm_first, activation)
    x = torch.randn(3, 6, D)
    kpm = padding_mask(torch.tensor([6, 2, 4]), 6)
    a, b = _run(mode, ref, ours, x, src_key_padding_mask=kpm)
    # The fused fast path writes 0 at padded positions of a nested tensor only in TransformerEncoder;
    # a single layer returns every position, which must agree.
    tol = TOL if mode != "eval_no_grad" else {"atol": 2e-6, "rtol": 0.0}
    assert_close(b, a, **tol)
    a, b = _run(mode, ref, ours, x, src_mask=causal_mask(6), is_causal=True)
    assert_close(b, a, **tol)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_equals_torch(mode, norm_first):
    ref, ours = _layers("decoder", norm_first)
    tgt, mem = torch.randn(3, 5, D), torch.randn(3, 7, D)
    kw = {
        "tgt_mask": causal_mask(5),
        "tgt_is_causal": True,
        "memory_key_padding_mask": padding_mask(torch.tensor([7, 3, 5]), 7),
        "tgt_key_padding_mask": padding_mask(torch.tensor([5, 5, 4]), 5),
    }
    a, b = _run(mode, ref, ours, tgt, mem, **kw)
    assert_close(b, a, **TOL)
    a.pow(2).sum().backward()
    b.pow(2).sum().backward()
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, ref_params[name].grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_stacks_equal_torch_and_load_strict(norm_first):
    ref_enc = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(D, H, FF, 0.0, batch_first=True, norm_first=norm_first),
        3,
        norm=torch.nn.LayerNorm(D),
        enable_nested_tensor=False,
    )
    ref_dec = torch.nn.TransformerDecoder(
        torch.nn.TransformerDecoderLayer(D, H, FF, 0.0, batch_first=True, norm_first=norm_first),
        2,
        norm=torch.nn.LayerNorm(D),
    )
    enc = TransformerEncoder(
        TransformerEncoderLayer(D, H, FF, 0.0, batch_first=True, norm_first=norm_first),
        3,
        torch.nn.LayerNorm(D),
    )
    dec = TransformerDecoder(
        TransformerDecoderLayer(D, H, FF, 0.0, batch_first=True, norm_first=norm_first),
        2,
        torch.nn.LayerNorm(D),
    )
    enc.load_state_dict(ref_enc.state_dict(), strict=True)
    dec.load_state_dict(ref_dec.state_dict(), strict=True)
    src, tgt = torch.randn(2, 7, D), torch.randn(2, 5, D)
    kpm = padding_mask(torch.tensor([7, 4]), 7)
    mem_ref = ref_enc(src, src_key_padding_mask=kpm)
    mem = enc(src, src_key_padding_mask=kpm)
    assert_close(mem, mem_ref, **TOL)
    out_ref = ref_dec(tgt, mem_ref, tgt_mask=causal_mask(5), memory_key_padding_mask=kpm, tgt_is_causal=True)
    out = dec(tgt, mem, tgt_mask=causal_mask(5), memory_key_padding_mask=kpm, tgt_is_causal=True)
    assert_close(out, out_ref, **TOL)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_with_cache_equals_full_recomputation(norm_first):
    layer = TransformerDecoderLayer(D, H, FF, 0.0, batch_first=True, norm_first=norm_first)
    dec = TransformerDecoder(layer, 2).eval()
    tgt, mem = torch.randn(2, 6, D), torch.randn(2, 4, D)
    kpm = padding_mask(torch.tensor([4, 2]), 4)
    full = dec(tgt, mem, tgt_mask=causal_mask(6), memory_key_padding_mask=kpm)
    cache = dec.new_cache()
    steps = [dec(tgt[:, t : t + 1], mem, memory_key_padding_mask=kpm, cache=cache) for t in range(6)]
    assert len(cache) == 6
    assert_close(torch.cat(steps, dim=1), full, **TOL)


def test_decoder_cache_with_chunks_needs_the_lower_right_mask():
    layer = TransformerDecoderLayer(D, H, FF, 0.0, batch_first=True)
    dec = TransformerDecoder(layer, 2).eval()
    tgt, mem = torch.randn(2, 7, D), torch.randn(2, 4, D)
    full = dec(tgt, mem, tgt_mask=causal_mask(7))
    cache = dec.new_cache()
    chunks = []
    for a, b in ((0, 3), (3, 4), (4, 7)):  # several new positions after the cached ones
        mask = causal_mask(b - a, b, alignment="lower_right")  # (new, cached + new), aligned to the end
        chunks.append(dec(tgt[:, a:b], mem, tgt_mask=mask, tgt_is_causal=True, cache=cache))
    assert_close(torch.cat(chunks, dim=1), full, **TOL)
    # torch's is_causal alignment (to the start of the keys) would hide the cached positions instead.
    cache = dec.new_cache()
    dec(tgt[:, :3], mem, tgt_mask=causal_mask(3), cache=cache)
    upper = dec(tgt[:, 3:], mem, tgt_mask=causal_mask(4, 7, alignment="upper_left"), cache=cache)
    assert not torch.allclose(upper, full[:, 3:], atol=1e-3)


def test_transformer_loads_torch_state_dict_strictly_with_the_same_outputs():
    torch.manual_seed(1)
    ref = torch.nn.Transformer(D, H, 2, 2, FF, 0.0, batch_first=True)
    torch.manual_seed(2)  # other initial weights: all of them must come from torch's state_dict
    ours = Transformer(D, H, 2, 2, FF, 0.0, batch_first=True)
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    src, tgt = torch.randn(2, 6, D), torch.randn(2, 4, D)
    mask = Transformer.generate_square_subsequent_mask(4)
    assert torch.equal(mask, torch.nn.Transformer.generate_square_subsequent_mask(4))
    kpm = padding_mask(torch.tensor([6, 3]), 6)
    kw = {"tgt_mask": mask, "src_key_padding_mask": kpm, "memory_key_padding_mask": kpm}
    assert_close(ours(src, tgt, **kw), ref(src, tgt, **kw), **TOL)
    with pytest.raises(ValueError, match="same batch"):
        ours(src, tgt[:1])


def test_decoder_layer_is_causal_jacobian():
    _, layer = _layers("decoder", norm_first=False)
    mem = torch.randn(1, 4, D)
    x = torch.randn(1, 5, D)
    jac = torch.autograd.functional.jacobian(lambda t: layer(t, mem, tgt_mask=causal_mask(5)), x)
    dep = jac[0, :, :, 0].abs().sum(dim=(1, 3))  # (5 outputs, 5 inputs)
    assert torch.all(dep.triu(1) == 0) and torch.all(dep.diagonal() > 0)


def test_sinusoidal_encoding_is_the_papers_formula():
    pe = SinusoidalPositionalEncoding(8, max_len=20)
    x = torch.zeros(1, 20, 8)
    table = pe(x)[0]
    # Vaswani et al. (2017), section 3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...).
    for pos in (0, 1, 7, 19):
        for i in range(4):
            angle = pos / 10000 ** (2 * i / 8)
            assert math.isclose(table[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(table[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)
    assert_close(pe(x[:, :3], offset=5)[0], table[5:8], **TOL)
    assert "pe" not in pe.state_dict()
    with pytest.raises(ValueError, match="max_len=20"):
        pe(torch.zeros(1, 21, 8))
    with pytest.raises(ValueError, match="max_len=20"):
        pe(torch.zeros(1, 3, 8), offset=18)
    with pytest.raises(ValueError, match="d_model=8"):
        pe(torch.zeros(1, 3, 6))


def test_learned_encoding_adds_its_table_and_checks_length():
    pe = LearnedPositionalEncoding(8, max_len=10)
    x = torch.randn(2, 4, 8)
    assert_close(pe(x, offset=3), x + pe.weight[3:7], **TOL)
    with pytest.raises(ValueError, match="max_len=10"):
        pe(torch.randn(2, 11, 8))


def test_bad_layer_arguments_raise():
    with pytest.raises(ValueError, match="activation"):
        TransformerEncoderLayer(D, H, activation="swish")
    with pytest.raises(ValueError, match="num_layers"):
        TransformerEncoder(TransformerEncoderLayer(D, H), 0)
