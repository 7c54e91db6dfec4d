"""
Semantic segmentation: FCN, U-Net, DeepLab, atrous convolution and the dense CRF
================================================================================

.. epigraph::

   空洞卷积解决了编码过程中信号不断被下采样、细节信息丢失的问题。

   *Atrous convolution solves the problem that the signal is downsampled again and again during encoding
   and detail is lost.*

   -- notes, 语义分割 (DeepLab v1)

.. epigraph::

   CRF 提高模型捕获局部结构信息的能力。

   *The CRF improves the model's ability to capture local structure.*

   -- notes, 语义分割 (DeepLab v1)

A segmentation network labels every pixel. This page lists the registered segmentation models (FCN,
U-Net, DeepLab v1-v3+, ERFNet) with their parameter counts and output shapes, measured on the ``meta``
device so that nothing is allocated; trains a small U-Net for a few seconds on the embedded shapes
scenes through nnatlas's engine; shows its masks next to the ground truth with the mIoU; refines the
predictions with the fully connected CRF of DeepLab v1 (:func:`nnatlas.layers.dense_crf`), on the
network's own output and on a coarse stride-4 version of it; and measures how far the atrous
convolutions of DeepLab's ASPP see.
"""

# %%
# Setup
# -----
# Seeded, one torch thread (small tensors; see the classification page), nothing written to disk.

import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import Patch
from torch import nn
from torch.utils.data import TensorDataset

from nnatlas.analysis import build_on_meta, count_parameters, receptive_field
from nnatlas.data import load_dataset
from nnatlas.engine import SegmentationMetrics, SegmentationTask, TrainConfig, Trainer
from nnatlas.layers import ASPPConv, dense_crf, effective_kernel_size
from nnatlas.models import create_model, get_model_info, list_models

torch.set_num_threads(1)
torch.manual_seed(0)
np.random.seed(0)
t_start = time.perf_counter()

# %%
# The registered segmentation models
# ----------------------------------
# Every model maps ``(B, 3, H, W)`` to ``{"out": (B, K, H, W)}``: one score per class and per pixel, at
# the input's size. Built on the meta device (:func:`nnatlas.analysis.build_on_meta`), even the 134M
# parameters of FCN-8s cost no memory, and a forward pass only propagates shapes.

print(f"{'model':<22} {'parameters':>12}  {'output for (1, 3, 64, 64)':<26} description")
for name in list_models(task="segmentation"):
    meta_model = build_on_meta(create_model, name, num_classes=5).eval()
    out = meta_model(torch.empty(1, 3, 64, 64, device="meta"))["out"]
    assert out.shape == (1, 5, 64, 64), name  # a score per class at every input pixel
    desc = get_model_info(name).description
    print(f"{name:<22} {count_parameters(meta_model):>12,}  {str(tuple(out.shape)):<26} {desc[:70]}")

# %%
# The data: shapes scenes with per-pixel labels
# ---------------------------------------------
# Seeded scenes of one to four circles, squares, triangles and crosses on noisy backgrounds, rendered
# here at 32x32 to keep the training short (the default is 64x64); class 0 is the background. The scenes
# are rendered once into tensors.

data = load_dataset("shapes", task="segmentation", image_size=32, num_train=800, num_val=100)


def render(dataset):
    images, masks = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(images), torch.stack(masks)


x_train, m_train = render(data.train)
x_val, m_val = render(data.val)
palette = np.array(data.palette, dtype=np.uint8)
print(f"classes: {data.classes}; train {tuple(x_train.shape)}, masks {tuple(m_train.shape)}")
share = torch.bincount(m_train.flatten(), minlength=data.num_classes).float() / m_train.numel()
print(
    "share of the training pixels per class:",
    {c: round(float(s), 3) for c, s in zip(data.classes, share, strict=True)},
)


legend = [Patch(color=palette[k] / 255, label=c) for k, c in enumerate(data.classes)]


def show_mask(ax, mask, title):
    ax.imshow(palette[np.asarray(mask)])
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


# %%
# A small U-Net, trained for a few seconds
# ----------------------------------------
# The encoder halves the resolution three times, the decoder doubles it back and concatenates the
# encoder's map of the same size (U-Net's skip connections carry the detail that pooling lost). Same-size
# padding and batch norm (``padding=True``), 8 channels at the first level. ``SegmentationTask`` gives the
# per-pixel cross-entropy and the pixel accuracy, per-class IoU and mIoU of the held-out scenes.
#
# Five epochs on 800 small scenes is a sketch of a training, not a converged model (``nnatlas train
# segmentation`` trains a wider U-Net for 6 epochs on 4,000 scenes at 64x64): the background, most of the
# pixels, is learned first, and the per-class IoU below says how far each shape class has come.

