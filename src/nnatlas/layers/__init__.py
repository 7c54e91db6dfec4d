"""Building blocks: convolution variants, residual / Inception / ERFNet blocks, attention, Transformer layers."""

from nnatlas.layers.attention import (
    KVCache,
    MultiheadAttention,
    causal_mask,
    padding_mask,
    record_attention,
    scaled_dot_product_attention,
)
from nnatlas.layers.resnet import BasicBlock, Bottleneck, PadShortcut, conv1x1, conv3x3
from nnatlas.layers.transformer import (
    DecoderCache,
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = ["BasicBlock", "Bottleneck", "PadShortcut", "conv1x1", "conv3x3"]
__all__ += [
    "DecoderCache",
    "KVCache",
    "LearnedPositionalEncoding",
    "MultiheadAttention",
    "SinusoidalPositionalEncoding",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "causal_mask",
    "padding_mask",
    "record_attention",
    "scaled_dot_product_attention",
]
