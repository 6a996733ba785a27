"""ONNX and OpenVINO format classes on small real models, in their real runtimes."""

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgekit.cpu import this_cpu
from edgekit.export.verify import compare, reference_outputs, run_session
from edgekit.formats.onnx import OnnxFormat
from edgekit.formats.openvino import OpenVinoFormat
from edgekit.models.spec import InputSpec, LoadedModel, Preprocessing


class TinyLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(7, 16, batch_first=True)
        self.fc = nn.Linear(16, 7)

    def forward(self, x):
        return self.fc(self.lstm(x)[0])


def loaded(module, shape, static=True, task="classification"):
    return LoadedModel("tiny", module.eval(), task, InputSpec(shape), Preprocessing(), 10, {}, 0, 0,
                       None, None, static)


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    return loaded(m, (1, 3, 24, 24))


@pytest.fixture(scope="module")
def lstm():
    torch.manual_seed(0)
    return loaded(TinyLSTM(), (1, 12, 7), static=False, task="sequence")


def _samples(shape, n, seed=0):
    return np.random.default_rng(seed).random((n, *shape[1:]), dtype=np.float32)


@pytest.mark.parametrize("fmt_cls", [OnnxFormat, OpenVinoFormat])
def test_cnn_fp32_matches_torch_and_int8_is_static(tmp_path, cnn, fmt_cls):
    fmt = fmt_cls()
    calib, held = _samples(cnn.input_spec.shape, 16), _samples(cnn.input_spec.shape, 6, seed=1)
    ref = reference_outputs(cnn.module, held)
    fp32 = fmt.export_fp32(cnn, tmp_path / f"m.fp32{fmt.extension}")
    res = compare(ref, run_session(fmt.open_exact(fp32), held), judge=True)
    assert res.passed, res
    assert res.max_abs_diff < 1e-4

    q = fmt.export_int8(cnn, fp32, calib, tmp_path / f"m.int8{fmt.extension}")
    assert q.scheme["type"] == "static" and q.scheme["calibration_samples"] == 16
    assert q.scheme["chosen"]["cpu"] == this_cpu().describe() and q.scheme["chosen"]["why"]
    res8 = compare(ref, run_session(fmt.open(q.path), held), judge=False)
    assert res8.cosine > 0.99 and res8.sqnr_db > 15
    assert all(p.exists() for p in fmt.files(q.path))


def test_onnx_int8_graph_holds_qdq_nodes(tmp_path, cnn):
    import onnx

    fmt = OnnxFormat()
    fp32 = fmt.export_fp32(cnn, tmp_path / "m.onnx")
    q = fmt.export_int8(cnn, fp32, _samples(cnn.input_spec.shape, 8), tmp_path / "q.onnx")
    ops = Counter(n.op_type for n in onnx.load(q.path).graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    # weights are stored as int8 initializers, so the file shrinks
    assert q.path.stat().st_size < fp32.stat().st_size


def test_openvino_int8_graph_holds_fake_quantize(tmp_path, cnn):
    import openvino as ov

    fmt = OpenVinoFormat()
    fp32 = fmt.export_fp32(cnn, tmp_path / "m.xml")
    assert fp32.with_suffix(".bin").exists()
    q = fmt.export_int8(cnn, fp32, _samples(cnn.input_spec.shape, 8), tmp_path / "q.xml")
    ops = Counter(o.get_type_name() for o in ov.Core().read_model(q.path).get_ops())
    assert ops["FakeQuantize"] > 0
    assert fmt.open_exact(fp32).precision == "f32"


@pytest.mark.parametrize("fmt_cls", [OnnxFormat, OpenVinoFormat])
def test_lstm_uses_dynamic_or_weight_only_int8(tmp_path, lstm, fmt_cls):
    fmt = fmt_cls()
    held = (_samples(lstm.input_spec.shape, 4) > 0.8).astype(np.float32)
    ref = reference_outputs(lstm.module, held)
    fp32 = fmt.export_fp32(lstm, tmp_path / f"m{fmt.extension}")
    assert compare(ref, run_session(fmt.open_exact(fp32), held), judge=True).passed
    q = fmt.export_int8(lstm, fp32, held, tmp_path / f"q{fmt.extension}")
    assert q.scheme["type"] in ("dynamic", "weight-only")
    res = compare(ref, run_session(fmt.open(q.path), held), judge=False)
    assert res.cosine > 0.99


def test_onnx_int8_keeps_an_excluded_node_in_float(tmp_path, cnn):
    import onnx

    from edgekit.errors import UsageError
    from edgekit.formats.base import Int8Options

    fmt = OnnxFormat()
    fp32 = fmt.export_fp32(cnn, tmp_path / "m.onnx")
    calib = _samples(cnn.input_spec.shape, 8)
    default = onnx.load(fmt.export_int8(cnn, fp32, calib, tmp_path / "q.onnx").path).graph
    convs = [n.name for n in default.node if n.op_type == "Conv"]
    q = fmt.export_int8(cnn, fp32, calib, tmp_path / "x.onnx", Int8Options(exclude=(convs[-1],)))
    graph = onnx.load(q.path).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    fed = {n.name: [producer.get(i) for i in n.input] for n in graph.node if n.op_type == "Conv"}
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    excluded = next(n for n in graph.node if n.name == convs[-1])
    assert "DequantizeLinear" not in fed[convs[-1]][1:] and excluded.input[1] in floats  # float weights
    assert fed[convs[0]][1] == "DequantizeLinear"  # the other conv is still int8
    assert q.scheme["excluded"] == [convs[-1]] and q.scheme["method"] == "default"
    with pytest.raises(UsageError, match="no node named conv_nope"):
        fmt.export_int8(cnn, fp32, calib, tmp_path / "y.onnx", Int8Options(exclude=("conv_nope",)))


def test_openvino_int8_keeps_an_excluded_op_in_float(tmp_path, cnn):
    import openvino as ov

    from edgekit.errors import UsageError
    from edgekit.formats.base import Int8Options

    fmt = OpenVinoFormat()
    fp32 = fmt.export_fp32(cnn, tmp_path / "m.xml")
    calib = _samples(cnn.input_spec.shape, 8)
    convs = [o.get_friendly_name() for o in ov.Core().read_model(fp32).get_ops()
             if o.get_type_name() == "Convolution"]
    q = fmt.export_int8(cnn, fp32, calib, tmp_path / "q.xml", Int8Options("mixed", exclude=(convs[0],)))
    ops = {o.get_friendly_name(): o for o in ov.Core().read_model(q.path).get_ops()}

    def sources(name):
        return [i.get_source_output().get_node().get_type_name() for i in ops[name].inputs()]

    assert "FakeQuantize" not in sources(convs[0]) and sources(convs[0])[1] == "Constant"
    assert ops[convs[0]].input(1).get_source_output().get_element_type() == ov.Type.f32
    assert "FakeQuantize" in sources(convs[1])  # the other convolution is still int8
    assert q.scheme["excluded"] == [convs[0]] and q.scheme["method"] == "mixed"
    with pytest.raises(UsageError, match="no op named nope"):
        fmt.export_int8(cnn, fp32, calib, tmp_path / "y.xml", Int8Options(exclude=("nope",)))
