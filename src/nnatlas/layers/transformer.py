"""Transformer encoder and decoder layers, their stacks, the whole encoder-decoder, positional encodings.

Vaswani et al., "Attention Is All You Need" (2017), section 3.1: an encoder layer is self-attention then
a position-wise feed-forward network, each wrapped in "Add & Norm", ``LayerNorm(x + Sublayer(x))``
(post-norm, the paper). A decoder layer adds, between the two, cross-attention whose queries come from the
decoder and whose keys and values come from the encoder output ("memory"); its self-attention is masked
so that position ``i`` only sees positions ``<= i``. ``norm_first=True`` gives the pre-norm variant
``x + Sublayer(LayerNorm(x))`` (Xiong et al., "On Layer Normalization in the Transformer Architecture",
2020), which trains without a warm-up.

Drop-in replacements for ``torch.nn.TransformerEncoderLayer`` / ``TransformerDecoderLayer`` /
``TransformerEncoder`` / ``TransformerDecoder`` / ``Transformer``: the same signatures (positional order
and defaults, ``batch_first=False`` included; our additions keyword-only after them), the same parameter
names and ``state_dict`` keys (``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``, ``norm1..3``,
``encoder.*``, ``decoder.*``), the same initial parameters for the same seed, and the same outputs.
Masks follow ``torch.nn.Transformer`` (boolean ``True`` = blocked, or additive float; see
:mod:`nnatlas.layers.attention`). Two differences, both outside what torch computes: a fully masked query
gives the output projection's bias instead of NaN, and the encoder never packs a padded batch into a
nested tensor (torch's inference fast path returns 0 at padded positions there; ours computes them, and
they never influence the other positions).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnatlas.layers.attention import KVCache, MultiheadAttention

__all__ = [
    "DecoderCache",
    "LearnedPositionalEncoding",
    "SinusoidalPositionalEncoding",
    "Transformer",
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


def _norms(
    d_model: int,
    eps: float,
    bias: bool,
    norm_layer: Callable[[int], nn.Module] | None,
    factory: dict[str, Any],
) -> Callable[[], nn.Module]:
    """A maker of one norm: ``LayerNorm(d_model, eps, bias)`` as torch, or ``norm_layer(d_model)``."""
    if norm_layer is None:
        return partial(nn.LayerNorm, d_model, eps=eps, bias=bias, **factory)
    if factory["device"] is None and factory["dtype"] is None:
        return partial(norm_layer, d_model)
    return lambda: norm_layer(d_model).to(**factory)


class TransformerEncoderLayer(nn.Module):
    """Self-attention and a feed-forward network, each with a residual connection and layer norm.

    Post-norm (``norm_first=False``, the paper)::

        x = norm1(x + dropout1(self_attn(x, x, x)))
        x = norm2(x + dropout2(linear2(dropout(activation(linear1(x))))))

    pre-norm (``norm_first=True``): ``x = x + dropout1(self_attn(norm1(x)))``, then
    ``x = x + dropout2(ffn(norm2(x)))``.

    **Arguments** (``torch.nn.TransformerEncoderLayer``'s): ``d_model``, ``nhead``, ``dim_feedforward``,
    ``dropout``, ``activation`` (``"relu"``, ``"gelu"`` or a callable), ``layer_norm_eps``,
    ``batch_first`` (default ``False``), ``norm_first``, ``bias``, ``device``, ``dtype``; ours,
    keyword-only: ``norm_layer(d_model)`` builds each norm instead of ``LayerNorm(d_model, eps, bias)``.

    **Forward:** ``src`` ``(S, B, d_model)`` (``(B, S, d_model)`` with ``batch_first``, ``(S, d_model)``
    unbatched), ``src_mask`` ``(S, S)`` or ``(B * nhead, S, S)``, ``src_key_padding_mask`` ``(B, S)``,
    ``is_causal`` (a hint that ``src_mask`` is causal; without a mask, the causal mask is applied).
    **Returns** the same shape as ``src``.

    The parameters and ``state_dict`` of ``torch.nn.TransformerEncoderLayer``:

    >>> import torch
    >>> from torch import nn
    >>> layer = TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)
    >>> layer(torch.zeros(2, 5, 16)).shape  # (B, S, d_model)
    torch.Size([2, 5, 16])
    >>> reference = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)
    >>> count = lambda m: sum(p.numel() for p in m.parameters())
    >>> count(layer), count(reference)  # attention 1088, feed-forward 1072, two norms 64
    (2224, 2224)
    >>> layer.load_state_dict(reference.state_dict())
    <All keys matched successfully>
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = F.relu,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        norm = _norms(d_model, layer_norm_eps, bias, norm_layer, factory)
        # Built in torch's order, so that the same seed gives the same initial parameters.
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, **factory
        )
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias, **factory)
        self.norm_first = norm_first
        self.norm1 = norm()
        self.norm2 = norm()
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = _activation(activation)
        relu = self.activation is F.relu or isinstance(self.activation, nn.ReLU)
        gelu = self.activation is F.gelu or isinstance(self.activation, nn.GELU)
        self.activation_relu_or_gelu = 1 if relu else 2 if gelu else 0  # as torch records it

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

    pre-norm (``norm_first=True``) normalises each sublayer's input instead.

    **Arguments:** those of :class:`TransformerEncoderLayer` (``torch.nn.TransformerDecoderLayer``'s).

    **Forward:** ``tgt`` ``(T, B, d_model)`` (``(B, T, d_model)`` with ``batch_first``, ``(T, d_model)``
    unbatched), ``memory`` ``(S, B, d_model)``; ``tgt_mask`` ``(T, T)``, ``memory_mask`` ``(T, S)``, the
    key padding masks ``(B, T)`` / ``(B, S)``, the ``*_is_causal`` hints; ours, keyword-only:
    ``cache=(self_cache, cross_cache)`` (:class:`~nnatlas.layers.attention.KVCache`, the second static),
    with which ``tgt`` holds only the new tokens. **Returns** the shape of ``tgt``.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = F.relu,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        norm = _norms(d_model, layer_norm_eps, bias, norm_layer, factory)
        attention = partial(
            MultiheadAttention, d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, **factory
        )
        self.self_attn = attention()
        self.multihead_attn = attention()
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias, **factory)
        self.norm_first = norm_first
        self.norm1 = norm()
        self.norm2 = norm()
        self.norm3 = norm()
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

    ``torch.nn.TransformerEncoder``'s signature and ``state_dict`` keys (``layers.0.self_attn.in_proj_weight``,
    ..., ``norm.weight``). ``enable_nested_tensor`` and ``mask_check`` are accepted and kept as attributes;
    this encoder never packs a padded batch into a nested tensor (``use_nested_tensor`` is ``False``), so
    every position of the output is computed: where torch's inference fast path returns 0 (before
    ``norm``) at padded positions, ours returns the layers' output, and the non-padded positions agree.
    Forward: ``src`` ``(S, B, d_model)`` (``(B, S, d_model)`` with ``batch_first``, ``(S, d_model)``
    unbatched), ``mask`` ``(S, S)`` or ``(B * nhead, S, S)``, ``src_key_padding_mask`` ``(B, S)``,
    ``is_causal`` as in :class:`TransformerEncoderLayer`. **Returns** the same shape as ``src``.
    """

    def __init__(
        self,
        encoder_layer: nn.Module,
        num_layers: int,
        norm: nn.Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ) -> None:
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.use_nested_tensor = False
        self.mask_check = mask_check

    def forward(
        self,
        src: Tensor,
        mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool | None = None,
    ) -> Tensor:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
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

    ``torch.nn.TransformerDecoder``'s signature and ``state_dict`` keys. Forward as
    :class:`TransformerDecoderLayer`: ``tgt`` ``(T, B, d_model)`` (``(B, T, d_model)`` with
    ``batch_first``), ``memory`` ``(S, B, d_model)``, **returns** the shape of ``tgt``. Ours,
    keyword-only: ``cache`` (from :meth:`new_cache`), with which
    each call passes only the new target positions and earlier keys/values are reused. The new positions
    follow the cached ones: give them a causal ``tgt_mask`` aligned to the end of the keys,
    ``causal_mask(T, len(cache) + T, alignment="lower_right")``, when there is more than one.

    >>> import torch
    >>> layer = TransformerDecoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True)
    >>> decoder = TransformerDecoder(layer, num_layers=2).eval()
    >>> memory = torch.zeros(1, 7, 16)  # (B, S, d_model)
    >>> cache = decoder.new_cache()
    >>> for t in range(3):  # one new target position per call
    ...     out = decoder(torch.zeros(1, 1, 16), memory, cache=cache)
    >>> out.shape, len(cache)
    (torch.Size([1, 1, 16]), 3)
    """

    def __init__(self, decoder_layer: nn.Module, num_layers: int, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def new_cache(self) -> DecoderCache:
        """An empty :class:`DecoderCache` with one (self, cross) pair of caches per layer."""
        return DecoderCache(self.num_layers)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        tgt_is_causal: bool | None = None,
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
                tgt_is_causal=bool(tgt_is_causal),
                memory_is_causal=memory_is_causal,
                **({} if cache is None else {"cache": cache.layers[i]}),
            )
        return x if self.norm is None else self.norm(x)


