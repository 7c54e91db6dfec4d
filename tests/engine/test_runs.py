import json

import pytest

from nnatlas.engine import RunDirError, append_jsonl, create_run_dir, read_jsonl, write_json


def test_run_dirs_are_never_reused(tmp_path):
    a = create_run_dir(tmp_path, "exp")
    (a / "keep.txt").write_text("first run")
    b = create_run_dir(tmp_path, "exp")
    c = create_run_dir(tmp_path, "exp")
    assert [a.name, b.name, c.name] == ["exp", "exp-2", "exp-3"]
    assert (a / "keep.txt").read_text() == "first run"


@pytest.mark.parametrize("out", ["/proc/forbidden", "/proc/self/nope/x"])
def test_unwritable_output_folder_is_a_clear_error(out):
    with pytest.raises(RunDirError, match="cannot create"):
        create_run_dir(out, "exp")


def test_bad_names_and_file_in_the_way(tmp_path):
    with pytest.raises(RunDirError, match="plain folder name"):
        create_run_dir(tmp_path, "a/b")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunDirError):
        create_run_dir(tmp_path / "afile", "exp")


def test_json_helpers_roundtrip(tmp_path):
    write_json(tmp_path / "c.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "c.json").read_text()) == {"a": [1, 2], "b": 1}
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed, not left behind
    for i in range(3):
        append_jsonl(tmp_path / "m.jsonl", {"epoch": i, "loss": 1.0 / (i + 1)})
    assert [r["epoch"] for r in read_jsonl(tmp_path / "m.jsonl")] == [0, 1, 2]
