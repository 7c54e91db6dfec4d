"""Scaled dot-product attention, masks, and multi-head attention with a key/value cache.

Vaswani et al., "Attention Is All You Need" (2017), section 3.2:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

and multi-head attention splits the embedding into ``h`` heads of ``d_k = E / h`` channels, attends in
each head separately and projects the concatenation back (section 3.2.2).

**Drop-in for torch.** :func:`scaled_dot_product_attention` has the signature, return value and mask
convention of ``torch.nn.functional.scaled_dot_product_attention``; :class:`MultiheadAttention` those of
``torch.nn.MultiheadAttention`` (``batch_first=False`` by default, as in torch). Our own additions are
keyword-only and come after torch's parameters. The attention weights, which torch's function does not
return, come from :func:`scaled_dot_product_attention_with_weights` (same arguments, returns
``(out, weights)``).

**Mask conventions: the two of torch.** A floating-point mask is always *added* to the scores (``-inf``
blocks). A boolean mask means what it means in the torch API being replaced:

* :func:`scaled_dot_product_attention` / :func:`scaled_dot_product_attention_with_weights`, as
  ``torch.nn.functional.scaled_dot_product_attention``: ``True`` = the position *takes part*;
* :class:`MultiheadAttention` (``key_padding_mask``, ``attn_mask``), the Transformer layers of
  :mod:`nnatlas.layers.transformer`, :func:`causal_mask` and :func:`padding_mask`, as
  ``torch.nn.MultiheadAttention`` and ``torch.nn.Transformer``: ``True`` = the position is *blocked*.

Pass ``~causal_mask(...)`` to the functions to use a mask built here.

**Causal alignment.** With ``is_causal=True`` and ``L`` queries over ``S`` keys, query ``i`` sees keys
``j <= i`` (``"upper_left"``, torch's ``is_causal``). Cached decoding needs the queries aligned to the end
of the keys, query ``i`` seeing ``j <= i + S - L`` (``"lower_right"``, torch's
``torch.nn.attention.bias.causal_lower_right``): ask for it with the keyword-only
``causal_alignment="lower_right"``. The functions also accept torch's ``causal_upper_left(L, S)`` /
``causal_lower_right(L, S)`` objects as ``attn_mask``. :func:`causal_mask` builds either alignment as a
boolean tensor (default ``"lower_right"``; both agree when ``L == S``).

**Fully masked rows.** A query whose keys are all blocked has no distribution to attend with; the
formula gives ``0/0 = NaN``. Here such a row returns attention weights of 0 and an output of 0 (before
the output projection), and the gradients through it are 0, never NaN: what
``torch.nn.functional.scaled_dot_product_attention`` returns on CPU for such rows. The guard is computed
without a data-dependent branch (``masked_fill`` with the row test), so ``torch.compile(fullgraph=True)``,
``torch.export`` and the ONNX exporters capture it, and a module traced with ``torch.jit.trace`` keeps it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention.bias import CausalBias, CausalVariant

__all__ = [
    "KVCache",
    "MultiheadAttention",
    "causal_mask",
    "padding_mask",
    "record_attention",
    "scaled_dot_product_attention",
    "scaled_dot_product_attention_with_weights",
]

ALIGNMENTS = ("upper_left", "lower_right")


def _check_alignment(alignment: str) -> None:
    if alignment not in ALIGNMENTS:
        raise ValueError(f"causal alignment must be one of {', '.join(ALIGNMENTS)}; got {alignment!r}")


def _index(value: object) -> object:
    """An int, or a 0-d integer tensor as an int; anything else unchanged (and refused by the caller)."""
    if isinstance(value, Tensor) and value.dim() == 0 and not value.dtype.is_floating_point:
        return int(value)
    return value


def causal_mask(
    size: int,
    key_size: int | None = None,
    *,
    alignment: str = "lower_right",
    device: torch.device | str | None = None,
) -> Tensor:
    """Boolean ``(size, key_size)`` mask, ``True`` where query ``i`` may not see key ``j`` (the future).

    ``alignment="lower_right"`` (default) aligns the queries to the *end* of the keys: query ``i`` sits at
    position ``key_size - size + i`` and blocks every key ``j > key_size - size + i``; with
    ``key_size > size`` this is the mask of ``size`` new tokens appended after ``key_size - size`` cached
    ones (with ``key_size < size`` the first ``size - key_size`` queries see no key). ``alignment="upper_left"``
    blocks ``j > i``, the mask of torch's ``is_causal=True``. With ``key_size == size`` (the default) both
    are the strictly upper triangle, the decoder's "only look left" mask.

    >>> causal_mask(3)
    tensor([[False,  True,  True],
            [False, False,  True],
            [False, False, False]])
    >>> causal_mask(2, 4)  # 2 new queries after 2 cached keys
    tensor([[False, False, False,  True],
            [False, False, False, False]])
    >>> causal_mask(2, 4, alignment="upper_left")
    tensor([[False,  True,  True,  True],
            [False, False,  True,  True]])
    """
    key_size = size if key_size is None else key_size
    _check_alignment(alignment)
    size, key_size = _index(size), _index(key_size)  # a traced shape (torch.jit.trace) is a tensor
    if not isinstance(size, (int, torch.SymInt)) or size < 1:  # SymInt: a dynamic shape under torch.export
        raise ValueError(f"size must be a positive int; got {size!r}")
    if not isinstance(key_size, (int, torch.SymInt)) or key_size < 1:
        raise ValueError(f"key_size must be a positive int; got {key_size!r}")
    shift = key_size - size if alignment == "lower_right" else 0
    q = torch.arange(size, device=device).unsqueeze(1) + shift  # (L, 1)
    k = torch.arange(key_size, device=device).unsqueeze(0)  # (1, S)
    return k > q  # (L, S)


def padding_mask(lengths: Tensor | list[int], size: int | None = None) -> Tensor:
    """Boolean ``(B, size)`` key padding mask, ``True`` at the padded positions ``j >= lengths[b]``.

    ``size`` defaults to ``max(lengths)``; a length above ``size`` or below 0 raises ``ValueError``.
    ``lengths`` is ``(B,)``.

    >>> padding_mask([2, 3])
    tensor([[False, False,  True],
            [False, False, False]])
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


