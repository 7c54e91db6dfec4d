"""Gradient flow and activation statistics of ANY ``nn.Module``, layer by layer, through hooks.

- :func:`gradient_flow` runs one forward and backward pass of ``loss_fn(model(batch))`` and reports, for
  every module that owns parameters, the norm of the gradient of its weights, the norm of the weights and
  their ratio times a learning rate (the size of one plain SGD update relative to the weights; about
  ``1e-3`` is the healthy range of the well-known rule of thumb). Vanishing gradients show as norms that
  fall by orders of magnitude from the last layer to the first, exploding ones as norms that grow.
- :func:`activation_stats` runs one forward pass and reports, for every leaf module, the mean and standard
  deviation of its output, the fraction of exact zeros (dead ReLU units) and the fraction of saturated
  outputs of the bounded activations (sigmoid within 0.01 of 0 or 1, tanh and hardtanh within 0.01 of
  their bounds), where the derivative nearly vanishes.

Neither needs to know the model: the rows are the modules of ``model.named_modules()`` in call order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "ActivationRow",
    "ActivationStats",
    "GradientFlow",
    "GradientRow",
    "activation_stats",
    "gradient_flow",
]


@dataclass(frozen=True)
class GradientRow:
    """One module with parameters: ``grad_norm`` and ``weight_norm`` are L2 norms over all its own
    parameters (``weight`` and ``bias``), ``update_ratio = lr * grad_norm / weight_norm``."""

    name: str
    type: str
    grad_norm: float
    weight_norm: float
    update_ratio: float
    numel: int


@dataclass(frozen=True)
class GradientFlow:
    """What :func:`~nnatlas.analysis.gradient_flow` measured: one :class:`~nnatlas.analysis.GradientRow`
    per module with trainable parameters, in the order the modules ran in the forward pass, and the loss
    of the pass."""

    rows: tuple[GradientRow, ...]
    loss: float

    def norms(self) -> list[float]:
        """The gradient norm of every row, first layer first (the curve of a gradient-flow plot)."""
        return [r.grad_norm for r in self.rows]

    def ratio_first_to_last(self) -> float:
        """Gradient norm of the first layer over that of the last: far below 1 means vanishing."""
        first, last = self.rows[0].grad_norm, self.rows[-1].grad_norm
        return first / last if last > 0 else math.inf

    def as_dicts(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per row, keyed by the fields of :class:`~nnatlas.analysis.GradientRow`."""
        return [r.__dict__.copy() for r in self.rows]


@dataclass(frozen=True)
class ActivationRow:
    """Output statistics of one leaf module over the batch: ``mean``, ``std``, ``zero_fraction`` (exactly
    zero) and ``saturated_fraction`` (None for modules without bounded outputs)."""

    name: str
    type: str
    mean: float
    std: float
    zero_fraction: float
    saturated_fraction: float | None
    numel: int


