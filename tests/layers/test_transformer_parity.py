"""Randomized parity of the Transformer layers with torch.nn, over 520 seeded configurations.

Each configuration draws the constructor arguments of one class (every option torch has: ``add_bias_kv``,
``add_zero_attn``, ``kdim`` / ``vdim``, ``bias``, ``batch_first``, ``norm_first``, activations,
``layer_norm_eps``, ``enable_nested_tensor``, ``mask_check``, ``dtype`` float32 / float64), passes the
first ``n`` of them positionally and the rest by keyword (``n`` drawn too), and builds torch's module and
ours with the *same* arguments under the same seed. Then:

- the two ``state_dict`` are equal, key for key and value for value (the same seed gives the same
  initial parameters), and ours loads torch's with ``strict=True``;
- one forward pass on drawn inputs (batched in either layout or unbatched; masks absent, 2-D or 3-D,
  boolean or float, causal with the ``is_causal`` hint; train or eval mode; with or without gradients)
  gives the same outputs and attention weights, and the same gradients of the inputs and parameters.

**Dropout.** Training with dropout > 0 is compared by seeding the generator identically before both
forward passes: the dropout masks are then identical because ours draws them in torch's order and on
tensors of torch's shapes (``F.dropout`` on the ``(B, H, L, S)`` weights, the same ``nn.Dropout`` calls in
the layers). The draws compare equal only through that, so any change of order fails the test.

**Where torch's outputs are not compared.** Torch's ``TransformerEncoder`` with ``enable_nested_tensor``
packs a padded batch into a nested tensor in eval mode without gradients and returns 0 (before ``norm``)
at the padded positions; ours computes them. There (and only there) the outputs are compared on the
non-padded positions. Fully masked query rows are avoided for the modules (torch returns NaN there in
some paths; ours returns 0, tested in test_attention.py) but drawn for the functional form, whose CPU
result torch defines as 0. ``is_causal`` hints are always correct (the mask given is the causal mask) and
are not combined with ``add_bias_kv`` / ``add_zero_attn``, where torch's fused path applies the causal
mask to the appended keys too and its other path does not.
"""

import inspect
import random
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.bias import CausalBias, causal_lower_right
from torch.testing import assert_close

from nnatlas.layers import (
    MultiheadAttention,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    causal_mask,
    scaled_dot_product_attention,
    scaled_dot_product_attention_with_weights,
)

TOL = {torch.float32: {"atol": 3e-5, "rtol": 1e-4}, torch.float64: {"atol": 1e-10, "rtol": 1e-8}}
N_MHA, N_ENC_LAYER, N_DEC_LAYER, N_ENCODER, N_DECODER, N_TRANSFORMER, N_SDPA = 150, 90, 70, 50, 40, 30, 90


# ---- signatures --------------------------------------------------------------------------------------
def _rows(params):
    return [(p.name, p.kind, p.default) for p in params]


def _assert_extends(ours, theirs_params):
    mine = list(inspect.signature(ours).parameters.values())
    assert _rows(mine[: len(theirs_params)]) == _rows(theirs_params)
    extra = mine[len(theirs_params) :]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extra), [p.name for p in extra]


PAIRS = [
    (MultiheadAttention, nn.MultiheadAttention),
    (TransformerEncoderLayer, nn.TransformerEncoderLayer),
    (TransformerDecoderLayer, nn.TransformerDecoderLayer),
    (TransformerEncoder, nn.TransformerEncoder),
    (TransformerDecoder, nn.TransformerDecoder),
    (Transformer, nn.Transformer),
]


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=[p[1].__name__ for p in PAIRS])
def test_signatures_are_torchs(ours, theirs):
    # Parameter names, kinds, order and defaults of torch's; ours only add keyword-only parameters after them.
    for method in ("__init__", "forward"):
        _assert_extends(
            getattr(ours, method), list(inspect.signature(getattr(theirs, method)).parameters.values())
        )
    if ours is Transformer:
        ref = inspect.signature(nn.Transformer.generate_square_subsequent_mask).parameters.values()
        _assert_extends(Transformer.generate_square_subsequent_mask, list(ref))
        assert isinstance(
            inspect.getattr_static(Transformer, "generate_square_subsequent_mask"), staticmethod
        )


