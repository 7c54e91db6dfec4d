"""Building blocks: convolution variants, residual / Inception / ERFNet blocks, attention, Transformer layers."""

from torch.nn import LocalResponseNorm

from nnatlas.layers.activations import Swish, activation_names, get_activation
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
from nnatlas.layers.vgg import VGGStage

__all__ = [
    "BasicBlock",
    "BasicConv2d",
    "Bottleneck",
    "ConvNormAct",
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
    "LocalResponseNorm",
    "PadShortcut",
    "Swish",
    "VGGStage",
    "activation_names",
    "bilinear_upsampling_kernel",
    "conv1x1",
    "conv2d",
    "conv3x3",
    "conv_transpose2d",
    "dilated_conv2d",
    "effective_kernel_size",
    "get_activation",
    "grouped_conv2d",
    "same_padding",
    "upsampling_conv_transpose2d",
]
