"""Activation functions and their derivatives, side by side (derivatives by autograd, not by formula)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch

from nnatlas.viz.style import PALETTE, figure, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["activation_curves", "plot_activation_functions"]


def activation_curves(
    functions: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    *,
    low: float = -6.0,
    high: float = 6.0,
    points: int = 601,
) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per name, ``(x, f(x), f'(x))`` on ``points`` evenly spaced ``x`` in ``[low, high]`` (float64); the
    derivative is autograd's, so a module with parameters (``nn.PReLU``) is differentiated as it stands.
    Each of the three is ``(points,)``.

    >>> import torch
    >>> x, y, dy = activation_curves({"relu": torch.relu}, points=5)["relu"]
    >>> x.tolist(), y.tolist(), dy.tolist()
    ([-6.0, -3.0, 0.0, 3.0, 6.0], [0.0, 0.0, 0.0, 3.0, 6.0], [0.0, 0.0, 0.0, 1.0, 1.0])
    """
    if not functions:
        raise ValueError("no activation functions given")
    if not (low < high) or points < 2:
        raise ValueError(f"need low < high and points >= 2; got {low}, {high}, {points}")
    out = {}
    for name, fn in functions.items():
        x = torch.linspace(low, high, points, dtype=torch.float64, requires_grad=True)
        if isinstance(fn, torch.nn.Module):
            fn = fn.double()
        y = fn(x)
        (dy,) = torch.autograd.grad(y.sum(), x)
        out[name] = (x.detach(), y.detach(), dy.detach())
    return out


def plot_activation_functions(
    functions: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    path: str | os.PathLike | None = None,
    *,
    low: float = -6.0,
    high: float = 6.0,
    title: str = "",
) -> Figure | None:
    """Save a PNG with every function ``f`` (left) and its derivative ``f'`` (right) over ``[low, high]``.

    Returns:
        ``None`` once the PNG is written at ``path``; with ``path=None`` the open matplotlib
        ``Figure`` instead, to show or to draw on.
    """
    curves = activation_curves(functions, low=low, high=high)
    fig, (a, b) = figure(1, 2, width=4.6, height=3.6)
    for (name, (x, y, dy)), colour in zip(curves.items(), PALETTE * 4, strict=False):
        a.plot(x.numpy(), y.numpy(), color=colour, label=name)
        b.plot(x.numpy(), dy.numpy(), color=colour, label=name)
    a.set_xlabel("x")
    a.set_ylabel("f(x)")
    b.set_xlabel("x")
    b.set_ylabel("f'(x)")
    a.legend()
    return save(fig, path, title=title)
