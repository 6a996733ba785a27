"""Mistakes a user makes get one line on stderr, exit code 2, no traceback, nothing half-written."""

from __future__ import annotations

import pickle

import pytest

from tests.conftest import run_cli


def assert_usage_error(r, *needles: str) -> str:
    assert r.code == 2, (r.code, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(r.error_lines) == 1, r.stderr
    line = r.error_lines[0]
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def test_unknown_model_lists_known_ones_and_the_closest(tmp_path):
    r = run_cli("export", "resnet5", "--out", tmp_path / "x")
    assert_usage_error(r, "resnet5", "did you mean 'resnet50'", "lenet5", "lstm")
    assert not (tmp_path / "x").exists()


def test_bad_format_name(tmp_path):
    r = run_cli("export", "lenet5", "--to", "onnx,tflight", "--out", tmp_path / "x")
    assert_usage_error(r, "tflight", "did you mean 'tflite'")


def test_existing_output_directory_is_left_intact(tmp_path):
    out = tmp_path / "earlier-run"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    r = run_cli("export", "lenet5", "--to", "onnx", "--out", out)
    assert_usage_error(r, "already exists")
    assert (out / "manifest.json").read_text() == "{}"
    assert list(out.iterdir()) == [out / "manifest.json"]


def test_missing_weights_file(tmp_path):
    r = run_cli("export", "lenet5", "--weights", tmp_path / "nope.pt", "--out", tmp_path / "x")
    assert_usage_error(r, "nope.pt", "does not exist")


def test_mismatched_weights_list_the_keys(tmp_path):
    import torch

    torch.save({"c1.weight": torch.zeros(3, 3), "bogus.bias": torch.zeros(2)}, tmp_path / "w.pt")
    r = run_cli("export", "lenet5", "--to", "onnx", "--weights", tmp_path / "w.pt", "--out", tmp_path / "x")
    line = assert_usage_error(r, "w.pt")
    assert "missing" in line and "unexpected" in line and "bogus.bias" in line
    assert not (tmp_path / "x").exists()


def test_a_pickle_that_needs_code_to_load_is_refused(tmp_path):
    import torch

    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole_module.pt")  # a pickled object
    r = run_cli("export", "lenet5", "--to", "onnx", "--weights", tmp_path / "whole_module.pt",
                "--out", tmp_path / "x")
    assert_usage_error(r, "arbitrary code", "state_dict")


def test_garbage_weights_file(tmp_path):
    (tmp_path / "w.pt").write_bytes(pickle.dumps("x")[:5] + b"garbage")
    r = run_cli("export", "lenet5", "--to", "onnx", "--weights", tmp_path / "w.pt", "--out", tmp_path / "x")
    assert_usage_error(r, "w.pt")


def test_calibration_folder_without_images_names_the_skipped_files(tmp_path):
    data = tmp_path / "calib"
    data.mkdir()
    (data / "notes.txt").write_text("hello")
    (data / "broken.jpg").write_bytes(b"not a jpeg")
    r = run_cli("export", "lenet5", "--int8", "--to", "onnx", "--calib", data, "--out", tmp_path / "x")
    assert_usage_error(r, "2 files skipped", "notes.txt", "broken.jpg")
    assert not (tmp_path / "x").exists()


def test_bad_input_shape_for_a_user_model(tmp_path):
    (tmp_path / "m.py").write_text("import torch.nn as nn\nclass M(nn.Linear):\n"
                                   "    def __init__(self):\n        super().__init__(4, 2)\n")
    r = run_cli("export", f"{tmp_path / 'm.py'}:M", "--input-shape", "1,3,8,8", "--out", tmp_path / "x")
    assert_usage_error(r, "M")
    r = run_cli("export", f"{tmp_path / 'm.py'}:Nope", "--input-shape", "1,4", "--out", tmp_path / "x")
    assert_usage_error(r, "Nope")


def test_missing_runtime_names_the_extra_to_install(tmp_path):
    # A real failed import: a package directory that raises ImportError shadows openvino, as on a
    # machine without it (we cannot uninstall openvino from the shared test environment).
    shadow = tmp_path / "shadow" / "openvino"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('openvino is not installed here')\n")
    r = run_cli("export", "lenet5", "--to", "openvino", "--out", tmp_path / "x",
                env={"PYTHONPATH": str(tmp_path / "shadow")}, process=True)  # a fresh interpreter
    assert_usage_error(r, "openvino", "pip install 'edgekit[openvino]'")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("args", [["--calib-size", "0"], ["--width", "-1"]])
def test_click_validation_exits_2(tmp_path, args):
    r = run_cli("export", "lenet5", *args, "--out", tmp_path / "x")
    assert r.code == 2 and "Traceback" not in r.stderr


def test_debug_shows_the_traceback(tmp_path):
    r = run_cli("--debug", "export", "resnet5", "--out", tmp_path / "x")
    assert r.code == 2 and "Traceback" in r.stderr
