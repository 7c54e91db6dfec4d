"""``nnatlas export``: run folders and registered models to pt2 / ONNX, checked here against eager."""

import json

import pytest
import torch
from safetensors.torch import save_model
from torch.testing import assert_close

from nnatlas.cli import export_cmd
from nnatlas.cli.common import ArgumentParser, UsageError
from nnatlas.models import create_model

SEQ_KWARGS = {
    "vocab_size": 11,
    "d_model": 16,
    "nhead": 2,
    "dim_feedforward": 32,
    "max_len": 24,
    "dropout": 0.0,
}


def _parser():
    parser = ArgumentParser(prog="nnatlas")
    sub = parser.add_subparsers(dest="command", parser_class=ArgumentParser)
    export_cmd.add_parser(sub)
    return parser


def _export(*argv):
    args = _parser().parse_args(["export", *map(str, argv)])
    return args.func(args)


def _run_folder(tmp_path, name, model, config):
    run_dir = tmp_path / name
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(config))
    save_model(model, str(run_dir / "model.safetensors"))
    return run_dir


def _seq2seq_run(tmp_path):
    torch.manual_seed(123)  # other weights than the seed-0 model the command builds for a bare name
    model = create_model("transformer_seq2seq", **SEQ_KWARGS).eval()
    config = {"model": "transformer_seq2seq", "model_kwargs": SEQ_KWARGS, "task": "seq2seq"}
    return _run_folder(tmp_path, "seq", model, config), model


def _tokens(B, S, T):
    src, tgt = torch.randint(3, 11, (B, S)), torch.randint(3, 11, (B, T))
    src[-1, S // 2 :] = 0
    tgt[:, 0] = 1
    return src, tgt


def test_pt2_of_a_seq2seq_run_holds_its_trained_weights(tmp_path, capsys):
    run_dir, model = _seq2seq_run(tmp_path)
    out = tmp_path / "seq.pt2"
    assert _export(run_dir, "-o", out, "--dynamic") == 0
    line = capsys.readouterr().out
    assert "max |exported - eager| = " in line and line.rstrip().endswith(": ok")
    # Checked here independently: the saved program loads and gives the trained model's logits, on
    # another batch size and other lengths than the export's example (--dynamic).
    program = torch.export.load(str(out)).module()
    src, tgt = _tokens(3, 9, 6)
    with torch.no_grad():
        assert_close(program(src, tgt), model(src, tgt), atol=1e-5, rtol=1e-5)
        torch.manual_seed(0)
        untrained = create_model("transformer_seq2seq", **SEQ_KWARGS).eval()
        assert not torch.allclose(program(src, tgt), untrained(src, tgt))


def test_classification_run_without_model_kwargs_uses_num_classes_and_in_channels(tmp_path):
    torch.manual_seed(1)
    model = create_model("cifar_resnet20", num_classes=4, in_channels=1).eval()
    config = {"model": "cifar_resnet20", "task": "classification", "num_classes": 4, "in_channels": 1}
    run_dir = _run_folder(tmp_path, "cls", model, config)
    out = tmp_path / "cls.pt2"
    assert _export(run_dir, "-o", out, "--batch-size", 3) == 0
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        got = torch.export.load(str(out)).module()(x)
        assert got.shape == (3, 4)
        assert_close(got, model(x), atol=1e-5, rtol=1e-5)


def test_onnx_of_a_run_agrees_with_eager_under_onnxruntime(tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    run_dir, model = _seq2seq_run(tmp_path)
    out = tmp_path / "seq.onnx"
    assert _export(run_dir, "--format", "onnx", "-o", out, "--dynamic") == 0
    assert capsys.readouterr().out.rstrip().endswith(": ok")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    src, tgt = _tokens(4, 10, 7)
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {names[0]: src.numpy(), names[1]: tgt.numpy()})[0]
    with torch.no_grad():
        assert_close(torch.from_numpy(got), model(src, tgt), atol=1e-5, rtol=1e-5)


def test_onnx_without_onnxruntime_is_written_and_said_unchecked(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    real = export_cmd._installed
    monkeypatch.setattr(export_cmd, "_installed", lambda name: name != "onnxruntime" and real(name))
    out = tmp_path / "m.onnx"
    assert _export("cifar_resnet20", "-o", out) == 0
    assert "not checked: pip install 'nnatlas[export]'" in capsys.readouterr().out
    import onnx

    onnx.checker.check_model(onnx.load(str(out)))  # a valid ONNX model


def test_a_check_above_the_tolerance_exits_1_and_keeps_the_file(tmp_path, monkeypatch, capsys):
    real = export_cmd._export_pt2

    def off_by_a_bit(*args):  # an exporter whose program is 1e-3 off the eager model
        runner = real(*args)
        return lambda *inputs: [t + 1e-3 for t in runner(*inputs)]

    monkeypatch.setattr(export_cmd, "_export_pt2", off_by_a_bit)
    out = tmp_path / "m.pt2"
    assert _export("cifar_resnet20", "-o", out) == 1
    err = capsys.readouterr().err
    assert "check failed: max |exported - eager| = 1.00e-03" in err and out.is_file()
    assert _export("cifar_resnet20", "-o", out, "--overwrite", "--atol", 2e-3) == 0


def test_onnx_without_its_packages_names_the_extra(tmp_path, monkeypatch, capsys):
    import importlib.util

    find = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else find(name, *a)
    )
    assert _export("cifar_resnet20", "-o", tmp_path / "m.onnx") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "onnxscript" in err and "pip install 'nnatlas[export]'" in err
    assert not (tmp_path / "m.onnx").exists()


def test_bad_arguments_are_one_line_usage_errors(tmp_path):
    existing = tmp_path / "taken.pt2"
    existing.write_text("user data")
    (tmp_path / "empty_run").mkdir()
    cases = [
        (["cifar_resnet20", "-o", existing], "already exists"),
        (["cifar_resnet2O", "-o", tmp_path / "m.pt2"], "unknown model 'cifar_resnet2O'"),
        (["cifar_resnet20", "-o", tmp_path / "m.bin"], "--format onnx or --format pt2"),
        (["cifar_resnet20", "-o", tmp_path / "m.pt2", "--dynamic", "--batch-size", 1], "--batch-size >= 2"),
        (["cifar_resnet20", "-o", tmp_path / "m.pt2", "--atol", "nan"], "--atol"),
        ([tmp_path / "empty_run", "-o", tmp_path / "m.pt2"], "is not a run folder: no config.json there"),
        (["cifar_resnet20", "-o", tmp_path / "no" / "m.pt2"], "does not exist"),
        (["cifar_resnet20", "-o", tmp_path / "m.pt2", "--format", "tflite"], "invalid choice"),
    ]
    for argv, message in cases:
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("|", r"\|")) as info:
            _export(*argv)
        assert "\n" not in str(info.value)
    assert existing.read_text() == "user data"
    assert not (tmp_path / "m.pt2").exists()


def test_help_explains_formats_check_and_extra(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["export", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in (
        "MODEL|RUN",
        "--format {onnx,pt2}",
        "torch.export",
        "onnxruntime",
        "nnatlas[export]",
        "--dynamic",
    ):
        assert needle in text, needle
