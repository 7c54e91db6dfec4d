"""
Image classification: a CNN end to end, max pooling, and rotated or rescaled digits
===================================================================================

.. epigraph::

   给机械一张图片，决定图片中有什么东西。

   *Give the machine a picture, and it decides what is in the picture.*

   -- notes, 图像分类

.. epigraph::

   选最大的像素值作为代表。

   *The largest pixel value is chosen as the representative.*

   -- notes, Pooling

.. epigraph::

   没法处理影像放大缩小或者是旋转的问题。

   *It cannot handle images that are enlarged, shrunk or rotated.*

   -- notes, CNN的缺陷

This page trains the notes' "typical CNN" (convolution, max pooling, convolution, max pooling, flatten,
fully connected) on the embedded 8x8 handwritten digits through nnatlas's engine (``Trainer`` with a
``ClassificationTask``), draws its learning curve and its confusion matrix, shows on a 4x4 example which
value max pooling keeps, and then measures the notes' last claim: how much accuracy the same network
keeps on the held-out digits rotated or rescaled. The committed full run of the ``invariance`` experiment
closes the page.
"""

# %%
# Setup
# -----
# Everything is seeded; the engine trains on the CPU and writes nothing to disk (no ``run_dir``). One
# torch thread: for tensors this small, synchronising threads costs more than it saves (and on a shared
# machine several threads per process can slow training down many times over).

import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from torchvision.transforms.v2 import functional as TF

from nnatlas.analysis import count_parameters, pool_output_size
from nnatlas.data import load_dataset
from nnatlas.engine import ClassificationTask, TrainConfig, Trainer
from nnatlas.layers import ConvNormAct
from nnatlas.viz import plot_curves

torch.set_num_threads(1)
torch.manual_seed(0)
np.random.seed(0)
t_start = time.perf_counter()

# %%
# The data: fixed-size images and one-hot classes
# -----------------------------------------------
# The notes: every image is scaled to the same size, and every class is a one-hot vector. The digits are
# 8x8 grey images; as in the ``invariance`` experiment they are enlarged to 16x16 and centred on a 24x24
# blank canvas, so that a rotated or enlarged digit stays inside the picture.

data = load_dataset("digits")
x_train, y_train = data.train.tensors
x_val, y_val = data.val.tensors
print(
    f"{data.name}: {len(y_train)} training / {len(y_val)} held-out images of {data.image_size}, {data.num_classes} classes"
)

low, high = x_train.min(), x_train.max()


def canvas(x):
    """(B, 1, 8, 8) standardised digits -> (B, 1, 24, 24): ink in [0, 1], enlarged 2x, 4 blank pixels around."""
    x = ((x - low) / (high - low)).clamp(0, 1)
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return F.pad(x, (4, 4, 4, 4))


x_train, x_val = canvas(x_train), canvas(x_val)
print("image tensor of one batch:", tuple(x_train[:64].shape), "(B, C, H, W)")

# One-hot targets: cross-entropy against the one-hot vector is cross-entropy against the class index.
logits = torch.randn(5, 10)
one_hot = F.one_hot(y_train[:5], num_classes=10).float()
print("one-hot of the first five labels", y_train[:5].tolist(), ":\n", one_hot.int())
assert torch.allclose(F.cross_entropy(logits, one_hot), F.cross_entropy(logits, y_train[:5]))

