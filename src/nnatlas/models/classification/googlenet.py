"""GoogLeNet (Inception-v1): Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015), table 1.

A stem (7x7/2 conv, 3x3/2 max pool, 1x1 and 3x3 convs, 3x3/2 max pool), nine
:class:`~nnatlas.layers.InceptionV1` modules (3a-3b, pool, 4a-4e, pool, 5a-5b), global average pooling
instead of large fully connected layers (section 5, borrowed from Network in Network), dropout and one
linear classifier: 6.6M parameters against AlexNet's 61M. ``(B, C, H, W) -> (B, num_classes)`` for
``H, W >= 15`` (``>= 31`` with ``paper=True``).

Two auxiliary classifiers (:class:`~nnatlas.layers.InceptionV1Aux`) sit on the outputs of 4a and 4d. In
training mode the model returns ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)`` (torchvision's
order); the paper adds each auxiliary cross-entropy to the loss with weight 0.3, which
``nnatlas.engine.ClassificationTask`` does for any tuple output. In eval mode only the logits are returned.

The default layout is torchvision's (its ``state_dict`` and pretrained weights load unchanged). It departs
from the paper's table 1 and figure 3 in these ways, all undone by ``paper=True``:

=====================================  ==========================================  =====================
                                       torchvision (default)                        paper (``paper=True``)
=====================================  ==========================================  =====================
"5x5" branch of every module           3x3 convolution (pytorch/vision issue 906)  5x5 convolution
normalisation after each convolution   batch norm (eps 0.001), convs without bias   none, convs with bias
local response normalisation           none                                         after max pool 1 and
                                                                                    after conv3 (figure 3)
max pool after 4e                      2x2 / 2                                      3x3 / 2
dropout before the classifier          0.2                                          0.4
auxiliary classifiers' pooling         adaptive to 4x4 (any size)                   5x5 / 3 (14x14 -> 4x4)
auxiliary classifiers' 1x1 conv        batch norm, no bias                          bias, no batch norm
initialisation                         truncated normal, std 0.01                   Caffe's "xavier"
                                                                                    (``U(+-sqrt(3/fan_in))``),
                                                                                    conv biases 0.2
=====================================  ==========================================  =====================

Common to both: the 1x1 and 3x3 stem convolutions, ceil-mode 3x3/2 max pools (Caffe's and torchvision's
rounding), dropout 0.7 and the 1024-unit layer of the auxiliary classifiers, global average pooling
(adaptive: the paper's 7x7/1 average pool on 224x224 inputs, any size here). ``transform_input`` only
serves torchvision's weights ported from TensorFlow.

LRN hyper-parameters are not given in the paper; ``size=5, alpha=1e-4, beta=0.75, k=1`` are those of the
BVLC Caffe reference model (``models/bvlc_googlenet``), whose "xavier" filler and 0.2 biases are also the
initialisation used with ``paper=True``: without batch norm, torchvision's std-0.01 initialisation shrinks
the signal through 22 layers.

Table 1's numbers, checked in the tests: its "ops" column (multiply-adds at 224x224) follows from the
widths to within its 1M precision in every row but two. The first convolution's 2.7K parameters and 34M
ops are those of a depthwise-separable 7x7 convolution with depth multiplier 8 (``7*7*3*8 + 24*64 =
2,712`` weights, 34.0M MACs), as BN-Inception states for its own stem; the text and figure 3 describe a
dense 7x7 convolution (9,408 weights, 118M MACs), which is what both layouts use. Row 5a prints 1072K and
54M, consistent with each other but not with its widths (1018K, 51.1M). The "params" column (K = 1024
weights, biases not counted) is also off by 2.75K to 54K in rows 4a, 4c, 4d, 4e and 5b; in total it is
within 0.4% of the widths' count (6,795K against 6,817K, stem convolution excepted). The network as
published: 6,998,552 parameters (13,378,280 with the auxiliary classifiers), 1.58G MACs at 224x224
(section 5: "a computational budget of 1.5 billion multiply-adds").
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple

import torch
from torch import nn

from nnatlas.layers import BasicConv2d, InceptionV1, InceptionV1Aux, no_norm
from nnatlas.models.classification._common import (
    check_image_input,
    check_positive_int,
    check_pretrained_arguments,
    load_torchvision_weights,
    resolve_torchvision_weights,
)
from nnatlas.models.registry import register_model

torch.fx.wrap("check_image_input")

__all__ = ["GoogLeNetOutputs", "transform_input", "paper_lrn", "GoogLeNet", "googlenet"]


class GoogLeNetOutputs(NamedTuple):
    """Training-mode outputs, in torchvision's order; each ``(B, num_classes)``."""

    logits: torch.Tensor
    aux_logits2: torch.Tensor | None
    aux_logits1: torch.Tensor | None