unet = create_model("unet", padding=True, base_channels=8, depth=3, num_classes=data.num_classes)
print(f"U-Net: {count_parameters(unet):,} parameters")
task = SegmentationTask(data.num_classes, class_names=data.classes)
config = TrainConfig(
    epochs=5, batch_size=16, lr=3e-3, scheduler="constant", warmup_epochs=0.0, seed=0, device="cpu"
)
history = Trainer(unet, task, TensorDataset(x_train, m_train), TensorDataset(x_val, m_val), config).fit()
print(f"{'epoch':>5} {'train loss':>10} {'val loss':>9} {'pixel acc':>9} {'mIoU':>6}")
for r in history:
    print(
        f"{r['epoch']:>5} {r['train_loss']:>10.4f} {r['val_loss']:>9.4f} {r['val_pixel_acc']:>9.3f} {r['val_miou']:>6.3f}"
    )
print("held-out IoU per class:", {c: round(history[-1][f"val_iou_{c}"], 3) for c in data.classes})

fig, ax = plt.subplots(figsize=(5, 3.2))
epochs = [r["epoch"] for r in history]
ax.plot(epochs, [r["val_pixel_acc"] for r in history], marker="o", label="pixel accuracy")
ax.plot(epochs, [r["val_miou"] for r in history], marker="o", label="mIoU")
ax.set_xlabel("epoch")
ax.set_ylabel("held-out score")
ax.set_ylim(0, 1)
ax.set_title("U-Net on the 32x32 shapes scenes")
ax.legend()
fig.tight_layout()

# %%
# Predicted masks next to the ground truth
# ----------------------------------------

unet.eval()
with torch.no_grad():
    logits = unet(x_val)["out"]  # (B, K, H, W)
pred = logits.argmax(1)


metric = SegmentationMetrics(data.num_classes)
metric.update(pred, m_val)
scores = metric.compute()
print(
    f"U-Net on the {len(x_val)} held-out scenes: pixel accuracy {scores['pixel_acc']:.3f}, mIoU {scores['miou']:.3f}"
)
assert abs(float(scores["miou"]) - history[-1]["val_miou"]) < 1e-4  # the engine's number, recomputed
assert (
    float(scores["pixel_acc"]) > float(share[0]) - 0.05
)  # sanity: about as good as "all background" or better

fig, axes = plt.subplots(3, 5, figsize=(9, 5.6))
for i in range(5):
    axes[0, i].imshow(x_val[i].permute(1, 2, 0))
    axes[0, i].set_title(f"scene {i}", fontsize=8)
    axes[0, i].set_xticks([])
    axes[0, i].set_yticks([])
    show_mask(axes[1, i], m_val[i], "ground truth")
    show_mask(axes[2, i], pred[i], "U-Net")
fig.legend(handles=legend, loc="lower center", ncol=data.num_classes, fontsize=8)
fig.suptitle("held-out scenes: image, ground truth, U-Net prediction")
fig.tight_layout(rect=(0, 0.06, 1, 1))

# %%
# The fully connected CRF (DeepLab v1)
# ------------------------------------
# Every pixel is a node of the CRF and every pair of pixels an edge: an appearance kernel pulls nearby
# pixels of similar colour towards the same label, a smoothness kernel removes isolated specks. Mean-field
# inference (:func:`nnatlas.layers.dense_crf`, pydensecrf's default parameters) turns per-pixel scores and
# the image (colours 0..255) into new per-pixel marginals.
#
# DeepLab v1 needed it because its network scores every 8th pixel and upsamples the scores bilinearly:
# the classes are right but the outlines are blurred. That situation is built exactly here, at the
# scenes' native 64x64: the ground truth averaged over 8x8 blocks (a perfect stride-8 prediction),
# upsampled, and refined by the CRF.

scenes = load_dataset("shapes", task="segmentation", num_train=1, num_val=8).val
x64, m64 = render(scenes)
one_hot = F.one_hot(m64, data.num_classes).permute(0, 3, 1, 2).float()  # (B, K, 64, 64)
stride8 = F.interpolate(F.avg_pool2d(one_hot, 8), size=(64, 64), mode="bilinear", align_corners=False)
stride8_logits = stride8.clamp_min(1e-4).log()
with torch.no_grad():
    q8 = dense_crf(stride8_logits, x64 * 255)
    assert torch.allclose(q8.sum(1), torch.ones(1))  # a distribution over the classes at every pixel
    # without its pairwise terms the CRF returns the softmax of the scores it was given
    assert torch.allclose(dense_crf(stride8_logits, x64 * 255, w1=0.0, w2=0.0), stride8_logits.softmax(1))


def scores_of(labels, masks):
    metric = SegmentationMetrics(data.num_classes)
    metric.update(labels, masks)
    return metric.compute()


