"""`nnatlas report`: a run folder, a model and experiment results on one self-contained page, opened in a real
headless Chromium (no console error, no network request, every image decoded, readable at a phone's width)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from nnatlas.experiments import run_experiment
from tests.browser import open_page
from tests.cli.helpers import assert_usage_error, main_in_process, run, usage_error_in_process


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    argv = ["train", "--epochs", "2", "--limit-train", "400", "--out", str(out), "--name", "d", "--quiet"]
    assert main_in_process(argv) == 0
    return out / "d"


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    run_experiment("stacked-3x3", out, quick=True, seeds=1)
    return out


def _images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_run_report_is_self_contained(digits_run, experiments, tmp_path):
    out = tmp_path / "r.html"
    assert (
        main_in_process(["report", str(digits_run), "-o", str(out), "--experiments", str(experiments)]) == 0
    )
    html = out.read_text(encoding="utf-8")
    for heading in ("Training curves", "Final metrics", "Configuration", "Confusion matrix (validation set)",
                    "Sample predictions", "Experiment stacked-3x3"):  # fmt: skip
        assert f"<h2>{heading}" in html, heading
    images = _images(html)
    assert len(images) >= 4 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "<script" not in html and "http://" not in html and "https://" not in html
    accuracy = float(re.search(r"Accuracy ([0-9.]+) on 360 validation samples", html).group(1))
    last = json.loads((digits_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert accuracy == pytest.approx(last["val_acc"], abs=1e-4)  # the confusion matrix agrees with training


def test_model_report(tmp_path):
    out = tmp_path / "m.html"
    assert main_in_process(["report", "cifar_resnet20", "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    for heading in ("Parameters and MACs per stage", "Summary", "Receptive field per layer",
                    "Effective receptive field and filters"):  # fmt: skip
        assert f"<h2>{heading}" in html, heading
    assert "269,722" in html  # cifar_resnet20 with option A shortcuts (He et al. 2016, table 6: 0.27M)
    assert len(_images(html)) == 4


def test_user_strings_are_escaped_not_executed(digits_run, experiments, tmp_path):
    evil = "<script>window.__nnatlas_injected=1<\\x2fscript>"
    run_dir = tmp_path / "<script>window.__nnatlas_injected=1"
    shutil.copytree(digits_run, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["data"] = "<img src=x onerror='window.__nnatlas_injected=1'>"
    (run_dir / "config.json").write_text(json.dumps(config))
    result = json.loads((experiments / "stacked-3x3" / "result.json").read_text())
    exp = tmp_path / "exp"
    shutil.copytree(experiments, exp)
    result["title"] = evil
    (exp / "stacked-3x3" / "result.json").write_text(json.dumps(result))
    out = tmp_path / "evil.html"
    assert main_in_process(["report", str(run_dir), "-o", str(out), "--experiments", str(exp)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__nnatlas_injected=1" in html
    page = open_page(out)
    assert not page.script_ran and not page.errors and not page.requests
    assert "<script>window.__nnatlas_injected=1" in page.text  # shown as text


@pytest.mark.parametrize("width, mobile", [(1000, False), (375, True)])
def test_report_in_headless_chromium(digits_run, experiments, tmp_path, width, mobile):
    out = tmp_path / "r.html"
    assert (
        main_in_process(["report", str(digits_run), "-o", str(out), "--experiments", str(experiments)]) == 0
    )
    page = open_page(out, width=width, mobile=mobile)
    assert page.errors == [] and page.requests == []
    assert page.images >= 4 and page.decoded == page.images
    assert page.scroll_width <= width  # nothing wider than a phone's screen: tables scroll inside their box
    assert page.title == "d" and page.screenshot.startswith(b"\x89PNG")
    (tmp_path / f"report_{width}.png").write_bytes(page.screenshot)


@pytest.mark.parametrize(
    "args, expect",
    [
        (["no_such_model"], "unknown model 'no_such_model'"),
        (["runs/missing"], "is not a run folder (no such folder)"),
        (["cifar_resnet20", "-o", "r.txt"], "must end in .html"),
        (["cifar_resnet20", "-o", "missing/r.html"], "does not exist"),
        (["cifar_resnet20", "--experiments", "nothing"], "is not a folder of experiment results"),
        (["cifar_resnet20", "--samples", "-1"], "--samples must be"),
        (["cifar_resnet20", "--input", "1,3,x"], "--input must be"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, monkeypatch, tmp_path, args, expect):
    monkeypatch.chdir(tmp_path)
    assert expect in usage_error_in_process(["report", *args], capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_run_and_an_existing_output(nnatlas_exe, tmp_path):
    (tmp_path / "plain").mkdir()
    assert "no config.json" in assert_usage_error(run(nnatlas_exe, "report", "plain", cwd=tmp_path))
    (tmp_path / "report.html").write_text("mine")
    line = assert_usage_error(run(nnatlas_exe, "report", "cifar_resnet20", cwd=tmp_path))
    assert "already exists" in line and (tmp_path / "report.html").read_text() == "mine"


def test_help_explains(nnatlas_exe):
    proc = run(nnatlas_exe, "report", "--help")
    assert proc.returncode == 0 and "--experiments" in proc.stdout and "run folder" in proc.stdout
