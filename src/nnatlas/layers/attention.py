"""Scaled dot-product attention, masks, and multi-head attention with a key/value cache.

Vaswani et al., "Attention Is All You Need" (2017), section 3.2:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

and multi-head attention splits the embedding into ``h`` heads of ``d_k = E / h`` channels, attends in
each head separately and projects the concatenation back (section 3.2.2).

**Mask convention (one for the whole package).** A boolean mask is ``True`` where attention is
*blocked* (a padded key, a future position): the convention of ``torch.nn.MultiheadAttention``'s
``key_padding_mask`` / ``attn_mask`` and of ``torch.nn.Transformer``. A floating-point mask is *added*
to the scores (``-inf`` blocks). Note that ``torch.nn.functional.scaled_dot_product_attention`` uses the
opposite boolean convention (``True`` = take part); this module converts where it calls it.

**Fully masked rows.** A query whose keys are all blocked has no distribution to attend with; the
formula gives ``0/0 = NaN``. Here such a row returns attention weights of 0 and an output of 0 (before
the output projection), and the gradients through it are 0 — never NaN. This matches what
``torch.nn.functional.scaled_dot_product_attention`` returns on CPU for such rows.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "KVCache",
    "MultiheadAttention",
    "causal_mask",
    "padding_mask",
    "record_attention",
    "scaled_dot_product_attention",
]


def causal_mask(
    size: int, key_size: int | None = None, *, device: torch.device | str | None = None
) -> Tensor:
    """Boolean ``(size, key_size)`` mask, ``True`` where query ``i`` may not see key ``j`` (the future).

    Queries are aligned to the *end* of the keys: query ``i`` sits at position ``key_size - size + i``
    and blocks every key ``j > key_size - size + i``. With ``key_size == size`` (the default) this is
    the strictly upper triangle, the decoder's "only look left" mask; with ``key_size > size`` it is the
    mask of ``size`` new tokens appended after ``key_size - size`` cached ones.
    """
    key_size = size if key_size is None else key_size
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int; got {size!r}")
    if not isinstance(key_size, int) or key_size < size:
        raise ValueError(f"key_size must be an int >= size ({size}); got {key_size!r}")
    q = torch.arange(size, device=device).unsqueeze(1) + (key_size - size)  # (L, 1)
    k = torch.arange(key_size, device=device).unsqueeze(0)  # (1, S)
    return k > q  # (L, S)


def padding_mask(lengths: Tensor | list[int], size: int | None = None) -> Tensor:
    """Boolean ``(B, size)`` key padding mask, ``True`` at the padded positions ``j >= lengths[b]``.

    ``size`` defaults to ``max(lengths)``; a length above ``size`` or below 0 raises ``ValueError``.
    """
    lengths = torch.as_tensor(lengths)
    if lengths.ndim != 1 or lengths.dtype.is_floating_point:
        raise ValueError(
            f"lengths must be a 1-D integer tensor; got shape {tuple(lengths.shape)} {lengths.dtype}"
        )
    size = int(lengths.max()) if size is None else size
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > size):
        raise ValueError(f"lengths must lie in [0, size={size}]; got {lengths.tolist()}")
    return torch.arange(size, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)  # (B, T)


def _additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """A boolean (``True`` = blocked) or additive float mask as an additive float mask."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    if not mask.dtype.is_floating_point:
        raise TypeError(f"mask must be bool or floating point; got {mask.dtype}")
    return mask.to(dtype)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    need_weights: bool = True,
    scale: float | None = None,
) -> tuple[Tensor, Tensor | None]:
    """``softmax(q k^T / sqrt(d_k) + mask) v`` and the attention weights.

    Args:
        q: queries ``(..., L, d_k)``; k: keys ``(..., S, d_k)``; v: values ``(..., S, d_v)``.
        mask: boolean (``True`` = blocked) or additive float, broadcastable to ``(..., L, S)``.
        dropout_p: dropout on the attention weights (pass 0 in evaluation, as with ``F.dropout``).
        is_causal: block the future with :func:`causal_mask` ``(L, S)`` (combined with ``mask``).
        need_weights: with ``False`` the weights are not formed and the computation goes through the
            fused ``torch.nn.functional.scaled_dot_product_attention``; the result is ``(out, None)``.
        scale: the factor of the scores (default ``1 / sqrt(d_k)``).

    Returns:
        ``(out (..., L, d_v), weights (..., L, S) or None)``. Rows whose keys are all blocked give
        weights 0 and output 0 (see the module docstring).
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dimension d_k; got {q.shape[-1]} and {k.shape[-1]}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must hold the same number of keys; got {k.shape[-2]} and {v.shape[-2]}")
    L, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    bias = None
    if mask is not None:
        try:
            torch.broadcast_shapes(mask.shape, (*q.shape[:-2], L, S))
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the scores {(*q.shape[:-2], L, S)}"
            ) from None
        bias = _additive(mask, q.dtype)
    if is_causal:
        causal = _additive(causal_mask(L, S, device=q.device), q.dtype)
        bias = causal if bias is None else bias + causal
    fully_masked = None
    if bias is not None:
        # A row of -inf has no softmax; open it (finite scores) and zero its result afterwards.
        fully_masked = torch.isneginf(bias).all(dim=-1, keepdim=True)  # (..., L, 1)
        if bool(fully_masked.any()):
            bias = bias.masked_fill(fully_masked, 0.0)
        else:
            fully_masked = None
    if not need_weights:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)
        if fully_masked is not None:
            out = out.masked_fill(fully_masked, 0.0)
        return out, None
    scores = torch.matmul(q * scale, k.transpose(-2, -1))  # (..., L, S)
    if bias is not None:
        scores = scores + bias
    weights = torch.softmax(scores, dim=-1)
    if fully_masked is not None:
        weights = weights.masked_fill(fully_masked, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return torch.matmul(weights, v), weights  # (..., L, d_v), (..., L, S)


class KVCache:
    """Projected keys and values of one attention module, kept between decoding steps.

    A *growing* cache (self-attention of a decoder) appends the keys/values of each new token; a
    *static* cache (cross-attention) computes the keys/values of the encoder memory once and reuses
    them. Tensors are ``(B, H, S, D)``. :meth:`reorder` selects batch rows (beam search).
    """

    def __init__(self, *, static: bool = False) -> None:
        self.static = static
        self.key: Tensor | None = None
        self.value: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.key is None else self.key.shape[-2]

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (in that order), e.g. the surviving beams."""
        if self.key is not None:
            self.key = self.key.index_select(0, index)
            self.value = self.value.index_select(0, index)


