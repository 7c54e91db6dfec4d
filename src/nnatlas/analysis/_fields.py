"""Receptive-field arithmetic carried along the tensors of a forward pass.

Every spatial tensor gets a :class:`Field`: per spatial dimension the ``size`` of the input window one of
its elements sees, the ``jump`` (effective stride: input pixels between neighbouring elements) and the
``start`` (centre of the first element's window, in input pixel coordinates, negative where padding
reaches outside the image). A layer with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d``
maps them as (Araujo, Norris & Sim, "Computing receptive fields of convolutional neural networks",
Distill 2019)::

    size_out  = size_in + (k - 1) * d * jump_in
    jump_out  = jump_in * s
    start_out = start_in + ((k - 1) * d / 2 - p) * jump_in

Branches meet at additions and concatenations: the merged field is the union of the branches' windows
(so the largest over the paths), and it is *aligned* when every branch has the same jump and centre.
Fractions keep transposed convolutions and upsampling (``jump`` below one pixel) exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
from torch.utils.weak import WeakIdKeyDictionary

from nnatlas.analysis.macs import bind

aten = torch.ops.aten
Num = Fraction


@dataclass(frozen=True)
class Field:
    """Receptive field of a tensor: ``axes`` are its spatial dimensions, the rest one value per axis."""

    axes: tuple[int, ...]
    size: tuple[Num, ...]
    jump: tuple[Num, ...]
    start: tuple[Num, ...]
    aligned: bool = True
    bounded: bool = True  # False once a global quantity (a squeeze-excitation gate, ...) mixes in

    def with_axes(self, axes: tuple[int, ...]) -> Field:
        return Field(axes, self.size, self.jump, self.start, self.aligned, self.bounded)

    def unbounded(self) -> Field:
        return Field(self.axes, self.size, self.jump, self.start, self.aligned, False)


GLOBAL = object()  # marks a tensor computed from the whole of a spatial tensor (global pooling, flattening)


def initial_field(ndim: int, n_spatial: int) -> Field:
    one, zero = Fraction(1), Fraction(0)
    return Field(
        tuple(range(ndim - n_spatial, ndim)), (one,) * n_spatial, (one,) * n_spatial, (zero,) * n_spatial
    )


def _tuple(v: Any, n: int) -> tuple[int, ...]:
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        return ()
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(x) for x in v)
    return v * n if len(v) == 1 else v


def window(f: Field, kernel: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...], dilation):
    """Field after a convolution or pooling window over the last ``len(kernel)`` dimensions."""
    size, jump, start = [], [], []
    for i in range(len(f.axes)):
        k, s, p, d = kernel[i], stride[i], padding[i], dilation[i]
        size.append(f.size[i] + (k - 1) * d * f.jump[i])
        start.append(f.start[i] + (Fraction((k - 1) * d, 2) - p) * f.jump[i])
        jump.append(f.jump[i] * s)
    return Field(f.axes, tuple(size), tuple(jump), tuple(start), f.aligned, f.bounded)


def transposed_window(f: Field, kernel, stride, padding, dilation) -> Field:
    """Field after a transposed convolution: output ``o`` gathers inputs ``i`` with ``i*s + t*d - p = o``.

    The jump shrinks to ``jump_in / s``; the size grows by the widest span of input positions any output
    gathers (brute force over the ``s`` residues of ``o``); the start is the centre of the inputs output 0
    gathers.
    """
    size, jump, start = [], [], []
    for i in range(len(f.axes)):
        k, s, p, d = kernel[i], stride[i], padding[i], dilation[i]
        widest = 0
        for r in range(s):
            taps = [t for t in range(k) if (r - t * d) % s == 0]
            if taps:
                widest = max(widest, (max(taps) - min(taps)) * d // s)
        taps0 = [t for t in range(k) if (p - t * d) % s == 0]
        centre_tap = Fraction(min(taps0) + max(taps0), 2) if taps0 else Fraction(k - 1, 2)
        size.append(f.size[i] + widest * f.jump[i])
        start.append(f.start[i] + (p - centre_tap * d) / s * f.jump[i])
        jump.append(f.jump[i] / s)
    return Field(f.axes, tuple(size), tuple(jump), tuple(start), f.aligned, f.bounded)


def merge(fields: list[Field]) -> Field:
    """Union of the windows of the first element over several branches (same axes)."""
    if len(fields) == 1:
        return fields[0]
    first = fields[0]
    size, jump, start = [], [], []
    aligned = all(f.aligned for f in fields)
    for i in range(len(first.axes)):
        lo = min(f.start[i] - (f.size[i] - 1) / 2 for f in fields)
        hi = max(f.start[i] + (f.size[i] - 1) / 2 for f in fields)
        size.append(hi - lo + 1)
        start.append((lo + hi) / 2)
        jump.append(max(f.jump[i] for f in fields))
        aligned &= len({f.jump[i] for f in fields}) == 1 and len({f.start[i] for f in fields}) == 1
    return Field(first.axes, tuple(size), tuple(jump), tuple(start), aligned, all(f.bounded for f in fields))


def _adaptive(f: Field, x: torch.Tensor, out_size: tuple[int, ...]) -> Field | object:
    """Adaptive pooling: window ``[floor(o n/m), ceil((o+1) n/m))``; pooling to a single element is global."""
    ins = [x.shape[a] for a in f.axes]
    if all(m == 1 for m in out_size) and any(n > 1 for n in ins):
        return GLOBAL
    size, jump, start = [], [], []
    for i, (n, m) in enumerate(zip(ins, out_size, strict=True)):
        widest = max(math.ceil((o + 1) * n / m) - (o * n) // m for o in range(m))
        first = math.ceil(n / m)  # window of output 0: [0, ceil(n/m))
        size.append(f.size[i] + (widest - 1) * f.jump[i])
        start.append(f.start[i] + Fraction(first - 1, 2) * f.jump[i])
        jump.append(f.jump[i] * Fraction(n, m))
    return Field(f.axes, tuple(size), tuple(jump), tuple(start), f.aligned, f.bounded)


def _upsample(f: Field, x: torch.Tensor, y: torch.Tensor, mode: str, align_corners: bool) -> Field:
    size, jump, start = [], [], []
    for i, a in enumerate(f.axes):
        n, m = x.shape[a], y.shape[a]
        if mode == "nearest":  # output o copies input floor(o * n / m)
            size.append(f.size[i])
            start.append(f.start[i])
            jump.append(f.jump[i] * Fraction(n, m))
        elif align_corners:  # src = o (n-1)/(m-1), between two inputs
            ratio = Fraction(n - 1, m - 1) if m > 1 else Fraction(0)
            size.append(f.size[i] + f.jump[i])
            start.append(f.start[i])
            jump.append(f.jump[i] * ratio)
        else:  # src = (o + 1/2) n/m - 1/2, clamped at 0
            ratio = Fraction(n, m)
            src0 = max(Fraction(1, 2) * ratio - Fraction(1, 2), Fraction(0))
            size.append(f.size[i] + f.jump[i])
            start.append(f.start[i] + src0 * f.jump[i])
            jump.append(f.jump[i] * ratio)
    return Field(f.axes, tuple(size), tuple(jump), tuple(start), f.aligned, f.bounded)


def _reshaped_axes(axes: tuple[int, ...], before: torch.Size, after: torch.Size) -> tuple[int, ...] | None:
    """Where the spatial axes went in a row-major reshape: same size and same number of elements before."""
    out = []
    prefix_after = [math.prod(after[:j]) for j in range(len(after))]
    for a in axes:
        pre = math.prod(before[:a])
        match = [j for j in range(len(after)) if after[j] == before[a] and prefix_after[j] == pre]
        if not match:
            return None
        out.append(match[0])
    return tuple(out)


_VIEWS = {
    aten.view,
    aten._unsafe_view,
    aten.reshape,
    aten.unsqueeze,
    aten.unsqueeze_,
    aten.squeeze,
    aten.squeeze_,
    aten.flatten,
    aten.unflatten,
    aten.alias,
}
_POOLS = {
    aten.max_pool1d,
    aten.max_pool2d,
    aten.max_pool2d_with_indices,
    aten.max_pool3d_with_indices,
    aten.avg_pool1d,
    aten.avg_pool2d,
    aten.avg_pool3d,
}
_ADAPTIVE = {
    aten._adaptive_avg_pool2d,
    aten._adaptive_avg_pool3d,
    aten.adaptive_max_pool2d,
    aten.adaptive_max_pool3d,
    aten.adaptive_avg_pool1d,
    aten.adaptive_max_pool1d,
}
_UPSAMPLE = {
    aten.upsample_nearest1d: "nearest",
    aten.upsample_nearest2d: "nearest",
    aten.upsample_nearest3d: "nearest",
    aten._upsample_nearest_exact2d: "nearest",
    aten.upsample_linear1d: "linear",
    aten.upsample_bilinear2d: "linear",
    aten.upsample_trilinear3d: "linear",
    aten.upsample_bicubic2d: "linear",
}
_PADS = {aten.constant_pad_nd, aten.reflection_pad2d, aten.replication_pad2d, aten.reflection_pad1d}


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    return []


class FieldPropagator:
    """Maps every tensor produced during a forward pass to its :class:`Field` (or :data:`GLOBAL`)."""

    def __init__(self) -> None:
        self.fields: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def seed(self, x: torch.Tensor, n_spatial: int) -> None:
        self.fields[x] = initial_field(x.dim(), n_spatial)

    def get(self, t: Any) -> Field | None:
        f = self.fields.get(t) if isinstance(t, torch.Tensor) else None
        return f if isinstance(f, Field) else None

    def propagate(self, func: Any, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
        ins = _tensors(list(args) + list(kwargs.values()))
        known = [(t, self.fields[t]) for t in ins if t in self.fields]
        if not known:
            return
        outs = _tensors(out)
        if not outs:
            return
        packet = func.overloadpacket
        spatial = [(t, f) for t, f in known if isinstance(f, Field)]
        tainted = len(spatial) < len(known)
        result = self._rule(packet, func, args, kwargs, spatial, outs) if spatial else None
        for j, y in enumerate(outs):
            f = result if j == 0 else self._pointwise(spatial, y)
            if f is None or f is GLOBAL:
                self.fields[y] = GLOBAL
            else:
                self.fields[y] = f.unbounded() if tainted else f

    # -- one rule per kind of operator -------------------------------------------------------------

    def _rule(self, packet, func, args, kwargs, spatial, outs) -> Field | object | None:
        y = outs[0]
        x, f = spatial[0]
        n = len(f.axes)
        tail = tuple(range(x.dim() - n, x.dim()))
        if packet in (aten.convolution, aten._convolution):
            b = bind(func, args, kwargs)
            if x is not b["input"] or f.axes != tail:
                return self._pointwise(spatial, y)
            w = b["weight"]
            kernel = tuple(w.shape[2:])
            geo = (_tuple(b["stride"], n), _tuple(b["padding"], n), _tuple(b["dilation"], n))
            if b["transposed"]:
                return transposed_window(f, kernel, *geo)
            return window(f, kernel, *geo)
        if packet in _POOLS and f.axes == tail:
            b = bind(func, args, kwargs)
            kernel = _tuple(b["kernel_size"], n)
            stride = _tuple(b["stride"], n) or kernel
            dilation = _tuple(b.get("dilation", 1), n) if "dilation" in b else (1,) * n
            return window(f, kernel, stride, _tuple(b["padding"], n), dilation)
        if packet in _ADAPTIVE and f.axes == tail:
            return _adaptive(f, x, tuple(y.shape[-n:]))
        if packet in _UPSAMPLE and f.axes == tail:
            b = bind(func, args, kwargs)
            mode = _UPSAMPLE[packet]
            return _upsample(f, x, y, mode, bool(b.get("align_corners")) if mode == "linear" else False)
        if packet in _PADS and f.axes == tail:
            pad = list(bind(func, args, kwargs)["pad"])  # (left_last, right_last, left_prev, ...)
            start = list(f.start)
            for j in range(min(len(pad) // 2, n)):
                i = n - 1 - j
                start[i] = start[i] - pad[2 * j] * f.jump[i]
            return Field(f.axes, f.size, f.jump, tuple(start), f.aligned, f.bounded)
        if packet is aten.cat:
            b = bind(func, args, kwargs)
            dim = b["dim"] % x.dim()
            if dim in f.axes:
                return GLOBAL
            return self._pointwise(spatial, y)
        if packet is aten.slice:
            b = bind(func, args, kwargs)
            dim = b["dim"] % x.dim()
            if dim in f.axes:
                i = f.axes.index(dim)
                begin = b["start"] or 0
                begin = begin + x.shape[dim] if begin < 0 else min(begin, x.shape[dim])
                step = b["step"] or 1
                start, jump = list(f.start), list(f.jump)
                start[i] += begin * f.jump[i]
                jump[i] *= step
                return Field(f.axes, f.size, tuple(jump), tuple(start), f.aligned, f.bounded)
            return f
        if packet is aten.permute:
            dims = [d % x.dim() for d in bind(func, args, kwargs)["dims"]]
            return f.with_axes(tuple(dims.index(a) for a in f.axes))
        if packet in (aten.transpose, aten.transpose_):
            b = bind(func, args, kwargs)
            d0, d1 = b["dim0"] % x.dim(), b["dim1"] % x.dim()
            swap = {d0: d1, d1: d0}
            return f.with_axes(tuple(swap.get(a, a) for a in f.axes))
        if packet in _VIEWS:
            axes = _reshaped_axes(f.axes, x.shape, y.shape)
            return GLOBAL if axes is None else f.with_axes(axes)
        if packet is aten.select:
            b = bind(func, args, kwargs)
            dim = b["dim"] % x.dim()
            if dim in f.axes:
                return GLOBAL
            return f.with_axes(tuple(a - (a > dim) for a in f.axes))
        return self._pointwise(spatial, y)

    @staticmethod
    def _pointwise(spatial: list[tuple[torch.Tensor, Field]], y: torch.Tensor) -> Field | None:
        """Element-wise (with broadcasting) or channel-wise: the spatial axes keep their place and size."""
        keep = []
        for x, f in spatial:
            if y.dim() == x.dim() and all(y.shape[a] == x.shape[a] for a in f.axes):
                keep.append(f)
        if not keep:
            return None
        by_axes = [k for k in keep if k.axes == keep[0].axes]
        return merge(by_axes)
