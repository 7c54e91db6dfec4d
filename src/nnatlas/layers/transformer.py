"""Transformer encoder and decoder layers, their stacks, and positional encodings.

Vaswani et al., "Attention Is All You Need" (2017), section 3.1: an encoder layer is self-attention then
a position-wise feed-forward network, each wrapped in "Add & Norm", ``LayerNorm(x + Sublayer(x))``
(post-norm, the paper). A decoder layer adds, between the two, cross-attention whose queries come from the
decoder and whose keys and values come from the encoder output ("memory"); its self-attention is masked
so that position ``i`` only sees positions ``<= i``. ``norm_first=True`` gives the pre-norm variant
``x + Sublayer(LayerNorm(x))`` (Xiong et al., "On Layer Normalization in the Transformer Architecture",
2020), which trains without a warm-up.

The layers have the parameter names and numbers of ``torch.nn.TransformerEncoderLayer`` /
``torch.nn.TransformerDecoderLayer`` (``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``,
``norm1..3``): their ``state_dict`` loads with ``strict=True``. ``batch_first=True`` is the default here.
Masks follow :mod:`nnatlas.layers.attention` (boolean ``True`` = blocked, or additive float).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnatlas.layers.attention import KVCache, MultiheadAttention

__all__ = [
    "DecoderCache",
    "LearnedPositionalEncoding",
    "SinusoidalPositionalEncoding",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "gelu": F.gelu}


def _activation(activation: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if callable(activation):
        return activation
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {', '.join(_ACTIVATIONS)} or a callable; got {activation!r}"
        )
    return _ACTIVATIONS[activation]


class TransformerEncoderLayer(nn.Module):
    """Self-attention and a feed-forward network, each with a residual connection and layer norm.

    Post-norm (``norm_first=False``, the paper)::

        x = norm1(x + dropout1(self_attn(x, x, x)))
        x = norm2(x + dropout2(linear2(dropout(activation(linear1(x))))))

    pre-norm (``norm_first=True``): ``x = x + dropout1(self_attn(norm1(x)))``, then
    ``x = x + dropout2(ffn(norm2(x)))``. Input and output ``(B, T, d_model)``.
    ``norm_layer(d_model)`` builds each norm (default ``LayerNorm(d_model, eps=layer_norm_eps)``).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = True,
        norm_first: bool = False,
        bias: bool = True,
        *,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=layer_norm_eps, bias=bias)
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first
        )
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = norm_first
        self.norm1 = norm_layer(d_model)
        self.norm2 = norm_layer(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = _activation(activation)

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x: Tensor, mask: Tensor | None, kpm: Tensor | None, is_causal: bool) -> Tensor:
        x = self.self_attn(
            x, x, x, attn_mask=mask, key_padding_mask=kpm, need_weights=False, is_causal=is_causal
        )[0]
        return self.dropout1(x)

    def _ff_block(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerDecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder memory, and a feed-forward network.

    Post-norm (``norm_first=False``)::

        x = norm1(x + dropout1(self_attn(x, x, x, causal)))
        x = norm2(x + dropout2(multihead_attn(x, memory, memory)))   # queries: decoder; keys/values: encoder
        x = norm3(x + dropout3(ffn(x)))

    pre-norm (``norm_first=True``) normalises each sublayer's input instead. ``tgt`` ``(B, T, d_model)``,
    ``memory`` ``(B, S, d_model)`` -> ``(B, T, d_model)``. With ``cache=(self_cache, cross_cache)``
    (:class:`~nnatlas.layers.attention.KVCache`, the second static), ``tgt`` holds only the new tokens.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = True,
        norm_first: bool = False,
        bias: bool = True,
        *,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=layer_norm_eps, bias=bias)
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first
        )
        self.multihead_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first
        )
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = norm_first
        self.norm1 = norm_layer(d_model)
        self.norm2 = norm_layer(d_model)
        self.norm3 = norm_layer(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = _activation(activation)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
        *,
        cache: tuple[KVCache, KVCache] | None = None,
    ) -> Tensor:
        self_cache, cross_cache = cache if cache is not None else (None, None)
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal, self_cache)
            x = x + self._mha_block(
                self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal, cross_cache
            )
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal, self_cache))
            x = self.norm2(
                x
                + self._mha_block(
                    x, memory, memory_mask, memory_key_padding_mask, memory_is_causal, cross_cache
                )
            )
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(
        self, x: Tensor, mask: Tensor | None, kpm: Tensor | None, is_causal: bool, cache: KVCache | None
    ) -> Tensor:
        x = self.self_attn(
            x,
            x,
            x,
            attn_mask=mask,
            key_padding_mask=kpm,
            need_weights=False,
            is_causal=is_causal,
            cache=cache,
        )[0]
        return self.dropout1(x)

    def _mha_block(
        self,
        x: Tensor,
        mem: Tensor,
        mask: Tensor | None,
        kpm: Tensor | None,
        is_causal: bool,
        cache: KVCache | None,
    ) -> Tensor:
        x = self.multihead_attn(
            x,
            mem,
            mem,
            attn_mask=mask,
            key_padding_mask=kpm,
            need_weights=False,
            is_causal=is_causal,
            cache=cache,
        )[0]
        return self.dropout2(x)

    def _ff_block(self, x: Tensor) -> Tensor:
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))


