"""A model with two inputs and two outputs (tests/data/user_models/two_io.py: an image and side
features in, logits and a regression out) through the four formats, in their real runtimes: each
output against PyTorch, int8 with each tensor's own scale, the artefacts' names, the bench runner."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.bench.runner import __file__ as RUNNER
from edgekit.devices.base import parse_result
from edgekit.export.verify import run_session
from edgekit.formats import format_class, get_format
from edgekit.formats.base import Int8Options
from edgekit.models.spec import InputSpec, LoadedModel, Preprocessing

FORMATS = ["onnx", "openvino", "tflite", "executorch"]
NAMED = ["onnx", "openvino"]  # the formats whose artefacts carry the names
INPUTS, OUTPUTS = ["image", "side"], ["logits", "regression"]
# 16 samples of a 6-value input leave the hidden layers' held-out extremes outside the calibrated
# ranges (16 to 20 dB); 64 cover them (about 40 dB), so a wrong scale on any one tensor shows.
CALIB = 64


@pytest.fixture(scope="module")
def two_io():
    path = Path(__file__).parents[1] / "data" / "user_models" / "two_io.py"
    spec = importlib.util.spec_from_file_location("two_io_model", path)
    source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source)
    torch.manual_seed(0)
    module = source.TwoTower().eval()
    return LoadedModel(
        name="two_io.py:TwoTower", module=module, task="classification",
        input_spec=InputSpec((1, 3, 16, 16), name="image"), preprocessing=Preprocessing(kind="none"),
        num_classes=10, options={}, params=sum(p.numel() for p in module.parameters()), macs=0,
        weights=None, builtin_calibration=None,
        extra_inputs=(InputSpec((1, 6), layout="NC", name="side"),), output_names=tuple(OUTPUTS),
    )


def _samples(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # bounded, so that the calibration samples cover the range of the held-out ones
    return rng.random((n, 3, 16, 16), dtype=np.float32), rng.uniform(-4, 4, (n, 6)).astype(np.float32)


def _reference(model, x: tuple) -> tuple:
    with torch.no_grad():
        return tuple(y.numpy() for y in model.module(*(torch.from_numpy(a) for a in x)))


def _sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - got) ** 2), 1e-30)))


def _names(fmt: str, path: Path) -> tuple[list[str], list[str]]:
    if fmt == "onnx":
        import onnx

        graph = onnx.load(str(path)).graph
        weights = {t.name for t in graph.initializer}
        return [i.name for i in graph.input if i.name not in weights], [o.name for o in graph.output]
    import openvino as ov

    ir = ov.Core().read_model(str(path))
    return [p.any_name for p in ir.inputs], [p.any_name for p in ir.outputs]


def _bench(path: Path, fmt: str, batch: int = 1) -> dict:
    """The device runner, standalone in its own process as on a device, timing the artefact."""
    from edgekit.bench.core import runner_spec

    spec = {"path": str(path), "format": fmt, "iters": 3, "warmup": 0, "batch": batch, **runner_spec(fmt)}
    done = subprocess.run([sys.executable, RUNNER, "-"], input=json.dumps(spec), capture_output=True,
                          text=True, timeout=300)
    return parse_result(done.stdout, done.stderr, done.returncode, "here")


# The tests that export to OpenVINO come before the first TFLite export: NNCF and OpenVINO's
# converter fork, which JAX (loaded by litert-torch) warns may deadlock.


class Artefacts(dict):
    """fp32 and int8 artefacts of each format, exported once on first use."""

    def __init__(self, model, tmp_path_factory):
        super().__init__()
        self.model, self.tmp = model, tmp_path_factory

    def __missing__(self, name: str):
        fmt, folder = get_format(name), self.tmp.mktemp(name)
        fp32 = fmt.export_fp32(self.model, folder / f"m.fp32{fmt.extension}")
        int8 = fmt.export_int8(self.model, fp32, _samples(CALIB, seed=0), folder / f"m.int8{fmt.extension}")
        # NNCF's default activation ranges are the mean over samples of each sample's extremes,
        # which clips an input of 6 values per sample (11 and 14.5 dB here, even with 64 samples);
        # its histogram method, one of the remedies --max-drop tries, takes the whole range (43 dB).
        good = int8 if name != "openvino" else fmt.export_int8(
            self.model, fp32, _samples(CALIB, seed=0), folder / "h.xml", Int8Options("histogram"))
        self[name] = (fp32, int8, good)
        return self[name]


@pytest.fixture(scope="module")
def artefacts(two_io, tmp_path_factory):
    return Artefacts(two_io, tmp_path_factory)


@pytest.mark.parametrize("dynamic", [False, True])
def test_an_onnx_file_with_two_inputs_is_a_model(two_io, tmp_path, dynamic):
    """The TwoTower's ONNX file as the model: inputs and outputs named from its graph, onnxruntime
    running the file as the reference, and ONNX and OpenVINO artefacts made from the file."""
    from edgekit.formats.base import ExportJob
    from edgekit.models.onnx_file import load_onnx_model

    source = get_format("onnx", ExportJob(dynamic_batch=dynamic))
    path = source.export_fp32(two_io, tmp_path / "user.onnx")
    model = load_onnx_model(str(path))
    assert [(s.name, s.shape) for s in model.inputs] == [("image", (1, 3, 16, 16)), ("side", (1, 6))]
    assert model.output_names == tuple(OUTPUTS) and model.module.dynamic_batch == dynamic
    x = _samples(3, seed=4)
    expected = _reference(two_io, x)
    for r, g in zip(expected, _reference(model, x)):  # batch 3, one sample at a time where fixed
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
    for name in NAMED:
        fmt = get_format(name)
        fp32 = fmt.export_fp32(model, tmp_path / f"m{fmt.extension}")
        for r, g in zip(expected, run_session(fmt.open_exact(fp32), x)):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
        int8 = fmt.export_int8(model, fp32, _samples(16, seed=0), tmp_path / f"q{fmt.extension}")
        assert _names(name, int8.path) == (INPUTS, OUTPUTS) and int8.scheme["calibration_samples"] == 16


@pytest.mark.parametrize("name", ["onnx", "openvino", "executorch"])  # TFLite keeps batch 1
def test_dynamic_batch_runs_a_batch_of_three(two_io, tmp_path, name):
    job, notes = format_class(name).job_for(dynamic_batch=True)
    assert notes == [] and job.dynamic_batch
    fmt, x = get_format(name, job), _samples(3, seed=3)
    path = fmt.export_fp32(two_io, tmp_path / f"m{fmt.extension}")
    session = fmt.open_exact(path)
    info = session.input_info()
    assert info["dynamic_batch"] and [i["shape"][1:] for i in info["inputs"]] == [[3, 16, 16], [6]]
    if name in NAMED:
        assert [i["name"] for i in info["inputs"]] == INPUTS
    for r, g in zip(_reference(two_io, x), session.run(x)):  # all three at once
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
    result = _bench(path, name, batch=3)
    assert result["status"] == "ok" and sorted(result["input_shapes"]) == [[3, 3, 16, 16], [3, 6]], result


@pytest.mark.parametrize("name", FORMATS)
def test_fp32_gives_every_output_as_pytorch(two_io, artefacts, name):
    fmt, x = get_format(name), _samples(5, seed=1)
    got = run_session(fmt.open_exact(artefacts[name][0]), x)  # one sample at a time, as verify
    ref = _reference(two_io, x)
    assert isinstance(got, tuple) and [g.shape for g in got] == [(5, 10), (5, 3)]
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", FORMATS)
def test_int8_keeps_every_output_close_and_static(two_io, artefacts, name):
    fmt, x = get_format(name), _samples(8, seed=2)
    result = artefacts[name][1]
    assert result.scheme["type"] == "static" and result.scheme["calibration_samples"] == CALIB
    if name in NAMED:
        assert _names(name, artefacts[name][0]) == (INPUTS, OUTPUTS)
        assert _names(name, result.path) == (INPUTS, OUTPUTS)
    got = run_session(fmt.open(artefacts[name][2].path), x)  # OpenVINO: the histogram method
    sqnr = [_sqnr_db(r, g) for r, g in zip(_reference(two_io, x), got)]
    assert len(sqnr) == 2 and min(sqnr) > 30, sqnr  # about 40 dB in every format


def test_tflite_int8_quantizes_each_tensor_with_its_own_scale(artefacts):
    session = get_format("tflite").open(artefacts["tflite"][1].path)
    ins, outs = session.input_details, session.output_details
    assert [np.dtype(d["dtype"]) for d in ins + outs] == [np.int8] * 4
    assert [tuple(d["shape"]) for d in ins] == [(1, 3, 16, 16), (1, 6)]  # matched to the model's order
    assert [tuple(d["shape"]) for d in outs] == [(1, 10), (1, 3)]
    assert ins[0]["quantization"][0] != ins[1]["quantization"][0]  # image in [0, 1), side in [-4, 4)


@pytest.mark.parametrize("name", FORMATS)
def test_the_bench_runner_times_both_inputs(artefacts, name):
    for path in (artefacts[name][0], artefacts[name][1].path):
        result = _bench(path, name)
        assert result["status"] == "ok", result
        assert result["iters"] == 3 and sorted(result["input_shapes"]) == [[1, 3, 16, 16], [1, 6]]

