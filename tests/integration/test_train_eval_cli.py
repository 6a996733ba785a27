"""`edgekit train` -> `edgekit export CKPT --int8 --eval` -> `edgekit eval`, through the real CLI."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.formats import default_names
from tests.conftest import copy_run, read_manifest, run_cli


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, lenet5_ckpt, lenet5_run):
    """The session's trained LeNet-5 and its export with --eval digits (tests/conftest.py), copied:
    eval writes into the run."""
    r = lenet5_ckpt.result
    assert lenet5_ckpt.path.is_file() and "test (269 samples)" in r.stdout
    r = lenet5_run.result
    assert "random" not in r.stderr  # weights came from the checkpoint
    out = copy_run(lenet5_run, tmp_path_factory.mktemp("train") / "run")
    return lenet5_ckpt.path, out, r


def test_export_of_a_checkpoint_prints_and_records_accuracy_per_format(trained_run):
    ckpt, out, r = trained_run
    m = read_manifest(out)
    assert m["model"]["name"] == "lenet5" and m["model"]["weights"]["sha256"]
    ev = m["eval"]
    assert ev["dataset"] == "digits" and ev["split"] == "test" and ev["samples"] == 269
    rows = {(x["format"], x["precision"]): x for x in ev["results"]}
    assert set(rows) == {("pytorch", "fp32")} | {(f, p) for f in default_names() for p in ("fp32", "int8")}
    base = rows[("pytorch", "fp32")]["top1"]
    assert base > 0.8  # 8 epochs on real digits; chance is 0.1
    for (_fmt, precision), row in rows.items():
        assert "top5" in row  # 10 classes
        if precision == "fp32":
            assert row["top1"] == pytest.approx(base, abs=1 / 269) and row["agreement"] > 0.99
        else:
            assert abs(row["drop_pp"]) < 5 and row["agreement"] > 0.9
    assert "accuracy on digits" in r.stdout and "tflite" in r.stdout


def test_eval_numbers_match_a_direct_computation(trained_run):
    import onnxruntime as ort

    from edgekit.data.datasets import load_dataset
    from edgekit.measure.metrics import predict
    from edgekit.models.checkpoint import load_checkpoint

    ckpt, out, _ = trained_run
    r = run_cli("eval", out, "--dataset", "digits", "--json")
    assert r.code == 0, r.stderr
    import json

    result = json.loads(r.stdout)
    model = load_checkpoint(ckpt)
    data = load_dataset("digits", model, split="test")
    direct_torch = float(np.mean(predict(model.module, data.x).argmax(-1) == data.y))
    sess = ort.InferenceSession(str(out / "onnx" / "model.int8.onnx"))
    onnx_logits = np.concatenate([sess.run(None, {"input": x[None]})[0] for x in data.x])
    direct_onnx = float(np.mean(onnx_logits.argmax(-1) == data.y))
    rows = {(x["format"], x["precision"]): x for x in result["results"]}
    assert rows[("pytorch", "fp32")]["top1"] == pytest.approx(direct_torch, abs=1e-9)
    assert rows[("onnx", "int8")]["top1"] == pytest.approx(direct_onnx, abs=1e-9)
    assert rows[("onnx", "int8")]["drop_pp"] == pytest.approx(100 * (direct_torch - direct_onnx), abs=1e-3)


def test_eval_errors_are_one_line(tmp_path, trained_run):
    _, out, _ = trained_run
    r = run_cli("eval", tmp_path, "--dataset", "digits")
    assert r.code == 2 and "not an edgekit run directory" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("eval", out, "--dataset", "digitz")
    assert r.code == 2 and "did you mean 'digits'" in r.stderr and "Traceback" not in r.stderr


def test_lstm_trains_on_reber_and_reports_string_accuracy(tmp_path):
    ckpt = tmp_path / "lstm.pt"
    r = run_cli("train", "lstm", "--dataset", "reber", "--epochs", "3", "--out", ckpt)
    assert r.code == 0, r.stderr
    out = tmp_path / "run"
    r = run_cli("export", ckpt, "--to", "onnx", "--int8", "--eval", "reber", "--out", out)
    assert r.code == 0, r.stderr
    rows = {(x["format"], x["precision"]): x for x in read_manifest(out)["eval"]["results"]}
    torch_row = rows[("pytorch", "fp32")]
    assert {"strings", "deterministic_top1", "step_top1"} <= set(torch_row)
    assert torch_row["deterministic_top1"] > 0.5  # far above the 1/7 of guessing
    assert rows[("onnx", "fp32")]["strings"] == pytest.approx(torch_row["strings"], abs=1e-3)
