"""Theoretical receptive fields of every spatial output of any ``nn.Module``.

The graph is not assumed sequential: one forward pass (on the ``meta`` device if the model lives there)
follows every ATen operator, so residual additions, Inception concatenations, functional pooling inside
``forward`` and upsampling paths all take part. ``nnatlas.analysis._fields`` holds the arithmetic
(Araujo et al., Distill 2019) and how branches merge.

Rules:

- **Which output is** ``.final``: the output the model *returns* (a tensor; the ``out`` entry of a dict,
  else its first value; the first element of a tuple or list), followed back to the last module whose
  spatial output it is or was computed from. For a segmentation model that returns ``{"out", "aux"}`` it
  is the model's ``out`` (not the auxiliary head, even though that runs last); for a classifier, whose
  logits are global, it is the last spatial stage (``layer4`` of a ResNet).
- **Where the field becomes global**: an operator that mixes positions in a way no window describes
  (global pooling, attention between positions, a concatenation along a spatial axis such as ViT's class
  token, a reshape that splits a spatial axis such as Swin's window partition, a cyclic shift) makes its
  output depend, as far as this analysis can tell, on the whole input. Such outputs have no
  :class:`~nnatlas.analysis.LayerField`; :attr:`~nnatlas.analysis.ReceptiveField.global_at` names the module (and ``global_op`` the operator)
  where the returned output's field became global. For Swin that is the first window attention: its
  first block sees a 7x7 window of patches, and the shifted windows of the later blocks and stages grow
  that to the whole image (a 224 px image is one window of 7x7 patches in the last stage).
- **Several inputs**: every floating-point input with spatial dimensions (each positional and keyword
  tensor) starts its own field; :attr:`~nnatlas.analysis.LayerField.inputs` says which inputs a field comes from (a
  positional index or a keyword name). Where branches from different inputs merge, the window is the
  union, each in its own input's pixel coordinates (the inputs are taken to be aligned). Tensors inside
  lists (torchvision's detection models take a list of images) start no field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from torch import nn

from nnatlas.analysis._fields import Field
from nnatlas.analysis._trace import normalize_inputs, trace


def _number(v: int | Fraction) -> int | float:
    if type(v) is int:
        return v
    return int(v) if v.denominator == 1 else float(v)


@dataclass(frozen=True)
class LayerField:
    """Receptive field of one layer's output, one value per spatial dimension (``(H, W)`` for images).

    - ``size``: input pixels one output element sees (the theoretical field, not clipped to the image);
    - ``jump``: input pixels between neighbouring output elements (the effective stride);
    - ``start``: centre of the first output element's field in input pixel coordinates (negative where
      padding reaches outside the image); element ``i`` is centred at ``start + i * jump``;
    - ``aligned``: every branch that merged into this output had the same jump and centre;
    - ``bounded``: ``False`` when a global quantity broadcast over the positions (a squeeze-excitation
      gate) mixed in, so the output really depends on the whole input;
    - ``windows``: per dimension the exact ``(first, last)`` input pixel of elements ``0 .. P-1`` (one
      period): after transposed convolutions or upsampling neighbouring elements' windows differ and
      ``size`` is the widest; :meth:`interval` is exact for every element;
    - ``inputs``: the model inputs (positional index or keyword name) whose pixels the field covers.
    """

    name: str
    type: str
    output_shape: tuple[int, ...]
    size: tuple[int | float, ...]
    jump: tuple[int | float, ...]
    start: tuple[int | float, ...]
    aligned: bool = True
    bounded: bool = True
    windows: tuple[tuple[tuple[int | float, int | float], ...], ...] = field(default=(), repr=False)
    inputs: tuple[int | str, ...] = (0,)

    @classmethod
    def from_field(cls, name: str, type_: str, shape: Sequence[int], f: Field) -> LayerField:
        """The field of module ``name`` (of type ``type_``, output ``shape``) from the tracer's exact field
        ``f``: whole-pixel values as ints, fractional ones (after upsampling) as floats."""
        size, jump, start, windows = [], [], [], []
        for a in f.dims:
            if len(a.lo) == 1 and type(a.jump) is int and type(a.lo[0]) is int and type(a.hi[0]) is int:
                lo, hi = a.lo[0], a.hi[0]  # whole pixels, one window repeated: the common case
                size.append(hi - lo + 1)
                jump.append(a.jump)
                start.append((lo + hi) // 2 if (lo + hi) % 2 == 0 else (lo + hi) / 2)
                windows.append(((lo, hi),))
                continue
            size.append(_number(a.size))
            jump.append(_number(a.jump))
            start.append(_number(a.start))
            windows.append(tuple((_number(lo), _number(hi)) for lo, hi in zip(a.lo, a.hi, strict=True)))
        return cls(
            name,
            type_,
            tuple(shape),
            tuple(size),
            tuple(jump),
            tuple(start),
            f.aligned,
            f.bounded,
            tuple(windows),
            f.sources,
        )

    def interval(self, index: Sequence[int]) -> list[tuple[float, float]]:
        """``[(first, last)]`` input pixel per dimension seen by the output element at ``index``."""
        out = []
        for i, j, period in zip(index, self.jump, self.windows, strict=True):
            q, r = divmod(i, len(period))
            lo, hi = period[r]
            out.append((lo + q * len(period) * j, hi + q * len(period) * j))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``name``, ``size``, ``jump``, ``start`` (as lists), ``aligned``, ``bounded``,
        ``inputs``."""
        return {
            "name": self.name,
            "size": list(self.size),
            "jump": list(self.jump),
            "start": list(self.start),
            "aligned": self.aligned,
            "bounded": self.bounded,
            "inputs": list(self.inputs),
        }


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive fields of every module whose output is spatial, in the order their forward calls ended.

    ``input_size`` is the shape of the first spatial input; ``final_name`` the module of :attr:`final`;
    ``global_at`` (a module name, ``""`` for the model's own ``forward``) and ``global_op`` (an ATen
    operator) say where the returned output's field became global, ``None`` if it did not (see the rules
    of :func:`~nnatlas.analysis.receptive_field`).
    """

    input_size: tuple[int, ...]
    layers: dict[str, LayerField]
    final_name: str | None
    global_at: str | None = None
    global_op: str | None = None

    @property
    def final(self) -> LayerField:
        """The field of the output the model returns, or of the last spatial module output it was computed
        from (``layer4`` of a ResNet, the whole model for a segmentation network's ``out``)."""
        if self.final_name is None:
            raise ValueError("the model has no spatial output for this input")
        return self.layers[self.final_name]

    def __str__(self) -> str:
        head = f"{'layer':40s} {'type':18s} {'size':>14s} {'jump':>10s} {'start':>14s}  aligned"
        lines = [head, "-" * len(head)]
        for name, f in self.layers.items():
            lines.append(
                f"{name or '(model)':40s} {f.type:18s} {_fmt(f.size):>14s} {_fmt(f.jump):>10s} "
                f"{_fmt(f.start):>14s}  {'yes' if f.aligned else 'no'}"
            )
        if self.global_at is not None:
            lines.append(f"global from {self.global_at or '(model)'} ({self.global_op})")
        return "\n".join(lines)


def _fmt(values: Sequence[int | float]) -> str:
    return "x".join(f"{v:g}" for v in values)


def fields_from_trace(result: Any) -> ReceptiveField:
    layers: dict[str, LayerField] = {}
    made: dict[int, LayerField] = {}  # one per distinct field: a block and its last layer often share one
    last = None
    best = -1
    for name in sorted(result.order, key=lambda n: result.records[n].order):
        rec = result.records[name]
        if rec.field is None:
            continue
        base = made.get(id(rec.field))
        if base is None or base.output_shape != rec.field_shape:
            base = made[id(rec.field)] = LayerField.from_field(name, rec.type, rec.field_shape, rec.field)
        layers[name] = (
            base
            if base.name == name
            else LayerField(
                name,
                rec.type,
                base.output_shape,
                base.size,
                base.jump,
                base.start,
                base.aligned,
                base.bounded,
                base.windows,
                base.inputs,
            )
        )
        if rec.order > best:
            best, last = rec.order, name
    final = result.final if result.final in layers else last
    input_size = tuple(next(iter(result.sources.values()), ()))
    origin = result.global_origin
    return ReceptiveField(
        input_size=input_size,
        layers=layers,
        final_name=final,
        global_at=origin.layer if origin is not None else None,
        global_op=origin.op if origin is not None else None,
    )


def receptive_field(
    model: nn.Module, input_size: Sequence[int] | None = None, *, inputs: Any = None
) -> ReceptiveField:
    """Per-layer receptive field of ``model`` for an input of ``input_size`` ``(B, C, *spatial)``.

    Runs one forward pass (eval mode, no gradients; build the model under ``torch.device("meta")`` to
    skip all arithmetic) and returns a :class:`ReceptiveField`: ``.layers[name]`` for every module with a
    spatial output, ``.final`` for the output the model returns, ``.global_at`` where its field became
    global. ``inputs`` (a tensor, a tuple or a dict of keyword tensors) replaces ``input_size`` for
    models with several inputs; each spatial input starts its own field. Raises
    :class:`~nnatlas.analysis.ShapeError` (a ``ValueError``) naming the layer where an input stops
    fitting. The rules (which output is ``.final``, where a field becomes global, several inputs) are
    those of the module ``nnatlas.analysis.receptive_field``, shown under "Receptive fields" in the API
    reference.

    Two 3x3 convolutions, the second of stride 2, see 5x5 pixels: ``3 + (3 - 1) * 1``, where 1 is the
    jump (product of the strides) before the second one; neighbouring outputs are 2 pixels apart:

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2))
    >>> rf = receptive_field(model, (1, 3, 32, 32))
    >>> rf.final.size, rf.final.jump
    ((5, 5), (2, 2))
    >>> rf.layers["0"].size, rf.layers["0"].output_shape
    ((3, 3), (1, 8, 32, 32))
    """
    args, kwargs = normalize_inputs(model, input_size, inputs)
    return fields_from_trace(trace(model, args, kwargs, fields=True))
