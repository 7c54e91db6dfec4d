"""Deformable convolution v1 (Dai et al. 2017) and v2 (Zhu et al. 2019) with their own offset branches.

An ordinary convolution samples the input on the fixed grid ``p0 + p_n`` (``p_n`` the kernel taps, spaced
``dilation`` apart). A deformable convolution adds a learned, per-position offset to every tap,

    y(p0) = sum_n w_n * m_n(p0) * x(p0 + p_n + delta_p_n(p0)),

sampling ``x`` at fractional positions by bilinear interpolation (zero outside the image). v1 has
``m_n = 1``; v2 learns a modulation ``m_n in (0, 1)`` as well. The offsets and masks come from a plain
convolution over the same input with the same kernel, stride, padding and dilation, so they live on the
output grid: ``(B, 2 * offset_groups * k_h * k_w, H_out, W_out)`` for the offsets, laid out as
``(dy, dx)`` pairs per tap in row-major tap order, and ``(B, offset_groups * k_h * k_w, H_out, W_out)``
for the masks.

Both papers initialise the offset branch to zero, so training starts from the ordinary convolution (and,
for v2, from ``m = sigmoid(0) = 1/2``). Fixed offsets ``delta_p_n = (d - 1) p_n`` turn a ``3 x 3`` kernel
into a dilation-``d`` kernel: dilated convolution is the special case of a deformable one.

The sampling kernel is ``torchvision.ops.deform_conv2d`` (CPU and CUDA); only the offset / mask branches
and their initialisation are written here, because torchvision's ``DeformConv2d`` takes its offsets as an
argument instead of predicting them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import deform_conv2d

from nnatlas.layers.conv import IntOrPair, Padding, _check_channels, _positive, _resolve_padding


class DeformConv2d(nn.Module):
    """Deformable convolution with its offset branch (v1), and a mask branch when ``modulated=True`` (v2).

    Input ``(B, in_channels, H, W)``, output ``(B, out_channels, H_out, W_out)`` with the size arithmetic of
    ``nn.Conv2d``. ``weight`` and ``bias`` have the shapes, names and initialisation of
    ``torchvision.ops.DeformConv2d`` (and of ``nn.Conv2d``); the branches are ``conv_offset`` and
    ``conv_mask``, zero-initialised. ``forward(x, offset, mask)`` also accepts offsets / masks computed
    elsewhere, which then replace the branches' outputs: ``offset`` ``(B, 2 * offset_groups * k_h * k_w,
    H_out, W_out)``, ``mask`` ``(B, offset_groups * k_h * k_w, H_out, W_out)``.

    >>> import torch, torchvision
    >>> conv = DeformConv2d(8, 16)  # 3 x 3, "same" padding
    >>> conv(torch.zeros(1, 8, 10, 10)).shape
    torch.Size([1, 16, 10, 10])
    >>> conv.conv_offset.weight.shape  # 2 offsets (dy, dx) for each of the 9 taps
    torch.Size([18, 8, 3, 3])
    >>> kernel = sum(p.numel() for p in torchvision.ops.DeformConv2d(8, 16, 3, padding=1).parameters())
    >>> kernel, sum(p.numel() for p in conv.parameters()) - kernel  # torchvision's kernel, + the offset branch
    (1168, 1314)
    >>> sum(p.numel() for p in DeformConv2d(8, 16, modulated=True).parameters())  # + a mask branch (v2)
    3139
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair = 3,
        *,
        stride: IntOrPair = 1,
        padding: Padding = "same",
        dilation: IntOrPair = 1,
        groups: int = 1,
        offset_groups: int = 1,
        bias: bool = True,
        modulated: bool = False,
    ) -> None:
        super().__init__()
        _check_channels(in_channels, out_channels, groups)
        if isinstance(offset_groups, bool) or not isinstance(offset_groups, int) or offset_groups < 1:
            raise ValueError(f"offset_groups must be an int >= 1; got offset_groups={offset_groups!r}")
        if in_channels % offset_groups != 0:
            raise ValueError(
                f"in_channels must be divisible by offset_groups; got in_channels={in_channels}, "
                f"offset_groups={offset_groups}"
            )
        self.kernel_size = _positive("kernel_size", kernel_size)
        self.stride = _positive("stride", stride)
        self.dilation = _positive("dilation", dilation)
        pad = _resolve_padding(padding, kernel_size, stride, dilation)
        if isinstance(pad, str):
            raise ValueError(
                f'DeformConv2d needs a symmetric padding; padding="same" with kernel_size={kernel_size!r} and '
                f"dilation={dilation!r} would be asymmetric (use an odd kernel or an explicit padding)"
            )
        self.padding = pad
        self.in_channels, self.out_channels = in_channels, out_channels
        self.groups, self.offset_groups, self.modulated = groups, offset_groups, modulated

        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        taps = offset_groups * kh * kw
        branch = {
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
        }
        self.conv_offset = nn.Conv2d(in_channels, 2 * taps, **branch)
        self.conv_mask = nn.Conv2d(in_channels, taps, **branch) if modulated else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation for the kernel, zeros for the offset and mask branches."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)
        for branch in (self.conv_offset, self.conv_mask):
            if branch is not None:
                nn.init.zeros_(branch.weight)
                nn.init.zeros_(branch.bias)

    def forward(
        self, x: torch.Tensor, offset: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if offset is None:
            offset = self.conv_offset(x)  # (B, 2 * G * kh * kw, H_out, W_out), (dy, dx) per tap
        if mask is None and self.conv_mask is not None:
            mask = torch.sigmoid(self.conv_mask(x))  # (B, G * kh * kw, H_out, W_out)
        return deform_conv2d(
            x,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=mask,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"offset_groups={self.offset_groups}, bias={self.bias is not None}, modulated={self.modulated}"
        )
