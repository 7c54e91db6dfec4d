"""Exponential moving average (EMA) of a model's weights, evaluated beside the trained weights.

After each optimiser update, ``ema = decay * ema + (1 - decay) * theta`` for every parameter and floating
buffer (so batch-norm running statistics are averaged too). Polyak & Juditsky (1992) showed that averaging
the iterates speeds up stochastic approximation; EMA weights are the usual form in image classification
(Tan & Le 2019, EfficientNet; timm's ``ModelEmaV2``). Built on ``torch.optim.swa_utils.AveragedModel``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class ModelEma(nn.Module):
    """A frozen copy of ``model`` whose weights follow ``decay * ema + (1 - decay) * model``.

    ``update(model)`` after each optimiser step; ``module`` is the averaged model (same forward as
    ``model``). The first update copies the weights.
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1); got {decay}")
        self.decay = decay
        self.averaged = AveragedModel(
            copy.deepcopy(model), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )
        self.averaged.requires_grad_(False)
        self.averaged.eval()

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.averaged(*args, **kwargs)