@pytest.mark.parametrize("fn", [scaled_dot_product_attention, scaled_dot_product_attention_with_weights])
def test_sdpa_signature_is_torchs(fn):
    # torch's function is a builtin without a Python signature: read its ATen schema instead.
    kinds = {False: inspect.Parameter.POSITIONAL_OR_KEYWORD, True: inspect.Parameter.KEYWORD_ONLY}
    schema = torch.ops.aten.scaled_dot_product_attention.default._schema
    ref = [
        inspect.Parameter(
            a.name,
            kinds[a.kwarg_only],
            default=a.default_value if a.has_default_value() else inspect.Parameter.empty,
        )
        for a in schema.arguments
    ]
    _assert_extends(fn, ref)


def test_multihead_attention_positional_arguments_follow_torch():
    # The seventh positional argument is kdim, as in torch (it used to land elsewhere).
    ref, ours = (
        nn.MultiheadAttention(16, 4, 0.0, True, False, False, 8),
        MultiheadAttention(16, 4, 0.0, True, False, False, 8),
    )
    assert ours.kdim == ref.kdim == 8 and ours.k_proj_weight.shape == ref.k_proj_weight.shape == (16, 8)
    assert MultiheadAttention(8, 2).batch_first is False


# ---- drawing configurations and inputs ---------------------------------------------------------------
def _split(rng, torch_cls, names_values, min_positional):
    """First ``n`` arguments positionally, the others by keyword; a keyword equal to torch's default is
    sometimes left out."""
    defaults = {k: p.default for k, p in inspect.signature(torch_cls).parameters.items()}
    n = rng.randint(min_positional, len(names_values))
    args = tuple(v for _, v in names_values[:n])
    kwargs = {k: v for k, v in names_values[n:] if not _same(v, defaults.get(k)) or rng.random() < 0.5}
    return args, kwargs


def _same(value, default):
    return value is default or (
        type(value) is type(default) and isinstance(value, (bool, int, float, str)) and value == default
    )


def _build(seed, make):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "enable_nested_tensor is True, but ..."
        return make()


def _assert_same_init_and_load(ours, ref):
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ours.load_state_dict(ref.state_dict(), strict=True)


def _seq(rng, shape_bt, batch_first, unbatched, E, dtype):
    B, T = shape_bt
    if unbatched:
        return torch.randn(T, E, dtype=dtype)
    return torch.randn(B, T, E, dtype=dtype) if batch_first else torch.randn(T, B, E, dtype=dtype)


def _kpm(rng, B, S, unbatched, dtype, *, kinds=("none", "bool", "float")):
    """A key padding mask that keeps key 0 of every row, boolean or 0 / -inf float."""
    kind = rng.choice(kinds)
    if kind == "none":
        return None
    lengths = torch.tensor([rng.randint(1, S) for _ in range(B)])
    blocked = torch.arange(S).unsqueeze(0) >= lengths.unsqueeze(1)  # (B, S)
    if rng.random() < 0.2:  # padding not at the end (torch's nested path checks alignment)
        blocked = blocked.roll(rng.randint(0, S - 1), dims=1)
        blocked[:, 0] = False  # key 0 stays open: no fully masked row with any attention mask
    mask = blocked if kind == "bool" else torch.zeros(B, S, dtype=dtype).masked_fill(blocked, float("-inf"))
    return mask[0] if unbatched else mask


def _attn_mask(rng, L, S, heads_batch, dtype, *, allow_causal=True):
    """``(mask, is_causal)``: none, random 2-D / 3-D boolean or float (key 0 always open), or causal."""
    kind = rng.choice(["none", "bool", "float", "causal"] if allow_causal else ["none", "bool", "float"])
    if kind == "none":
        return None, False
    if kind == "causal":  # the hint is correct: the mask is torch's is_causal mask (aligned to the start)
        blocked = causal_mask(L, S, alignment="upper_left")
        mask = (
            blocked
            if rng.random() < 0.5
            else torch.zeros(L, S, dtype=dtype).masked_fill(blocked, float("-inf"))
        )
        return mask, rng.random() < 0.7
    shape = (L, S) if rng.random() < 0.5 else (heads_batch, L, S)
    if kind == "bool":
        mask = torch.rand(shape) < 0.3
        mask[..., 0] = False
        return mask, False
    mask = torch.randn(shape, dtype=dtype).masked_fill(torch.rand(shape) < 0.3, float("-inf"))
    mask[..., 0] = 0.0
    return mask, False


