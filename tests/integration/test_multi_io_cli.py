"""A model with two inputs and two outputs through the whole CLI: ``--input-shape`` once per input,
calibration and eval from one .npz with an array per input, every output verified one by one, eval
scoring the first output, bench timing every artefact with both inputs."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.formats import default_names
from tests.conftest import REPO, read_manifest, run_cli

TWO_IO = f"{REPO / 'tests' / 'data' / 'user_models' / 'two_io.py'}:TwoTower"
SHAPES = ["--input-shape", "1,3,16,16", "--input-shape", "1,6"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """200 samples: images, side features and labels; the labels follow the side features, so a
    trained model would learn them (here the point is that every format computes the same)."""
    folder = tmp_path_factory.mktemp("two_io")
    rng = np.random.default_rng(0)
    image = rng.random((200, 3, 16, 16), dtype=np.float32)
    side = rng.normal(size=(200, 6)).astype(np.float32)
    y = (np.abs(side[:, :2]).sum(1) * 3).astype(np.int64) % 10
    np.savez(folder / "data.npz", image=image, side=side, y=y)
    np.savez(folder / "wrong.npz", image=image, extra=side)
    return folder


@pytest.fixture(scope="module")
def two_io_run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("run") / "run"
    r = run_cli("export", TWO_IO, *SHAPES, "--int8", "--calib", data / "data.npz", "--calib-size", "64",
                "--out", out)
    return r, out


def test_both_inputs_and_outputs_in_every_format(two_io_run):
    r, out = two_io_run
    assert r.code == 0, r.stderr
    m = read_manifest(out)
    assert [i["name"] for i in m["model"]["inputs"]] == ["image", "side"]
    assert m["model"]["outputs"] == ["output0", "output1"]
    assert m["model"]["options"]["input_shape"] == [[1, 3, 16, 16], [1, 6]]
    got = {(a["format"], a["precision"]): a for a in m["artefacts"]}
    assert set(got) == {(f, p) for f in default_names() for p in ("fp32", "int8")}
    for (fmt, precision), a in got.items():
        assert a["status"] == "ok", (fmt, precision, a.get("error"))
        outputs = a["verify"]["outputs"]
        assert len(outputs) == 2, (fmt, precision)  # each output verified on its own
        if precision == "fp32":
            assert a["verify"]["passed"] and all(o["passed"] for o in outputs), (fmt, outputs)
        elif fmt == "openvino":
            # NNCF's default activation ranges average each sample's extremes, which clips the
            # 6-value side input (10-15 dB here, whatever the sample count; its "histogram" method,
            # which --max-drop tries, gets 43 dB). Recorded, not hidden: still clearly correlated.
            assert all(o["sqnr_db"] > 6 and o["cosine"] > 0.9 for o in outputs), (fmt, outputs)
        else:
            assert all(o["sqnr_db"] > 15 and o["cosine"] > 0.99 for o in outputs), (fmt, precision, outputs)


def test_eval_scores_the_first_output_and_bench_times_every_artefact(two_io_run, data):
    _, out = two_io_run
    r = run_cli("eval", out, "--dataset", data / "data.npz", "--split", "all", "--json")
    assert r.code == 0, r.stderr
    result = read_manifest(out)["eval"]
    assert result["samples"] == 200
    rows = {(x["format"], x["precision"]): x for x in result["results"] if x["status"] == "ok"}
    assert len(rows) == 1 + 2 * len(default_names())
    for key, row in rows.items():
        if key[1] == "fp32":
            assert row["agreement"] >= 0.995, (key, row)
    r = run_cli("bench", out, "--iters", "3", "--warmup", "1")
    assert r.code == 0, r.stderr
    results = read_manifest(out)["bench"]["local-cpu"]["results"]
    assert {x["status"] for x in results} == {"ok"}, results
    onnx = next(x for x in results if x["format"] == "onnx")
    assert sorted(map(tuple, onnx["input_shapes"])) == [(1, 3, 16, 16), (1, 6)]


@pytest.mark.parametrize(("extra", "message"), [
    (["--calib", "wrong.npz"], "no array named side"),
    (["--calib", "data.npz", "--batch-axis", "1"], "with several inputs the batch must be first"),
    (["--input-shape", "1,7", "--calib", "data.npz"], "fails on inputs of shape"),
    ([], "no built-in calibration data fits a model with several inputs"),
])
def test_mistakes_are_one_line(tmp_path, data, extra, message):
    out = tmp_path / "run"
    shapes = SHAPES[:2] if "1,7" in extra else SHAPES
    extra = [str(data / e) if e.endswith(".npz") else e for e in extra]
    r = run_cli("export", TWO_IO, *shapes, "--int8", "--to", "onnx", *extra, "--out", out)
    assert r.code != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()
