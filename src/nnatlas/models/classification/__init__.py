"""Image classification models. Importing this package registers them.

ImageNet networks with torchvision's ``state_dict`` layout (``weights="torchvision"`` loads torchvision's
pretrained weights): ``alexnet``, ``vgg11`` .. ``vgg19_bn``, ``googlenet``, ``inception_v3``,
``resnet18`` .. ``resnet152``. BN-Inception (``inception_v2``, no pretrained weights). CIFAR networks of the
ResNet paper: ``cifar_resnet20`` .. ``cifar_resnet110`` and their plain twins ``cifar_plain20`` ..
``cifar_plain110``. Paper layouts: ``googlenet(paper=True)``, ``resnet50(stride_in_1x1=True)`` (also 101,
152), ``alexnet(lrn=True, groups=2, widths=PAPER_WIDTHS)``.
"""

from nnatlas.models.classification import (
    alexnet,
    cifar_resnet,
    googlenet,
    inception,
    inception_v2,
    resnet,
    vgg,
)
from nnatlas.models.classification.alexnet import AlexNet
from nnatlas.models.classification.cifar_resnet import CifarResNet
from nnatlas.models.classification.googlenet import GoogLeNet, GoogLeNetOutputs
from nnatlas.models.classification.inception import Inception3, InceptionOutputs
from nnatlas.models.classification.inception_v2 import BNInception
from nnatlas.models.classification.resnet import ResNet
from nnatlas.models.classification.vgg import VGG

__all__ = [
    "VGG",
    "AlexNet",
    "BNInception",
    "CifarResNet",
    "GoogLeNet",
    "GoogLeNetOutputs",
    "Inception3",
    "InceptionOutputs",
    "ResNet",
    "alexnet",
    "cifar_resnet",
    "googlenet",
    "inception",
    "inception_v2",
    "resnet",
    "vgg",
]
