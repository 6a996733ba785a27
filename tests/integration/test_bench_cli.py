"""`edgekit bench` on this machine: every artefact of a run, lone model files, targets, failures."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgekit.formats import default_names
from tests.conftest import copy_run, read_manifest, run_cli

FORMATS = default_names()  # what `export` writes without --to


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, lenet5_run):
    """The session's lenet5 int8 run of every format (tests/conftest.py), copied: bench writes into it."""
    return copy_run(lenet5_run, tmp_path_factory.mktemp("bench") / "run")


@pytest.fixture(scope="module")
def benched(run_dir):
    r = run_cli("bench", run_dir, "--iters", "30", "--threads", "1")
    return r, read_manifest(run_dir)


def test_bench_times_every_artefact_and_pytorch_and_records_them(benched, run_dir):
    r, m = benched
    assert r.code == 0, r.stderr
    record = m["bench"]["local-cpu"]
    rows = {(x["format"], x["precision"]): x for x in record["results"]}
    assert set(rows) == {("pytorch", "fp32")} | {(f, p) for f in FORMATS for p in ("fp32", "int8")}
    for (fmt, precision), row in rows.items():
        assert row["status"] == "ok", row
        assert row["iters"] == 30 and row["threads"] == 1 and row["batch"] == 1
        assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["mean_ms"] > 0 and row["cv"] == pytest.approx(row["std_ms"] / row["mean_ms"])
        assert row["throughput_per_s"] == pytest.approx(30 / row["timed_seconds"])
        assert row["load_ms"] > 0 and row["first_inference_ms"] > 0
        assert row["peak_rss_bytes"] >= row["rss_before_load_bytes"] > 0
        assert row["environment"]["cores"] == os.cpu_count() and row["environment"]["python"]
        if fmt != "pytorch":
            art = next(a for a in m["artefacts"] if (a["format"], a["precision"]) == (fmt, precision))
            assert row["file_bytes"] == art["bytes"]  # .xml + .bin for OpenVINO
            assert art["bench"]["local-cpu"]["p50_ms"] == row["p50_ms"]
        if precision == "int8":
            assert row["speedup_vs_fp32"] == pytest.approx(rows[(fmt, "fp32")]["p50_ms"] / row["p50_ms"])
    assert rows[("onnx", "fp32")]["runtime"] == "onnxruntime"
    assert rows[("openvino", "int8")]["runtime"] == "openvino"
    assert rows[("openvino", "fp32")]["inference_precision"]  # what actually ran (bf16 on some CPUs)
    assert rows[("tflite", "int8")]["runtime"] == "ai-edge-litert"
    assert rows[("pytorch", "fp32")]["runtime"] == "torch"
    # each artefact in its own process, none in the CLI's
    pids = [row["pid"] for row in rows.values()]
    assert len(set(pids)) == len(pids)
    # the table names every artefact; the manifest records what ran where
    for fmt in FORMATS:
        assert fmt in r.stdout
    assert "p50 ms" in r.stdout and "each artefact in its own process" in r.stdout
    assert record["target"]["name"] == "local-cpu" and record["settings"]["iters"] == 30
    assert record["environment"]["cpu"]


def test_an_int8_artefact_slower_than_its_fp32_is_named_with_what_to_do(benched):
    r, m = benched
    rows = m["bench"]["local-cpu"]["results"]
    slow = {x["format"] for x in rows if x["precision"] == "int8" and x["speedup_vs_fp32"] < 1}
    # LeNet-5 is so small that quantize/dequantize costs more than int8 saves (onnxruntime: ~4x slower)
    assert slow, "expected at least one int8 artefact of LeNet-5 slower than its fp32"
    warned = {line.split()[1] for line in r.stderr.splitlines() if "int8 is slower than" in line}
    assert warned == slow
    assert all(f"deploy {fmt} fp32 on this target" in r.stderr for fmt in slow)
    assert len(m["bench"]["local-cpu"]["warnings"]) == len(slow)


def test_bench_json_and_a_second_bench_keeps_eval_and_earlier_results(run_dir, benched):
    r = run_cli("bench", run_dir, "--seconds", "0.2", "--no-torch", "--json")
    assert r.code == 0, r.stderr
    record = json.loads(r.stdout)
    assert {x["format"] for x in record["results"]} == set(FORMATS)  # --no-torch
    assert all(x["iters"] >= 10 for x in record["results"])  # a minimum even in a short budget
    m = read_manifest(run_dir)
    assert m["bench"]["local-cpu"]["settings"]["seconds"] == 0.2


