"""Sequence-to-sequence models. Importing this package registers them."""

from nnatlas.models.seq2seq import transformer
from nnatlas.models.seq2seq.transformer import TransformerSeq2Seq

__all__ = ["TransformerSeq2Seq", "transformer"]
