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
Integers, and fractions where a jump falls below one pixel, keep every value exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any, NamedTuple

import torch

from nnatlas.analysis.macs import bind

aten = torch.ops.aten
Num = int | Fraction  # an int wherever the value is whole (fast), a Fraction below one pixel


def _num(v: Num) -> Num:
    return v.numerator if type(v) is Fraction and v.denominator == 1 else v


class Axis(NamedTuple):
    """Windows along one spatial dimension: ``jump`` per element, ``lo``/``hi`` of one period of elements."""

    jump: Num
    lo: tuple[Num, ...]
    hi: tuple[Num, ...]

    @property
    def period(self) -> int:
        return len(self.lo)

    def window(self, o: int) -> tuple[Num, Num]:
        q, r = divmod(o, self.period)
        shift = q * self.period * self.jump
        return self.lo[r] + shift, self.hi[r] + shift

    @property
    def size(self) -> Num:
        return max(h - l for l, h in zip(self.lo, self.hi, strict=True)) + 1

    @property
    def start(self) -> Num:
        twice = self.lo[0] + self.hi[0]
        return twice // 2 if type(twice) is int and twice % 2 == 0 else _num(Fraction(twice) / 2)


def _axis(jump: Num, period: int, windows: Callable[[int], tuple[Num, Num]]) -> Axis:
    """Build an axis from the windows of elements ``0 .. period-1``, shortening the period if it repeats."""
    jump = _num(jump)
    if period == 1:
        lo0, hi0 = windows(0)
        return Axis(jump, (_num(lo0),), (_num(hi0),))
    lo, hi = zip(*(windows(o) for o in range(period)), strict=True)
    lo, hi = tuple(_num(v) for v in lo), tuple(_num(v) for v in hi)
    for q in range(1, period):
        if period % q == 0 and all(
            lo[r + q] == lo[r] + q * jump and hi[r + q] == hi[r] + q * jump for r in range(period - q)
        ):
            return Axis(jump, lo[:q], hi[:q])
    return Axis(jump, lo, hi)


def _union(ax: Axis, indices: list[int]) -> tuple[Num, Num]:
    ws = [ax.window(i) for i in indices]
    return min(w[0] for w in ws), max(w[1] for w in ws)


class Field(NamedTuple):
    """Receptive field of a tensor: ``axes`` are its spatial dimensions, ``dims`` one :class:`Axis` each.

    (A named tuple rather than a dataclass: one is made for almost every operator of a forward pass.)
    """

    axes: tuple[int, ...]
    dims: tuple[Axis, ...]
    aligned: bool = True
    bounded: bool = True  # False once a global quantity (a squeeze-excitation gate, ...) mixes in
    # Packed form, as inside ``nn.Linear`` on a channels-last ``(B, H, W, C)`` tensor: the first ``lead``
    # dimensions of the tensor hold the row-major merge of ``ref`` (``(B, H, W)``); ``axes`` index ``ref``.
    ref: tuple[int, ...] = ()
    lead: int = 0
    sources: tuple[int | str, ...] = (0,)  # the inputs (positional index or keyword) whose pixels these are

    def with_axes(self, axes: tuple[int, ...]) -> Field:
        return Field(axes, self.dims, self.aligned, self.bounded, (), 0, self.sources)

    def with_dims(self, dims: list[Axis] | tuple[Axis, ...]) -> Field:
        return Field(self.axes, tuple(dims), self.aligned, self.bounded, self.ref, self.lead, self.sources)

    def unbounded(self) -> Field:
        return self._replace(bounded=False)

    @property
    def size(self) -> tuple[Num, ...]:
        return tuple(a.size for a in self.dims)

    @property
    def jump(self) -> tuple[Num, ...]:
        return tuple(a.jump for a in self.dims)

    @property
    def start(self) -> tuple[Num, ...]:
        return tuple(a.start for a in self.dims)


