"""Per-layer int8 error in OpenVINO: intermediate outputs of both IRs, ops matched by friendly name
(see the package docstring)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgekit.errors import require
from edgekit.inspect import CONV_OPS, LINEAR_OPS, LayerError, _Stats
from edgekit.inspect.trace import fit_module, trace_weights

OV_SKIP = frozenset({"Parameter", "Constant", "Result", "FakeQuantize", "Convert"})
OV_MODULE = re.compile(r"^__module\.([^/]+)/")


def errors(model, fp32_path: Path, int8_path: Path, x: np.ndarray) -> list[LayerError]:
    ov = require("openvino", "openvino", "openvino")
    core = ov.Core()
    f_model, q_model = core.read_model(str(fp32_path)), core.read_model(str(int8_path))
    f_ops = {op.get_friendly_name(): op for op in f_model.get_ordered_ops()}
    layers = []  # (name, type, fp32 output, int8 output)
    for op in q_model.get_ordered_ops():
        name, kind = op.get_friendly_name(), op.get_type_name()
        ref = f_ops.get(name)
        if kind in OV_SKIP or ref is None or ref.get_type_name() != kind or not _ov_quantized(op, f_ops):
            continue
        out = op.output(0)
        fq = [t.get_node() for t in out.get_target_inputs() if t.get_node().get_type_name() == "FakeQuantize"]
        layers.append((name, kind, ref.output(0), fq[0].output(0) if len(fq) == 1 else out))
    f_out = _ov_run(core, f_model, [r for _, _, r, _ in layers], x, {"INFERENCE_PRECISION_HINT": "f32"})
    q_out = _ov_run(core, q_model, [o for _, _, _, o in layers], x, {})
    modules = dict(model.module.named_modules())
    errors = []
    for (name, kind, _, _), fa, qa in zip(layers, f_out, q_out, strict=True):
        st = _Stats()
        for a, b in zip(fa, qa, strict=True):
            st.add(a, b)
        errors.append(st.error(name, kind, _ov_torch_name(f_ops[name], modules)))
    return errors


def _ov_quantized(op, f_ops: dict) -> bool:
    """An op NNCF quantized: one of its inputs comes from a node NNCF inserted."""
    for i in range(op.get_input_size()):
        src = op.input_value(i).get_node()
        if src.get_type_name() == "FakeQuantize" or src.get_friendly_name() not in f_ops:
            return True
    return False


def _ov_run(core, ov_model, outputs: list, x: np.ndarray, config: dict) -> list[list[np.ndarray]]:
    """Values of ``outputs`` for every sample: [output][sample]."""
    def key(port) -> tuple[str, int]:
        return port.get_node().get_friendly_name(), port.get_index()

    ov_model.add_outputs(outputs)  # a port that already is a model output is not added twice
    index: dict[tuple[str, int], int] = {}
    for i, out in enumerate(ov_model.outputs):  # each model output is a Result fed by the port
        result = out.get_node()
        index.setdefault(key(result.input_value(0) if result.get_type_name() == "Result" else out), i)

    compiled = core.compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()
    values: list[list[np.ndarray]] = [[] for _ in outputs]
    for i in range(len(x)):
        result = request.infer({0: x[i : i + 1]})
        for j, port in enumerate(outputs):
            values[j].append(np.array(result[compiled.outputs[index[key(port)]]]))
    return values


def _ov_torch_name(op, modules: dict) -> str | None:
    """From the friendly name ("__module.layer1.0.conv1/aten::_convolution/Convolution"); a
    Convolution/MatMul renamed by BatchNorm folding is traced by its weights."""
    match = OV_MODULE.match(op.get_friendly_name())
    if match and match.group(1) in modules:
        return fit_module(match.group(1), op.get_type_name(), modules)
    if op.get_type_name() in CONV_OPS | LINEAR_OPS and op.get_input_size() > 1:
        weights = op.input_value(1).get_node()
        if weights.get_type_name() == "Constant":
            return trace_weights(weights.get_data(), modules)
    return None
