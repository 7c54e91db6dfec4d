"""``summary(model, input_size)``: per-layer output shapes, parameters, MACs/FLOPs and receptive fields.

One forward pass of any ``nn.Module`` (see :mod:`nnatlas.analysis._trace`): eval mode, no gradients, the
model's training flags restored afterwards. MACs and FLOPs follow the conventions of
:mod:`nnatlas.analysis.macs` (1 MAC = 2 FLOPs; normalisation, activation and pooling are FLOPs, not
MACs); parameters shared between modules (tied weights) are counted once. Every operator that ran and
was not counted is listed in :attr:`Summary.unsupported`, and the totals are then marked partial.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from nnatlas.analysis._trace import normalize_inputs, trace
from nnatlas.analysis.receptive_field import LayerField, ReceptiveField, fields_from_trace


@dataclass(frozen=True)
class LayerRow:
    """One module: its own numbers *include* those of its children (a block's MACs are its layers' sum).

    ``rf_size``, ``rf_jump``, ``rf_start`` (per spatial dimension) and ``rf_aligned`` are set where the
    output is spatial (see :class:`~nnatlas.analysis.LayerField`), ``None`` otherwise; ``output_shape``
    is ``None`` for a module the forward pass never called.
    """

    name: str
    type: str
    depth: int
    output_shape: Any
    params: int
    trainable: int
    macs: int
    flops: int
    rf_size: tuple[int | float, ...] | None = None
    rf_jump: tuple[int | float, ...] | None = None
    rf_start: tuple[int | float, ...] | None = None
    rf_aligned: bool | None = None


@dataclass(frozen=True)
class Summary:
    """Rows per module (in the order their forward calls began; never-called modules last) and totals.

    - ``unsupported``: every operator that ran and has no counter (nor a registered one), with its number
      of calls (``{"aten.foo": 3}``); when it is not empty the totals are a lower bound (``partial``).
    - ``upper_bound``: operators whose output size depends on values (``nonzero``, ``nms``, ...) that were
      given their largest output because the model runs on the meta device, with their number of calls;
      the totals are then the most the model can compute for this input.
    """

    model: str
    input: list[Any]
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    total_macs: int
    total_flops: int
    receptive_field: ReceptiveField | None
    unsupported: dict[str, int] = field(default_factory=dict)
    upper_bound: dict[str, int] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """``True`` when some operator was not counted: the totals are a lower bound."""
        return bool(self.unsupported)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``model``, ``input``, totals, ``partial``, ``unsupported``, ``upper_bound``,
        ``receptive_field`` (of ``.final``, with where it became global) and ``layers``."""
        rf = None
        if self.receptive_field is not None and self.receptive_field.final_name is not None:
            f = self.receptive_field.final
            rf = {
                "layer": f.name,
                "size": list(f.size),
                "jump": list(f.jump),
                "start": list(f.start),
                "aligned": f.aligned,
                "bounded": f.bounded,
                "inputs": list(f.inputs),
                "global_at": self.receptive_field.global_at,
                "global_op": self.receptive_field.global_op,
            }
        layers = []
        for r in self.rows:
            d = asdict(r)
            for k in ("rf_size", "rf_jump", "rf_start"):
                d[k] = list(d[k]) if d[k] is not None else None
            layers.append(d)
        return {
            "model": self.model,
            "input": self.input,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "total_macs": self.total_macs,
            "total_flops": self.total_flops,
            "partial": self.partial,
            "unsupported": dict(self.unsupported),
            "upper_bound": dict(self.upper_bound),
            "receptive_field": rf,
            "layers": layers,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a JSON string (``indent=None`` writes one line)."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self) -> str:
        """One line per row; shapes and per-dimension values joined with ``x`` (``1x64x56x56``)."""
        buf = io.StringIO()
        fields = list(LayerRow.__dataclass_fields__)
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(fields)
        for r in self.rows:
            writer.writerow([_cell(getattr(r, k)) for k in fields])
        return buf.getvalue()

    def __str__(self) -> str:
        head = ["layer", "type", "output shape", "params", "MACs", "FLOPs", "RF size/jump"]
        body = []
        for r in self.rows:
            rf = f"{_join(r.rf_size)}/{_join(r.rf_jump)}" if r.rf_size is not None else ""
            body.append(
                [
                    "  " * (r.depth - 1) + r.name,
                    r.type,
                    _shape(r.output_shape),
                    f"{r.params:,}",
                    si(r.macs),
                    si(r.flops),
                    rf,
                ]
            )
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
        right = {3, 4, 5}

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        rule = "-" * len(line(head))
        out = [f"{self.model}  input {', '.join(_shape(s) for s in self.input)}", rule, line(head), rule]
        out += [line(b) for b in body]
        partial = ", partial: see below" if self.partial else ""
        bound = ", upper bound: see below" if self.upper_bound else ""
        out += [
            rule,
            f"total params      {self.total_params:,} ({self.trainable_params:,} trainable)",
            f"total MACs        {self.total_macs:,} ({si(self.total_macs)}{partial}{bound})",
            f"total FLOPs       {self.total_flops:,} ({si(self.total_flops)}; 1 MAC = 2 FLOPs{partial}{bound})",
        ]
        rf = self.receptive_field
        if rf is not None and rf.final_name is not None:
            f = rf.final
            out.append(
                f"receptive field   {_join(f.size)} px, jump {_join(f.jump)}, start {_join(f.start)} "
                f"(at {f.name or '(model)'})"
            )
        if rf is not None and rf.global_at is not None:
            out.append(f"field global from {rf.global_at or '(model)'} ({rf.global_op})")
        if self.unsupported:
            calls = ", ".join(f"{op} x{n}" for op, n in self.unsupported.items())
            out.append(f"not counted       {calls} (no counter: totals are partial)")
        if self.upper_bound:
            calls = ", ".join(f"{op} x{n}" for op, n in self.upper_bound.items())
            out.append(f"upper bound       {calls} (on the meta device: every element kept)")
        return "\n".join(out)


def _join(values: Sequence[int | float] | None) -> str:
    return "" if values is None else "x".join(f"{v:g}" for v in values)


def _shape(s: Any) -> str:
    if s is None:
        return "-"
    if isinstance(s, list) and all(isinstance(v, int) for v in s):
        return "x".join(map(str, s))
    if isinstance(s, list):
        return "(" + ", ".join(_shape(v) for v in s) + ")"
    if isinstance(s, dict):
        return "{" + ", ".join(f"{k}: {_shape(v)}" for k, v in s.items()) + "}"
    return str(s)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (tuple, list)):
        return _shape(list(v)) if all(isinstance(x, int) for x in v) else "x".join(f"{x:g}" for x in v)
    return _shape(v) if isinstance(v, dict) else str(v)


