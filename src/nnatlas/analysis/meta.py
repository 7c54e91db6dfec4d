"""Build any model on the ``meta`` device, where its weights take no memory and nothing is initialised.

``with torch.device("meta"): model = builder()`` is enough for most models. Some builders compute with
tensors while they build (torchvision's RegNets derive their stage widths with ``torch.arange(...)
.tolist()``), and on the meta device there are no values to read. :func:`build_on_meta` then builds
again with those computations on the CPU and moves each parameter and buffer to the meta device as it
is registered, so no weight is ever initialised on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """While active, every parameter and buffer registered on a module is moved to the meta device.

    Patches ``nn.Module.register_parameter`` and ``register_buffer`` (and ``__setattr__``'s paths to them)
    for the duration: not safe while another thread builds modules.
    """
    register_parameter = nn.Module.register_parameter
    register_buffer = nn.Module.register_buffer

    def parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register_parameter(module, name, param)
        if param is not None and not param.is_meta:
            module._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)

    def buffer(module: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(module, name, tensor, persistent)
        if tensor is not None and not tensor.is_meta:
            module._buffers[name] = tensor.to("meta")

    nn.Module.register_parameter = parameter  # type: ignore[method-assign]
    nn.Module.register_buffer = buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]


def build_on_meta(builder: Callable[..., nn.Module], *args: Any, **kwargs: Any) -> nn.Module:
    """``builder(*args, **kwargs)`` with every parameter and buffer on the ``meta`` device.

    First under ``torch.device("meta")``; if the builder needs real values (it reads a tensor it computed
    while building), again with its own computations on the CPU and each parameter and buffer moved to
    the meta device as it is registered (logged at INFO). Raises what the builder raises otherwise.

    **Returns:** the model, whose parameters and buffers are all on the ``meta`` device: they have shapes
    and no storage, so the shapes, parameter counts and MACs of a model of any size can be measured
    without memory.

    >>> from torch import nn
    >>> from nnatlas.analysis import count_parameters
    >>> model = build_on_meta(nn.Linear, 4096, 4096)
    >>> model.weight.device, model.weight.shape
    (device(type='meta'), torch.Size([4096, 4096]))
    >>> count_parameters(model)
    16781312
    """
    try:
        with torch.device("meta"):
            return builder(*args, **kwargs)
    except (NotImplementedError, RuntimeError) as e:
        if "meta" not in str(e).lower():
            raise
        logger.info("the builder reads tensor values (%s); building its computations on the CPU", e)
    with _parameters_on_meta():
        model = builder(*args, **kwargs)
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if not t.is_meta:  # assigned without registration (e.g. into a ParameterList's storage)
            raise RuntimeError(f"{name} was not moved to the meta device")
    return model
