"""Every bad value is refused before anything is created: exit code 2, one line naming the flag, no
traceback, no run folder left, nothing in an existing run folder changed.

``BAD_INPUTS`` is the table the guide's reliability figures count (docs/guide/reliability.md). ``{cls}`` / ``{seq}`` stand for a
finished classification / seq2seq run folder, ``{file}`` for a plain file.
"""

import pytest

from nnatlas.cli.main import main

T, S = ["train"], ["train", "seq2seq"]
STEP = ["--scheduler", "step"]

BAD_INPUTS: list[tuple[list[str], str | None]] = [
    # ---- the engine options, for every task --------------------------------------------------------
    ([*T, "--epochs", "0"], "--epochs must be an int in [1, 100_000]; got 0"),
    ([*T, "--epochs", "-1"], "--epochs must be an int"),
    ([*T, "--epochs", "1e22"], "--epochs: invalid int value: '1e22'"),
    ([*T, "--epochs", "100000000000000000000000"], "--epochs must be an int in [1, 100_000]"),
    ([*T, "--epochs", "abc"], "invalid int value"),
    ([*T, "--batch-size", "0"], "--batch-size must be an int"),
    ([*T, "--batch-size", "-5"], "--batch-size must be an int"),
    ([*T, "--batch-size", "99999999"], "--batch-size must be an int in [1, 1_048_576]"),
    ([*T, "--eval-batch-size", "0"], "--eval-batch-size must be an int"),
    ([*T, "--lr", "inf"], "--lr must be a finite number > 0; got inf"),
    ([*T, "--lr", "nan"], "--lr must be a finite number > 0; got nan"),
    ([*T, "--lr", "0"], "--lr must be a finite number > 0; got 0.0"),
    ([*T, "--lr", "-1"], "--lr must be a finite number > 0; got -1.0"),
    ([*T, "--lr", "abc"], "--lr: invalid float value"),
    ([*T, "--weight-decay", "nan"], "--weight-decay must be a finite number >= 0; got nan"),
    ([*T, "--weight-decay", "-1"], "--weight-decay must be a finite number >= 0"),
    ([*T, "--weight-decay", "inf"], "--weight-decay must be a finite number >= 0"),
    ([*T, "--optimizer", "sgd", "--momentum", "1.5"], "--momentum must be a finite number in [0, 1)"),
    ([*T, "--momentum", "0.5"], "--momentum applies to --optimizer sgd only"),
    ([*T, *STEP, "--gamma", "-1"], "--gamma must be a finite number in (0, 1]; got -1.0"),
    ([*T, *STEP, "--gamma", "2"], "--gamma must be a finite number in (0, 1]"),
    ([*T, *STEP, "--gamma", "nan"], "--gamma must be a finite number"),
    ([*T, "--gamma", "0.5"], "--gamma applies to --scheduler step only"),
    ([*T, "--warmup-epochs", "nan"], "--warmup-epochs must be a finite number >= 0; got nan"),
    ([*T, "--warmup-epochs", "-1"], "--warmup-epochs must be a finite number >= 0"),
    ([*T, "--warmup-epochs", "20"], "--warmup-epochs must not exceed the run (epochs = 15)"),
    ([*T, "--milestones", "5"], "--milestones apply to the 'step' scheduler only"),
    ([*T, *STEP, "--milestones", "0"], "--milestones must be a finite number in (0, 15]"),
    ([*T, *STEP, "--milestones", "5", "99"], "--milestones must be a finite number in (0, 15]; got 99.0"),
    ([*T, *STEP, "--milestones", "inf"], "--milestones must be a finite number"),
    ([*T, "--seed", "-1"], "--seed must be an int in [0, 4_294_967_295]; got -1"),
    ([*T, "--seed", "4294967296"], "--seed must be an int in [0, 4_294_967_295]"),
    ([*T, "--seed", "x"], "--seed: invalid int value"),
    ([*T, "--device", "tpu"], "--device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'tpu'"),
    ([*T, "--device", "cuda:7"], "--device: device 'cuda:7' asked for"),
    ([*T, "--device", ""], "--device must be"),
    ([*T, "--workers", "-1"], "--workers must be an int in [0, 512]; got -1"),
    ([*T, "--workers", "100000"], "--workers must be an int in [0, 512]"),
    ([*T, "--threads", "-1"], "--threads must be an int in [0, 4_096]; got -1"),
    ([*T, "--limit-train", "0"], "--limit-train must be a positive int; got 0"),
    ([*T, "--limit-train", "-3"], "--limit-train must be a positive int"),
    ([*T, "--amp", "fp16", "--device", "cpu"], "--amp: amp 'fp16' needs a CUDA device"),
    ([*T, "--amp", "fp8"], "invalid choice: 'fp8'"),
    ([*T, "--accum-steps", "0"], "--accum-steps must be an int"),
    ([*T, "--clip-grad", "-1"], "--clip-grad must be a finite number >= 0"),
    ([*T, "--clip-grad", "nan"], "--clip-grad must be a finite number >= 0; got nan"),
    ([*T, "--ema-decay", "1.0"], "--ema-decay must be a finite number in [0, 1); got 1.0"),
    ([*T, "--ema-decay", "-0.1"], "--ema-decay must be a finite number in [0, 1)"),
    ([*T, "--ema-decay", "nan"], "--ema-decay must be a finite number"),
    ([*T, "--checkpoint-every", "-1"], "--checkpoint-every must be an int >= 0; got -1"),
    ([*T, "--sync-bn", "--device", "cpu"], "--sync-bn needs CUDA devices"),
    ([*T, "--optimizer", "adam"], "invalid choice: 'adam'"),
    ([*T, "--scheduler", "linear"], "invalid choice: 'linear'"),
    ([*T, "--nosuchflag"], "unrecognized arguments: --nosuchflag"),
    ([*T, "--ep", "3"], "unrecognized arguments: --ep"),
    ([*T, "--epochs"], "expected one argument"),
    # ---- names and folders ---------------------------------------------------------------------------
    ([*T, "--name", ""], "--name must be a non-empty folder name; got ''"),
    ([*T, "--name", "   "], "--name must be a non-empty folder name"),
    ([*T, "--name", "a/b"], "--name must be a plain folder name"),
    ([*T, "--name", "../escape"], "--name must be a plain folder name"),
    ([*T, "--name", ".."], "--name must be a plain folder name"),
    ([*T, "--name", "/abs"], "--name must be a plain folder name"),
    ([*T, "--name", "x\x1b[31mred"], "--name must not hold control characters"),
    ([*T, "--name", "two\nlines"], "--name must not hold control characters"),
    ([*T, "--name", "tab\there"], "--name must not hold control characters"),
    ([*T, "--out", ""], "--out must be a folder"),
    ([*T, "--out", "/proc/forbidden"], "cannot create output folder '/proc/forbidden'"),
    ([*T, "--out", "{file}"], "cannot create output folder"),
    # ---- classification ------------------------------------------------------------------------------
    ([*T, "--model", "nosuchnet"], "unknown model 'nosuchnet'"),
    ([*T, "--model", "transformer_seq2seq"], "is a seq2seq model; the task is classification"),
    ([*T, "--model", "alexnet"], "needs images of at least 63x63 pixels"),
    ([*T, "--data", "nosuchdata"], "unknown data set 'nosuchdata'"),
    ([*T, "--data", "reverse"], "unknown data set 'reverse'"),
    ([*T, "--data", "mnist", "--data-dir", "nope"], "mnist: data folder 'nope' does not exist"),
    ([*T, "--download"], "--download applies to --data mnist, fashion_mnist, cifar10, cifar100 only"),
    ([*T, "--data-dir", "elsewhere"], "--data-dir applies to --data"),
    ([*T, "--image-size", "64"], "--image-size applies to --data shapes, imagefolder only"),
    ([*T, "--on-bad-image", "skip"], "--on-bad-image applies to --data imagefolder only"),
    ([*T, "--data", "imagefolder", "--image-size", "0"], "--image-size must be an int in [1, 4_096]"),
    ([*T, "--data", "shapes", "--image-size", "4"], "image_size"),
    ([*T, "--label-smoothing", "1.0"], "--label-smoothing must be a finite number in [0, 1)"),
    ([*T, "--label-smoothing", "-0.1"], "--label-smoothing must be a finite number in [0, 1)"),
    ([*T, "--augment", "heavy"], "invalid choice: 'heavy'"),
    ([*T, "--heads", "2"], "unrecognized arguments: --heads"),
    (["train", "translation"], "unknown task 'translation'"),
    # ---- seq2seq -------------------------------------------------------------------------------------
    ([*S, "--data", "revers"], "unknown sequence task 'revers'"),
    ([*S, "--task", "digits"], "unknown sequence task 'digits'"),
    ([*S, "--min-len", "5", "--max-len", "3"], "--min-len must not exceed --max-len (3); got 5"),
    ([*S, "--min-len", "0"], "--min-len must be an int"),
    ([*S, "--max-len", "0"], "--max-len must be an int"),
    ([*S, "--heads", "5"], "--heads must divide --d-model (64); got 5"),
    ([*S, "--heads", "0"], "--heads must be an int"),
    ([*S, "--d-model", "63", "--heads", "1"], "--d-model must be even"),
    ([*S, "--num-train", "0"], "--num-train must be an int"),
    ([*S, "--num-val", "0"], "--num-val must be an int"),
    ([*S, "--symbols", "1"], "--symbols must be an int in [2, 1_000]; got 1"),
    ([*S, "--layers", "0"], "--layers must be an int"),
    ([*S, "--ff", "0"], "--ff must be an int"),
    ([*S, "--dropout", "1.0"], "--dropout must be a finite number in [0, 1)"),
    ([*S, "--dropout", "-0.5"], "--dropout must be a finite number in [0, 1)"),
    ([*S, "--label-smoothing", "2"], "--label-smoothing must be a finite number in [0, 1)"),
    ([*S, "--decode", "sample"], "invalid choice: 'sample'"),
    ([*S, "--channels-last"], "--channels-last does not apply to seq2seq"),
    ([*S, "--sync-bn"], "--sync-bn does not apply to seq2seq"),
    ([*S, "--model", "cifar_resnet20"], "is a classification model; the task is seq2seq"),
    ([*S, "--augment", "basic"], "unrecognized arguments: --augment"),
    ([*S, "--data-dir", "x"], "unrecognized arguments: --data-dir"),
    ([*S, "--lr", "nan"], "--lr must be a finite number > 0; got nan"),
    # ---- resume --------------------------------------------------------------------------------------
    ([*T, "--resume", "nosuchdir"], "--resume 'nosuchdir' is not a run folder (no such folder)"),
    ([*T, "--resume", "r[/]"], "--resume 'r[/]' is not a run folder"),
    ([*T, "--resume", "{file}"], "is not a run folder"),
    ([*T, "--resume", "{cls}", "--lr", "0.1"], "--lr cannot change when a run is resumed"),
    ([*T, "--resume", "{cls}", "--model", "cifar_resnet32"], "--model cannot change"),
    ([*T, "--resume", "{cls}", "--seed", "5", "--data", "shapes"], "--data, --seed cannot change"),
    ([*T, "--resume", "{cls}", "--epochs", "0"], "--epochs 0: a resumed run can be extended, not shortened"),
    ([*S, "--resume", "{cls}"], "is a classification run; continue it with nnatlas train classification"),
    ([*T, "--resume", "{seq}", "--heads", "4"], "--heads cannot change"),  # the task comes from the run
    ([*S, "--resume", "{seq}", "--d-model", "32", "--lr", "1"], "--d-model, --lr cannot change"),
    # ---- eval, attention, models, inspect ------------------------------------------------------------
    (["eval", "nosuchrun"], "RUN_DIR 'nosuchrun' is not a run folder"),
    (["eval", "{cls}", "--batch-size", "0"], "--batch-size must be an int"),
    (["eval", "{cls}", "--workers", "-1"], "--workers must be an int in [0, 512]; got -1"),
    (["eval", "{cls}", "--weights", "best"], "invalid choice: 'best'"),
    (["eval", "{cls}", "--weights", "ema"], "no model_ema.safetensors in"),
    (["eval", "{cls}", "--device", "tpu"], "device must be"),
    (["eval", "{cls}", "--amp", "fp16", "--device", "cpu"], "needs a CUDA device"),
    (["attention", "nosuchrun"], "RUN 'nosuchrun' is not a run folder"),
    (["attention", "{cls}"], "is a classification run; attention maps need a seq2seq run"),
    (["attention", "{seq}", "--index", "-1"], "--index must lie in [0, 16); got -1"),
    (["attention", "{seq}", "--index", "16"], "--index must lie in [0, 16); got 16"),
    (["attention", "{seq}", "--out", "/proc/forbidden"], "cannot create --out"),
    (["models", "--task", "nosuchtask"], "invalid choice: 'nosuchtask'"),
    (["inspect", "nosuchmodel"], None),
    (["inspect", "cifar_resnet20", "--input", ""], "--input"),
    (["inspect", "cifar_resnet20", "--input", "1,,3,32,32"], "--input"),
    (["inspect", "cifar_resnet20", "--format", "xml"], "invalid choice: 'xml'"),
    (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
]


def _ids():
    return [" ".join(argv)[:60].replace("\n", "\\n").replace("\x1b", "ESC") for argv, _ in BAD_INPUTS]


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("argv", "needle"), BAD_INPUTS, ids=_ids())
def test_bad_input_is_refused_cleanly(argv, needle, tmp_path, monkeypatch, capsys, cls_run, seq_run):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain.txt").write_text("not a folder")
    argv = [a.format(cls=cls_run, seq=seq_run, file=tmp_path / "plain.txt") for a in argv]
    before = {run: _snapshot(run) for run in (cls_run, seq_run)}
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in out + err
    if needle is not None:
        assert needle in lines[0], lines[0]
    # Nothing created, nothing changed.
    assert not (tmp_path / "runs" / "cls-2").exists()
    made = {p.name for p in tmp_path.iterdir()} - {"plain.txt", "runs"}
    assert not made, made
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["cls", "seq"]
    for run, files in before.items():
        assert _snapshot(run) == files
