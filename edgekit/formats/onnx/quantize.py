"""ONNX int8: onnxruntime.quantization (static QDQ, or dynamic for recurrent models), and the int8
share read back from a written file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgekit.cpu import ort_int8_choice, this_cpu
from edgekit.errors import ExportError, UsageError, require
from edgekit.formats._util import calibration_batches, quiet
from edgekit.formats.base import Int8Options, Int8Result, Int8Share, scheme_options
from edgekit.formats.onnx.convert import INPUT_NAME
from edgekit.layout import count

# method: (onnxruntime CalibrationMethod, extra_options, activations as the scheme records them, after
# their type: "uint8" or "int8", chosen per CPU by edgekit.cpu.ort_int8_choice)
CALIBRATIONS = {
    "default": ("MinMax", {}, "asymmetric per-tensor (MinMax calibration)"),
    "percentile": ("Percentile", {"CalibPercentile": 99.999, "CalibNumBins": 2048},
                   "asymmetric per-tensor, ranges clip the outer 0.001% of a histogram "
                   "(Percentile calibration)"),
    "entropy": ("Entropy", {"CalibNumBins": 512, "CalibNumQuantizedBins": 128},
                "asymmetric per-tensor, ranges minimising KL divergence (entropy calibration)"),
}


def export_int8(model, fp32_path: Path, calib: np.ndarray, path: Path,
                options: Int8Options | None = None) -> Int8Result:
    """Static QDQ int8 by onnxruntime's ``quantize_static`` (activations' type and range chosen for
    this CPU by ``edgekit.cpu.ort_int8_choice``); dynamic int8 for recurrent models."""
    q = require("onnxruntime.quantization", "onnxruntime", "onnx")
    options = options or Int8Options()
    from edgekit.formats.onnx.repair import quantizer_errors

    opset = (model.options.get("onnx") or {}).get("opset")  # an ONNX file's (models/onnx_file.py)
    if not model.static_int8:
        return _export_dynamic(q, fp32_path, path, options, opset)
    method, extra, activations = _calibration(q, options.method)
    choice = ort_int8_choice(this_cpu())
    act_type = q.QuantType.QUInt8 if choice.activations == "uint8" else q.QuantType.QInt8
    with tempfile.TemporaryDirectory(prefix="edgekit-ort-") as tmp:
        pre, fixes = _pre_process(q, fp32_path, Path(tmp), options)
        with quantizer_errors(pre, opset), quiet():
            q.quantize_static(
                str(pre),
                str(path),
                _reader(calibration_batches(calib, model, torch_tensors=False), _input_names(pre)),
                quant_format=q.QuantFormat.QDQ,
                activation_type=act_type,
                weight_type=q.QuantType.QInt8,
                per_channel=True,
                reduce_range=choice.reduce_range,
                nodes_to_exclude=list(options.exclude) or None,
                calibrate_method=method,
                extra_options={
                    "WeightSymmetric": True,
                    "ActivationSymmetric": False,
                    # Not CalibMaxIntermediateOutputs: onnxruntime 1.32 drops the collected
                    # ranges when that limit is hit. MinMax keeps only per-tensor min/max anyway.
                    **extra,
                },
            )
    if not path.exists():
        raise ExportError(f"onnxruntime quantize_static wrote no model at {path}")
    scheme = {
        "type": "static",
        "format": "QDQ",
        "weights": "int8 symmetric per-channel" + (" (7-bit range)" if choice.reduce_range else ""),
        "activations": f"{choice.activations} {activations}",
        "io": "float32",
        "calibration_samples": count(calib),
        "tool": "onnxruntime.quantization.quantize_static",
        "chosen": choice.record(),
        **({"graph_fixes": fixes} if fixes else {}),
        **scheme_options(options),
    }
    return Int8Result(path, scheme)


def _pre_process(q, fp32_path: Path, tmp: Path, options: Int8Options) -> tuple[Path, list]:
    """onnxruntime's pre-processing (shape inference and graph optimisation, as it recommends before
    quantizing; it also folds constants into initializers) into ``tmp``, then the repairs a file
    from the wild needs (``formats/onnx/repair.py``); (the graph, what was repaired)."""
    from edgekit.formats.onnx.repair import prepare_for_quantizer

    pre = tmp / "pre.onnx"
    with quiet():
        q.quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    fixes = prepare_for_quantizer(pre)
    _check_node_names(pre, options.exclude)
    return pre, fixes


def _export_dynamic(q, fp32_path: Path, path: Path, options: Int8Options, opset=None) -> Int8Result:
    """Dynamic int8 (onnxruntime's ``quantize_dynamic``: int8 weights, activations quantized at
    run time) after onnxruntime's pre-processing, which folds the constants that feed a recurrent
    layer's weights into initializers (its quantizer takes an LSTM only then). Recurrent weights it
    has no integer kernel for (GRU, RNN) are then stored int8 with a DequantizeLinear
    (weight-only), so every weight of the file is int8."""
    from edgekit.formats.onnx.repair import quantizer_errors

    with tempfile.TemporaryDirectory(prefix="edgekit-ort-") as tmp:
        pre, fixes = _pre_process(q, fp32_path, Path(tmp), options)
        dynamic = Path(tmp) / "dynamic.onnx"
        with quantizer_errors(fp32_path, opset), quiet():
            q.quantize_dynamic(str(pre), str(dynamic), weight_type=q.QuantType.QInt8,
                               per_channel=False, nodes_to_exclude=list(options.exclude))
        stored = _recurrent_weights_int8(dynamic, path, set(options.exclude))
    scheme = {
        "type": "dynamic",
        "weights": "int8 symmetric per-tensor",
        "activations": "fp32, quantized to int8 at run time (dynamic)",
        "io": "float32",
        "tool": "onnxruntime.quantization.quantize_dynamic",
        **scheme_options(options),
        **({"graph_fixes": fixes} if fixes else {}),
    }
    if stored:
        scheme["weight_only"] = {"ops": stored, "weights": "int8 symmetric per output row "
                                 "(DequantizeLinear); the op computes in float"}
    return Int8Result(path, scheme)


# Recurrent ops and the inputs that hold their weights (W, R).
RECURRENT_WEIGHTS = {"LSTM": (1, 2), "GRU": (1, 2), "RNN": (1, 2)}


def _recurrent_weights_int8(source: Path, path: Path, exclude: set[str]) -> list[str]:
    """Write ``source`` to ``path`` with every float weight initializer of a recurrent op stored
    int8 behind a DequantizeLinear (symmetric, one scale per output row: axis 1 of W/R, whose
    shape is [directions, gates * hidden, inputs]); the names of the ops changed."""
    import onnx
    from onnx import numpy_helper

    from edgekit.runs.manifest import write_atomic

    model = onnx.load(str(source))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    changed, added = [], []
    for node in graph.node:
        if node.op_type not in RECURRENT_WEIGHTS or node.name in exclude:
            continue
        for i in RECURRENT_WEIGHTS[node.op_type]:
            name = node.input[i] if i < len(node.input) else ""
            tensor = inits.get(name)
            if tensor is None or tensor.data_type != onnx.TensorProto.FLOAT or len(tensor.dims) != 3:
                continue
            w = numpy_helper.to_array(tensor)
            per_row = opset >= 13
            peak = np.abs(w).max(axis=(0, 2) if per_row else None)
            scale = (np.where(peak > 0, peak, 1.0) / 127.0).astype(np.float32)
            step = scale[None, :, None] if per_row else scale
            wq = np.clip(np.round(w / step), -127, 127).astype(np.int8)
            base = f"{name}_int8"
            graph.initializer.extend([numpy_helper.from_array(wq, base),
                                      numpy_helper.from_array(np.atleast_1d(scale), f"{base}_scale")])
            attrs = {"axis": 1} if per_row else {}
            added.append(onnx.helper.make_node("DequantizeLinear", [base, f"{base}_scale"], [f"{base}_dq"],
                                               name=f"{base}_DequantizeLinear", **attrs))
            node.input[i] = f"{base}_dq"
            changed.append(node.name or node.op_type)
    if added:
        used = {i for n in graph.node for i in n.input}
        kept = [t for t in graph.initializer if t.name in used or t.name.endswith(("_int8", "_int8_scale"))]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        nodes = added + list(graph.node)  # the DequantizeLinear nodes read only initializers
        del graph.node[:]
        graph.node.extend(nodes)
    write_atomic(path, model.SerializeToString())
    return sorted(set(changed))


def _input_names(path: Path) -> list[str]:
    """The graph's input names in order: edgekit's exports' (``io_names``), or a user's ONNX file's own."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in weights]


