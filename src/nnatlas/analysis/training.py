"""Cost of one training step: backward MACs per layer and per operator, and the memory it needs.

:func:`~nnatlas.analysis.training_cost` runs one forward pass in training mode with gradients, a loss, and the backward
pass, all under a ``TorchDispatchMode`` (on the ``meta`` device nothing is allocated or computed):

- **Backward MACs** are counted on the operators the backward pass really runs (``convolution_backward``
  with its ``output_mask``, ``mm``, the attention kernels' backward, ...; see
  :mod:`nnatlas.analysis.macs`), not as a fixed multiple of the forward: the first convolution of a
  network, whose input needs no gradient, costs one forward's worth, a frozen layer none. Each autograd
  node made during the forward pass is tagged with the modules running when it was made; a pre-hook on
  the node attributes the operators it runs in the backward pass to those modules.
- **Memory** (bytes): parameters and buffers, gradients (one per trainable parameter), optimizer state
  (SGD with momentum: one buffer per trainable parameter; Adam/AdamW: two, and a step counter), the
  activations saved for backward (every tensor autograd saves, through
  ``torch.autograd.graph.saved_tensors_hooks``, counted once per storage, parameters and inputs
  excluded), and the **peak** of one steady-state step: ``zero_grad(set_to_none=True)``, forward, loss,
  backward, ``optimizer.step()``. The peak of the forward and backward passes is followed operator by
  operator: every output's storage is added when it appears and removed when a weak reference says it
  was freed, on top of what lives throughout (parameters, buffers, optimizer state, inputs). The
  optimizer step adds the gradients and its temporaries: PyTorch's single-tensor Adam/AdamW (the default
  on the CPU) holds two tensors the size of the parameter it updates (``sqrt`` and the division), the
  multi-tensor one (``foreach``, the default on CUDA) one tensor the size of all parameters; SGD none.

:func:`~nnatlas.analysis.measure_training_memory` measures the same step on real tensors: on CUDA with
``torch.cuda.max_memory_allocated``; on the CPU, which has no such counter, with the CPU allocator's own
figures as ``torch.profiler`` records them (``profile_memory=True``: every allocation event carries the
allocator's running total of the bytes it handed out while profiling), added to the bytes alive when the
step starts.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from nnatlas._suggest import unknown_choice_message
from nnatlas.analysis._trace import _Tracer, normalize_inputs, shape_of
from nnatlas.analysis.macs import FREE, apply, lookup
from nnatlas.analysis.summary import si

OPTIMIZERS = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "adamw": 2}
"""Optimizer name -> state tensors per trainable parameter."""

Loss = Callable[[Any], torch.Tensor]


@dataclass(frozen=True)
class TrainingRow:
    """One module: forward and backward cost (its children included) and the bytes saved inside it."""

    name: str
    type: str
    depth: int
    forward_macs: int
    backward_macs: int
    backward_flops: int
    saved_bytes: int


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes of one training step (see :mod:`nnatlas.analysis.training` for how each is found).

    ``peak`` includes everything alive at the worst moment; ``peak_phase`` is ``"forward/backward"`` or
    ``"optimizer step"``.
    """

    parameters: int
    buffers: int
    gradients: int
    optimizer_state: int
    inputs: int
    activations: int
    peak: int
    peak_phase: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field by its name."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class TrainingCost:
    """Forward and backward cost of one training step, per module and per backward operator, and memory.

    ``backward_by_op`` maps each backward operator (``"aten.convolution_backward"``) to its
    ``(macs, flops)``; ``unsupported`` lists operators (forward or backward) that ran and were not counted.
    """

    model: str
    input: list[Any]
    optimizer: str | None
    rows: list[TrainingRow]
    forward_macs: int
    forward_flops: int
    backward_macs: int
    backward_flops: int
    backward_by_op: dict[str, tuple[int, int]]
    memory: TrainingMemory
    unsupported: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field by its name (``backward_by_op`` values as lists, ``memory`` as
        :meth:`TrainingMemory.to_dict`), the rows under ``layers``."""
        return {
            "model": self.model,
            "input": self.input,
            "optimizer": self.optimizer,
            "forward_macs": self.forward_macs,
            "forward_flops": self.forward_flops,
            "backward_macs": self.backward_macs,
            "backward_flops": self.backward_flops,
            "backward_by_op": {k: list(v) for k, v in self.backward_by_op.items()},
            "memory": self.memory.to_dict(),
            "unsupported": dict(self.unsupported),
            "layers": [r.__dict__ for r in self.rows],
        }

    def __str__(self) -> str:
        head = ["layer", "type", "fwd MACs", "bwd MACs", "bwd/fwd", "saved"]
        body = []
        for r in self.rows:
            ratio = f"{r.backward_macs / r.forward_macs:.2f}" if r.forward_macs else "-"
            body.append(
                [
                    "  " * (r.depth - 1) + r.name,
                    r.type,
                    si(r.forward_macs),
                    si(r.backward_macs),
                    ratio,
                    _bytes(r.saved_bytes),
                ]
            )
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                c.rjust(w) if i >= 2 else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        rule = "-" * len(line(head))
        m = self.memory
        out = [f"{self.model}  input {self.input}  optimizer {self.optimizer}", rule, line(head), rule]
        out += [line(b) for b in body]
        partial = " (partial: see below)" if self.unsupported else ""
        out += [
            rule,
            f"forward MACs      {self.forward_macs:,} ({si(self.forward_macs)}){partial}",
            f"backward MACs     {self.backward_macs:,} ({si(self.backward_macs)}){partial}",
            f"memory            parameters {_bytes(m.parameters)}, buffers {_bytes(m.buffers)}, "
            f"gradients {_bytes(m.gradients)}, optimizer state {_bytes(m.optimizer_state)}, "
            f"inputs {_bytes(m.inputs)}, activations saved {_bytes(m.activations)}",
            f"peak              {_bytes(m.peak)} (in the {m.peak_phase})",
        ]
        if self.unsupported:
            calls = ", ".join(f"{op} x{n}" for op, n in self.unsupported.items())
            out.append(f"not counted       {calls}")
        return "\n".join(out)


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def _storage_bytes(tensors: Iterable[torch.Tensor], skip: set[int] | None = None) -> tuple[int, set[int]]:
    """Bytes of the distinct storages behind ``tensors`` (those in ``skip`` excluded), and their keys."""
    seen: set[int] = set()
    total = 0
    for t in tensors:
        key = _storage_key(t)
        if key in seen or (skip is not None and key in skip):
            continue
        seen.add(key)
        total += t.untyped_storage().nbytes()
    return total, seen


class _Lifetimes:
    """Bytes of the storages made by operators and still alive; a weak reference reports each free."""

    def __init__(self, existing: set[int]) -> None:
        self.existing = existing  # storages alive before the step: not counted here
        self.live: dict[int, int] = {}
        self.refs: dict[int, weakref.ref] = {}
        self.current = 0
        self.peak = 0

    def add(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self.live or key in self.existing:
            return
        n = storage.nbytes()
        self.live[key] = n
        self.current += n
        self.peak = max(self.peak, self.current)
        self.refs[key] = weakref.ref(storage, lambda _, key=key: self._free(key))

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)
        self.refs.pop(key, None)


def _flat_tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _flat_tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _flat_tensors(v)]
    return []


class _StepMode(TorchDispatchMode):
    """Counts every operator of the step (forward or backward) and follows the storages' lifetimes."""

    def __init__(self, step: _Step) -> None:
        super().__init__()
        self.step = step

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        s = self.step
        out = func(*args, **kwargs)
        if not func.is_view:
            for t in _flat_tensors(out):
                s.lifetimes.add(t)
        counter = lookup(func)
        if counter is FREE or (not s.backward and s.tracer.muted):
            return out
        got = None if counter is None else apply(counter, func, args, kwargs, out)
        name = str(func.overloadpacket)
        if got is None:
            s.unsupported[name] = s.unsupported.get(name, 0) + 1
            return out
        macs, flops = got
        if s.backward:
            m, f = s.by_op.get(name, (0, 0))
            s.by_op[name] = (m + macs, f + flops)
            s.backward_macs += macs
            s.backward_flops += flops
            for layer in s.current:
                bm, bf = s.layer_backward.get(layer, (0, 0))
                s.layer_backward[layer] = (bm + macs, bf + flops)
        else:
            s.tracer.macs += macs
            s.tracer.flops += flops
        return out


