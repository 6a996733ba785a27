"""`edgekit export` end to end: every model x format x {fp32, int8}, through the real CLI."""

from __future__ import annotations

import pytest

from edgekit.formats import default_names
from tests.conftest import read_manifest, run_cli

FORMATS = default_names()  # what `export` writes without --to
# Small real variants of each architecture keep the matrix fast; one full-size test runs below.
# lenet5 (trained), lstm and the tiny resnet50 are the session's shared runs (tests/conftest.py).
SMALL = {
    "vgg16": ["--width", "0.125", "--input-size", "32", "--num-classes", "10"],
    "googlenet": ["--width", "0.25", "--input-size", "64", "--num-classes", "10"],
}
SHARED = {"lenet5": "lenet5_run", "lstm": "lstm_run", "resnet50": "resnet_tiny_run"}


def check_run(run_dir, model: str, int8: bool = True) -> dict:
    m = read_manifest(run_dir)
    assert m["model"]["name"] == model
    arts = {(a["format"], a["precision"]): a for a in m["artefacts"]}
    assert set(arts) == {(f, p) for f in FORMATS for p in (("fp32", "int8") if int8 else ("fp32",))}
    for (fmt, precision), a in arts.items():
        assert a["status"] == "ok", (fmt, precision, a.get("error"))
        path = run_dir / a["path"]
        assert path.is_file() and path.stat().st_size == a["files"][0]["bytes"]
        v = a["verify"]
        assert v["samples"] >= 1
        if precision == "fp32":
            assert v["passed"] is True and v["max_abs_diff"] <= v["tolerance"]
        else:
            assert a["scheme"]["type"] in ("static", "dynamic", "weight-only")
            assert v["cosine"] > 0.9, (fmt, v)
            assert 0.0 <= v["top1_agreement"] <= 1.0
    for tool in ("torch", "onnx", "onnxruntime", "openvino", "nncf", "litert-torch", "ai-edge-litert"):
        assert m["tools"].get(tool), tool
    assert m["calibration"]["samples"] > 0 and len(m["calibration"]["sha256"]) == 64
    return m


@pytest.mark.parametrize("model", [*SHARED, *SMALL])
def test_every_model_exports_to_every_format_fp32_and_int8(tmp_path, request, model):
    if model in SHARED:
        built = request.getfixturevalue(SHARED[model])
        out, r = built.path, built.result
    else:
        out = tmp_path / "run"
        r = run_cli("export", model, "--int8", "--calib-size", "8", "--out", out, *SMALL[model])
    assert r.code == 0, r.stderr
    assert "Traceback" not in r.stderr
    m = check_run(out, model)
    if model == "lstm":  # static int8 does not fit an LSTM: the manifest says what was used
        schemes = {a["format"]: a["scheme"]["type"] for a in m["artefacts"] if a["precision"] == "int8"}
        assert schemes["onnx"] == "dynamic" and schemes["openvino"] == "weight-only"
        assert m["model"]["input"]["layout"] == "NTC"
    else:
        assert all(a["scheme"]["type"] == "static" for a in m["artefacts"] if a["precision"] == "int8")
        # static int8 artefacts are smaller than fp32 ones in every format (the LSTM's 5k weights
        # are too few for that: its files are mostly graph)
        size = {(a["format"], a["precision"]): a["bytes"] for a in m["artefacts"]}
        for fmt in FORMATS:
            assert size[(fmt, "int8")] < size[(fmt, "fp32")], fmt


@pytest.mark.slow
def test_full_size_resnet50_int8_to_all_formats(tmp_path):
    out = tmp_path / "rn50"
    r = run_cli("export", "resnet50", "--int8", "--out", out)
    assert r.code == 0, r.stderr
    m = check_run(out, "resnet50")
    assert m["model"]["parameters"] == 25_557_032
    assert m["model"]["input"]["shape"] == [1, 3, 224, 224]
    assert "random" in r.stderr  # no --weights: warned that accuracy means nothing
    int8 = [a for a in m["artefacts"] if a["precision"] == "int8"]
    assert all(a["bytes"] < 40e6 for a in int8)  # ~4x smaller than the 102 MB fp32 files
    # the table for all artefacts of a full-size run, each in its own process, PyTorch beside them
    r = run_cli("bench", out, "--iters", "3", "--warmup", "1")
    assert r.code == 0, r.stderr
    rows = {(x["format"], x["precision"]): x for x in read_manifest(out)["bench"]["local-cpu"]["results"]}
    assert len(rows) == 1 + 2 * len(FORMATS) and all(x["status"] == "ok" for x in rows.values())
    assert rows[("onnx", "fp32")]["peak_rss_bytes"] > 100e6  # the 102 MB model is in memory
    for fmt in FORMATS:
        assert f"│ {fmt}" in r.stdout
    # ExecuTorch: the whole of ResNet-50 runs on XNNPACK, fp32 and int8
    for a in m["artefacts"]:
        if a["format"] == "executorch":
            details = a["details"]
            assert details["delegated_share"] >= 0.95 and not details["portable_kernels"], details


USER_MODEL = '''
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, hidden, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.head(self.features(x))
'''


def test_user_model_from_a_python_file_with_weights(tmp_path):
    import torch

    src = tmp_path / "my_net.py"
    src.write_text(USER_MODEL)
    ns: dict = {}
    exec(compile(USER_MODEL, str(src), "exec"), ns)
    torch.manual_seed(3)
    net = ns["Net"](hidden=12)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    out = tmp_path / "run"
    r = run_cli("export", f"{src}:Net", "--input-shape", "1,1,28,28", "--model-args", '{"hidden": 12}',
                "--weights", tmp_path / "net.pt", "--int8", "--calib", "digits", "--out", out)
    assert r.code == 0, r.stderr
    assert "random" not in r.stderr
    m = check_run(out, f"{src}:Net")
    assert m["model"]["weights"]["sha256"] and m["model"]["input"]["shape"] == [1, 1, 28, 28]
    assert m["model"]["parameters"] == sum(p.numel() for p in net.parameters())


DET_MODEL = '''
import torch
import torch.nn as nn

class Det(nn.Module):
    """torch.linalg.det exports to ONNX but has no OpenVINO, litert-torch or ExecuTorch conversion."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(x.reshape(1, 16)) + torch.linalg.det(x).reshape(1, 1)
'''


def test_one_format_failing_keeps_the_others(tmp_path):
    import numpy as np

    (tmp_path / "det.py").write_text(DET_MODEL)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((12, 4, 4), dtype=np.float32))
    out = tmp_path / "run"
    r = run_cli("export", f"{tmp_path / 'det.py'}:Det", "--input-shape", "1,4,4",
                "--calib", tmp_path / "x.npy", "--out", out)
    assert r.code == 1, r.stderr
    assert "Traceback" not in r.stderr
    m = read_manifest(out)
    status = {a["format"]: a["status"] for a in m["artefacts"]}
    assert status == {"onnx": "ok", "openvino": "failed", "tflite": "failed", "executorch": "failed"}
    assert (out / "onnx" / "model.fp32.onnx").is_file()
    failed = [a for a in m["artefacts"] if a["status"] == "failed"]
    assert all(a["error"] for a in failed)
    assert "det" in next(a for a in failed if a["format"] == "tflite")["error"]
    assert "3 artefact(s) failed" in r.stderr
