"""Convolution and its variants: conv + norm + activation, grouped, depthwise-separable, dilated, transposed.

A 2-D convolution maps ``(B, C_in, H, W)`` to ``(B, C_out, H_out, W_out)`` with
``H_out = floor((H + 2p - d(k-1) - 1) / s) + 1`` and holds ``(k_h * k_w * C_in / groups + 1) * C_out``
parameters (the ``+ 1`` is the bias). The variants below differ only in how that kernel is shaped:

- grouped (Krizhevsky et al. 2012): the channels are split into ``groups`` independent convolutions, so the
  weights shrink by the factor ``groups``;
- depthwise-separable (Howard et al. 2017, "MobileNets"): a per-channel ``k x k`` convolution followed by a
  ``1 x 1`` mixing convolution, ``k^2 C_in + C_in C_out`` weights instead of ``k^2 C_in C_out``;
- dilated / atrous (Yu & Koltun 2016; Chen et al. 2017, "DeepLab"): ``d - 1`` holes between the kernel
  taps, an effective kernel of ``k + (k - 1)(d - 1)`` pixels for the weights of ``k``;
- transposed (Dumoulin & Visin 2016, "A guide to convolution arithmetic"): the adjoint of a convolution,
  ``<conv(x), y> = <x, conv_transpose(y)>``, which maps sizes back up:
  ``H_out = (H - 1)s - 2p + d(k - 1) + output_padding + 1``.

Every builder validates its arguments and raises ``ValueError`` naming the argument and the value, before
PyTorch would fail with a less helpful message deep inside ``forward``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

IntOrPair = int | tuple[int, int]
Padding = int | tuple[int, int] | str
NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[..., nn.Module]


def _pair(name: str, value: IntOrPair) -> tuple[int, int]:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints; got {value!r}")
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        if not any(isinstance(v, bool) for v in value):
            return (value[0], value[1])
    raise TypeError(f"{name} must be an int or a pair of ints; got {value!r}")


def _positive(name: str, value: IntOrPair, minimum: int = 1) -> tuple[int, int]:
    pair = _pair(name, value)
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {name}={value!r}")
    return pair


def _check_channels(in_channels: int, out_channels: int, groups: int) -> None:
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int; got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1; got {name}={value}")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if value % groups != 0:
            raise ValueError(f"{name} must be divisible by groups; got {name}={value}, groups={groups}")


def effective_kernel_size(kernel_size: IntOrPair, dilation: IntOrPair = 1) -> IntOrPair:
    """Span of a dilated kernel, ``k + (k - 1)(d - 1)`` per dimension (``d(k - 1) + 1``).

    A ``3 x 3`` kernel with dilation 2 covers ``5 x 5`` pixels, with dilation 4 it covers ``9 x 9``; with
    dilation 1 it is the ordinary kernel. Returns an int for int arguments, a pair otherwise.

    >>> effective_kernel_size(3, 2), effective_kernel_size(3, 4), effective_kernel_size((3, 5), 2)
    (5, 9, (5, 9))
    """
    k = _positive("kernel_size", kernel_size)
    d = _positive("dilation", dilation)
    span = tuple(ki + (ki - 1) * (di - 1) for ki, di in zip(k, d, strict=True))
    if isinstance(kernel_size, int) and isinstance(dilation, int):
        return span[0]
    return span  # type: ignore[return-value]


def same_padding(
    kernel_size: IntOrPair, *, stride: IntOrPair = 1, dilation: IntOrPair = 1
) -> tuple[int, int] | str:
    """Padding that keeps ``H_out = ceil(H / stride)``.

    With an odd effective kernel ``e = d(k - 1) + 1`` this is the symmetric ``(e - 1) / 2`` on each side,
    for any stride: ``floor((H + e - 1 - e) / s) + 1 = ceil(H / s)``. An even effective kernel needs one more
    pixel on one side than on the other; at stride 1 PyTorch's ``padding="same"`` does exactly that (the
    extra pixel goes right / bottom) and the string ``"same"`` is returned. At stride > 1 the placement of
    that pixel changes which inputs each output sees, frameworks disagree on it, and ``ValueError`` is raised.

    >>> same_padding(3), same_padding(3, dilation=2), same_padding(3, stride=2), same_padding(2)
    ((1, 1), (2, 2), (1, 1), 'same')
    """
    k = _positive("kernel_size", kernel_size)
    s = _positive("stride", stride)
    d = _positive("dilation", dilation)
    spans = [di * (ki - 1) for ki, di in zip(k, d, strict=True)]
    if all(span % 2 == 0 for span in spans):
        return (spans[0] // 2, spans[1] // 2)
    if s == (1, 1):
        return "same"
    raise ValueError(
        f'padding="same" is ambiguous for an even effective kernel with stride > 1; got kernel_size={kernel_size!r}, '
        f"dilation={dilation!r}, stride={stride!r} (use an odd kernel or an explicit padding)"
    )


def _resolve_padding(padding: Padding, kernel_size: IntOrPair, stride: IntOrPair, dilation: IntOrPair):
    if isinstance(padding, str):
        if padding == "same":
            return same_padding(kernel_size, stride=stride, dilation=dilation)
        if padding == "valid":
            return (0, 0)
        raise ValueError(
            f'padding must be "same", "valid", an int or a pair of ints; got padding={padding!r}'
        )
    return _positive("padding", padding, 0)


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair = 3,
    *,
    stride: IntOrPair = 1,
    padding: Padding = "same",
    dilation: IntOrPair = 1,
    groups: int = 1,
    bias: bool = True,
    padding_mode: str = "zeros",
) -> nn.Conv2d:
    """A validated ``nn.Conv2d`` with ``"same"`` padding by default (see :func:`same_padding`).

    ``(B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))`` with ``"same"``
    padding. Parameters: ``(k_h * k_w * in_channels / groups + bias) * out_channels``.

    >>> import torch
    >>> conv = conv2d(16, 32)  # 3 x 3, "same": (3 * 3 * 16 + 1) * 32 parameters
    >>> conv
    Conv2d(16, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    >>> sum(p.numel() for p in conv.parameters())
    4640
    >>> conv(torch.zeros(1, 16, 7, 7)).shape
    torch.Size([1, 32, 7, 7])
    >>> conv2d(16, 32, stride=2)(torch.zeros(1, 16, 7, 7)).shape  # ceil(7 / 2)
    torch.Size([1, 32, 4, 4])
    """
    _check_channels(in_channels, out_channels, groups)
    _positive("kernel_size", kernel_size)
    _positive("stride", stride)
    _positive("dilation", dilation)
    pad = _resolve_padding(padding, kernel_size, stride, dilation)
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=pad,
        dilation=dilation,
        groups=groups,
        bias=bias,
        padding_mode=padding_mode,
    )


def grouped_conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair = 3,
    *,
    groups: int,
    stride: IntOrPair = 1,
    padding: Padding = "same",
    dilation: IntOrPair = 1,
    bias: bool = True,
) -> nn.Conv2d:
    """Grouped convolution (AlexNet's two-GPU split, ResNeXt's cardinality).

    Input channel group ``g`` (``in_channels / groups`` channels) is convolved only with filter group ``g``
    (``out_channels / groups`` filters): ``groups`` times fewer weights and multiply-adds than the dense
    convolution, ``k_h * k_w * (in_channels / groups) * out_channels``. Shapes as :func:`conv2d`.

    >>> dense, grouped = conv2d(16, 32, bias=False), grouped_conv2d(16, 32, groups=4, bias=False)
    >>> dense.weight.numel(), grouped.weight.numel()  # 3 * 3 * 16 * 32 and a quarter of it
    (4608, 1152)
    """
    return conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )


def dilated_conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair = 3,
    *,
    dilation: IntOrPair,
    stride: IntOrPair = 1,
    padding: Padding = "same",
    groups: int = 1,
    bias: bool = True,
) -> nn.Conv2d:
    """Dilated (atrous) convolution: taps ``dilation`` pixels apart, holes filled with zeros.

    Equivalent to a dense convolution with the ``effective_kernel_size(k, d) = k + (k - 1)(d - 1)`` kernel
    in which only every ``d``-th tap is non-zero: a larger receptive field for the same weights and
    multiply-adds, and (with ``"same"`` padding) no loss of resolution, which is why segmentation networks
    (DeepLab, ERFNet) use it instead of pooling. Shapes as :func:`conv2d`.

    >>> import torch
    >>> conv = dilated_conv2d(8, 8, dilation=2)  # a 5 x 5 span, padding 2
    >>> conv.padding, conv.weight.shape
    ((2, 2), torch.Size([8, 8, 3, 3]))
    >>> conv(torch.zeros(1, 8, 9, 9)).shape
    torch.Size([1, 8, 9, 9])
    """
    return conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )


def conv_transpose2d(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    *,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.ConvTranspose2d:
    """A validated ``nn.ConvTranspose2d``: the adjoint (gradient) of the convolution with the same arguments.

    ``(B, C_in, H, W) -> (B, C_out, (H - 1)s - 2p + d(k - 1) + output_padding + 1, ...)``. Its weight has
    shape ``(C_in, C_out / groups, k_h, k_w)``; with the weight ``W`` of a convolution ``C_out -> C_in`` it
    computes exactly ``W^T``: ``<conv(x), y> = <x, conv_transpose(y)>``. ``output_padding`` (< stride or
    dilation) picks one of the several input sizes that a strided convolution maps to the same output size.
    The notes' figure: a ``2 x 2`` input, ``k = 3, s = 1, p = 0`` gives ``4 x 4``.

    >>> import torch
    >>> conv_transpose2d(1, 1, 3)(torch.zeros(1, 1, 2, 2)).shape
    torch.Size([1, 1, 4, 4])
    >>> conv_transpose2d(1, 1, 3, stride=2, padding=1, output_padding=1)(torch.zeros(1, 1, 4, 4)).shape
    torch.Size([1, 1, 8, 8])
    """
    _check_channels(in_channels, out_channels, groups)
    k = _positive("kernel_size", kernel_size)
    s = _positive("stride", stride)
    d = _positive("dilation", dilation)
    p = _positive("padding", padding, 0)
    op = _positive("output_padding", output_padding, 0)
    for i in range(2):
        if op[i] >= max(s[i], d[i]):
            raise ValueError(
                f"output_padding must be smaller than stride or dilation; got output_padding={output_padding!r}, "
                f"stride={stride!r}, dilation={dilation!r}"
            )
    return nn.ConvTranspose2d(
        in_channels,
        out_channels,
        k,
        stride=s,
        padding=p,
        output_padding=op,
        groups=groups,
        bias=bias,
        dilation=d,
    )


def bilinear_upsampling_kernel(factor: int) -> torch.Tensor:
    """The ``(2f - f mod 2) x (2f - f mod 2)`` bilinear interpolation kernel of FCN (Long et al. 2015).

    ``w[i, j] = (1 - |i - c| / f)(1 - |j - c| / f)`` with centre ``c = f - 1`` for odd ``f`` (an odd kernel
    of ``2f - 1`` taps, one peak of 1 at ``i = f - 1``) and ``c = f - 0.5`` for even ``f`` (an even kernel of
    ``2f`` taps, two equal peaks at ``i = f - 1`` and ``f``), as FCN's ``upsample_filt``.

    Returns a float32 tensor of shape ``(2f - f mod 2, 2f - f mod 2)``.

    >>> bilinear_upsampling_kernel(2)
    tensor([[0.0625, 0.1875, 0.1875, 0.0625],
            [0.1875, 0.5625, 0.5625, 0.1875],
            [0.1875, 0.5625, 0.5625, 0.1875],
            [0.0625, 0.1875, 0.1875, 0.0625]])
    >>> bilinear_upsampling_kernel(3).shape
    torch.Size([5, 5])
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an int >= 1; got factor={factor!r}")
    size = 2 * factor - factor % 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float64)
    filt = 1 - (og - centre).abs() / factor
    return torch.outer(filt, filt).float()  # (size, size)


