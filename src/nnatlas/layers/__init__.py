"""Building blocks: convolution variants, residual / Inception / ERFNet blocks, attention, Transformer layers."""

from nnatlas.layers.resnet import BasicBlock, Bottleneck, PadShortcut, conv1x1, conv3x3

__all__ = ["BasicBlock", "Bottleneck", "PadShortcut", "conv1x1", "conv3x3"]
