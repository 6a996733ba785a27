"""A model whose batch is not first (PyTorch's default seq-first LSTM) through the whole CLI:
``--input-shape 28,1,28 --batch-axis 1``; calibration, verification and eval stack samples on axis 1,
every artefact keeps the model's own (time, batch, features) input, and eval on real MNIST digits
gives the same accuracy in every format."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from edgekit.formats import default_names
from tests.conftest import REPO, read_manifest, run_cli

SEQ_MODEL = REPO / "tests" / "data" / "user_models" / "seq_lstm.py"
MNIST = REPO.parent / "shared" / "data" / "mnist"

pytestmark = pytest.mark.skipif(not MNIST.is_dir(), reason="the MNIST test set is in ../shared/data")


def _idx(name: str) -> np.ndarray:
    with gzip.open(MNIST / name) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """600 real MNIST test digits as rows: x (N, 28, 28) in [0, 1], y (N,)."""
    folder = tmp_path_factory.mktemp("mnist")
    x = _idx("t10k-images-idx3-ubyte.gz")[:600].astype(np.float32) / 255.0
    y = _idx("t10k-labels-idx1-ubyte.gz")[:600].astype(np.int64)
    np.savez(folder / "rows.npz", x=x, y=y)
    np.save(folder / "rows.npy", x)  # inputs only: calibration for a model with per-step outputs
    return folder / "rows.npz"


@pytest.fixture(scope="module")
def seq_run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("seq") / "run"
    r = run_cli("export", f"{SEQ_MODEL}:RowLSTM", "--input-shape", "28,1,28", "--batch-axis", "1", "--int8",
                "--calib", digits, "--calib-size", "16", "--out", out)
    return r, out


def test_a_seq_first_lstm_exports_to_every_format_in_its_own_layout(seq_run):
    r, out = seq_run
    assert r.code == 0, r.stderr
    m = read_manifest(out)
    assert m["model"]["input"] == {"shape": [28, 1, 28], "dtype": "float32", "layout": "TNC", "batch_axis": 1}
    assert m["model"]["task"] == "classification" and m["model"]["num_classes"] == 10
    got = {(a["format"], a["precision"]): a for a in m["artefacts"]}
    assert set(got) == {(f, p) for f in default_names() for p in ("fp32", "int8")}
    for (fmt, precision), a in got.items():
        assert a["status"] == "ok", (fmt, precision, a.get("error"))
        assert a["input_shape"] == [28, 1, 28], (fmt, precision, a["input_shape"])  # not batch-first
        if precision == "fp32":
            assert a["verify"]["passed"], (fmt, a["verify"])
        else:
            assert a["verify"]["top1_agreement"] >= 0.5 and a["verify"]["sqnr_db"] > 10, (fmt, a["verify"])


def test_eval_on_real_digits_and_bench(seq_run, digits):
    _, out = seq_run
    r = run_cli("eval", out, "--dataset", digits, "--split", "all", "--json")
    assert r.code == 0, r.stderr
    result = read_manifest(out)["eval"]
    assert result["samples"] == 600
    rows = {(x["format"], x["precision"]): x for x in result["results"] if x["status"] == "ok"}
    assert set(rows) == {("pytorch", "fp32")} | {(f, p) for f in default_names() for p in ("fp32", "int8")}
    for key, row in rows.items():  # fp32 artefacts predict exactly what PyTorch predicts
        if key[1] == "fp32":
            assert row["agreement"] >= 0.995, (key, row)
    r = run_cli("bench", out, "--iters", "3", "--warmup", "1", "--json")
    assert r.code == 0, r.stderr
    results = read_manifest(out)["bench"]["local-cpu"]["results"]
    assert {x["status"] for x in results} == {"ok"}, results
    onnx = next(x for x in results if x["format"] == "onnx")
    assert onnx["input_shapes"] == [[28, 1, 28]]
    r = run_cli("bench", out, "--batch", "4")
    assert r.code == 2 and "--batch 1" in r.stderr and "Traceback" not in r.stderr


def test_per_time_step_outputs_with_the_batch_second(tmp_path, digits):
    """(time, batch, classes) out: found by running batch 1 and 2; a sequence task."""
    out = tmp_path / "run"
    r = run_cli("export", f"{SEQ_MODEL}:RowTagger", "--input-shape", "28,1,28", "--batch-axis", "1",
                "--to", "onnx,openvino", "--calib", digits.with_suffix(".npy"), "--out", out)
    assert r.code == 0, r.stderr
    m = read_manifest(out)
    assert m["model"]["task"] == "sequence" and m["model"]["output_batch_axis"] == 1
    assert all(a["verify"]["passed"] for a in m["artefacts"]), m["artefacts"]


@pytest.mark.parametrize(("args", "message"), [
    (["--input-shape", "28,1,28", "--batch-axis", "3"], "--batch-axis 3 is out of range"),
    (["--input-shape", "28,1,28"], "say where with --batch-axis"),
    (["--input-shape", "28,1,28", "--batch-axis", "1", "--dynamic-batch"], "without --dynamic-batch"),
])
def test_batch_axis_mistakes_are_one_line(tmp_path, args, message):
    out = tmp_path / "run"
    r = run_cli("export", f"{SEQ_MODEL}:RowLSTM", *args, "--to", "onnx", "--out", out)
    assert r.code == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


def test_a_zoo_model_refuses_batch_axis(tmp_path):
    r = run_cli("export", "lenet5", "--batch-axis", "1", "--to", "onnx", "--out", tmp_path / "run")
    assert r.code == 2 and "--batch-axis is for models from a file" in r.stderr