class Global(NamedTuple):
    """A tensor whose every element may depend on every position of a spatial input.

    Made by an operator the window arithmetic cannot follow: global pooling, attention between positions, a
    matrix product or reshape that mixes positions, a concatenation along a spatial axis (ViT's class
    token), a reshape that splits a spatial axis (Swin's window partition), a cyclic shift. ``op`` and
    ``layer`` say where it first happened on this tensor's path; tensors computed from it keep that origin.
    """

    op: str
    layer: str
    sources: tuple[int | str, ...] = (0,)


def initial_field(ndim: int, n_spatial: int, source: int | str = 0) -> Field:
    pixel = Axis(1, (0,), (0,))
    return Field(tuple(range(ndim - n_spatial, ndim)), (pixel,) * n_spatial, sources=(source,))


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
        if len(ax.lo) == 1:  # translates of one window: the first gathers inputs -p .. (k-1)d - p
            j = ax.jump
            dims.append(
                Axis(_num(j * s), (_num(ax.lo[0] - p * j),), (_num(ax.hi[0] + ((k - 1) * d - p) * j),))
            )
            continue
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

        dims.append(_axis(Fraction(ax.jump) / s, s * ax.period, gathers))
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
    first = fields[0]
    if all(f is first for f in fields):
        return first
    if all(len(a.lo) == 1 for f in fields for a in f.dims):  # one window each: union of the windows
        dims, aligned = [], all(f.aligned for f in fields)
        for axs in zip(*(f.dims for f in fields), strict=True):
            jumps = {a.jump for a in axs}
            aligned &= len(jumps) == 1 and len({a.lo[0] + a.hi[0] for a in axs}) == 1
            lo, hi = min(a.lo[0] for a in axs), max(a.hi[0] for a in axs)
            dims.append(Axis(max(jumps), (lo,), (hi,)) if len(jumps) == 1 else None)
        if all(d is not None for d in dims):
            return first._replace(
                dims=tuple(dims),
                aligned=aligned,
                bounded=all(f.bounded for f in fields),
                sources=_sources(fields),
            )
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
    return first._replace(
        dims=tuple(dims), aligned=aligned, bounded=all(f.bounded for f in fields), sources=_sources(fields)
    )


def _sources(values: list[Any]) -> tuple[int | str, ...]:
    seen: dict[int | str, None] = {}
    for v in values:
        for s in v.sources:
            seen[s] = None
    return tuple(seen)


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


# -- the rules: one small function per kind of operator ------------------------------------------------
#
# A rule gets the call (its arguments, the first input with a field and that field) and returns the field
# of the first output, a Global, or None (the output mixes positions: it becomes Global here). Operators
# without a rule are element-wise or channel-wise (``_default``): same spatial sizes, same field.


class _Call:
    """One operator call seen by the propagator: its arguments, the first spatial input and its field."""

    __slots__ = ("func", "args", "kwargs", "x", "f", "spatial", "y", "known", "_bound")

    def __init__(self, func, args, kwargs, spatial, y, known) -> None:
        self.func, self.args, self.kwargs = func, args, kwargs
        self.spatial = spatial  # [(tensor, Field)] inputs with a spatial field
        self.x, self.f = spatial[0]
        self.y = y
        self.known = known  # every input tensor with a value (Field or Global), by id
        self._bound: dict[str, Any] | None = None

    @property
    def bound(self) -> dict[str, Any]:
        if self._bound is None:
            self._bound = bind(self.func, self.args, self.kwargs)
        return self._bound

    def has_value(self, t: Any) -> bool:
        return isinstance(t, torch.Tensor) and id(t) in self.known

    @property
    def tail(self) -> bool:
        """The spatial axes are the last dimensions of the input, in order, and not packed."""
        n = len(self.f.axes)
        return not self.f.lead and self.f.axes == tuple(range(self.x.dim() - n, self.x.dim()))


Rule = Callable[[_Call], "Field | Global | None"]
_RULES: dict[Any, Rule] = {}


