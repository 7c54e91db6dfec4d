"""Sequence-to-sequence models. Importing this package registers them."""

from nnatlas.models.seq2seq import lstm, transformer
from nnatlas.models.seq2seq.lstm import LSTMSeq2Seq
from nnatlas.models.seq2seq.transformer import TransformerSeq2Seq

__all__ = ["LSTMSeq2Seq", "TransformerSeq2Seq", "lstm", "transformer"]