def _run(module, inputs, kwargs, grad, seed, cotangent=None):
    """Forward (and backward with ``cotangent``) under a fixed seed; returns outputs and gradients."""
    leaves = [t.detach().clone().requires_grad_(grad) for t in inputs]
    torch.manual_seed(seed)
    with torch.set_grad_enabled(grad), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "Support for mismatched key_padding_mask and attn_mask ..."
        out = module(*leaves, **kwargs)
    main = out[0] if isinstance(out, tuple) else out
    grads = {}
    if grad:
        main.backward(cotangent)
        grads = {f"input{i}": t.grad for i, t in enumerate(leaves)}
        grads.update({n: p.grad for n, p in module.named_parameters() if p.grad is not None})
        module.zero_grad()
    return out, grads


def _compare(ours, ref, inputs, kwargs, *, rng, dtype, select=None, mode=None):
    training = rng.random() < 0.5
    grad = training or rng.random() < 0.5  # eval without gradients: torch's fused inference paths
    if mode is not None:
        training, grad = mode == ("train", True), mode[1]
    for m in (ours, ref):
        m.train(training)
    seed = rng.randint(0, 2**31)
    # torch's inference fast path of the encoder layer returns NaN with a float mask holding values other
    # than 0 / -inf (its own composite path, with gradients, does not): the reference is that path then.
    general = any(_general_float(v) for v in kwargs.values())
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(fastpath and not general)
    try:
        out_ref, _ = _run(ref, inputs, kwargs, False, seed)
        main_ref = out_ref[0] if isinstance(out_ref, tuple) else out_ref
        cot = torch.randn_like(main_ref) if grad else None
        out_ref, g_ref = _run(ref, inputs, kwargs, grad, seed, cot)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    out, g = _run(ours, inputs, kwargs, grad, seed, cot)
    tol = TOL[dtype]
    outs, refs = (out, out_ref) if isinstance(out, tuple) else ((out,), (out_ref,))
    for a, b in zip(outs, refs, strict=True):
        if b is None:
            assert a is None
            continue
        if select is not None and not grad and not training:
            a, b = a[select], b[select]
        assert_close(a, b, **tol)
    assert set(g) == set(g_ref)
    for name in g:
        assert_close(g[name], g_ref[name], **tol, msg=lambda m, name=name: f"gradient of {name}: {m}")


def _general_float(mask):
    if not isinstance(mask, torch.Tensor) or not mask.dtype.is_floating_point:
        return False
    return bool(((mask != 0) & ~torch.isneginf(mask)).any())


def _dtype(rng):
    return rng.choice([torch.float32, torch.float64])


