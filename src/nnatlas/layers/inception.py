"""Inception modules: GoogLeNet's (Inception-v1), BN-Inception's (Inception-v2) and Inception-v3's.

An Inception module runs parallel branches on the same input and concatenates their outputs along the
channels: ``y = concat(b_1(x), ..., b_k(x))``, so ``C_out = sum_i C_i`` and every branch keeps (or, in the
grid-size reduction modules, halves) the spatial size.

- Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015), figure 2(b): 1x1, 1x1 -> 3x3, 1x1 -> 5x5 and
  3x3 max pool -> 1x1 branches; the 1x1 "reductions" keep the 3x3 and 5x5 convolutions cheap.
- Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate
  Shift" (ICML 2015), appendix figure 5 (BN-Inception): the 5x5 branch becomes two stacked 3x3, batch norm
  after every convolution, and grid reduction inside the modules (stride-2 branches and a pass-through
  max pool) instead of pooling between them.
- Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (CVPR 2016): factorized
  convolutions (figures 5, 6, 7) and grid-size reduction by parallel stride-2 branches (figure 10).

Names of the Inception-v3 modules differ between sources; the classes here use torchvision's:

===================  ==========================================  =================================
class                idea (paper figure)                          often also called
===================  ==========================================  =================================
``InceptionA``       5x5 factorized into two 3x3 (figure 5)       Inception-A, 35x35 module
``InceptionC``       n x n factorized into 1 x n, n x 1 (fig. 6)  Inception-B, 17x17 module
``InceptionE``       parallel 1x3 and 3x1, wide output (fig. 7)   Inception-C, 8x8 module
``InceptionB``/``D`` grid-size reduction (figure 10)              Reduction-A / Reduction-B
===================  ==========================================  =================================

Every class with a torchvision counterpart keeps its attribute names (``branch1x1``, ``branch5x5_1``,
``branch3x3dbl_2``, ..., and :class:`BasicConv2d` with ``conv`` / ``bn``), so that torchvision's
``state_dict`` loads unchanged; :class:`InceptionV2` (BN-Inception, not in torchvision) names its branches
as :class:`InceptionV1` does.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NormLayer = Callable[[int], nn.Module]
ConvLayer = Callable[..., nn.Module]


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (``eps = 0.001``, as in the TensorFlow originals), ReLU.

    ``(B, in_channels, H, W) -> (B, out_channels, H', W')`` with ``H'`` given by the convolution arguments
    (``kernel_size``, ``stride``, ``padding``, ... are passed on to ``nn.Conv2d``). A bias before batch
    norm would be cancelled by its mean subtraction (Ioffe & Szegedy 2015, section 3.2), hence
    ``bias=False``; the pre-batch-norm networks (GoogLeNet as published) use ``norm_layer=no_norm`` and
    ``bias=True``: ``relu(conv(x) + b)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        norm_layer: NormLayer | None = None,
        bias: bool = False,
        **conv_kwargs: Any,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or partial(nn.BatchNorm2d, eps=0.001)
        self.conv = nn.Conv2d(in_channels, out_channels, bias=bias, **conv_kwargs)
        self.bn = norm_layer(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def no_norm(channels: int) -> nn.Module:
    """``norm_layer`` that normalises nothing (``nn.Identity``): convolutions of the pre-batch-norm papers."""
    return nn.Identity()


# ----------------------------------------------------------------------------------------------------
# Inception-v1 (GoogLeNet)
# ----------------------------------------------------------------------------------------------------


class InceptionV1(nn.Module):
    """The Inception module of GoogLeNet (Szegedy et al. 2015, figure 2(b), table 1).

    ``(B, in_channels, H, W) -> (B, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)``::

        branch1: 1x1                                  -> ch1x1
        branch2: 1x1 (ch3x3red) -> 3x3                -> ch3x3
        branch3: 1x1 (ch5x5red) -> kxk                -> ch5x5
        branch4: 3x3 max pool (stride 1) -> 1x1       -> pool_proj

    ``branch3_kernel_size`` is 3 by default: torchvision's GoogLeNet (and its pretrained weights) uses a 3x3
    convolution in the branch the paper gives a 5x5 (pytorch/vision issue 906). Keep 3 to load those
    weights; 5 gives the paper's module, whose ``state_dict`` then has 5x5 kernels in ``branch3.1``.

    Module 3a of table 1, with the parameters of torchvision's ``Inception`` block:

    >>> import torch
    >>> from torchvision.models.googlenet import Inception
    >>> block = InceptionV1(192, 64, 96, 128, 16, 32, 32)
    >>> block.out_channels, block(torch.zeros(1, 192, 7, 7)).shape
    (256, torch.Size([1, 256, 7, 7]))
    >>> count = lambda m: sum(p.numel() for p in m.parameters())
    >>> count(block), count(Inception(192, 64, 96, 128, 16, 32, 32))
    (155872, 155872)
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        branch3_kernel_size: int = 3,
        conv_layer: ConvLayer = BasicConv2d,
    ) -> None:
        super().__init__()
        if branch3_kernel_size not in (3, 5):
            raise ValueError(
                f"branch3_kernel_size must be 3 (torchvision) or 5 (the paper); got {branch3_kernel_size!r}"
            )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.branch1 = conv_layer(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv_layer(in_channels, ch3x3red, kernel_size=1),
            conv_layer(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            conv_layer(in_channels, ch5x5red, kernel_size=1),
            conv_layer(ch5x5red, ch5x5, kernel_size=branch3_kernel_size, padding=branch3_kernel_size // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv_layer(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(outputs, 1)  # (B, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)


def check_aux_grid(x: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged if the paper's 5x5/3 pooling left the 4x4 grid the classifier expects, else ValueError.

    A plain function (registered with ``torch.fx.wrap``) so that ``torch.fx`` tracing keeps it as one call.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if (h, w) != (4, 4):
        raise ValueError(
            "the paper's auxiliary classifier pools a 14x14 to 16x16 map (a 224x224 input) to 4x4 with 5x5/3 "
            f"average pooling; its input gave {h}x{w} (train other sizes without auxiliary classifiers)"
        )
    return x


torch.fx.wrap("check_aux_grid")


class InceptionV1Aux(nn.Module):
    """GoogLeNet's auxiliary classifier (Szegedy et al. 2015, section 5), attached after 4a and 4d.

    ``(B, in_channels, H, W) -> (B, num_classes)``: average pooling to 4x4, a 1x1 convolution to 128
    channels, a 1024-unit fully connected layer with ReLU, dropout 0.7 and the classifier. During training
    its cross-entropy is added to the main loss with weight 0.3; at inference the head is discarded.

    The pooling is adaptive (torchvision's choice: any ``H, W``) unless ``paper_pool=True``: the paper's
    5x5 average pooling of stride 3, which turns the 14x14 map of a 224x224 input into 4x4 and accepts
    only 14x14 to 16x16 maps. The two differ even at 14x14 (adaptive windows of 4 start at 0, 3, 7, 10;
    the paper's windows of 5 at 0, 3, 6, 9).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        dropout: float = 0.7,
        conv_layer: ConvLayer = BasicConv2d,
        paper_pool: bool = False,
    ) -> None:
        super().__init__()
        self.paper_pool = paper_pool
        self.conv = conv_layer(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.paper_pool:
            x = check_aux_grid(F.avg_pool2d(x, kernel_size=5, stride=3))  # (B, C, 4, 4) from 14x14
        else:
            x = F.adaptive_avg_pool2d(x, (4, 4))  # (B, C, 4, 4)
        x = torch.flatten(self.conv(x), 1)  # (B, 2048)
        x = self.dropout(F.relu(self.fc1(x), inplace=True))  # (B, 1024)
        return self.fc2(x)  # (B, num_classes)


# ----------------------------------------------------------------------------------------------------
# Inception-v2 (BN-Inception)
# ----------------------------------------------------------------------------------------------------


class InceptionV2(nn.Module):
    """The Inception module of BN-Inception (Ioffe & Szegedy 2015, appendix figure 5).

    GoogLeNet's module with the 5x5 branch replaced by two stacked 3x3 convolutions (the same 5x5 window,
    ``18 C^2`` instead of ``25 C^2`` weights, one more ReLU) and batch norm after every convolution.
    ``(B, in_channels, H, W) -> (B, out_channels, H', W')``::

        branch1: 1x1                                       -> ch1x1       (none if ch1x1 = 0)
        branch2: 1x1 (ch3x3red) -> 3x3 /s                   -> ch3x3
        branch3: 1x1 (dbl3x3red) -> 3x3 -> 3x3 /s           -> dbl3x3
        branch4: 3x3 avg or max pool /s [-> 1x1 pool_proj]  -> pool_proj, or in_channels if pool_proj = 0

    With ``stride=1`` the grid is kept: ``out_channels = ch1x1 + ch3x3 + dbl3x3 + pool_proj``. With
    ``stride=2`` (modules 3c and 4e: the paper's "stride 2 ... max + pass through" rows) the last
    convolution of branches 2 and 3 and a max pool have stride 2, the pool output passes through
    unprojected (``pool_proj = 0``) and ``H' = ceil(H / 2)`` for every ``H``: the pool is padded by 1 like
    the stride-2 convolutions, so that all branches see windows with the same centres.

    Args:
        in_channels: channels of the input.
        ch1x1, ch3x3red, ch3x3, dbl3x3red, dbl3x3, pool_proj: the columns "#1x1", "#3x3 reduce", "#3x3",
            "double #3x3 reduce", "double #3x3" and "pool + proj" of figure 5 (0: no 1x1 branch, and a
            pass-through pool).
        pool: ``"avg"`` or ``"max"`` pooling in branch 4.
        stride: 1, or 2 for a grid-size reduction module.
        conv_layer: convolution + normalisation + activation (default :class:`BasicConv2d`).
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        dbl3x3red: int,
        dbl3x3: int,
        pool_proj: int,
        *,
        pool: str = "avg",
        stride: int = 1,
        conv_layer: ConvLayer = BasicConv2d,
    ) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max'; got {pool!r}")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2; got {stride!r}")
        for name, value in {"ch1x1": ch1x1, "pool_proj": pool_proj}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an int >= 0 (0: no such layer); got {value!r}")
        self.out_channels = ch1x1 + ch3x3 + dbl3x3 + (pool_proj or in_channels)
        self.branch1 = conv_layer(in_channels, ch1x1, kernel_size=1, stride=stride) if ch1x1 else None
        self.branch2 = nn.Sequential(
            conv_layer(in_channels, ch3x3red, kernel_size=1),
            conv_layer(ch3x3red, ch3x3, kernel_size=3, stride=stride, padding=1),
        )
        self.branch3 = nn.Sequential(
            conv_layer(in_channels, dbl3x3red, kernel_size=1),
            conv_layer(dbl3x3red, dbl3x3, kernel_size=3, padding=1),
            conv_layer(dbl3x3, dbl3x3, kernel_size=3, stride=stride, padding=1),
        )
        pool_cls = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
        pooling = pool_cls(kernel_size=3, stride=stride, padding=1)
        self.branch4 = (
            nn.Sequential(pooling, conv_layer(in_channels, pool_proj, kernel_size=1))
            if pool_proj
            else pooling
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.branch2(x), self.branch3(x), self.branch4(x)]
        if self.branch1 is not None:
            outputs.insert(0, self.branch1(x))
        return torch.cat(outputs, 1)  # (B, out_channels, H', W')


# ----------------------------------------------------------------------------------------------------
# Inception-v3
# ----------------------------------------------------------------------------------------------------


class InceptionA(nn.Module):
    """The 35x35 module: a 5x5 convolution factorized into two 3x3 (Szegedy et al. 2016, figure 5).

    ``(B, in_channels, H, W) -> (B, 224 + pool_features, H, W)``::

        branch1x1:                 1x1                      -> 64
        branch5x5_1, _2:           1x1 -> 5x5               -> 64
        branch3x3dbl_1, _2, _3:    1x1 -> 3x3 -> 3x3        -> 96
        branch_pool:               3x3 avg pool -> 1x1      -> pool_features

    Two stacked 3x3 convolutions see the 5x5 window of one 5x5 with ``18 C^2`` instead of ``25 C^2``
    weights. The released network (and torchvision) keeps one real 5x5 branch beside the factorized one.

    Module Mixed_5b of Inception-v3, with the parameters of torchvision's ``InceptionA``:

    >>> import torch
    >>> from torchvision.models import inception
    >>> block = InceptionA(192, pool_features=32)
    >>> block(torch.zeros(1, 192, 5, 5)).shape  # 64 + 64 + 96 + 32 channels
    torch.Size([1, 256, 5, 5])
    >>> count = lambda m: sum(p.numel() for p in m.parameters())
    >>> count(block), count(inception.InceptionA(192, pool_features=32))
    (255904, 255904)
    """

    def __init__(self, in_channels: int, pool_features: int, *, conv_layer: ConvLayer = BasicConv2d) -> None:
        super().__init__()
        self.out_channels = 64 + 64 + 96 + pool_features
        self.branch1x1 = conv_layer(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = conv_layer(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = conv_layer(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = conv_layer(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv_layer(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv_layer(96, 96, kernel_size=3, padding=1)
        self.branch_pool = conv_layer(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b5, b3, bp], 1)  # (B, 224 + pool_features, H, W)


class InceptionB(nn.Module):
    """Grid-size reduction 35x35 -> 17x17 (Szegedy et al. 2016, figure 10).

    ``(B, in_channels, H, W) -> (B, 480 + in_channels, (H-3)//2 + 1, (W-3)//2 + 1)``: a stride-2 3x3
    branch, a 1x1 -> 3x3 -> stride-2 3x3 branch and a stride-2 max pool run in parallel, so the grid shrinks
    while the filter bank grows, avoiding both the representational bottleneck of pooling first and the
    cost of convolving first (section 5).
    """

    def __init__(self, in_channels: int, *, conv_layer: ConvLayer = BasicConv2d) -> None:
        super().__init__()
        self.out_channels = 384 + 96 + in_channels
        self.branch3x3 = conv_layer(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = conv_layer(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv_layer(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv_layer(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        b3d = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b3d, bp], 1)  # (B, 480 + C_in, H', W')


class InceptionC(nn.Module):
    """The 17x17 module: ``n x n`` factorized into ``1 x n`` then ``n x 1`` with n = 7 (2016, figure 6).

    ``(B, in_channels, H, W) -> (B, 768, H, W)``::

        branch1x1:                   1x1                                         -> 192
        branch7x7_1.._3:             1x1 -> 1x7 -> 7x1                           -> 192
        branch7x7dbl_1.._5:          1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7             -> 192
        branch_pool:                 3x3 avg pool -> 1x1                         -> 192

    A ``1 x n`` followed by an ``n x 1`` convolution covers an ``n x n`` window with ``2n`` instead of
    ``n^2`` weights per channel pair: 6/9 = 67% of the cost for n = 3 (the paper's "33% cheaper",
    section 3.2), 14/49 = 29% for n = 7.
    """

    def __init__(self, in_channels: int, channels_7x7: int, *, conv_layer: ConvLayer = BasicConv2d) -> None:
        super().__init__()
        c7 = channels_7x7
        self.out_channels = 4 * 192
        self.branch1x1 = conv_layer(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = conv_layer(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = conv_layer(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = conv_layer(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = conv_layer(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = conv_layer(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = conv_layer(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = conv_layer(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = conv_layer(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = conv_layer(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = self.branch7x7dbl_1(x)
        b7d = self.branch7x7dbl_3(self.branch7x7dbl_2(b7d))
        b7d = self.branch7x7dbl_5(self.branch7x7dbl_4(b7d))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b7, b7d, bp], 1)  # (B, 768, H, W)


class InceptionD(nn.Module):
    """Grid-size reduction 17x17 -> 8x8 (Szegedy et al. 2016, figure 10, with the 7x7 factorization).

    ``(B, in_channels, H, W) -> (B, 512 + in_channels, (H-3)//2 + 1, (W-3)//2 + 1)``: 1x1 -> stride-2 3x3,
    1x1 -> 1x7 -> 7x1 -> stride-2 3x3, and a stride-2 max pool in parallel.
    """

    def __init__(self, in_channels: int, *, conv_layer: ConvLayer = BasicConv2d) -> None:
        super().__init__()
        self.out_channels = 320 + 192 + in_channels
        self.branch3x3_1 = conv_layer(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = conv_layer(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = conv_layer(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = conv_layer(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = conv_layer(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = conv_layer(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(b7))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)  # (B, 512 + C_in, H', W')


class InceptionE(nn.Module):
    """The 8x8 module with an expanded filter bank (Szegedy et al. 2016, figure 7).

    ``(B, in_channels, H, W) -> (B, 2048, H, W)``::

        branch1x1:                       1x1                                     -> 320
        branch3x3_1, _2a | _2b:          1x1 -> (1x3 | 3x1) concatenated        -> 768
        branch3x3dbl_1, _2, _3a | _3b:   1x1 -> 3x3 -> (1x3 | 3x1) concatenated -> 768
        branch_pool:                     3x3 avg pool -> 1x1                     -> 192

    Placing the 1x3 and 3x1 side by side instead of in sequence widens the output, which the paper
    recommends on the coarsest grid to keep high-dimensional representations (principle 2, section 2).
    """

    def __init__(self, in_channels: int, *, conv_layer: ConvLayer = BasicConv2d) -> None:
        super().__init__()
        self.out_channels = 320 + 768 + 768 + 192
        self.branch1x1 = conv_layer(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = conv_layer(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = conv_layer(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = conv_layer(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = conv_layer(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = conv_layer(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = conv_layer(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = conv_layer(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = conv_layer(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)  # (B, 768, H, W)
        b3d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(b3d), self.branch3x3dbl_3b(b3d)], 1)  # (B, 768, H, W)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b3, b3d, bp], 1)  # (B, 2048, H, W)


class InceptionV3Aux(nn.Module):
    """Inception-v3's auxiliary classifier on the 17x17 grid (Szegedy et al. 2016, section 4, figure 8).

    ``(B, in_channels, H, W) -> (B, num_classes)``: 5x5 average pooling of stride 3 (17x17 -> 5x5), a 1x1
    convolution to 128 channels, a 5x5 convolution to 768 (with batch norm: the paper's "BN-auxiliary",
    which it finds acts as a regulariser), global average pooling and the classifier. It needs a map of at
    least 17x17, which a 299x299 input gives.
    """

    def __init__(self, in_channels: int, num_classes: int, *, conv_layer: ConvLayer = BasicConv2d) -> None:
        super().__init__()
        self.conv0 = conv_layer(in_channels, 128, kernel_size=1)
        self.conv1 = conv_layer(128, 768, kernel_size=5)
        self.conv1.stddev = 0.01  # initialisation scale read by Inception3 (as in torchvision)
        self.fc = nn.Linear(768, num_classes)
        self.fc.stddev = 0.001

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, kernel_size=5, stride=3)  # (B, C, 5, 5) from 17x17
        x = self.conv1(self.conv0(x))  # (B, 768, 1, 1)
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)  # (B, 768)
        return self.fc(x)  # (B, num_classes)
