"""
The Transformer: attention, masking, cross-attention, multi-head attention, cached decoding
===========================================================================================

.. epigraph::

   输入一排vector，输出的每一排vector是考虑了所有的input以后所得到的结果。

   *A row of vectors goes in; each vector of the row that comes out is the result of considering all of
   the input.*

   -- notes, Encoder结构

.. epigraph::

   Decoder的输出是一个一个产生的，它只能考虑它左边的东西。

   *The decoder produces its outputs one by one; it can only look at what is to its left.*

   -- notes, Encoder和Decoder对比

.. epigraph::

   q来自于Decoder，k和v来自于Encoder，这个过程叫做Cross Attention

   *q comes from the decoder, k and v come from the encoder: this is called cross-attention.*

   -- notes, Encoder与Decoder的桥梁

Each statement of the notes' Transformer chapter is checked here in code: the attention formula (the
notes' own ``attention`` function against nnatlas's and torch's), the decoder's causal mask and what it
hides (by the gradient), cross-attention computed by hand, multi-head attention as a split of the
embedding (nnatlas's ``MultiheadAttention`` against ``torch.nn.MultiheadAttention`` with the same
weights); then a small ``transformer_seq2seq`` is trained to reverse sequences, its attention maps are
drawn, and decoding with a key/value cache is checked to give the same tokens as recomputing the whole
prefix at every step.
"""

# %%
# Setup
# -----

import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nnatlas.analysis import count_parameters
from nnatlas.data import load_dataset, tokens_to_text
from nnatlas.engine import Seq2SeqTask, TrainConfig, Trainer
from nnatlas.layers import (
    MultiheadAttention,
    causal_mask,
    record_attention,
    scaled_dot_product_attention,
    scaled_dot_product_attention_with_weights,
)
from nnatlas.models import create_model
from nnatlas.viz import plot_attention_heads

torch.set_num_threads(1)
torch.manual_seed(0)
np.random.seed(0)
t_start = time.perf_counter()

# %%
# Scaled dot-product attention
# ----------------------------
# The notes (注意力机制): :math:`\mathrm{Attention}(Q, K, V) = \mathrm{softmax}(QK^T / \sqrt{d_k})\,V`;
# "除以$\sqrt{d_k}$是进行缩放。" (Dividing by :math:`\sqrt{d_k}` is a scaling.) Their code, copied
# here with its logic unchanged, is compared with the formula written out, with
# :func:`nnatlas.layers.scaled_dot_product_attention` and with torch's
# ``F.scaled_dot_product_attention``, with and without a mask (the notes block where ``mask == 0``; torch's
# and nnatlas's functions let take part where a boolean mask is ``True``: the same mask).


def attention(query, key, value, mask=None, dropout=None):
    """The notes' attention function."""
    d_k = query.size(-1)
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e9)
    p_attn = F.softmax(scores, dim=-1)
    if dropout is not None:
        p_attn = dropout(p_attn)
    return torch.matmul(p_attn, value), p_attn


q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 6)  # (B, heads, L/S, d)
keep = torch.rand(5, 7) > 0.3
keep[:, 0] = True  # every query keeps at least one key
formula = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), dim=-1) @ v
notes_out, notes_w = attention(q, k, v)
ours, ours_w = scaled_dot_product_attention_with_weights(q, k, v)
assert torch.allclose(notes_out, formula, atol=1e-6) and torch.allclose(ours, formula, atol=1e-6)
assert torch.allclose(F.scaled_dot_product_attention(q, k, v), formula, atol=1e-6)
assert torch.allclose(ours_w, notes_w, atol=1e-6) and torch.allclose(ours_w.sum(-1), torch.ones(1))
masked_notes, _ = attention(q, k, v, mask=keep)
assert torch.allclose(scaled_dot_product_attention(q, k, v, attn_mask=keep), masked_notes, atol=1e-6)
assert torch.allclose(F.scaled_dot_product_attention(q, k, v, attn_mask=keep), masked_notes, atol=1e-6)
print("notes' attention == softmax(QK^T / sqrt(d_k)) V == nnatlas == torch, with and without a mask")

