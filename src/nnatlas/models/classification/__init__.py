"""Image classification models. Importing this package registers them."""

from nnatlas.models.classification import cifar_resnet
from nnatlas.models.classification.cifar_resnet import CifarResNet

__all__ = ["CifarResNet", "cifar_resnet"]
