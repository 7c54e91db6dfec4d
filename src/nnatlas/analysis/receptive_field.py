"""Theoretical receptive fields of every spatial output of any ``nn.Module``.

The graph is not assumed sequential: one forward pass (on the ``meta`` device if the model lives there)
follows every ATen operator, so residual additions, Inception concatenations, functional pooling inside
``forward`` and upsampling paths all take part. See :mod:`nnatlas.analysis._fields` for the arithmetic
(Araujo et al., Distill 2019) and how branches merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from torch import nn

from nnatlas.analysis._fields import Field
from nnatlas.analysis._trace import normalize_inputs, trace


def _number(v: Fraction) -> int | float:
    return int(v) if v.denominator == 1 else float(v)


@dataclass(frozen=True)
class LayerField:
    """Receptive field of one layer's output, one value per spatial dimension (``(H, W)`` for images).

    - ``size``: input pixels one output element sees (the theoretical field, not clipped to the image);
    - ``jump``: input pixels between neighbouring output elements (the effective stride);
    - ``start``: centre of the first output element's field in input pixel coordinates (negative where
      padding reaches outside the image); element ``i`` is centred at ``start + i * jump``;
    - ``aligned``: every branch that merged into this output had the same jump and centre;
    - ``bounded``: ``False`` when a global quantity (a squeeze-excitation gate, global attention) mixed in,
      so the output really depends on the whole input;
    - ``windows``: per dimension the exact ``(first, last)`` input pixel of elements ``0 .. P-1`` (one
      period): after transposed convolutions or upsampling neighbouring elements' windows differ and
      ``size`` is the widest; :meth:`interval` is exact for every element.
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

    @classmethod
    def from_field(cls, name: str, type_: str, shape: Sequence[int], f: Field) -> LayerField:
        return cls(
            name=name,
            type=type_,
            output_shape=tuple(shape),
            size=tuple(_number(v) for v in f.size),
            jump=tuple(_number(v) for v in f.jump),
            start=tuple(_number(v) for v in f.start),
            aligned=f.aligned,
            bounded=f.bounded,
            windows=tuple(
                tuple((_number(lo), _number(hi)) for lo, hi in zip(a.lo, a.hi, strict=True)) for a in f.dims
            ),
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
        return {
            "name": self.name,
            "size": list(self.size),
            "jump": list(self.jump),
            "start": list(self.start),
            "aligned": self.aligned,
            "bounded": self.bounded,
        }


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive fields of every module whose output is spatial, in the order their forward calls ended."""

    input_size: tuple[int, ...]
    layers: dict[str, LayerField]
    final_name: str | None

    @property
    def final(self) -> LayerField:
        """The deepest output that is still spatial (the last to finish, e.g. ``layer4`` of a ResNet)."""
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
        return "\n".join(lines)


def _fmt(values: Sequence[int | float]) -> str:
    return "x".join(f"{v:g}" for v in values)


def fields_from_trace(result: Any) -> ReceptiveField:
    layers: dict[str, LayerField] = {}
    final = None
    best = -1
    for name in sorted(result.order, key=lambda n: result.records[n].order):
        rec = result.records[name]
        if rec.field is None:
            continue
        shape = (
            rec.output_shape[0]
            if rec.output_shape and isinstance(rec.output_shape[0], list)
            else rec.output_shape
        )
        layers[name] = LayerField.from_field(name, rec.type, shape, rec.field)
        if rec.order > best:
            best, final = rec.order, name
    input_size = tuple(result.input_shape[0]) if result.input_shape else ()
    return ReceptiveField(input_size=input_size, layers=layers, final_name=final)


def receptive_field(
    model: nn.Module, input_size: Sequence[int] | None = None, *, inputs: Any = None
) -> ReceptiveField:
    """Per-layer receptive field of ``model`` for an input of ``input_size`` ``(B, C, *spatial)``.

    Runs one forward pass (eval mode, no gradients; build the model under ``torch.device("meta")`` to
    skip all arithmetic) and returns a :class:`ReceptiveField`: ``.layers[name]`` for every module with a
    spatial output, ``.final`` for the deepest one. Raises :class:`~nnatlas.analysis.ShapeError` (a
    ``ValueError``) naming the layer where an input stops fitting.
    """
    args, kwargs = normalize_inputs(model, input_size, inputs)
    return fields_from_trace(trace(model, args, kwargs, fields=True))
