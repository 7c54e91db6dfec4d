"""Receptive-field arithmetic carried along the tensors of a forward pass.

Every spatial tensor gets a :class:`Field`: per spatial dimension an :class:`Axis` that knows, for each of
its elements ``o``, the first and last input pixel it sees. For strided convolutions and pooling these
windows are translates of one window (Araujo, Norris & Sim, "Computing receptive fields of convolutional
neural networks", Distill 2019)::

    size_out  = size_in + (k - 1) * d * jump_in
    jump_out  = jump_in * s
    start_out = start_in + ((k - 1) * d / 2 - p) * jump_in

with kernel ``k``, stride ``s``, padding ``p``, dilation ``d``; ``jump`` is the effective stride and
``start`` the centre of the first element's window (negative where padding reaches outside the image).
After a transposed convolution, upsampling or adaptive pooling the windows are no longer translates of
one: they repeat with a *period* of several elements (a stride-2 transposed convolution alternates between
two kinds of output). An :class:`Axis` therefore stores the windows of one period, ``lo[r]``, ``hi[r]``,
and element ``o = q * P + r`` sees ``[lo[r], hi[r]] + q * P * jump``: exact for every element, where the
single-window formulas above are the case ``P = 1``. ``size`` is then the widest window of the period.

Branches meet at additions and concatenations: the merged window is the union of the branches' windows
(so the largest over the paths), and it is *aligned* when every branch has the same jump and centre.
Fractions keep sub-pixel jumps exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import torch
from torch.utils.weak import WeakIdKeyDictionary

from nnatlas.analysis.macs import bind

aten = torch.ops.aten
Num = Fraction


@dataclass(frozen=True)
class Axis:
    """Windows along one spatial dimension: ``jump`` per element, ``lo``/``hi`` of one period of elements."""

    jump: Fraction
    lo: tuple[Fraction, ...]
    hi: tuple[Fraction, ...]

    @property
    def period(self) -> int:
        return len(self.lo)

    def window(self, o: int) -> tuple[Fraction, Fraction]:
        q, r = divmod(o, self.period)
        shift = q * self.period * self.jump
        return self.lo[r] + shift, self.hi[r] + shift

    @property
    def size(self) -> Fraction:
        return max(h - l for l, h in zip(self.lo, self.hi, strict=True)) + 1

    @property
    def start(self) -> Fraction:
        return (self.lo[0] + self.hi[0]) / 2


def _axis(jump: Fraction, period: int, windows: Callable[[int], tuple[Fraction, Fraction]]) -> Axis:
    """Build an axis from the windows of elements ``0 .. period-1``, shortening the period if it repeats."""
    lo, hi = zip(*(windows(o) for o in range(period)), strict=True)
    for q in range(1, period):
        if period % q == 0 and all(
            lo[r + q] == lo[r] + q * jump and hi[r + q] == hi[r] + q * jump for r in range(period - q)
        ):
            return Axis(Fraction(jump), tuple(lo[:q]), tuple(hi[:q]))
    return Axis(Fraction(jump), tuple(lo), tuple(hi))


def _union(ax: Axis, indices: list[int]) -> tuple[Fraction, Fraction]:
    ws = [ax.window(i) for i in indices]
    return min(w[0] for w in ws), max(w[1] for w in ws)


@dataclass(frozen=True)
class Field:
    """Receptive field of a tensor: ``axes`` are its spatial dimensions, ``dims`` one :class:`Axis` each."""

    axes: tuple[int, ...]
    dims: tuple[Axis, ...]
    aligned: bool = True
    bounded: bool = True  # False once a global quantity (a squeeze-excitation gate, ...) mixes in
    # Packed form, as inside ``nn.Linear`` on a channels-last ``(B, H, W, C)`` tensor: the first ``lead``
    # dimensions of the tensor hold the row-major merge of ``ref`` (``(B, H, W)``); ``axes`` index ``ref``.
    ref: tuple[int, ...] = ()
    lead: int = 0

    def with_axes(self, axes: tuple[int, ...]) -> Field:
        return replace(self, axes=axes, ref=(), lead=0)

    def with_dims(self, dims: list[Axis] | tuple[Axis, ...]) -> Field:
        return replace(self, dims=tuple(dims))

    def unbounded(self) -> Field:
        return replace(self, bounded=False)

    @property
    def size(self) -> tuple[Fraction, ...]:
        return tuple(a.size for a in self.dims)

    @property
    def jump(self) -> tuple[Fraction, ...]:
        return tuple(a.jump for a in self.dims)

    @property
    def start(self) -> tuple[Fraction, ...]:
        return tuple(a.start for a in self.dims)


GLOBAL = object()  # marks a tensor computed from the whole of a spatial tensor (global pooling, flattening)


def initial_field(ndim: int, n_spatial: int) -> Field:
    pixel = Axis(Fraction(1), (Fraction(0),), (Fraction(0),))
    return Field(tuple(range(ndim - n_spatial, ndim)), (pixel,) * n_spatial)


def _tuple(v: Any, n: int) -> tuple[int, ...]:
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        return ()
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(x) for x in v)
    return v * n if len(v) == 1 else v


def window(f: Field, kernel, stride, padding, dilation) -> Field:
    """Convolution or pooling: element ``o`` gathers inputs ``o*s - p + t*d`` for ``t < k``."""
    dims = []
    for ax, k, s, p, d in zip(f.dims, kernel, stride, padding, dilation, strict=True):
        period = ax.period // math.gcd(ax.period, s)
        dims.append(
            _axis(
                ax.jump * s,
                period,
                lambda o, ax=ax, k=k, s=s, p=p, d=d: _union(ax, [o * s - p + t * d for t in range(k)]),
            )
        )
    return f.with_dims(dims)


def transposed_window(f: Field, kernel, stride, padding, dilation) -> Field:
    """Transposed convolution: element ``o`` gathers the inputs ``i`` with ``i*s + t*d - p = o``, ``t < k``.

    With a kernel shorter than the stride some elements gather no input (they hold only the bias); they get
    the window of the input nearest to them, so that every element keeps a defined field.
    """
    dims = []
    for ax, k, s, p, d in zip(f.dims, kernel, stride, padding, dilation, strict=True):

        def gathers(o, ax=ax, k=k, s=s, p=p, d=d):
            idx = [(o + p - t * d) // s for t in range(k) if (o + p - t * d) % s == 0]
            return _union(ax, idx or [math.floor(Fraction(2 * (o + p) - (k - 1) * d, 2 * s))])

        dims.append(_axis(ax.jump / s, s * ax.period, gathers))
    return f.with_dims(dims)


def resample(f: Field, sizes_in, sizes_out, source: Callable[[int, int, int], list[int]]) -> Field:
    """Upsampling or adaptive pooling along each axis: element ``o`` gathers ``source(o, n_in, n_out)``.

    The pattern repeats every ``b`` outputs and ``a`` inputs, where ``a / b = n_in / n_out`` in lowest terms.
    """
    dims = []
    for ax, n, m in zip(f.dims, sizes_in, sizes_out, strict=True):
        ratio = Fraction(n, m)
        dims.append(
            _axis(
                ax.jump * ratio,
                ratio.denominator * ax.period,
                lambda o, ax=ax, n=n, m=m: _union(ax, source(o, n, m)),
            )
        )
    return f.with_dims(dims)


def nearest(o: int, n: int, m: int) -> list[int]:
    return [math.floor(Fraction(o * n, m))]  # PyTorch 'nearest': src = floor(o * n / m)


def nearest_exact(o: int, n: int, m: int) -> list[int]:
    return [math.floor((o + Fraction(1, 2)) * Fraction(n, m))]


def linear(o: int, n: int, m: int) -> list[int]:
    src = (o + Fraction(1, 2)) * Fraction(n, m) - Fraction(1, 2)  # align_corners=False
    i0 = math.floor(src)
    return [i0, i0 + 1] if src != i0 else [i0]  # a neighbour with weight 0 gets no gradient


def linear_corners(o: int, n: int, m: int) -> list[int]:
    src = o * Fraction(n - 1, m - 1) if m > 1 else Fraction(0)  # align_corners=True
    i0 = math.floor(src)
    return [i0, i0 + 1] if src != i0 else [i0]


def adaptive(o: int, n: int, m: int) -> list[int]:
    return list(range((o * n) // m, -((-(o + 1) * n) // m)))  # [floor(o n/m), ceil((o+1) n/m))


def shifted(f: Field, offsets: list[int], steps: list[int] | None = None) -> Field:
    """Element ``o`` is input element ``offset + o * step`` (cropping, slicing, padding with a negative offset)."""
    steps = steps or [1] * len(f.dims)
    dims = []
    for ax, off, st in zip(f.dims, offsets, steps, strict=True):
        period = ax.period // math.gcd(ax.period, st)
        dims.append(_axis(ax.jump * st, period, lambda o, ax=ax, off=off, st=st: ax.window(off + o * st)))
    return f.with_dims(dims)


def merge(fields: list[Field]) -> Field:
    """Union of the windows over several branches (same axes): the largest over the paths."""
    if len(fields) == 1:
        return fields[0]
    first = fields[0]
    dims = []
    aligned = all(f.aligned for f in fields)
    for i in range(len(first.axes)):
        axs = [f.dims[i] for f in fields]
        period = math.lcm(*(a.period for a in axs))
        jump = max(a.jump for a in axs)
        aligned &= len({a.jump for a in axs}) == 1 and len({a.start for a in axs}) == 1
        dims.append(
            _axis(
                jump,
                period,
                lambda o, axs=axs: (min(a.window(o)[0] for a in axs), max(a.window(o)[1] for a in axs)),
            )
        )
    return replace(first, dims=tuple(dims), aligned=aligned, bounded=all(f.bounded for f in fields))


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
_MATMULS = {aten.mm, aten.addmm, aten._addmm_activation, aten.bmm, aten.baddbmm}
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
    aten._upsample_nearest_exact1d: "nearest-exact",
    aten._upsample_nearest_exact2d: "nearest-exact",
    aten._upsample_nearest_exact3d: "nearest-exact",
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
        """The field of a tensor whose spatial dimensions are its own (not packed into rows)."""
        f = self.fields.get(t) if isinstance(t, torch.Tensor) else None
        return f if isinstance(f, Field) and not f.lead else None

    def propagate(self, func: Any, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
        ins = _tensors(list(args) + list(kwargs.values()))
        known = [(t, self.fields[t]) for t in ins if t in self.fields]
        if not known:
            return
        outs = _tensors(out)
        if not outs:
            return
        if any(t.is_nested for t in ins + outs):  # ragged sequences: no spatial layout to follow
            for y in outs:
                self.fields[y] = GLOBAL
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
        if packet in _MATMULS:
            # rows of the first operand go to rows of the output; a field on the second operand means every
            # output mixes all its positions (attention scores, A V): global
            b = bind(func, args, kwargs)
            first = next(b[k] for k in ("mat1", "batch1", "self") if k in b)  # addmm: self is the bias
            second = next(b[k] for k in ("mat2", "batch2") if k in b)
            if second in self.fields:
                return GLOBAL
            kept = [(t, g) for t, g in spatial if t is first]
            return self._pointwise(kept, y, rows=True) if kept else GLOBAL
        if packet in _VIEWS:
            return self._view(f, x, y)
        if f.lead:
            return self._pointwise(spatial, y)
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
        sizes_in, sizes_out = tuple(x.shape[-n:]), tuple(y.shape[-n:])
        if packet in _ADAPTIVE and f.axes == tail:
            if all(m == 1 for m in sizes_out) and any(v > 1 for v in sizes_in):
                return GLOBAL  # global pooling: every output sees the whole input
            return resample(f, sizes_in, sizes_out, adaptive)
        if packet in _UPSAMPLE and f.axes == tail:
            if _UPSAMPLE[packet] in ("nearest", "nearest-exact"):
                return resample(
                    f, sizes_in, sizes_out, nearest if _UPSAMPLE[packet] == "nearest" else nearest_exact
                )
            corners = bool(bind(func, args, kwargs).get("align_corners"))
            return resample(f, sizes_in, sizes_out, linear_corners if corners else linear)
        if packet in _PADS and f.axes == tail:
            b = bind(func, args, kwargs)
            pad = list(b["pad"] if "pad" in b else b["padding"])
            offsets = [0] * n
            for j in range(min(len(pad) // 2, n)):  # (left_last, right_last, left_prev, right_prev, ...)
                offsets[n - 1 - j] = -pad[2 * j]
            return shifted(f, offsets)
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
                offsets, steps = [0] * n, [1] * n
                offsets[i], steps[i] = begin, b["step"] or 1
                return shifted(f, offsets, steps)
            return f
        if packet is aten.permute:
            dims = [d % x.dim() for d in bind(func, args, kwargs)["dims"]]
            return f.with_axes(tuple(dims.index(a) for a in f.axes))
        if packet in (aten.transpose, aten.transpose_):
            b = bind(func, args, kwargs)
            d0, d1 = b["dim0"] % x.dim(), b["dim1"] % x.dim()
            swap = {d0: d1, d1: d0}
            return f.with_axes(tuple(swap.get(a, a) for a in f.axes))
        if packet is aten.select:
            b = bind(func, args, kwargs)
            dim = b["dim"] % x.dim()
            if dim in f.axes:
                return GLOBAL
            return f.with_axes(tuple(a - (a > dim) for a in f.axes))
        return self._pointwise(spatial, y)

    @staticmethod
    def _view(f: Field, x: torch.Tensor, y: torch.Tensor) -> Field | object:
        """A row-major reshape: find the spatial axes in the new shape, or pack them into leading rows."""
        src = f.ref if f.lead else tuple(x.shape)
        axes = _reshaped_axes(f.axes, torch.Size(src), y.shape)
        if axes is not None:
            return f.with_axes(axes)
        block = math.prod(src[: max(f.axes) + 1])
        for j in range(1, y.dim() + 1):
            if math.prod(y.shape[:j]) == block:
                return replace(f, ref=tuple(src[: max(f.axes) + 1]), lead=j)
        return GLOBAL

    @staticmethod
    def _pointwise(
        spatial: list[tuple[torch.Tensor, Field]], y: torch.Tensor, rows: bool = False
    ) -> Field | None:
        """Element-wise (with broadcasting) or channel-wise: the spatial axes keep their place and size.

        A packed field (and, with ``rows``, a matrix product's first operand) keeps its leading rows.
        """
        keep = []
        for x, f in spatial:
            if f.lead or rows:
                lead = f.lead or (max(f.axes) + 1)
                if y.dim() >= lead and tuple(y.shape[:lead]) == tuple(x.shape[:lead]):
                    keep.append(f)
            elif y.dim() == x.dim() and all(y.shape[a] == x.shape[a] for a in f.axes):
                keep.append(f)
        if not keep:
            return None
        key = (keep[0].axes, keep[0].ref, keep[0].lead)
        return merge([k for k in keep if (k.axes, k.ref, k.lead) == key])