fig, axes = plt.subplots(1, 10, figsize=(10, 1.6))
for k, ax in enumerate(axes):
    ax.imshow(x_train[(y_train == k).nonzero()[0, 0], 0], cmap="gray_r")
    ax.set_title(f"class {k}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("one training digit per class (24x24 canvas)")
fig.tight_layout()

# %%
# The notes' typical CNN
# ----------------------
# conv -> max pool -> conv -> max pool -> flatten -> fully connected, built from
# :class:`nnatlas.layers.ConvNormAct` (3x3 convolution, batch norm, ReLU). Each 2x2 max pool halves the
# side, as :func:`nnatlas.analysis.pool_output_size` says.

side = pool_output_size(pool_output_size(24, 2), 2)
model = nn.Sequential(
    ConvNormAct(1, 16, 3),
    nn.MaxPool2d(2),  # 24 -> 12
    ConvNormAct(16, 32, 3),
    nn.MaxPool2d(2),  # 12 -> 6
    nn.Flatten(),
    nn.Linear(32 * side * side, 64),
    nn.ReLU(),
    nn.Linear(64, 10),
)
assert side == 6 and model[:4](x_train[:2]).shape == (2, 32, 6, 6)
print(f"feature map before the classifier: 32 x {side} x {side}; parameters: {count_parameters(model):,}")

# %%
# Training through the engine
# ---------------------------
# ``Trainer`` runs the epochs (AdamW, cosine schedule after a one-epoch warm-up) and evaluates the
# held-out digits after each one; ``ClassificationTask`` supplies the cross-entropy loss and the
# accuracy (torchmetrics).

config = TrainConfig(epochs=6, batch_size=64, lr=3e-3, seed=0, device="cpu")
trainer = Trainer(
    model, ClassificationTask(10), TensorDataset(x_train, y_train), TensorDataset(x_val, y_val), config
)
history = trainer.fit()
print(f"{'epoch':>5} {'train loss':>10} {'val loss':>9} {'val acc':>8}")
for r in history:
    print(f"{r['epoch']:>5} {r['train_loss']:>10.4f} {r['val_loss']:>9.4f} {r['val_acc']:>8.3f}")

# The per-epoch records drawn by :func:`nnatlas.viz.plot_curves` (losses on a log scale, left; accuracy,
# right); with no ``path`` it returns the figure instead of writing a PNG.
plot_curves(history, title="learning curve of the typical CNN on the digits")

# %%
# Accuracy and the confusion matrix
# ---------------------------------
# Rows are the true digits, columns the predicted ones; the diagonal holds the correct predictions.

model.eval()
with torch.no_grad():
    pred = model(x_val).argmax(1)
confusion = torch.zeros(10, 10, dtype=torch.long)
confusion.index_put_((y_val, pred), torch.ones_like(y_val), accumulate=True)
accuracy = confusion.trace().item() / len(y_val)
print(f"held-out accuracy: {accuracy:.3f} ({confusion.trace().item()} of {len(y_val)})")
assert abs(accuracy - history[-1]["val_acc"]) < 1e-6  # the engine's metric, recomputed by hand
assert accuracy > 0.5  # sanity: far above chance (0.1)
off = confusion.clone().fill_diagonal_(0)
i, j = divmod(int(off.argmax()), 10)
print(f"most frequent confusion: true {i} predicted as {j}, {int(off[i, j])} times")

fig, ax = plt.subplots(figsize=(4.6, 4))
im = ax.imshow(confusion, cmap="Blues")
for (r, c), n in np.ndenumerate(confusion.numpy()):
    if n:
        ax.text(
            c,
            r,
            str(n),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if n > confusion.max() / 2 else "black",
        )
ax.set_xticks(range(10))
ax.set_yticks(range(10))
ax.set_xlabel("predicted digit")
ax.set_ylabel("true digit")
ax.set_title(f"confusion matrix, held-out accuracy {accuracy:.3f}")
fig.colorbar(im, ax=ax, label="images")
fig.tight_layout()

# %%
# Max pooling keeps the largest value of each window
# --------------------------------------------------
# A 4x4 map, 2x2 windows with stride 2: each output is the maximum of its window, and
# ``return_indices`` says which input pixel it came from.

fmap = torch.tensor([[1.0, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
pooled, where = F.max_pool2d(fmap[None, None], 2, return_indices=True)
blocks = fmap.unfold(0, 2, 2).unfold(1, 2, 2)  # (2, 2, 2, 2): the four windows
assert torch.equal(pooled[0, 0], blocks.amax(dim=(-1, -2)))
print("input:\n", fmap, "\nmax pooled:\n", pooled[0, 0], "\nflat index of the kept pixel:\n", where[0, 0])

fig, (ax_in, ax_out) = plt.subplots(1, 2, figsize=(6.4, 3), gridspec_kw={"width_ratios": (2, 1)})
ax_in.imshow(fmap, cmap="Oranges", vmin=0, vmax=9)
kept = set(where.flatten().tolist())
for (r, c), v in np.ndenumerate(fmap.numpy()):
    ax_in.text(
        c,
        r,
        f"{v:g}",
        ha="center",
        va="center",
        fontweight="bold" if r * 4 + c in kept else "normal",
        color="black" if r * 4 + c in kept else "grey",
    )
ax_in.axhline(1.5, color="black")  # the borders of the four 2x2 windows
ax_in.axvline(1.5, color="black")
ax_in.set_title("4x4 input (bold: kept)")
ax_out.imshow(pooled[0, 0], cmap="Oranges", vmin=0, vmax=9)
for (r, c), v in np.ndenumerate(pooled[0, 0].numpy()):
    ax_out.text(c, r, f"{v:g}", ha="center", va="center", fontweight="bold")
ax_out.set_title("2x2 max pooled")
for ax, n in ((ax_in, 4), (ax_out, 2)):
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("column")
    ax.set_ylabel("row")
fig.tight_layout()

# %%
# The same operation inside the trained network: four channels of the first convolution on one digit,
# before and after the first max pool (24x24 -> 12x12; the strongest responses survive).

with torch.no_grad():
    before = model[0](x_val[:1])[0]
    after = model[1](before[None])[0]
fig, axes = plt.subplots(2, 4, figsize=(8, 4.2))
for c in range(4):
    axes[0, c].imshow(before[c], cmap="viridis")
    axes[0, c].set_title(f"channel {c}, 24x24", fontsize=8)
    axes[1, c].imshow(after[c], cmap="viridis")
    axes[1, c].set_title(f"channel {c}, pooled 12x12", fontsize=8)
for ax in axes.flat:
    ax.set_xlabel("x", fontsize=7)
    ax.set_ylabel("y", fontsize=7)
    ax.tick_params(labelsize=6)
fig.suptitle(f"first conv block on a held-out digit (label {int(y_val[0])}), before and after max pooling")
fig.tight_layout()

# %%
# A CNN is not invariant to rotation or scale
# -------------------------------------------
# The trained network has only seen upright digits of one size. The held-out digits are now rotated and
# rescaled about their centre (``torchvision.transforms.v2.functional``, bilinear, blank background),
# the same transforms as the ``invariance`` experiment, and classified again.

angles = (-90, -60, -45, -30, -15, 0, 15, 30, 45, 60, 90)
scales = (0.6, 0.7, 0.85, 1.0, 1.2, 1.4)


def acc(x):
    with torch.no_grad():
        return (model(x).argmax(1) == y_val).float().mean().item()


def rotated(x, degrees):
    return TF.rotate(x, float(degrees), interpolation=TF.InterpolationMode.BILINEAR)


def rescaled(x, scale):
    """``x`` scaled about its centre, the canvas kept."""
    interpolation = TF.InterpolationMode.BILINEAR
    return TF.affine(
        x, angle=0.0, translate=[0, 0], scale=scale, shear=[0.0, 0.0], interpolation=interpolation
    )


acc_rot = [acc(rotated(x_val, a)) for a in angles]
acc_scale = [acc(rescaled(x_val, s)) for s in scales]
print("rotation (degrees): " + "  ".join(f"{a:>5}" for a in angles))
print("accuracy:           " + "  ".join(f"{v:5.3f}" for v in acc_rot))
print("scale:              " + "  ".join(f"{s:>5}" for s in scales))
print("accuracy:           " + "  ".join(f"{v:5.3f}" for v in acc_scale))
# rotating by 0 degrees and scaling by 1 change nothing
assert abs(acc_rot[angles.index(0)] - accuracy) < 1e-6 and abs(acc_scale[scales.index(1.0)] - accuracy) < 1e-6
drop_rot = accuracy - np.mean([acc_rot[angles.index(a)] for a in (-45, -30, 30, 45)])
drop_scale = accuracy - np.mean([acc_scale[scales.index(s)] for s in (0.7, 1.4)])
print(f"accuracy lost at +-30/45 degrees: {drop_rot:.3f}; at scale 0.7/1.4: {drop_scale:.3f}")

fig, (ax_r, ax_s) = plt.subplots(1, 2, figsize=(9, 3.4))
ax_r.plot(angles, acc_rot, marker="o")
ax_r.set_xlabel("rotation of the held-out digits (degrees)")
ax_s.plot(scales, acc_scale, marker="o", color="C1")
ax_s.set_xlabel("scale of the held-out digits (x)")
for ax, title in ((ax_r, "rotation"), (ax_s, "scale")):
    ax.axhline(0.1, color="grey", linestyle=":", label="chance")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend()
fig.suptitle("the CNN trained on upright digits, tested on rotated and rescaled ones")
fig.tight_layout()

example = x_val[:1]
views = [("original", example)]
views += [(f"rotated {a} deg", rotated(example, a)) for a in (30, 60)]
views += [(f"scale {s}", rescaled(example, s)) for s in (0.7, 1.4)]
fig, axes = plt.subplots(1, len(views), figsize=(9, 2.2))
for ax, (name, img) in zip(axes, views, strict=True):
    with torch.no_grad():
        guess = int(model(img).argmax(1))
    ax.imshow(img[0, 0], cmap="gray_r")
    ax.set_title(f"{name}\npredicted {guess}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"one held-out digit (label {int(y_val[0])}) under the transforms")
fig.tight_layout()

# %%
# The committed full experiment
# -----------------------------
# ``nnatlas experiment run invariance`` measures the same claim over three seeds, for nets with and
# without pooling layers, trained with and without random rotations and scalings (augmentation: the
# invariance learned from data). Its committed result, read with
# :func:`nnatlas.experiments.load_results`:

from _committed import committed_results

(result,) = committed_results("invariance")
print(f"claim ({result['claim']['section']}): {result['title']}")
print(f"verdict: {result['verdict']} -- {result['key_number']}")
for row in result["table"]:
    print(
        f"  {row['net, training']:<30} held-out {row['held-out acc']:<15} +-30/45 deg {row['acc at ±30/45°']}  scale 0.7/1.4 {row['acc at scale 0.7/1.4']}"
    )

print(f"page computed in {time.perf_counter() - t_start:.1f} s")