class Transformer(nn.Module):
    """The encoder-decoder Transformer of Vaswani et al. (2017): ``torch.nn.Transformer``'s drop-in.

    An encoder of ``num_encoder_layers`` :class:`TransformerEncoderLayer` and a decoder of
    ``num_decoder_layers`` :class:`TransformerDecoderLayer`, each closed by a ``LayerNorm``; every
    parameter with more than one dimension is re-initialised Xavier-uniform, as torch does. Same
    signature, ``state_dict`` keys (``encoder.*``, ``decoder.*``) and numbers as ``torch.nn.Transformer``;
    ``custom_encoder`` / ``custom_decoder`` replace the stacks. The input embedding, positional encoding
    and output projection are not part of it (see :class:`nnatlas.models.seq2seq.transformer.TransformerSeq2Seq`).

    **Forward:** ``src`` ``(S, B, d_model)``, ``tgt`` ``(T, B, d_model)`` (batch first with
    ``batch_first``, or unbatched ``(S, d_model)`` / ``(T, d_model)``), the masks of
    :class:`TransformerEncoder` and :class:`TransformerDecoder`. **Returns** ``(T, B, d_model)``.
    """

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = F.relu,
        custom_encoder: Any | None = None,
        custom_decoder: Any | None = None,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        args = (
            d_model,
            nhead,
            dim_feedforward,
            dropout,
            activation,
            layer_norm_eps,
            batch_first,
            norm_first,
            bias,
        )
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
            self.encoder = TransformerEncoder(
                TransformerEncoderLayer(*args, **factory), num_encoder_layers, norm
            )
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
            self.decoder = TransformerDecoder(
                TransformerDecoderLayer(*args, **factory), num_decoder_layers, norm
            )
        self._reset_parameters()
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    @staticmethod
    def generate_square_subsequent_mask(
        sz: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """Float ``(sz, sz)`` causal mask: ``-inf`` above the diagonal (the future), 0 elsewhere."""
        return torch.triu(torch.full((sz, sz), float("-inf"), dtype=dtype, device=device), diagonal=1)

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        src_is_causal: bool | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> Tensor:
        batch = 0 if self.batch_first else 1
        if src.dim() == 3 and (tgt.dim() != 3 or src.shape[batch] != tgt.shape[batch]):
            raise ValueError(
                f"src and tgt must hold the same batch; got shapes {tuple(src.shape)} and {tuple(tgt.shape)}"
            )
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise ValueError(
                f"src and tgt must have d_model={self.d_model} features; got {src.shape[-1]} and {tgt.shape[-1]}"
            )
        memory = self.encoder(
            src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal
        )
        return self.decoder(
            tgt,
            memory,
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal,
            memory_is_causal=memory_is_causal,
        )


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
    ``ValueError``. Initialised from ``N(0, 0.02^2)``. ``(B, T, d_model) -> (B, T, d_model)``.
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
