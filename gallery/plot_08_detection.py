"""
Object detection: one step (YOLO v1) against two steps (Faster R-CNN)
=====================================================================

.. epigraph::

   没有独立的、显示的提取候选区域（region proposal），直接由输入图像得到其中存在地物体的类别和位置信息的模型。

   *[One-step models:] no separate, explicit extraction of candidate regions (region proposals); the
   class and position of the objects come straight from the input image.*

   -- notes, 物体检测 (单步模型)

.. epigraph::

   有独立的、显示的提取候选区域（region proposal）提取过程，即先在输入图像上筛选出一些可能存在的物体的候选区域，然后针对每个候选区域，判断其是否存在物体，若存在，就给出物体的类别和位置修正信息。

   *[Two-step models:] a separate, explicit region-proposal step: first pick candidate regions of the
   image that may hold an object, then decide for each candidate whether it holds one and, if so, give
   its class and a correction of its position.*

   -- notes, 物体检测 (两步模型)

.. epigraph::

   一般，单步模型速度快，精度比两步模型稍低。

   *In general, one-step models are fast, and a little less accurate than two-step models.*

   -- notes, 物体检测 (对比)

Both kinds of detector in nnatlas follow torchvision's contract: in training mode ``model(images,
targets)`` returns a dict of losses, in eval mode ``model(images)`` returns one dict of boxes, labels and
scores per image. This page shows that contract, looks inside the two-step model for its region
proposals, trains the registered ``yolo_v1`` (one step) and ``fasterrcnn_resnet18_fpn_small`` (two steps)
briefly on the same embedded shapes scenes, and measures in one run their COCO mAP (torchmetrics) and
their inference time per image. The training here lasts seconds: the numbers are what such short runs
give, printed as measured, not the detectors' converged accuracy.
"""

# %%
# Setup
# -----
# Seeded, one torch thread (the inference times below are single-thread times), nothing written to disk.

import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.utils import draw_bounding_boxes

from nnatlas.analysis import count_parameters
from nnatlas.data import load_dataset
from nnatlas.engine import DetectionTask, TrainConfig, Trainer, evaluate_model
from nnatlas.models import create_model

torch.set_num_threads(1)
torch.manual_seed(0)
np.random.seed(0)
t_start = time.perf_counter()

# %%
# The data: shapes scenes with boxes
# ----------------------------------
# Seeded 64x64 scenes of one to four circles, squares, triangles and crosses; each object has a box
# ``(x1, y1, x2, y2)`` in pixels and a label from 1 to 4 (0 is the background, torchvision's convention).

data = load_dataset("shapes", task="detection", num_train=160, num_val=48)
image, target = data.train[0]
print(f"classes: {data.classes}")
print(
    f"one image {tuple(image.shape)}; its target: boxes {target['boxes'].tolist()}, labels {target['labels'].tolist()}"
)


def drawn(img, boxes, names, colours):
    """The image, enlarged 4x so that the labels are legible, with ``boxes`` drawn by torchvision."""
    up = torch.nn.functional.interpolate(img[None], scale_factor=4, mode="nearest")[0]
    out = draw_bounding_boxes((up * 255).to(torch.uint8), boxes * 4, labels=names, colors=colours, width=2)
    return out.permute(1, 2, 0).numpy()


fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
for i, ax in enumerate(axes):
    img, tgt = data.train[i]
    names = [data.classes[int(k)] for k in tgt["labels"]]
    ax.imshow(drawn(img, tgt["boxes"], names, ["lime"] * len(names)))
    ax.set_title(f"training scene {i}", fontsize=8)
    ax.set_xlabel("x (pixels x 4)")
    ax.set_ylabel("y (pixels x 4)")
fig.suptitle("ground-truth boxes")
fig.tight_layout()

# %%
# torchvision's train/eval contract
# ---------------------------------
# The same call gives losses in training mode and detections in eval mode. YOLO v1's losses are the four
# terms of its paper's equation 3; Faster R-CNN's come in two pairs, one for each step: the region
# proposal network (objectness, proposal boxes) and the box head (class, box refinement).