def _reader(batches: list[tuple], names: list[str] | tuple[str, ...] = (INPUT_NAME,)):
    """An onnxruntime CalibrationDataReader over batch-1 samples (one array per input), one per call."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else dict(zip(names, x))

    return Reader()


def _calibration(q, method: str) -> tuple[object, dict, str]:
    if method not in CALIBRATIONS:
        raise UsageError(f"unknown ONNX int8 method {method!r}; known: {', '.join(CALIBRATIONS)}")
    name, extra, activations = CALIBRATIONS[method]
    return getattr(q.CalibrationMethod, name), dict(extra), activations


def _check_node_names(pre: Path, names: tuple[str, ...]) -> None:
    """onnxruntime silently ignores unknown names in nodes_to_exclude; say which are unknown."""
    if not names:
        return
    import difflib

    import onnx

    known = [n.name for n in onnx.load(str(pre), load_external_data=False).graph.node]
    unknown = [n for n in names if n not in set(known)]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=3)
        raise UsageError(f"no node named {', '.join(unknown)} in the ONNX graph to keep in float"
                         + (f"; closest: {', '.join(close)}" if close else ""))


# Compute ops (float), their integer forms (dynamic or QOperator int8), and the 8-bit tensor types.
COMPUTE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU", "RNN"}


INTEGER_OPS = {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "QGemm",
               "DynamicQuantizeLSTM", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def onnx_int8_share(path: Path) -> Int8Share:
    """``Int8Share`` of an ONNX file: its initializers and Constant nodes (weights), and its compute
    ops (integer ops, or float ops whose data input comes from a DequantizeLinear: QDQ int8)."""
    import onnx

    model = onnx.load(str(path))
    nodes = list(model.graph.node)
    tensors = list(model.graph.initializer) + [a.t for n in nodes if n.op_type == "Constant"
                                               for a in n.attribute if a.name == "value"]
    eight = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    eight |= {getattr(onnx.TensorProto, t) for t in ("INT4", "UINT4") if hasattr(onnx.TensorProto, t)}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
              onnx.TensorProto.DOUBLE}
    values = {"int8": 0, "float": 0, "other": 0}
    for t in tensors:
        if len(t.dims) >= 2 and t.data_type != onnx.TensorProto.INT64:
            kind = "int8" if t.data_type in eight else "float" if t.data_type in floats else "other"
            values[kind] += int(np.prod(t.dims))
    producer = {out: n.op_type for n in nodes for out in n.output}
    int8_ops = float_ops = 0
    for n in nodes:
        if n.op_type in INTEGER_OPS or (n.op_type in COMPUTE_OPS and n.input
                                        and producer.get(n.input[0]) == "DequantizeLinear"):
            int8_ops += 1
        elif n.op_type in COMPUTE_OPS:
            float_ops += 1
    return Int8Share(values["int8"], values["float"], values["other"], int8_ops, float_ops,
                     "ONNX initializers, Constant nodes and compute nodes")
