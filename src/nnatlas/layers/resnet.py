"""Residual blocks of He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016).

The blocks keep torchvision's attribute names (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``conv3``, ``bn3``,
``downsample``) so that torchvision's ``state_dict`` loads unchanged. ``residual=False`` removes the
shortcut and gives the "plain" block of the paper's degradation experiment (section 4.1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

NormLayer = Callable[[int], nn.Module]


def conv3x3(
    in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1
) -> nn.Conv2d:
    """3x3 convolution without bias whose padding keeps the size at stride 1 (``padding = dilation``).

    ``(B, in_planes, H, W) -> (B, out_planes, ceil(H / stride), ceil(W / stride))``.
    """
    return nn.Conv2d(
        in_planes,
        out_planes,
        3,
        stride=stride,
        padding=dilation,
        groups=groups,
        bias=False,
        dilation=dilation,
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias.

    ``(B, in_planes, H, W) -> (B, out_planes, ceil(H / stride), ceil(W / stride))``.
    """
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class PadShortcut(nn.Module):
    """Option-A shortcut of the ResNet paper (section 4.2): parameter-free.

    Subsamples by ``stride`` and zero-pads the channels from ``in_planes`` to ``out_planes``:
    ``(B, C_in, H, W) -> (B, C_out, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"PadShortcut needs out_planes >= in_planes; got {out_planes} < {in_planes}")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_planes - self.in_planes
        front = extra // 2
        return F.pad(x, (0, 0, 0, 0, front, extra - front))

    def extra_repr(self) -> str:
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut: ``y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Input ``(B, inplanes, H, W)``, output ``(B, planes, ceil(H/stride), ceil(W/stride))``; ``downsample``
    must map the input to that shape when it changes (stride > 1 or ``inplanes != planes``).

    >>> import torch
    >>> from torchvision.models import resnet
    >>> block = BasicBlock(64, 64)
    >>> block(torch.zeros(1, 64, 8, 8)).shape
    torch.Size([1, 64, 8, 8])
    >>> count = lambda m: sum(p.numel() for p in m.parameters())
    >>> count(block), count(resnet.BasicBlock(64, 64))  # 2 * 9 * 64^2 weights + 2 batch norms
    (73984, 73984)
    """

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
        *,
        residual: bool = True,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock supports groups=1 and base_width=64; got {groups}, {base_width}")
        self.conv1 = conv3x3(inplanes, planes, stride, dilation=dilation)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            identity = x if self.downsample is None else self.downsample(x)
            out = out + identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying stride, groups and dilation, as torchvision's "ResNet v1.5"), 1x1 expand.

    Input ``(B, inplanes, H, W)``, output ``(B, planes * 4, ceil(H/stride), ceil(W/stride))``.
    ``stride_in_1x1=True`` puts the stride on the first 1x1 instead, as the paper's networks (He et al.
    2016, "ResNet v1"): the same parameters and ``state_dict`` keys, fewer multiply-adds, another network.

    >>> import torch
    >>> from torch import nn
    >>> from torchvision.models import resnet
    >>> shortcut = lambda: nn.Sequential(conv1x1(256, 512, stride=2), nn.BatchNorm2d(512))
    >>> block = Bottleneck(256, 128, stride=2, downsample=shortcut())  # first block of ResNet-50's layer2
    >>> block(torch.zeros(1, 256, 8, 8)).shape
    torch.Size([1, 512, 4, 4])
    >>> count = lambda m: sum(p.numel() for p in m.parameters())
    >>> count(block) == count(resnet.Bottleneck(256, 128, stride=2, downsample=shortcut()))
    True
    """

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
        *,
        residual: bool = True,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        # conv1 (1x1, no padding) and conv2 (3x3, padding = dilation) both give ceil(H / stride).
        self.conv1 = conv1x1(inplanes, width, stride if stride_in_1x1 else 1)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, 1 if stride_in_1x1 else stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            identity = x if self.downsample is None else self.downsample(x)
            out = out + identity
        return self.relu(out)
