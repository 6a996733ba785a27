"""ExecuTorch format on small real models: torch.export + XNNPACK lowering, PT2E int8, the .pte run
in ExecuTorch's own Python runtime, and the delegation record that flags slow portable kernels."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgekit.errors import DataError, UsageError
from edgekit.export.verify import compare, reference_outputs, run_session
from edgekit.formats import get_format
from edgekit.formats.base import Int8Options
from tests.conftest import loaded_model as loaded
from tests.models import Cumsum

pytest.importorskip("executorch.runtime")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.features(x))


class SeqLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(7, 32, batch_first=True)
        self.fc = nn.Linear(32, 7)

    def forward(self, x):
        return self.fc(self.lstm(x)[0])


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    torch.manual_seed(0)
    model = loaded(Net(), (1, 3, 32, 32))
    fmt = get_format("executorch")
    folder = tmp_path_factory.mktemp("et")
    x = np.random.default_rng(0).random((24, 3, 32, 32), dtype=np.float32)
    fp32 = fmt.export_fp32(model, folder / "model.fp32.pte")
    fp32_details = fmt.details(fp32)
    result = fmt.export_int8(model, fp32, x[:16], folder / "model.int8.pte")
    return model, fmt, fp32, fp32_details, result, x[16:]


def test_fp32_pte_matches_pytorch_and_everything_runs_on_xnnpack(cnn):
    model, fmt, fp32, details, _, held = cnn
    ref = reference_outputs(model.module, held)
    check = compare(ref, run_session(fmt.open_exact(fp32), held), judge=True)
    assert check.passed, check
    assert details["delegated_share"] == 1.0 and details["portable_kernels"] == {}
    assert details["delegated_ops"] >= 8 and details["delegate_calls"] == 1
    assert details["summary"].startswith("XNNPACK runs 100% of")


def test_static_int8_is_smaller_and_close(cnn):
    model, fmt, fp32, _, result, held = cnn
    assert result.scheme["type"] == "static" and result.scheme["calibration_samples"] == 16
    assert result.scheme["io"] == "float32" and result.scheme["method"] == "default"
    assert result.path.stat().st_size < 0.5 * fp32.stat().st_size  # int8 weights
    ref = reference_outputs(model.module, held)
    m = compare(ref, run_session(fmt.open(result.path, threads=1), held), judge=False)
    assert m.cosine > 0.99 and m.sqnr_db > 20, m
    assert fmt.details(result.path)["delegated_share"] == 1.0  # quantize/dequantize run in XNNPACK too


def test_unsupported_op_is_recorded_as_a_portable_kernel(tmp_path):
    fmt = get_format("executorch")
    model = loaded(Cumsum(), (1, 16), task="classification", layout="NC")
    path = fmt.export_fp32(model, tmp_path / "m.pte")
    details = fmt.details(path)
    assert any("cumsum" in op for op in details["portable_kernels"]), details
    assert details["delegated_share"] < 1.0 and "cumsum" in details["summary"]
    x = np.random.default_rng(1).random((3, 16), dtype=np.float32)
    assert compare(reference_outputs(model.module, x), run_session(fmt.open(path), x), judge=True).passed


def test_lstm_gets_dynamic_int8_on_every_linear_including_the_gates(tmp_path):
    fmt = get_format("executorch")
    model = loaded(SeqLSTM(), (1, 8, 7), static=False, task="sequence", layout="NTC")
    fp32 = fmt.export_fp32(model, tmp_path / "m.fp32.pte")
    before = fmt.details(fp32)["delegated_ops"]
    result = fmt.export_int8(model, fp32, np.zeros((0, 8, 7), np.float32), tmp_path / "m.int8.pte")
    assert result.scheme["type"] == "dynamic" and "LSTM gates" in result.scheme["weights"]
    # the gates' linear layers gained quantize/dequantize ops: more delegated ops than fp32
    assert fmt.details(result.path)["delegated_ops"] > before + 20
    x = np.random.default_rng(2).standard_normal((4, 8, 7)).astype(np.float32)
    ref = reference_outputs(model.module, x)
    m = compare(ref, run_session(fmt.open(result.path), x), judge=False)
    assert 0.99 < m.cosine and m.max_abs_diff > 0  # quantized, and still close


def test_int8_methods_and_errors(cnn, tmp_path):
    model, fmt, fp32, _, _, held = cnn
    assert [o.method for o in fmt.remedies(model)] == ["minmax"]
    x = np.random.default_rng(3).random((8, 3, 32, 32), dtype=np.float32)
    minmax = fmt.export_int8(model, fp32, x, tmp_path / "mm.pte", Int8Options("minmax", exclude=("fc",)))
    assert minmax.scheme["method"] == "minmax" and minmax.scheme["excluded"] == ["fc"]
    assert "min/max" in minmax.scheme["activations"]
    with pytest.raises(UsageError, match="unknown ExecuTorch int8 method 'entropy'"):
        fmt.export_int8(model, fp32, x, tmp_path / "e.pte", Int8Options("entropy"))
    with pytest.raises(UsageError, match="no module named head"):
        fmt.export_int8(model, fp32, x, tmp_path / "e.pte", Int8Options(exclude=("head",)))
    with pytest.raises(DataError, match="needs calibration samples"):
        fmt.export_int8(model, fp32, x[:0], tmp_path / "e.pte")
    assert not (tmp_path / "e.pte").exists()
    with pytest.raises(DataError, match="does not fit the ExecuTorch program's input"):
        fmt.open(fp32).run(np.zeros((1, 3, 16, 16), np.float32))


def test_the_device_runner_times_a_pte(cnn):
    from edgekit.bench import runner
    from edgekit.bench.core import runner_spec

    _, _, fp32, _, _, _ = cnn
    how = runner_spec("executorch")
    result = runner.run({"path": str(fp32), "format": "executorch", "threads": 1, "warmup": 1, "iters": 3,
                         **how})
    assert result["status"] == "ok", result
    assert result["runtime"] == "executorch" and result["device"] == "CPU XNNPACK"
    assert result["iters"] == 3 and result["input_shapes"] == [[1, 3, 32, 32]]
    assert result["file_bytes"] == fp32.stat().st_size
    bad = runner.run({"path": str(fp32), "format": "executorch", "batch": 4, "iters": 1, **how})
    assert bad["status"] == "failed" and "--batch 1" in bad["error"]


def test_the_pte_reader_takes_flatcs_infinite_clamp_bounds():
    from edgekit.formats.executorch.share import flatc_json

    text = '{"xnodes": [{"output_min_max": {"output_min": -inf, "output_max": inf}, "debug_handle": 3}]}'
    node = flatc_json(text)["xnodes"][0]
    assert node["output_min_max"] == {"output_min": "-inf", "output_max": "inf"} and node["debug_handle"] == 3
