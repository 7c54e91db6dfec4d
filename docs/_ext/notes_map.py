"""``.. notes-map::``: one row per heading of the course notes (``seed/notes.md``, in Chinese as written
there) to the code that implements it, the tests that prove it, the experiment that measures it and the
gallery page that shows it. References are Sphinx cross-references, so under ``-W`` a renamed symbol or a
removed gallery page fails the build; ``tests/docs/test_notes_map.py`` checks the test paths and the
experiment names."""

from __future__ import annotations

from typing import NamedTuple

from _rst import parse_rst
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective


class Row(NamedTuple):
    heading: str  # as written in the notes
    english: str
    code: tuple[str, ...]  # Sphinx roles, e.g. ":func:`nnatlas.layers.grouped_conv2d`"
    tests: tuple[str, ...]  # paths under tests/
    experiments: tuple[str, ...]  # registered experiment names
    gallery: str  # gallery script stem ("" where the heading has no page of its own)


def _f(name: str) -> str:
    return f":func:`~{name}`"


def _c(name: str) -> str:
    return f":class:`~{name}`"


M = "nnatlas.models."
ROWS: tuple[Row, ...] = (
    Row("循环神经网络入门", "Understanding LSTMs (the notes' first link)", (_c(M + "seq2seq.lstm.LSTMSeq2Seq"),),
        ("tests/models/test_lstm_seq2seq.py",), ("lstm-vs-transformer",), "plot_10_lstm_vs_transformer"),
    Row("资料：各种卷积的动图", "Convolution animations", (_f("nnatlas.viz.conv_animation"), _f("nnatlas.viz.save_animation")),
        ("tests/viz/test_animate.py",), (), "plot_03_conv_variants"),
    Row("卷积与全连接", "Convolution vs fully connected", (_f("nnatlas.layers.conv2d"), _f("nnatlas.analysis.count_parameters")),
        ("tests/layers/test_conv.py", "tests/analysis/test_summary.py"), ("conv-vs-fc",), "plot_01_conv_vs_fc_receptive_field"),
    Row("感受野", "Receptive field", (_f("nnatlas.analysis.receptive_field"), _f("nnatlas.analysis.effective_receptive_field")),
        ("tests/analysis/test_receptive_field.py", "tests/analysis/test_erf.py"), ("stacked-3x3",), "plot_01_conv_vs_fc_receptive_field"),
    Row("卷积核参数计算", "Counting a kernel's parameters (ERFNet formulas)",
        (_f("nnatlas.analysis.count_parameters"), _c("nnatlas.layers.ERFNonBottleneck"), _c("nnatlas.layers.ERFBottleneck"), _c("nnatlas.layers.ERFNonBottleneck1D")),
        ("tests/layers/test_erfnet.py", "tests/analysis/test_published.py"), (), "plot_02_parameter_counting"),
    Row("卷积核变种", "Convolution variants: grouped, transposed, dilated, deformable",
        (_f("nnatlas.layers.grouped_conv2d"), _f("nnatlas.layers.conv_transpose2d"), _f("nnatlas.layers.dilated_conv2d"), _c("nnatlas.layers.DeformConv2d")),
        ("tests/layers/test_conv.py", "tests/layers/test_deform.py", "tests/analysis/test_arithmetic.py"),
        ("transposed-conv", "dilation-rf", "deformable"), "plot_03_conv_variants"),
    Row("AlexNet", "AlexNet (ReLU, LRN, dropout, grouped conv)", (_c(M + "classification.alexnet.AlexNet"), _c("nnatlas.layers.LocalResponseNorm")),
        ("tests/models/test_alexnet.py", "tests/models/test_torchvision_parity.py"), ("relu-sparsity",), "plot_04_classic_cnns"),
    Row("VGGNet", "VGG: stacked 3x3 convolutions", (_c(M + "classification.vgg.VGG"), _c("nnatlas.layers.VGGStage")),
        ("tests/layers/test_vgg.py", "tests/models/test_torchvision_parity.py"), ("vgg-3x3-vs-5x5", "stacked-3x3"), "plot_04_classic_cnns"),
    Row("inception-v1", "Inception v1: bottleneck, auxiliary heads, GAP", (_c(M + "classification.googlenet.GoogLeNet"), _c("nnatlas.layers.InceptionV1")),
        ("tests/layers/test_inception.py", "tests/models/test_googlenet_paper.py"), ("inception-bottleneck", "aux-heads"), "plot_04_classic_cnns"),
    Row("Inception-v2/v3", "Inception v2/v3: factorised convolutions", (_c(M + "classification.inception.Inception3"), _c(M + "classification.inception_v2.BNInception"), _c("nnatlas.layers.InceptionA")),
        ("tests/layers/test_inception.py", "tests/models/test_inception_v2.py"), (), "plot_04_classic_cnns"),
    Row("ResNet", "ResNet: degradation and the shortcut", (_c(M + "classification.resnet.ResNet"), _c(M + "classification.cifar_resnet.CifarResNet"), _c("nnatlas.layers.BasicBlock")),
        ("tests/layers/test_resnet.py", "tests/models/test_cifar_resnet.py", "tests/models/test_resnet_v1.py"), ("resnet-degradation",), "plot_04_classic_cnns"),
    Row("批归一化", "Batch normalisation", (_f("nnatlas.analysis.activation_stats"),),
        ("tests/analysis/test_gradients.py",), ("batchnorm",), "plot_05_bn_gap_activations_gradients"),
    Row("全局平均池化", "Global average pooling", (_c(M + "classification.googlenet.GoogLeNet"),),
        ("tests/experiments/test_all_experiments.py",), ("gap-vs-fc",), "plot_05_bn_gap_activations_gradients"),
    Row("激活函数 / Sigmoid / ReLU", "Activations: sigmoid, ReLU, Swish", (_f("nnatlas.layers.get_activation"), _c("nnatlas.layers.Swish"), _f("nnatlas.viz.plot_activation_functions")),
        ("tests/layers/test_activations.py", "tests/viz/test_activations_plot.py"), ("activations", "relu-sparsity"), "plot_05_bn_gap_activations_gradients"),
    Row("梯度爆炸", "Vanishing and exploding gradients", (_f("nnatlas.analysis.gradient_flow"), _f("nnatlas.viz.plot_gradient_flow")),
        ("tests/analysis/test_gradients.py",), ("exploding-gradients", "activations"), "plot_05_bn_gap_activations_gradients"),
    Row("物体检测", "Object detection: one-stage vs two-stage", (_c(M + "detection.yolo.YOLOv1"), _c(M + "detection.ssd.SSD"), _c(M + "detection.rcnn.FasterRCNN"), _c("nnatlas.engine.DetectionTask")),
        ("tests/models/test_detection_yolo.py", "tests/models/test_detection_rcnn.py", "tests/engine/test_detection_task.py"), (), "plot_08_detection"),
    Row("语义分割：基于编码解码 (FCN, UNet)", "Segmentation, encoder-decoder: FCN, U-Net", (_c(M + "segmentation.fcn.FCN"), _c(M + "segmentation.unet.UNet"), _c("nnatlas.engine.SegmentationTask")),
        ("tests/models/test_segmentation_fcn.py", "tests/models/test_segmentation_unet.py", "tests/engine/test_segmentation_task.py"), (), "plot_07_segmentation"),
    Row("DeepLab系列", "DeepLab v1, v2, v3, v3+: atrous convolution, ASPP, dense CRF", (_c(M + "segmentation.deeplab.DeepLabV3Plus"), _c("nnatlas.layers.ASPP"), _f("nnatlas.layers.dense_crf")),
        ("tests/models/test_segmentation_deeplab.py", "tests/layers/test_aspp.py", "tests/layers/test_crf.py"), ("dilation-rf",), "plot_07_segmentation"),
    Row("图像分类", "Image classification end to end", (_c("nnatlas.engine.ClassificationTask"), _c("nnatlas.engine.Trainer")),
        ("tests/engine/test_trainer.py", "tests/data/test_digits.py"), ("conv-vs-fc",), "plot_06_image_classification"),
    Row("Pooling", "Max pooling", (_f("nnatlas.analysis.pool_output_size"),),
        ("tests/analysis/test_arithmetic.py",), ("pooling",), "plot_06_image_classification"),
    Row("CNN的缺陷", "What a CNN does not handle: scale and rotation", (), ("tests/experiments/test_all_experiments.py",), ("invariance",), "plot_06_image_classification"),
    Row("Encoder结构", "Encoder: self-attention, residual, Add & Norm", (_c("nnatlas.layers.TransformerEncoderLayer"), _c("nnatlas.layers.TransformerEncoder")),
        ("tests/layers/test_transformer.py", "tests/layers/test_transformer_parity.py"), ("layernorm-vs-batchnorm",), "plot_09_transformer"),
    Row("Decoder结构 / Encoder和Decoder对比", "Decoder: masked self-attention, one token at a time, the stop token", (_c("nnatlas.layers.TransformerDecoderLayer"), _f("nnatlas.layers.causal_mask"), _c("nnatlas.layers.KVCache")),
        ("tests/layers/test_transformer.py", "tests/models/test_seq2seq.py"), (), "plot_09_transformer"),
    Row("Encoder与Decoder的桥梁", "Cross-attention: q from the decoder, k and v from the encoder", (_c("nnatlas.layers.MultiheadAttention"), _c("nnatlas.layers.TransformerDecoderLayer")),
        ("tests/layers/test_attention.py",), ("attention",), "plot_09_transformer"),
    Row("注意力机制", "Scaled dot-product attention", (_f("nnatlas.layers.scaled_dot_product_attention"), _f("nnatlas.layers.record_attention"), _f("nnatlas.viz.plot_attention_heads")),
        ("tests/layers/test_attention.py", "tests/viz/test_attention_plot.py"), ("attention",), "plot_09_transformer"),
    Row("multi-head Attention", "Multi-head attention", (_c("nnatlas.layers.MultiheadAttention"),),
        ("tests/layers/test_attention.py", "tests/layers/test_attention_export.py"), ("attention",), "plot_09_transformer"),
)  # fmt: skip

HEADERS = {
    "en": ("notes heading", "what it is", "code", "tests", "experiment", "gallery"),
    "zh": ("笔记标题", "内容", "代码", "测试", "实验", "示例"),
}


class NotesMap(SphinxDirective):
    option_spec = {"lang": lambda arg: directives.choice(arg, tuple(HEADERS))}

    def run(self) -> list[nodes.Node]:
        lang = self.options.get("lang", "en")
        lines = [".. list-table::", "   :header-rows: 1", "   :class: notes-map", ""]
        lines += [f"   {'*' if i == 0 else ' '} - {h}" for i, h in enumerate(HEADERS[lang])]
        for row in ROWS:
            cells = (
                row.heading,
                row.english,
                ", ".join(row.code) or "-",
                ", ".join(f"``{t}``" for t in row.tests) or "-",
                ", ".join(f"``{e}``" for e in row.experiments) or "-",
                f":doc:`/gallery/{row.gallery}`" if row.gallery else "-",
            )
            lines += [f"   {'*' if i == 0 else ' '} - {c}" for i, c in enumerate(cells)]
        return parse_rst(self, lines, "notes-map")


def setup(app):
    app.add_directive("notes-map", NotesMap)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