def _rule(*ops: Any) -> Callable[[Rule], Rule]:
    """Register ``fn`` as the rule of every op (an ``OpOverloadPacket``) this torch build has."""

    def register(fn: Rule) -> Rule:
        for op in ops:
            if op is not None:
                _RULES[op] = fn
        return fn

    return register


def _op(name: str) -> Any:
    return getattr(aten, name, None)


def pointwise(spatial: list[tuple[torch.Tensor, Field]], y: torch.Tensor, rows: bool = False) -> Field | None:
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


def _default(c: _Call) -> Field | Global | None:
    return pointwise(c.spatial, c.y)


@_rule(aten.mm, aten.addmm, aten._addmm_activation, aten.bmm, aten.baddbmm)
def _matmul(c: _Call) -> Field | Global | None:
    # rows of the first operand go to rows of the output; a field on the second operand means every
    # output mixes all its positions (attention scores, A V)
    b = c.bound
    first = next(b[k] for k in ("mat1", "batch1", "self") if k in b)  # addmm: self is the bias
    second = next(b[k] for k in ("mat2", "batch2") if k in b)
    if c.has_value(second):
        return None
    kept = [(t, g) for t, g in c.spatial if t is first]
    return pointwise(kept, c.y, rows=True) if kept else None


@_rule(
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_cudnn_attention,
    _op("_scaled_dot_product_fused_attention_overrideable"),
    aten._flash_attention_forward,
    aten._efficient_attention_forward,
    aten._native_multi_head_attention,
)
def _attention(c: _Call) -> Field | Global | None:
    # each query row sees every key: positions on the key or value side mix; a query-only field keeps rows
    b = c.bound
    if c.has_value(b["key"]) or c.has_value(b["value"]):
        return None
    kept = [(t, g) for t, g in c.spatial if t is b["query"]]
    if not kept:
        return None
    t, g = kept[0]
    return pointwise([(t, g)], c.y, rows=True) if not g.lead else pointwise(kept, c.y)


@_rule(aten._transformer_encoder_layer_fwd, aten._trilinear, aten.mv, aten.dot, aten.addmv, aten.addbmm)
def _mixing(c: _Call) -> None:
    return None  # self-attention over the positions, or a contraction over every dimension


@_rule(aten.view, aten._unsafe_view, aten.reshape, aten.unsqueeze, aten.unsqueeze_, aten.squeeze)
@_rule(aten.squeeze_, aten.flatten, aten.unflatten, aten.alias)
def _view(c: _Call) -> Field | Global | None:
    """A row-major reshape: find the spatial axes in the new shape, or pack them into leading rows."""
    f, x, y = c.f, c.x, c.y
    src = f.ref if f.lead else tuple(x.shape)
    axes = _reshaped_axes(f.axes, torch.Size(src), y.shape)
    if axes is not None:
        return f.with_axes(axes)
    block = math.prod(src[: max(f.axes) + 1])
    for j in range(1, y.dim() + 1):
        if math.prod(y.shape[:j]) == block:
            return f._replace(ref=tuple(src[: max(f.axes) + 1]), lead=j)
    return None


@_rule(aten.convolution, aten._convolution, _op("convolution_overrideable"))
def _conv(c: _Call) -> Field | Global | None:
    b = c.bound
    if c.x is not b["input"] or not c.tail:
        return pointwise(c.spatial, c.y)
    n = len(c.f.axes)
    kernel = tuple(b["weight"].shape[2:])
    geo = (_tuple(b["stride"], n), _tuple(b["padding"], n), _tuple(b["dilation"], n))
    if b["transposed"]:
        return transposed_window(c.f, kernel, *geo)
    return window(c.f, kernel, *geo)


