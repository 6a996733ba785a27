"""--dynamic-axis NAME=AXIS:MIN..MAX: a variable sequence length where the format can hold it,
verified at a second length against PyTorch; a format that cannot keeps the given size and says so."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import REPO, read_manifest, run_cli

MODEL = f"{REPO / 'tests' / 'models.py'}:VariableLengthGRU"


def test_a_variable_sequence_length_where_the_format_can_hold_it(tmp_path):
    data = tmp_path / "seq.npz"
    np.savez(data, x=np.random.default_rng(0).random((96, 8, 8), dtype=np.float32))
    out = tmp_path / "run"
    r = run_cli("export", MODEL, "--input-shape", "1,8,8", "--dynamic-axis", "seq=1:3..32", "--int8",
                "--calib", data, "--calib-size", "16", "--to", "onnx,openvino,executorch,tflite",
                "--out", out)
    assert r.code == 0, r.stdout + r.stderr
    assert "note: tflite: litert-torch cannot convert a variable axis" in r.stdout + r.stderr
    assert "the ExecuTorch artefacts keep it" in r.stdout  # its recurrent layer is unrolled per step
    got = {(a["format"], a["precision"]): a for a in read_manifest(out)["artefacts"]}
    assert got[("onnx", "fp32")]["input_shape"] == [1, "seq", 8]
    assert got[("openvino", "fp32")]["input_shape"] == [1, "3..32", 8]
    for fmt in ("onnx", "openvino"):
        for precision in ("fp32", "int8"):
            checked = got[(fmt, precision)]["verify"]["dynamic_axes"]
            assert [(c["name"], c["verified_at"]) for c in checked] == [("seq", 4)], (fmt, checked)
            assert checked[0]["passed"] is (True if precision == "fp32" else None)
            assert checked[0]["top1_agreement"] >= 0.9
    for fmt in ("executorch", "tflite"):
        assert got[(fmt, "fp32")]["input_shape"] == [1, 8, 8]
        assert "dynamic_axes" not in got[(fmt, "fp32")]["verify"]
    # the ONNX artefact really runs another length in onnxruntime, as a user would run it
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / got[("onnx", "fp32")]["path"]))
    assert session.run(None, {"input": np.zeros((1, 20, 8), np.float32)})[0].shape == (1,)


@pytest.mark.parametrize("spec, says", [
    ("seq=1:3", "expected NAME=AXIS:MIN..MAX"),
    ("seq=0:1..4", "no axis 0 other than its batch"),
    ("seq=1:10..32", "must lie within 10..32"),
])
def test_a_dynamic_axis_that_does_not_fit_is_one_line(tmp_path, spec, says):
    r = run_cli("export", MODEL, "--input-shape", "1,8,8", "--dynamic-axis", spec, "--to", "onnx",
                "--out", tmp_path / "run")
    assert r.code == 2 and says in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2 and "Traceback" not in r.stderr  # a warning and the error
    assert not (tmp_path / "run").exists()