def transform_input(x: torch.Tensor) -> torch.Tensor:
    """Map an ImageNet-normalised image (torchvision's mean / std) to the ``[-1, 1]`` scaling
    ``(pixel - 0.5) / 0.5`` that the weights ported from TensorFlow expect: ``x * std/0.5 + (mean-0.5)/0.5``.

    ``x``: ``(B, 3, H, W)`` -> ``(B, 3, H, W)``.
    """
    x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    return torch.cat((x_ch0, x_ch1, x_ch2), 1)  # (B, 3, H, W)


def paper_lrn() -> nn.LocalResponseNorm:
    """GoogLeNet's local response normalisation (BVLC Caffe reference): ``size=5, alpha=1e-4, beta=0.75``.

    ``b_c = a_c / (1 + alpha / 5 * sum_{|c' - c| <= 2} a_{c'}^2) ** beta``; Caffe's ``alpha``, like
    ``nn.LocalResponseNorm``'s, is divided by the window size.
    """
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)


class GoogLeNet(nn.Module):
    """``(B, in_channels, H, W) -> (B, num_classes)``; ``forward_features`` gives ``(B, 1024, H/32, W/32)``.

    Args:
        num_classes: outputs of the classifier (and of the auxiliary classifiers).
        in_channels: channels of the input images.
        aux_logits: build the two auxiliary classifiers (returned in training mode).
        transform_input: rescale ImageNet-normalised inputs as the ported weights expect (3 channels).
        init_weights: initialise the weights (see the module docstring for the two schemes).
        dropout: dropout before the classifier (default 0.2, or 0.4 with ``paper=True``); ``dropout_aux``
            the one in the auxiliary classifiers.
        branch3_kernel_size: 3 or 5 in each module's third branch (default 3, or 5 with ``paper=True``);
            see :class:`~nnatlas.layers.InceptionV1`.
        paper: the layout of the paper's table 1 and figure 3 instead of torchvision's (module docstring).
    """

    min_size = 15

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        aux_logits: bool = True,
        transform_input: bool = False,
        init_weights: bool = True,
        dropout: float | None = None,
        dropout_aux: float = 0.7,
        branch3_kernel_size: int | None = None,
        paper: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        self.in_channels = check_positive_int("in_channels", in_channels)
        if transform_input and in_channels != 3:
            raise ValueError(f"transform_input=True needs in_channels=3; got {in_channels}")
        self.aux_logits, self.transform_input, self.paper = aux_logits, transform_input, paper
        if dropout is None:
            dropout = 0.4 if paper else 0.2
        if branch3_kernel_size is None:
            branch3_kernel_size = 5 if paper else 3
        if paper:
            self.min_size = 31  # four 3x3/2 ceil-mode max pools: 31 -> 16 -> 8 -> 4 -> 2 -> 1
        conv = partial(BasicConv2d, norm_layer=no_norm, bias=True) if paper else BasicConv2d
        inception = partial(InceptionV1, branch3_kernel_size=branch3_kernel_size, conv_layer=conv)

        self.conv1 = conv(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = paper_lrn() if paper else None
        self.conv2 = conv(64, 64, kernel_size=1)
        self.conv3 = conv(64, 192, kernel_size=3, padding=1)
        self.lrn2 = paper_lrn() if paper else None
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # Table 1: in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
        self.inception3a = inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = inception(528, 256, 160, 320, 32, 128, 128)
        pool4 = 3 if paper else 2
        self.maxpool4 = nn.MaxPool2d(pool4, stride=2, ceil_mode=True)
        self.inception5a = inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = inception(832, 384, 192, 384, 48, 128, 128)

        self.aux1: InceptionV1Aux | None = None
        self.aux2: InceptionV1Aux | None = None
        if aux_logits:
            aux = partial(InceptionV1Aux, dropout=dropout_aux, conv_layer=conv, paper_pool=paper)
            self.aux1 = aux(512, num_classes)
            self.aux2 = aux(528, num_classes)

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        self.num_features = 1024

        if init_weights:
            self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if self.paper:  # Caffe's "xavier" filler: U(-sqrt(3 / fan_in), +sqrt(3 / fan_in))
                    nn.init.kaiming_uniform_(m.weight, nonlinearity="linear")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)
                else:
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _features(
        self, x: torch.Tensor, with_aux: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if self.transform_input:
            x = transform_input(x)
        x = self.maxpool1(self.conv1(x))  # (B, 64, H/4, W/4)
        if self.lrn1 is not None:
            x = self.lrn1(x)
        x = self.conv3(self.conv2(x))  # (B, 192, H/4, W/4)
        if self.lrn2 is not None:
            x = self.lrn2(x)
        x = self.maxpool2(x)  # (B, 192, H/8, W/8)
        x = self.inception3b(self.inception3a(x))  # (B, 480, H/8, W/8)
        x = self.inception4a(self.maxpool3(x))  # (B, 512, H/16, W/16)
        aux1 = self.aux1(x) if with_aux and self.aux1 is not None else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (B, 528, H/16, W/16)
        aux2 = self.aux2(x) if with_aux and self.aux2 is not None else None
        x = self.maxpool4(self.inception4e(x))  # (B, 832, H/32, W/32)
        x = self.inception5b(self.inception5a(x))  # (B, 1024, H/32, W/32)
        return x, aux2, aux1

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem and the nine Inception modules, without the auxiliary classifiers:
        ``(B, in_channels, H, W) -> (B, 1024, H/32, W/32)`` (sizes rounded up)."""
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="GoogLeNet")
        return self._features(x, with_aux=False)[0]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pooling, dropout and the classifier: ``(B, 1024, h, w) -> (B, num_classes)``."""
        x = torch.flatten(self.avgpool(x), 1)  # (B, 1024)
        return self.fc(self.dropout(x))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        x = check_image_input(x, in_channels=self.in_channels, min_size=self.min_size, model="GoogLeNet")
        with_aux = self.training and self.aux_logits
        x, aux2, aux1 = self._features(x, with_aux)
        logits = self.forward_head(x)
        return GoogLeNetOutputs(logits, aux2, aux1) if with_aux else logits


@register_model(task="classification", input_size=(3, 15, 15), min_size=15)
def googlenet(
    *,
    weights: str | None = None,
    progress: bool = True,
    num_classes: int = 1000,
    in_channels: int = 3,
    aux_logits: bool | None = None,
    transform_input: bool | None = None,
    paper: bool = False,
    **kwargs,
) -> GoogLeNet:
    """GoogLeNet / Inception-v1 (Szegedy et al. 2015) with two auxiliary classifiers.

    As torchvision: with ``weights="torchvision"`` the input transform is on by default and the auxiliary
    classifiers are dropped unless ``aux_logits=True`` (their weights are not pretrained). ``paper=True``
    builds the layout of the paper's table 1 (5x5 branches, LRN, no batch norm, 3x3/2 pool after 4e,
    dropout 0.4, the paper's auxiliary pooling), for which no pretrained weights exist.
    """
    w = resolve_torchvision_weights("googlenet", weights)
    if w is None:
        model = GoogLeNet(
            num_classes=num_classes,
            in_channels=in_channels,
            aux_logits=True if aux_logits is None else aux_logits,
            transform_input=bool(transform_input),
            paper=paper,
            **kwargs,
        )
        return model
    if paper:
        raise ValueError(
            "weights='torchvision' are the weights of torchvision's layout; got paper=True (the paper's "
            "layout has other layers: build it without weights)"
        )
    check_pretrained_arguments("googlenet", w, num_classes=num_classes, in_channels=in_channels)
    kwargs["init_weights"] = False
    model = GoogLeNet(
        num_classes=num_classes,
        in_channels=in_channels,
        aux_logits=True,
        transform_input=True if transform_input is None else transform_input,
        **kwargs,
    )
    load_torchvision_weights(model, w, progress=progress)
    if aux_logits:
        warnings.warn(
            "the auxiliary classifiers of torchvision's pretrained googlenet are not pretrained; train them",
            UserWarning,
            stacklevel=2,
        )
    else:
        model.aux_logits, model.aux1, model.aux2 = False, None, None
    return model
