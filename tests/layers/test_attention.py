"""Attention against torch.nn.MultiheadAttention and torch.nn.functional.scaled_dot_product_attention."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from nnatlas.layers import (
    KVCache,
    MultiheadAttention,
    causal_mask,
    padding_mask,
    record_attention,
    scaled_dot_product_attention,
    scaled_dot_product_attention_with_weights,
)

TOL = {"atol": 1e-6, "rtol": 0.0}


def test_masks_follow_torch_conventions():
    # torch.nn.Transformer.generate_square_subsequent_mask: -inf above the diagonal (blocked), 0 elsewhere.
    ref = torch.nn.Transformer.generate_square_subsequent_mask(6)
    assert torch.equal(causal_mask(6), torch.isinf(ref))
    # With cached keys the new queries are the last rows of the full mask.
    assert torch.equal(causal_mask(2, 6), torch.isinf(ref)[4:])
    mask = padding_mask(torch.tensor([3, 1, 4]), 5)
    expected = torch.tensor([[0, 0, 0, 1, 1], [0, 1, 1, 1, 1], [0, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)
    with pytest.raises(ValueError, match="lengths must lie"):
        padding_mask([3, 6], 5)
    # Fewer keys than queries: aligned to the end, the first query sees no key; to the start, all see key 0.
    assert causal_mask(4, 3)[0].all() and not causal_mask(4, 3)[1:, 0].any()
    assert not causal_mask(4, 3, alignment="upper_left")[:, 0].any()
    with pytest.raises(ValueError, match="key_size"):
        causal_mask(4, 0)
    with pytest.raises(ValueError, match="alignment"):
        causal_mask(4, alignment="left")


@pytest.mark.parametrize("with_weights", [True, False])
def test_sdpa_equals_torch_functional(with_weights):
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    keep = torch.rand(2, 1, 5, 7) > 0.3  # torch's functional convention: True = takes part
    keep[..., 0] = True  # no fully masked row here
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    if with_weights:
        out, w = scaled_dot_product_attention_with_weights(q, k, v, keep)
        formula = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(8) + ~keep * -1e9, dim=-1)
        assert_close(w, formula, **TOL)
    else:
        out = scaled_dot_product_attention(q, k, v, keep)
    assert_close(out, ref, **TOL)
    # is_causal as torch: query i sees keys j <= i (aligned to the start of the keys), also with L != S.
    for S in (5, 7, 3):
        kk, vv = k[..., :S, :], v[..., :S, :]
        fn = scaled_dot_product_attention_with_weights if with_weights else scaled_dot_product_attention
        got = fn(q, kk, vv, is_causal=True)
        got = got[0] if with_weights else got
        assert_close(got, F.scaled_dot_product_attention(q, kk, vv, is_causal=True), **TOL)


def test_lower_right_alignment_equals_torch_causal_lower_right():
    from torch.nn.attention.bias import causal_lower_right

    q, k, v = torch.randn(2, 3, 2, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 4)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(2, 6))
    assert_close(
        scaled_dot_product_attention(q, k, v, is_causal=True, causal_alignment="lower_right"), ref, **TOL
    )
    assert_close(scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(2, 6)), ref, **TOL)
    # The boolean mask of causal_mask (True = blocked) is the inverse of the functional's convention.
    assert_close(
        scaled_dot_product_attention(q, k, v, ~causal_mask(2, 6, alignment="lower_right")), ref, **TOL
    )
    upper = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert_close(
        scaled_dot_product_attention(q, k, v, ~causal_mask(2, 6, alignment="upper_left")), upper, **TOL
    )
    assert (upper - ref).abs().max() > 0.1  # the two alignments are different masks


def _pair(**kwargs):
    ref = torch.nn.MultiheadAttention(16, 4, batch_first=kwargs.pop("batch_first", True), **kwargs)
    ours = MultiheadAttention(16, 4, batch_first=ref.batch_first, **kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


MASKS = ["none", "key_padding", "causal_bool", "causal_float", "per_head", "both"]


def _masks(kind, B=3, L=5, S=5, H=4):
    kpm = padding_mask(torch.tensor([S, 2, 4]), S)
    causal = causal_mask(L)
    if kind == "none":
        return {}
    if kind == "key_padding":
        return {"key_padding_mask": kpm}
    if kind == "causal_bool":
        return {"attn_mask": causal, "is_causal": True}
    if kind == "causal_float":
        return {"attn_mask": torch.zeros(L, S).masked_fill(causal, float("-inf"))}
    if kind == "per_head":
        m = torch.rand(B * H, L, S) < 0.3
        m[..., 0] = False
        return {"attn_mask": m}
    return {"attn_mask": causal, "key_padding_mask": kpm}


@pytest.mark.parametrize("mode", ["train", "eval", "eval_no_grad"])
@pytest.mark.parametrize("mask", MASKS)
def test_multihead_attention_equals_torch(mode, mask):
    ref, ours = _pair(dropout=0.0)
    x = torch.randn(3, 5, 16)
    kw = _masks(mask)
    for m in (ref, ours):
        m.train(mode == "train")
    for need_weights in (True, False):
        for average in (True, False):
            with torch.set_grad_enabled(mode != "eval_no_grad"):  # no_grad lets torch take its fused path
                a = ref(x, x, x, need_weights=need_weights, average_attn_weights=average, **kw)
                b = ours(x, x, x, need_weights=need_weights, average_attn_weights=average, **kw)
            assert_close(b[0], a[0], **TOL)
            if need_weights:
                assert_close(b[1], a[1], **TOL)
            else:
                assert b[1] is None and a[1] is None


@pytest.mark.parametrize(
    "kwargs", [{"kdim": 6, "vdim": 10}, {"bias": False}, {"batch_first": False}, {"dropout": 0.0}]
)
def test_multihead_attention_layouts_equal_torch(kwargs):
    ref, ours = _pair(**kwargs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    kdim, vdim = kwargs.get("kdim", 16), kwargs.get("vdim", 16)
    q, k, v = torch.randn(3, 5, 16), torch.randn(3, 7, kdim), torch.randn(3, 7, vdim)
    if not ref.batch_first:
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))
    kpm = padding_mask(torch.tensor([7, 3, 5]), 7)
    a_out, a_w = ref(q, k, v, key_padding_mask=kpm)
    b_out, b_w = ours(q, k, v, key_padding_mask=kpm)
    assert_close(b_out, a_out, **TOL)
    assert_close(b_w, a_w, **TOL)
    # Gradients agree as well.
    a_out.pow(2).sum().backward()
    b_out.pow(2).sum().backward()
    grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, grads[name].grad, atol=1e-5, rtol=1e-5)
    # Unbatched input (L, E), as torch accepts it.
    if ref.batch_first:
        q1, k1, v1 = q[0], k[0], v[0]
    else:
        q1, k1, v1 = q[:, 0], k[:, 0], v[:, 0]
    assert_close(ours(q1, k1, v1)[0], ref(q1, k1, v1)[0], **TOL)


def test_self_attention_is_causal_jacobian():
    _, mha = _pair()
    x = torch.randn(1, 6, 16)

    def f(inp):
        return mha(inp, inp, inp, is_causal=True, need_weights=False)[0]

    jac = torch.autograd.functional.jacobian(f, x)  # (1, 6, 16, 1, 6, 16)
    dep = jac[0, :, :, 0].abs().sum(dim=(1, 3))  # (6 outputs, 6 inputs)
    assert torch.all(dep.triu(1) == 0), "output i depends on an input after i"
    assert torch.all(dep.diagonal() > 0) and torch.all(dep[1:, 0] > 0)


@pytest.mark.parametrize("need_weights", [True, False])
def test_fully_masked_row_gives_zero_attention_and_finite_gradients(need_weights):
    _, mha = _pair()
    x = torch.randn(2, 4, 16, requires_grad=True)
    kpm = torch.tensor([[False, False, True, True], [True, True, True, True]])  # second row: no key at all
    out, w = mha(x, x, x, key_padding_mask=kpm, need_weights=need_weights)
    assert torch.isfinite(out).all()
    # Documented result: attention output 0, so the module returns the output projection's bias.
    assert_close(out[1], mha.out_proj.bias.expand(4, 16), **TOL)
    if need_weights:
        assert torch.equal(w[1], torch.zeros(4, 4)) and torch.allclose(w[0].sum(-1), torch.ones(4))
    out.pow(2).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in mha.parameters())


def test_incremental_cache_equals_full_causal_attention():
    _, mha = _pair()
    mha.eval()
    x = torch.randn(2, 7, 16)
    full = mha(x, x, x, attn_mask=causal_mask(7), need_weights=False)[0]
    cache = KVCache()
    steps = [
        mha(x[:, t : t + 1], x[:, t : t + 1], x[:, t : t + 1], need_weights=False, cache=cache)[0]
        for t in range(3)
    ]
    # A chunk of several new tokens after the cached ones, causal among themselves: the causal mask is
    # aligned to the end of the keys; torch's default alignment (to the start) would hide the cached keys.
    chunk = x[:, 3:]
    with pytest.raises(ValueError, match="lower_right"):
        mha(chunk, chunk, chunk, is_causal=True, cache=cache)
    steps.append(
        mha(
            chunk,
            chunk,
            chunk,
            is_causal=True,
            need_weights=False,
            cache=cache,
            causal_alignment="lower_right",
        )[0]
    )
    assert len(cache) == 7
    assert_close(torch.cat(steps, dim=1), full, **TOL)
    # A static cache (cross-attention) projects the memory once and reuses it.
    mem = torch.randn(2, 5, 16)
    static = KVCache(static=True)
    first = mha(x[:, :1], mem, mem, cache=static, need_weights=False)[0]
    again = mha(x[:, :1], torch.zeros_like(mem), torch.zeros_like(mem), cache=static, need_weights=False)[0]
    assert torch.equal(first, again) and len(static) == 5


def test_record_attention_returns_per_head_weights():
    _, mha = _pair()
    x = torch.randn(2, 5, 16)
    kpm = padding_mask(torch.tensor([5, 3]))
    with record_attention(mha) as maps:
        mha(x, x, x, key_padding_mask=kpm, need_weights=False)
    expected = mha(x, x, x, key_padding_mask=kpm, average_attn_weights=False)[1]
    assert set(maps) == {""} and maps[""].shape == (2, 4, 5, 5)
    assert_close(maps[""], expected, **TOL)
    assert not mha.record_weights


def test_bad_masks_and_shapes_raise_value_error():
    _, mha = _pair()
    x = torch.randn(2, 5, 16)
    with pytest.raises(ValueError, match="key_padding_mask must be"):
        mha(x, x, x, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="attn_mask must be"):
        mha(x, x, x, attn_mask=torch.zeros(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="embed_dim=16"):
        mha(torch.randn(2, 5, 8), x, x)
    with pytest.raises(ValueError, match="same S"):
        mha(x, x, x[:, :3])
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(x, x, x, torch.zeros(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_heads"):
        MultiheadAttention(16, 5)


def notes_attention(query, key, value, mask=None, dropout=None):
    """The course notes' ``attention()`` (seed/notes.md, "注意力计算规则的代码分析"), as written there."""
    d_k = query.size(-1)
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e9)  # the notes: mask == 0 is blocked
    p_attn = F.softmax(scores, dim=-1)
    if dropout is not None:
        p_attn = dropout(p_attn)
    return torch.matmul(p_attn, value), p_attn