def test_a_model_file_edgekit_did_not_make_with_a_dynamic_batch(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 4], np.ones(32, np.float32))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]),
                               helper.make_node("Relu", ["h"], ["y"])], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "mine.onnx")
    r = run_cli("bench", tmp_path / "mine.onnx", "--batch", "4", "--iters", "5", "--json")
    assert r.code == 0, r.stderr
    (row,) = json.loads(r.stdout)["results"]
    assert row["status"] == "ok" and row["input_shapes"] == [[4, 8]] and row["batch"] == 4
    assert row["throughput_per_s"] == pytest.approx(4 * 5 / row["timed_seconds"])
    assert not (tmp_path / "manifest.json").exists()  # a lone file: nothing written beside it


def test_broken_and_incomplete_files_are_clear_errors(tmp_path, run_dir):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    r = run_cli("bench", tmp_path / "junk.onnx", "--iters", "2")
    assert r.code == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("error:") == 1 and "onnx file: " in r.stderr
    xml = tmp_path / "model.xml"
    xml.write_bytes((run_dir / "openvino" / "model.int8.xml").read_bytes())
    r = run_cli("bench", xml)
    assert r.code == 2 and r.error_lines == ["error: model.bin is missing beside model.xml: an OpenVINO IR "
                                             "is the .xml and its .bin; put both in one folder"]
    r = run_cli("bench", tmp_path / "nothing-here")
    assert r.code == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_a_changed_artefact_is_refused_unless_accepted_and_the_others_still_run(tmp_path, run_dir):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    changed = copy / "onnx" / "model.int8.onnx"
    with open(changed, "ab") as f:
        f.write(b"\0")
    before = (copy / "manifest.json").read_bytes()
    r = run_cli("bench", copy, "--iters", "3", "--no-torch")
    assert r.code == 2 and len(r.error_lines) == 1  # before anything runs
    assert r.error_lines[0].startswith(f"error: {changed} changed since export (sha256 ")
    assert r.error_lines[0].endswith("; re-export or pass --accept-changed")
    assert (copy / "manifest.json").read_bytes() == before
    r = run_cli("bench", copy, "--iters", "3", "--no-torch", "--accept-changed")
    assert r.code == 1
    rows = {(x["format"], x["precision"]): x for x in read_manifest(copy)["bench"]["local-cpu"]["results"]}
    assert rows[("onnx", "int8")]["status"] == "failed" and rows[("onnx", "fp32")]["status"] == "ok"
    assert rows[("onnx", "int8")]["accepted_changed"]["path"] == "onnx/model.int8.onnx"


def test_local_gpu_without_a_gpu_says_so_and_changes_nothing(run_dir):
    # This machine has no GPU: onnxruntime offers only its CPU provider and OpenVINO only CPU.
    before = (run_dir / "manifest.json").read_bytes()
    r = run_cli("bench", run_dir, "--target", "local-gpu", "--iters", "2")
    assert r.code == 3 and "Traceback" not in r.stderr
    (line,) = r.error_lines
    assert line.startswith("error: no usable GPU for target local-gpu: ")
    assert "onnxruntime-gpu" in line and "--target local-cpu" in line
    assert (run_dir / "manifest.json").read_bytes() == before


def test_json_stays_json_when_a_format_is_skipped(tmp_path, run_dir):
    (tmp_path / "no-openvino.toml").write_text('connect = "local"\n[runtimes]\nopenvino = []\n')
    r = run_cli("bench", run_dir, "--target", "no-openvino", "--targets-dir", tmp_path, "--iters", "3",
                "--no-torch", "--json")
    assert r.code == 0, r.stderr
    rows = {(x["format"], x["precision"]): x["status"] for x in json.loads(r.stdout)["results"]}
    assert rows[("openvino", "int8")] == "skipped" and rows[("onnx", "int8")] == "ok"
    assert "skipped openvino int8: target no-openvino runs no openvino" in r.stderr


def test_targets_lists_builtin_and_user_profiles(tmp_path):
    (tmp_path / "my-board.toml").write_text(
        'description = "my board"\nconnect = "ssh"\nhost = "me@board"\nthreads = 2\n'
        '[runtimes]\ntflite = ["tflite-runtime"]\nonnx = []\nopenvino = []\n'
    )
    r = run_cli("targets", "--targets-dir", tmp_path, "--json")
    assert r.code == 0, r.stderr
    targets = {t["name"]: t for t in json.loads(r.stdout)}
    assert {"local-cpu", "local-gpu", "raspberrypi", "jetson", "my-board"} <= set(targets)
    assert targets["my-board"]["host"] == "me@board" and targets["raspberrypi"]["connect"] == "ssh"
    assert targets["local-gpu"]["accelerator"] is True
    (tmp_path / "bad.toml").write_text('connect = "ssh"\nssh_options = ["StrictHostKeyChecking=no"]\n')
    r = run_cli("targets", "--targets-dir", tmp_path)
    assert r.code == 2 and "turns host-key checking off" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("bench", tmp_path / "x.onnx", "--target", "raspbery")
    assert r.code == 2 and "did you mean 'raspberrypi'" in r.stderr
