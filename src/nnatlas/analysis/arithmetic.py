"""Output-size arithmetic of convolution, transposed convolution and pooling (Dumoulin & Visin 2016).

Every function takes an int or a tuple per spatial dimension and returns the same kind.

- convolution: ``floor((n + 2p - d(k-1) - 1) / s) + 1``
- transposed convolution: ``(n - 1)s - 2p + d(k-1) + output_padding + 1``
- pooling: as convolution, with ``ceil`` instead of ``floor`` under ``ceil_mode``, where PyTorch drops a last
  window that would start inside the right padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

IntOrTuple = int | Sequence[int]


def _expand(name: str, value: IntOrTuple, n: int) -> tuple[int, ...]:
    values = (value,) * n if isinstance(value, int) else tuple(value)
    if len(values) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be an int or a tuple of {n} ints; got {value!r}")
    return values


def _dims(size: IntOrTuple) -> int:
    return 1 if isinstance(size, int) else len(tuple(size))


def _check_positive(name: str, values: tuple[int, ...], minimum: int = 1) -> None:
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum}; got {values if len(values) > 1 else values[0]}")


def _pack(values: list[int], like: IntOrTuple) -> IntOrTuple:
    return values[0] if isinstance(like, int) else tuple(values)


def conv_output_size(
    size: IntOrTuple,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
) -> IntOrTuple:
    """Spatial output size of ``nn.Conv{1,2,3}d``: ``floor((n + 2p - d(k-1) - 1) / s) + 1``.

    **Arguments:**

    - ``size``: the input size ``n``, an int or one int per spatial dimension (``(H, W)`` for 2-d).
    - ``kernel_size``, ``stride``, ``padding``, ``dilation``: as ``nn.Conv2d`` takes them, an int or one
      per dimension.

    **Returns:** the output size, an int if ``size`` is an int, else a tuple of the same length.

    Raises ``ValueError`` if the (dilated) kernel does not fit the padded input, ``TypeError`` if a tuple
    has the wrong length.

    >>> conv_output_size(32, kernel_size=3, padding=1)
    32
    >>> conv_output_size((224, 224), kernel_size=7, stride=2, padding=3)
    (112, 112)
    >>> conv_output_size(10, kernel_size=3, dilation=2)  # the dilated kernel spans 5
    6
    """
    n = _dims(size)
    sz, k, s, p, d = (
        _expand(a, v, n)
        for a, v in [
            ("size", size),
            ("kernel_size", kernel_size),
            ("stride", stride),
            ("padding", padding),
            ("dilation", dilation),
        ]
    )
    _check_positive("size", sz)
    _check_positive("kernel_size", k)
    _check_positive("stride", s)
    _check_positive("dilation", d)
    _check_positive("padding", p, 0)
    out = []
    for i in range(n):
        span = d[i] * (k[i] - 1) + 1
        if sz[i] + 2 * p[i] < span:
            raise ValueError(
                f"input size {sz[i]} (+2x{p[i]} padding) is smaller than the dilated kernel {span} in dimension {i}"
            )
        out.append((sz[i] + 2 * p[i] - span) // s[i] + 1)
    return _pack(out, size)


def conv_transpose_output_size(
    size: IntOrTuple,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
) -> IntOrTuple:
    """Spatial output size of ``nn.ConvTranspose{1,2,3}d``: ``(n - 1)s - 2p + d(k-1) + output_padding + 1``.

    The arguments are those of :func:`conv_output_size` plus ``output_padding``, which must be smaller
    than the stride or the dilation (``ValueError`` otherwise, and if the output would be empty).

    **Returns:** the output size, an int if ``size`` is an int, else a tuple of the same length.

    A ``k = 4, s = 2, p = 1`` transposed convolution doubles the size, undoing the convolution with the
    same settings:

    >>> conv_transpose_output_size(16, kernel_size=4, stride=2, padding=1)
    32
    >>> conv_output_size(32, kernel_size=4, stride=2, padding=1)
    16
    >>> conv_transpose_output_size((7, 7), kernel_size=3, stride=2, padding=1, output_padding=1)
    (14, 14)
    """
    n = _dims(size)
    sz, k, s, p, op, d = (
        _expand(a, v, n)
        for a, v in [
            ("size", size),
            ("kernel_size", kernel_size),
            ("stride", stride),
            ("padding", padding),
            ("output_padding", output_padding),
            ("dilation", dilation),
        ]
    )
    _check_positive("size", sz)
    _check_positive("kernel_size", k)
    _check_positive("stride", s)
    _check_positive("dilation", d)
    _check_positive("padding", p, 0)
    _check_positive("output_padding", op, 0)
    out = []
    for i in range(n):
        if op[i] >= max(s[i], d[i]):
            raise ValueError(
                f"output_padding must be smaller than stride or dilation; got {op[i]} (stride {s[i]})"
            )
        o = (sz[i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1
        if o < 1:
            raise ValueError(f"transposed convolution output size would be {o} in dimension {i}")
        out.append(o)
    return _pack(out, size)


def pool_output_size(
    size: IntOrTuple,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> IntOrTuple:
    """Spatial output size of ``nn.MaxPool{1,2,3}d`` / ``nn.AvgPool{1,2,3}d``.

    As :func:`conv_output_size`, with ``stride`` defaulting to the kernel size and, under ``ceil_mode``,
    ``ceil`` instead of ``floor`` (a last window that would start inside the right padding is dropped, as
    PyTorch does). ``padding`` may be at most half the kernel (``ValueError`` otherwise).

    **Returns:** the output size, an int if ``size`` is an int, else a tuple of the same length.

    >>> pool_output_size(112, kernel_size=3, stride=2, padding=1)  # ResNet's stem pooling
    56
    >>> pool_output_size(7, kernel_size=2), pool_output_size(7, kernel_size=2, ceil_mode=True)
    (3, 4)
    >>> pool_output_size((6, 9), kernel_size=3)
    (2, 3)
    """
    n = _dims(size)
    stride = kernel_size if stride is None else stride
    sz, k, s, p, d = (
        _expand(a, v, n)
        for a, v in [
            ("size", size),
            ("kernel_size", kernel_size),
            ("stride", stride),
            ("padding", padding),
            ("dilation", dilation),
        ]
    )
    _check_positive("size", sz)
    _check_positive("kernel_size", k)
    _check_positive("stride", s)
    _check_positive("dilation", d)
    _check_positive("padding", p, 0)
    out = []
    for i in range(n):
        if p[i] > k[i] // 2:
            raise ValueError(
                f"padding must be at most half the kernel size; got padding {p[i]}, kernel {k[i]}"
            )
        span = d[i] * (k[i] - 1) + 1
        num = sz[i] + 2 * p[i] - span
        if num < 0:
            raise ValueError(
                f"input size {sz[i]} (+2x{p[i]} padding) is smaller than the pooling window {span}"
            )
        o = (math.ceil(num / s[i]) if ceil_mode else num // s[i]) + 1
        if ceil_mode and (o - 1) * s[i] >= sz[i] + p[i]:
            o -= 1  # the last window would start in the right padding
        out.append(o)
    return _pack(out, size)
