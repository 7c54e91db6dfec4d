"""The encoder-decoder Transformer of Vaswani et al., "Attention Is All You Need" (2017), for token ids.

Token embeddings scaled by ``sqrt(d_model)`` (section 3.4) plus positional encodings (section 3.5), an
encoder stack, a decoder stack with causal self-attention and cross-attention, and a linear output
projection that may share its weight with the target embedding (section 3.4). :meth:`TransformerSeq2Seq.generate`
decodes one token at a time, greedily or with beam search, until every sequence has produced the end
token, reusing the keys and values of earlier steps (:class:`~nnatlas.layers.DecoderCache`).

The model is traceable as one graph: ``torch.compile(fullgraph=True)``, ``torch.export`` and the ONNX
exporter capture :meth:`TransformerSeq2Seq.forward` (the token-id range check runs in eager mode only,
since it reads tensor values).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from nnatlas.layers import (
    DecoderCache,
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    causal_mask,
)
from nnatlas.models.registry import register_model
from nnatlas.models.seq2seq._decoding import beam, greedy, resolve_eos

__all__ = ["TransformerSeq2Seq", "transformer_seq2seq"]

POSITIONAL = ("sinusoidal", "learned")


class TransformerSeq2Seq(nn.Module):
    """Encoder-decoder Transformer over token ids.

    ``forward(src (B, S), tgt (B, T)) -> logits (B, T, tgt_vocab_size)``: the decoder reads ``tgt``
    (teacher forcing, ``BOS y_1 .. y_{T-1}``) under a causal mask and predicts the next token at every
    position. Source positions equal to ``pad_id`` are masked as keys. Padded target positions need no
    mask: the causal mask already hides them from every earlier position, and their own predictions are
    ignored by the loss.

    **Pre-norm by default.** The paper (section 3.1) and the course notes ("Add & Norm": the sum ``a + b``
    goes into the norm) place each layer norm after its residual sum, ``LayerNorm(x + Sublayer(x))``
    (post-norm); this model defaults to ``norm_first=True``, ``x + Sublayer(LayerNorm(x))``, with a final
    norm closing each stack, because pre-norm trains stably without the learning-rate warm-up that
    post-norm needs (Xiong et al., "On Layer Normalization in the Transformer Architecture", 2020).
    ``norm_first=False`` gives the paper's post-norm layers.

    Token ids outside ``[0, vocab_size)`` and sequences longer than ``max_len`` raise ``ValueError``.
    """

    def __init__(
        self,
        *,
        src_vocab_size: int,
        tgt_vocab_size: int | None = None,
        d_model: int = 128,
        nhead: int = 4,
        num_encoder_layers: int = 2,
        num_decoder_layers: int = 2,
        dim_feedforward: int = 512,
        dropout: float = 0.1,
        activation: str = "relu",
        max_len: int = 256,
        positional: str = "sinusoidal",
        norm_first: bool = True,
        tie_embeddings: bool = True,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        tgt_vocab_size = src_vocab_size if tgt_vocab_size is None else tgt_vocab_size
        for name, value in (("src_vocab_size", src_vocab_size), ("tgt_vocab_size", tgt_vocab_size)):
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an int >= 2; got {value!r}")
        for name, value in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= value < tgt_vocab_size:
                raise ValueError(f"{name} must lie in [0, tgt_vocab_size={tgt_vocab_size}); got {value}")
        if positional not in POSITIONAL:
            raise ValueError(f"positional must be one of {', '.join(POSITIONAL)}; got {positional!r}")
        norm_layer = norm_layer or nn.LayerNorm
        self.src_vocab_size, self.tgt_vocab_size, self.d_model = src_vocab_size, tgt_vocab_size, d_model
        self.max_len, self.pad_id, self.bos_id, self.eos_id = max_len, pad_id, bos_id, eos_id
        self.src_embed = nn.Embedding(src_vocab_size, d_model)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, d_model)
        pos = SinusoidalPositionalEncoding if positional == "sinusoidal" else LearnedPositionalEncoding
        self.src_pos = pos(d_model, max_len)
        self.tgt_pos = pos(d_model, max_len)
        self.dropout = nn.Dropout(dropout)
        layer_kwargs = {
            "dim_feedforward": dim_feedforward,
            "dropout": dropout,
            "activation": activation,
            "batch_first": True,
            "norm_first": norm_first,
            "norm_layer": norm_layer,
        }
        self.encoder = TransformerEncoder(
            TransformerEncoderLayer(d_model, nhead, **layer_kwargs), num_encoder_layers, norm_layer(d_model)
        )
        self.decoder = TransformerDecoder(
            TransformerDecoderLayer(d_model, nhead, **layer_kwargs), num_decoder_layers, norm_layer(d_model)
        )
        self.head = nn.Linear(d_model, tgt_vocab_size, bias=False)
        nn.init.normal_(self.src_embed.weight, std=d_model**-0.5)
        nn.init.normal_(self.tgt_embed.weight, std=d_model**-0.5)
        if tie_embeddings:
            self.head.weight = self.tgt_embed.weight

    # ---- checks -------------------------------------------------------------------------------------
    def _check_tokens(self, x: Tensor, name: str, vocab: int) -> None:
        if x.dim() != 2 or x.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"{name} must be a (B, T) tensor of int64 token ids; got {tuple(x.shape)} {x.dtype}"
            )
        if x.shape[1] > self.max_len:
            raise ValueError(
                f"{name} has {x.shape[1]} positions; the positional table holds max_len={self.max_len}"
            )
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return  # the range check reads values: eager mode only
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= vocab):
            raise ValueError(
                f"{name} token ids must lie in [0, {vocab}); got values in [{int(x.min())}, {int(x.max())}]"
            )

    # ---- the two halves -----------------------------------------------------------------------------
    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """``src (B, S)`` -> ``(memory (B, S, d_model), src_key_padding_mask (B, S))``."""
        self._check_tokens(src, "src", self.src_vocab_size)
        kpm = src == self.pad_id  # (B, S), True = padding
        x = self.dropout(self.src_pos(self.src_embed(src) * math.sqrt(self.d_model)))  # (B, S, E)
        return self.encoder(x, src_key_padding_mask=kpm), kpm

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_key_padding_mask: Tensor | None = None,
        *,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        """Logits ``(B, T, V)`` of the next token at each position of ``tgt (B, T)``.

        With ``cache``, ``tgt`` holds only the new positions, which follow the ``len(cache)`` positions
        decoded before.
        """
        self._check_tokens(tgt, "tgt", self.tgt_vocab_size)
        offset = 0 if cache is None else len(cache)
        T = tgt.shape[1]
        x = self.dropout(
            self.tgt_pos(self.tgt_embed(tgt) * math.sqrt(self.d_model), offset=offset)
        )  # (B, T, E)
        # The new positions follow the `offset` cached ones: the causal mask is aligned to the end of the keys.
        mask = causal_mask(
            T, offset + T, alignment="lower_right", device=tgt.device
        )  # (T, offset + T), True = future
        y = self.decoder(
            x,
            memory,
            tgt_mask=mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=True,
            cache=cache,
        )
        return self.head(y)  # (B, T, V)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        memory, kpm = self.encode(src)
        return self.decode(tgt, memory, kpm)

    # ---- decoding -----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        src: Tensor,
        max_len: int,
        method: str = "greedy",
        beam_size: int = 4,
        eos_id: int | None = -1,
        *,
        use_cache: bool = True,
        length_penalty: float = 1.0,
    ) -> Tensor:
        """Decode ``src (B, S)`` into at most ``max_len`` tokens per sequence: ``(B, T <= max_len)``.

        Decoding starts from ``bos_id`` (not returned) and a sequence stops at ``eos_id`` (returned),
        after which it is padded with ``pad_id``; it ends when every sequence has stopped or after
        ``max_len`` tokens. ``eos_id=-1`` (default) uses the model's ``eos_id``; ``None`` never stops
        early. ``method="beam"`` keeps the ``beam_size`` best prefixes by summed log-probability and
        returns the finished one with the best ``score / length ** length_penalty``. With ``use_cache``
        each step feeds only the newest token (keys/values of the earlier ones come from the cache);
        without, each step recomputes the whole prefix — same tokens, more work. Call ``eval()`` first
        to switch dropout off.
        """
        eos = resolve_eos(
            max_len=max_len,
            limit=self.max_len,
            limit_name="the positional table of",
            method=method,
            eos_id=eos_id,
            default_eos=self.eos_id,
            vocab_size=self.tgt_vocab_size,
            beam_size=beam_size,
        )
        memory, kpm = self.encode(src)
        B, dev = memory.shape[0], memory.device
        tokens = {"bos": self.bos_id, "pad": self.pad_id, "max_len": max_len, "eos": eos, "device": dev}
        if method == "beam":
            memory = memory.repeat_interleave(beam_size, dim=0)  # (B * K, S, E)
            kpm = kpm.repeat_interleave(beam_size, dim=0)  # (B * K, S)
        cache = self.decoder.new_cache() if use_cache else None

        def step(ys: Tensor) -> Tensor:  # logits (N, V) of the token after each prefix of ys (N, t)
            if cache is None:
                return self.decode(ys, memory, kpm)[:, -1]  # whole prefix recomputed
            return self.decode(ys[:, -1:], memory, kpm, cache=cache)[:, -1]  # newest token only

        if method == "greedy":
            return greedy(step, batch=B, **tokens)
        reorder = cache.reorder if cache is not None else (lambda rows: None)
        return beam(
            step,
            reorder,
            batch=B,
            beams=beam_size,
            vocab_size=self.tgt_vocab_size,
            length_penalty=length_penalty,
            **tokens,
        )


@register_model(task="seq2seq", input_size=(12,), vocab_size=16)
def transformer_seq2seq(
    *,
    vocab_size: int = 16,
    tgt_vocab_size: int | None = None,
    d_model: int = 128,
    nhead: int = 4,
    num_encoder_layers: int = 2,
    num_decoder_layers: int = 2,
    dim_feedforward: int = 512,
    dropout: float = 0.1,
    max_len: int = 256,
    positional: str = "sinusoidal",
    norm_first: bool = True,
    tie_embeddings: bool = True,
    **kwargs,
) -> TransformerSeq2Seq:
    """Encoder-decoder Transformer (Vaswani et al. 2017) over token ids, greedy and beam decoding.

    Pre-norm layers by default (``norm_first=True``), where the paper and the course notes use post-norm
    (``norm_first=False``): pre-norm trains without a learning-rate warm-up (Xiong et al. 2020). See
    :class:`TransformerSeq2Seq`: ``forward(src (B, S), tgt (B, T)) -> (B, T, tgt_vocab_size)``,
    ``generate(src (B, S), max_len) -> (B, T <= max_len)``.

    >>> import torch
    >>> model = transformer_seq2seq(vocab_size=12, d_model=32, dim_feedforward=64).eval()
    >>> sum(p.numel() for p in model.parameters())  # embeddings tied with the output projection
    43648
    >>> src = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]])  # BOS .. EOS, 0 = padding
    >>> tgt = torch.tensor([[1, 7, 6], [1, 9, 8]])
    >>> model(src, tgt).shape  # next-token logits at every target position
    torch.Size([2, 3, 12])
    >>> out = model.generate(src, max_len=6)
    >>> out.shape[0], out.shape[1] <= 6
    (2, True)
    """
    return TransformerSeq2Seq(
        src_vocab_size=vocab_size,
        tgt_vocab_size=tgt_vocab_size,
        d_model=d_model,
        nhead=nhead,
        num_encoder_layers=num_encoder_layers,
        num_decoder_layers=num_decoder_layers,
        dim_feedforward=dim_feedforward,
        dropout=dropout,
        max_len=max_len,
        positional=positional,
        norm_first=norm_first,
        tie_embeddings=tie_embeddings,
        **kwargs,
    )
