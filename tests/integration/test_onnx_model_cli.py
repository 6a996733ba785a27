"""An ONNX file as the model, through the whole CLI: files exported here with torch.onnx from
public-style models (the CIFAR ResNet-20 layout at width 8 with batch 1, the same net with a
dynamic batch, an LSTM), each exported to ONNX and OpenVINO with int8 and verified against
onnxruntime running the file, then eval on real CIFAR-10 images, bench and gate; and the mistakes
a user makes with such files, each one line."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgekit.formats import default_names
from tests.conftest import REPO, read_manifest, run_cli

CIFAR = REPO.parent / "shared" / "data" / "cifar10"
CIFAR_PRE = ["--mean", "0.4914,0.4822,0.4465", "--std", "0.247,0.243,0.261", "--resize", "squash"]
needs_cifar = pytest.mark.skipif(not CIFAR.is_dir(), reason="CIFAR-10 images are in ../shared/data")


def _export_onnx(module, example, path, dynamic: dict | None = None) -> None:
    import torch

    with torch.no_grad():
        torch.onnx.export(module.eval(), (example,), str(path), input_names=["images"],
                          output_names=["logits"], dynamic_shapes=(dynamic,) if dynamic else None,
                          dynamo=True, external_data=False, verbose=False)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    """resnet20.onnx (batch fixed at 1), resnet_dyn.onnx (symbolic batch), lstm.onnx (symbolic batch
    and sequence length): a user's files, made once."""
    import torch
    import torch.nn as nn

    sys.path.insert(0, str(REPO / "tests" / "data" / "user_models"))
    try:
        from cifar_resnet import BasicBlock, ResNet
    finally:
        sys.path.pop(0)
    folder = tmp_path_factory.mktemp("onnx_files")
    torch.manual_seed(0)
    _export_onnx(ResNet(BasicBlock, [3, 3, 3], width=8), torch.rand(1, 3, 32, 32), folder / "resnet20.onnx")
    _export_onnx(ResNet(BasicBlock, [1, 1, 1], width=8), torch.rand(2, 3, 32, 32), folder / "resnet_dyn.onnx",
                 {0: torch.export.Dim("batch")})

    class Tagger(nn.Module):  # a sequence tagger: (batch, time, 8) -> (batch, time, 5)
        def __init__(self):
            super().__init__()
            self.lstm, self.head = nn.LSTM(8, 16, batch_first=True), nn.Linear(16, 5)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    _export_onnx(Tagger(), torch.rand(2, 6, 8), folder / "lstm.onnx",
                 {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")})
    return folder


def _check_artefacts(m: dict) -> dict:
    got = {(a["format"], a["precision"]): a for a in m["artefacts"]}
    assert set(got) == {(f, p) for f in ("onnx", "openvino") for p in ("fp32", "int8")}
    for (fmt, precision), a in got.items():
        assert a["status"] == "ok", (fmt, precision, a.get("error"))
        if precision == "fp32":
            v = a["verify"]
            assert v["passed"] and v["max_abs_diff"] <= v["tolerance"], (fmt, v)
        else:
            assert a["verify"]["top1_agreement"] >= 0.5 and a["verify"]["sqnr_db"] > 10, (fmt, a["verify"])
    return got


@pytest.fixture(scope="module")
def resnet_run(onnx_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("resnet") / "run"
    calib = ["--calib", CIFAR / "train"] if CIFAR.is_dir() else []
    r = run_cli("export", onnx_files / "resnet20.onnx", "--int8", "--calib-size", "16", *calib, *CIFAR_PRE,
                "--out", out)
    return r, out


def test_an_onnx_file_exports_to_onnx_and_openvino_verified_against_itself(resnet_run, onnx_files):
    r, out = resnet_run
    assert r.code == 0, r.stderr
    assert "tflite and executorch skipped: they need the PyTorch model" in r.stdout + r.stderr
    m = read_manifest(out)
    got = _check_artefacts(m)
    source = onnx_files / "resnet20.onnx"
    assert (out / got[("onnx", "fp32")]["path"]).read_bytes() == source.read_bytes()  # the file itself
    assert got[("onnx", "int8")]["scheme"]["type"] == "static"
    model = m["model"]
    assert model["weights"]["path"] == str(source) and model["weights"]["format"] == "onnx"
    assert model["macs"] is None and model["parameters"] > 10_000 and model["num_classes"] == 10
    assert model["input"]["shape"] == [1, 3, 32, 32] and model["preprocessing"]["kind"] == "image"
    assert m["settings"]["formats"] == ["onnx", "openvino"]


@needs_cifar
def test_eval_bench_and_gate_rebuild_the_onnx_model(resnet_run):
    _, out = resnet_run
    r = run_cli("eval", out, "--dataset", CIFAR / "test", "--split", "all", "--limit", "32", "--json")
    assert r.code == 0, r.stderr
    result = read_manifest(out)["eval"]
    assert result["samples"] == 32
    rows = {(x["format"], x["precision"]): x for x in result["results"] if x["status"] == "ok"}
    artefacts = {(f, p) for f in ("onnx", "openvino") for p in ("fp32", "int8")}
    assert set(rows) == {("pytorch", "fp32")} | artefacts
    assert rows[("onnx", "fp32")]["top1"] == rows[("pytorch", "fp32")]["top1"]  # the same file
    r = run_cli("bench", out, "--iters", "3", "--warmup", "1")
    assert r.code == 0, r.stderr
    results = read_manifest(out)["bench"]["local-cpu"]["results"]
    assert results[0]["format"] == "pytorch" and results[0]["runtime"] == "onnxruntime (source file)"
    assert all(x["status"] == "ok" and x["p50_ms"] > 0 for x in results)
    r = run_cli("gate", out, "--max-drop", "10", "--min-agreement", "0.5")
    assert r.code == 0, r.stdout + r.stderr
    assert "edgekit gate: PASSED" in r.stdout


def test_a_dynamic_batch_file_keeps_its_batch_dynamic(onnx_files, tmp_path):
    out = tmp_path / "run"
    r = run_cli("export", onnx_files / "resnet_dyn.onnx", "--int8", "--dynamic-batch", "--calib-size", "8",
                "--out", out)
    assert r.code == 0, r.stderr
    got = _check_artefacts(read_manifest(out))
    for fmt in ("onnx", "openvino"):
        fp32 = got[(fmt, "fp32")]
        assert fp32["dynamic_batch"] and fp32["input_shape"] == ["batch", 3, 32, 32], fp32
    r = run_cli("bench", out, "--iters", "3", "--warmup", "1", "--batch", "4", "--no-torch")
    assert r.code == 0, r.stderr
    results = read_manifest(out)["bench"]["local-cpu"]["results"]
    assert {x["batch"] for x in results} == {4} and all(x["status"] == "ok" for x in results)


def test_an_lstm_file_with_a_pinned_sequence_gets_dynamic_int8(onnx_files, tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((24, 6, 8), dtype=np.float32))
    out = tmp_path / "run"
    r = run_cli("export", onnx_files / "lstm.onnx", "--input-shape", "1,6,8", "--int8", "--calib", calib,
                "--out", out)
    assert r.code == 0, r.stderr
    m = read_manifest(out)
    got = _check_artefacts(m)
    assert m["model"]["task"] == "sequence" and m["model"]["input"]["shape"] == [1, 6, 8]
    assert got[("onnx", "int8")]["scheme"]["type"] == "dynamic"  # LSTM nodes: int8 at run time, as for ours


def _one_error(r, code: int = 2) -> str:
    assert r.code == code and "Traceback" not in r.stderr, r.stdout + r.stderr
    (line,) = r.error_lines
    return line


def test_mistakes_with_onnx_files_are_one_line_each(onnx_files, tmp_path):
    r = run_cli("export", onnx_files / "resnet_dyn.onnx", "--to", "onnx,tflite", "--out", tmp_path / "r1")
    assert "tflite needs the PyTorch model; an ONNX file exports to onnx and openvino" in _one_error(r)
    assert not (tmp_path / "r1").exists()
    every = ",".join(default_names())  # named by the user, not the default: refused, not narrowed
    r = run_cli("export", onnx_files / "resnet_dyn.onnx", "--to", every, "--out", tmp_path / "r1")
    assert "need the PyTorch model" in _one_error(r) and not (tmp_path / "r1").exists()
    r = run_cli("export", onnx_files / "lstm.onnx", "--to", "onnx", "--out", tmp_path / "r2")
    line = _one_error(r)
    assert "2 dynamic dimensions" in line and "seq (axis 1)" in line and "--input-shape 1,<seq>,8" in line
    r = run_cli("export", onnx_files / "lstm.onnx", "--input-shape", "1,6,9", "--to", "onnx", "--out",
                tmp_path / "r3")
    assert "--input-shape 1,6,9 does not fit lstm.onnx's input" in _one_error(r)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes((onnx_files / "resnet_dyn.onnx").read_bytes()[:5000])
    r = run_cli("export", corrupt, "--to", "onnx", "--out", tmp_path / "r4")
    assert "is not a valid ONNX model" in _one_error(r)
    r = run_cli("export", onnx_files / "resnet_dyn.onnx", "--weights", corrupt, "--out", tmp_path / "r5")
    assert "holds its own weights" in _one_error(r)
    assert not any((tmp_path / f"r{i}").exists() for i in range(2, 6))
    r = run_cli("prune", onnx_files / "resnet_dyn.onnx", "--ratio", "0.5", cwd=tmp_path)  # no PyTorch model
    assert "pruning needs the PyTorch model" in _one_error(r)
    assert not (tmp_path / "checkpoints").exists()


def test_eval_refuses_a_run_whose_onnx_file_changed(onnx_files, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes((onnx_files / "resnet_dyn.onnx").read_bytes())
    out = tmp_path / "run"
    r = run_cli("export", model, "--to", "onnx", "--out", out)
    assert r.code == 0, r.stderr
    model.write_bytes((onnx_files / "resnet20.onnx").read_bytes())  # the user re-exported their model
    r = run_cli("eval", out, "--dataset", "shapes", "--limit", "8")
    assert "model.onnx changed since the export (sha256 differs)" in _one_error(r)
    model.unlink()
    r = run_cli("eval", out, "--dataset", "shapes", "--limit", "8")
    assert "model.onnx is gone" in _one_error(r)
