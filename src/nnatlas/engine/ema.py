"""Exponential moving average (EMA) of a model's weights, evaluated beside the trained weights.

The EMA starts as a copy of the model; after each optimiser update, for every parameter and floating
buffer (so batch-norm running statistics are averaged too):

    ema <- decay * ema + (1 - decay) * theta

Polyak & Juditsky (1992) showed that averaging the iterates speeds up stochastic approximation; EMA
weights are the usual form in image classification (Tan & Le 2019, EfficientNet; timm's ``ModelEmaV2``,
whose update this is). Integer buffers (``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEma(nn.Module):
    """A frozen copy of ``model`` whose weights follow ``decay * ema + (1 - decay) * model``.

    Call ``update(model)`` after each optimiser step; ``module`` is the averaged model (same forward as
    ``model``, always in eval mode).
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1); got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move every floating-point entry of the average's state toward ``model``'s, ``ema += (1 - decay)
        * (model - ema)``, and copy the others (integer buffers such as batch-norm counters)."""
        ema_state, state = self.module.state_dict(), model.state_dict()
        floats = [k for k, v in ema_state.items() if v.is_floating_point()]
        torch._foreach_lerp_(
            [ema_state[k] for k in floats], [state[k].detach() for k in floats], 1.0 - self.decay
        )
        for k, v in ema_state.items():
            if not v.is_floating_point():
                v.copy_(state[k])

    def train(self, mode: bool = True) -> ModelEma:
        """Set ``mode`` as ``nn.Module.train`` does, but keep the averaged ``module`` in eval mode."""
        super().train(mode)
        self.module.eval()  # the average is evaluated, never trained
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)