def _additive(mask: Tensor, dtype: torch.dtype, *, true_blocks: bool) -> Tensor:
    """A boolean or additive float mask as an additive float mask (``-inf`` where blocked)."""
    if mask.dtype == torch.bool:
        blocked = mask if true_blocks else ~mask
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(blocked, float("-inf"))
    if not mask.dtype.is_floating_point:
        raise TypeError(f"mask must be bool or floating point; got {mask.dtype}")
    return mask.to(dtype)


def _attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bias: Tensor | None,
    dropout_p: float,
    scale: float,
    need_weights: bool,
    *,
    is_causal: bool = False,
    enable_gqa: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """``softmax(q k^T * scale + bias) v`` with the fully-masked-row guard; ``bias`` is additive or None.

    ``is_causal`` (upper-left, only without ``bias``) goes to the fused kernel as torch's flag: no row is
    fully masked then. Returns ``(out (..., L, d_v), weights (..., L, S) or None)``.
    """
    blocked = None
    if bias is not None:
        # A row of -inf has no softmax: open it (finite scores) and zero its result afterwards. Computed
        # for every row, without a branch on its value, so that graph capture and tracing keep it.
        blocked = (bias == float("-inf")).all(dim=-1, keepdim=True)  # (..., L, 1)
        bias = bias.masked_fill(blocked, 0.0)
    if not need_weights:
        gqa = {"enable_gqa": True} if enable_gqa else {}  # the keyword exists from torch 2.5 on
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **gqa
        )
        return (out if blocked is None else out.masked_fill(blocked, 0.0)), None
    if enable_gqa:
        groups = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(groups, dim=-3), v.repeat_interleave(groups, dim=-3)  # (..., Hq, S, D)
    if is_causal:
        L, S = q.shape[-2], k.shape[-2]
        bias = _additive(
            causal_mask(L, S, alignment="upper_left", device=q.device), q.dtype, true_blocks=True
        )
    scores = torch.matmul(q * scale, k.transpose(-2, -1))  # (..., L, S)
    if bias is not None:
        scores = scores + bias
    weights = torch.softmax(scores, dim=-1)
    if blocked is not None:
        weights = weights.masked_fill(blocked, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return torch.matmul(weights, v), weights  # (..., L, d_v), (..., L, S)


def _sdpa_bias(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None,
    is_causal: bool,
    enable_gqa: bool,
    causal_alignment: str,
) -> tuple[Tensor | None, bool]:
    """Check the inputs of the functional form; returns ``(additive bias or None, fused causal flag)``."""
    _check_alignment(causal_alignment)
    if query.dim() < 2 or key.dim() < 2 or value.dim() < 2:
        raise ValueError(
            f"query, key and value must be (..., L, E); got {tuple(query.shape)}, {tuple(key.shape)}, "
            f"{tuple(value.shape)}"
        )
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query and key must have the same last dimension E; got {query.shape[-1]} and {key.shape[-1]}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key and value must hold the same number of keys; got {key.shape[-2]} and {value.shape[-2]}"
        )
    if enable_gqa and (
        query.dim() < 3 or key.shape[-3] != value.shape[-3] or query.shape[-3] % key.shape[-3]
    ):
        raise ValueError(
            "enable_gqa needs (..., Hq, L, E) queries and (..., Hkv, S, E) keys and values with Hq a "
            f"multiple of Hkv; got {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    L, S = query.shape[-2], key.shape[-2]
    if isinstance(attn_mask, CausalBias):  # torch's causal_upper_left(L, S) / causal_lower_right(L, S)
        if (attn_mask.seq_len_q, attn_mask.seq_len_kv) != (L, S):
            raise ValueError(
                f"the causal bias is for {attn_mask.seq_len_q} queries and {attn_mask.seq_len_kv} keys; "
                f"got {L} and {S}"
            )
        lower = attn_mask.variant == CausalVariant.LOWER_RIGHT
        attn_mask, is_causal, causal_alignment = None, True, "lower_right" if lower else "upper_left"
    if is_causal and (causal_alignment == "upper_left" or L == S) and attn_mask is None:
        return None, True
    bias = None
    if attn_mask is not None:
        lead = query.shape[:-2] if enable_gqa else torch.broadcast_shapes(query.shape[:-2], key.shape[:-2])
        scores = (*lead, L, S)
        try:
            fits = torch.broadcast_shapes(attn_mask.shape, scores) == torch.Size(scores)
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the scores {scores}"
            )
        bias = _additive(attn_mask, query.dtype, true_blocks=False)
    if is_causal:
        blocked = causal_mask(L, S, alignment=causal_alignment, device=query.device)
        causal = _additive(blocked, query.dtype, true_blocks=True)  # (L, S)
        bias = causal if bias is None else bias + causal
    return bias, False


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: float | None = None,
    enable_gqa: bool = False,
    causal_alignment: str = "upper_left",
) -> Tensor:
    """``softmax(query key^T * scale + mask) value``: ``torch.nn.functional.scaled_dot_product_attention``.

    Same arguments, result and conventions as torch's function, with the fully-masked-row guard of the
    module docstring (weights 0, output 0, no NaN on any device).

    **Arguments:**

    - ``query`` ``(..., Hq, L, E)``, ``key`` ``(..., Hkv, S, E)``, ``value`` ``(..., Hkv, S, Ev)``
      (``Hq == Hkv`` unless ``enable_gqa``; any leading dimensions that broadcast).
    - ``attn_mask``: boolean (``True`` = takes part, as torch's function) or additive float,
      broadcastable to ``(..., L, S)``; or torch's ``causal_upper_left`` / ``causal_lower_right`` object.
    - ``dropout_p``: dropout on the attention weights, applied whenever it is above 0 (pass 0 in
      evaluation, as with torch's function).
    - ``is_causal``: block the future (combined with ``attn_mask``, where torch refuses both).
    - ``scale``: the factor of the scores (default ``1 / sqrt(E)``).
    - ``enable_gqa``: grouped-query attention: each group of ``Hq / Hkv`` query heads shares one key/value
      head (Ainslie et al., "GQA", 2023).
    - ``causal_alignment`` (ours): ``"upper_left"`` (torch's ``is_causal``) or ``"lower_right"`` (queries
      aligned to the end of the keys, for cached decoding); see the module docstring.

    **Returns:** ``(..., Hq, L, Ev)``.

    >>> import torch
    >>> import torch.nn.functional as F
    >>> _ = torch.manual_seed(0)
    >>> q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 6)
    >>> out = scaled_dot_product_attention(q, k, v, is_causal=True)
    >>> out.shape
    torch.Size([2, 4, 5, 6])
    >>> torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)
    True

    A fully masked query row gives 0 instead of NaN:

    >>> blocked = torch.ones(5, 7, dtype=torch.bool)
    >>> blocked[0] = False  # query 0 sees no key
    >>> scaled_dot_product_attention(q, k, v, attn_mask=blocked)[..., 0, :].abs().max()
    tensor(0.)
    """
    bias, fused_causal = _sdpa_bias(query, key, value, attn_mask, is_causal, enable_gqa, causal_alignment)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    out, _ = _attend(
        query, key, value, bias, dropout_p, scale, False, is_causal=fused_causal, enable_gqa=enable_gqa
    )
    return out


