"""Greedy and beam decoding shared by the sequence-to-sequence models.

A model gives a ``step(ys (N, t)) -> logits (N, V)`` for the next token after the prefixes ``ys`` (keeping
whatever state it needs: a key/value cache, a recurrent state) and, for beam search, a
``reorder(rows (N,))`` that makes that state follow the beams kept at each step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

DECODING = ("greedy", "beam")

Step = Callable[[Tensor], Tensor]


def resolve_eos(
    *,
    max_len: int,
    limit: int,
    limit_name: str,
    method: str,
    eos_id: int | None,
    default_eos: int,
    vocab_size: int,
    beam_size: int,
) -> int | None:
    """Check the arguments of ``generate`` and return the end token (``eos_id=-1``: the model's,
    ``None``: never stop early). ``limit_name`` names the model's length limit in the error."""
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int; got {max_len!r}")
    if max_len > limit:
        raise ValueError(f"max_len={max_len} exceeds {limit_name} max_len={limit}")
    if method not in DECODING:
        raise ValueError(f"method must be one of {', '.join(DECODING)}; got {method!r}")
    eos = default_eos if eos_id == -1 else eos_id
    if eos is not None and not 0 <= eos < vocab_size:
        raise ValueError(f"eos_id must lie in [0, {vocab_size}) or be None; got {eos}")
    if method == "beam" and (not isinstance(beam_size, int) or beam_size < 1):
        raise ValueError(f"beam_size must be a positive int; got {beam_size!r}")
    return eos


def greedy(
    step: Step, *, batch: int, bos: int, pad: int, max_len: int, eos: int | None, device: torch.device
) -> Tensor:
    """The most likely next token at every step; ``(B, T <= max_len)`` without the start token, padded
    with ``pad`` after each sequence's end token."""
    ys = torch.full((batch, 1), bos, dtype=torch.long, device=device)  # (B, 1)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    for _ in range(max_len):
        nxt = step(ys).argmax(dim=-1).masked_fill(finished, pad)  # (B,)
        ys = torch.cat([ys, nxt.unsqueeze(1)], dim=1)  # (B, t + 1)
        if eos is not None:
            finished |= nxt == eos
            if bool(finished.all()):
                break
    return ys[:, 1:]


def beam(
    step: Step,
    reorder: Callable[[Tensor], None],
    *,
    batch: int,
    beams: int,
    vocab_size: int,
    bos: int,
    pad: int,
    max_len: int,
    eos: int | None,
    length_penalty: float,
    device: torch.device,
) -> Tensor:
    """Beam search over ``beams`` prefixes per sequence (rows ``b * beams + k`` of ``step``'s input and
    output), by summed log-probability; returns ``(B, T)`` of the finished beam with the best
    ``score / length ** length_penalty``, without the start token."""
    B, K, V = batch, beams, vocab_size
    ys = torch.full((B * K, 1), bos, dtype=torch.long, device=device)
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = float("-inf")  # all beams start equal: expand only the first at step one
    finished = torch.zeros(B * K, dtype=torch.bool, device=device)
    lengths = torch.zeros(B * K, device=device)
    for _ in range(max_len):
        logp = torch.log_softmax(step(ys).float(), dim=-1)  # (B * K, V)
        # A finished beam only continues with padding, at no cost.
        logp[finished] = float("-inf")
        logp[finished, pad] = 0.0
        cand = (scores.view(B * K, 1) + logp).view(B, K * V)
        scores, idx = cand.topk(K, dim=-1)  # (B, K)
        parent, tok = idx // V, idx % V  # (B, K)
        rows = (torch.arange(B, device=device).unsqueeze(1) * K + parent).view(-1)  # (B * K,)
        tok = tok.view(-1)
        ys = torch.cat([ys[rows], tok.unsqueeze(1)], dim=1)
        lengths = lengths[rows] + (~finished[rows]).float()
        finished = finished[rows]
        reorder(rows)
        if eos is not None:
            finished = finished | (tok == eos)
            if bool(finished.all()):
                break
    norm = scores / lengths.view(B, K).clamp(min=1.0) ** length_penalty  # (B, K)
    best = norm.argmax(dim=-1)  # (B,)
    return ys.view(B, K, -1)[torch.arange(B, device=device), best, 1:]
