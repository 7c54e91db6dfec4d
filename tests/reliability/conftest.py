"""Run folders that the reliability tests read, made once per session by the real command, in process."""

import shutil

import pytest
import torch

from nnatlas.cli.main import main

TINY_CLS = [
    "train",
    "--epochs",
    "1",
    "--limit-train",
    "64",
    "--batch-size",
    "32",
    "--quiet",
    "--device",
    "cpu",
]
TINY_SEQ = ["train", "seq2seq", "--epochs", "1", "--num-train", "64", "--num-val", "16", "--max-len", "4"]
TINY_SEQ += ["--layers", "1", "--d-model", "16", "--heads", "2", "--ff", "32", "--quiet", "--device", "cpu"]


def train_in_process(folder, argv):
    threads = torch.get_num_threads()
    try:
        code = main([*argv, "--out", str(folder)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="session")
def _pristine_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    cls = train_in_process(root / "cls", [*TINY_CLS, "--threads", str(torch.get_num_threads())])
    seq = train_in_process(root / "seq", [*TINY_SEQ, "--threads", str(torch.get_num_threads())])
    return cls, seq


@pytest.fixture
def cls_run(_pristine_runs, tmp_path):
    """A finished one-epoch classification run (a fresh copy for each test)."""
    return shutil.copytree(_pristine_runs[0], tmp_path / "runs" / "cls")


@pytest.fixture
def seq_run(_pristine_runs, tmp_path):
    """A finished one-epoch seq2seq run (a fresh copy for each test)."""
    return shutil.copytree(_pristine_runs[1], tmp_path / "runs" / "seq")
