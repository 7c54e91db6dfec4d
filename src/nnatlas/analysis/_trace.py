"""One instrumented forward pass: module hooks for names and shapes, a dispatch mode for every ATen op.

The ``TorchDispatchMode`` sees each operator PyTorch runs below autograd (``aten.convolution``,
``aten.addmm``, fused attention kernels, ...), counts its MACs/FLOPs (:mod:`nnatlas.analysis.macs`) and
carries receptive fields from inputs to outputs (:mod:`nnatlas.analysis._fields`); forward pre/post hooks
keep the stack of running modules, and a module's cost is the difference of the running totals between
its start and its end, so an operator's cost goes to every module it runs inside. It works on the
``meta`` device, where no arithmetic happens at all.

On the meta device an operator whose output *size* depends on the values (``nonzero``, ``masked_select``,
boolean-mask indexing, torchvision's ``nms``) is given its largest possible output: every element
selected, every box kept (and ``unique`` one value, as if every element were equal, the case consistent
with every comparison selecting everything). The count is then an upper bound, the most work the model
can do for this input size (a detector counts its full proposal and detection budgets);
:attr:`TraceResult.upper_bound` lists those operators.
A model that needs real *values* (``tensor.item()``, ``tolist()`` in its forward) raises
:class:`MetaDeviceError` there.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from nnatlas.analysis._fields import Field, FieldPropagator, Global
from nnatlas.analysis.macs import _LOOKUP, FREE, apply, lookup, module_counter

_MISSING = object()


class ShapeError(ValueError):
    """The input does not fit the model; ``layer`` names the module where the shapes stopped fitting."""

    def __init__(self, message: str, *, layer: str, layer_type: str) -> None:
        super().__init__(message)
        self.layer = layer
        self.layer_type = layer_type


class MetaDeviceError(RuntimeError):
    """The model's forward needs real values, which the ``meta`` device does not have.

    ``layer`` names the innermost module that was running, ``op`` the operator (or Python call) that needed
    the values. Build the model on a real device (the CPU) to measure it.
    """

    def __init__(self, message: str, *, layer: str, layer_type: str, op: str) -> None:
        super().__init__(message)
        self.layer = layer
        self.layer_type = layer_type
        self.op = op


@dataclass(slots=True)
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
    field_shape: tuple[int, ...] = ()  # shape of the output the field belongs to (see primary())


@dataclass
class TraceResult:
    records: dict[str, ModuleRecord]
    total_macs: int
    total_flops: int
    output: Any = None
    input_shape: Any = None
    fields: bool = False
    order: list[str] = field(default_factory=list)
    unsupported: dict[str, int] = field(default_factory=dict)  # operator -> calls not counted
    upper_bound: dict[str, int] = field(default_factory=dict)  # data-dependent ops given their largest output
    final: str | None = None  # the module whose spatial output the returned output is, or was computed from
    global_origin: Global | None = None  # where the returned output's field became global, if it did
    sources: dict[int | str, list[int]] = field(
        default_factory=dict
    )  # spatial inputs (index or keyword): shape
    modules: dict[str, nn.Module] = field(default_factory=dict)  # model.named_modules()


def _is_meta_problem(error: BaseException) -> bool:
    text = str(error).lower()
    return "meta" in text and isinstance(error, (NotImplementedError, RuntimeError))


def _upper_bound(func: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
    """The largest output of a data-dependent operator on meta tensors, or ``None`` if it is not one.

    Every element is selected (``nonzero``, ``masked_select``, boolean-mask indexing), every box kept
    (``nms``); ``unique`` returns one value, as if every element were equal: the one case consistent with
    every comparison against it selecting everything.
    """
    packet = func.overloadpacket
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.device.type != "meta":
        return None
    long = {"dtype": torch.long, "device": x.device}
    aten = torch.ops.aten
    if packet is aten.nonzero:
        return torch.empty(x.numel(), x.dim(), **long)
    if packet is aten.masked_select:
        return x.new_empty(torch.broadcast_shapes(x.shape, args[1].shape).numel())
    if packet in (aten.index, aten.index_put, aten.index_put_, aten._unsafe_index):
        indices = list(args[1])
        if not any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices):
            return None
        expanded: list[Any] = []
        for i in indices:  # a k-dimensional mask selects with k index tensors, one entry per element
            if isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8):
                expanded += [torch.empty(i.numel(), **long)] * i.dim()
            else:
                expanded.append(i)
        return func(x, expanded, *args[2:], **kwargs)
    if packet in (aten._unique2, aten.unique_consecutive, aten.unique_dim):
        names = [a.name for a in func._schema.arguments]
        b = {**dict(zip(names, args, strict=False)), **kwargs}
        inverse = torch.zeros(x.shape if b.get("return_inverse") else (0,), **long)
        counts = torch.empty(1 if b.get("return_counts") else 0, **long)
        return x.new_empty(1), inverse, counts
    if str(packet) == "torchvision.nms":
        return torch.empty(x.shape[0], **long)
    return None


class _Mode(TorchDispatchMode):
    def __init__(self, tracer: _Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t = self.tracer
        try:
            out = func(*args, **kwargs) if kwargs else func(*args)
        except Exception as e:
            out = _upper_bound(func, args, kwargs) if _is_meta_problem(e) else None
            if out is None:
                t.failed_op = str(func.overloadpacket)
                raise
            name = str(func.overloadpacket)
            t.upper_bound[name] = t.upper_bound.get(name, 0) + 1
        if not t.muted:
            counter = _LOOKUP.get(func, _MISSING)
            if counter is _MISSING:
                counter = lookup(func)
            if counter is not FREE:
                try:
                    got = None if counter is None else apply(counter, func, args, kwargs, out)
                except Exception as e:
                    t.counter_failed = True
                    raise RuntimeError(f"the counter of {func.overloadpacket} failed: {e}") from e
                if got is None:
                    name = str(func.overloadpacket)
                    t.unsupported[name] = t.unsupported.get(name, 0) + 1
                else:
                    t.macs += got[0]
                    t.flops += got[1]
        if t.propagator is not None:
            t.propagator.propagate(func, args, kwargs, out)
        return out


def shape_of(obj: Any) -> Any:
    """Shape of a tensor as a list; nested containers of tensors as nested lists or dicts."""
    if isinstance(obj, torch.Tensor):
        if obj.is_nested:  # ragged: one shape per sample
            return [list(t.shape) for t in obj.unbind(0)]
        return [*obj.shape]
    if isinstance(obj, Mapping):
        return {str(k): shape_of(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [shape_of(o) for o in obj]
    return None


def primary(obj: Any) -> torch.Tensor | None:
    """The output a model or module *returns* as its result: a tensor itself, the ``out`` entry of a dict
    (else its first value), the first element of a tuple or list; ``None`` when there is no tensor there."""
    for _ in range(8):
        if isinstance(obj, torch.Tensor):
            return obj
        if isinstance(obj, Mapping):
            obj = obj["out"] if "out" in obj else next(iter(obj.values()), None)
        elif isinstance(obj, (list, tuple)):
            obj = obj[0] if obj else None
        else:
            return None
    return None


class _Tracer:
    """Running totals, the stack of running modules and one record per module of ``model``."""

    def __init__(self, model: nn.Module, fields: bool) -> None:
        self.model = model
        self.modules = dict(model.named_modules(remove_duplicate=True))
        self.names = {m: n for n, m in self.modules.items()}
        self.counters = {m: c for m in self.names if (c := module_counter(m)) is not None}
        self.stack: list[str] = []
        self.records = {name: ModuleRecord(name, type(m).__name__) for name, m in self.modules.items()}
        self.by_module = {m: self.records[n] for m, n in self.names.items()}
        self.macs = 0
        self.flops = 0
        self.muted = 0  # > 0 while a module with a registered counter runs: its ops are not counted
        self.unsupported: dict[str, int] = {}
        self.upper_bound: dict[str, int] = {}
        self.failed_op: str | None = None
        self.counter_failed = False
        self.finished = 0
        self.started = 0
        self.entered: list[tuple[int, int, Any]] = []  # running totals (and inputs) as each module began
        self.order: list[str] = []
        self.propagator = FieldPropagator() if fields else None
        if self.propagator is not None:
            self.propagator.where = lambda: self.stack[-1] if self.stack else ""

    def pre(self, module: nn.Module, args: Any) -> None:
        rec = self.by_module.get(module)
        if rec is None:  # a module of another model, or one made during the forward pass
            return
        self.stack.append(rec.name)
        self.entered.append((self.macs, self.flops, args))  # args: for the error message
        if rec.begin < 0:
            rec.begin = self.started
            self.started += 1
        if self.counters and module in self.counters:
            self.muted += 1

    def post(self, module: nn.Module, args: Any, output: Any) -> None:
        rec = self.by_module.get(module)
        if rec is None:
            return
        name, stack = rec.name, self.stack
        if stack and stack[-1] == name:
            stack.pop()
            macs, flops, _ = self.entered.pop()
        elif name in stack:
            i = len(stack) - 1 - stack[::-1].index(name)
            del stack[i]
            macs, flops, _ = self.entered.pop(i)
        else:
            return
        if self.counters:
            counter = self.counters.get(module)
            if counter is not None:
                self.muted -= 1
                if not self.muted:
                    own_macs, own_flops = counter(module, args, output)
                    self.macs += int(own_macs)
                    self.flops += int(own_flops)
        if name not in stack:  # a module running inside itself counts once
            rec.macs += self.macs - macs
            rec.flops += self.flops - flops
        rec.calls += 1
        rec.output_shape = shape_of(output)
        rec.order = self.finished
        self.finished += 1
        if rec.calls == 1:
            self.order.append(name)
        if self.propagator is not None:
            out = output if type(output) is torch.Tensor else primary(output)
            rec.field = self.propagator.mark(out, name)
            if rec.field is not None:
                rec.field_shape = tuple(rec.output_shape) if out is output else tuple(out.shape)

    def running_input(self, name: str) -> tuple:
        """The positional inputs of the running module ``name`` (for an error message)."""
        for n, (_, _, args) in zip(reversed(self.stack), reversed(self.entered), strict=False):
            if n == name:
                return args if isinstance(args, tuple) else ()
        return ()

    @contextmanager
    def hooks(self) -> Iterator[None]:
        """Global module hooks (one pair for every module, fewer calls than one pair per module)."""
        handles = [register_module_forward_pre_hook(self.pre), register_module_forward_hook(self.post)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


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

    The model's training flags are restored afterwards. With ``fields``, every spatial tensor input (each
    positional and keyword tensor of 1 to 3 spatial dimensions, see :func:`spatial_dims`) seeds receptive
    fields in its own pixel coordinates. An exception raised inside a module becomes a :class:`ShapeError`
    naming the innermost module that was running, or a :class:`MetaDeviceError` when the model needs values
    that the meta device does not have.
    """
    tracer = _Tracer(model, fields)
    sources: dict[int | str, list[int]] = {}
    if tracer.propagator is not None:
        for key, a in [*enumerate(args), *kwargs.items()]:
            if isinstance(a, torch.Tensor) and (n := spatial_dims(a, model)):
                tracer.propagator.seed(a, n, key)
                sources[key] = list(a.shape)
    modes = {m: m.training for m in tracer.names}
    for m in modes:
        m.training = False
    try:
        with torch.no_grad(), tracer.hooks(), _Mode(tracer):
            output = model(*args, **kwargs)
    except Exception as e:
        error = _explain(e, tracer, tracer.modules, args, kwargs)
        if error is e:
            raise
        raise error from e
    finally:
        for m, training in modes.items():
            m.training = training
        if tracer.propagator is not None:
            tracer.propagator.release([*args, *kwargs.values()])
    result = TraceResult(
        records=tracer.records,
        total_macs=tracer.macs,
        total_flops=tracer.flops,
        output=output,
        input_shape=[shape_of(a) for a in args] + [shape_of(v) for v in kwargs.values()],
        fields=fields,
        order=tracer.order,
        unsupported=dict(sorted(tracer.unsupported.items(), key=lambda kv: -kv[1])),
        upper_bound=tracer.upper_bound,
        sources=sources,
        modules=tracer.modules,
    )
    if tracer.propagator is not None:
        out = primary(output)
        result.final = tracer.propagator.lineage(out)
        result.global_origin = tracer.propagator.origin(out)
        tracer.propagator.release([out])
    return result