# ---- MultiheadAttention ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(N_MHA))
def test_multihead_attention_matches_torch(seed):
    rng = random.Random(seed)
    dtype, H = _dtype(rng), rng.choice([1, 2, 4])
    E = H * rng.choice([2, 3])
    kdim, vdim = (rng.choice([None, None, E, rng.randint(2, 7)]) for _ in range(2))
    add_bias_kv, add_zero_attn = rng.random() < 0.3, rng.random() < 0.3
    names_values = [
        ("embed_dim", E),
        ("num_heads", H),
        ("dropout", rng.choice([0.0, 0.0, 0.3])),
        ("bias", rng.random() < 0.8),
        ("add_bias_kv", add_bias_kv),
        ("add_zero_attn", add_zero_attn),
        ("kdim", kdim),
        ("vdim", vdim),
        ("batch_first", rng.random() < 0.5),
        ("device", None),
        ("dtype", dtype),
    ]
    args, kwargs = _split(rng, nn.MultiheadAttention, names_values, 2)
    ref = _build(seed, lambda: nn.MultiheadAttention(*args, **kwargs))
    ours = _build(seed, lambda: MultiheadAttention(*args, **kwargs))
    _assert_same_init_and_load(ours, ref)

    unbatched = rng.random() < 0.25
    B, L = rng.randint(1, 3), rng.randint(1, 5)
    self_attention = ref._qkv_same_embed_dim and rng.random() < 0.5
    S = L if self_attention else rng.randint(1, 5)
    q = _seq(rng, (B, L), ref.batch_first, unbatched, E, dtype)
    if self_attention:
        inputs = (q,)
    else:
        k = _seq(rng, (B, S), ref.batch_first, unbatched, ref.kdim, dtype)
        inputs = (q, k, _seq(rng, (B, S), ref.batch_first, unbatched, ref.vdim, dtype))
    mask, is_causal = _attn_mask(
        rng, L, S, (1 if unbatched else B) * H, dtype, allow_causal=not (add_bias_kv or add_zero_attn)
    )
    call = {
        "key_padding_mask": _kpm(rng, B, S, unbatched, dtype),
        "need_weights": rng.random() < 0.5,
        "attn_mask": mask,
        "average_attn_weights": rng.random() < 0.5,
        "is_causal": is_causal,
    }

    class SelfAttention(nn.Module):  # one input for query, key and value (torch's fast path needs `is`)
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, **kw):
            return self.inner(x, x, x, **kw)

    if self_attention:
        ref, ours = SelfAttention(ref), SelfAttention(ours)
    _compare(ours, ref, inputs, call, rng=rng, dtype=dtype)


# ---- encoder and decoder layers ----------------------------------------------------------------------
def _layer_args(rng, dtype, H, **fixed):
    d_model = H * rng.choice([2, 4])
    names_values = [
        ("d_model", d_model),
        ("nhead", H),
        ("dim_feedforward", rng.randint(4, 16)),
        ("dropout", rng.choice([0.0, 0.0, 0.2])),
        ("activation", rng.choice(["relu", "gelu", F.relu, F.gelu, torch.tanh])),
        ("layer_norm_eps", rng.choice([1e-5, 1e-6])),
        ("batch_first", rng.random() < 0.5),
        ("norm_first", rng.random() < 0.5),
        ("bias", rng.random() < 0.8),
        ("device", None),
        ("dtype", dtype),
    ]
    return d_model, [(k, fixed.get(k, v)) for k, v in names_values]


def _layer_pair(seed, rng, kind, *, H=None, **fixed):
    dtype, H = _dtype(rng), H or rng.choice([1, 2, 4])
    d_model, names_values = _layer_args(rng, dtype, H, **fixed)
    ref_cls, our_cls = {
        "encoder": (nn.TransformerEncoderLayer, TransformerEncoderLayer),
        "decoder": (nn.TransformerDecoderLayer, TransformerDecoderLayer),
    }[kind]
    args, kwargs = _split(rng, ref_cls, names_values, 2)
    ref = _build(seed, lambda: ref_cls(*args, **kwargs))
    ours = _build(seed, lambda: our_cls(*args, **kwargs))
    return ref, ours, dtype, d_model, H


def _encoder_inputs(rng, batch_first, d_model, H, dtype, *, float_kpm=True, nested=False):
    unbatched = not nested and rng.random() < 0.2
    B, S = rng.randint(2 if nested else 1, 3), rng.randint(2 if nested else 1, 5)
    src = _seq(rng, (B, S), batch_first, unbatched, d_model, dtype)
    mask, is_causal = (None, False) if nested else _attn_mask(rng, S, S, (1 if unbatched else B) * H, dtype)
    kinds = ("bool",) if nested else ("none", "bool", "float") if float_kpm else ("none", "bool")
    kpm = _kpm(rng, B, S, unbatched, dtype, kinds=kinds)
    return src, mask, kpm, is_causal


