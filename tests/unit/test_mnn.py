"""MNN, the fifth format, through its own folder only: real MNN converter, quantizer and runtime
on a trained LeNet-5 (the session's checkpoint), exported, verified, evaluated, benched, checked,
gated and reported through the CLI like every other format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import read_manifest, run_cli

pytest.importorskip("MNN")


@pytest.fixture(scope="module")
def run(tmp_path_factory, lenet5_ckpt):
    out = tmp_path_factory.mktemp("mnn") / "run"
    r = run_cli("export", lenet5_ckpt.path, "--to", "mnn", "--int8", "--calib-size", "16", "--eval", "digits",
                "--out", out)
    assert r.code == 0, r.stderr
    return out, r


def test_export_writes_verified_fp32_and_really_int8_mnn_files(run):
    out, r = run
    m = read_manifest(out)
    arts = {a["precision"]: a for a in m["artefacts"]}
    assert set(arts) == {"fp32", "int8"} and all(a["format"] == "mnn" for a in arts.values())
    assert arts["fp32"]["path"] == "mnn/model.fp32.mnn" and arts["fp32"]["verify"]["passed"]
    assert arts["fp32"]["verify"]["max_abs_diff"] < 1e-3
    int8 = arts["int8"]
    assert int8["verify"]["passed"] and int8["verify"]["runtime"] == "MNN"
    assert int8["int8_share"]["weights"] == 1.0  # read back from the .mnn itself
    assert int8["scheme"]["tool"].startswith("MNN offline quantizer")
    assert int8["scheme"]["calibration_samples"] == 16
    assert int8["bytes"] < arts["fp32"]["bytes"] / 2
    assert m["tools"]["MNN"]
    assert "100% of weights int8" in r.stdout
    # the digits' test split in MNN's runtime: the int8 file keeps the fp32 accuracy within 2 points
    acc = {row["precision"]: row["top1"] for row in m["eval"]["results"] if row["format"] == "mnn"}
    assert acc["fp32"] > 0.9 and acc["int8"] > acc["fp32"] - 0.02


def test_eval_bench_check_gate_and_report_read_it_from_the_registry(run, tmp_path):
    out, _ = run
    r = run_cli("eval", out, "--dataset", "digits", "--json")
    assert r.code == 0, r.stderr
    rows = {(row["format"], row["precision"]) for row in json.loads(r.stdout)["results"]}
    assert {("mnn", "fp32"), ("mnn", "int8")} <= rows
    r = run_cli("bench", out, "--iters", "5", "--warmup", "1", "--json")
    assert r.code == 0, r.stderr
    results = {x["precision"]: x for x in json.loads(r.stdout)["results"]}
    assert results["int8"]["status"] == "ok" and results["int8"]["runtime"] == "MNN"
    assert results["fp32"]["p50_ms"] > 0
    r = run_cli("check", out, "--json")
    assert r.code == 0, r.stderr
    rows = [row for row in json.loads(r.stdout)["results"] if row["format"] == "mnn"]
    assert len(rows) == 2 and all(row["ok"] is not False and row.get("loaded") for row in rows), rows
    r = run_cli("gate", out, "--max-drop", "2", "--max-size-mb", "1", "--formats", "mnn")
    assert r.code == 0, r.stdout + r.stderr
    assert "mnn" in (out / "gate" / "summary.md").read_text()
    r = run_cli("report", out)
    assert r.code == 0, r.stderr
    assert "mnn int8" in (out / "report" / "report.md").read_text()


def test_a_wrong_input_is_an_error_not_a_crash(run):
    from edgekit.errors import DataError
    from edgekit.formats import get_format

    out, _ = run
    session = get_format("mnn").open(out / "mnn" / "model.int8.mnn")
    with pytest.raises(DataError, match="does not fit the MNN model's input"):
        session.run(np.zeros((2, 1, 28, 28), np.float32))  # MNN itself would segfault on this
    assert session.run(np.zeros((3, 1, 32, 32), np.float32)).shape == (3, 10)  # a sample at a time


def test_a_model_mnn_cannot_convert_fails_in_one_line_and_the_run_survives(tmp_path):
    """MNN 3.6.1's converter aborts (std::bad_alloc) on the LSTM's ONNX export: the child process
    it runs in dies, the format fails in one line naming it, and the run is written."""
    r = run_cli("export", "lstm", "--to", "mnn", "--int8", "--calib-size", "4", "--out", tmp_path / "run")
    assert r.code == 1 and "Traceback" not in r.stdout + r.stderr
    lines = (r.stdout + r.stderr).splitlines()
    assert any(line.startswith("FAILED mnn fp32: MNN's converter could not convert the ONNX export")
               for line in lines), lines
    (fp32,) = read_manifest(tmp_path / "run")["artefacts"]
    assert fp32["status"] == "failed" and not (tmp_path / "run" / "mnn" / "model.fp32.mnn").exists()
