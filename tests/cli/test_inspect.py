"""``nnatlas inspect``: through the installed console script, and in-process through ``main()`` where the
start-up of a fresh interpreter would only add time."""

import csv
import io
import json
import subprocess

import torch
import torchvision

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
