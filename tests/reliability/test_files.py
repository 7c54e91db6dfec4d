"""Malicious and damaged files in a run folder: refused with exit code 2 and one line naming the file and
what is wrong, no code from them ever runs, nothing in the folder is changed.

``MALICIOUS`` is the table the guide's reliability figures count (docs/guide/reliability.md).
"""

import io
import json
import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from nnatlas.cli.main import main

MARKER = "pwned.txt"


class _RunsCode:
    """Unpickling this calls ``fn(*args)``: what a crafted checkpoint does to ``torch.load(weights_only=False)``."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _touch_marker(folder):
    return f"touch {folder / MARKER}"


def _legacy_pickle(folder, good):
    return pickle.dumps({"format_version": 1, "x": _RunsCode(os.system, _touch_marker(folder))})


def _zip_pickle(folder, good):
    buf = io.BytesIO()
    torch.save({"format_version": 1, "model": _RunsCode(os.system, _touch_marker(folder))}, buf)
    return buf.getvalue()


def _zip_exec(folder, good):
    buf = io.BytesIO()
    code = f"open({str(folder / MARKER)!r}, 'w').write('x')"
    torch.save({"format_version": 1, "position": _RunsCode(exec, code)}, buf)
    return buf.getvalue()


def _torch_bytes(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _other_model(folder, good):
    state = torch.load(io.BytesIO(good), weights_only=True)
    model = state["model"]
    model.pop("conv1.weight")
    model["extra.weight"] = torch.zeros(3)
    return _torch_bytes(state)


def _safetensors(tensors):
    path = io.BytesIO()
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
        save_file(tensors, f.name)
        path.write(open(f.name, "rb").read())
    return path.getvalue()


CKPT, WEIGHTS, CONFIG, METRICS = "checkpoint.pt", "model.safetensors", "config.json", "metrics.jsonl"
RESUME = ["train", "--resume", "{run}", "--epochs", "3"]
EVAL = ["eval", "{run}", "--quiet"]
EVAL_CKPT = ["eval", "{run}", "--weights", "checkpoint", "--quiet"]
ATTENTION = ["attention", "{run}"]  # on a seq2seq run

#: (what, file replaced, its new bytes from (folder, original bytes), command, what the message says)
MALICIOUS = [
    ("pickle running os.system", CKPT, _legacy_pickle, RESUME, "not a PyTorch checkpoint"),
    ("torch.save zip running os.system", CKPT, _zip_pickle, RESUME, "holds objects other than tensors"),
    ("torch.save zip running exec", CKPT, _zip_exec, RESUME, "refused"),
    ("same, through eval", CKPT, _zip_pickle, EVAL_CKPT, "holds objects other than tensors"),
    ("empty checkpoint", CKPT, lambda f, g: b"", RESUME, "is empty"),
    ("truncated checkpoint", CKPT, lambda f, g: g[: len(g) // 2], RESUME, "truncated or damaged"),
    ("random bytes", CKPT, lambda f, g: os.urandom(4096), RESUME, "not a PyTorch checkpoint"),
    ("a torch file holding a list", CKPT, lambda f, g: _torch_bytes([1, 2]), RESUME, "not an nnatlas checkpoint"),
    ("a bare state dict", CKPT, lambda f, g: _torch_bytes({"w": torch.zeros(1)}), RESUME, "not an nnatlas checkpoint"),
    ("weights of another model", CKPT, _other_model, RESUME, "holds weights of another model: missing conv1.weight"),
    ("same, through eval", CKPT, _other_model, EVAL_CKPT, "holds weights of another model"),
    ("truncated safetensors", WEIGHTS, lambda f, g: g[: len(g) - 100], EVAL, "truncated"),
    ("empty safetensors", WEIGHTS, lambda f, g: b"", EVAL, "is empty"),
    ("safetensors of junk", WEIGHTS, lambda f, g: b"\x08\x00\x00\x00\x00\x00\x00\x00{junk!!}", EVAL, "not a readable safetensors file"),
    ("safetensors header of 2^60 bytes", WEIGHTS, lambda f, g: struct.pack("<Q", 1 << 60) + b"{}", EVAL, "not a readable safetensors file"),
    ("safetensors of another model", WEIGHTS, lambda f, g: _safetensors({"fc.weight": torch.zeros(2, 2)}), EVAL, "holds weights of another model: missing"),
    ("truncated safetensors, through attention", WEIGHTS, lambda f, g: g[: len(g) - 100], ATTENTION, "truncated"),
    ("safetensors of another model, through attention", WEIGHTS, lambda f, g: _safetensors({"fc.weight": torch.zeros(2, 2)}), ATTENTION, "holds weights of another model"),
    ("checkpoint running os.system, through attention", CKPT, _zip_pickle, [*ATTENTION, "--weights", "checkpoint"], "holds objects other than tensors"),
    ("config that is not JSON", CONFIG, lambda f, g: b"{not json", EVAL, "is not valid JSON"),
    ("config that is a list", CONFIG, lambda f, g: b"[1, 2]", EVAL, "was not written by nnatlas train"),
    ("config of an unknown task", CONFIG, lambda f, g: g.replace(b'"task": "classification"', b'"task": "evil"'), EVAL, "unknown task 'evil'"),
    ("config naming an unknown model", CONFIG, lambda f, g: g.replace(b'"model": "cifar_resnet20"', b'"model": "os.system"'), EVAL, "unknown model 'os.system'"),
    ("config with no options", CONFIG, lambda f, g: json.dumps({"task": "classification"}).encode(), RESUME, "holds no command-line options"),
    ("metrics with a bad middle line", METRICS, lambda f, g: b'{"epoch": 1}\nGARBAGE\n{"epoch": 2}\n', RESUME, "line 2 is not a JSON object"),
]  # fmt: skip


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize(
    ("what", "name", "payload", "argv", "needle"), MALICIOUS, ids=[m[0] for m in MALICIOUS]
)
def test_bad_file_is_refused_and_never_run(
    what, name, payload, argv, needle, cls_run, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    if argv is RESUME:  # a run stopped after epoch 1 of 3, so that --resume has work to do
        config = json.loads((cls_run / CONFIG).read_text())
        config["cli"]["epochs"] = 3
        (cls_run / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    target = cls_run / name
    target.write_bytes(payload(tmp_path, target.read_bytes()))
    before = _snapshot(cls_run)
    code = main([a.format(run=cls_run) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], err
    assert name in lines[0] or name == CONFIG and "RUN" in lines[0]  # the file is named
    assert "Traceback" not in out + err and "weights_only" not in err
    assert not (tmp_path / MARKER).exists()  # no code from the file ran
    assert _snapshot(cls_run) == before  # nothing rewritten
