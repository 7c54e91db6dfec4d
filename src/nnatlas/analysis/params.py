"""Parameter counting that counts a shared (tied) tensor once."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model``; a tensor reachable under several names counts once.

    **Arguments:**

    - ``model``: any ``nn.Module``, on any device (``meta`` included).
    - ``trainable_only``: count only the parameters with ``requires_grad``.

    A 3x3 convolution from 3 to 16 channels has ``16 * 3 * 3 * 3 = 432`` weights and 16 biases; a weight
    tied to a second layer is counted once:

    >>> from torch import nn
    >>> count_parameters(nn.Conv2d(3, 16, kernel_size=3))
    448
    >>> embed, head = nn.Embedding(100, 8), nn.Linear(8, 100, bias=False)
    >>> head.weight = embed.weight
    >>> count_parameters(nn.Sequential(embed, head))
    800
    >>> frozen = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    >>> frozen[0].requires_grad_(False)  # doctest: +ELLIPSIS
    Linear(...)
    >>> count_parameters(frozen, trainable_only=True)
    10
    """
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # nn.Module.parameters() already de-duplicates by identity
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