models = {
    "yolo_v1": create_model("yolo_v1", num_classes=data.num_classes),
    "fasterrcnn_resnet18_fpn_small": create_model(
        "fasterrcnn_resnet18_fpn_small", num_classes=data.num_classes
    ),
}
kind = {"yolo_v1": "one step", "fasterrcnn_resnet18_fpn_small": "two steps"}
images = [data.train[i][0] for i in range(2)]
targets = [data.train[i][1] for i in range(2)]
for name, model in models.items():
    model.train()
    losses = model(images, targets)
    assert isinstance(losses, dict) and all(v.dim() == 0 for v in losses.values())
    model.eval()
    with torch.no_grad():
        found = model(images)
    assert isinstance(found, list) and len(found) == len(images)
    assert {"boxes", "labels", "scores"} <= set(found[0])
    print(f"{name} ({kind[name]}, {count_parameters(model):,} parameters)")
    print("  train mode -> dict of losses:", {k: round(float(v.detach()), 3) for k, v in losses.items()})
    print("  eval mode  -> list of dicts:", [{k: tuple(v.shape) for k, v in d.items()} for d in found])

# %%
# The two steps, seen from inside
# -------------------------------
# YOLO v1 predicts a fixed set of boxes straight from the image: ``B`` boxes in each cell of an ``S x S``
# grid. Faster R-CNN first asks its region proposal network (``model.rpn``) for candidate regions, then
# classifies and refines each candidate in its box head (``model.roi_heads``): a hook on the RPN counts
# the proposals the second step receives.

yolo, frcnn = models["yolo_v1"], models["fasterrcnn_resnet18_fpn_small"]
print(
    f"yolo_v1: {yolo.grid_size} x {yolo.grid_size} cells x {yolo.boxes_per_cell} boxes = "
    f"{yolo.grid_size**2 * yolo.boxes_per_cell} candidate boxes per image, scored in one pass"
)
proposals = []
handle = frcnn.rpn.register_forward_hook(
    lambda module, inputs, output: proposals.append([len(b) for b in output[0]])
)
with torch.no_grad():
    frcnn(images)
handle.remove()
print(
    f"fasterrcnn: step 1 (RPN) proposes {proposals[0]} regions for the two images; "
    "step 2 (RoI heads) classifies and refines each of them"
)

# %%
# A short training of each on the same scenes
# -------------------------------------------
# The engine's ``Trainer`` with a ``DetectionTask`` (the sum of the model's losses; COCO mAP on the
# held-out scenes each epoch). Both see the same 160 training scenes; YOLO v1 three times (it is cheap per
# image and needs many passes), Faster R-CNN once. nnatlas's recipes train them 15 and 3 epochs on 4,000
# scenes (``nnatlas train detection``): these runs are a small fraction of that.

runs = {"yolo_v1": (3, 16), "fasterrcnn_resnet18_fpn_small": (1, 4)}  # (epochs, batch size)
task = DetectionTask(data.num_classes, class_names=data.classes)
history = {}
for name, (epochs, batch) in runs.items():
    torch.manual_seed(0)
    config = TrainConfig(epochs=epochs, batch_size=batch, lr=3e-3, warmup_epochs=0.1, seed=0, device="cpu")
    trainer = Trainer(models[name], task, data.train, data.val, config, collate_fn=data.collate_fn)
    t0 = time.process_time()
    history[name] = trainer.fit()
    print(f"{name}: {time.process_time() - t0:.1f} CPU s of training")
    for r in history[name]:
        print(
            f"  epoch {r['epoch']}: train loss {r['train_loss']:.3f}, held-out mAP@.5 {r['val_map_50']:.3f}, mAP {r['val_map']:.3f}"
        )

