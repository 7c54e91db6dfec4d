"""Shared pieces of the ImageNet classifiers: argument and input checks, and torchvision's weights.

``weights="torchvision"`` (or ``"torchvision:<TAG>"`` such as ``"torchvision:IMAGENET1K_V2"``) loads the
pretrained weights torchvision publishes for the model of the same name, through torchvision's weights
API (``torchvision.models.get_model_weights(name)[TAG].get_state_dict(...)``). The file is downloaded once
(internet needed) and cached by ``torch.hub`` under ``<torch.hub.get_dir()>/checkpoints``; the state dict
is loaded with ``strict=True``, which works because our models keep torchvision's parameter names.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nnatlas._suggest import unknown_choice_message

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

log = logging.getLogger(__name__)

WEIGHTS_SOURCE = "torchvision"


def check_positive_int(name: str, value: Any) -> int:
    """``value`` if it is a positive ``int``, else a ``ValueError`` naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def check_image_input(
    x: torch.Tensor, *, in_channels: int, min_size: int, model: str, hint: str = ""
) -> torch.Tensor:
    """``x`` unchanged if it is ``(B, in_channels, H, W)`` with ``H, W >= min_size``, else ``ValueError``.

    Models call it at the top of ``forward`` / ``forward_features`` so that a too small image fails with
    the model's real limit instead of a shape error deep inside a pooling layer. Each model module
    registers it with ``torch.fx.wrap`` so that ``torch.fx`` tracing (and torchvision's
    ``create_feature_extractor``) keeps the check as one opaque call; returning ``x`` keeps that call
    on the data path, so dead-code elimination of a traced graph cannot drop it.
    """
    if x.dim() != 4:
        raise ValueError(f"{model} expects images (B, C, H, W); got a tensor of shape {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{model} was built for in_channels={in_channels}; got an input with {x.shape[1]} channels"
        )
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h < min_size or w < min_size:
        raise ValueError(f"{model} needs inputs of at least {min_size}x{min_size} pixels{hint}; got {h}x{w}")
    return x


def resolve_torchvision_weights(arch: str, weights: str | None) -> WeightsEnum | None:
    """The torchvision weights enum member that ``weights`` names for ``arch``, or ``None``.

    ``weights`` is ``None``, ``"torchvision"`` (torchvision's ``DEFAULT``) or ``"torchvision:<TAG>"``.
    """
    if weights is None:
        return None
    if not isinstance(weights, str):
        raise TypeError(
            f"weights must be None, 'torchvision' or 'torchvision:<TAG>'; got {type(weights).__name__}"
        )
    source, _, tag = weights.partition(":")
    if source != WEIGHTS_SOURCE:
        raise ValueError(
            f"weights must be None, 'torchvision' or 'torchvision:<TAG>' (e.g. 'torchvision:IMAGENET1K_V1'); "
            f"got {weights!r}"
        )
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    tag = tag or "DEFAULT"
    if tag not in enum.__members__:
        raise ValueError(unknown_choice_message(f"torchvision weights tag for {arch}", tag, enum.__members__))
    return enum[tag]


def check_pretrained_arguments(arch: str, w: WeightsEnum, *, num_classes: int, in_channels: int) -> None:
    """Pretrained ImageNet weights fix the classifier to 1000 classes and the stem to 3 channels."""
    expected = len(w.meta["categories"])
    if num_classes != expected:
        raise ValueError(
            f"weights={WEIGHTS_SOURCE!r} for {arch} has {expected} classes; got num_classes={num_classes} "
            f"(load them with the default num_classes, then replace the classifier)"
        )
    if in_channels != 3:
        raise ValueError(f"weights={WEIGHTS_SOURCE!r} for {arch} needs in_channels=3; got {in_channels}")


def load_torchvision_weights(model: nn.Module, w: WeightsEnum, *, progress: bool = True) -> None:
    """Download (or read from the cache) torchvision's weights ``w`` and load them with ``strict=True``.

    A failed download raises ``RuntimeError`` naming the URL and the cache folder where the file can be
    put by hand on a machine without internet.
    """
    try:
        state_dict = w.get_state_dict(progress=progress, check_hash=True)
    except OSError as e:  # urllib.error.URLError, socket errors, ConnectionError, missing cache folder
        cache = f"{torch.hub.get_dir()}/checkpoints"
        raise RuntimeError(
            f"could not download torchvision's weights {w} from {w.url} ({e}). Pretrained weights need "
            f"internet access once; they are then cached in {cache}. Offline, copy the file "
            f"{w.url.rsplit('/', 1)[-1]} into that folder."
        ) from e
    model.load_state_dict(state_dict, strict=True)
    log.info("loaded torchvision weights %s", w)
