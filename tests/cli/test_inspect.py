"""``nnatlas inspect``: through the installed console script, and in-process through ``main()`` where the
start-up of a fresh interpreter would only add time. Published figures are torchvision's weights metadata
(``num_params``, and ``_ops``: GFLOPS counting multiply-adds)."""

import csv
import io
import json
import subprocess

import torch
import torchvision
from torch import nn

from nnatlas.analysis import count_parameters
from nnatlas.cli.main import main
from nnatlas.models import create_model, list_models
from tests.cli.helpers import assert_usage_error, run


def call(capsys, *args):
    """``main(args)`` in this process: ``(returncode, stdout, stderr)``."""
    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_json_has_the_documented_keys_and_torchvision_numbers(nnatlas_exe):
    proc = run(
        nnatlas_exe,
        "inspect",
        "torchvision:resnet50",
        "--input",
        "1,3,224,224",
        "--format",
        "json",
        "--depth",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert list(d) == [
        "model",
        "input",
        "total_params",
        "trainable_params",
        "total_macs",
        "total_flops",
        "partial",
        "unsupported",
        "upper_bound",
        "receptive_field",
        "layers",
    ]
    meta = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta  # published: 25,557,032 params, 4.089 GMACs
    assert d["model"] == "torchvision:resnet50" and d["input"] == [[1, 3, 224, 224]]
    assert d["total_params"] == meta["num_params"]
    assert abs(d["total_macs"] / 1e9 - meta["_ops"]) / meta["_ops"] < 0.01
    assert d["receptive_field"]["size"] == [427, 427]  # Araujo et al., Distill 2019
    with torch.device("meta"):
        children = [n for n, _ in torchvision.models.resnet50().named_children()]
    assert [r["name"] for r in d["layers"]] == children


def test_registered_model_table_and_csv(capsys):
    name = list_models()[0]
    with torch.device("meta"):
        params = count_parameters(create_model(name))
    table = call(capsys, "inspect", name)
    assert table.returncode == 0, table.stderr
    assert f"total params      {params:,}" in table.stdout and "receptive field" in table.stdout
    rows = list(csv.DictReader(io.StringIO(call(capsys, "inspect", name, "--format", "csv").stdout)))
    assert rows and {"name", "output_shape", "params", "macs", "flops", "rf_size"} <= set(rows[0])


def test_factory_string_and_erf_picture(capsys, tmp_path):
    out = tmp_path / "erf.png"
    proc = call(
        capsys,
        "inspect",
        "torchvision.models:alexnet",
        "--input",
        "1,3,96,96",
        "--erf",
        str(out),
        "--erf-samples",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "effective receptive field" in proc.stdout
    line = assert_usage_error(call(capsys, "inspect", "torchvision:alexnet", "--erf", str(out)))
    assert "already exists" in line  # never overwrites a file without --overwrite


def test_bad_input_is_one_line_naming_the_layer(nnatlas_exe, capsys):
    line = assert_usage_error(run(nnatlas_exe, "inspect", "torchvision:resnet18", "--input", "1,4,64,64"))
    assert "layer 'conv1' (Conv2d) expects 3 input channels" in line
    line = assert_usage_error(call(capsys, "inspect", "torchvision:alexnet", "--input", "1,3,32,32"))
    assert "layer 'features.12' (MaxPool2d)" in line
    line = assert_usage_error(call(capsys, "inspect", "torchvision:resnet18", "--input", "1,3,a"))
    assert "--input" in line


def test_unknown_model_strings_list_the_closest_first(nnatlas_exe, capsys):
    line = assert_usage_error(run(nnatlas_exe, "inspect", "torchvision:resnet5"))
    assert line.split("closest first): ")[1].startswith("resnet50")
    line = assert_usage_error(call(capsys, "inspect", "nosuchnet"))
    assert set(line.split("closest first): ")[1].split(", ")) == set(list_models())
    line = assert_usage_error(call(capsys, "inspect", "torchvision.models:resnet_18"))
    assert "unknown factory" in line
    assert "cannot import" in assert_usage_error(call(capsys, "inspect", "no_such_package.mod:f"))


def test_torchvision_model_with_a_backbone_builds_without_downloading(capsys):
    # fcn_resnet50(weights=None) alone would fetch ImageNet weights for its backbone
    proc = call(capsys, "inspect", "torchvision:fcn_resnet50", "--input", "1,3,64,64", "--depth", "1")
    assert proc.returncode == 0, proc.stderr
    assert "backbone" in proc.stdout and "classifier" in proc.stdout


def test_empty_or_malformed_input_is_a_usage_error_not_the_default(nnatlas_exe, capsys):
    # --input '' used to fall back to the default shape and 1,,3,32,32 to read as 1,3,32,32
    line = assert_usage_error(run(nnatlas_exe, "inspect", "torchvision:resnet18", "--input", ""))
    assert line.startswith("nnatlas: error: --input") and "got ''" in line
    for bad in ["1,,3,32,32", "1,3,32,", "1,3,0,32", "1;3;32;32", "64"]:
        line = assert_usage_error(call(capsys, "inspect", "torchvision:resnet18", "--input", bad))
        assert "--input" in line and repr(bad) in line


def test_bad_kwargs_are_usage_errors_naming_the_flag(capsys):
    cases = [
        ("torchvision:fcn_resnet50", "aux_loss", "KEY=VALUE"),
        ("torchvision:fcn_resnet50", "aux_loss=maybe", "must be true or false"),
        ("torchvision:resnet18", "num_classes=abc", "cannot build"),
        ("torchvision:resnet18", "no_such_argument=1", "no_such_argument"),
        ("torchvision:resnet18", "=3", "KEY=VALUE"),
    ]
    for model, item, expected in cases:
        line = assert_usage_error(call(capsys, "inspect", model, "--kwargs", item))
        assert "--kwargs" in line and expected in line, line


def json_of(capsys, *args):
    proc = call(capsys, "inspect", *args, "--format", "json", "--depth", "1")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_builder_kwargs_and_the_weights_input_size_reach_the_published_figures(capsys):
    # fcn_resnet50's published figures count its auxiliary head, at the 520 px of its weights' transforms
    d, _ = json_of(capsys, "torchvision:fcn_resnet50", "--kwargs", "aux_loss=true")
    meta = torchvision.models.segmentation.FCN_ResNet50_Weights.DEFAULT.meta
    assert d["input"] == [[1, 3, 520, 520]] and "aux_classifier" in [r["name"] for r in d["layers"]]
    assert d["total_params"] == meta["num_params"] and round(d["total_macs"] / 1e9, 3) == meta["_ops"]
    # Inception-v3's weights crop to 299 px; its published figures keep the auxiliary classifier
    d, _ = json_of(capsys, "torchvision:inception_v3", "--kwargs", "init_weights=false")
    meta = torchvision.models.Inception_V3_Weights.DEFAULT.meta
    assert d["input"] == [[1, 3, 299, 299]]
    assert d["total_params"] == meta["num_params"] and round(d["total_macs"] / 1e9, 3) == meta["_ops"]


def test_regnet_is_built_on_meta_without_a_cpu_fallback(capsys):
    d, stderr = json_of(capsys, "torchvision:regnet_y_400mf")
    meta = torchvision.models.RegNet_Y_400MF_Weights.DEFAULT.meta
    assert "note" not in stderr  # no real forward pass was needed
    assert d["total_params"] == meta["num_params"] and round(d["total_macs"] / 1e9, 3) == meta["_ops"]


def test_detection_models_get_a_list_of_images_at_their_own_size(capsys):
    # RetinaNet: 800 px (its transform's min_size), backbone batch norm frozen as with trained weights
    d, _ = json_of(capsys, "torchvision:retinanet_resnet50_fpn")
    meta = torchvision.models.detection.RetinaNet_ResNet50_FPN_Weights.DEFAULT.meta
    assert d["input"] == [[[3, 800, 800]]]  # one positional argument: a list of one (C, H, W) image
    assert d["total_params"] == meta["num_params"] and round(d["total_macs"] / 1e9, 3) == meta["_ops"]
    d, _ = json_of(capsys, "torchvision:ssdlite320_mobilenet_v3_large", "--input", "2,3,320,320")
    meta = torchvision.models.detection.SSDLite320_MobileNet_V3_Large_Weights.DEFAULT.meta
    assert d["input"] == [[[3, 320, 320], [3, 320, 320]]]  # batch 2: two images
    assert d["total_params"] == meta["num_params"] and round(d["total_macs"] / 1e9 / 2, 3) == meta["_ops"]
    assert d["upper_bound"]  # on meta the data-dependent selections keep every candidate


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(3, 4, 5, padding=1)

    def forward(self, x, y):
        return self.a(x) + self.b(y)


def two_inputs():
    return TwoInputs()


class ReadsValues(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return y * float(y.abs().mean() > 0)  # reads a value: impossible on the meta device


def reads_values():
    return ReadsValues()


def test_several_inputs_and_a_real_forward_only_when_meta_cannot(capsys):
    d, stderr = json_of(
        capsys, "tests.cli.test_inspect:two_inputs", "--input", "1,3,16,16", "--input", "1,3,16,16"
    )
    assert d["input"] == [[1, 3, 16, 16], [1, 3, 16, 16]] and "note" not in stderr
    assert d["total_macs"] == 4 * 14 * 14 * 3 * (9 + 25)
    assert d["receptive_field"]["inputs"] == [0, 1] and d["receptive_field"]["size"] == [5, 5]
    d, stderr = json_of(capsys, "tests.cli.test_inspect:reads_values", "--input", "1,3,8,8")
    notes = [line for line in stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and "meta device" in notes[0] and "real forward pass on the CPU" in notes[0]
    assert d["total_macs"] == 4 * 6 * 6 * 3 * 9


def test_training_cost_of_one_step(capsys):
    d, _ = json_of(capsys, "torchvision:resnet18", "--training", "--input", "4,3,32,32", "--optimizer", "sgd")
    assert {"forward_macs", "backward_macs", "backward_by_op", "memory", "layers"} <= set(d)
    assert d["memory"]["optimizer_state"] == 0 and d["memory"]["gradients"] == d["memory"]["parameters"]
    conv1 = next(r for r in d["layers"] if r["name"] == "conv1")
    assert conv1["backward_macs"] == conv1["forward_macs"]  # the input needs no gradient: weights only
    table = call(
        capsys, "inspect", "torchvision:resnet18", "--training", "--input", "4,3,32,32", "--depth", "1"
    )
    assert table.returncode == 0 and "backward MACs" in table.stdout and "peak" in table.stdout


def test_rf_image_draws_the_stages_fields_and_the_erf_over_a_photograph(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = call(capsys, "inspect", "cifar_resnet20", "--rf-image", "astronaut", "--erf-samples", "2")
    assert proc.returncode == 0, proc.stderr
    # default layers: the stage outputs; their theoretical fields at 32x32 (ResNet-20: 15, 37, 81 px)
    assert (
        "receptive fields over astronaut (layer1 15x15, layer2 37x37, layer3 81x81; ERF of layer3)"
        in proc.stdout
    )
    out = tmp_path / "rf_cifar_resnet20.png"
    assert out.read_bytes()[:4] == b"\x89PNG"
    again = call(capsys, "inspect", "cifar_resnet20", "--rf-image", "astronaut")
    assert "--rf-out 'rf_cifar_resnet20.png' already exists" in assert_usage_error(again)
    chosen = tmp_path / "sub" / "chosen.png"
    proc = call(
        capsys, "inspect", "cifar_resnet20", "--rf-image", "coffee", "--rf-layers", "conv1", "layer2",
        "--rf-out", str(chosen), "--erf-samples", "1", "--input", "1,3,48,48",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "(conv1 3x3, layer2 37x37; ERF of layer2)" in proc.stdout and chosen.exists()


def test_rf_image_bad_inputs_are_one_line_and_write_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nothing")
    cases = [
        (["cifar_resnet20", "--rf-image", str(broken)], "broken.png' cannot be decoded as an image"),
        (
            ["cifar_resnet20", "--rf-image", "astronot"],
            "unknown skimage.data image (or no such file) 'astronot'",
        ),
        (
            ["cifar_resnet20", "--rf-image", "coffee", "--rf-layers", "layr2"],
            "unknown layer of cifar_resnet20 'layr2'; valid choices (closest first): layer2,",
        ),
        (
            ["cifar_resnet20", "--rf-image", "coffee", "--rf-layers", "fc"],
            "layer 'fc' of cifar_resnet20 has no",
        ),
        (["nosuchnet", "--rf-image", "coffee"], "unknown model 'nosuchnet'"),
        (["cifar_resnet20", "--rf-layers", "layer1"], "--rf-layers and --rf-out need --rf-image IMG"),
    ]
    for args, needle in cases:
        proc = call(capsys, "inspect", *args)
        assert needle in assert_usage_error(proc), proc.stderr
        assert proc.stdout == ""
    assert list(tmp_path.glob("*.png")) == [broken]


def test_seq2seq_models_get_source_and_target_token_ids(capsys):
    """A registered seq2seq model takes ``(src, tgt)`` int64 ids: the default is both at ``input_size``,
    on the meta device, and the count is whole (the attention's all-masked-row check costs nothing)."""
    from nnatlas.analysis import summary
    from nnatlas.models import get_model_info

    for name in list_models(task="seq2seq"):
        result = call(capsys, "inspect", name, "--format", "json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        (steps,) = get_model_info(name).input_size
        torch.manual_seed(0)
        model = create_model(name).eval()
        ids = torch.randint(0, model.src_vocab_size, (1, steps))
        reference = summary(model, inputs=(ids, ids.clone()))
        assert data["total_macs"] == reference.total_macs > 0
        assert not data["unsupported"] and data["input"] == [[1, steps], [1, steps]], data["input"]


def test_seq2seq_models_refuse_the_image_pictures_before_measuring(capsys, tmp_path):
    """--erf and --rf-image need one image input: a seq2seq model is refused up front, nothing written."""
    name = list_models(task="seq2seq")[0]
    for flag, value in (("--erf", str(tmp_path / "erf.png")), ("--rf-image", "astronaut")):
        args = ["inspect", name, flag, value]
        if flag == "--rf-image":
            args += ["--rf-out", str(tmp_path / "rf.png")]
        result = call(capsys, *args)
        assert result.returncode == 2 and result.stdout == "", (flag, result.stdout[:200])
        assert "needs a model with one image input" in result.stderr and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