class MultiheadAttention(nn.Module):
    """Multi-head attention with the parameters, layout and semantics of ``torch.nn.MultiheadAttention``.

    ``MultiHead(Q, K, V) = Concat(head_1..head_h) W^O`` with ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)``
    (Vaswani et al. 2017, section 3.2.2). The three input projections are stacked in ``in_proj_weight``
    ``(3E, E)`` / ``in_proj_bias`` ``(3E,)`` (or ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight``
    when ``kdim`` / ``vdim`` differ from ``embed_dim``) and ``out_proj`` is a ``Linear(E, E)``: a
    ``state_dict`` of ``torch.nn.MultiheadAttention`` loads with ``strict=True`` and gives the same
    numbers. ``batch_first`` defaults to ``True`` here. ``add_bias_kv`` / ``add_zero_attn`` are not
    provided.

    Shapes (``batch_first=True``): query ``(B, L, E)``, key ``(B, S, kdim)``, value ``(B, S, vdim)``
    (or unbatched ``(L, E)``); ``key_padding_mask`` ``(B, S)``; ``attn_mask`` ``(L, S)`` or
    ``(B * num_heads, L, S)``; masks boolean (``True`` = blocked) or additive float. Returns
    ``(out (B, L, E), weights)``, weights ``(B, L, S)`` averaged over heads, ``(B, H, L, S)`` with
    ``average_attn_weights=False``, or ``None`` with ``need_weights=False``. A query whose keys are all
    blocked attends to nothing: output ``out_proj.bias``, weights 0, no NaN.

    With ``cache`` (a :class:`KVCache`), the keys/values of earlier calls are reused: incremental decoding
    feeds one new token per call and attends over all of them. ``is_causal=True`` with a cache blocks the
    keys after each new query (:func:`causal_mask` aligned to the end).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f"embed_dim must be a positive int; got {embed_dim!r}")
        if not isinstance(num_heads, int) or num_heads < 1 or embed_dim % num_heads:
            raise ValueError(
                f"num_heads must be a positive divisor of embed_dim={embed_dim}; got {num_heads!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout}")
        factory = {"device": device, "dtype": dtype}
        self.embed_dim, self.num_heads, self.dropout, self.batch_first = (
            embed_dim,
            num_heads,
            dropout,
            batch_first,
        )
        self.head_dim = embed_dim // num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, **factory))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = nn.Parameter(torch.empty(embed_dim, embed_dim, **factory))
            self.k_proj_weight = nn.Parameter(torch.empty(embed_dim, self.kdim, **factory))
            self.v_proj_weight = nn.Parameter(torch.empty(embed_dim, self.vdim, **factory))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.record_weights = False  # set by record_attention()
        self.last_weights: Tensor | None = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # The initialisation of torch.nn.MultiheadAttention: Xavier-uniform projections, zero biases.
        if self._qkv_same_embed_dim:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            nn.init.xavier_uniform_(self.q_proj_weight)
            nn.init.xavier_uniform_(self.k_proj_weight)
            nn.init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def _project(self, x: Tensor, which: int) -> Tensor:
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight[which * E : (which + 1) * E]
        else:
            w = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)[which]
        b = None if self.in_proj_bias is None else self.in_proj_bias[which * E : (which + 1) * E]
        y = F.linear(x, w, b)  # (B, T, E)
        return y.view(y.shape[0], y.shape[1], self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        *,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        unbatched = query.dim() == 2
        if query.dim() not in (2, 3):
            raise ValueError(f"query must be (B, L, E) or (L, E); got shape {tuple(query.shape)}")
        if key.dim() != query.dim() or value.dim() != query.dim():
            raise ValueError(
                f"query, key and value must have the same number of dimensions; got "
                f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        B, L, E = query.shape  # batch first from here on
        if E != self.embed_dim:
            raise ValueError(f"query must have embed_dim={self.embed_dim} features; got {E}")
        if key.shape[-1] != self.kdim or value.shape[-1] != self.vdim:
            raise ValueError(
                f"key / value must have kdim={self.kdim} / vdim={self.vdim} features; "
                f"got {key.shape[-1]} / {value.shape[-1]}"
            )
        if key.shape[:2] != value.shape[:2] or key.shape[0] != B:
            raise ValueError(
                f"key and value must be (B={B}, S, ...) with the same S; got {tuple(key.shape)} and {tuple(value.shape)}"
            )

        q = self._project(query, 0)  # (B, H, L, D)
        if cache is not None and cache.static and cache.key is not None:
            k, v = cache.key, cache.value
        else:
            k, v = self._project(key, 1), self._project(value, 2)  # (B, H, S_new, D)
            if cache is not None:
                if not cache.static and cache.key is not None:
                    k = torch.cat([cache.key, k], dim=2)  # (B, H, S_old + S_new, D)
                    v = torch.cat([cache.value, v], dim=2)
                cache.key, cache.value = k, v
        if k.shape[0] != B:
            raise ValueError(f"the cache holds {k.shape[0]} batch rows; the query has {B}")
        S = k.shape[2]
        H = self.num_heads

        bias = None
        if attn_mask is not None:
            if attn_mask.shape == (L, S):
                bias = _additive(attn_mask, q.dtype).view(1, 1, L, S)
            elif attn_mask.shape == (B * H, L, S):
                bias = _additive(attn_mask, q.dtype).view(B, H, L, S)
            else:
                raise ValueError(
                    f"attn_mask must be (L, S) = {(L, S)} or (B * num_heads, L, S) = {(B * H, L, S)}; "
                    f"got {tuple(attn_mask.shape)}"
                )
        elif is_causal:
            bias = _additive(causal_mask(L, S, device=q.device), q.dtype).view(1, 1, L, S)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (B, S):
                raise ValueError(
                    f"key_padding_mask must be (B, S) = {(B, S)}; got {tuple(key_padding_mask.shape)}"
                )
            pad = _additive(key_padding_mask, q.dtype).view(B, 1, 1, S)
            bias = pad if bias is None else bias + pad

        want = need_weights or self.record_weights
        p = self.dropout if self.training else 0.0
        out, weights = scaled_dot_product_attention(q, k, v, bias, p, need_weights=want)  # (B, H, L, D)
        if self.record_weights:
            self.last_weights = weights.detach()
        out = out.transpose(1, 2).reshape(B, L, E)  # (B, L, H * D)
        out = self.out_proj(out)
        if unbatched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(dim=1)  # (B, L, S)
        if unbatched:
            weights = weights.squeeze(0)
        return out, weights


@contextlib.contextmanager
def record_attention(module: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Collect the per-head attention weights of every :class:`MultiheadAttention` inside ``module``.

    Within the ``with`` block each forward call stores its weights ``(B, H, L, S)``; the yielded dict
    maps the qualified module name (``"encoder.layers.0.self_attn"``) to the weights of its *last* call,
    filled in when the block exits.
    """
    found = {name: m for name, m in module.named_modules() if isinstance(m, MultiheadAttention)}
    maps: dict[str, Tensor] = {}
    for m in found.values():
        m.record_weights, m.last_weights = True, None
    try:
        yield maps
    finally:
        for name, m in found.items():
            if m.last_weights is not None:
                maps[name] = m.last_weights
            m.record_weights, m.last_weights = False, None