class _Step:
    """State of one traced training step: forward records, autograd-node tags, backward counts, memory."""

    def __init__(self, model: nn.Module, existing: set[int], skip_saved: set[int]) -> None:
        self.tracer = _Tracer(model, fields=False)
        self.lifetimes = _Lifetimes(existing)
        self.skip_saved = skip_saved  # parameters, buffers, inputs: not activations
        self.saved: dict[int, int] = {}  # storage -> bytes
        self.saved_by_layer: dict[str, dict[int, int]] = {}
        self.tags: dict[Any, tuple[str, ...]] = {}
        self.current: tuple[str, ...] = ()
        self.backward = False
        self.backward_macs = 0
        self.backward_flops = 0
        self.by_op: dict[str, tuple[int, int]] = {}
        self.layer_backward: dict[str, tuple[int, int]] = {}
        self.unsupported: dict[str, int] = {}

    # tagging autograd nodes with the modules that made them
    def _tag(self, tensors: list[torch.Tensor], layers: tuple[str, ...]) -> None:
        todo = [t.grad_fn for t in tensors if t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node is None or node in self.tags:
                continue
            self.tags[node] = layers
            node.register_prehook(self._enter(layers))
            todo.extend(fn for fn, _ in node.next_functions)

    def _enter(self, layers: tuple[str, ...]) -> Callable[[Any], None]:
        def hook(grad_outputs: Any) -> None:
            self.current = layers

        return hook

    def pre(self, module: nn.Module, args: Any) -> None:
        if module in self.tracer.names:
            self._tag(_flat_tensors(args), tuple(dict.fromkeys(self.tracer.stack)))  # made before it ran
        self.tracer.pre(module, args)

    def post(self, module: nn.Module, args: Any, output: Any) -> None:
        name = self.tracer.names.get(module)
        if name is not None:
            self._tag(_flat_tensors(output), tuple(dict.fromkeys([*self.tracer.stack, name])))
        self.tracer.post(module, args, output)

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in self.skip_saved:
            n = t.untyped_storage().nbytes()
            self.saved[key] = n
            layer = self.tracer.stack[-1] if self.tracer.stack else ""
            self.saved_by_layer.setdefault(layer, {})[key] = n
        return t


def _default_loss(output: Any) -> torch.Tensor:
    """Sum of every floating-point tensor the model returns (logits, a dict of losses, ``out`` and ``aux``)."""
    parts = [t.sum() for t in _flat_tensors(output) if t.is_floating_point() and t.requires_grad]
    if not parts:
        raise ValueError("the model's output has no floating-point tensor that requires grad; give loss=")
    return torch.stack(parts).sum() if len(parts) > 1 else parts[0]


def _check_optimizer(optimizer: str | None) -> None:
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ValueError(unknown_choice_message("optimizer", str(optimizer), list(OPTIMIZERS)))


def _state_bytes(params: list[nn.Parameter], optimizer: str | None) -> int:
    if optimizer is None:
        return 0
    slots = OPTIMIZERS[optimizer]
    total = sum(slots * p.numel() * p.element_size() for p in params)
    if optimizer in ("adam", "adamw"):
        total += 4 * len(params)  # the float32 step counter of each parameter
    return total


def _step_temporaries(params: list[nn.Parameter], optimizer: str | None, foreach: bool) -> int:
    if optimizer not in ("adam", "adamw") or not params:
        return 0
    sizes = [p.numel() * p.element_size() for p in params]
    return sum(sizes) if foreach else 2 * max(sizes)


def training_cost(
    model: nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    *,
    inputs: Any = None,
    loss: Loss | None = None,
    optimizer: str | None = "adamw",
    foreach: bool | None = None,
    depth: int | None = None,
) -> TrainingCost:
    """Backward MACs per layer and memory of one training step of ``model`` at this input (batch) size.

    Args:
        model: any ``nn.Module``; build it under ``torch.device("meta")`` to estimate a large model without
            allocating or computing anything. It runs in training mode with gradients; its training flags,
            gradients and buffers (batch-norm statistics) are restored afterwards.
        input_size: ``(B, C, H, W)`` (or a list of shapes): the batch size is ``B``.
        inputs: instead of ``input_size``: a tensor, a tuple of tensors, or a dict of keyword tensors.
        loss: ``loss(output) -> scalar``; default: the sum of every floating-point tensor in the output.
        optimizer: ``"sgd"`` (no state), ``"sgd_momentum"``, ``"adam"``, ``"adamw"`` or ``None`` (no step).
        foreach: whether the optimizer step uses PyTorch's multi-tensor kernels (more temporary memory);
            default: as PyTorch chooses on the model's device (CUDA yes; CPU and meta no).
        depth: keep rows of modules at most this deep; ``None`` keeps every module.

    Returns:
        A :class:`TrainingCost`.

    The first convolution's input needs no gradient, so its backward pass computes only the weight
    gradient (one forward's worth of MACs); the second one computes the weight gradient and the input
    gradient (twice its forward):

    >>> from torch import nn
    >>> model = nn.Sequential(
    ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1)
    ... )
    >>> cost = training_cost(model, (1, 3, 8, 8), optimizer="sgd")
    >>> [(r.name, r.forward_macs, r.backward_macs) for r in cost.rows]
    [('0', 13824, 13824), ('1', 0, 0), ('2', 18432, 36864)]
    >>> cost.memory.parameters, cost.memory.gradients  # 1392 float32 parameters
    (5568, 5568)
    """
    _check_optimizer(optimizer)
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 1):
        raise ValueError(f"depth must be a positive int or None; got {depth!r}")
    args, kwargs = normalize_inputs(model, input_size, inputs)
    params = [p for p in model.parameters()]
    trainable = [p for p in params if p.requires_grad]
    buffers = list(model.buffers())
    input_tensors = _flat_tensors([*args, *kwargs.values()])
    param_bytes, param_keys = _storage_bytes(params)
    buffer_bytes, buffer_keys = _storage_bytes(buffers, param_keys)
    input_bytes, input_keys = _storage_bytes(input_tensors, param_keys | buffer_keys)
    existing = param_keys | buffer_keys | input_keys
    device = next((t.device for t in [*params, *buffers, *input_tensors]), torch.device("cpu"))
    if foreach is None:
        foreach = device.type == "cuda"

    step = _Step(model, existing, existing)
    modes = {m: m.training for m in model.modules()}
    grads = {p: p.grad for p in params}
    state = {k: v.clone() for k, v in model.state_dict(keep_vars=True).items() if k in _buffer_names(model)}
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    for p in params:
        p.grad = None
    model.train()
    handles = [register_module_forward_pre_hook(step.pre), register_module_forward_hook(step.post)]
    try:
        with (
            torch.enable_grad(),
            _StepMode(step),
            torch.autograd.graph.saved_tensors_hooks(step.pack, lambda t: t),
        ):
            output = model(*args, **kwargs)
            for h in handles:
                h.remove()
            handles = []
            value = (loss or _default_loss)(output)
            step._tag([value], ())
            forward_macs, forward_flops = step.tracer.macs, step.tracer.flops
            del output
        with _StepMode(step):
            step.backward = True
            value.backward()
            del value
        gradient_bytes, _ = _storage_bytes([p.grad for p in trainable if p.grad is not None])
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
        for p, g in grads.items():
            p.grad = g
        with torch.no_grad():
            for k, t in model.state_dict(keep_vars=True).items():
                if k in state and not t.is_meta:
                    t.copy_(state[k])
    state_bytes = _state_bytes(trainable, optimizer)
    base = param_bytes + buffer_bytes + input_bytes + state_bytes
    peak_fb = base + step.lifetimes.peak
    peak_step = base + gradient_bytes + _step_temporaries(trainable, optimizer, foreach) if optimizer else 0
    memory = TrainingMemory(
        parameters=param_bytes,
        buffers=buffer_bytes,
        gradients=gradient_bytes,
        optimizer_state=state_bytes,
        inputs=input_bytes,
        activations=sum(step.saved.values()),
        peak=max(peak_fb, peak_step),
        peak_phase="forward/backward" if peak_fb >= peak_step else "optimizer step",
    )
    rows = _rows(step, depth)
    return TrainingCost(
        model=type(model).__name__,
        input=[shape_of(a) for a in args] + [shape_of(v) for v in kwargs.values()],
        optimizer=optimizer,
        rows=rows,
        forward_macs=forward_macs,
        forward_flops=forward_flops,
        backward_macs=step.backward_macs,
        backward_flops=step.backward_flops,
        backward_by_op=dict(sorted(step.by_op.items(), key=lambda kv: -kv[1][0])),
        memory=memory,
        unsupported=dict(sorted(step.unsupported.items(), key=lambda kv: -kv[1])),
    )


