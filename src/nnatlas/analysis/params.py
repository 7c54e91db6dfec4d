"""Parameter counting that counts a shared (tied) tensor once."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters; a tensor reachable under several names counts once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # nn.Module.parameters() already de-duplicates by identity
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