def test_notes_attention_marks_the_positions_that_take_part():
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 5)
    blocked = padding_mask(torch.tensor([6, 2]), 6).view(2, 1, 1, 6)  # ours: True = blocked
    # The notes' mask is 1 where a key takes part: the inverse of ours, the convention of torch's functional
    # (and of our scaled_dot_product_attention).
    out_notes, w_notes = notes_attention(q, k, v, mask=~blocked)
    out, w = scaled_dot_product_attention_with_weights(q, k, v, ~blocked)
    assert_close(out, out_notes, **TOL)
    assert_close(w, w_notes, **TOL)
    # Our MultiheadAttention (True = blocked, as torch.nn.MultiheadAttention) is the notes' attention per head
    # with the inverted mask, between the input and output projections.
    _, mha = _pair()
    x = torch.randn(2, 6, 16)
    kpm = blocked.view(2, 6)
    weights, biases = mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3)  # W^Q, W^K, W^V
    q_h, k_h, v_h = (
        (x @ w.T + b).view(2, 6, 4, 4).transpose(1, 2) for w, b in zip(weights, biases, strict=True)
    )  # (B, H, T, D)
    per_head, _ = notes_attention(q_h, k_h, v_h, mask=~kpm.view(2, 1, 1, 6))
    expected = mha.out_proj(per_head.transpose(1, 2).reshape(2, 6, 16))
    assert_close(mha(x, x, x, key_padding_mask=kpm)[0], expected, **TOL)
    # Handing our mask to the notes' function unchanged attends to exactly the padded keys instead.
    _, w_swapped = notes_attention(q, k, v, mask=blocked)
    assert torch.all(w_swapped[1][..., :2] < 1e-6) and torch.allclose(
        w_swapped[1][..., 2:].sum(-1), torch.ones(3, 4)
    )
    # A query with no key: the notes' -1e9 gives uniform weights over the blocked keys; ours gives 0.
    none = torch.zeros(1, 1, 1, 6, dtype=torch.bool)
    assert_close(notes_attention(q, k, v, mask=none)[1], torch.full((2, 3, 4, 6), 1 / 6), **TOL)
    assert torch.equal(scaled_dot_product_attention_with_weights(q, k, v, none)[1], torch.zeros(2, 3, 4, 6))
