"""Semantic segmentation models. Importing this package registers them (task ``"segmentation"``).

Every model maps ``(B, C, H, W)`` images to ``{"out": (B, K, H, W)}`` logits at the input resolution (plus
``"aux"`` for the models built with ``aux_loss=True``), as torchvision's segmentation models, and holds its
classification backbone as ``model.backbone``, a zoo ResNet or VGG read through ``forward_intermediates``.
``model.min_size`` is the smallest image side it accepts.

- FCN (Long et al. 2015): ``fcn32s``, ``fcn16s``, ``fcn8s`` on VGG-16 as the paper; torchvision's
  ``fcn_resnet50``, ``fcn_resnet101`` (``weights="torchvision"``).
- U-Net (Ronneberger et al. 2015): ``unet`` (the paper's; ``padding=True``; ``backbone="resnet34"``).
- DeepLab (Chen et al.): ``deeplab_v1`` (LargeFOV), ``deeplab_v2`` (ASPP-L), ``deeplab_v3``,
  torchvision's ``deeplabv3_resnet50``, ``deeplabv3_resnet101`` (``weights="torchvision"``),
  ``deeplab_v3plus`` (small CPU defaults: ResNet-18, output stride 16, ASPP 128).
- ERFNet (Romera et al. 2018): ``erfnet``.
"""

from nnatlas.models.segmentation import deeplab, erfnet, fcn, unet
from nnatlas.models.segmentation.deeplab import DeepLabHead, DeepLabV1, DeepLabV2, DeepLabV3, DeepLabV3Plus
from nnatlas.models.segmentation.erfnet import ERFNet
from nnatlas.models.segmentation.fcn import FCN, FCNHead, FCNResNet
from nnatlas.models.segmentation.unet import ResNetUNet, UNet

__all__ = [
    "FCN",
    "DeepLabHead",
    "DeepLabV1",
    "DeepLabV2",
    "DeepLabV3",
    "DeepLabV3Plus",
    "ERFNet",
    "FCNHead",
    "FCNResNet",
    "ResNetUNet",
    "UNet",
    "deeplab",
    "erfnet",
    "fcn",
    "unet",
]
