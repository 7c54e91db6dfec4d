"""
Classic CNNs: AlexNet, VGG, Inception, ResNet
=============================================

.. epigraph::

   主要网络结构是堆砌的卷积层和池化层，最后在网络末端加上全连接层和 softmax 层以处理多分类任务。

   *(AlexNet) The main structure is a stack of convolution and pooling layers, with fully connected layers
   and a softmax layer at the end of the network for multi-class classification.*

   -- notes, 常见CNN结构 / AlexNet

.. epigraph::

   提出了瓶颈（bottleneck）结构，即在计算比较大的卷积层之前，先使用 $1*1$ 卷积对其通道进行压缩以减少计算量

   *(Inception-v1) It introduced the bottleneck: before a costly convolution, a 1x1 convolution first
   compresses the channels to reduce the computation.*

   -- notes, 常见CNN结构 / inception-v1

.. epigraph::

   由于有“近道”的存在，若网络在层数加深时性能退化，则它可以通过控制网络中“近道”和“非近道”的组合比例来退回到之前浅层时的状态，即“近道”具备自我关闭能力。

   *(ResNet) Because of the shortcuts, if a deeper network degrades it can fall back to the state of the
   shallower one by adjusting how much of the shortcut and non-shortcut paths it combines: the shortcut can
   switch itself off.*

   -- notes, 常见CNN结构 / ResNet

The classification zoo of :mod:`nnatlas.models` holds the networks of this section with torchvision's
``state_dict`` layout. This page prints their summaries (:func:`nnatlas.analysis.summary`, on the
``meta`` device where only counting is needed), plots how their receptive fields grow stage by stage,
checks parity with torchvision on random weights (nothing is downloaded), and measures three design ideas:
VGG's stacks of 3x3 convolutions, Inception's 1x1 bottleneck and ResNet's shortcut.
"""

import warnings

import matplotlib.pyplot as plt
import torch
import torchvision
from torch import nn

from nnatlas.analysis import build_on_meta, count_parameters, summary
from nnatlas.layers import BasicBlock, InceptionV1
from nnatlas.models import create_model

torch.manual_seed(0)
MODELS = ["alexnet", "vgg16", "googlenet", "inception_v2", "inception_v3", "resnet50"]

# %%
# AlexNet, layer by layer
# -----------------------
# Convolutions and max pools, then three fully connected layers: the summary gives each layer's output
# shape, parameters, multiply-accumulates (MACs; 1 MAC = 2 FLOPs) and receptive field. Built on the
# ``meta`` device, nothing is allocated and nothing is computed. Most of the parameters sit in the fully
# connected head, most of the MACs in the convolutions.

alexnet = build_on_meta(create_model, "alexnet")
s = summary(alexnet, (1, 3, 224, 224), depth=2)
print(s)
conv_params = sum(r.params for r in s.rows if r.type == "Conv2d")
fc_params = sum(r.params for r in s.rows if r.type == "Linear")
conv_macs = sum(r.macs for r in s.rows if r.type == "Conv2d")
print(
    f"\nconv layers: {conv_params / s.total_params:.0%} of the parameters, {conv_macs / s.total_macs:.0%} of the MACs"
)
assert fc_params > conv_params and conv_macs > s.total_macs - conv_macs

# %%
# The zoo at a glance
# -------------------
# Totals at the ImageNet input size (299 px for Inception-v3, 224 px for the others), and the receptive
# field of the last spatial layer. The parameter counts equal torchvision's models of the same name
# and so do the names and shapes of every tensor of the ``state_dict`` (BN-Inception has no torchvision
# twin).


def torchvision_on_meta(name: str) -> nn.Module:
    kwargs = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision warns about the initialisation of its Inceptions
        return build_on_meta(torchvision.models.get_model, name, **kwargs)


print(f"{'model':<14}{'params':>13}{'MACs':>16}{'final RF (px)':>15}{'jump':>6}  at")
fields = {}
for name in MODELS:
    size = 299 if name == "inception_v3" else 224
    model = build_on_meta(create_model, name)
    s = summary(model, (1, 3, size, size), depth=1)
    rf = s.receptive_field
    fields[name] = rf
    print(
        f"{name:<14}{s.total_params:>13,}{s.total_macs:>16,}{rf.final.size[0]:>15}{rf.final.jump[0]:>6}  {rf.final.name}"
    )
    if name != "inception_v2":
        reference = torchvision_on_meta(name)
        assert s.total_params == count_parameters(reference), name
        assert {k: v.shape for k, v in model.state_dict().items()} == {
            k: v.shape for k, v in reference.state_dict().items()
        }, name

