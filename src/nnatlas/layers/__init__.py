"""Building blocks: convolution variants, residual / Inception / ERFNet blocks, attention, Transformer layers."""

from torch.nn import LocalResponseNorm

from nnatlas.layers.activations import Swish, activation_names, get_activation
from nnatlas.layers.attention import (
    KVCache,
    MultiheadAttention,
    causal_mask,
    padding_mask,
    record_attention,
    scaled_dot_product_attention,
)
from nnatlas.layers.conv import (
    ConvNormAct,
    DepthwiseSeparableConv2d,
    bilinear_upsampling_kernel,
    conv2d,
    conv_transpose2d,
    dilated_conv2d,
    effective_kernel_size,
    grouped_conv2d,
    same_padding,
    upsampling_conv_transpose2d,
)
from nnatlas.layers.deform import DeformConv2d
from nnatlas.layers.erfnet import (
    ERFBottleneck,
    ERFDownsampler,
    ERFNonBottleneck,
    ERFNonBottleneck1D,
    ERFUpsampler,
)
from nnatlas.layers.inception import (
    BasicConv2d,
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
    InceptionV1,
    InceptionV1Aux,
    InceptionV3Aux,
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
from nnatlas.layers.vgg import VGGStage

__all__ = [
    "BasicBlock",
    "BasicConv2d",
    "Bottleneck",
    "ConvNormAct",
    "DecoderCache",
    "DeformConv2d",
    "DepthwiseSeparableConv2d",
    "ERFBottleneck",
    "ERFDownsampler",
    "ERFNonBottleneck",
    "ERFNonBottleneck1D",
    "ERFUpsampler",
    "InceptionA",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "InceptionV1",
    "InceptionV1Aux",
    "InceptionV3Aux",
    "KVCache",
    "LearnedPositionalEncoding",
    "LocalResponseNorm",
    "MultiheadAttention",
    "PadShortcut",
    "SinusoidalPositionalEncoding",
    "Swish",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "VGGStage",
    "activation_names",
    "bilinear_upsampling_kernel",
    "causal_mask",
    "conv1x1",
    "conv2d",
    "conv3x3",
    "conv_transpose2d",
    "dilated_conv2d",
    "effective_kernel_size",
    "get_activation",
    "grouped_conv2d",
    "padding_mask",
    "record_attention",
    "same_padding",
    "scaled_dot_product_attention",
    "upsampling_conv_transpose2d",
]