# Why the scaling: with unit-variance entries, q . k has variance d_k; dividing by sqrt(d_k) brings it back
# to 1, so the softmax does not saturate as d_k grows.
for d in (4, 64, 1024):
    a, b = torch.randn(10000, d), torch.randn(10000, d)
    dots = (a * b).sum(1)
    print(
        f"d_k = {d:>4}: variance of q.k {dots.var():8.1f}, of q.k / sqrt(d_k) {(dots / math.sqrt(d)).var():.2f}"
    )

# %%
# The causal mask: only what is to the left
# -----------------------------------------
# "当我们要产生$b^2$的时候，我们只拿第二个位置的query，去跟第一个位置的key和第二个位置的key去计算attention，第三个位置和第四个位置不管它。"
# (To produce b^2 we take only the query of position 2 and compute its
# attention with the keys of positions 1 and 2; positions 3 and 4 are ignored.)
# :func:`nnatlas.layers.causal_mask` marks with ``True`` the keys a query may not see.

mask = causal_mask(4)
print("causal_mask(4), True = blocked:\n", mask.int())
assert torch.equal(mask, torch.triu(torch.ones(4, 4, dtype=torch.bool), diagonal=1))

# %%
# What the mask hides, measured by the gradient: the size of :math:`\partial b^i / \partial a^j` for a
# self-attention layer over four vectors, with the mask (the decoder) and without it (the encoder: every
# output considers every input).

E = 8
self_attn = MultiheadAttention(E, 2, batch_first=True).eval()
a = torch.randn(1, 4, E)


def dependence(attn_mask):
    """(4, 4): the norm of d b^i / d a^j."""
    jac = torch.autograd.functional.jacobian(
        lambda x: self_attn(x, x, x, attn_mask=attn_mask, need_weights=False)[0], a
    )
    return jac[0, :, :, 0].pow(2).sum(dim=(1, 3)).sqrt()  # (b position, a position)


with_mask, without_mask = dependence(mask), dependence(None)
assert torch.all(with_mask[mask] == 0) and torch.all(with_mask[~mask] > 0)
assert torch.all(with_mask[1, 2:] == 0) and torch.all(with_mask[1, :2] > 0)  # b^2 depends on a^1, a^2 only
assert torch.all(without_mask > 0)
print("|d b^2 / d a^j|, j = 1..4, masked:  ", [f"{float(g):.3f}" for g in with_mask[1]])
print("|d b^2 / d a^j|, j = 1..4, unmasked:", [f"{float(g):.3f}" for g in without_mask[1]])