# %%
# Receptive-field growth, stage by stage
# --------------------------------------
# :func:`nnatlas.analysis.receptive_field` follows the whole graph (Inception's concatenated branches,
# ResNet's additions). For AlexNet and VGG each convolution and pooling layer of ``features`` is a
# stage; for the others each top-level module with a spatial output. The fields of GoogLeNet, Inception
# and ResNet outgrow the 224 px image before their last stage (their last layers see the whole image,
# padding included); those of AlexNet and VGG-16 stay just under it.


def stages(name: str, rf) -> list[tuple[str, int]]:
    if name in ("alexnet", "vgg16"):
        keep = [
            n for n, f in rf.layers.items() if n.startswith("features.") and f.type in ("Conv2d", "MaxPool2d")
        ]
    else:
        keep = [
            n for n, f in rf.layers.items() if n and "." not in n and f.type not in ("BatchNorm2d", "ReLU")
        ]
    return [(n, rf.layers[n].size[0]) for n in keep]


fig, ax = plt.subplots(figsize=(7.5, 4.5))
for name, rf in fields.items():
    growth = stages(name, rf)
    sizes = [v for _, v in growth]
    assert sizes == sorted(sizes), name  # a field never shrinks along the network
    ax.plot(range(1, len(sizes) + 1), sizes, "o-", ms=3, label=f"{name} ({sizes[-1]} px)")
ax.axhline(224, color="grey", ls="--", lw=1, label="224 px input")
ax.set_yscale("log")
ax.set_xlabel("stage (spatial layer or module, input side first)")
ax.set_ylabel("receptive field (pixels across)")
ax.set_title("Theoretical receptive field of each stage")
ax.legend(fontsize=8)
ax.grid(alpha=0.3, which="both")

for name in ("alexnet", "vgg16", "resnet50"):
    print(name, " -> ".join(str(v) for _, v in stages(name, fields[name])))
assert all(fields[n].final.size[0] < 224 for n in ("alexnet", "vgg16"))
assert all(fields[n].final.size[0] > 224 for n in ("googlenet", "inception_v2", "inception_v3", "resnet50"))

# %%
# Parity with torchvision
# -----------------------
# Each model has torchvision's ``state_dict`` keys and shapes, so torchvision's weights load into it with
# ``strict=True``. Here torchvision's models get random weights (He-uniform convolutions and linear
# layers, random batch-norm statistics so that eval-mode batch norm is really compared), ours load them
# and both run on the same small input (three models here, to keep the page fast; the test suite runs
# every one).


def random_torchvision(name: str) -> nn.Module:
    model = torchvision_on_meta(name).to_empty(device="cpu")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                bound = (6 / m.weight[0].numel()) ** 0.5
                m.weight.uniform_(-bound, bound, generator=g)
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1, generator=g)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model.eval()


PARITY = {"alexnet": 63, "googlenet": 32, "resnet18": 32}  # small inputs: AlexNet needs 63 px
print(f"{'model':<14}{'input':>7}{'same keys':>11}{'max |ours - torchvision|':>26}")
for name, size in PARITY.items():
    reference = random_torchvision(name)
    ours = build_on_meta(create_model, name)
    same_keys = list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    ours.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    print(f"{name:<14}{size:>7}{same_keys!s:>11}{(got - expected).abs().max().item():>26.2e}")
    assert same_keys and expected.abs().max() > 1e-2
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    del reference, ours

# %%
# VGG: stacks of 3x3 instead of 5x5 and 7x7
# -----------------------------------------
# Two stacked 3x3 convolutions see a 5x5 window and three see 7x7, like one 5x5 or 7x7 convolution, with
# ``2 * 9 C^2 = 18 C^2`` and ``3 * 9 C^2 = 27 C^2`` weights instead of ``25 C^2`` and ``49 C^2`` (``C``
# channels in and out, no bias), and one or two more non-linearities.

C = 64


