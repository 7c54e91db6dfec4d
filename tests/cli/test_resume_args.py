import json

from nnatlas.cli.main import build_parser
from nnatlas.cli.train_cmd import cli_options, resumed_args


def test_resume_takes_the_saved_options_and_only_explicit_overrides(tmp_path):
    parser = build_parser()
    first = parser.parse_args(
        ["train", "--data", "cifar10", "--data-dir", "/d1", "--epochs", "7", "--device", "cpu"]
    )
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"cli": cli_options(first)}))
    (run_dir / "checkpoint.pt").write_bytes(b"")
    args = resumed_args(parser.parse_args(["train", "--resume", str(run_dir), "--quiet"]))
    assert (args.data, args.data_dir, args.epochs, args.device, args.quiet) == (
        "cifar10",
        "/d1",
        7,
        "cpu",
        True,
    )
    args = resumed_args(
        parser.parse_args(["train", "--resume", str(run_dir), "--data-dir", "/d2", "--epochs", "1"])
    )
    assert (args.data_dir, args.epochs, args.resume) == ("/d2", 7, str(run_dir))  # epochs are the run's
