"""Parameters and MACs of every torchvision classification, segmentation, video and detection model against
the figures torchvision publishes with its weights (``weights.meta["num_params"]`` and ``["_ops"]``,
GFLOPS that count multiply-adds, rounded to 3 decimals), built on the meta device: nothing is downloaded,
allocated or computed. The weights' metadata fixes the assumptions: the input size of the weights'
transforms, the builder's arguments for trained weights, and for detectors the number of proposals and
detections their published figures happened to count (see DETECTION)."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from nnatlas.analysis import build_on_meta, summary

M = torchvision.models


def published(name):
    return M.get_model_weights(name).DEFAULT.meta


def builder_kwargs(name):
    """What torchvision's builder sets when it is given trained weights (without downloading them)."""
    meta = published(name)
    if name.startswith("vit_"):  # _vision_transformer: image_size = weights.meta["min_size"][0]
        return {"image_size": meta["min_size"][0]}
    if name == "googlenet":  # the published GoogLeNet drops its auxiliary classifiers
        return {"aux_logits": False, "init_weights": False}
    if name == "inception_v3":  # and Inception-v3 keeps its one
        return {"init_weights": False}
    return {}


@pytest.mark.slow
@pytest.mark.parametrize("name", M.list_models(module=M))
def test_every_classification_model_matches_its_published_params_and_macs(name):
    meta = published(name)
    side = M.get_model_weights(name).DEFAULT.transforms().crop_size[0]
    model = build_on_meta(M.get_model, name, weights=None, **builder_kwargs(name))  # RegNets too
    assert all(p.is_meta for p in model.parameters())
    s = summary(model, (1, 3, side, side))
    assert s.total_params == meta["num_params"]
    assert round(s.total_macs / 1e9, 3) == meta["_ops"], (name, s.total_macs)
    assert not s.unsupported and not s.upper_bound


@pytest.mark.parametrize("name", M.list_models(module=M.segmentation))
def test_segmentation_models_with_their_auxiliary_heads_match_the_published_figures(name):
    meta = published(name)
    side = M.get_model_weights(name).DEFAULT.transforms().resize_size[0]  # 520
    aux = {} if name.startswith("lraspp") else {"aux_loss": True}  # LR-ASPP has no auxiliary head
    with torch.device("meta"):
        model = M.get_model(name, weights=None, weights_backbone=None, **aux)
    s = summary(model, (1, 3, side, side))
    assert s.total_params == meta["num_params"]
    assert round(s.total_macs / 1e9, 3) == meta["_ops"]


@pytest.mark.parametrize("name", M.list_models(module=M.video))
def test_video_models_match_the_published_figures_at_16_frames(name):
    meta = published(name)
    side = M.get_model_weights(name).DEFAULT.transforms().crop_size[0]
    with torch.device("meta"):
        model = M.get_model(name, weights=None)
    s = summary(model, (1, 3, 16, side, side))
    assert s.total_params == meta["num_params"]
    assert round(s.total_macs / 1e9, 3) == meta["_ops"]


def freeze_batch_norm(module):
    """``norm_layer = FrozenBatchNorm2d if is_trained else nn.BatchNorm2d`` in the detection builders."""
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                setattr(parent, child_name, FrozenBatchNorm2d(child.num_features, child.eps).to("meta"))


# (name, image side, builder arguments that fix the data-dependent counts, backbone batch norm frozen).
# R-CNN / RetinaNet / FCOS at 800 px (GeneralizedRCNNTransform's min_size), SSD at 300, SSDlite at 320.
# On the meta device every proposal the RPN may keep is kept (1000) and every detection up to the
# budget (100); the published figures counted: 1000 proposals and no detection in the mask or keypoint
# head for the ResNet-50 R-CNNs (Faster and Mask R-CNN publish the same 134.38), no proposal at all for
# the MobileNet ones (their RPN score threshold removed every one), 100 detections for Mask R-CNN v2.
DETECTION = [
    ("fasterrcnn_resnet50_fpn", 800, {}, True),
    ("fasterrcnn_resnet50_fpn_v2", 800, {}, False),
    ("fasterrcnn_mobilenet_v3_large_fpn", 800, {"rpn_post_nms_top_n_test": 0}, True),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", 320, {"rpn_post_nms_top_n_test": 0}, True),
    ("maskrcnn_resnet50_fpn", 800, {"box_detections_per_img": 0}, True),
    ("keypointrcnn_resnet50_fpn", 800, {"box_detections_per_img": 0}, True),
    ("retinanet_resnet50_fpn", 800, {}, True),
    ("retinanet_resnet50_fpn_v2", 800, {}, False),
    ("fcos_resnet50_fpn", 800, {}, True),
    ("ssd300_vgg16", 300, {}, False),
    ("ssdlite320_mobilenet_v3_large", 320, {}, False),
]


def detector(name, kwargs, frozen):
    model = build_on_meta(M.get_model, name, weights=None, weights_backbone=None, **kwargs)
    if frozen:
        freeze_batch_norm(model.backbone)
    return model


def images(side):
    return ([torch.empty(3, side, side, device="meta")],)  # a list of (C, H, W) images, as detectors take


@pytest.mark.parametrize(("name", "side", "kwargs", "frozen"), DETECTION, ids=[d[0] for d in DETECTION])
def test_detection_models_match_the_published_figures_at_their_assumptions(name, side, kwargs, frozen):
    weights = list(M.get_model_weights(name))
    s = summary(detector(name, kwargs, frozen), inputs=images(side))
    assert s.total_params == weights[0].meta["num_params"]
    assert round(s.total_macs / 1e9, 3) in {w.meta["_ops"] for w in weights}  # keypoint: COCO_LEGACY
    assert "aten.nonzero" in s.upper_bound or "aten.index" in s.upper_bound  # counted on meta, as upper bound


def head_macs(head, channels, detections):
    return summary(head, (detections, channels, 14, 14)).total_macs


def test_mask_and_keypoint_heads_add_their_published_detections():
    # Mask R-CNN v2 publishes 100 detections through its mask head and Keypoint R-CNN's COCO_V1 weights one
    # through the keypoint head. On meta their post-processing (pasting masks, reading keypoints) needs
    # values, so the figure is the model without detections plus the heads at that many detections.
    mask = detector("maskrcnn_resnet50_fpn_v2", {"box_detections_per_img": 0}, False)
    base = summary(mask, inputs=images(800)).total_macs
    heads = head_macs(nn.Sequential(mask.roi_heads.mask_head, mask.roi_heads.mask_predictor), 256, 100)
    assert round((base + heads) / 1e9, 3) == published("maskrcnn_resnet50_fpn_v2")["_ops"]
    keypoint = detector("keypointrcnn_resnet50_fpn", {"box_detections_per_img": 0}, True)
    base = summary(keypoint, inputs=images(800)).total_macs
    rh = keypoint.roi_heads
    heads = head_macs(nn.Sequential(rh.keypoint_head, rh.keypoint_predictor), 256, 1)
    assert (
        round((base + heads) / 1e9, 3) == M.detection.KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.meta["_ops"]
    )
