"""`nnatlas train detection`, `nnatlas eval` and `nnatlas predict` through the real command."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.cli.helpers import main_in_process as _main
from tests.data.fixtures import write_coco, write_voc_detection

FAST = ["--quiet", "--device", "cpu", "--batch-size", "16"]


@pytest.fixture(scope="module")
def det_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    # A low score threshold, so that a model trained this briefly still returns boxes to draw.
    argv = [
        "train",
        "detection",
        "--epochs",
        "2",
        "--limit-train",
        "64",
        "--model-kwargs",
        "score_thresh=0.001",
    ]
    argv += FAST
    assert _main([*argv, "--out", str(root / "runs"), "--name", "y"]) == 0
    return root / "runs" / "y"


@pytest.fixture(scope="module")
def mask_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mask")
    argv = [
        "train",
        "detection",
        "--model",
        "maskrcnn_resnet18_fpn_small",
        "--epochs",
        "1",
        "--limit-train",
        "16",
        "--model-kwargs",
        "box_score_thresh=0.0",
        "box_detections_per_img=3",  # few boxes and masks for the validation's mAP of 1,000 scenes
    ]
    assert _main([*argv, *FAST, "--out", str(root / "runs"), "--name", "m"]) == 0
    return root / "runs" / "m"


def test_report_of_a_detection_run(det_run, tmp_path):
    out = tmp_path / "r.html"
    assert _main(["report", str(det_run), "-o", str(out), "--samples", "4"]) == 0
    html = out.read_text(encoding="utf-8")
    assert "<h2>Sample predictions" in html and "<h2>Final metrics" in html and "val_map_50" in html
    assert html.count('<img src="data:image/png;base64,') == 2  # curves, boxes on validation scenes


def _scene_png(path):
    from nnatlas.data import load_dataset

    data = load_dataset("shapes", task="detection", num_train=1, num_val=2)
    image, target = data.val[0]  # (3, 64, 64) in [0, 1], as a user's PNG would be read
    Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy()).save(path)
    return target


def test_train_writes_map_columns_and_the_default_model(det_run):
    rows = [json.loads(line) for line in (det_run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert {"val_map", "val_map_50", "val_map_75", "val_mar_100", "train_loss"} <= set(rows[-1])
    assert 0 <= rows[-1]["val_map"] <= rows[-1]["val_map_50"] <= 1
    config = json.loads((det_run / "config.json").read_text())
    assert config["task"] == "detection" and config["model"] == "yolo_v1"
    assert config["classes"] == ["background", "circle", "square", "triangle", "cross"]


def test_mask_rcnn_run_measures_masks_too(mask_run):
    row = json.loads((mask_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"val_map_50", "val_segm_map_50", "val_segm_map"} <= set(row)


def test_eval_agrees_with_the_last_row(det_run, capsys):
    assert _main(["eval", str(det_run), "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    last = [json.loads(line) for line in (det_run / "metrics.jsonl").read_text().splitlines()][-1]
    assert result["val_map_50"] == pytest.approx(last["val_map_50"], abs=1e-6)


@pytest.mark.parametrize("which", ["det_run", "mask_run"])
def test_predict_draws_boxes_and_lists_them(which, request, tmp_path, capsys):
    run = request.getfixturevalue(which)
    _scene_png(tmp_path / "scene.png")
    out = tmp_path / "pred"
    argv = ["predict", str(run), str(tmp_path / "scene.png"), "--out", str(out), "--score-threshold", "0"]
    assert _main(argv) == 0
    drawn = Image.open(out / "scene_boxes.png")
    assert drawn.size == (64, 64) and drawn.mode == "RGB"
    listed = json.loads((out / "scene_detections.json").read_text())
    assert listed, "a threshold of 0 keeps every box the model returns"
    for d in listed:
        assert d["class"] in ("circle", "square", "triangle", "cross") and 0 <= d["score"] <= 1
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 <= x1 <= 64 and 0 <= y0 <= y1 <= 64
    original = np.asarray(Image.open(tmp_path / "scene.png"))
    assert (np.asarray(drawn) != original).any(), "the boxes are drawn over the image"
    assert "saved 2 files" in capsys.readouterr().out
    # a threshold above every score keeps nothing and draws nothing
    argv[-1] = "1"
    assert _main(argv) == 0
    assert json.loads((out / "scene_detections.json").read_text()) == []
    assert (np.asarray(Image.open(out / "scene_boxes.png")) == original).all()


def test_a_finished_detection_run_is_left_as_it_is_and_extended_on_request(det_run, tmp_path, capsys):
    run = shutil.copytree(det_run, tmp_path / "y")
    assert _main(["train", "detection", "--resume", str(run), "--quiet"]) == 0
    assert "is finished (2 of 2 epochs); nothing to do" in capsys.readouterr().err
    assert _main(["train", "detection", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    first = [json.loads(line) for line in (det_run / "metrics.jsonl").read_text().splitlines()]
    assert rows[:2] == first  # the epochs already trained are kept as they were


def _bad_voc(tmp_path):
    base = write_voc_detection(tmp_path / "voc")
    (base / "Annotations" / "2007_000042.xml").write_text("<annotation><object>")
    return tmp_path / "voc"


def _bad_coco(tmp_path):
    write_coco(tmp_path / "coco")
    (tmp_path / "coco" / "annotations" / "instances_train2017.json").write_text("{not json")
    return tmp_path / "coco"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "detection", "--data", "voc", "--data-dir", "{voc}"], "2007_000042.xml"),
        (["train", "detection", "--data", "coco", "--data-dir", "{coco}"], "instances_train2017.json"),
        (["train", "detection", "--model", "unet"], "is a segmentation model"),
        (["train", "detection", "--data", "digits"], "unknown data set 'digits'"),
        (["train", "detection", "--channels-last"], "does not apply to detection"),
        (["train", "detection", "--download"], "--download applies to --data voc only"),
        (["train", "detection", "--model-kwargs", "nosuch=1"], "does not take them"),
        (["predict", "{run}", "{png}", "--crf"], "--crf applies to segmentation runs only"),
        (["predict", "{run}", "{png}", "--score-threshold", "nan"], "--score-threshold must be a finite"),
        (["predict", "{run}", "nosuch.png"], "IMAGE 'nosuch.png': no such file"),
    ],
)
def test_bad_detection_inputs_are_one_line(det_run, tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.png")
    paths = {"run": det_run, "png": tmp_path / "ok.png", "voc": "", "coco": ""}
    if "{voc}" in argv:
        paths["voc"] = _bad_voc(tmp_path)
    if "{coco}" in argv:
        paths["coco"] = _bad_coco(tmp_path)
    assert _main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()