def upsampling_conv_transpose2d(
    in_channels: int, out_channels: int, *, factor: int, bilinear: bool = False, bias: bool = False
) -> nn.ConvTranspose2d:
    """Transposed convolution that scales ``H`` and ``W`` by exactly ``factor``.

    Kernel ``2f - f mod 2``, stride ``f``, padding ``ceil((f - 1) / 2)``: ``(H - 1)f - 2p + k = fH``.
    With ``bilinear=True`` (needs ``in_channels == out_channels``) the weight starts as per-channel bilinear
    interpolation, as FCN initialises its learnable upsampling; away from the border it then equals
    ``F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)``.
    ``(B, in_channels, H, W) -> (B, out_channels, fH, fW)``.

    >>> import torch
    >>> up = upsampling_conv_transpose2d(8, 8, factor=2, bilinear=True)
    >>> up.kernel_size, up.stride, up.padding
    ((4, 4), (2, 2), (1, 1))
    >>> up(torch.zeros(1, 8, 5, 5)).shape
    torch.Size([1, 8, 10, 10])
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an int >= 1; got factor={factor!r}")
    kernel = 2 * factor - factor % 2
    layer = conv_transpose2d(
        in_channels, out_channels, kernel, stride=factor, padding=math.ceil((factor - 1) / 2), bias=bias
    )
    if bilinear:
        if in_channels != out_channels:
            raise ValueError(
                f"bilinear=True needs in_channels == out_channels; got in_channels={in_channels}, "
                f"out_channels={out_channels}"
            )
        with torch.no_grad():
            layer.weight.zero_()
            idx = torch.arange(in_channels)
            layer.weight[idx, idx] = bilinear_upsampling_kernel(factor)  # weight (C_in, C_out, k, k)
            if layer.bias is not None:
                layer.bias.zero_()
    return layer


def _accepts_inplace(act_layer: ActLayer) -> bool:
    try:
        return "inplace" in inspect.signature(act_layer).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False


class ConvNormAct(nn.Sequential):
    """Convolution, then an optional normalisation, then an optional activation.

    ``(B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))`` with the default
    ``padding="same"``. The bias is dropped when a norm layer follows (``bias=None``): batch norm subtracts
    the per-channel mean, so a bias before it is a wasted parameter (Ioffe & Szegedy 2015, section 3.2).

    The layers sit at indices ``0, 1, 2`` (those present), as in ``torchvision.ops.Conv2dNormActivation``,
    so the two share ``state_dict`` keys; ``.conv``, ``.norm`` and ``.act`` name them. ``inplace=None``
    runs the activation in place when its constructor takes ``inplace`` (ReLU, SiLU, ...), as torchvision.

    >>> import torch
    >>> block = ConvNormAct(3, 16, stride=2)  # conv without bias, BatchNorm2d, ReLU
    >>> block.conv.bias is None, type(block.norm).__name__, type(block.act).__name__
    (True, 'BatchNorm2d', 'ReLU')
    >>> block(torch.zeros(1, 3, 9, 9)).shape
    torch.Size([1, 16, 5, 5])
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
        bias: bool | None = None,
        norm_layer: NormLayer | None = nn.BatchNorm2d,
        act_layer: ActLayer | None = nn.ReLU,
        inplace: bool | None = None,
    ) -> None:
        if bias is None:
            bias = norm_layer is None
        layers: list[nn.Module] = [
            conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=bias,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if act_layer is not None:
            if inplace is None:  # the activation's input is always a fresh tensor: in place is safe
                inplace = _accepts_inplace(act_layer)
            layers.append(act_layer(inplace=True) if inplace else act_layer())
        super().__init__(*layers)
        self.has_norm = norm_layer is not None
        self.has_act = act_layer is not None
        self.in_channels, self.out_channels = in_channels, out_channels

    @property
    def conv(self) -> nn.Conv2d:
        """The convolution (index 0)."""
        return self[0]

    @property
    def norm(self) -> nn.Module | None:
        """The normalisation layer (index 1), or ``None`` when built with ``norm_layer=None``."""
        return self[1] if self.has_norm else None

    @property
    def act(self) -> nn.Module | None:
        """The activation (the last layer), or ``None`` when built with ``act_layer=None``."""
        return self[-1] if self.has_act else None


class DepthwiseSeparableConv2d(nn.Module):
    """Depthwise ``k x k`` convolution per channel, then a pointwise ``1 x 1`` convolution across channels.

    MobileNets (Howard et al. 2017, section 3.1) factorise a standard convolution this way: the depthwise
    step has ``k^2 C_in`` weights (``groups = C_in``), the pointwise step ``C_in C_out``, a fraction
    ``1 / C_out + 1 / k^2`` of the ``k^2 C_in C_out`` of the dense convolution. Without norm and activation
    in between, the composite is a dense convolution whose kernel is the rank-one-per-channel product
    ``K[o, i] = P[o, i] D[i]``.

    ``depth_multiplier`` m gives ``m C_in`` depthwise outputs. MobileNet puts norm + activation after both
    steps (the defaults); Xception (Chollet 2017) has nothing in between (``mid_norm=False, mid_act=False``).
    Input ``(B, in_channels, H, W)``, output ``(B, out_channels, ceil(H / stride), ceil(W / stride))``.

    >>> import torch
    >>> from torch import nn
    >>> sep = DepthwiseSeparableConv2d(32, 64, mid_norm=False, mid_act=False, norm_layer=None)
    >>> sep.depthwise.conv.weight.numel(), sep.pointwise.conv.weight.numel()  # 9 * 32, 32 * 64
    (288, 2048)
    >>> nn.Conv2d(32, 64, 3, bias=False).weight.numel()  # the dense 3 x 3: 9 * 32 * 64
    18432
    >>> sep(torch.zeros(1, 32, 8, 8)).shape
    torch.Size([1, 64, 8, 8])
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
        depth_multiplier: int = 1,
        norm_layer: NormLayer | None = nn.BatchNorm2d,
        act_layer: ActLayer | None = nn.ReLU,
        mid_norm: bool = True,
        mid_act: bool = True,
    ) -> None:
        super().__init__()
        if (
            isinstance(depth_multiplier, bool)
            or not isinstance(depth_multiplier, int)
            or depth_multiplier < 1
        ):
            raise ValueError(
                f"depth_multiplier must be an int >= 1; got depth_multiplier={depth_multiplier!r}"
            )
        mid = in_channels * depth_multiplier
        self.depthwise = ConvNormAct(
            in_channels,
            mid,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            norm_layer=norm_layer if mid_norm else None,
            act_layer=act_layer if mid_act else None,
        )
        self.pointwise = ConvNormAct(mid, out_channels, 1, norm_layer=norm_layer, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))
