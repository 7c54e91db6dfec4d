"""Activation functions by name: the ones the notes list (Sigmoid, Tanh, ReLU, LReLU, PReLU, ELU, Swish) and
their common relatives, all ``torch.nn`` modules except the one torch lacks, Swish with a ``beta``.

- Sigmoid (logistic) ``1 / (1 + exp(-x))``, derivative ``s(1 - s) <= 1/4``: gradients vanish through deep
  stacks; Tanh ``2 s(2x) - 1``, derivative ``<= 1``, zero-centred;
- ReLU ``max(0, x)`` (Nair & Hinton 2010; AlexNet): derivative 1 for ``x > 0``, 0 below (dead units);
- LeakyReLU ``max(0, x) + a min(0, x)`` with a fixed small ``a`` (Maas et al. 2013); PReLU learns ``a``
  (He et al. 2015); ELU ``alpha (exp(x) - 1)`` below zero (Clevert et al. 2016): smooth, mean closer to 0;
- Swish ``x * sigmoid(beta x)`` (Ramachandran et al. 2017): ``beta = 1`` is SiLU (Elfwing et al. 2018),
  ``beta -> inf`` tends to ReLU, ``beta = 0`` is ``x / 2``; GELU ``x * Phi(x)`` (Hendrycks & Gimpel 2016).

Every function applies elementwise and keeps the shape of its input.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from nnatlas._suggest import unknown_choice_message


class Swish(nn.Module):
    """``swish(x) = x * sigmoid(beta * x)``, Ramachandran, Zoph & Le 2017 ("Searching for Activation Functions").

    ``torch.nn.SiLU`` is the special case ``beta = 1`` ("Swish-1"); this module adds the ``beta`` of the
    paper, fixed or (``learnable=True``) a trained scalar, as the paper's "Swish" with trainable ``beta``.
    Elementwise: ``(B, *) -> (B, *)``, any shape in, the same shape out.

    >>> import torch
    >>> x = torch.tensor([-1.0, 0.0, 2.0])
    >>> bool(torch.allclose(Swish()(x), torch.nn.SiLU()(x)))  # beta = 1 is SiLU
    True
    >>> Swish(0.0)(x)  # beta = 0: x / 2
    tensor([-0.5000,  0.0000,  1.0000])
    >>> [name for name, _ in Swish(learnable=True).named_parameters()]
    ['beta']
    """

    def __init__(self, beta: float = 1.0, *, learnable: bool = False) -> None:
        super().__init__()
        if isinstance(beta, bool) or not isinstance(beta, (int, float)):
            raise TypeError(f"beta must be a number; got beta={beta!r}")
        value = torch.tensor(float(beta))
        if learnable:
            self.beta = nn.Parameter(value)
        else:
            self.register_buffer("beta", value)
        self.learnable = learnable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta.to(x.dtype) * x)

    def extra_repr(self) -> str:
        return f"beta={float(self.beta):g}, learnable={self.learnable}"


def _swish(**kwargs) -> nn.Module:
    # Plain "swish" is torch's SiLU (beta = 1); a beta or learnable=True needs the module above.
    return Swish(**kwargs) if kwargs else nn.SiLU()


# Canonical name -> constructor. Lookup ignores case, "_" and "-", so "LeakyReLU", "leaky_relu" and
# "leaky-relu" are one name; _ALIASES adds the notes' spellings.
_ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "rrelu": nn.RReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "celu": nn.CELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": _swish,
    "mish": nn.Mish,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "hardtanh": nn.Hardtanh,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "tanhshrink": nn.Tanhshrink,
    "log_sigmoid": nn.LogSigmoid,
}
_ALIASES = {"linear": "identity", "none": "identity", "logistic": "sigmoid", "lrelu": "leaky_relu"}


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


_LOOKUP = {_key(n): n for n in _ACTIVATIONS} | {_key(a): n for a, n in _ALIASES.items()}


def activation_names() -> list[str]:
    """The canonical names :func:`get_activation` accepts (aliases and other spellings aside)."""
    return sorted(_ACTIVATIONS)


def get_activation(name: str, **kwargs) -> nn.Module:
    """A new activation module by name; ``kwargs`` go to its constructor.

    ``get_activation("leaky_relu", negative_slope=0.2)`` is ``nn.LeakyReLU(0.2)``; case, ``_`` and ``-`` are
    ignored, and the notes' ``LReLU`` and ``Logistic`` are accepted. ``"swish"`` is ``nn.SiLU`` unless a
    ``beta`` or ``learnable=True`` asks for :class:`Swish`. An unknown name raises ``ValueError`` listing
    the valid names closest first; a keyword the activation does not take raises ``TypeError``.
    """
    if not isinstance(name, str):
        raise TypeError(f"activation name must be a str; got {name!r}")
    canonical = _LOOKUP.get(_key(name))
    if canonical is None:
        raise ValueError(unknown_choice_message("activation", name, [*_ACTIVATIONS, *_ALIASES]))
    factory = _ACTIVATIONS[canonical]
    if kwargs and factory is not _swish:
        accepted = inspect.signature(factory).parameters
        unknown = sorted(k for k in kwargs if k not in accepted)
        if unknown:
            raise TypeError(
                f"activation {canonical!r} does not take {', '.join(unknown)}; it takes: "
                f"{', '.join(accepted) or 'no arguments'}"
            )
    return factory(**kwargs)
