"""Shared pieces of the sequence experiments: the embedded reverse/copy/sort tasks as padded tensors, the
registered ``transformer_seq2seq`` at small sizes, a seeded teacher-forced training loop and its
evaluation (loss, token accuracy, exact match of greedy decoding), as in
:mod:`nnatlas.engine.tasks.seq2seq`.

The loop is deliberately plain, like :func:`nnatlas.experiments._train.fit`: no run folder, no
checkpoints; an experiment trains a few small models and keeps the numbers it measures.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from nnatlas.data import PAD_ID, make_sequence_split, pad_collate, vocab_size
from nnatlas.engine import Seq2SeqTask
from nnatlas.experiments.base import seeded
from nnatlas.models import create_model

__all__ = ["SeqData", "SeqHistory", "evaluate", "seq_data", "seq_model", "train_seq2seq"]


@dataclass(frozen=True)
class SeqData:
    """A sequence task in memory: the training pairs (to be collated per batch) and the whole validation
    split padded once, ``val_src (N, S)`` and ``val_tgt (N, T)``."""

    task: str
    vocab: int
    train: list[tuple[Tensor, Tensor]]
    val_src: Tensor
    val_tgt: Tensor
    max_len: int


@functools.lru_cache(maxsize=8)
def seq_data(
    task: str = "reverse",
    *,
    num_train: int = 4000,
    num_val: int = 500,
    min_len: int = 1,
    max_len: int = 8,
    num_symbols: int = 10,
    seed: int = 0,
) -> SeqData:
    """The embedded sequence ``task`` (see :mod:`nnatlas.data.sequences`), validation sources held out."""
    train, val = make_sequence_split(
        task,
        num_train=num_train,
        num_val=num_val,
        min_len=min_len,
        max_len=max_len,
        num_symbols=num_symbols,
        seed=seed,
    )
    val_src, val_tgt = pad_collate([val[i] for i in range(len(val))])  # (N, S), (N, T)
    return SeqData(
        task=task,
        vocab=vocab_size(task, num_symbols),
        train=[train[i] for i in range(len(train))],
        val_src=val_src,
        val_tgt=val_tgt,
        max_len=max_len,
    )


def seq_model(data: SeqData, *, seed: int, **kwargs: Any) -> nn.Module:
    """The registered ``transformer_seq2seq`` at small sizes (``kwargs`` override them), seeded."""
    seeded(seed)
    options: dict[str, Any] = {
        "vocab_size": data.vocab,
        "d_model": 32,
        "nhead": 4,
        "num_encoder_layers": 1,
        "num_decoder_layers": 1,
        "dim_feedforward": 64,
        "dropout": 0.0,
        "max_len": data.max_len + 4,
    }
    options.update(kwargs)
    return create_model("transformer_seq2seq", **options)


#: The engine's seq2seq task: its teacher-forced loss, token accuracy and greedy exact match.
TASK = Seq2SeqTask(pad_id=PAD_ID)


@dataclass
class SeqHistory:
    """``step_loss`` every step, ``val`` the evaluations (``step`` added) at the requested steps."""

    step_loss: list[float] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)
    diverged: bool = False


def train_seq2seq(
    model: nn.Module,
    data: SeqData,
    *,
    steps: int,
    seed: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    eval_every: int = 0,
    on_batch: Callable[[nn.Module, int, Tensor, Tensor], None] | None = None,
) -> SeqHistory:
    """Adam with teacher forcing for ``steps`` steps on batches drawn (seeded) from ``data.train``.

    ``on_batch(model, step, src, tgt)`` runs before each step's forward pass (instruments may hook the
    model there); ``eval_every > 0`` evaluates on the validation split every so many steps.
    """
    seeded(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = SeqHistory()
    model.train()
    n = len(data.train)
    for step in range(1, steps + 1):
        idx = torch.randint(n, (batch_size,), generator=gen).tolist()
        src, tgt = pad_collate([data.train[i] for i in idx])  # (B, S), (B, T)
        if on_batch is not None:
            on_batch(model, step, src, tgt)
        loss, _ = TASK.training_step(model, (src, tgt))
        if not torch.isfinite(loss):
            hist.diverged = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        hist.step_loss.append(loss.item())
        if eval_every and step % eval_every == 0:
            hist.val.append({"step": step, **evaluate(model, data)})
            model.train()
    return hist


@torch.no_grad()
def evaluate(model: nn.Module, data: SeqData, *, batch_size: int = 500) -> dict[str, float]:
    """Validation ``loss`` (per target token), teacher-forced ``token_acc`` and ``exact_acc`` of greedy
    decoding (``y EOS`` reproduced exactly), in eval mode."""
    was = model.training
    model.eval()
    metrics = TASK.new_metrics()
    for i in range(0, len(data.val_src), batch_size):
        TASK.validation_step(
            model, (data.val_src[i : i + batch_size], data.val_tgt[i : i + batch_size]), metrics
        )
    model.train(was)
    return {k: float(v) for k, v in metrics.compute().items()}
