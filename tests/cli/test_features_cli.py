"""`nnatlas features RUN|MODEL --image IMG`: feature maps and first conv filters of a registered model and of
a tiny trained run; bad inputs are one line, exit code 2, and nothing written."""

import json

import matplotlib.image
import pytest

from tests.cli.helpers import main_in_process


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A one-epoch digits run (8x8 grey, one channel) of the default ResNet-20."""
    out = tmp_path_factory.mktemp("runs")
    argv = ["train", "classification", "--epochs", "1", "--limit-train", "32", "--batch-size", "32"]
    assert main_in_process([*argv, "--quiet", "--device", "cpu", "--out", str(out), "--name", "tiny"]) == 0
    return out / "tiny"


def _one_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _png(path):
    assert path.read_bytes()[:4] == b"\x89PNG"
    return matplotlib.image.imread(path)


def test_features_of_a_registered_model_with_default_stages(tmp_path, capsys):
    out = tmp_path / "f.png"
    assert main_in_process(["features", "cifar_resnet20", "--image", "chelsea", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "feature maps of 3 layers (layer1, layer2, layer3)" in text  # the stages at 32, 16, 8 px
    assert "conv1 (16x3x3x3)" in text
    assert _png(out).shape[0] > 150 and _png(tmp_path / "f_filters.png").ndim == 3
    # never overwritten without --overwrite; chosen layers and channels
    assert main_in_process(["features", "cifar_resnet20", "--image", "chelsea", "-o", str(out)]) == 2
    assert "already exists" in _one_line(capsys)
    argv = ["features", "cifar_resnet20", "--image", "coins", "-o", str(out), "--layers", "layer2.0", "conv1"]
    assert (
        main_in_process([*argv, "--channels", "4", "--filters", str(tmp_path / "k.png"), "--overwrite"]) == 0
    )
    assert "feature maps of 2 layers (layer2.0, conv1)" in capsys.readouterr().out
    assert (tmp_path / "k.png").exists()


def test_features_of_a_one_channel_digits_run(run_dir, capsys):
    argv = ["features", str(run_dir), "--image", "astronaut", "--weights", "checkpoint", "--channels", "4"]
    assert main_in_process(argv) == 0
    text = capsys.readouterr().out
    assert "feature maps of 3 layers (layer1, layer2, layer3)" in text  # 8, 4 and 2 px
    assert "conv1 (16x1x3x3)" in text  # the run's one input channel
    assert (run_dir / "features.png").exists() and (run_dir / "features_filters.png").exists()


def _bad_cases(run_dir, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"no JPEG here")
    seq = tmp_path / "seqrun"
    seq.mkdir()
    (seq / "config.json").write_text(
        json.dumps({"task": "seq2seq", "model": "transformer_seq2seq", "cli": {}})
    )
    return [
        (["features", "nosuchnet", "--image", "coffee"], "unknown model 'nosuchnet'"),
        (
            ["features", str(tmp_path / "runs" / "gone"), "--image", "coffee"],
            "is not a run folder (no such folder)",
        ),
        (["features", "cifar_resnet20", "--image", str(broken)], "broken.jpg' cannot be decoded as an image"),
        (
            ["features", "cifar_resnet20", "--image", "coffe"],
            "unknown skimage.data image (or no such file) 'coffe'",
        ),
        (
            [
                "features",
                str(run_dir),
                "--image",
                "coffee",
                "--layers",
                "layer9",
                "-o",
                str(tmp_path / "o.png"),
            ],
            "unknown layer of "
            + str(run_dir)
            + " 'layer9'; valid choices (closest first): layer1, layer2, layer3",
        ),
        (["features", "cifar_resnet20", "--image", "coffee", "--layers", "fc"], "layer 'fc' gives (1, 10)"),
        (
            ["features", str(seq), "--image", "coffee", "-o", "o.png"],
            "is a seq2seq run; features need an image run",
        ),
        (["features", "cifar_resnet20", "--image", "coffee", "--channels", "0"], "--channels must be >= 1"),
    ]


def test_bad_inputs_are_one_line_exit_2_and_write_nothing(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in run_dir.iterdir())
    for argv, needle in _bad_cases(run_dir, tmp_path):
        assert main_in_process(argv) == 2, argv
        line = _one_line(capsys)
        assert needle in line, (argv, line)
        assert capsys.readouterr().out == ""
    assert sorted(p.name for p in tmp_path.glob("*.png")) == []
    assert sorted(p.name for p in run_dir.iterdir()) == before