def scaled_dot_product_attention_with_weights(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: float | None = None,
    enable_gqa: bool = False,
    causal_alignment: str = "upper_left",
) -> tuple[Tensor, Tensor]:
    """:func:`scaled_dot_product_attention` that also returns the attention weights.

    Same arguments and mask convention (boolean ``True`` = takes part). The weights are formed explicitly
    (``softmax(query key^T * scale + mask)``, after dropout), so no fused kernel is used.

    **Returns:** ``(out (..., Hq, L, Ev), weights (..., Hq, L, S))``; a fully masked row has weights 0.

    >>> import torch
    >>> q = k = v = torch.ones(1, 2, 3, 4)
    >>> out, weights = scaled_dot_product_attention_with_weights(q, k, v, is_causal=True)
    >>> out.shape, weights.shape
    (torch.Size([1, 2, 3, 4]), torch.Size([1, 2, 3, 3]))
    >>> weights[0, 0]  # equal scores: uniform over the visible keys
    tensor([[1.0000, 0.0000, 0.0000],
            [0.5000, 0.5000, 0.0000],
            [0.3333, 0.3333, 0.3333]])
    """
    bias, fused_causal = _sdpa_bias(query, key, value, attn_mask, is_causal, enable_gqa, causal_alignment)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    return _attend(
        query, key, value, bias, dropout_p, scale, True, is_causal=fused_causal, enable_gqa=enable_gqa
    )


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