labels_b, labels_a = [f"b{i}" for i in range(1, 5)], [f"a{j}" for j in range(1, 5)]
fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
axes[0].imshow(mask, cmap="Greys")
axes[0].set_title("causal_mask(4): black = blocked")
for ax, g, title in (
    (axes[1], with_mask, "masked self-attention"),
    (axes[2], without_mask, "self-attention, no mask"),
):
    im = ax.imshow(g, cmap="viridis")
    ax.set_title(f"|d b_i / d a_j|, {title}", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
for ax in axes:
    ax.set_xticks(range(4), labels_a)
    ax.set_yticks(range(4), labels_b)
    ax.set_xlabel("input (key position)")
    ax.set_ylabel("output (query position)")
fig.tight_layout()

# %%
# Cross-attention: q from the decoder, k and v from the encoder
# -------------------------------------------------------------
# One decoder vector attends over the encoder's outputs a^1..a^4. Computed by hand with the projection
# matrices of an nnatlas ``MultiheadAttention`` (one head, as the notes draw it) and the notes'
# ``attention``, then by the module itself: ``query`` is the decoder's, ``key`` and ``value`` the encoder's.

cross = MultiheadAttention(E, 1, batch_first=True).eval()
encoder_out = torch.randn(1, 4, E)  # a^1 .. a^4
decoder_vec = torch.randn(1, 1, E)  # the masked self-attention's output in the decoder
W_q, W_k, W_v = cross.in_proj_weight.detach().split(E)
b_q, b_k, b_v = cross.in_proj_bias.detach().split(E)
q1 = decoder_vec @ W_q.T + b_q  # q from the decoder
k4, v4 = encoder_out @ W_k.T + b_k, encoder_out @ W_v.T + b_v  # k^1..k^4 and v^1..v^4 from the encoder
with torch.no_grad():
    by_hand, alpha = attention(q1, k4, v4)
    by_hand = cross.out_proj(by_hand)
    out, weights = cross(decoder_vec, encoder_out, encoder_out)
assert torch.allclose(out, by_hand, atol=1e-6) and torch.allclose(weights, alpha, atol=1e-6)
print("attention of the decoder's query over a^1..a^4:", [f"{float(w):.3f}" for w in alpha[0, 0]], "(sum 1)")
print("output shape:", tuple(out.shape), "-- one vector per decoder position, a mix of the encoder's values")

# %%
# Multi-head attention splits the embedding
# -----------------------------------------
# "将词嵌入向量进行切分得到了多头，将每个头的获得的输入送到注意力机制中，形成了多头注意力机制。" (Splitting the
# embedding vector gives the heads; each head's part goes through attention: that is multi-head
# attention.) One set of square projections, the projected vectors cut into ``h`` pieces of ``E / h``,
# attention per piece, the pieces concatenated and projected once more; and nnatlas's module equals
# ``torch.nn.MultiheadAttention`` loaded with the same weights.

E, H = 16, 4
ours_mha = MultiheadAttention(E, H, batch_first=True).eval()
torch_mha = nn.MultiheadAttention(E, H, batch_first=True).eval()
torch_mha.load_state_dict(ours_mha.state_dict())
x = torch.randn(2, 6, E)
with torch.no_grad():
    out_ours, w_ours = ours_mha(x, x, x, average_attn_weights=False)
    out_torch, w_torch = torch_mha(x, x, x, average_attn_weights=False)
    assert torch.allclose(out_ours, out_torch, atol=1e-6) and torch.allclose(w_ours, w_torch, atol=1e-6)

    proj = F.linear(x, ours_mha.in_proj_weight, ours_mha.in_proj_bias)  # (B, T, 3E): three square projections
    qh, kh, vh = (t.view(2, 6, H, E // H).transpose(1, 2) for t in proj.split(E, dim=-1))  # (B, H, T, E/H)
    heads, head_w = attention(qh, kh, vh)  # attention inside each piece
    by_hand = ours_mha.out_proj(heads.transpose(1, 2).reshape(2, 6, E))  # concatenate, project
    assert torch.allclose(by_hand, out_ours, atol=1e-6) and torch.allclose(head_w, w_ours, atol=1e-6)
print(
    f"E = {E}, {H} heads of {E // H}: split by hand == nnatlas MultiheadAttention == torch.nn.MultiheadAttention"
)
print(
    f"parameters: nnatlas {count_parameters(ours_mha):,}, torch {count_parameters(torch_mha):,} "
    f"(= 4 E^2 + 4 E = {4 * E * E + 4 * E:,}, whatever the number of heads)"
)
assert count_parameters(ours_mha) == count_parameters(torch_mha) == 4 * E * E + 4 * E

# %%
# A small Transformer that reverses sequences
# -------------------------------------------
# The registered ``transformer_seq2seq`` (two encoder and two decoder layers, width 64, four heads) on the
# embedded ``reverse`` task: symbol sequences of length 1 to 8 to be written backwards, held-out sources
# never seen in training. The engine's ``Seq2SeqTask`` trains it with teacher forcing and scores the exact
# match of free (greedy) decoding.

seq = load_dataset("reverse", task="seq2seq", num_train=3000, num_val=200, max_len=8)
torch.manual_seed(0)
model = create_model(
    "transformer_seq2seq", vocab_size=seq.vocab_size, d_model=64, nhead=4, dim_feedforward=128, dropout=0.0
)
print(f"transformer_seq2seq: {count_parameters(model):,} parameters; vocabulary {seq.vocab_size}")
config = TrainConfig(
    epochs=5,
    batch_size=64,
    lr=6e-3,
    scheduler="onecycle",
    clip_grad_norm=1.0,
    weight_decay=0.0,
    seed=0,
    device="cpu",
)
history = Trainer(model, Seq2SeqTask(), seq.train, seq.val, config, collate_fn=seq.collate_fn).fit()
for r in history:
    print(
        f"epoch {r['epoch']}: train loss {r['train_loss']:.3f}, held-out loss {r['val_loss']:.3f}, exact match {r['val_exact_acc']:.3f}"
    )
assert history[-1]["val_exact_acc"] > 0.1  # sanity: far above luck

model.eval()
src, tgt = seq.collate_fn([seq.val[i] for i in range(4)])
out = model.generate(src, max_len=seq.max_tgt_len)


def text(ids):
    return " ".join(t for t in tokens_to_text(ids, task="reverse") if t != "<pad>")


for s, o in zip(src, out, strict=True):
    print(f"  {text(s):<28} -> {text(o)}")

# %%
# Attention maps
# --------------
# :func:`nnatlas.layers.record_attention` collects every attention module's weights during one forward
# pass. The decoder's self-attention is lower-triangular (the mask); its cross-attention over the source
# should run along the anti-diagonal, since output position ``i`` copies source position ``n + 1 - i``.
# :func:`nnatlas.viz.plot_attention_heads` draws one heat map per head.

example_src, example_tgt = seq.collate_fn([seq.val[0]])
with torch.no_grad(), record_attention(model) as maps:
    model(example_src, example_tgt[:, :-1])
print("recorded:", {name: tuple(w.shape) for name, w in maps.items()})
self_w = maps["decoder.layers.1.self_attn"][0]  # (H, T, T)
assert torch.all(self_w[:, causal_mask(self_w.shape[-1])] == 0)  # nothing to the right of the diagonal
cross_w = maps["decoder.layers.1.multihead_attn"][0]  # (H, T, S)
src_labels = tokens_to_text(example_src[0], task="reverse")
tgt_labels = tokens_to_text(example_tgt[0, :-1], task="reverse")
n = len(src_labels) - 1  # the symbols, without the end token
anti = torch.stack([cross_w[:, i, n - 1 - i] for i in range(n)], dim=1).mean()
print(
    f"mean cross-attention weight on the mirrored source position, averaged over heads: {anti:.3f} "
    f"(uniform attention would give {1 / len(src_labels):.3f})"
)

plot_attention_heads(
    cross_w,
    query_labels=tgt_labels,
    key_labels=src_labels,
    title="trained model, decoder layer 2, cross-attention (rows: decoder input, columns: source)",
)

# %%
# Decoding with a key/value cache
# -------------------------------
# The decoder produces one token at a time. Recomputing the whole prefix at every step does the same work
# again and again; with a cache (``generate(use_cache=True)``, the default) each step feeds only the newest
# token and reuses the keys and values of the earlier ones. The tokens must be identical: checked on the
# held-out sources, and on 48 forced steps (no stop at the end token) where the cost of recomputation grows
# with the prefix.

val_src, _ = seq.collate_fn([seq.val[i] for i in range(len(seq.val))])
cached = model.generate(val_src, max_len=seq.max_tgt_len, use_cache=True)
recomputed = model.generate(val_src, max_len=seq.max_tgt_len, use_cache=False)
assert torch.equal(cached, recomputed)
timing = {}
for use_cache in (True, False):
    t0 = time.perf_counter()
    tokens = model.generate(val_src[:32], max_len=48, eos_id=None, use_cache=use_cache)
    timing[use_cache] = (time.perf_counter() - t0, tokens)
assert torch.equal(timing[True][1], timing[False][1])
print(f"{len(val_src)} held-out sources: cached == recomputed tokens")
print(
    f"48 forced steps for 32 sources: cache {timing[True][0] * 1000:.0f} ms, recompute {timing[False][0] * 1000:.0f} ms "
    f"({timing[False][0] / timing[True][0]:.1f}x), same tokens"
)

print(f"page computed in {time.perf_counter() - t_start:.1f} s")
