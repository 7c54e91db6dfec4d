"""Shared pieces of YOLO v1, SSD and DETR: backbones, the input transform and the checks of the inputs.

**Backbones.** A detector reads its feature maps through :class:`FeatureBackbone`, which calls the
``forward_intermediates`` of a classification network of the zoo (``resnet18`` .. ``resnet152``: index
0 is the stem at stride 2, 1..4 are ``layer1`` .. ``layer4`` at strides 4, 8, 16, 32) or of
:class:`TinyBackbone`, a small convolutional network of the same interface for CPU training. The stages
after the deepest one read, and the classifier, are replaced by ``nn.Identity``, so every parameter of a
detector takes part in its loss.

**Inputs.** Images are a list of ``(C, H, W)`` float tensors in ``[0, 1]``, of any sizes; the model
normalises and resizes them itself with torchvision's ``GeneralizedRCNNTransform`` (its ``fixed_size``
mode: every image resized to the same square, as SSD does) and maps the boxes back to each input's size.
Training targets go through :func:`~nnatlas.models.detection._targets.sanitize_targets` first (clipped to
the image; degenerate and outside boxes dropped with a warning), so they never crash a loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from nnatlas._validate import check_choice, check_int
from nnatlas.layers import ConvNormAct
from nnatlas.models.classification.resnet import ResNet, _check_indices
from nnatlas.models.detection._targets import sanitize_targets
from nnatlas.models.registry import get_model_info

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FeatureBackbone",
    "TinyBackbone",
    "build_backbone",
    "check_images",
    "fixed_size_transform",
    "prepare_inputs",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
#: Backbone names :func:`build_backbone` accepts.
BACKBONES = ("tiny", *RESNETS)


class TinyBackbone(nn.Module):
    """A small plain convolutional network for CPU training: five stages, each a stride-2 ``3 x 3``
    ConvNormAct then a stride-1 one (batch norm, ReLU), as the downsampling stages of VGG with strided
    convolutions instead of pools.

    ``forward_intermediates(x, indices)`` gives the output of the stages ``indices`` (0..4): ``(B, w_i,
    ceil(H / 2^(i+1)), ceil(W / 2^(i+1)))`` for the widths ``w = (16, 32, 64, 128, 256)`` by default,
    with the same interface (``intermediate_channels``, ``intermediate_strides``) as the zoo's ResNet.
    Parameters: ``sum_i 9 w_i (w_{i-1} + w_i) + 4 w_i`` (``w_{-1}`` the input channels): 1,179,760 for
    the default widths and 3 input channels.
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 128, 256),
        *,
        in_channels: int = 3,
        norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        widths = tuple(widths)
        if len(widths) != 5:
            raise ValueError(f"widths must give the channels of 5 stages; got {widths!r}")
        for i, w in enumerate(widths):
            check_int(f"widths[{i}]", w)
        self.in_channels = check_int("in_channels", in_channels)
        stages, c = [], in_channels
        for w in widths:
            stages.append(
                nn.Sequential(
                    ConvNormAct(c, w, 3, stride=2, norm_layer=norm_layer),
                    ConvNormAct(w, w, 3, norm_layer=norm_layer),
                )
            )
            c = w
        self.stages = nn.ModuleList(stages)
        self.intermediate_channels = widths
        self.intermediate_strides = (2, 4, 8, 16, 32)
        self.num_features = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_intermediates(self, x: Tensor, indices: Sequence[int] | None = None) -> list[Tensor]:
        indices = _check_indices(indices, len(self.stages))
        out = []
        for i, stage in enumerate(self.stages[: indices[-1] + 1]):
            x = stage(x)  # (B, w_i, H / 2^(i+1), W / 2^(i+1))
            if i in indices:
                out.append(x)
        return out

    def forward_features(self, x: Tensor) -> Tensor:
        return self.forward_intermediates(x)[-1]


class FeatureBackbone(nn.Module):
    """The feature maps ``indices`` of ``body`` (a zoo ResNet or :class:`TinyBackbone`), shallow to deep.

    ``forward(x (B, C, H, W)) -> [(B, out_channels[k], H / strides[k], W / strides[k]) for k]``. The
    ``state_dict`` keys are those of ``body`` under ``body.``.
    """

    def __init__(self, body: nn.Module, indices: Sequence[int]) -> None:
        super().__init__()
        n = len(body.intermediate_channels)
        self.indices = _check_indices(indices, n)
        self.body = body
        self.out_channels = [body.intermediate_channels[i] for i in self.indices]
        self.strides = [body.intermediate_strides[i] for i in self.indices]
        _drop_unused_stages(body, self.indices[-1])

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.body.forward_intermediates(x, self.indices)


