"""The seq2seq task's loss and metrics against torch / torchmetrics on padded batches."""

import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from nnatlas.engine import Seq2SeqTask

V, PAD = 7, 0


class FixedLogits(nn.Module):
    """Returns pre-set logits for the decoder input; optionally a pre-set ``generate`` output."""

    def __init__(self, logits, generated=None):
        super().__init__()
        self.logits, self.generated = logits, generated
        if generated is not None:
            self.generate = lambda src, max_len, **kw: self.generated[:, :max_len]

    def forward(self, src, tgt):
        return self.logits[:, : tgt.shape[1]]


def _batch():
    tgt = torch.tensor([[1, 3, 4, 5, 2], [1, 6, 2, 0, 0], [1, 4, 4, 2, 0]])  # BOS y EOS, padded
    src = torch.randint(3, V, (3, 4))
    return src, tgt


def test_loss_and_token_accuracy_ignore_padding():
    src, tgt = _batch()
    labels = tgt[:, 1:]
    logits = torch.randn(3, 4, V)
    logits[0, :, :] = F.one_hot(labels[0], V) * 5.0  # row 0 entirely right
    task = Seq2SeqTask(pad_id=PAD)
    loss, n = task.training_step(FixedLogits(logits), (src, tgt))
    assert n == 3
    torch.testing.assert_close(
        loss, F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=PAD)
    )
    metrics = task.new_metrics()
    task.validation_step(FixedLogits(logits), (src, tgt), metrics)
    out = {k: float(v) for k, v in metrics.compute().items()}
    ref_acc = torchmetrics.classification.MulticlassAccuracy(V, average="micro", ignore_index=PAD)
    assert abs(out["token_acc"] - float(ref_acc(logits.reshape(-1, V), labels.reshape(-1)))) < 1e-6
    assert abs(out["loss"] - loss.item()) < 1e-5
    # Without generate(): exact match under teacher forcing; row 0 is right, the others are random.
    right = [(logits[i].argmax(-1) == labels[i])[labels[i] != PAD].all().item() for i in range(3)]
    assert abs(out["exact_acc"] - sum(right) / 3) < 1e-6


def test_exact_match_uses_free_decoding_when_the_model_has_generate():
    src, tgt = _batch()
    labels = tgt[:, 1:]
    generated = labels.clone()
    generated[1, 2] = 5  # a token after the end token: not an exact match
    generated[2, 0] = 6  # a wrong first token
    model = FixedLogits(F.one_hot(labels, V).float() * 5.0, generated=generated)
    task = Seq2SeqTask(pad_id=PAD)
    metrics = task.new_metrics()
    task.validation_step(model, (src, tgt), metrics)
    out = {k: float(v) for k, v in metrics.compute().items()}
    assert out["token_acc"] == 1.0  # teacher forcing is perfect
    assert abs(out["exact_acc"] - 1 / 3) < 1e-6  # free decoding gets only row 0 right