def _buffer_names(model: nn.Module) -> set[str]:
    return {name for name, _ in model.named_buffers()}


def _rows(step: _Step, depth: int | None) -> list[TrainingRow]:
    records = step.tracer.records
    called = sorted((n for n in step.tracer.order if n), key=lambda n: records[n].begin)
    saved: dict[str, dict[int, int]] = {}
    for layer, storages in step.saved_by_layer.items():  # a module's saved tensors include its children's
        parts = layer.split(".") if layer else []
        for i in range(1, len(parts) + 1):
            saved.setdefault(".".join(parts[:i]), {}).update(storages)
    rows = []
    for name in called:
        d = name.count(".") + 1
        if depth is not None and d > depth:
            continue
        rec = records[name]
        bm, bf = step.layer_backward.get(name, (0, 0))
        rows.append(
            TrainingRow(
                name=name,
                type=rec.type,
                depth=d,
                forward_macs=rec.macs,
                backward_macs=bm,
                backward_flops=bf,
                saved_bytes=sum(saved.get(name, {}).values()),
            )
        )
    return rows


@dataclass(frozen=True)
class MeasuredMemory:
    """Peak bytes of one real training step, the bytes alive when it started, and how it was measured."""

    peak: int
    baseline: int
    method: str


def _make_optimizer(
    params: list[nn.Parameter], optimizer: str, foreach: bool | None
) -> torch.optim.Optimizer:
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=0.01, foreach=foreach)
    if optimizer == "sgd_momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9, foreach=foreach)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=1e-3, foreach=foreach)
    return torch.optim.AdamW(params, lr=1e-3, foreach=foreach)


