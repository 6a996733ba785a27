"""int8 that is what it says (issue 22): every int8 artefact's share of 8-bit weights is read back
from its file; a user's recurrent layers get int8 that really stores them in 8 bits; an artefact
that int8 broke fails and is kept aside; one whose weights are partly float says so."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.formats import default_names, get_format
from tests.conftest import REPO, read_manifest, run_cli

MODELS = REPO / "tests" / "models.py"


def _by_key(manifest: dict) -> dict:
    return {(a["format"], a["precision"]): a for a in manifest["artefacts"]}


def test_every_int8_artefact_of_lenet5_reads_back_as_int8(lenet5_run):
    m = read_manifest(lenet5_run.path)
    assert m["verification"]["samples"] == 64
    assert m["model"]["int8"] == {"static": True, "recurrent_layers": []}
    for (fmt, precision), a in _by_key(m).items():
        if precision == "fp32":
            assert "int8_share" not in a
            continue
        share = a["int8_share"]
        assert share["label"] == "int8" and share["weights"] >= 0.99, (fmt, share)
        assert share["weight_values"]["int8"] >= 61_000, (fmt, share)  # LeNet-5's conv and fc weights
        assert share["ops"] >= 0.8, (fmt, share)
        assert a["verify"]["samples"] == 64 and a["verify"]["passed"] is True
        # the fp32 file, read the same way, has no int8 weight: the count comes from the file
        fp32 = get_format(fmt).int8_share(lenet5_run.path / _by_key(m)[(fmt, "fp32")]["path"])
        assert fp32.int8_values == 0 and fp32.float_values >= 61_000
    assert lenet5_run.result.stdout.count("100% of weights int8") >= 3, lenet5_run.result.stdout


@pytest.fixture(scope="module")
def calib_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("calib") / "seq.npz"
    np.savez(path, x=rng.random((96, 6, 8), dtype=np.float32))
    return path


@pytest.mark.parametrize("model, shape, formats", [
    ("SeqFirstLSTM", ["--input-shape", "6,1,8", "--batch-axis", "1"], default_names()),
    ("ConvBiGRU", ["--input-shape", "1,1,6,8"], ("onnx", "openvino", "tflite")),
])
def test_a_users_recurrent_layers_get_int8_weights_in_every_format(tmp_path, calib_npz, model, shape,
                                                                   formats):
    data = calib_npz
    if model == "ConvBiGRU":
        data = tmp_path / "maps.npz"
        np.savez(data, x=np.load(calib_npz)["x"][:, None])
    out = tmp_path / "run"
    r = run_cli("export", f"{MODELS}:{model}", *shape, "--int8", "--calib", data, "--calib-size", "16",
                "--to", ",".join(formats), "--out", out)
    assert r.code == 0, r.stdout + r.stderr
    m = read_manifest(out)
    plan = m["model"]["int8"]
    assert plan["static"] is False and plan["recurrent_layers"], plan
    assert ("rnn (LSTM, 2 layers)" if model == "SeqFirstLSTM" else "encoder.gru (GRU, bidirectional)") \
        in plan["recurrent_layers"]
    got = _by_key(m)
    for fmt in formats:
        a = got[(fmt, "int8")]
        assert a["status"] == "ok", (fmt, a.get("error"))
        assert a["scheme"]["type"] in ("dynamic", "weight-only") and "recurrent" in a["scheme"]["why"]
        share = a["int8_share"]
        assert share["label"] == "int8" and share["weights"] >= 0.9, (fmt, share)
        assert a["bytes"] < got[(fmt, "fp32")]["bytes"], fmt
    assert "partly" not in r.stdout


def test_int8_that_breaks_the_model_fails_and_is_kept_aside(tmp_path):
    calib = tmp_path / "u.npy"
    np.save(calib, np.random.default_rng(0).random((100, 16), dtype=np.float32))
    out = tmp_path / "run"
    r = run_cli("export", f"{MODELS}:OutlierChannel", "--input-shape", "1,16", "--int8", "--calib", calib,
                "--calib-size", "16", "--to", "onnx,openvino", "--out", out)
    assert r.code == 1, r.stdout + r.stderr
    for fmt, ext in (("onnx", ".onnx"), ("openvino", ".xml")):
        line = next(x for x in r.stderr.splitlines() if x.startswith(f"FAILED {fmt} int8"))
        assert "int8 broke the model on 64 held-out samples" in line and "--max-drop" in line, line
        assert f"rejected/{fmt}/" in line and f"inspect RUN --formats {fmt}" in line, line
        assert not (out / fmt / f"model.int8{ext}").exists()  # not in place ...
        assert (out / "rejected" / fmt / f"model.int8{ext}").is_file()  # ... but kept for inspection
        assert f"ok {fmt:<8} fp32" in r.stdout
    entry = _by_key(read_manifest(out))[("onnx", "int8")]
    assert entry["status"] == "failed" and entry["verify"]["passed"] is False
    assert entry["verify"]["top1_agreement"] < 0.9
    assert entry["kept"]["path"] == "rejected/onnx/model.int8.onnx"
    shown = run_cli("inspect", out, "--formats", "onnx")
    assert shown.code == 0 and "fc2" in shown.stdout, shown.stdout + shown.stderr


def test_an_artefact_with_mostly_float_weights_is_called_partly_int8(tmp_path):
    out = tmp_path / "run"
    calib = tmp_path / "maps.npy"
    np.save(calib, np.random.default_rng(0).random((80, 1, 32, 32), dtype=np.float32))
    r = run_cli("export", f"{MODELS}:FloatMask", "--input-shape", "1,1,32,32", "--int8", "--calib", calib,
                "--calib-size", "16", "--to", "onnx", "--out", out)
    assert r.code == 0, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("ok onnx") and "MB" in x and "fp32" not in x)
    assert "partly int8 (67% of weights)" in line, line
    share = _by_key(read_manifest(out))[("onnx", "int8")]["int8_share"]
    assert share["weight_values"] == {"int8": 2048, "float": 1024, "other": 0}