# %%
# Accuracy and speed, measured in the same run
# --------------------------------------------
# COCO's mAP (``torchmetrics``' ``MeanAveragePrecision`` through :func:`nnatlas.engine.evaluate_model`) on
# the 48 held-out scenes, and the inference time of one image at a time (eval mode, no gradients, one
# thread, the same 24 scenes for both, after two warm-up calls; median).

val_loader = DataLoader(data.val, batch_size=16, collate_fn=data.collate_fn)
timed = [data.val[i][0] for i in range(24)]
table = {}
for name, model in models.items():
    model.eval()
    scores = evaluate_model(model, task, val_loader, device=torch.device("cpu"))
    with torch.no_grad():
        for img in timed[:2]:
            model([img])
        times = []
        for img in timed:
            t0 = time.perf_counter()
            model([img])
            times.append(time.perf_counter() - t0)
    table[name] = {
        "map_50": scores["val_map_50"],
        "map": scores["val_map"],
        "ms": 1000 * float(np.median(times)),
    }
    assert (
        abs(scores["val_map_50"] - history[name][-1]["val_map_50"]) < 1e-6
    )  # the same evaluation as the engine's

print(
    f"{'model':<30} {'kind':<10} {'parameters':>11} {'mAP@.5':>7} {'mAP':>6} {'ms / image':>10} {'images / s':>10}"
)
for name, row in table.items():
    print(
        f"{name:<30} {kind[name]:<10} {count_parameters(models[name]):>11,} {row['map_50']:>7.3f} {row['map']:>6.3f} "
        f"{row['ms']:>10.2f} {1000 / row['ms']:>10.1f}"
    )
one, two = table["yolo_v1"], table["fasterrcnn_resnet18_fpn_small"]
print(
    f"measured here: the one-step model took {one['ms'] / two['ms']:.2f}x the two-step model's time per image; "
    f"mAP@.5 {one['map_50']:.3f} (one step) vs {two['map_50']:.3f} (two steps)"
)

fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(9, 3.2))
names = list(table)
ax_t.bar(names, [table[n]["ms"] for n in names], color=["C0", "C1"])
ax_t.set_ylabel("ms per image (1 thread)")
ax_t.set_title("inference time")
ax_m.bar(names, [table[n]["map_50"] for n in names], color=["C0", "C1"])
ax_m.set_ylabel("held-out mAP@.5")
ax_m.set_title("accuracy after the short training")
for ax in (ax_t, ax_m):
    ax.set_xlabel("model")
    ax.tick_params(axis="x", labelsize=7)
fig.tight_layout()

# %%
# Predicted boxes
# ---------------
# The three highest-scoring boxes per held-out scene, in orange, over the ground truth in green. The score
# thresholds (0.05 by default, which the mAP above used) are set to 0 here, so that even a barely trained
# detector shows what it would propose.

yolo.score_thresh = 0.0
frcnn.roi_heads.score_thresh = 0.0

fig, axes = plt.subplots(2, 4, figsize=(10, 5.4))
for row, (name, model) in enumerate(models.items()):
    for col in range(4):
        img, tgt = data.val[col]
        with torch.no_grad():
            det = model([img])[0]
        top = det["scores"].argsort(descending=True)[:3]
        names = [data.classes[int(k)] for k in tgt["labels"]]
        names += [
            f"{data.classes[int(k)]} {float(p):.2f}"
            for k, p in zip(det["labels"][top], det["scores"][top], strict=True)
        ]
        colours = ["lime"] * len(tgt["labels"]) + ["orange"] * len(top)
        canvas = drawn(img, torch.cat([tgt["boxes"], det["boxes"][top]]), names, colours)
        axes[row, col].imshow(canvas)
        axes[row, col].set_title(f"{name}, scene {col}", fontsize=7)
        axes[row, col].set_xticks([])
        axes[row, col].set_yticks([])
fig.suptitle("predictions (orange: top 3 by score) and ground truth (green)")
fig.tight_layout()

print(f"page computed in {time.perf_counter() - t_start:.1f} s")
