"""The model registry: a plain dict filled by the :func:`register_model` decorator.

Every builder is a small public function over a private constructor, as in torchvision's
``models/_api.py``; :func:`list_models` filters names with :mod:`fnmatch`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nnatlas._suggest import unknown_choice_message

#: The kinds of problem a model is registered for (``register_model(task=...)``, ``list_models(task=...)``).
TASKS = ("classification", "segmentation", "detection", "seq2seq")


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model.

    ``input_size`` is a small ``(C, H, W)`` input the model accepts (used by the registry-wide test and
    by ``nnatlas inspect``); ``min_size`` the smallest spatial size it accepts.
    """

    name: str
    task: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, ...] = (3, 32, 32)
    min_size: int = 1
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_MODELS: dict[str, ModelInfo] = {}


def register_model(
    name: str | None = None,
    *,
    task: str,
    input_size: tuple[int, ...] = (3, 32, 32),
    min_size: int = 1,
    **extra: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that records a builder under ``name`` (default: the function's name)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is already registered")
        doc = (fn.__doc__ or "").strip().splitlines()
        _MODELS[key] = ModelInfo(
            name=key,
            task=task,
            builder=fn,
            input_size=tuple(input_size),
            min_size=min_size,
            description=doc[0] if doc else "",
            extra=dict(extra),
        )
        return fn

    return wrap


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Sorted names of registered models matching the fnmatch ``pattern`` and, if given, ``task``."""
    if task is not None and task not in TASKS:
        raise ValueError(unknown_choice_message("task", task, TASKS))
    return sorted(
        n
        for n, info in _MODELS.items()
        if fnmatch.fnmatch(n, pattern) and (task is None or info.task == task)
    )


def get_model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``; an unknown name raises ``ValueError`` with the closest names."""
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(unknown_choice_message("model", name, _MODELS)) from None


def create_model(name: str, *, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``num_classes`` is passed on only when given.

    ``kwargs`` go to the model's builder (see its page: ``resnet18``, ``unet``, ...). An unknown name
    raises ``ValueError`` listing the closest registered names.

    >>> import torch
    >>> model = create_model("cifar_resnet20", num_classes=10, in_channels=1)
    >>> model(torch.zeros(2, 1, 8, 8)).shape  # (B, C, H, W) -> (B, num_classes)
    torch.Size([2, 10])
    >>> sum(p.numel() for p in model.parameters())
    269434
    >>> list_models("resnet*"), list_models(task="seq2seq")
    (['resnet101', 'resnet152', 'resnet18', 'resnet34', 'resnet50'], ['lstm_seq2seq', 'transformer_seq2seq'])
    >>> get_model_info("resnet18").input_size
    (3, 64, 64)
    """
    info = get_model_info(name)
    if num_classes is not None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
        kwargs["num_classes"] = num_classes
    return info.builder(**kwargs)
