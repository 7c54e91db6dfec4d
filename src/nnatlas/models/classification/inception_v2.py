"""BN-Inception (Inception-v2): Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
Reducing Internal Covariate Shift" (ICML 2015), appendix figure 5.

GoogLeNet (:mod:`~nnatlas.models.classification.googlenet`) with batch norm after every convolution and
the changes the appendix lists: each 5x5 convolution becomes two stacked 3x3
(:class:`~nnatlas.layers.InceptionV2`), three 28x28 modules instead of two, average or max pooling inside
the modules, and no pooling layers between modules: the grid is halved inside modules 3c and 4e by
stride-2 branches and a pass-through max pool. Section 4.2.1 ("Accelerating BN Networks") also removes
dropout and local response normalisation. The name follows TensorFlow-Slim and Szegedy et al. 2017 (Inception-v4), which
call this network Inception-v2; "Rethinking the Inception Architecture" (2016) gives that name to a
precursor of Inception-v3 (:mod:`~nnatlas.models.classification.inception`).
``(B, C, H, W) -> (B, num_classes)`` for ``H, W >= 7``::

    conv 7x7/2 (64), max pool 3x3/2                    224 -> 56
    conv 1x1 (64), conv 3x3 (192), max pool 3x3/2      56 -> 28 (192 channels)
    3a, 3b; 3c (stride 2)                              28 -> 14, 256 / 320 / 576 channels
    4a, 4b, 4c, 4d; 4e (stride 2)                      14 -> 7, 576 / 576 / 608 / 608 / 1056
    5a (avg pool branch), 5b (max pool branch)         7x7, 1024
    global average pool, linear                        (B, num_classes)

Figure 5, row by row (#1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool + proj)::

    3a   64   64   64   64   96   avg + 32          4b  192   96  128   96  128   avg + 128
    3b   64   64   96   64   96   avg + 64          4c  160  128  160  128  160   avg + 128
    3c    0  128  160   64   96   max + pass        4d   96  128  192  160  192   avg + 128
    4a  224   64   96   96  128   avg + 128         4e    0  128  192  192  256   max + pass
    5a  352  192  320  160  224   avg + 128         5b  352  192  320  192  224   max + 128

The output sizes printed in the figure are off in four rows: 3c's is its input grid (28x28; the output is
14x14), 4c and 4d print 576 channels where their columns sum to 608, and 4e prints 1024 where
192 + 256 + 608 = 1056; the network here follows the columns, as does the widely used port of the
released model, Cadene's ``pretrainedmodels.bninception``.

Parameters: 11,285,224 (1000 classes): the same layer shapes as ``pretrainedmodels.bninception``
(11,295,240 parameters, of which 10,016 are biases of its convolutions; a bias before batch norm is
cancelled by the mean subtraction, section 3.2, and is left out here). 2.03G MACs at 224x224, 1.28 times
GoogLeNet's 1.58G (the paper: "computational cost is increased by about 30%").

Choices the paper leaves open: batch norm ``eps = 1e-5`` (PyTorch's default, and the port's); ceil-mode
3x3/2 max pools in the stem (as GoogLeNet); the pass-through max pools of 3c and 4e are padded by 1 like
the stride-2 convolutions beside them, so the branches agree for every input size (the Caffe port pads
the pools by 0 in ceil mode, which agrees only for even sizes); global average pooling is adaptive (the
figure's 7x7/1 average pool at 224x224). ``separable_stem=True`` gives the paper's first layer, a
depthwise-separable 7x7 convolution with depth multiplier 8 ("Our model employed separable convolution
with depth multiplier 8 on the first convolutional layer"): a 7x7/2 depthwise convolution from C to 8C
channels, then a 1x1 convolution to 64 with batch norm and ReLU (TensorFlow-Slim's
``separable_conv2d``), 2,840 parameters instead of 9,536 for 3 channels. The appendix describes no
auxiliary classifiers (nor have TensorFlow-Slim's network and the Caffe port any), and none are built.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from nnatlas.layers import BasicConv2d, InceptionV2
from nnatlas.models.classification._common import check_image_input, check_positive_int
from nnatlas.models.registry import register_model

torch.fx.wrap("check_image_input")

__all__ = ["BNInception", "inception_v2"]


class BNInception(nn.Module):
    """``(B, in_channels, H, W) -> (B, num_classes)``; ``forward_features`` gives ``(B, 1024, H/32, W/32)``.

    Args:
        num_classes: outputs of the classifier.
        in_channels: channels of the input images.
        dropout: dropout before the classifier (0: none, as the paper's batch-normalised networks).
        separable_stem: the paper's depthwise-separable first convolution (depth multiplier 8) instead
            of a dense 7x7 convolution.
        init_weights: Kaiming-normal convolutions (fan-out, ReLU gain), unit batch norm, N(0, 0.01)
            classifier.
    """

    min_size = 7  # 7 -> 4 (conv1) -> 2 (max pool 1) -> 1 (max pool 2); the modules keep 1x1

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.0,
        separable_stem: bool = False,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        conv = partial(BasicConv2d, norm_layer=nn.BatchNorm2d)
        module = partial(InceptionV2, conv_layer=conv)

        if separable_stem:
            self.conv1: nn.Module = nn.Sequential(
                OrderedDict(
                    depthwise=nn.Conv2d(
                        in_channels, 8 * in_channels, 7, stride=2, padding=3, groups=in_channels, bias=False
                    ),
                    pointwise=conv(8 * in_channels, 64, kernel_size=1),
                )
            )
        else:
            self.conv1 = conv(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = conv(64, 64, kernel_size=1)
        self.conv3 = conv(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # Figure 5: in, #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool proj.
        self.inception3a = module(192, 64, 64, 64, 64, 96, 32)
        self.inception3b = module(256, 64, 64, 96, 64, 96, 64)
        self.inception3c = module(320, 0, 128, 160, 64, 96, 0, pool="max", stride=2)
        self.inception4a = module(576, 224, 64, 96, 96, 128, 128)
        self.inception4b = module(576, 192, 96, 128, 96, 128, 128)
        self.inception4c = module(576, 160, 128, 160, 128, 160, 128)
        self.inception4d = module(608, 96, 128, 192, 160, 192, 128)
        self.inception4e = module(608, 0, 128, 192, 192, 256, 0, pool="max", stride=2)
        self.inception5a = module(1056, 352, 192, 320, 160, 224, 128)
        self.inception5b = module(1024, 352, 192, 320, 192, 224, 128, pool="max")
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        self.num_features = 1024

        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0.0, 0.01)
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem and the ten Inception modules: ``(B, in_channels, H, W) -> (B, 1024, H/32, W/32)``."""
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="BNInception")
        x = self.maxpool1(self.conv1(x))  # (B, 64, H/4, W/4)
        x = self.maxpool2(self.conv3(self.conv2(x)))  # (B, 192, H/8, W/8)
        x = self.inception3b(self.inception3a(x))  # (B, 320, H/8, W/8)
        x = self.inception3c(x)  # (B, 576, H/16, W/16)
        x = self.inception4b(self.inception4a(x))  # (B, 576, H/16, W/16)
        x = self.inception4d(self.inception4c(x))  # (B, 608, H/16, W/16)
        x = self.inception4e(x)  # (B, 1056, H/32, W/32)
        return self.inception5b(self.inception5a(x))  # (B, 1024, H/32, W/32)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pooling, dropout and the classifier: ``(B, 1024, h, w) -> (B, num_classes)``."""
        x = torch.flatten(self.avgpool(x), 1)  # (B, 1024)
        return self.fc(self.dropout(x))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(task="classification", input_size=(3, 32, 32), min_size=7)
def inception_v2(*, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> BNInception:
    """BN-Inception / Inception-v2 (Ioffe & Szegedy 2015): GoogLeNet with batch norm and double 3x3.

    No pretrained weights are bundled; ``separable_stem=True`` gives the paper's separable first layer.
    """
    return BNInception(num_classes=num_classes, in_channels=in_channels, **kwargs)
