"""`nnatlas train segmentation`, `nnatlas eval` and `nnatlas predict` through the real command."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.cli.helpers import main_in_process as _main

TINY = [
    "train",
    "segmentation",
    "--model",
    "unet",
    "--model-kwargs",
    "padding=True",
    "base_channels=8",
    "depth=2",
]
TINY += ["--epochs", "2", "--limit-train", "96", "--batch-size", "32", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    assert _main([*TINY, "--out", str(root / "runs"), "--name", "u"]) == 0
    return root / "runs" / "u"


def test_train_writes_miou_columns_and_the_config_predict_needs(seg_run):
    rows = [json.loads(line) for line in (seg_run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    names = ("background", "circle", "square", "triangle", "cross")
    assert {"val_loss", "val_pixel_acc", "val_miou", *(f"val_iou_{n}" for n in names)} <= set(rows[-1])
    assert 0 <= rows[-1]["val_miou"] <= rows[-1]["val_pixel_acc"] <= 1
    config = json.loads((seg_run / "config.json").read_text())
    assert config["task"] == "segmentation" and config["classes"][0] == "background"
    assert config["model_kwargs"] == {
        "padding": True,
        "base_channels": 8,
        "depth": 2,
        "num_classes": 5,
        "in_channels": 3,
    }
    assert len(config["palette"]) == 5


def test_report_of_a_segmentation_run(seg_run, tmp_path):
    out = tmp_path / "r.html"
    assert _main(["report", str(seg_run), "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "<h2>Per-class IoU (validation set)" in html and "<h2>Sample predictions" in html
    for name in ("background", "circle", "square", "triangle", "cross"):
        assert f"<td>{name}</td>" in html
    assert html.count('<img src="data:image/png;base64,') == 2  # curves, image / truth / prediction


def test_eval_agrees_with_the_last_row(seg_run, capsys):
    assert _main(["eval", str(seg_run), "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    last = [json.loads(line) for line in (seg_run / "metrics.jsonl").read_text().splitlines()][-1]
    assert result["val_miou"] == pytest.approx(last["val_miou"], abs=1e-6)


@pytest.mark.parametrize("crf", [False, True], ids=["plain", "crf"])
def test_predict_writes_palette_masks_and_overlays(seg_run, tmp_path, capsys, crf):
    from nnatlas.data import load_dataset

    data = load_dataset("shapes", task="segmentation", num_train=1, num_val=2)
    image = data.val[0][0]  # normalised (3, 64, 64): undo it to a PNG as a user would have it
    mean, std = torch.tensor(data.mean or (0, 0, 0)), torch.tensor(data.std or (1, 1, 1))
    rgb = ((image * std.view(3, 1, 1) + mean.view(3, 1, 1)).clamp(0, 1) * 255).round().byte()
    Image.fromarray(rgb.permute(1, 2, 0).numpy()).save(tmp_path / "scene.png")
    argv = ["predict", str(seg_run), str(tmp_path / "scene.png"), "--out", str(tmp_path / "pred")]
    assert _main([*argv, *(["--crf"] if crf else [])]) == 0
    mask = Image.open(tmp_path / "pred" / "scene_mask.png")
    assert mask.mode == "P" and mask.size == (64, 64)
    assert set(np.unique(np.asarray(mask)).tolist()) <= set(range(5))
    overlay = Image.open(tmp_path / "pred" / "scene_overlay.png")
    assert overlay.size == (64, 64) and overlay.mode == "RGB"
    assert "saved 2 PNGs" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["predict", "{run}", "nosuch.png"], "IMAGE 'nosuch.png': no such file"),
        (["predict", "{run}", "{junk}"], "cannot be read as an image"),
        (["predict", "{run}", "{tiny}"], "needs"),
        (["predict", "{run}", "{png}", "--alpha", "2"], "--alpha must be a finite number in [0, 1]"),
        (
            ["train", "segmentation", "--data", "shapes", "--num-classes", "3"],
            "--num-classes applies to --data segfolder only",
        ),
        (["train", "segmentation", "--model", "cifar_resnet20"], "is a classification model"),
        (["train", "segmentation", "--model-kwargs", "3=x"], "--model-kwargs takes KEY=VALUE"),
        (["train", "segmentation", "--model-kwargs", "nosuch=1"], "does not take them"),
        (["train", "segmentation", "--data", "digits"], "unknown data set 'digits'"),
        (["train", "segmentation", "--data", "voc", "--data-dir", "nope"], "nope"),
    ],
)
def test_bad_segmentation_inputs_are_one_line(seg_run, tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "tiny.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "ok.png")
    paths = {
        "run": seg_run,
        "junk": tmp_path / "junk.png",
        "tiny": tmp_path / "tiny.png",
        "png": tmp_path / "ok.png",
    }
    assert _main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_the_model_defaults_apply_where_no_option_is_given(tmp_path, capsys):
    from nnatlas.cli.tasks.segmentation import MODEL_DEFAULTS, RUN_DEFAULTS

    argv = ["train", "segmentation", "--limit-train", "32", "--epochs", "1", "--quiet", "--device", "cpu"]
    assert _main([*argv, "--out", str(tmp_path), "--name", "d"]) == 0
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    assert config["model"] == "unet"
    assert config["model_kwargs"] == {**MODEL_DEFAULTS["unet"], "num_classes": 5, "in_channels": 3}
    assert config["cli"]["batch_size"] == RUN_DEFAULTS["unet"]["batch_size"] != 64  # not the engine's default
    assert config["cli"]["epochs"] == 1  # given: the option wins over the model's default
    with pytest.raises(SystemExit) as info:
        _main(["train", "segmentation", "--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    assert "unet: padding=True, base_channels=16, --epochs 6, --batch-size 32" in help_text