def _drop_unused_stages(body: nn.Module, deepest: int) -> None:
    """Replace what ``forward_intermediates`` never runs by ``nn.Identity`` (no parameters, no keys)."""
    if isinstance(body, ResNet):
        body.avgpool, body.fc = nn.Identity(), nn.Identity()
        for i in range(deepest + 1, 5):  # forward_intermediates index i runs layer{i}
            setattr(body, f"layer{i}", nn.Identity())
    elif isinstance(body, TinyBackbone):
        for i in range(deepest + 1, len(body.stages)):
            body.stages[i] = nn.Identity()


def build_backbone(
    name: str,
    *,
    indices: Sequence[int],
    in_channels: int = 3,
    weights: str | None = None,
    progress: bool = True,
    norm_layer: Callable[[int], nn.Module] | None = None,
    tiny_widths: Sequence[int] = (16, 32, 64, 128, 256),
) -> FeatureBackbone:
    """``name`` (one of :data:`BACKBONES`) read at ``indices`` (0..4, strides 2, 4, 8, 16, 32).

    ``weights="torchvision"`` loads ImageNet weights into a ResNet (internet needed once); ``norm_layer``
    replaces the ResNet's batch norm (e.g. ``torchvision.ops.FrozenBatchNorm2d``).
    """
    check_choice("backbone", name, BACKBONES)
    if name == "tiny":
        if weights is not None:
            raise ValueError(f"backbone='tiny' has no pretrained weights; got weights={weights!r}")
        body = TinyBackbone(tiny_widths, in_channels=in_channels)
    else:
        kwargs = {} if norm_layer is None else {"norm_layer": norm_layer}
        body = get_model_info(name).builder(
            weights=weights, progress=progress, in_channels=in_channels, **kwargs
        )
    return FeatureBackbone(body, indices)


def fixed_size_transform(
    image_size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> GeneralizedRCNNTransform:
    """torchvision's detection transform that normalises and resizes every image to ``image_size``
    squared (``fixed_size``, as torchvision's SSD), and maps predicted boxes back in ``postprocess``."""
    check_int("image_size", image_size)
    return GeneralizedRCNNTransform(
        image_size,
        image_size,
        list(mean),
        list(std),
        size_divisible=1,
        fixed_size=(image_size, image_size),
    )


def check_images(images: Sequence[Tensor], *, in_channels: int = 3, model: str) -> list[Tensor]:
    """``images`` as a list of ``(in_channels, H, W)`` floating tensors, or a clear error."""
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise ValueError(
                f"{model} expects a list of (C, H, W) images; got a tensor of shape {tuple(images.shape)}"
            )
        images = list(images)
    if not isinstance(images, Sequence) or not images:
        raise TypeError(f"{model} expects a non-empty list of (C, H, W) image tensors; got {images!r:.80}")
    for i, img in enumerate(images):
        if not isinstance(img, Tensor):
            raise TypeError(f"{model}: image {i} must be a tensor; got {type(img).__name__}")
        if img.dim() != 3 or img.shape[0] != in_channels:
            raise ValueError(
                f"{model}: image {i} must be ({in_channels}, H, W); got shape {tuple(img.shape)}"
            )
        if not img.is_floating_point():
            raise TypeError(f"{model}: image {i} must be a float tensor in [0, 1]; got {img.dtype}")
    return list(images)


def prepare_inputs(
    transform: GeneralizedRCNNTransform,
    images: Sequence[Tensor],
    targets: Sequence[dict[str, Tensor]] | None,
    *,
    training: bool,
    num_classes: int,
    model: str,
    in_channels: int = 3,
):
    """``(image_list, targets, original_sizes)``: checked images through ``transform``, with the
    sanitised targets resized with them in training (``None`` in eval)."""
    images = check_images(images, in_channels=in_channels, model=model)
    if training and targets is None:
        raise ValueError(f"{model} in training mode needs targets (a list of dicts, one per image)")
    original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    if training:
        targets = sanitize_targets(targets, original_sizes, num_classes=num_classes)
    else:
        targets = None
    image_list, targets = transform(images, targets)
    return image_list, targets, original_sizes
