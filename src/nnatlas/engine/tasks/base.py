"""The :class:`Task` protocol and the registry of tasks.

A task turns a batch into a loss (``training_step``) and accumulates its validation metrics
(``new_metrics`` / ``validation_step``); the :class:`~nnatlas.engine.Trainer` knows nothing else
about the problem. Tasks are registered by name (``classification``, ``seq2seq``, ...), as models are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import torch
import torchmetrics
from torch import nn

from nnatlas._suggest import unknown_choice_message

__all__ = ["Task", "get_task_class", "list_tasks", "register_task"]


class Task(Protocol):
    """What the :class:`~nnatlas.engine.Trainer` needs from a task: a loss for a training batch, fresh
    validation metrics, and their update from a validation batch.

    A task is a class registered with :func:`~nnatlas.engine.register_task`; any class with these
    attributes and methods is one (a ``typing.Protocol``, no base class to inherit). The batch is
    whatever the task's data loader yields: ``(images (B, C, H, W), labels (B,))`` for classification,
    token ids ``(src (B, S), tgt (B, T))`` for seq2seq, and so on.
    """

    #: The name the task is registered under, the kind of problem (``classification``).
    name: str
    #: The validation metric that says how good a run is (``val_acc``), for summaries.
    main_metric: str

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """Mean loss of the batch and the number of samples it holds."""

    def new_metrics(self) -> torchmetrics.MetricCollection:
        """Fresh validation metrics; their names become the ``val_*`` columns of ``metrics.jsonl``."""

    def validation_step(self, model: nn.Module, batch: Any, metrics: torchmetrics.MetricCollection) -> None:
        """Update ``metrics`` with one batch (the model is in eval mode, gradients are off)."""

    # Optional: ``finalize(computed) -> dict[str, float]`` turns ``metrics.compute()`` into the scalar
    # columns when some metrics are not scalars (per-class IoU); without it each metric is one float.


_TASKS: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator that records a task class under ``name`` (its ``name`` attribute is set)."""

    def wrap(cls: T) -> T:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is already registered")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return wrap


def list_tasks() -> list[str]:
    """Sorted names of the registered tasks.

    >>> list_tasks()
    ['classification', 'detection', 'segmentation', 'seq2seq']
    """
    return sorted(_TASKS)


def get_task_class(name: str) -> type:
    """The task class registered as ``name``; an unknown name raises ``ValueError`` with the closest names.

    >>> get_task_class("seq2seq").__name__
    'Seq2SeqTask'
    """
    try:
        return _TASKS[name]
    except KeyError:
        raise ValueError(unknown_choice_message("task", name, _TASKS)) from None
