"""One instrumented forward pass: module hooks for names and shapes, a dispatch mode for every ATen op.

The ``TorchDispatchMode`` sees each operator PyTorch runs below autograd (``aten.convolution``,
``aten.addmm``, fused attention kernels, ...), counts its MACs/FLOPs (:mod:`nnatlas.analysis.macs`) and
carries receptive fields from inputs to outputs (:mod:`nnatlas.analysis._fields`); forward pre/post hooks
keep the stack of running modules, so an operator's cost goes to every module it runs inside. It works on
the ``meta`` device, where no arithmetic happens at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from nnatlas.analysis._fields import Field, FieldPropagator
from nnatlas.analysis.macs import count_op


class ShapeError(ValueError):
    """The input does not fit the model; ``layer`` names the module where the shapes stopped fitting."""

    def __init__(self, message: str, *, layer: str, layer_type: str) -> None:
        super().__init__(message)
        self.layer = layer
        self.layer_type = layer_type


@dataclass
class ModuleRecord:
    name: str
    type: str
    order: int = -1  # position in the order forward calls finished
    begin: int = -1  # position in the order forward calls started
    calls: int = 0
    output_shape: Any = None
    macs: int = 0
    flops: int = 0
    field: Field | None = None


@dataclass
class TraceResult:
    records: dict[str, ModuleRecord]
    total_macs: int
    total_flops: int
    output: Any = None
    input_shape: Any = None
    fields: bool = False
    order: list[str] = field(default_factory=list)


class _Mode(TorchDispatchMode):
    def __init__(self, tracer: _Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t = self.tracer
        out = func(*args, **kwargs)
        macs, flops = count_op(func, args, kwargs, out)
        if macs or flops:
            t.total_macs += macs
            t.total_flops += flops
            for name in set(t.stack):
                rec = t.records[name]
                rec.macs += macs
                rec.flops += flops
        if t.propagator is not None:
            t.propagator.propagate(func, args, kwargs, out)
        return out


def shape_of(obj: Any) -> Any:
    """Shape of a tensor as a list; nested containers of tensors as nested lists or dicts."""
    if isinstance(obj, torch.Tensor):
        if obj.is_nested:  # ragged: one shape per sample
            return [list(t.shape) for t in obj.unbind(0)]
        return list(obj.shape)
    if isinstance(obj, Mapping):
        return {str(k): shape_of(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [shape_of(o) for o in obj]
    return None


class _Tracer:
    def __init__(self, model: nn.Module, fields: bool) -> None:
        self.model = model
        self.stack: list[str] = []
        self.records = {
            name: ModuleRecord(name, type(m).__name__)
            for name, m in model.named_modules(remove_duplicate=True)
        }
        self.total_macs = 0
        self.total_flops = 0
        self.finished = 0
        self.started = 0
        self.last_input: dict[str, Any] = {}
        self.order: list[str] = []
        self.propagator = FieldPropagator() if fields else None

    def _pre(self, name: str):
        def hook(module, args):
            self.stack.append(name)
            self.last_input[name] = args  # kept only while the module runs (for the error message)
            rec = self.records[name]
            if rec.begin < 0:
                rec.begin = self.started
                self.started += 1

        return hook

    def _post(self, name: str):
        def hook(module, args, output):
            if self.stack and self.stack[-1] == name:
                self.stack.pop()
            elif name in self.stack:
                del self.stack[len(self.stack) - 1 - self.stack[::-1].index(name)]
            self.last_input.pop(name, None)
            rec = self.records[name]
            rec.calls += 1
            rec.output_shape = shape_of(output)
            rec.order = self.finished
            self.finished += 1
            if rec.calls == 1:
                self.order.append(name)
            if self.propagator is not None:
                out = output if isinstance(output, torch.Tensor) else None
                if out is None and isinstance(output, (tuple, list)) and output:
                    out = output[0] if isinstance(output[0], torch.Tensor) else None
                rec.field = self.propagator.get(out)

        return hook


def _describe(obj: Any) -> str:
    s = shape_of(obj)
    return "x".join(map(str, s)) if isinstance(s, list) and all(isinstance(v, int) for v in s) else str(s)


def spatial_dims(x: torch.Tensor, model: nn.Module) -> int:
    """Number of trailing spatial dimensions of an input: 2 for ``(B, C, H, W)``, 3 for video, 1 only for
    ``(B, C, L)`` signals into a model with 1-d convolutions (a ``(B, T, C)`` sequence has none)."""
    if not x.is_floating_point():
        return 0
    if x.dim() in (4, 5):
        return x.dim() - 2
    if x.dim() == 3 and any(isinstance(m, (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d)) for m in model.modules()):
        return 1
    return 0


def trace(model: nn.Module, args: tuple, kwargs: dict[str, Any], *, fields: bool = False) -> TraceResult:
    """Run ``model(*args, **kwargs)`` once in eval mode under ``torch.no_grad()``, recording every module.

    The model's training flags are restored afterwards. An exception raised inside a module becomes a
    :class:`ShapeError` naming the innermost module that was running.
    """
    tracer = _Tracer(model, fields)
    if tracer.propagator is not None:
        image = next((a for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor)), None)
        if image is not None and (n := spatial_dims(image, model)):
            tracer.propagator.seed(image, n)
    handles = []
    modules = dict(model.named_modules(remove_duplicate=True))
    for name, m in modules.items():
        handles.append(m.register_forward_pre_hook(tracer._pre(name)))
        handles.append(m.register_forward_hook(tracer._post(name)))
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), _Mode(tracer):
            output = model(*args, **kwargs)
    except Exception as e:
        if not tracer.stack:
            raise
        name = tracer.stack[-1]
        module = modules[name]
        layer_type = type(module).__name__
        shown = name or "(the model itself)"
        given = ", ".join(_describe(a) for a in [*args, *kwargs.values()])
        reached = ", ".join(
            _describe(a) for a in tracer.last_input.get(name, ()) if isinstance(a, torch.Tensor)
        )
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        expects = ""
        for attr, what in (("in_channels", "input channels"), ("in_features", "input features")):
            if isinstance(getattr(module, attr, None), int):
                expects = f"expects {getattr(module, attr)} {what}, "
        raise ShapeError(
            f"input {given} does not fit the model: layer '{shown}' ({layer_type}) {expects}"
            f"got {reached or 'its input'}: {msg}",
            layer=name,
            layer_type=layer_type,
        ) from e
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    result = TraceResult(
        records=tracer.records,
        total_macs=tracer.total_macs,
        total_flops=tracer.total_flops,
        output=output,
        input_shape=[shape_of(a) for a in args] + [shape_of(v) for v in kwargs.values()],
        fields=fields,
        order=tracer.order,
    )
    return result


def normalize_inputs(
    model: nn.Module, input_size: Any, inputs: Any, *, dtype: torch.dtype | None = None
) -> tuple[tuple, dict[str, Any]]:
    """``(args, kwargs)`` for the forward call from ``input_size`` (a shape, or several) or ``inputs``."""
    if (input_size is None) == (inputs is None):
        raise ValueError(
            f"give exactly one of input_size and inputs; got input_size={input_size!r}, "
            f"inputs={'a value' if inputs is not None else None}"
        )
    if inputs is not None:
        if isinstance(inputs, torch.Tensor):
            return (inputs,), {}
        if isinstance(inputs, Mapping):
            return (), dict(inputs)
        if isinstance(inputs, (tuple, list)):
            return tuple(inputs), {}
        raise TypeError(
            f"inputs must be a tensor, a tuple of tensors or a dict of tensors; got {type(inputs)}"
        )
    sizes = input_size
    if isinstance(sizes, torch.Size) or (
        isinstance(sizes, (tuple, list)) and sizes and all(isinstance(v, int) for v in sizes)
    ):
        sizes = [sizes]
    if not isinstance(sizes, (tuple, list)) or not sizes:
        raise TypeError(
            f"input_size must be a shape such as (1, 3, 224, 224) or a list of shapes; got {input_size!r}"
        )
    device, param_dtype = _placement(model)
    out = []
    for s in sizes:
        if not isinstance(s, (tuple, list, torch.Size)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in s
        ):
            raise ValueError(
                f"input_size must hold positive ints, such as (1, 3, 224, 224); got {tuple(s)!r}"
            )
        out.append(torch.randn(*s, device=device, dtype=dtype or param_dtype))
    return tuple(out), {}


def _placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()
