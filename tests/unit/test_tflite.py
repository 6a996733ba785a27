"""TFLite (LiteRT) format class on small real models: litert-torch converts, ai-edge-litert runs."""

import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgekit.errors import DataError, MissingDependencyError
from edgekit.export.verify import compare, reference_outputs, run_session
from edgekit.formats.tflite import TFLiteFormat
from tests.conftest import loaded_model as loaded


class Inception(nn.Module):
    """The patterns that tripped litert-torch's int8 path: concat, max-pool, residual add."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.b1 = nn.Sequential(nn.Conv2d(32, 16, 3, padding=1), nn.ReLU())
        self.b2 = nn.Sequential(
            nn.MaxPool2d(3, 1, 1, ceil_mode=True), nn.Conv2d(32, 16, 3, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.4)  # an identity in eval mode, as before GoogLeNet's classifier
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(torch.cat([self.b1(x), self.b2(x)], 1) + x)
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


class SeqLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(7, 32, batch_first=True)
        self.fc = nn.Linear(32, 7)

    def forward(self, x):
        return self.fc(self.lstm(x)[0])


def images(n, seed):
    return np.random.default_rng(seed).random((n, 3, 32, 32), dtype=np.float32)


def sequences(n, seed):
    """One-hot symbol sequences, like the Reber grammar data the LSTM sees."""
    symbols = np.random.default_rng(seed).integers(0, 7, size=(n, 24))
    return np.eye(7, dtype=np.float32)[symbols]


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    torch.manual_seed(0)
    model = loaded(Inception(), (1, 3, 32, 32))
    folder = tmp_path_factory.mktemp("cnn")
    fmt = TFLiteFormat()
    fp32 = fmt.export_fp32(model, folder / "m.fp32.tflite")
    q = fmt.export_int8(model, fp32, images(16, seed=0), folder / "m.int8.tflite")
    return model, fp32, q


@pytest.fixture(scope="module")
def lstm(tmp_path_factory):
    torch.manual_seed(0)
    model = loaded(SeqLSTM(), (1, 24, 7), static=False, task="sequence", layout="NTC")
    folder = tmp_path_factory.mktemp("lstm")
    fmt = TFLiteFormat()
    fp32 = fmt.export_fp32(model, folder / "m.fp32.tflite")
    q = fmt.export_int8(model, fp32, sequences(8, seed=0), folder / "m.int8.tflite")
    return model, fp32, q


@pytest.mark.parametrize("which, data", [("cnn", images), ("lstm", sequences)])
def test_fp32_matches_torch(request, which, data):
    model, fp32, _ = request.getfixturevalue(which)
    held = data(6, seed=1)
    ref = reference_outputs(model.module, held)
    res = compare(ref, run_session(TFLiteFormat().open(fp32), held), judge=True)
    assert res.passed, res
    assert res.max_abs_diff < 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_cnn_int8_is_full_integer_and_close_to_torch(cnn):
    model, fp32, q = cnn
    session = TFLiteFormat().open(q.path)
    # full-integer: the model itself takes and gives int8; the session hides that
    assert (session.input_dtype, session.output_dtype) == ("int8", "int8")
    assert q.scheme["type"] == "static" and q.scheme["io"] == "int8"
    assert q.scheme["calibration_samples"] == 16 and "per-channel" in q.scheme["weights"]
    held = images(16, seed=2)
    out = session.run(held)
    assert out.dtype == np.float32
    res = compare(reference_outputs(model.module, held), out, judge=False)
    assert res.cosine > 0.99 and res.top1_agreement >= 0.9, res
    assert q.path.stat().st_size < 0.6 * fp32.stat().st_size


def test_lstm_int8_is_dynamic_range_and_close_to_torch(lstm):
    model, fp32, q = lstm
    session = TFLiteFormat().open(q.path)
    assert (session.input_dtype, session.output_dtype) == ("float32", "float32")
    assert q.scheme["type"] == "dynamic" and q.scheme["calibration_samples"] == 0
    held = sequences(8, seed=3)
    res = compare(reference_outputs(model.module, held), session.run(held), judge=False)
    assert res.cosine > 0.99 and res.top1_agreement >= 0.95, res
    assert q.path.stat().st_size < fp32.stat().st_size


def test_session_runs_a_batch_sample_by_sample(cnn):
    _, fp32, q = cnn
    x = images(4, seed=4)
    for path in (fp32, q.path):
        session = TFLiteFormat().open(path, threads=1)
        assert session.input_shape == (1, 3, 32, 32)
        np.testing.assert_array_equal(session.run(x), run_session(session, x))
    # the one session bench uses too: XNNPACK applied
    assert (session.runtime, session.device) == ("ai-edge-litert", "CPU XNNPACK") and session.runtime_version
    with pytest.raises(DataError, match="does not fit"):
        session.run(np.zeros((1, 3, 16, 16), np.float32))


def test_int8_export_keeps_stdout_clean_and_rejects_bad_calibration(cnn, tmp_path, capfd):
    model, fp32, _ = cnn
    capfd.readouterr()
    TFLiteFormat().export_int8(model, fp32, images(2, seed=5), tmp_path / "q.tflite")
    assert capfd.readouterr().out == ""
    with pytest.raises(DataError, match="calibration"):
        TFLiteFormat().export_int8(model, fp32, np.zeros((2, 3, 8, 8), np.float32), tmp_path / "b.tflite")
    assert not (tmp_path / "b.tflite").exists()


def test_tool_versions_name_converter_and_runtime():
    versions = TFLiteFormat().tool_versions()
    assert versions["litert-torch"] and versions["ai-edge-litert"]


def test_missing_packages_name_the_extra(monkeypatch, cnn, tmp_path):
    # An entry of None in sys.modules makes `import` fail exactly as for an uninstalled package;
    # uninstalling the real packages is not an option on a shared environment.
    model, fp32, _ = cnn
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    with pytest.raises(MissingDependencyError, match=r"litert-torch.*edgekit\[tflite\]"):
        TFLiteFormat().export_fp32(model, tmp_path / "m.tflite")
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(MissingDependencyError, match=r"ai-edge-litert.*edgekit\[tflite\]"):
        TFLiteFormat().open(fp32)


def test_int8_keeps_an_excluded_module_in_float(cnn, tmp_path):
    from edgekit.formats.base import Int8Options

    model, fp32, _ = cnn
    fmt = TFLiteFormat()
    # The classifier: the LiteRT converter re-quantizes a float op whose neighbours are both int8
    # (see formats/tflite.py _quantizer), so exclusion shows on a layer at the model's edge.
    options = Int8Options("minmax", exclude=("fc",))
    q = fmt.export_int8(model, fp32, images(8, seed=0), tmp_path / "x.tflite", options)
    interp = __import__("ai_edge_litert.interpreter", fromlist=["Interpreter"]).Interpreter(str(q.path))
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # the only API that lists ops with their tensors

    def input_dtypes(op_name):
        return [[dtypes[i] for i in op["inputs"] if i >= 0] for op in ops if op["op_name"] == op_name]

    assert input_dtypes("FULLY_CONNECTED") == [["float32", "float32", "float32"]]  # fc stays float
    assert all(c[:2] == ["int8", "int8"] for c in input_dtypes("CONV_2D"))  # the rest stays int8
    assert q.scheme["excluded"] == ["fc"] and q.scheme["method"] == "minmax"
    res = compare(reference_outputs(model.module, images(4, seed=3)),
                  run_session(fmt.open(q.path), images(4, seed=3)), judge=False)
    assert res.cosine > 0.98
    with pytest.raises(Exception, match="no module named b9"):
        fmt.export_int8(model, fp32, images(8, seed=0), tmp_path / "y.tflite", Int8Options(exclude=("b9",)))