def _dim(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive int or None; got {value!r}")


class MultiheadAttention(nn.Module):
    """Multi-head attention: ``torch.nn.MultiheadAttention``'s signature, parameters and numbers.

    ``MultiHead(Q, K, V) = Concat(head_1..head_h) W^O`` with ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)``
    (Vaswani et al. 2017, section 3.2.2). The three input projections are stacked in ``in_proj_weight``
    ``(3E, E)`` / ``in_proj_bias`` ``(3E,)`` (or ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight``
    when ``kdim`` / ``vdim`` differ from ``embed_dim``), ``out_proj`` is a ``Linear(E, E)``, and
    ``add_bias_kv`` adds the learned key/value ``bias_k`` / ``bias_v`` ``(1, 1, E)`` as one more key. The
    same seed gives the same initial parameters as torch, and a torch ``state_dict`` loads with
    ``strict=True`` and gives the same outputs.

    **Arguments** (torch's, in torch's order): ``embed_dim``, ``num_heads``, ``dropout`` (on the attention
    weights, in training), ``bias``, ``add_bias_kv``, ``add_zero_attn`` (append a key and value of zeros),
    ``kdim``, ``vdim``, ``batch_first`` (default ``False``: ``(L, B, E)``), ``device``, ``dtype``.

    **Forward** (torch's arguments, then ours keyword-only): query ``(L, B, E)`` (``(B, L, E)`` with
    ``batch_first``, ``(L, E)`` unbatched), key ``(S, B, kdim)``, value ``(S, B, vdim)``;
    ``key_padding_mask`` ``(B, S)`` (``(S,)`` unbatched); ``attn_mask`` ``(L, S)`` or
    ``(B * num_heads, L, S)`` (``(num_heads, L, S)`` unbatched); masks boolean (``True`` = blocked) or
    additive float. ``is_causal``: torch's hint that ``attn_mask`` is causal; the mask, when given, is
    what is applied; without one, the causal mask of ``causal_alignment`` is built (torch raises there).
    ``cache`` (a :class:`KVCache`): keys/values of earlier calls are reused, so incremental decoding feeds
    one new token per call; ``causal_alignment="lower_right"`` makes ``is_causal`` block the keys after
    each new query (``"upper_left"`` with earlier cached keys raises ``ValueError``).

    **Returns:** ``(out, weights)``: ``out`` in the layout of ``query``; ``weights`` ``(B, L, S')``
    averaged over heads, ``(B, H, L, S')`` with ``average_attn_weights=False`` (``S'`` counts the keys
    added by ``add_bias_kv`` / ``add_zero_attn``), or ``None`` with ``need_weights=False``. A query whose
    keys are all blocked attends to nothing: output ``out_proj.bias``, weights 0, no NaN.

    >>> import torch
    >>> from torch import nn
    >>> mha = MultiheadAttention(16, 4, batch_first=True)
    >>> x, memory = torch.zeros(2, 5, 16), torch.zeros(2, 7, 16)  # (B, L, E), (B, S, E)
    >>> out, weights = mha(x, memory, memory)
    >>> out.shape, weights.shape
    (torch.Size([2, 5, 16]), torch.Size([2, 5, 7]))
    >>> count = lambda m: sum(p.numel() for p in m.parameters())
    >>> count(mha), count(nn.MultiheadAttention(16, 4))  # 4 * (16 * 16 + 16)
    (1088, 1088)
    >>> mha.load_state_dict(nn.MultiheadAttention(16, 4).state_dict())
    <All keys matched successfully>
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _dim("embed_dim", embed_dim)
        _dim("kdim", kdim)
        _dim("vdim", vdim)
        if not isinstance(num_heads, int) or num_heads < 1 or embed_dim % num_heads:
            raise ValueError(
                f"num_heads must be a positive divisor of embed_dim={embed_dim}; got {num_heads!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout}")
        factory = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads, self.dropout, self.batch_first = num_heads, dropout, batch_first
        self.head_dim = embed_dim // num_heads
        # Created in torch's order, so that the same seed gives the same initial parameters.
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
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, embed_dim, **factory))
            self.bias_v = nn.Parameter(torch.empty(1, 1, embed_dim, **factory))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self.record_weights = False  # set by record_attention()
        self.last_weights: Tensor | None = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # torch.nn.MultiheadAttention's initialisation: Xavier-uniform projections, zero biases,
        # Xavier-normal bias_k / bias_v.
        if self._qkv_same_embed_dim:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            nn.init.xavier_uniform_(self.q_proj_weight)
            nn.init.xavier_uniform_(self.k_proj_weight)
            nn.init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

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
        causal_alignment: str = "upper_left",
    ) -> tuple[Tensor, Tensor | None]:
        query, key, value, key_padding_mask, unbatched = self._batch_first(
            query, key, value, key_padding_mask
        )
        B, L, E = query.shape
        past = 0 if cache is None or cache.static else len(cache)
        q, k, v, kv = self._projections(query, key, value, cache)  # (B, H, L, D), (B, H, S', D)
        bias = self._mask_bias(
            attn_mask, key_padding_mask, is_causal, causal_alignment, past, q, k.shape[2]
        )  # (B or 1, H or 1, L, S') or None
        if cache is not None:  # the arguments are valid: keep the keys and values
            cache.key, cache.value = kv
        want = need_weights or self.record_weights
        p = self.dropout if self.training else 0.0
        out, weights = _attend(q, k, v, bias, p, 1.0 / math.sqrt(self.head_dim), want)  # (B, H, L, D)
        if self.record_weights:
            self.last_weights = weights.detach()
        # Sequence-first, as torch computes it: a batch-first result is then a view with torch's strides,
        # so that a dropout after this module draws the same mask as after torch's.
        out = out.permute(2, 0, 1, 3).reshape(L, B, E)  # (B, H, L, D) -> (L, B, H * D)
        out = self.out_proj(out)  # (L, B, E)
        if not need_weights:
            weights = None
        elif average_attn_weights:
            weights = weights.mean(dim=1)  # (B, L, S')
        return self._restore_layout(out, weights, unbatched)

    # ---- the three steps of forward: layout, projections, mask bias ----------------------------------
    def _batch_first(
        self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, bool]:
        """Check the inputs and bring them to ``(B, T, C)``; unbatched inputs get ``B = 1``."""
        if query.dim() not in (2, 3):
            raise ValueError(f"query must be (L, B, E), (B, L, E) or (L, E); got shape {tuple(query.shape)}")
        if key.dim() != query.dim() or value.dim() != query.dim():
            raise ValueError(
                f"query, key and value must have the same number of dimensions; got "
                f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)  # (1, T, C)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)  # (1, S)
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))  # (T, B, C) -> (B, T, C)
        if query.shape[-1] != self.embed_dim:
            raise ValueError(f"query must have embed_dim={self.embed_dim} features; got {query.shape[-1]}")
        if key.shape[-1] != self.kdim or value.shape[-1] != self.vdim:
            raise ValueError(
                f"key / value must have kdim={self.kdim} / vdim={self.vdim} features; "
                f"got {key.shape[-1]} / {value.shape[-1]}"
            )
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(
                f"key and value must hold the batch of query ({query.shape[0]}) and the same S; got "
                f"{tuple(key.shape)} and {tuple(value.shape)} in (B, S, C) layout"
            )
        return query, key, value, key_padding_mask, unbatched

    def _project(self, x: Tensor, which: int) -> Tensor:
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight[which * E : (which + 1) * E]
        else:
            w = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)[which]
        b = None if self.in_proj_bias is None else self.in_proj_bias[which * E : (which + 1) * E]
        y = F.linear(x, w, b)  # (B, T, E)
        return y.view(y.shape[0], y.shape[1], self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def _projections(
        self, query: Tensor, key: Tensor, value: Tensor, cache: KVCache | None
    ) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Queries, keys and values per head; keys/values extended by the cache, ``bias_k``, zeros.

        Also returns the keys/values for the cache (without ``bias_k`` and zeros); the cache itself is
        not changed here.
        """
        q = self._project(query, 0)  # (B, H, L, D)
        if cache is not None and cache.static and cache.key is not None:
            k, v = cache.key, cache.value
        else:
            k, v = self._project(key, 1), self._project(value, 2)  # (B, H, S_new, D)
            if cache is not None and not cache.static and cache.key is not None:
                k = torch.cat([cache.key, k], dim=2)  # (B, H, S_old + S_new, D)
                v = torch.cat([cache.value, v], dim=2)
        kv = (k, v)
        B, H, D = q.shape[0], self.num_heads, self.head_dim
        if k.shape[0] != B:
            raise ValueError(f"the cache holds {k.shape[0]} batch rows; the query has {B}")
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.view(1, H, 1, D).expand(B, H, 1, D)], dim=2)  # (B, H, S + 1, D)
            v = torch.cat([v, self.bias_v.view(1, H, 1, D).expand(B, H, 1, D)], dim=2)
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros(B, H, 1, D)], dim=2)  # (B, H, S' + 1, D)
            v = torch.cat([v, v.new_zeros(B, H, 1, D)], dim=2)
        return q, k, v, kv

    def _mask_bias(
        self,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        is_causal: bool,
        alignment: str,
        past: int,
        q: Tensor,
        keys: int,
    ) -> Tensor | None:
        """``attn_mask`` (or the causal mask) plus ``key_padding_mask`` as one additive bias.

        The keys appended by ``add_bias_kv`` / ``add_zero_attn`` are never blocked (torch pads the masks
        with a zero column for each).
        """
        B, H, L, _ = q.shape
        extra = (self.bias_k is not None) + bool(self.add_zero_attn)
        S = keys - extra
        dtype, device = q.dtype, q.device
        bias = None
        if attn_mask is not None:
            if attn_mask.shape == (L, S):
                bias = _additive(attn_mask, dtype, true_blocks=True).view(1, 1, L, S)
            elif attn_mask.shape == (B * H, L, S):
                bias = _additive(attn_mask, dtype, true_blocks=True).view(B, H, L, S)
            else:
                raise ValueError(
                    f"attn_mask must be (L, S) = {(L, S)} or (B * num_heads, L, S) = {(B * H, L, S)}; "
                    f"got {tuple(attn_mask.shape)}"
                )
        elif is_causal:
            _check_alignment(alignment)
            if past and alignment == "upper_left":
                raise ValueError(
                    f"is_causal with {past} cached keys needs causal_alignment='lower_right' (the new "
                    "queries follow the cached ones); 'upper_left' would hide the cached keys"
                )
            blocked = causal_mask(L, S, alignment=alignment, device=device)
            bias = _additive(blocked, dtype, true_blocks=True).view(1, 1, L, S)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (B, S):
                raise ValueError(
                    f"key_padding_mask must be (B, S) = {(B, S)} (or (S,) unbatched); "
                    f"got {tuple(key_padding_mask.shape)}"
                )
            pad = _additive(key_padding_mask, dtype, true_blocks=True).view(B, 1, 1, S)
            bias = pad if bias is None else bias + pad
        if bias is not None and extra:
            bias = F.pad(bias, (0, extra))  # (..., L, S + extra)
        return bias

    def _restore_layout(
        self, out: Tensor, weights: Tensor | None, unbatched: bool
    ) -> tuple[Tensor, Tensor | None]:
        """``(L, B, E)`` to the layout of the query; weights lose the batch of unbatched inputs."""
        if unbatched:
            out = out.squeeze(1)  # (L, E)
            weights = None if weights is None else weights.squeeze(0)
        elif self.batch_first:
            out = out.transpose(0, 1)  # (B, L, E)
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