@pytest.mark.parametrize("seed", range(N_ENC_LAYER))
def test_encoder_layer_matches_torch(seed):
    rng = random.Random(1000 + seed)
    ref, ours, dtype, d_model, H = _layer_pair(seed, rng, "encoder")
    _assert_same_init_and_load(ours, ref)
    src, mask, kpm, is_causal = _encoder_inputs(rng, ref.self_attn.batch_first, d_model, H, dtype)
    call = {"src_mask": mask, "src_key_padding_mask": kpm, "is_causal": is_causal}
    _compare(ours, ref, (src,), call, rng=rng, dtype=dtype)


def _decoder_inputs(rng, batch_first, d_model, H, dtype):
    unbatched = rng.random() < 0.2
    B, T, S = rng.randint(1, 3), rng.randint(1, 5), rng.randint(1, 5)
    tgt = _seq(rng, (B, T), batch_first, unbatched, d_model, dtype)
    memory = _seq(rng, (B, S), batch_first, unbatched, d_model, dtype)
    heads_batch = (1 if unbatched else B) * H
    tgt_mask, tgt_is_causal = _attn_mask(rng, T, T, heads_batch, dtype)
    memory_mask, memory_is_causal = _attn_mask(rng, T, S, heads_batch, dtype)
    call = {
        "tgt_mask": tgt_mask,
        "memory_mask": memory_mask,
        "tgt_key_padding_mask": _kpm(rng, B, T, unbatched, dtype),
        "memory_key_padding_mask": _kpm(rng, B, S, unbatched, dtype),
        "tgt_is_causal": tgt_is_causal,
        "memory_is_causal": memory_is_causal,
    }
    return (tgt, memory), call


@pytest.mark.parametrize("seed", range(N_DEC_LAYER))
def test_decoder_layer_matches_torch(seed):
    rng = random.Random(2000 + seed)
    ref, ours, dtype, d_model, H = _layer_pair(seed, rng, "decoder")
    _assert_same_init_and_load(ours, ref)
    inputs, call = _decoder_inputs(rng, ref.self_attn.batch_first, d_model, H, dtype)
    _compare(ours, ref, inputs, call, rng=rng, dtype=dtype)


# ---- stacks and the whole Transformer ----------------------------------------------------------------
def _kept(kpm, batch_first, unbatched, shape):
    """Index of the non-padded positions of an output of ``shape`` (all of them without a mask)."""
    if kpm is None:
        return None
    keep = ~kpm if kpm.dtype == torch.bool else kpm == 0  # (B, S) or (S,)
    if unbatched:
        return keep  # (S,) indexes the (S, E) output
    return keep if batch_first else keep.T  # (B, S) or (S, B)


@pytest.mark.parametrize("seed", range(N_ENCODER))
def test_encoder_matches_torch(seed):
    rng = random.Random(3000 + seed)
    # Every other draw meets all conditions of torch's nested-tensor path (batch first, post-norm, relu or
    # gelu, biases, an even number of heads; a boolean padding mask and no attention mask; eval mode
    # without gradients), so that the outputs at padded positions differ and only the others compare.
    nested = seed % 2 == 0
    fixed = {"batch_first": True, "norm_first": False, "bias": True, "activation": "relu"} if nested else {}
    ref_layer, our_layer, dtype, d_model, H = _layer_pair(seed, rng, "encoder", H=rng.choice([2, 4]), **fixed)
    norm = nn.LayerNorm(d_model, dtype=dtype) if rng.random() < 0.6 else None
    names_values = [
        ("num_layers", rng.randint(1, 2)),
        ("norm", norm),
        ("enable_nested_tensor", nested or rng.random() < 0.7),
        ("mask_check", rng.random() < 0.7),
    ]
    args, kwargs = _split(rng, nn.TransformerEncoder, names_values, 1)
    ref = _build(seed, lambda: nn.TransformerEncoder(ref_layer, *args, **kwargs))
    ours = _build(seed, lambda: TransformerEncoder(our_layer, *args, **kwargs))
    _assert_same_init_and_load(ours, ref)
    batch_first = ref_layer.self_attn.batch_first
    src, mask, kpm, is_causal = _encoder_inputs(
        rng, batch_first, d_model, H, dtype, float_kpm=rng.random() < 0.3, nested=nested
    )
    call = {"mask": mask, "src_key_padding_mask": kpm, "is_causal": rng.choice([None, False, is_causal])}
    # Padded positions are compared too, except where torch packs the batch into a nested tensor.
    select = _kept(kpm, batch_first, src.dim() == 2, src.shape) if mask is None else None
    mode = ("eval", False) if nested else None
    _compare(ours, ref, (src,), call, rng=rng, dtype=dtype, select=select, mode=mode)