def convs(kernel: int, count: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(count):
        layers += [nn.Conv2d(C, C, kernel, padding=kernel // 2, bias=False), nn.ReLU()]
    return nn.Sequential(*layers)


print(f"{'layers':<16}{'RF':>4}{'params':>9}{'/ C^2':>7}{'MACs at 56x56':>16}")
rows = {}
for label, kernel, count in [("one 5x5", 5, 1), ("two 3x3", 3, 2), ("one 7x7", 7, 1), ("three 3x3", 3, 3)]:
    with torch.device("meta"):
        block = convs(kernel, count)
    s = summary(block, (1, C, 56, 56))
    rows[label] = (s.receptive_field.final.size[0], s.total_params)
    print(f"{label:<16}{rows[label][0]:>4}{s.total_params:>9,}{s.total_params // C**2:>7}{s.total_macs:>16,}")
assert rows["one 5x5"][0] == rows["two 3x3"][0] == 5 and rows["one 7x7"][0] == rows["three 3x3"][0] == 7
assert rows["two 3x3"][1] == 18 * C**2 and rows["one 5x5"][1] == 25 * C**2
assert rows["three 3x3"][1] == 27 * C**2 and rows["one 7x7"][1] == 49 * C**2

fig, ax = plt.subplots(figsize=(6, 3.8))
labels = list(rows)
ax.bar(labels, [rows[k][1] / C**2 for k in labels], color=["#D55E00", "#0072B2", "#D55E00", "#0072B2"])
for i, k in enumerate(labels):
    ax.text(i, rows[k][1] / C**2 + 0.8, f"RF {rows[k][0]}", ha="center")
ax.set_ylabel("weights / C^2")
ax.set_xlabel("layers (C channels in and out)")
ax.set_title("Same receptive field, fewer weights: stacked 3x3 convolutions")
ax.grid(alpha=0.3, axis="y")

# %%
# Inception: the 1x1 bottleneck
# -----------------------------
# GoogLeNet's module 3a receives 192 channels at 28x28. Its "5x5" branch reduces them to 16 with a 1x1
# convolution before the 5x5 convolution to 32 channels (the paper's layout, ``branch3_kernel_size=5``;
# torchvision's GoogLeNet has a 3x3 there). Without the reduction, the 5x5 convolution would read all 192
# channels.

module = build_on_meta(InceptionV1, 192, 64, 96, 128, 16, 32, 32, branch3_kernel_size=5)
with_reduction = summary(module.branch3, (1, 192, 28, 28))
with torch.device("meta"):
    direct = nn.Sequential(nn.Conv2d(192, 32, 5, padding=2, bias=False), nn.BatchNorm2d(32), nn.ReLU())
without_reduction = summary(direct, (1, 192, 28, 28))
print(f"{'5x5 branch of module 3a':<28}{'params':>10}{'MACs':>15}")
print(f"{'1x1 to 16, then 5x5 to 32':<28}{with_reduction.total_params:>10,}{with_reduction.total_macs:>15,}")
print(f"{'5x5 to 32 directly':<28}{without_reduction.total_params:>10,}{without_reduction.total_macs:>15,}")
saving = without_reduction.total_macs / with_reduction.total_macs
print(f"the bottleneck divides the branch's MACs by {saving:.1f}")
assert with_reduction.total_macs == 28 * 28 * (192 * 16 + 25 * 16 * 32)
assert without_reduction.total_macs == 28 * 28 * 25 * 192 * 32
assert saving > 9

# %%
# ResNet: the shortcut
# --------------------
# A residual block computes ``relu(x + F(x))``. Where the shapes match the shortcut is the identity and
# has no parameters; where a stage halves the resolution and changes the width, it is a strided 1x1
# convolution with batch norm (``downsample``).

resnet = build_on_meta(create_model, "resnet18")
for name in ("layer1.0", "layer2.0"):
    block = resnet.get_submodule(name)
    shortcut = block.downsample
    n = count_parameters(shortcut) if shortcut is not None else 0
    print(f"{name}: shortcut = {'identity' if shortcut is None else shortcut}, {n:,} parameters")
assert (
    resnet.layer1[0].downsample is None
    and count_parameters(resnet.layer2[0].downsample) == 64 * 128 + 2 * 128
)

# %%
# The shortcut "can switch itself off": when the residual branch outputs zero (here its last batch norm
# has scale and shift 0, as torchvision's ``zero_init_residual`` starts it), the block returns its input
# unchanged, ``relu(x + 0) = x`` for an input ``x >= 0`` (it comes out of the previous block's ReLU), and
# the gradient passes through unchanged wherever ``x > 0``: a deeper network can fall back to the function
# of a shallower one.

block = BasicBlock(16, 16).eval()
with torch.no_grad():
    block.bn2.weight.zero_()
    block.bn2.bias.zero_()
x = torch.relu(torch.randn(1, 16, 8, 8)).requires_grad_(True)
y = block(x)
(grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
active = x > 0
print(f"max |block(x) - x| = {(y - x).abs().max().item():.1e}")
print(
    f"gradient where x > 0: {grad[active].unique().tolist()}, where x = 0: {grad[~active].unique().tolist()}"
)
torch.testing.assert_close(y, x)
torch.testing.assert_close(grad, active.float())