def _clones(layer: nn.Module, n: int) -> nn.ModuleList:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"num_layers must be a positive int; got {n!r}")
    return nn.ModuleList(copy.deepcopy(layer) for _ in range(n))


class TransformerEncoder(nn.Module):
    """``num_layers`` copies of ``encoder_layer`` applied in turn, then the optional ``norm``.

    The ``state_dict`` keys (``layers.0.self_attn.in_proj_weight``, ..., ``norm.weight``) are those of
    ``torch.nn.TransformerEncoder``. ``(B, S, d_model) -> (B, S, d_model)``.
    """

    def __init__(self, encoder_layer: nn.Module, num_layers: int, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(
        self,
        src: Tensor,
        mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal)
        return x if self.norm is None else self.norm(x)


class DecoderCache:
    """The key/value caches of every layer of a :class:`TransformerDecoder` for incremental decoding.

    ``layers[i]`` is ``(self-attention cache, cross-attention cache)``; ``len(cache)`` is the number of
    target positions already decoded.
    """

    def __init__(self, num_layers: int) -> None:
        self.layers = [(KVCache(), KVCache(static=True)) for _ in range(num_layers)]

    def __len__(self) -> int:
        return len(self.layers[0][0]) if self.layers else 0

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` in every cache (beam search)."""
        for self_cache, cross_cache in self.layers:
            self_cache.reorder(index)
            cross_cache.reorder(index)


class TransformerDecoder(nn.Module):
    """``num_layers`` copies of ``decoder_layer`` applied in turn, then the optional ``norm``.

    The ``state_dict`` keys are those of ``torch.nn.TransformerDecoder``. ``tgt`` ``(B, T, d_model)``,
    ``memory`` ``(B, S, d_model)`` -> ``(B, T, d_model)``. With ``cache`` (from :meth:`new_cache`), each
    call passes only the new target positions; earlier keys/values are reused (the self-attention of the
    new positions is causal with respect to the cached ones when ``tgt_is_causal=True``).
    """

    def __init__(self, decoder_layer: nn.Module, num_layers: int, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def new_cache(self) -> DecoderCache:
        return DecoderCache(self.num_layers)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
        *,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        if cache is not None and len(cache.layers) != self.num_layers:
            raise ValueError(f"cache must hold {self.num_layers} layers; got {len(cache.layers)}")
        x = tgt
        for i, layer in enumerate(self.layers):
            x = layer(
                x,
                memory,
                tgt_mask=tgt_mask,
                memory_mask=memory_mask,
                tgt_key_padding_mask=tgt_key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                tgt_is_causal=tgt_is_causal,
                memory_is_causal=memory_is_causal,
                **({} if cache is None else {"cache": cache.layers[i]}),
            )
        return x if self.norm is None else self.norm(x)


def _check_positions(x: Tensor, offset: int, max_len: int, d_model: int) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"input must be (B, T, d_model={d_model}); got shape {tuple(x.shape)}")
    if offset < 0 or offset + x.shape[1] > max_len:
        raise ValueError(
            f"positions {offset}..{offset + x.shape[1] - 1} exceed the positional table of max_len={max_len}"
        )


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoids of Vaswani et al. (2017), section 3.5, to ``(B, T, d_model)`` inputs.

    ``PE[pos, 2i] = sin(pos / 10000^(2i / d_model))``, ``PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model))``.
    ``forward(x, offset=k)`` uses positions ``k .. k + T - 1`` (incremental decoding). The table is a
    non-persistent buffer (it is not part of the ``state_dict``); positions beyond ``max_len`` raise
    ``ValueError``.
    """

    def __init__(self, d_model: int, max_len: int = 512) -> None:
        super().__init__()
        if not isinstance(d_model, int) or d_model < 2 or d_model % 2:
            raise ValueError(f"d_model must be a positive even int; got {d_model!r}")
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be a positive int; got {max_len!r}")
        self.d_model, self.max_len = d_model, max_len
        pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # (T, 1)
        div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(pos * div)  # (T, d_model / 2)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: Tensor, *, offset: int = 0) -> Tensor:
        _check_positions(x, offset, self.max_len, self.d_model)
        return x + self.pe[offset : offset + x.shape[1]].to(x.dtype)  # (B, T, d_model)


class LearnedPositionalEncoding(nn.Module):
    """Adds a learned ``(max_len, d_model)`` table of position vectors (as in BERT / GPT) to the input.

    ``forward(x, offset=k)`` uses positions ``k .. k + T - 1``; positions beyond ``max_len`` raise
    ``ValueError``. Initialised from ``N(0, 0.02^2)``.
    """

    def __init__(self, d_model: int, max_len: int = 512) -> None:
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int; got {d_model!r}")
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be a positive int; got {max_len!r}")
        self.d_model, self.max_len = d_model, max_len
        self.weight = nn.Parameter(torch.empty(max_len, d_model))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: Tensor, *, offset: int = 0) -> Tensor:
        _check_positions(x, offset, self.max_len, self.d_model)
        return x + self.weight[offset : offset + x.shape[1]]  # (B, T, d_model)