@pytest.mark.parametrize("seed", range(N_DECODER))
def test_decoder_matches_torch(seed):
    rng = random.Random(4000 + seed)
    ref_layer, our_layer, dtype, d_model, H = _layer_pair(seed, rng, "decoder")
    norm = nn.LayerNorm(d_model, dtype=dtype) if rng.random() < 0.6 else None
    args, kwargs = _split(rng, nn.TransformerDecoder, [("num_layers", rng.randint(1, 2)), ("norm", norm)], 1)
    ref = _build(seed, lambda: nn.TransformerDecoder(ref_layer, *args, **kwargs))
    ours = _build(seed, lambda: TransformerDecoder(our_layer, *args, **kwargs))
    _assert_same_init_and_load(ours, ref)
    inputs, call = _decoder_inputs(rng, ref_layer.self_attn.batch_first, d_model, H, dtype)
    call["tgt_is_causal"] = rng.choice([None, call["tgt_is_causal"]])
    _compare(ours, ref, inputs, call, rng=rng, dtype=dtype)


@pytest.mark.parametrize("seed", range(N_TRANSFORMER))
def test_transformer_matches_torch(seed):
    rng = random.Random(5000 + seed)
    dtype, H = _dtype(rng), rng.choice([1, 2])
    d_model, layer = _layer_args(rng, dtype, H)
    values = dict(layer)
    names_values = [
        ("d_model", d_model),
        ("nhead", H),
        ("num_encoder_layers", rng.randint(1, 2)),
        ("num_decoder_layers", rng.randint(1, 2)),
        ("dim_feedforward", values["dim_feedforward"]),
        ("dropout", values["dropout"]),
        ("activation", values["activation"]),
        ("custom_encoder", None),
        ("custom_decoder", None),
        ("layer_norm_eps", values["layer_norm_eps"]),
        ("batch_first", values["batch_first"]),
        ("norm_first", values["norm_first"]),
        ("bias", values["bias"]),
        ("device", None),
        ("dtype", dtype),
    ]
    args, kwargs = _split(rng, nn.Transformer, names_values, 0)
    ref = _build(seed, lambda: nn.Transformer(*args, **kwargs))
    ours = _build(seed, lambda: Transformer(*args, **kwargs))
    _assert_same_init_and_load(ours, ref)
    unbatched, B, S, T = rng.random() < 0.2, rng.randint(1, 3), rng.randint(1, 5), rng.randint(1, 5)
    src = _seq(rng, (B, S), ref.batch_first, unbatched, d_model, dtype)
    tgt = _seq(rng, (B, T), ref.batch_first, unbatched, d_model, dtype)
    heads_batch = (1 if unbatched else B) * H
    src_mask, src_is_causal = _attn_mask(rng, S, S, heads_batch, dtype)
    tgt_mask, tgt_is_causal = _attn_mask(rng, T, T, heads_batch, dtype)
    memory_mask, memory_is_causal = _attn_mask(rng, T, S, heads_batch, dtype)
    src_kpm = _kpm(rng, B, S, unbatched, dtype, kinds=("none", "bool"))
    call = {
        "src_mask": src_mask,
        "tgt_mask": tgt_mask,
        "memory_mask": memory_mask,
        "src_key_padding_mask": src_kpm,
        "tgt_key_padding_mask": _kpm(rng, B, T, unbatched, dtype, kinds=("none", "bool")),
        # The memory's padded positions are masked as keys, as in the usual use (torch's nested-tensor
        # path leaves other values there than ours; they never reach an output then).
        "memory_key_padding_mask": src_kpm,
        "src_is_causal": rng.choice([None, src_is_causal]),
        "tgt_is_causal": rng.choice([None, tgt_is_causal]),
        "memory_is_causal": memory_is_causal,
    }
    _compare(ours, ref, (src, tgt), call, rng=rng, dtype=dtype)


