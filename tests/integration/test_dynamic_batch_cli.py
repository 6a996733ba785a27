"""`export --dynamic-batch`: artefacts whose batch axis (0) is dynamic, verified at batch 1 and 4, and
`bench --batch N` on them; a fixed-batch artefact (TFLite, or an export without the flag) keeps the
clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.export.verify import VERIFY_BATCH
from edgekit.formats import get_format
from edgekit.formats.base import DYNAMIC_BATCH_MAX
from tests.conftest import copy_run, read_manifest, run_cli

DYNAMIC = ("onnx", "openvino", "executorch")  # TFLite: litert-torch converts static shapes only


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("dynamic") / "run"
    r = run_cli("export", "lenet5", "--int8", "--dynamic-batch", "--calib-size", "16", "--out", out)
    assert r.code == 0, r.stderr
    return out, r


def artefacts(run_dir) -> dict:
    return {(a["format"], a["precision"]): a for a in read_manifest(run_dir)["artefacts"]}


def test_manifest_records_the_dynamic_batch_and_the_batched_verification(exported):
    run_dir, r = exported
    found = artefacts(run_dir)
    assert read_manifest(run_dir)["settings"]["dynamic_batch"] is True
    for (fmt, precision), art in found.items():
        assert art["status"] == "ok", art
        if fmt in DYNAMIC:
            assert art["input_shape"] == ["batch", 1, 32, 32] and art["dynamic_batch"] is True
            batched = art["verify"]["batched"]
            assert batched["batch"] == VERIFY_BATCH and batched["samples"] == art["verify"]["samples"]
            if precision == "fp32":  # judged at batch 4 as at batch 1
                assert batched["passed"] is True and batched["max_abs_diff"] <= batched["tolerance"]
        else:
            assert art["input_shape"] == [1, 1, 32, 32] and art["dynamic_batch"] is False
            assert "batched" not in art["verify"]
    assert found[("executorch", "fp32")]["max_batch"] == DYNAMIC_BATCH_MAX
    assert "max_batch" not in found[("onnx", "fp32")]  # unbounded
    notes = [line for line in r.stdout.splitlines() if line.startswith("note: tflite")]
    assert len(notes) == 1 and "keep batch 1" in notes[0]


def test_bench_batch_8_runs_the_dynamic_artefacts(exported):
    run_dir, _ = exported
    r = run_cli("bench", run_dir, "--batch", "8", "--iters", "5", "--threads", "1", "--no-torch", "--json")
    assert r.code == 1  # the TFLite artefacts keep batch 1
    rows = {(x["format"], x["precision"]): x for x in json.loads(r.stdout)["results"]}
    for (fmt, _), row in rows.items():
        if fmt in DYNAMIC:
            assert row["status"] == "ok", row
            assert row["batch"] == 8 and row["input_shapes"] == [[8, 1, 32, 32]]
            assert row["throughput_per_s"] == pytest.approx(8 * 5 / row["timed_seconds"])
        else:
            assert row["status"] == "failed" and "does not run with batch 8" in row["error"]


def test_outputs_at_batch_8_are_the_stacked_batch_1_outputs(exported):
    run_dir, _ = exported
    x = np.random.default_rng(0).random((8, 1, 32, 32), dtype=np.float32)
    for (fmt, precision), art in artefacts(run_dir).items():
        if fmt not in DYNAMIC:
            continue
        session = get_format(fmt).open(run_dir / art["path"])
        one_by_one = np.concatenate([session.run(x[i : i + 1]) for i in range(len(x))])
        batched = session.run(x)
        assert batched.shape == (8, 10)
        np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-5, err_msg=f"{fmt} {precision}")


def test_executorch_runs_batches_above_its_bound_in_chunks(exported):
    run_dir, _ = exported
    art = artefacts(run_dir)[("executorch", "fp32")]
    session = get_format("executorch").open(run_dir / art["path"])
    x = np.random.default_rng(1).random((DYNAMIC_BATCH_MAX + 6, 1, 32, 32), dtype=np.float32)
    y = session.run(x)  # 64 at once, then 6
    np.testing.assert_allclose(y[-6:], session.run(x[-6:]), rtol=0, atol=1e-5)
    assert y.shape == (len(x), 10)


def test_without_the_flag_bench_batch_8_keeps_the_fixed_batch_error(tmp_path, lenet5_run):
    out = copy_run(lenet5_run, tmp_path / "run")  # the session's lenet5 run, exported without the flag
    assert all(a["input_shape"] == [1, 1, 32, 32] and not a["dynamic_batch"] for a in artefacts(out).values())
    r = run_cli("bench", out, "--batch", "8", "--iters", "2", "--no-torch", "--json")
    assert r.code == 1
    rows = {x["format"]: x for x in json.loads(r.stdout)["results"]}
    assert "this ONNX file has a fixed batch of 1" in rows["onnx"]["error"]
    assert "this ExecuTorch program has a fixed batch of 1" in rows["executorch"]["error"]


def test_a_tiny_lstm_takes_a_dynamic_batch_on_axis_0(tmp_path):
    out = tmp_path / "run"
    r = run_cli("export", "lstm", "--input-size", "9", "--to", ",".join(DYNAMIC), "--dynamic-batch",
                "--out", out)
    assert r.code == 0, r.stderr
    x = np.random.default_rng(2).random((5, *artefacts(out)[("onnx", "fp32")]["input_shape"][1:]),
                                        dtype=np.float32)
    for (fmt, _), art in artefacts(out).items():
        assert art["dynamic_batch"] is True and art["verify"]["batched"]["passed"] is True
        session = get_format(fmt).open(out / art["path"])
        one_by_one = np.concatenate([session.run(x[i : i + 1]) for i in range(len(x))])
        np.testing.assert_allclose(session.run(x), one_by_one, rtol=0, atol=1e-5, err_msg=fmt)