@_rule(
    aten.max_pool1d,
    aten.max_pool2d,
    aten.max_pool2d_with_indices,
    aten.max_pool3d_with_indices,
    aten.avg_pool1d,
    aten.avg_pool2d,
    aten.avg_pool3d,
)
def _pool(c: _Call) -> Field | Global | None:
    if not c.tail:
        return pointwise(c.spatial, c.y)
    b, n = c.bound, len(c.f.axes)
    m = 3 if "3d" in str(c.func) else 2 if "2d" in str(c.func) else 1  # the trailing dimensions pooled

    def spatial(v: Any, fill: int) -> tuple[int, ...]:
        # The pooled dimensions may reach past the spatial ones (local response normalisation pools
        # (channel, H, W) with a window over channels only): keep the last n; dimensions not pooled get
        # ``fill`` (kernel 1, stride 1, padding 0).
        t = _tuple(v, m)
        return () if not t else ((fill,) * max(0, n - m) + t)[-n:]

    kernel = spatial(b["kernel_size"], 1)
    stride = spatial(b["stride"], 1) or kernel
    dilation = spatial(b["dilation"], 1) if "dilation" in b else (1,) * n
    return window(c.f, kernel, stride, spatial(b["padding"], 0), dilation)


def _sizes(c: _Call) -> tuple[tuple[int, ...], tuple[int, ...]]:
    n = len(c.f.axes)
    return tuple(c.x.shape[-n:]), tuple(c.y.shape[-n:])


@_rule(
    aten._adaptive_avg_pool2d,
    aten._adaptive_avg_pool3d,
    aten.adaptive_max_pool2d,
    aten.adaptive_max_pool3d,
    aten.adaptive_avg_pool1d,
    aten.adaptive_max_pool1d,
)
def _adaptive(c: _Call) -> Field | Global | None:
    if not c.tail:
        return pointwise(c.spatial, c.y)
    sizes_in, sizes_out = _sizes(c)
    if all(m == 1 for m in sizes_out) and any(v > 1 for v in sizes_in):
        return None  # global pooling: every output sees the whole input
    return resample(c.f, sizes_in, sizes_out, adaptive)


def _upsampling(source: Callable[[int, int, int], list[int]] | None) -> Rule:
    def rule(c: _Call) -> Field | Global | None:
        if not c.tail:
            return pointwise(c.spatial, c.y)
        how = source or (linear_corners if c.bound.get("align_corners") else linear)
        return resample(c.f, *_sizes(c), how)

    return rule


_rule(aten.upsample_nearest1d, aten.upsample_nearest2d, aten.upsample_nearest3d)(_upsampling(nearest))
_rule(aten._upsample_nearest_exact1d, aten._upsample_nearest_exact2d, aten._upsample_nearest_exact3d)(
    _upsampling(nearest_exact)
)
_rule(aten.upsample_linear1d, aten.upsample_bilinear2d, aten.upsample_trilinear3d, aten.upsample_bicubic2d)(
    _upsampling(None)
)