def si(n: int) -> str:
    """``n`` with an SI prefix and three decimals (``4.089G``), as the summary tables print counts."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f}{unit}"
    return str(n)


def summary(
    model: nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    *,
    inputs: Any = None,
    depth: int | None = None,
) -> Summary:
    """Layer-by-layer table of ``model`` for one input.

    Args:
        model: any ``nn.Module`` (build it under ``torch.device("meta")``, or with
            :func:`~nnatlas.analysis.build_on_meta`, to measure a large model without allocating or
            computing anything).
        input_size: ``(B, C, H, W)``, or a list of shapes for several positional inputs; random normal
            tensors on the model's device and dtype. Whole numbers of any type (``2.0``, NumPy integers).
        inputs: instead of ``input_size``: a tensor, a tuple of tensors (positional inputs; a list inside
            it is passed as one argument, as torchvision's detectors take their images), or a dict of
            keyword tensors.
        depth: keep rows of modules at most this deep (``1`` = the model's direct children); ``None``
            keeps every module. Totals always cover the whole model.

    MACs are counted for convolutions (grouped, dilated, transposed: per *input* element), linear layers,
    ``matmul``/``bmm``/``einsum``, recurrent layers and attention (``F.scaled_dot_product_attention`` on
    every backend and the fused ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` paths, full
    ``L x S`` products even under a causal mask); see :mod:`nnatlas.analysis.macs`. Operators without a
    counter are listed in :attr:`Summary.unsupported` (add one with
    :func:`~nnatlas.analysis.register_op_counter` or :func:`~nnatlas.analysis.register_module_counter`).
    On the meta device, data-dependent operators take their largest output (:attr:`Summary.upper_bound`).
    The receptive field follows every spatial input; its ``.final`` is the field of the output the model
    returns (rules in :func:`~nnatlas.analysis.receptive_field`).

    A 3x3 convolution from 3 to 8 channels on an 8x8 image (``padding=1``) makes ``8 * 8 * 8 = 512``
    outputs of ``3 * 3 * 3 = 27`` MACs each, 13,824 MACs; the stride-2 3x3 convolution from 8 to 16
    channels makes ``16 * 4 * 4 = 256`` outputs of ``8 * 3 * 3 = 72`` MACs, 18,432 MACs: 32,256 in all.
    The FLOPs are twice the MACs, plus one per output element for the biases (512 + 256) and one per
    element for the ReLU (512): ``64512 + 768 + 512 = 65792``. The parameters are ``8 * 27 + 8 = 224``
    and ``16 * 72 + 16 = 1168``:

    >>> from torch import nn
    >>> model = nn.Sequential(
    ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1)
    ... )
    >>> s = summary(model, (1, 3, 8, 8))
    >>> s.total_macs, s.total_flops, s.total_params, s.partial
    (32256, 65792, 1392, False)
    >>> [(r.name, r.output_shape, r.macs) for r in s.rows]
    [('0', [1, 8, 8, 8], 13824), ('1', [1, 8, 8, 8], 0), ('2', [1, 16, 4, 4], 18432)]
    >>> s.receptive_field.final.size  # 3 + (3 - 1) * 1
    (5, 5)

    Raises:
        ShapeError: (a ``ValueError``) naming the layer where the input stopped fitting.
        MetaDeviceError: the model is on the meta device and its forward pass reads tensor values; build
            it on a real device.
    """
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 1):
        raise ValueError(f"depth must be a positive int or None; got {depth!r}")
    args, kwargs = normalize_inputs(model, input_size, inputs)
    result = trace(model, args, kwargs, fields=True)
    rf = fields_from_trace(result)
    modules = result.modules
    called = sorted((n for n in result.order if n), key=lambda n: result.records[n].begin)
    seen = set(result.order)
    never = [n for n in modules if n and n not in seen]
    params, trainable = _parameters_per_module(model)
    rows = []
    for name in called + never:
        d = name.count(".") + 1
        if depth is not None and d > depth:
            continue
        rec = result.records[name]
        f: LayerField | None = rf.layers.get(name)
        rows.append(
            LayerRow(
                name=name,
                type=rec.type,
                depth=d,
                output_shape=rec.output_shape,
                params=params.get(name, 0),
                trainable=trainable.get(name, 0),
                macs=rec.macs,
                flops=rec.flops,
                rf_size=f.size if f else None,
                rf_jump=f.jump if f else None,
                rf_start=f.start if f else None,
                rf_aligned=f.aligned if f else None,
            )
        )
    return Summary(
        model=type(model).__name__,
        input=result.input_shape,
        rows=rows,
        total_params=params.get("", 0),
        trainable_params=trainable.get("", 0),
        total_macs=result.total_macs,
        total_flops=result.total_flops,
        receptive_field=rf if rf.layers else None,
        unsupported=result.unsupported,
        upper_bound=result.upper_bound,
    )


def _parameters_per_module(model: nn.Module) -> tuple[dict[str, int], dict[str, int]]:
    """Parameters (and trainable ones) of every module with its children, a shared tensor counted once:
    ``count_parameters`` of each module, in one walk over the model."""
    params: dict[str, int] = {}
    trainable: dict[str, int] = {}
    every = [p for _, p in model.named_parameters(remove_duplicate=False)]
    shared = len({id(p) for p in every}) < len(every)  # tied weights or a module used in two places

    def walk(prefix: str, module: nn.Module) -> dict[int, torch.Tensor] | tuple[int, int]:
        if shared:  # the distinct tensors below this module
            own: dict[int, torch.Tensor] = {id(p): p for p in module._parameters.values() if p is not None}
            for name, child in module._modules.items():
                if child is not None:
                    own.update(walk(f"{prefix}.{name}" if prefix else name, child))  # type: ignore[arg-type]
            n = sum(p.numel() for p in own.values())
            t = sum(p.numel() for p in own.values() if p.requires_grad)
            result: Any = own
        else:  # every tensor appears once: plain sums
            n = t = 0
            for p in module._parameters.values():
                if p is not None:
                    n += p.numel()
                    t += p.numel() if p.requires_grad else 0
            for name, child in module._modules.items():
                if child is not None:
                    cn, ct = walk(f"{prefix}.{name}" if prefix else name, child)  # type: ignore[misc]
                    n, t = n + cn, t + ct
            result = (n, t)
        if n:
            params[prefix], trainable[prefix] = n, t
        return result

    walk("", model)
    return params, trainable