def measure_training_memory(
    model: nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    *,
    inputs: Any = None,
    loss: Loss | None = None,
    optimizer: str = "adamw",
    foreach: bool | None = None,
) -> MeasuredMemory:
    """Measure the peak memory of one steady-state training step of ``model`` on its (real) device.

    Creates the optimizer's state first (one update with zero gradients), then measures a step: on CUDA
    with ``torch.cuda.max_memory_allocated``; on the CPU with the allocator's running total recorded by
    ``torch.profiler`` (``profile_memory=True``), on top of the bytes alive when the step starts
    (parameters, buffers, optimizer state, inputs). The model's parameters are updated: pass a copy if
    they matter.
    """
    _check_optimizer(optimizer)
    args, kwargs = normalize_inputs(model, input_size, inputs)
    params = [p for p in model.parameters() if p.requires_grad]
    if any(p.is_meta for p in params):
        raise ValueError("measure_training_memory needs a model with real weights; got meta tensors")
    opt = _make_optimizer(params, optimizer, foreach)
    model.train()

    def forward_backward() -> None:
        (loss or _default_loss)(model(*args, **kwargs)).backward()

    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()  # the optimizer's state now exists, as in any step after the first
    opt.zero_grad(set_to_none=True)
    state = [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    alive = [*model.parameters(), *model.buffers(), *state, *_flat_tensors([*args, *kwargs.values()])]
    baseline, _ = _storage_bytes(alive)
    device = params[0].device if params else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        forward_backward()
        opt.step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - start + baseline
        return MeasuredMemory(peak, baseline, "torch.cuda.max_memory_allocated")
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        forward_backward()
        opt.step()
    events = []
    todo = list(prof.profiler.kineto_results.experimental_event_tree())
    while todo:
        e = todo.pop()
        if e.tag == _EventType.Allocation:
            events.append((e.start_time_ns, e.extra_fields.alloc_size, e.extra_fields.total_allocated))
        todo.extend(e.children)
    if not events:
        return MeasuredMemory(baseline, baseline, "torch.profiler CPU allocator events")
    events.sort()
    first = events[0]
    start = first[2] - first[1]  # the allocator's total before the step's first allocation
    top = max(total for _, _, total in events)
    return MeasuredMemory(baseline + top - start, baseline, "torch.profiler CPU allocator events")
