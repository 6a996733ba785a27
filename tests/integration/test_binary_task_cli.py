"""Models that are not argmax classifiers, through the CLI: a bidirectional GRU with one logit per
sample (a binary classifier, decided by sigmoid >= 0.5) exported to ONNX and OpenVINO and scored
with accuracy and ROC AUC on a labelled .npz; a regressor whose (batch, 1) output --task regress
says is a real value (MAE, RMSE, agreement within a recorded tolerance, gate rules that fit); and
a notebook named as the model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tests.conftest import REPO, read_manifest, run_cli
from tests.models import BinaryGRU, TinyRegressor

MODELS = REPO / "tests" / "models.py"


def _auc(scores, y):
    pairs = list(itertools.product(scores[y == 1], scores[y == 0]))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("binary")
    torch.manual_seed(1)
    model = BinaryGRU().eval()
    torch.save(model.state_dict(), tmp / "gru.pt")
    x = np.random.default_rng(0).random((40, 10, 6), dtype=np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    y = (logits >= 0).astype(np.int64)
    y[::4] = 1 - y[::4]  # a quarter of the labels disagree with the model: 75% accuracy
    np.savez(tmp / "labelled.npz", x=x, y=y)
    out = tmp / "run"
    r = run_cli("export", f"{MODELS}:BinaryGRU", "--input-shape", "1,10,6", "--weights", tmp / "gru.pt",
                "--to", "onnx,openvino", "--calib", tmp / "labelled.npz", "--calib-size", "8", "--out", out)
    return r, out, tmp / "labelled.npz", logits, y


def test_a_one_logit_gru_exports_verified_as_a_binary_classifier(binary_run):
    r, out, *_ = binary_run
    assert r.code == 0, r.stderr
    m = read_manifest(out)
    assert m["model"]["task"] == "binary" and m["settings"]["task"] is None  # guessed from (batch,)
    arts = {a["format"]: a for a in m["artefacts"]}
    assert set(arts) == {"onnx", "openvino"}
    for a in arts.values():
        assert a["status"] == "ok" and a["verify"]["passed"], a
        assert a["verify"]["task"] == "binary" and a["verify"]["top1_agreement"] == 1.0


def test_eval_scores_accuracy_and_auc_of_every_artefact(binary_run):
    _, out, data, logits, y = binary_run
    r = run_cli("eval", out, "--dataset", data, "--split", "all")
    assert r.code == 0, r.stderr
    assert "accuracy" in r.stdout and "auc" in r.stdout and "75.00%" in r.stdout
    ev = read_manifest(out)["eval"]
    assert ev["metric"] == "accuracy" and ev["task"] == "binary" and ev["samples"] == 40
    rows = {(x["format"], x["precision"]): x for x in ev["results"]}
    assert set(rows) == {("pytorch", "fp32"), ("onnx", "fp32"), ("openvino", "fp32")}
    for row in rows.values():
        assert row["accuracy"] == 0.75 and row["agreement"] == 1.0
        assert row["auc"] == pytest.approx(_auc(logits, y), abs=1e-9)


@pytest.fixture(scope="module")
def regress_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("regress")
    torch.manual_seed(2)
    model = TinyRegressor().eval()
    torch.save(model.state_dict(), tmp / "reg.pt")
    x = np.random.default_rng(0).random((30, 6), dtype=np.float32)
    with torch.no_grad():
        outputs = model(torch.from_numpy(x)).numpy()[:, 0]
    np.savez(tmp / "targets.npz", x=x, y=outputs + np.where(np.arange(30) % 2, 0.5, -0.5).astype(np.float32))
    out = tmp / "run"
    r = run_cli("export", f"{MODELS}:TinyRegressor", "--input-shape", "1,6", "--weights", tmp / "reg.pt",
                "--task", "regress", "--to", "onnx", "--calib", tmp / "targets.npz", "--calib-size", "8",
                "--out", out)
    return r, out, tmp / "targets.npz"


def test_task_regress_scores_mae_and_rmse_and_records_the_tolerance(regress_run):
    r, out, data = regress_run
    assert r.code == 0, r.stderr
    m = read_manifest(out)
    assert m["settings"]["task"] == "regress" and m["model"]["task"] == "regression"
    (art,) = m["artefacts"]
    assert art["verify"]["task"] == "regression" and art["verify"]["agreement_tolerance"] > 0
    r = run_cli("eval", out, "--dataset", data, "--split", "all")
    assert r.code == 0, r.stderr
    assert "mae" in r.stdout and "MAE rise (%)" in r.stdout
    ev = read_manifest(out)["eval"]
    assert ev["metric"] == "mae" and "agreement_tolerance" in ev
    for row in ev["results"]:  # every output is 0.5 from its target
        assert row["mae"] == pytest.approx(0.5, abs=1e-5) and row["rmse"] == pytest.approx(0.5, abs=1e-5)
    r = run_cli("gate", out, "--min-accuracy", "0.9")
    assert r.code == 2 and "regression model" in r.error_lines[0] and "--max-drop" in r.error_lines[0]
    r = run_cli("gate", out, "--max-drop", "1", "--min-agreement", "0.99")
    assert r.code == 0, r.stdout + r.stderr


def test_a_task_the_output_cannot_mean_and_a_notebook_are_one_line_errors(tmp_path):
    r = run_cli("export", f"{MODELS}:TinyRegressor", "--input-shape", "1,6", "--task", "classify",
                "--to", "onnx", "--out", tmp_path / "run")
    assert r.code == 2 and "Traceback" not in r.stderr
    (line,) = r.error_lines
    assert "--task classify" in line and "1 value per sample" in line and not (tmp_path / "run").exists()
    (tmp_path / "Untitled.ipynb").write_text("{}")
    r = run_cli("export", "Untitled.ipynb:Net", "--input-shape", "1,6", cwd=tmp_path)
    assert r.code == 2 and "Traceback" not in r.stderr
    (line,) = r.error_lines
    assert "notebook" in line and "jupyter nbconvert --to script" in line and "Untitled.py:Net" in line
