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
from nnatlas.layers.resnet import BasicBlock, Bottleneck, PadShortcut, conv1x1, conv3x3

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ConvNormAct",
    "DeformConv2d",
    "DepthwiseSeparableConv2d",
    "ERFBottleneck",
    "ERFDownsampler",
    "ERFNonBottleneck",
    "ERFNonBottleneck1D",
    "ERFUpsampler",
    "LocalResponseNorm",
    "PadShortcut",
    "Swish",
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