def _explain(
    e: Exception, tracer: _Tracer, modules: dict[str, nn.Module], args: tuple, kwargs: dict[str, Any]
) -> Exception:
    """The exception to raise for ``e``: a :class:`MetaDeviceError`, a :class:`ShapeError`, or ``e`` itself."""
    if tracer.counter_failed:
        return e
    name = tracer.stack[-1] if tracer.stack else ""
    module = modules[name]
    layer_type = type(module).__name__
    shown = name or "(the model itself)"
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if _is_meta_problem(e) and any(
        t.is_meta for t in [*module.parameters(), *module.buffers(), *_tensor_args(args, kwargs)]
    ):
        op = tracer.failed_op or "a Python call on a tensor's values"
        return MetaDeviceError(
            f"layer '{shown}' ({layer_type}) needs real tensor values ({op}), which the meta device does not "
            f"have: {msg}. Build the model on a real device (e.g. the CPU) to measure it",
            layer=name,
            layer_type=layer_type,
            op=op,
        )
    if not tracer.stack:
        return e
    given = ", ".join(_describe(a) for a in [*args, *kwargs.values()])
    reached = ", ".join(_describe(a) for a in tracer.running_input(name) if isinstance(a, torch.Tensor))
    expects = ""
    for attr, what in (("in_channels", "input channels"), ("in_features", "input features")):
        if isinstance(getattr(module, attr, None), int):
            expects = f"expects {getattr(module, attr)} {what}, "
    return ShapeError(
        f"input {given} does not fit the model: layer '{shown}' ({layer_type}) {expects}"
        f"got {reached or 'its input'}: {msg}",
        layer=name,
        layer_type=layer_type,
    )


