"""`nnatlas train TASK`: one parser per registered recipe, the default task, and the rules of --resume."""

import json

import pytest

from nnatlas._choices import EMBEDDED_IMAGE_DATA, FILE_IMAGE_DATA, SEQUENCE_DATA
from nnatlas.cli.common import UsageError, explicit_dests
from nnatlas.cli.main import main, parse
from nnatlas.cli.tasks import get_recipe, list_recipes
from nnatlas.cli.training import cli_options
from nnatlas.data import list_datasets
from nnatlas.engine import list_tasks


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_every_engine_task_has_a_recipe_and_the_help_lists_the_registered_data():
    assert set(list_recipes()) == set(list_tasks())
    assert set(EMBEDDED_IMAGE_DATA + FILE_IMAGE_DATA) == set(list_datasets(task="classification"))
    assert set(SEQUENCE_DATA) == set(list_datasets(task="seq2seq"))


def test_each_task_shows_only_its_own_options_with_its_defaults(capsys):
    cls = _help(capsys, "train", "classification")
    seq = _help(capsys, "train", "seq2seq")
    for text in (cls, seq):  # the shared engine options, in both
        assert "--epochs" in text and "--resume" in text and "--amp" in text and "--checkpoint-every" in text
    assert "--augment" in cls and "--data-dir" in cls and "--heads" not in cls and "--d-model" not in cls
    assert "--heads" in seq and "--d-model" in seq and "--augment" not in seq and "--data-dir" not in seq
    assert "default: cifar_resnet20" in cls and "default: transformer_seq2seq" in seq
    assert "(default: 0)" in cls.split("--threads THREADS")[-1][:80]  # torch's own thread count for images
    assert "(default: 1)" in seq.split("--threads THREADS")[-1][:80]  # one thread for the small Transformer
    assert "add: --max-len 3, --num-train 20000, --epochs 30" in seq  # per data set defaults
    top = _help(capsys, "train")
    assert "classification" in top and "seq2seq" in top and "TASK --help" in top


def test_train_without_a_task_is_classification_and_resume_finds_the_task(tmp_path):
    assert parse(["train", "--epochs", "3"]).task == "classification"
    assert parse(["train"]).task == "classification"
    run = tmp_path / "s"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": "seq2seq", "cli": {}}))
    assert parse(["train", "--resume", str(run)]).task == "seq2seq"
    assert parse(["train", f"--resume={run}", "--quiet"]).task == "seq2seq"
    with pytest.raises(UsageError, match="unknown task 'translation'.*classification"):
        parse(["train", "translation"])


def test_explicit_options_are_told_from_defaults_even_when_equal():
    args = parse(["train", "--lr", "0.003", "--epochs=4", "--quiet"])
    assert explicit_dests(args._parser, args._argv) == {"lr", "epochs", "quiet"}
    args = parse(["train", "seq2seq", "--task", "sort"])  # --task is an alias of --data
    assert args.data == "sort" and explicit_dests(args._parser, args._argv) == {"data"}
    with pytest.raises(UsageError):  # no abbreviations: --ep is not --epochs
        parse(["train", "--ep", "3"])


def _saved_run(tmp_path, *argv):
    args = parse(["train", *argv])
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": args.task, "cli": cli_options(args)}))
    return run


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        (["--lr", "0.1"], "--lr cannot change"),
        (["--model", "cifar_resnet32", "--seed", "3"], "--model, --seed cannot change"),
        (["--epochs", "2"], "can be extended, not shortened"),
        (["seq2seq"], "is a classification run; continue it with nnatlas train classification"),
    ],
)
def test_resume_refuses_options_that_define_the_run(tmp_path, capsys, given, needle):
    run = _saved_run(tmp_path, "--epochs", "4", "--data", "digits")
    task = [given.pop(0)] if given and given[0] == "seq2seq" else []
    assert main(["train", *task, "--resume", str(run), *given]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]  # nothing written


def test_resume_accepts_where_and_how_it_runs_and_an_equal_value(tmp_path, capsys):
    run = _saved_run(tmp_path, "--epochs", "4", "--lr", "0.01")
    # Same --lr as saved, plus the options that may change: the only complaint is the missing checkpoint.
    argv = ["train", "--resume", str(run), "--lr", "0.01", "--device", "cpu", "--workers", "1", "--quiet"]
    assert main([*argv, "--epochs", "9", "--data-dir", "elsewhere"]) == 2
    assert "no checkpoint.pt there" in capsys.readouterr().err


def test_recipes_are_registered_by_name():
    assert get_recipe("seq2seq").default_model == "transformer_seq2seq"
    with pytest.raises(ValueError, match="unknown task 'segmentaton'"):
        get_recipe("segmentaton")