# ---- the functional form -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(N_SDPA))
def test_scaled_dot_product_attention_matches_torch(seed):
    rng = random.Random(6000 + seed)
    dtype = _dtype(rng)
    gqa = rng.random() < 0.25
    Hkv = rng.choice([1, 2])
    Hq = Hkv * rng.choice([1, 2, 3]) if gqa else Hkv
    lead = [rng.randint(1, 2)] if rng.random() < 0.7 else []
    L, S, E, Ev = rng.randint(1, 6), rng.randint(1, 6), rng.randint(2, 6), rng.randint(2, 6)
    q = torch.randn(*lead, Hq, L, E, dtype=dtype)
    k, v = torch.randn(*lead, Hkv, S, E, dtype=dtype), torch.randn(*lead, Hkv, S, Ev, dtype=dtype)
    kind = rng.choice(["none", "bool", "float", "causal", "causal_lower_right"])
    kwargs = {"dropout_p": rng.choice([0.0, 0.0, 0.3]), "scale": rng.choice([None, 0.3])}
    if gqa:
        kwargs["enable_gqa"] = True
    shape = rng.choice([(L, S), (*lead, 1, L, S), (*lead, Hq, L, S)])
    if kind == "bool":  # True = takes part; fully masked rows are drawn too
        kwargs["attn_mask"] = torch.rand(shape) < 0.6
    elif kind == "float":
        kwargs["attn_mask"] = torch.randn(shape, dtype=dtype).masked_fill(
            torch.rand(shape) < 0.4, float("-inf")
        )
    elif kind == "causal":
        kwargs["is_causal"] = True
    elif kind == "causal_lower_right":
        kwargs["attn_mask"] = causal_lower_right(L, S)
    draw = rng.randint(0, 2**31)
    ref, g_ref = _sdpa_run(F.scaled_dot_product_attention, (q, k, v), kwargs, draw)
    out, g = _sdpa_run(scaled_dot_product_attention, (q, k, v), kwargs, draw)
    tol = TOL[dtype]
    assert_close(out, ref, **tol)
    for a, b in zip(g, g_ref, strict=True):
        assert_close(a, b, **tol)
    if kwargs["dropout_p"] == 0.0:
        (out_w, weights), g_w = _sdpa_run(scaled_dot_product_attention_with_weights, (q, k, v), kwargs, draw)
        assert_close(out_w, ref, **tol)
        for a, b in zip(g_w, g_ref, strict=True):
            assert_close(a, b, **tol)
        assert_close(weights, _reference_weights(q, k, kwargs), **tol)


def _sdpa_run(fn, inputs, kwargs, draw):
    leaves = [t.clone().requires_grad_() for t in inputs]
    torch.manual_seed(draw)
    result = fn(*leaves, **kwargs)
    out = result[0] if isinstance(result, tuple) else result
    out.backward(torch.ones_like(out) + torch.arange(out.numel(), dtype=out.dtype).view(out.shape) / 7)
    return result, [t.grad for t in leaves]


def _reference_weights(q, k, kwargs):
    """torch's documented reference: softmax(q k^T * scale + bias), in float64; fully masked rows 0."""
    dtype, q, k = q.dtype, q.double(), k.double()
    if kwargs.get("enable_gqa"):
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    L, S = q.shape[-2], k.shape[-2]
    scale = kwargs["scale"] if kwargs["scale"] is not None else q.shape[-1] ** -0.5
    scores = q @ k.transpose(-2, -1) * scale
    mask = kwargs.get("attn_mask")
    if kwargs.get("is_causal"):
        mask = torch.ones(L, S, dtype=torch.bool).tril()  # aligned to the start of the keys
    elif isinstance(mask, CausalBias):
        mask = torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)  # aligned to the end of the keys
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        scores = scores + mask.double()
    return torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0).to(dtype)