@dataclass(frozen=True)
class ActivationStats:
    """What :func:`~nnatlas.analysis.activation_stats` measured: one
    :class:`~nnatlas.analysis.ActivationRow` per leaf module, in call order."""

    rows: tuple[ActivationRow, ...]

    def of_type(self, *types: str) -> list[ActivationRow]:
        """The rows of the modules whose class name is one of ``types`` (``of_type("ReLU", "GELU")``)."""
        return [r for r in self.rows if r.type in types]

    def as_dicts(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per row, keyed by the fields of :class:`~nnatlas.analysis.ActivationRow`."""
        return [r.__dict__.copy() for r in self.rows]


def _own_params(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters(recurse=False) if p.requires_grad]


def _call_order(
    model: nn.Module, run: Callable[[], Any], select: Callable[[nn.Module], bool]
) -> tuple[list[str], Any]:
    """Names of the selected modules in the order of their first forward call during ``run()``."""
    order: list[str] = []
    handles = []
    for name, m in model.named_modules():
        if select(m):

            def hook(mod, inp, out, name=name):
                if name not in order:
                    order.append(name)

            handles.append(m.register_forward_hook(hook))
    try:
        result = run()
    finally:
        for h in handles:
            h.remove()
    return order, result


def gradient_flow(
    model: nn.Module,
    batch: Any,
    loss_fn: Callable[[Any], Tensor] | Callable[[Any, Any], Tensor],
    *,
    target: Any = None,
    lr: float = 1e-3,
) -> GradientFlow:
    """Per-layer gradient norms of one forward/backward pass.

    ``batch``: the model's input (a tensor, or a tuple of positional inputs). ``loss_fn(output)`` or, when
    ``target`` is given, ``loss_fn(output, target)`` returns a scalar. The model's existing ``.grad`` are
    kept: the pass accumulates into fresh gradients that are put back afterwards. ``lr``: the learning rate
    of the ``update_ratio`` column.

    **Returns:** a :class:`~nnatlas.analysis.GradientFlow`, one row per module that owns trainable
    parameters (``numel`` of them), first called first.

    Raises ``ValueError`` when the model has no trainable parameter or the loss is not a finite scalar.

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    >>> flow = gradient_flow(model, torch.ones(3, 4), lambda out: out.pow(2).mean())
    >>> [(r.name, r.type, r.numel) for r in flow.rows]  # 4 * 8 + 8 and 8 * 2 + 2 parameters
    [('0', 'Linear', 40), ('2', 'Linear', 18)]
    >>> len(flow.norms()), all(g > 0 for g in flow.norms())
    (2, True)
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("gradient_flow needs a model with trainable parameters")
    saved = {p: p.grad for p in params}
    for p in params:
        p.grad = None
    inputs = batch if isinstance(batch, tuple) else (batch,)
    try:
        order, out = _call_order(model, lambda: model(*inputs), lambda m: bool(_own_params(m)))
        loss = loss_fn(out) if target is None else loss_fn(out, target)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar tensor; got {type(loss).__name__}")
        if not torch.isfinite(loss):
            raise ValueError(f"the loss is not finite ({loss.item()})")
        loss.backward()
        modules = dict(model.named_modules())
        rows = []
        for name in order:
            own = _own_params(modules[name])
            g = math.sqrt(
                sum(float(p.grad.detach().double().pow(2).sum()) for p in own if p.grad is not None)
            )
            w = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in own))
            rows.append(
                GradientRow(
                    name=name or type(model).__name__,
                    type=type(modules[name]).__name__,
                    grad_norm=g,
                    weight_norm=w,
                    update_ratio=lr * g / w if w > 0 else math.inf,
                    numel=sum(p.numel() for p in own),
                )
            )
        return GradientFlow(rows=tuple(rows), loss=float(loss.detach()))
    finally:
        for p, g in saved.items():
            p.grad = g


_BOUNDS: dict[type, tuple[float, float]] = {
    nn.Sigmoid: (0.0, 1.0),
    nn.Hardsigmoid: (0.0, 1.0),
    nn.Tanh: (-1.0, 1.0),
    nn.Hardtanh: (-1.0, 1.0),
    nn.Softsign: (-1.0, 1.0),
}


@torch.no_grad()
def activation_stats(model: nn.Module, batch: Any, *, tolerance: float = 0.01) -> ActivationStats:
    """Output statistics of every leaf module (a module without children) for one forward pass of
    ``batch`` (a tensor or a tuple of positional inputs), in call order. Outputs that are not tensors
    (tuples, dicts) contribute their first tensor; a module called several times in one pass (a shared
    ``nn.ReLU``) is reported for its first call. ``tolerance``: how close to a bound counts as saturated.

    **Returns:** an :class:`~nnatlas.analysis.ActivationStats`; each row's statistics are taken over every
    element of the output (batch included), ``numel`` of them.

    >>> import torch
    >>> from torch import nn
    >>> stats = activation_stats(nn.Sequential(nn.ReLU(), nn.Tanh()), torch.tensor([[-1.0, 0.0, 2.0, 3.0]]))
    >>> [(r.type, r.zero_fraction, r.numel) for r in stats.rows]
    [('ReLU', 0.5, 4), ('Tanh', 0.5, 4)]
    """
    stats: dict[str, ActivationRow] = {}
    handles = []
    for name, m in model.named_modules():
        if next(m.children(), None) is not None:
            continue

        def hook(mod, inp, out, name=name):
            t = out
            while isinstance(t, (tuple, list)) and t:
                t = t[0]
            if isinstance(t, dict) and t:
                t = next(iter(t.values()))
            if not isinstance(t, Tensor) or not t.is_floating_point() or name in stats:
                return
            v = t.detach().float()
            bounds = next((b for cls, b in _BOUNDS.items() if isinstance(mod, cls)), None)
            if isinstance(mod, nn.Hardtanh):
                bounds = (mod.min_val, mod.max_val)
            sat = None
            if bounds is not None:
                lo, hi = bounds
                sat = float(((v <= lo + tolerance) | (v >= hi - tolerance)).float().mean())
            stats[name] = ActivationRow(
                name=name,
                type=type(mod).__name__,
                mean=float(v.mean()),
                std=float(v.std()) if v.numel() > 1 else 0.0,
                zero_fraction=float((v == 0).float().mean()),
                saturated_fraction=sat,
                numel=v.numel(),
            )

        handles.append(m.register_forward_hook(hook))
    try:
        model(*(batch if isinstance(batch, tuple) else (batch,)))
    finally:
        for h in handles:
            h.remove()
    return ActivationStats(rows=tuple(stats.values()))