def _tensor_args(args: tuple, kwargs: dict[str, Any]) -> list[torch.Tensor]:
    out = []
    for a in [*args, *kwargs.values()]:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(t for t in a if isinstance(t, torch.Tensor))
    return out


def normalize_inputs(
    model: nn.Module, input_size: Any, inputs: Any, *, dtype: torch.dtype | None = None
) -> tuple[tuple, dict[str, Any]]:
    """``(args, kwargs)`` for the forward call from ``input_size`` (a shape, or several) or ``inputs``.

    A shape is a sequence of positive whole numbers (``int``, NumPy integers, or floats such as ``2.0``);
    several shapes (a list of shapes) make several positional inputs.
    """
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
            f"inputs must be a tensor, a tuple of tensors or a dict of tensors; got {type(inputs).__name__}"
        )
    sizes = list(input_size) if _is_sequence(input_size) else None
    if sizes is None or not sizes:
        raise ValueError(
            f"input_size must be a shape such as (1, 3, 224, 224) or a list of shapes; got {input_size!r}"
        )
    shapes = [sizes] if all(_is_scalar(v) for v in sizes) else sizes
    device, param_dtype = _placement(model)
    out = []
    for s in shapes:
        shape = _shape(s, input_size)
        out.append(torch.randn(*shape, device=device, dtype=dtype or param_dtype))
    return tuple(out), {}


def _is_sequence(v: Any) -> bool:
    if isinstance(v, (tuple, list, torch.Size)):
        return True
    return type(v).__module__ == "numpy" and getattr(v, "ndim", 0) >= 1


def _is_scalar(v: Any) -> bool:
    return isinstance(v, numbers.Number) or (type(v).__module__ == "numpy" and getattr(v, "ndim", 1) == 0)


def _shape(s: Any, given: Any) -> tuple[int, ...]:
    bad = ValueError(f"input_size must hold positive whole numbers, such as (1, 3, 224, 224); got {given!r}")
    if not _is_sequence(s) or len(s) == 0:
        raise bad
    shape = []
    for v in list(s):
        if isinstance(v, bool) or not _is_scalar(v):
            raise bad
        try:
            n = operator.index(v)
        except TypeError:
            f = float(v) if isinstance(v, numbers.Real) or type(v).__module__ == "numpy" else math.nan
            if not math.isfinite(f) or not f.is_integer():
                raise bad from None
            n = int(f)
        if n < 1:
            raise bad
        shape.append(n)
    return tuple(shape)


def _placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()
