"""An LSTM encoder-decoder with Luong attention (Luong, Pham and Manning, "Effective Approaches to
Attention-based Neural Machine Translation", 2015), for token ids.

The recurrent sequence-to-sequence model that the Transformer replaced (Sutskever et al. 2014, with the
attention of Bahdanau et al. 2015 in Luong's global form): a (bidirectional) LSTM reads the source, an
LSTM decoder started from the encoder's final states reads the target, and at every target step a global
attention over the source states gives the context ``c_t``:

.. math::

    a_t(s) = \\operatorname{softmax}_s \\operatorname{score}(h_t, \\bar h_s), \\qquad
    c_t = \\sum_s a_t(s) \\bar h_s, \\qquad
    \\tilde h_t = \\tanh(W_c [c_t; h_t]), \\qquad
    p(y_t \\mid y_{<t}, x) = \\operatorname{softmax}(W_s \\tilde h_t)

with ``score = h_t^T W_a h_s`` ("general", the default) or ``h_t^T h_s`` ("dot"). With
``input_feeding=True`` the decoder's input at step ``t`` is ``[embed(y_{t-1}); h~_{t-1}]`` (Luong, section
3.3), which makes teacher-forced training step by step; without it (the default) the decoder LSTM reads the
whole target in one call and attention runs over all target positions at once.

The interface is the one of :class:`~nnatlas.models.seq2seq.transformer.TransformerSeq2Seq`: ``forward(src, tgt)``
with teacher forcing, ``generate(src, max_len, method="greedy" | "beam")``, ``pad_id`` / ``bos_id`` /
``eos_id`` 0 / 1 / 2, and :meth:`LSTMSeq2Seq.record_attention` for the attention maps.

Padding without packing: each direction of each encoder layer is a :class:`torch.nn.LSTM`; the backward
one reads every row reversed *within its length* (a per-row gather), so the padding stays at the end of
every row for both directions and no state of a real token ever depends on it. This gives what
``pack_padded_sequence`` gives, but stays one traceable graph (``torch.export`` cannot trace packing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor, nn

from nnatlas.models.registry import register_model
from nnatlas.models.seq2seq._decoding import beam, greedy, resolve_eos

__all__ = ["LSTMSeq2Seq", "LuongAttention", "DecoderState", "Encoded", "lstm_seq2seq"]

SCORES = ("general", "dot")


class LuongAttention(nn.Module):
    """Global attention of Luong et al. (2015), section 3.1, and the attentional hidden state (eq. 5).

    ``forward(query (B, T, H), keys (B, S, H), memory (B, S, H), pad (B, S))`` returns ``(h~ (B, T, H),
    weights (B, T, S))`` where ``keys = self.keys(memory)`` (``W_a h_s`` for "general", the memory itself
    for "dot"; computed once per source) and ``pad`` is True at padded source positions, which get zero
    weight.
    """

    def __init__(self, hidden_size: int, score: str = "general") -> None:
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"attention must be one of {', '.join(SCORES)}; got {score!r}")
        self.score = score
        self.proj = nn.Linear(hidden_size, hidden_size, bias=False) if score == "general" else None  # W_a
        self.combine = nn.Linear(2 * hidden_size, hidden_size, bias=False)  # W_c

    def keys(self, memory: Tensor) -> Tensor:
        """The attention keys of ``memory (B, S, H)``: ``W_a h_s`` for "general", ``memory`` itself for
        "dot"; ``(B, S, H)``."""
        return memory if self.proj is None else self.proj(memory)  # (B, S, H)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, pad: Tensor) -> tuple[Tensor, Tensor]:
        scores = query @ keys.transpose(1, 2)  # (B, T, S)
        # The lowest finite value rather than -inf: exp() gives exactly 0, and a row of padding only no NaN.
        scores = scores.masked_fill(pad.unsqueeze(1), torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)  # (B, T, S)
        context = weights @ memory  # (B, T, H)
        return torch.tanh(self.combine(torch.cat([context, query], dim=-1))), weights


class _EncoderLayer(nn.Module):
    """One encoder layer: a forward :class:`torch.nn.LSTM` and, if bidirectional, a backward one that
    reads each row reversed within its length. ``forward(x (B, S, I), flip (B, S), last (B,))`` returns
    the outputs ``(B, S, H)`` (the two directions concatenated) and the final states ``(B, H)`` (forward
    at the last real token, backward at the first)."""

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool) -> None:
        super().__init__()
        per_direction = hidden_size // 2 if bidirectional else hidden_size
        self.fwd = nn.LSTM(input_size, per_direction, batch_first=True)
        self.bwd = nn.LSTM(input_size, per_direction, batch_first=True) if bidirectional else None

    def forward(self, x: Tensor, flip: Tensor, last: Tensor) -> tuple[Tensor, Tensor]:
        rows = torch.arange(x.shape[0], device=x.device)
        out = self.fwd(x)[0]  # (B, S, H / 2)
        final = out[rows, last]  # (B, H / 2)
        if self.bwd is None:
            return out, final
        rev = self.bwd(_gather(x, flip))[0]  # (B, S, H / 2), row b read from its last real token
        out = torch.cat([out, _gather(rev, flip)], dim=-1)  # (B, S, H), back in source order
        return out, torch.cat([final, rev[rows, last]], dim=-1)


def _gather(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, s]]`` for ``x (B, S, C)`` and ``index (B, S)``."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class DecoderState(NamedTuple):
    """The decoder's recurrent state: ``h`` and ``c`` ``(num_layers, B, H)`` and, with input feeding, the
    last attentional state ``feed (B, H)`` (else an empty ``(B, 0)`` tensor)."""

    h: Tensor
    c: Tensor
    feed: Tensor

    def select(self, rows: Tensor) -> DecoderState:
        """The states of the batch rows ``rows`` (beam search reorders and repeats rows)."""
        return DecoderState(self.h[:, rows], self.c[:, rows], self.feed[rows])


class Encoded(NamedTuple):
    """The source, encoded: ``memory (B, S, H)``, attention ``keys (B, S, H)``, ``pad (B, S)`` (True =
    padding) and the decoder's initial ``state``."""

    memory: Tensor
    keys: Tensor
    pad: Tensor
    state: DecoderState