@_rule(
    aten.constant_pad_nd,
    aten.reflection_pad1d,
    aten.reflection_pad2d,
    aten.reflection_pad3d,
    aten.replication_pad1d,
    aten.replication_pad2d,
    aten.replication_pad3d,
)
def _pad(c: _Call) -> Field | Global | None:
    if not c.tail:
        return pointwise(c.spatial, c.y)
    b, n = c.bound, len(c.f.axes)
    pad = list(b["pad"] if "pad" in b else b["padding"])
    offsets = [0] * n
    for j in range(min(len(pad) // 2, n)):  # (left_last, right_last, left_prev, right_prev, ...)
        offsets[n - 1 - j] = -pad[2 * j]
    return shifted(c.f, offsets)


def _dim(c: _Call, name: str = "dim") -> int:
    return c.bound[name] % c.x.dim()


@_rule(aten.cat)
def _cat(c: _Call) -> Field | Global | None:
    if c.f.lead:
        return pointwise(c.spatial, c.y)
    if _dim(c) in c.f.axes:
        return None  # positions of several tensors side by side
    return pointwise(c.spatial, c.y)


@_rule(aten.stack)
def _stack(c: _Call) -> Field | Global | None:
    d = c.bound["dim"] % c.y.dim()
    spatial = [(t, g) for t, g in c.spatial if not g.lead]
    if not spatial:
        return None
    f = merge([g for _, g in spatial if g.axes == spatial[0][1].axes])
    return f.with_axes(tuple(a + (a >= d) for a in f.axes))


@_rule(aten.slice)
def _slice(c: _Call) -> Field | Global | None:
    if c.f.lead:
        return pointwise(c.spatial, c.y)
    b, x, f = c.bound, c.x, c.f
    dim = _dim(c)
    if dim not in f.axes:
        return f
    n = len(f.axes)
    i = f.axes.index(dim)
    begin = b["start"] or 0
    begin = begin + x.shape[dim] if begin < 0 else min(begin, x.shape[dim])
    offsets, steps = [0] * n, [1] * n
    offsets[i], steps[i] = begin, b["step"] or 1
    return shifted(f, offsets, steps)


@_rule(aten.permute)
def _permute(c: _Call) -> Field | Global | None:
    dims = [d % c.x.dim() for d in c.bound["dims"]]
    if c.f.lead:
        return _permute_packed(c.f, c.x, dims)
    return c.f.with_axes(tuple(dims.index(a) for a in c.f.axes))


def _permute_packed(f: Field, x: torch.Tensor, dims: list[int]) -> Field | None:
    """A permutation of a packed tensor that brings the dimensions holding positions first.

    ViT: ``(B, C, H*W)``, packed from ``(B, C, H, W)``, permuted to ``(B, H*W, C)``: its first two
    dimensions hold the row-major merge of ``(B, H, W)``.
    """
    groups = _groups(f.ref, tuple(x.shape[: f.lead]))
    if groups is None:
        return None
    needed = {j for j, g in enumerate(groups) if any(a in g for a in f.axes)}
    kept: list[int] = []
    for d in dims:
        if d >= f.lead:
            return None  # a dimension that is not part of the packed rows comes before the positions
        kept.append(d)
        if needed <= set(kept):
            break
    ref_dims = [r for d in kept for r in groups[d]]
    ref = tuple(f.ref[r] for r in ref_dims)
    axes = tuple(ref_dims.index(a) for a in f.axes)
    if all(len(groups[d]) == 1 for d in kept):  # one tensor dimension per row dimension: unpacked
        return f._replace(axes=axes, ref=(), lead=0)
    return f._replace(ref=ref, axes=axes, lead=len(kept))


def _groups(ref: tuple[int, ...], shape: tuple[int, ...]) -> list[tuple[int, ...]] | None:
    """Which dimensions of ``ref`` each dimension of ``shape`` merges (row-major), or ``None``."""
    groups, r = [], 0
    for size in shape:
        group, prod = [], 1
        while prod < size and r < len(ref):
            prod *= ref[r]
            group.append(r)
            r += 1
        while size == 1 and not group and r < len(ref) and ref[r] == 1:
            group.append(r)
            r += 1
        if prod != size:
            return None
        groups.append(tuple(group))
    return groups if r == len(ref) else None


@_rule(aten.transpose, aten.transpose_, aten.t)
def _transpose(c: _Call) -> Field | Global | None:
    if c.func.overloadpacket is aten.t:
        d0, d1 = 0, c.x.dim() - 1
    else:
        d0, d1 = _dim(c, "dim0"), _dim(c, "dim1")
    if c.f.lead:
        dims = list(range(c.x.dim()))
        dims[d0], dims[d1] = d1, d0
        return _permute_packed(c.f, c.x, dims)
    swap = {d0: d1, d1: d0}
    return c.f.with_axes(tuple(swap.get(a, a) for a in c.f.axes))


@_rule(aten.select)
def _select(c: _Call) -> Field | Global | None:
    if c.f.lead:
        return pointwise(c.spatial, c.y)
    dim = _dim(c)
    if dim in c.f.axes:
        return None
    return c.f.with_axes(tuple(a - (a > dim) for a in c.f.axes))


@_rule(aten.roll)
def _roll(c: _Call) -> Field | Global | None:
    # a cyclic shift wraps the border round: neighbouring elements come from opposite ends of the image
    if c.f.lead:
        return None
    dims = c.bound["dims"] or list(range(c.x.dim()))
    return None if any(d % c.x.dim() in c.f.axes for d in dims) else c.f


@_rule(
    aten._softmax,
    aten._log_softmax,
    aten._safe_softmax,
    aten.cumsum,
    aten.cumprod,
    aten.cummax,
    aten.cummin,
    aten.logcumsumexp,
    aten.sort,
    aten.flip,
)
def _along_dim(c: _Call) -> Field | Global | None:
    # each output along ``dim`` depends on the whole line (softmax, sort), on all before it (cumsum), or on
    # the opposite end (flip): along a spatial axis that is no window
    b = c.bound
    dims = b["dims"] if "dims" in b else [b["dim"]]
    if c.f.lead or any(d % c.x.dim() in c.f.axes for d in dims):
        return None
    return pointwise(c.spatial, c.y)


@_rule(aten.native_group_norm, aten.native_layer_norm)
def _statistics(c: _Call) -> Field | Global | None:
    # normalised with a mean and deviation over the positions (group norm, layer norm over (C, H, W)):
    # each output's window stays, but every position weighs in through the statistics
    f = pointwise(c.spatial, c.y)
    if f is None:
        return None
    b = c.bound
    first = c.x.dim() - len(b["normalized_shape"]) if "normalized_shape" in b else 2
    return f.unbounded() if not f.lead and any(a >= first for a in f.axes) else f


def _tensors(obj: Any) -> list[torch.Tensor]:
    """The tensors of an argument tuple, or an output, looking one level into lists (``cat``'s inputs)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    out = []
    for a in obj:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(t for t in a if isinstance(t, torch.Tensor))
    return out


_ATTR = "_nnatlas_field"  # where a tensor carries its entry during a trace


class FieldPropagator:
    """Gives every tensor produced during a forward pass its :class:`Field` or :class:`Global`.

    Each tensor also remembers its *lineage*: the last module whose spatial output it is, or was computed
    from (``layer4`` for a ResNet's logits), so the field of the output a model returns can be named.
    The entry ``(value, lineage, token of this trace)`` is an attribute of the tensor itself (no lookup table, no
    weak reference per tensor): it dies with the tensor, an entry of another trace is ignored, and
    :meth:`release` removes it from tensors that outlive the trace (the inputs).
    """

    def __init__(self) -> None:
        self.where: Callable[[], str] = lambda: ""  # name of the innermost running module
        self.token = object()  # marks this trace's entries

    def _set(self, t: torch.Tensor, value: Any, lineage: str | None) -> None:
        try:
            setattr(t, _ATTR, (value, lineage, self.token))
        except AttributeError:  # a tensor subclass without attributes: no field
            pass

    def _entry(self, t: Any) -> tuple[Any, str | None, Any] | None:
        e = getattr(t, _ATTR, None) if isinstance(t, torch.Tensor) else None
        return e if e is not None and e[2] is self.token else None

    def release(self, tensors: list[Any]) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor) and _ATTR in getattr(t, "__dict__", {}):
                delattr(t, _ATTR)

    def seed(self, x: torch.Tensor, n_spatial: int, source: int | str = 0) -> None:
        self._set(x, initial_field(x.dim(), n_spatial, source), None)

    def get(self, t: Any) -> Field | None:
        """The field of a tensor whose spatial dimensions are its own (not packed into rows)."""
        e = self._entry(t)
        f = e[0] if e is not None else None
        return f if type(f) is Field and not f.lead else None

    def origin(self, t: Any) -> Global | None:
        e = self._entry(t)
        return e[0] if e is not None and type(e[0]) is Global else None

    def lineage(self, t: Any) -> str | None:
        e = self._entry(t)
        return e[1] if e is not None else None

    def mark(self, t: Any, layer: str) -> Field | None:
        """``t`` is the output of module ``layer``: if ``t`` is spatial, ``layer`` becomes its lineage and
        its field is returned (as :meth:`get`)."""
        e = self._entry(t)
        if e is not None and type(e[0]) is Field and not e[0].lead:
            self._set(t, e[0], layer)
            return e[0]
        return None

    def propagate(self, func: Any, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
        token = self.token
        known = []
        for a in (*args, *kwargs.values()) if kwargs else args:
            if isinstance(a, torch.Tensor):
                e = getattr(a, _ATTR, None)
                if e is not None and e[2] is token:
                    known.append((a, e))
            elif isinstance(a, (list, tuple)) and a and not isinstance(a[0], (int, float)):
                for t in a:  # a list of tensors (cat, stack, index)
                    if (
                        isinstance(t, torch.Tensor)
                        and (e := getattr(t, _ATTR, None)) is not None
                        and e[2] is token
                    ):
                        known.append((t, e))
        if not known:
            return
        x, (value, lineage, _) = known[0]
        packet = func.overloadpacket
        rule = _RULES.get(packet)
        if (
            rule is _conv
            and len(known) == 1
            and type(value) is Field
            and x is args[0]
            and len(args) >= 7
            and not args[6]  # not transposed
            and not value.lead
            and isinstance(out, torch.Tensor)
        ):  # the most common operator with a field, without binding its arguments
            n = len(value.axes)
            if value.axes == tuple(range(x.dim() - n, x.dim())):
                kernel = tuple(args[1].shape[2:])
                self._set(out, window(value, kernel, *(_tuple(v, n) for v in args[3:6])), lineage)
                return
        if rule is None and len(known) == 1 and type(value) is Field:
            first = out[0] if isinstance(out, (tuple, list)) and out else out
            if isinstance(first, torch.Tensor) and first.shape == x.shape:  # element-wise: the same field
                if first is not x:
                    self._set(first, value, lineage)
                if first is not out:  # batch norm's statistics and the like: computed from every position
                    origin = None
                    for y in _tensors(out[1:]):
                        if y.numel():  # (in eval mode batch norm returns empty ones)
                            origin = origin or self._global(func, [value])
                            self._set(y, origin, lineage)
                return
        outs = _tensors(out) if isinstance(out, (torch.Tensor, list, tuple)) else []
        if not outs:
            return
        spatial = [(t, e[0]) for t, e in known if type(e[0]) is Field]
        glob = [(t, e[0]) for t, e in known if type(e[0]) is Global]
        if not spatial or outs[0].is_nested or x.is_nested:  # ragged sequences: no spatial layout to follow
            origin = glob[0][1] if glob else self._global(func, [e[0] for _, e in known])
            for y in outs:
                self._set(y, origin, lineage)
            return
        call = _Call(func, args, kwargs, spatial, outs[0], {id(t) for t, _ in known})
        result = (rule or _default)(call)
        origin = glob[0][1] if glob else None
        for j, y in enumerate(outs):
            f = result if j == 0 else pointwise(spatial, y)
            if glob and type(f) is Field:
                f = self._mix(f, glob, y)
            if type(f) is not Field and type(f) is not Global:
                f = origin = origin or self._global(func, [e[0] for _, e in known])
            self._set(y, f, lineage)

    def _global(self, func: Any, inputs: list[Any]) -> Global:
        return Global(str(func.overloadpacket), self.where(), _sources(inputs))

    @staticmethod
    def _mix(f: Field, glob: list[tuple[torch.Tensor, Global]], y: torch.Tensor) -> Field | Global:
        """A field merged element-wise with global tensors.

        A global tensor broadcast over the positions (a squeeze-excitation gate ``(B, C, 1, 1)``) leaves the
        window but makes it unbounded; one that has every position (an attention output added back to its
        residual, Swin) makes the result global.
        """
        for g, origin in glob:
            offset = y.dim() - g.dim()
            if f.lead:
                before = math.prod(f.ref[: min(f.axes)])
                dims = [j for j in range(f.lead) if math.prod(y.shape[: j + 1]) > before]
            else:
                dims = list(f.axes)
            if any(j >= offset and y.shape[j] > 1 and g.shape[j - offset] == y.shape[j] for j in dims):
                return origin
        return f.unbounded()
