"""Effective receptive field (Luo, Li, Urtasun & Zemel, "Understanding the Effective Receptive Field in
Deep Convolutional Neural Networks", NeurIPS 2016).

The theoretical receptive field says which input pixels *can* reach an output; the effective one measures
how much each does: put a gradient of 1 on the centre element of a layer's output (all channels),
back-propagate to the input, and average ``|d y_centre / d x|`` over random inputs. Luo et al. show it
is roughly Gaussian and fills only a fraction of the theoretical field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nnatlas._suggest import unknown_choice_message
from nnatlas.analysis._trace import primary
from nnatlas.analysis.receptive_field import LayerField, receptive_field


class _Stop(Exception):
    """Raised by the hook once the layer's output is captured: the rest of the model need not run."""


@dataclass(frozen=True)
class EffectiveReceptiveField:
    """``heatmap`` ``(H, W)`` (spatial size of the input), scaled to a maximum of 1.

    ``extent`` per spatial dimension: the width in pixels of the central interval that holds ``mass`` of
    the heat map's marginal along that dimension (trimming ``(1 - mass) / 2`` from each tail); ``bounds``
    the first and last pixel of that interval.
    ``theoretical`` is the layer's theoretical field (:func:`~nnatlas.analysis.receptive_field`), for
    comparison; ``centre`` the index of the output element whose field this is, ``samples`` the number of
    random batches averaged.
    """

    layer: str
    centre: tuple[int, ...]
    heatmap: torch.Tensor
    extent: tuple[int, ...]
    bounds: tuple[tuple[int, int], ...]
    mass: float
    samples: int
    theoretical: LayerField | None


def _bounds(heat: torch.Tensor, mass: float) -> tuple[tuple[int, int], ...]:
    total = heat.sum()
    if total <= 0:
        return ((0, -1),) * heat.dim()
    out = []
    tail = (1.0 - mass) / 2
    for d in range(heat.dim()):
        others = [i for i in range(heat.dim()) if i != d]
        marginal = heat.sum(dim=others) if others else heat
        cum = torch.cumsum(marginal, 0) / total
        lo = int(torch.searchsorted(cum, torch.tensor(tail, dtype=cum.dtype)))
        hi = int(torch.searchsorted(cum, torch.tensor(1.0 - tail, dtype=cum.dtype)))
        out.append((lo, min(hi, marginal.numel() - 1)))
    return tuple(out)


def effective_receptive_field(
    model: nn.Module,
    input_size: Sequence[int],
    layer: str | None = None,
    *,
    samples: int = 8,
    mass: float = 0.95,
    seed: int = 0,
) -> EffectiveReceptiveField:
    """Gradient-based effective receptive field of ``layer``'s centre output element.

    Args:
        model: any ``nn.Module`` with real (not ``meta``) weights; run in eval mode, restored afterwards.
        input_size: ``(B, C, *spatial)``; every one of the ``samples`` batches is drawn from ``N(0, 1)``.
        layer: a module name from ``model.named_modules()``; default: the deepest spatial output
            (``receptive_field(model, input_size).final``).
        samples: number of random batches to average over.
        mass: fraction of the heat map inside the reported ``extent``.
        seed: seed of the random inputs (a private generator; the global RNG is untouched).

    Returns:
        An :class:`~nnatlas.analysis.EffectiveReceptiveField` whose ``heatmap`` has the input's spatial
        shape ``(H, W)``: the absolute gradient of the centre output element (all its channels) with
        respect to the input, summed over the batch and the input channels, averaged over the samples
        and scaled to a maximum of 1.

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 1, 3))
    >>> erf = effective_receptive_field(model, (1, 1, 11, 11), samples=2)
    >>> erf.layer, erf.heatmap.shape, erf.theoretical.size
    ('', torch.Size([11, 11]), (5, 5))
    """
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive int; got {samples!r}")
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1]; got {mass!r}")
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise ValueError("model must have real weights for the effective receptive field; got meta tensors")
    rf = receptive_field(model, input_size)
    modules = dict(model.named_modules())
    if layer is None:
        layer = rf.final_name
        if layer is None:
            raise ValueError(f"the model has no spatial output for input_size {tuple(input_size)}")
    if layer not in modules:
        raise ValueError(unknown_choice_message("layer", layer, [n for n in modules if n]))
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    captured: list[torch.Tensor] = []

    def hook(module, args, output):
        captured.append(primary(output))  # a tensor, the "out" of a dict, the first of a tuple
        raise _Stop

    generator = torch.Generator(device="cpu").manual_seed(seed)
    modes = {m: m.training for m in model.modules()}
    handle = modules[layer].register_forward_hook(hook)
    model.eval()
    heat = None
    centre: tuple[int, ...] = ()
    try:
        for _ in range(samples):
            x = torch.randn(*input_size, generator=generator, dtype=dtype).to(device).requires_grad_(True)
            captured.clear()
            try:
                model(x)
            except _Stop:
                pass
            if not captured or captured[0] is None:
                raise ValueError(f"layer {layer!r} did not run in the forward pass or returned no tensor")
            y = captured[0]  # (B, C, *S)
            n_spatial = x.dim() - 2
            if y.dim() < 2 + n_spatial:
                raise ValueError(f"layer {layer!r} output {tuple(y.shape)} is not spatial")
            centre = tuple(s // 2 for s in y.shape[-n_spatial:])
            seed_grad = torch.zeros_like(y)
            seed_grad[(..., *centre)] = 1.0
            (g,) = torch.autograd.grad(y, x, seed_grad)
            g = g.abs().sum(dim=(0, 1))  # (*spatial)
            heat = g if heat is None else heat + g
    finally:
        handle.remove()
        for m, training in modes.items():
            m.training = training
    assert heat is not None
    heat = (heat / samples).detach().to("cpu", torch.float64)
    peak = heat.max()
    if not peak > 0:  # e.g. a ReLU whose centre unit is inactive on every sample: no field to measure
        raise ValueError(
            f"the centre unit of {layer!r} has zero gradient with respect to the input on all {samples} "
            "samples (an inactive ReLU or a constant output?); measure another layer or use more samples"
        )
    heatmap = heat / peak
    bounds = _bounds(heatmap, mass)
    return EffectiveReceptiveField(
        layer=layer,
        centre=centre,
        heatmap=heatmap,
        extent=tuple(hi - lo + 1 for lo, hi in bounds),
        bounds=bounds,
        mass=mass,
        samples=samples,
        theoretical=rf.layers.get(layer),
    )