class LSTMSeq2Seq(nn.Module):
    """LSTM encoder-decoder with Luong attention over token ids.

    ``forward(src (B, S), tgt (B, T)) -> logits (B, T, tgt_vocab_size)``: the decoder reads ``tgt``
    (teacher forcing, ``BOS y_1 .. y_{T-1}``) and predicts the next token at every position. Source
    positions equal to ``pad_id`` get no attention and change no encoder state; they must be trailing,
    as :func:`nnatlas.data.pad_collate` makes them.

    **Arguments**

    - ``hidden_size``: the width of everything (embeddings, encoder outputs, decoder); each direction of
      a bidirectional encoder has ``hidden_size / 2`` units, so that its concatenated outputs have the
      decoder's width (needed by the "dot" score).
    - ``num_layers``: encoder layers and decoder layers, each.
    - ``bidirectional``: the encoder reads both ways. The decoder's initial ``(h, c)`` of layer ``l`` is
      a learnt *bridge* of the encoder layer ``l``'s final states ``s = [h_fwd; h_bwd]``:
      ``h_0 = tanh(W_h s)``, ``c_0 = W_c s``.
    - ``attention``: ``"general"`` (default) or ``"dot"``; ``input_feeding``: Luong's section 3.3.
    - ``max_len``: the longest source or target accepted. An LSTM has no positional table; the bound
      mirrors the Transformer's, so that the two are used alike.

    Token ids outside ``[0, vocab_size)`` and sequences longer than ``max_len`` raise ``ValueError``.
    """

    def __init__(
        self,
        *,
        src_vocab_size: int,
        tgt_vocab_size: int | None = None,
        hidden_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.1,
        max_len: int = 256,
        attention: str = "general",
        bidirectional: bool = True,
        input_feeding: bool = False,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ) -> None:
        super().__init__()
        tgt_vocab_size = src_vocab_size if tgt_vocab_size is None else tgt_vocab_size
        for name, value in (("src_vocab_size", src_vocab_size), ("tgt_vocab_size", tgt_vocab_size)):
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an int >= 2; got {value!r}")
        for name, value in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= value < tgt_vocab_size:
                raise ValueError(f"{name} must lie in [0, tgt_vocab_size={tgt_vocab_size}); got {value}")
        for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers), ("max_len", max_len)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if bidirectional and hidden_size % 2:
            raise ValueError(
                f"hidden_size must be even with bidirectional=True (each direction has half); got {hidden_size}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout!r}")
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.hidden_size = self.d_model = hidden_size
        self.num_layers, self.input_feeding = num_layers, input_feeding
        self.max_len, self.pad_id, self.bos_id, self.eos_id = max_len, pad_id, bos_id, eos_id
        H = hidden_size
        self.src_embed = nn.Embedding(src_vocab_size, H)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, H)
        self.dropout = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(_EncoderLayer(H, H, bidirectional) for _ in range(num_layers))
        self.bridge = nn.Linear(H, 2 * H)  # s -> (h_0, c_0), shared by the layers
        self.decoder = nn.LSTM(
            H + (H if input_feeding else 0),
            H,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.attention = LuongAttention(H, attention)
        self.head = nn.Linear(H, tgt_vocab_size)  # W_s
        self._recording = False
        self._last_weights: Tensor | None = None

    # ---- checks -------------------------------------------------------------------------------------
    def _check_tokens(self, x: Tensor, name: str, vocab: int) -> None:
        if x.dim() != 2 or x.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"{name} must be a (B, T) tensor of int64 token ids; got {tuple(x.shape)} {x.dtype}"
            )
        if x.shape[1] > self.max_len:
            raise ValueError(f"{name} has {x.shape[1]} positions; the model accepts max_len={self.max_len}")
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return  # the range check reads values: eager mode only
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= vocab):
            raise ValueError(
                f"{name} token ids must lie in [0, {vocab}); got values in [{int(x.min())}, {int(x.max())}]"
            )

    # ---- the two halves -----------------------------------------------------------------------------
    def encode(self, src: Tensor) -> Encoded:
        """Read ``src (B, S)``: the memory the decoder attends to and its initial state."""
        self._check_tokens(src, "src", self.src_vocab_size)
        pad = src == self.pad_id  # (B, S), True = padding
        lengths = (~pad).sum(dim=1).clamp(min=1)  # (B,)
        pos = torch.arange(src.shape[1], device=src.device)  # (S,)
        length = lengths.unsqueeze(1)  # (B, 1)
        flip = torch.where(
            pos < length, length - 1 - pos, pos
        )  # (B, S): reverses the tokens, keeps the padding
        x = self.src_embed(src)  # (B, S, H)
        finals = []
        for layer in self.encoder:
            x, final = layer(self.dropout(x), flip, lengths - 1)  # (B, S, H), (B, H)
            finals.append(final)
        h0, c0 = self.bridge(torch.stack(finals)).chunk(2, dim=-1)  # (L, B, H) each
        feed = x.new_zeros(src.shape[0], self.hidden_size if self.input_feeding else 0)
        state = DecoderState(torch.tanh(h0).contiguous(), c0.contiguous(), feed)
        return Encoded(x, self.attention.keys(x), pad, state)

    def decode(
        self, tgt: Tensor, enc: Encoded, state: DecoderState | None = None
    ) -> tuple[Tensor, DecoderState]:
        """Logits ``(B, T, V)`` of the next token at each position of ``tgt (B, T)`` and the state after it.

        ``state``: where to continue from (default: the encoder's ``enc.state``, the start of the target).
        """
        self._check_tokens(tgt, "tgt", self.tgt_vocab_size)
        state = enc.state if state is None else state
        x = self.dropout(self.tgt_embed(tgt))  # (B, T, H)
        if not self.input_feeding:
            h, (hn, cn) = self.decoder(x, (state.h, state.c))  # (B, T, H): the whole target in one call
            out, weights = self.attention(h, enc.keys, enc.memory, enc.pad)  # (B, T, H), (B, T, S)
            state = DecoderState(hn, cn, state.feed)
        else:
            outs, ws = [], []
            for t in range(tgt.shape[1]):  # h~_{t-1} is an input of step t: one step at a time
                step_in = torch.cat([x[:, t : t + 1], state.feed.unsqueeze(1)], dim=-1)  # (B, 1, 2H)
                h, (hn, cn) = self.decoder(step_in, (state.h, state.c))  # (B, 1, H)
                o, w = self.attention(h, enc.keys, enc.memory, enc.pad)  # (B, 1, H), (B, 1, S)
                state = DecoderState(hn, cn, o[:, 0])
                outs.append(o)
                ws.append(w)
            out, weights = torch.cat(outs, dim=1), torch.cat(ws, dim=1)
        if self._recording:
            self._last_weights = weights.detach().unsqueeze(1)  # (B, 1, T, S): one "head"
        return self.head(self.dropout(out)), state  # (B, T, V)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        return self.decode(tgt, self.encode(src))[0]

    @contextlib.contextmanager
    def record_attention(self) -> Iterator[dict[str, Tensor]]:
        """Collect the attention weights, as :func:`nnatlas.layers.record_attention` does for a Transformer.

        Within the ``with`` block each decoding call stores its weights ``(B, 1, T, S)`` (one head); the
        yielded dict maps ``"decoder.attention"`` to the weights of the last call, filled in on exit.
        """
        maps: dict[str, Tensor] = {}
        self._recording, self._last_weights = True, None
        try:
            yield maps
        finally:
            if self._last_weights is not None:
                maps["decoder.attention"] = self._last_weights
            self._recording, self._last_weights = False, None

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
        length_penalty: float = 1.0,
    ) -> Tensor:
        """Decode ``src (B, S)`` into at most ``max_len`` tokens per sequence: ``(B, T <= max_len)``.

        Decoding starts from ``bos_id`` (not returned) and a sequence stops at ``eos_id`` (returned),
        after which it is padded with ``pad_id``; it ends when every sequence has stopped or after
        ``max_len`` tokens. ``eos_id=-1`` (default) uses the model's ``eos_id``; ``None`` never stops
        early. ``method="beam"`` keeps the ``beam_size`` best prefixes by summed log-probability and
        returns the finished one with the best ``score / length ** length_penalty``. Each step feeds the
        newest token to the recurrent state. Call ``eval()`` first to switch dropout off.
        """
        eos = resolve_eos(
            max_len=max_len,
            limit=self.max_len,
            limit_name="the model's",
            method=method,
            eos_id=eos_id,
            default_eos=self.eos_id,
            vocab_size=self.tgt_vocab_size,
            beam_size=beam_size,
        )
        enc = self.encode(src)
        B, dev = enc.memory.shape[0], enc.memory.device
        tokens = {"bos": self.bos_id, "pad": self.pad_id, "max_len": max_len, "eos": eos, "device": dev}
        if method == "beam":
            expand = torch.arange(B, device=dev).repeat_interleave(beam_size)  # (B * K,): row b K times
            enc = Encoded(enc.memory[expand], enc.keys[expand], enc.pad[expand], enc.state.select(expand))
        state = enc.state

        def step(ys: Tensor) -> Tensor:  # logits (N, V) after the newest token of ys (N, t)
            nonlocal state
            logits, state = self.decode(ys[:, -1:], enc, state)  # (N, 1, V)
            return logits[:, -1]

        def reorder(rows: Tensor) -> None:  # the recurrent state follows the beams kept
            nonlocal state
            state = state.select(rows)

        if method == "greedy":
            return greedy(step, batch=B, **tokens)
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
def lstm_seq2seq(
    *,
    vocab_size: int = 16,
    tgt_vocab_size: int | None = None,
    d_model: int = 128,
    num_layers: int = 2,
    dropout: float = 0.1,
    max_len: int = 256,
    attention: str = "general",
    bidirectional: bool = True,
    input_feeding: bool = False,
    **kwargs,
) -> LSTMSeq2Seq:
    """LSTM encoder-decoder with Luong attention (Luong et al. 2015), greedy and beam decoding.

    ``d_model`` is the hidden size (the same name as the Transformer's width, so that a seq2seq recipe
    passes one name to both). See :class:`LSTMSeq2Seq`.
    """
    return LSTMSeq2Seq(
        src_vocab_size=vocab_size,
        tgt_vocab_size=tgt_vocab_size,
        hidden_size=d_model,
        num_layers=num_layers,
        dropout=dropout,
        max_len=max_len,
        attention=attention,
        bidirectional=bidirectional,
        input_feeding=input_feeding,
        **kwargs,
    )