before, after = scores_of(stride8_logits.argmax(1), m64), scores_of(q8.argmax(1), m64)
print(
    f"stride-8 prediction, 8 scenes at 64x64: mIoU {before['miou']:.3f} -> {after['miou']:.3f} with the CRF "
    f"(pixel accuracy {before['pixel_acc']:.3f} -> {after['pixel_acc']:.3f})"
)

fig, axes = plt.subplots(3, 4, figsize=(8, 6))
for i in range(3):
    axes[i, 0].imshow(x64[i].permute(1, 2, 0))
    axes[i, 0].set_title("image", fontsize=8)
    axes[i, 0].set_xticks([])
    axes[i, 0].set_yticks([])
    show_mask(axes[i, 1], m64[i], "ground truth")
    show_mask(axes[i, 2], stride8_logits[i].argmax(0), "stride 8, upsampled")
    show_mask(axes[i, 3], q8[i].argmax(0), "stride 8 + dense CRF")
fig.legend(handles=legend, loc="lower center", ncol=data.num_classes, fontsize=8)
fig.suptitle("DeepLab v1's situation: right classes, blurred outlines; the CRF follows the image's edges")
fig.tight_layout(rect=(0, 0.06, 1, 1))

# %%
# The same CRF on the quick U-Net's own predictions (32x32, the kernel widths left at their defaults).
# Where the network has the wrong class over a whole object, the CRF has nothing to recover: it only moves
# labels along colour edges.

with torch.no_grad():
    q = dense_crf(logits, x_val * 255)
for name, labels in (("U-Net", pred), ("U-Net + dense CRF", q.argmax(1))):
    s = scores_of(labels, m_val)
    print(f"{name:<18} pixel accuracy {s['pixel_acc']:.3f}  mIoU {s['miou']:.3f}")

fig, axes = plt.subplots(2, 4, figsize=(8, 4.2))
for i in range(4):
    show_mask(axes[0, i], pred[i], f"scene {i}: U-Net")
    show_mask(axes[1, i], q[i].argmax(0), f"scene {i}: U-Net + CRF")
fig.legend(handles=legend, loc="lower center", ncol=data.num_classes, fontsize=8)
fig.suptitle("the quick U-Net's masks before and after the dense CRF")
fig.tight_layout(rect=(0, 0.06, 1, 1))

# %%
# Atrous convolution and ASPP: how far each branch sees
# -----------------------------------------------------
# A 3x3 kernel of rate (dilation) ``r`` has ``r - 1`` holes between its taps and spans
# ``k + (k - 1)(r - 1) = 2r + 1`` pixels for the weights of a plain 3x3 convolution. DeepLab v2's ASPP
# runs rates 6, 12, 18 and 24 side by side on the last feature map; v3 uses 6, 12, 18 plus a 1x1 branch and
# image pooling. The receptive field measured by :func:`nnatlas.analysis.receptive_field` on each branch
# (:class:`nnatlas.layers.ASPPConv`) equals the formula.

rates = (1, 2, 6, 12, 18, 24)
print(f"{'rate':>4} {'span (formula)':>14} {'measured field':>14}")
for r in rates:
    field = receptive_field(ASPPConv(1, 1, r), (1, 1, 4 * r + 9, 4 * r + 9)).final.size
    assert field == (effective_kernel_size(3, r),) * 2 == (2 * r + 1,) * 2
    print(f"{r:>4} {effective_kernel_size(3, r):>14} {str(field):>14}")

# The taps themselves: the gradient of one output pixel with respect to the input.
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
for ax, r in zip(axes, (1, 6, 12, 18), strict=True):
    conv = nn.Conv2d(1, 1, 3, padding=r, dilation=r, bias=False)
    nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, 49, 49, requires_grad=True)
    conv(x)[0, 0, 24, 24].backward()
    ax.imshow(x.grad[0, 0] != 0, cmap="Greys")
    ax.set_title(f"rate {r}: spans {2 * r + 1} px", fontsize=9)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
fig.suptitle("the nine input pixels a 3x3 atrous convolution reads for one output (49x49 input)")
fig.tight_layout()

# %%
# DeepLab v3's caveat, checked: on a map smaller than the rate, the eight outer taps of a rate-6 kernel
# only ever read zero padding, and the branch is a 1x1 convolution with the kernel's centre weight. This is
# why nnatlas's training recipe gives ``deeplab_v3plus`` rates 1/2/3 on the 4x4 map that 64x64 scenes
# leave at output stride 16.

branch = nn.Conv2d(8, 8, 3, padding=6, dilation=6, bias=False)
small_map = torch.randn(2, 8, 4, 4)
centre_only = F.conv2d(small_map, branch.weight[:, :, 1:2, 1:2])
assert torch.allclose(branch(small_map), centre_only, atol=1e-6)
print("rate-6 3x3 convolution on a 4x4 map == its centre tap as a 1x1 convolution: True")

print(f"page computed in {time.perf_counter() - t_start:.1f} s")
