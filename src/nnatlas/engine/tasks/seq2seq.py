"""The sequence-to-sequence task for the :class:`~nnatlas.engine.trainer.Trainer`.

Batches are ``(src (B, S), tgt (B, T))`` of token ids padded with ``pad_id``, ``tgt = BOS y EOS``. The
model is called as ``model(src, tgt[:, :-1])`` and returns next-token logits ``(B, T - 1, V)``
(teacher forcing); a model with ``generate(src, max_len, method=...)`` is also decoded freely for the
exact-match metric.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from nnatlas._validate import check_choice, check_int, check_probability
from nnatlas.engine.tasks.base import register_task


@register_task("seq2seq")
class Seq2SeqTask:
    """Teacher-forced cross-entropy over the non-padding target tokens; token and exact-match accuracy.

    Validation metrics (the ``val_*`` columns):

    - ``loss``: mean cross-entropy per target token (padding ignored);
    - ``token_acc``: fraction of target tokens predicted correctly under teacher forcing;
    - ``exact_acc``: fraction of sequences that ``model.generate`` (``decode`` method, no teacher
      forcing, stopping at the end token) reproduces exactly, ``EOS`` included. Models without
      ``generate`` fall back to teacher-forced exact match (every token of the sequence right).
    """

    name = "seq2seq"
    main_metric = "val_exact_acc"

    def __init__(
        self, *, pad_id: int = 0, label_smoothing: float = 0.0, decode: str = "greedy", beam_size: int = 4
    ) -> None:
        check_int("pad_id", pad_id, minimum=0)
        check_probability("label_smoothing", label_smoothing)
        check_choice("decode", decode, ("greedy", "beam"))
        check_int("beam_size", beam_size)
        self.pad_id, self.label_smoothing, self.decode, self.beam_size = (
            pad_id,
            label_smoothing,
            decode,
            beam_size,
        )

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),  # (B * T, V)
            labels.reshape(-1),
            ignore_index=self.pad_id,
            label_smoothing=self.label_smoothing,
            reduction=reduction,
        )

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """Teacher-forced cross-entropy: ``model(src (B, S), tgt[:, :-1])`` gives logits ``(B, T - 1, V)``
        that predict ``tgt[:, 1:]``, padding ignored; and ``B``."""
        src, tgt = batch
        logits = model(src, tgt[:, :-1])  # (B, T - 1, V)
        return self._loss(logits, tgt[:, 1:]), src.shape[0]

    def new_metrics(self) -> torchmetrics.MetricCollection:
        """``loss``, ``token_acc`` and ``exact_acc``, each a mean over tokens or sequences."""
        return torchmetrics.MetricCollection(
            {
                "loss": torchmetrics.MeanMetric(),
                "token_acc": torchmetrics.MeanMetric(),
                "exact_acc": torchmetrics.MeanMetric(),
            }
        )

    def validation_step(self, model: nn.Module, batch: Any, metrics: torchmetrics.MetricCollection) -> None:
        """Update the metrics with one batch ``(src (B, S), tgt (B, T))``: teacher-forced loss and token
        accuracy, and exact match of the decoded sequences (see the class docstring)."""
        src, tgt = batch
        labels = tgt[:, 1:]  # (B, T - 1)
        logits = model(src, tgt[:, :-1])  # (B, T - 1, V)
        keep = labels != self.pad_id
        losses = self._loss(logits, labels, reduction="none").view_as(labels)[keep]
        metrics["loss"].update(losses)
        correct = (logits.argmax(dim=-1) == labels) & keep  # (B, T - 1)
        metrics["token_acc"].update(correct[keep].float())
        # A DistributedDataParallel wrapper keeps the model in ``.module``.
        generate = getattr(getattr(model, "module", model), "generate", None)
        if generate is None:
            exact = (correct | ~keep).all(dim=1)  # teacher-forced: every target token right
        else:
            exact = self.exact_match(generate, src, labels)
        metrics["exact_acc"].update(exact.float())

    def exact_match(self, generate: Any, src: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Boolean ``(B,)``: ``generate(src, ...)`` equals ``labels`` (``y EOS`` then padding) exactly."""
        out = generate(src, labels.shape[1], method=self.decode, beam_size=self.beam_size)  # (B, <= T - 1)
        padded = torch.full_like(labels, self.pad_id)
        padded[:, : out.shape[1]] = out
        return (padded == labels).all(dim=1)
