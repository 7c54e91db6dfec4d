"""Building blocks: convolution variants, residual / Inception / ERFNet blocks, attention, Transformer layers."""

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
    "InceptionA",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "InceptionV1",
    "InceptionV1Aux",
    "InceptionV3Aux",
    "PadShortcut",
    "VGGStage",
    "conv1x1",
    "conv3x3",
]
