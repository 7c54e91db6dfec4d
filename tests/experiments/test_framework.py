"""The experiment framework: registry, criteria helpers, atomic results, and the command line's errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from nnatlas.experiments import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    Experiment,
    Measurement,
    base,
    get_experiment,
    list_experiments,
    majority,
    run_experiment,
    spread,
)
from tests.cli.helpers import assert_usage_error, main_in_process, run, usage_error_in_process


def test_majority_and_spread():
    assert majority([True, True, False]) == SUPPORTED
    assert majority([True, False, False]) == NOT_SUPPORTED
    assert majority([True, False]) == INCONCLUSIVE
    assert majority([]) == INCONCLUSIVE
    assert majority([True, False, False, False], need=0.25) == SUPPORTED
    s = spread([1.0, 2.0, 3.0])
    assert s == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "n": 3}
    assert spread([5])["std"] == 0.0
    with pytest.raises(ValueError):
        spread([])


def test_registry_lists_every_experiment_once_with_its_claim():
    names = list_experiments()
    assert len(names) == len(set(names))
    for n in names:
        e = get_experiment(n)
        assert e.name == n and e.claim_zh and e.claim_en and e.criterion and e.minutes > 0
    with pytest.raises(ValueError, match="stacked-3x3"):
        get_experiment("stacked-3x4")


class _Fake(Experiment):
    name = "fake"
    title = section = claim_zh = claim_en = method = criterion = "x"

    def __init__(self, value=1.0, fail=None):
        self.value, self.fail = value, fail

    def run(self, ctx):
        if self.fail is not None:
            (ctx.work / "scratch.txt").write_text("half")
            raise self.fail
        return Measurement(
            numbers={"value": self.value},
            table=[{"value": self.value}],
            key=f"value {self.value}",
            figure=lambda p: p.write_bytes(b"\x89PNG fake"),
        )

    def decide(self, numbers):
        return SUPPORTED if numbers["value"] > 0 else NOT_SUPPORTED


@pytest.fixture
def fake(monkeypatch):
    def install(**kw):
        monkeypatch.setitem(base._EXPERIMENTS, "fake", lambda: _Fake(**kw))

    return install


def test_verdict_is_computed_from_the_numbers(fake, tmp_path):
    fake(value=2.0)
    assert run_experiment("fake", tmp_path, seeds=1)["verdict"] == SUPPORTED
    fake(value=-1.0)
    assert run_experiment("fake", tmp_path, seeds=1)["verdict"] == NOT_SUPPORTED
    assert json.loads((tmp_path / "fake" / "result.json").read_text())["numbers"] == {"value": -1.0}


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("boom")])
def test_a_failed_run_keeps_the_previous_result_and_leaves_nothing_half_written(fake, tmp_path, error):
    fake(value=1.0)
    run_experiment("fake", tmp_path, seeds=1)
    before = (tmp_path / "fake" / "result.json").read_bytes()
    fake(fail=error)
    with pytest.raises(type(error)):
        run_experiment("fake", tmp_path, seeds=1)
    assert (tmp_path / "fake" / "result.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake"]
    assert sorted(p.name for p in (tmp_path / "fake").iterdir()) == ["README.md", "figure.png", "result.json"]


def test_non_finite_numbers_are_refused(fake, tmp_path):
    fake(value=float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        run_experiment("fake", tmp_path, seeds=1)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_result_is_never_replaced(fake, tmp_path):
    fake()
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "mine.txt").write_text("user data")
    with pytest.raises(ValueError, match="not an experiment result"):
        run_experiment("fake", tmp_path, seeds=1)
    assert (tmp_path / "fake" / "mine.txt").read_text() == "user data"


@pytest.mark.parametrize(
    "args, expect",
    [
        (["run", "stacked-3x4"], "unknown experiment 'stacked-3x4'"),
        (["run", "stacked-3x3", "--seeds", "0"], "--seeds must be"),
        (["run", "stacked-3x3", "--threads", "0"], "--threads must be"),
        (["run", "stacked-3x3", "--seeds", "two"], "invalid int value"),
        (["run"], "the following arguments are required"),
        (["run", "stacked-3x3", "--bogus"], "unrecognized arguments"),
        ([], "choose `list` or `run NAME`"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_names_and_options_give_one_line_and_exit_2(capsys, tmp_path, args, expect):
    out = ["--out", str(tmp_path / "out")] if args[:1] == ["run"] else []
    line = usage_error_in_process(["experiment", *args, *out], capsys)
    assert expect in line
    assert not (tmp_path / "out").exists()  # refused before anything was created


def test_existing_user_folder_is_refused_before_anything_runs(nnatlas_exe, tmp_path):
    (tmp_path / "out" / "stacked-3x3").mkdir(parents=True)
    (tmp_path / "out" / "stacked-3x3" / "notes.txt").write_text("mine")
    proc = run(nnatlas_exe, "experiment", "run", "stacked-3x3", "--quick", "--out", str(tmp_path / "out"))
    assert "not an experiment result" in assert_usage_error(proc)  # the real entry point
    assert (tmp_path / "out" / "stacked-3x3" / "notes.txt").read_text() == "mine"


def test_list_names_every_experiment(capsys):
    assert main_in_process(["experiment", "list"]) == 0
    out = capsys.readouterr().out
    for name in list_experiments():
        assert name in out


SLOW = textwrap.dedent(
    """
    import sys, time
    from nnatlas.experiments import base
    from nnatlas.experiments.base import Experiment, Measurement

    class Slow(Experiment):
        name = "slow"
        title = section = claim_zh = claim_en = method = criterion = "x"
        def run(self, ctx):
            (ctx.work / "scratch").write_text("partial")
            print("started", flush=True)
            time.sleep(60)
        def decide(self, numbers):
            return "supported"

    base._EXPERIMENTS["slow"] = Slow
    from nnatlas.cli.main import main
    sys.exit(main(["experiment", "run", "slow", "--out", sys.argv[1], "--quiet"]))
    """
)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 130)])
def test_an_interrupted_run_leaves_no_result(tmp_path, sig, code):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(out.iterdir()) == []  # neither the result nor the hidden partial folder


def test_quick_run_from_the_command_line(nnatlas_exe, tmp_path):
    t0 = time.perf_counter()
    proc = run(
        nnatlas_exe, "experiment", "run", "stacked-3x3", "--quick", "--seeds", "1", "--out", "o", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("stacked-3x3: supported (")
    result = json.loads((tmp_path / "o" / "stacked-3x3" / "result.json").read_text(encoding="utf-8"))
    assert result["seeds"] == [0] and result["machine"]["torch_threads"] == 1
    assert result["wall_s"] <= time.perf_counter() - t0
    assert os.listdir(tmp_path / "o") == ["stacked-3x3"]
