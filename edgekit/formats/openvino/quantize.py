"""OpenVINO int8: NNCF (static post-training quantization, or weight compression for recurrent
models), and the int8 share read back from a written IR."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.cpu import this_cpu
from edgekit.errors import UsageError, require
from edgekit.formats._util import calibration_batches, quiet
from edgekit.formats.base import Int8Options, Int8Result, Int8Share, scheme_options
from edgekit.layout import count, take

NNCF_METHODS = {
    "default": "int8 per-tensor (NNCF default preset)",
    "mixed": "int8 per-tensor, asymmetric (NNCF MIXED preset)",
    "histogram": "int8 per-tensor, ranges optimised on activation histograms (NNCF HISTOGRAM estimator)",
    "bias_correction": "int8 per-tensor, MIXED preset with full bias correction (fast_bias_correction off)",
    "accuracy_control": ("int8 per-tensor, MIXED preset; nncf.quantize_with_accuracy_control reverted the "
                         "layers that cost most held-out accuracy to float until the drop met the budget"),
}

# Measured by benchmarks/raw_best.py (EPYC, AVX-512 VNNI): the MIXED preset and other compile hints
# were no faster at the same SQNR; the CPU plugin picks its int8 kernels (VNNI/AMX) at compile time.
OV_WHY = ("NNCF's default (PERFORMANCE: symmetric int8) preset, run with PERFORMANCE_HINT=LATENCY; the "
          "OpenVINO CPU plugin picks int8 kernels for this CPU's instructions when it compiles the IR")


def export_int8(model, fp32_path: Path, calib: np.ndarray, path: Path,
                options: Int8Options | None = None) -> Int8Result:
    """NNCF's post-training quantization on the calibration samples; weight-only int8 for
    recurrent models."""
    ov = require("openvino", "openvino", "openvino")
    nncf = require("nncf", "nncf", "openvino")
    options = options or Int8Options()
    ov_model = ov.Core().read_model(str(fp32_path))
    scope = _ignored_scope(nncf, ov_model, options.exclude)
    with quiet():
        if model.static_int8:
            batches = calibration_batches(calib, model, torch_tensors=False)  # one tuple per sample
            dataset = nncf.Dataset([b if len(b) > 1 else b[0] for b in batches])
            kwargs, activations = _nncf_settings(nncf, options.method)
            if options.method == "accuracy_control":
                q_model = _accuracy_control(nncf, ov_model, dataset, options, count(calib), scope)
            else:
                q_model = nncf.quantize(ov_model, dataset, subset_size=count(calib), ignored_scope=scope,
                                        **kwargs)
            scheme = {
                "type": "static",
                "weights": "int8 symmetric per-channel",
                "activations": activations,
                "io": "float32",
                "calibration_samples": count(calib),
                "tool": "nncf.quantize",
                "chosen": {"cpu": this_cpu().describe(), "why": OV_WHY},
            }
        else:
            q_model = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM,
                                            ignored_scope=scope)
            stored = _recurrent_weights_int8(q_model, set(options.exclude))
            scheme = {
                "type": "weight-only",
                "weights": "int8 asymmetric per-channel",
                "activations": "float (weights decompressed at run time)",
                "io": "float32",
                "tool": "nncf.compress_weights",
            }
            if stored:  # NNCF compresses MatMul/Convolution/Gather weights, not recurrent ops'
                scheme["recurrent_weights"] = {
                    "ops": stored, "weights": "int8 symmetric per output row (Convert + Multiply)",
                    "tool": "edgekit (NNCF's compress_weights leaves recurrent weights float)"}
        ov.save_model(q_model, str(path), compress_to_fp16=False)
    return Int8Result(path, {**scheme, **scheme_options(options)})


def _nncf_settings(nncf, method: str) -> tuple[dict, str]:
    """nncf.quantize keyword arguments for ``method`` and the activations line of the scheme."""
    if method not in NNCF_METHODS:
        raise UsageError(f"unknown OpenVINO int8 method {method!r}; known: {', '.join(NNCF_METHODS)}")
    kwargs: dict = {}
    if method in ("mixed", "bias_correction", "accuracy_control"):
        kwargs["preset"] = nncf.QuantizationPreset.MIXED
    if method == "bias_correction":
        kwargs["fast_bias_correction"] = False
    if method == "histogram":
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        kwargs["advanced_parameters"] = AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.HISTOGRAM)
    return kwargs, NNCF_METHODS[method]


def _ignored_scope(nncf, ov_model, names: tuple[str, ...]):
    """nncf.IgnoredScope of the ops named (friendly names of the fp32 IR); unknown names are an error."""
    if not names:
        return None
    known = [op.get_friendly_name() for op in ov_model.get_ops()]
    unknown = [n for n in names if n not in set(known)]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], known, n=3)
        raise UsageError(f"no op named {', '.join(unknown)} in the OpenVINO model to keep in float"
                         + (f"; closest: {', '.join(close)}" if close else ""))
    return nncf.IgnoredScope(names=list(names))


def _accuracy_control(nncf, ov_model, dataset, options: Int8Options, subset_size: int, scope):
    """nncf.quantize_with_accuracy_control on the labelled held-out set in ``options.validation``."""
    if options.validation is None or options.max_drop_pp is None:
        raise UsageError("the OpenVINO accuracy_control method needs labelled held-out data and a budget; "
                         "it runs from `export --int8 --max-drop PP --eval DATA`")
    from edgekit.measure.metrics import metrics

    held, key = options.validation

    def validate(compiled, indices) -> float:
        idx = np.fromiter(indices, dtype=np.int64)
        out = compiled.output(0)
        logits = np.concatenate([np.asarray(compiled(take(held.x, slice(i, i + 1)))[out]) for i in idx])
        return float(metrics(logits, _subset(held, idx))[key])

    return nncf.quantize_with_accuracy_control(
        ov_model, dataset, nncf.Dataset(list(range(count(held.x)))), validate,
        max_drop=max(options.max_drop_pp, 0.0) / 100.0, preset=nncf.QuantizationPreset.MIXED,
        subset_size=subset_size, ignored_scope=scope)


def _subset(held, idx: np.ndarray):
    """The samples ``idx`` of a LabelledSet, with the per-sample arrays of ``extra`` (reber's)."""
    import dataclasses

    n = count(held.x)
    extra = {k: v[idx] if isinstance(v, np.ndarray) and len(v) == n else v for k, v in held.extra.items()}
    return dataclasses.replace(held, x=take(held.x, idx), y=held.y[idx], extra=extra)


COMPUTE_OPS = {"Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData",
               "MatMul", "LSTMSequence", "GRUSequence", "RNNSequence", "LSTMCell", "GRUCell", "RNNCell"}


def openvino_int8_share(path: Path) -> Int8Share:
    """``Int8Share`` of an OpenVINO IR, read back from it: the element types of its Constants (int8
    weights, compressed or quantized, are i8/u8 Constants decompressed by a Convert), and its
    compute ops, int8 where their data input comes from a FakeQuantize (static int8)."""
    import openvino as ov

    with quiet():
        model = ov.Core().read_model(str(path))
    values = {"int8": 0, "float": 0, "other": 0}
    int8_ops = float_ops = 0
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind == "Constant":
            shape = op.get_output_partial_shape(0)
            element = op.get_output_element_type(0).get_type_name()
            if shape.rank.get_length() >= 2 and element not in ("i64", "boolean"):
                dims = [d.get_length() for d in shape]
                group = ("int8" if element in ("i8", "u8", "i4", "u4", "nf4")
                         else "float" if element.startswith(("f", "bf")) else "other")
                values[group] += int(np.prod(dims))
        elif kind in COMPUTE_OPS:
            source = op.input_value(0).get_node().get_type_name()
            if source == "FakeQuantize":
                int8_ops += 1
            else:
                float_ops += 1
    return Int8Share(values["int8"], values["float"], values["other"], int8_ops, float_ops,
                     "OpenVINO IR Constants and compute ops")


# Recurrent ops and the inputs that hold their weights (W, R), in OpenVINO's opset.
RECURRENT_WEIGHTS = {"LSTMSequence": (4, 5), "GRUSequence": (3, 4), "RNNSequence": (3, 4),
                     "LSTMCell": (3, 4), "GRUCell": (2, 3), "RNNCell": (2, 3)}


def _recurrent_weights_int8(model, exclude: set[str]) -> list[str]:
    """Store every float Constant weight (W, R) of a recurrent op int8 with a decompression
    (Convert, then Multiply by one scale per output row: the layout NNCF writes for MatMul), so the
    IR keeps them in 8 bits; the op computes in float. The friendly names of the ops changed."""
    import openvino as ov
    from openvino import opset13 as ops

    changed = []
    for op in model.get_ops():
        if op.get_type_name() not in RECURRENT_WEIGHTS or op.get_friendly_name() in exclude:
            continue
        for i in RECURRENT_WEIGHTS[op.get_type_name()]:
            source = op.input_value(i).get_node()
            if source.get_type_name() != "Constant" or source.get_output_element_type(0) != ov.Type.f32:
                continue
            w = source.get_data().astype(np.float32)
            peak = np.abs(w).max(axis=-1, keepdims=True)  # one scale per output row
            scale = (np.where(peak > 0, peak, 1.0) / 127.0).astype(np.float32)
            q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
            weights = ops.convert(ops.constant(q), ov.Type.f32)
            weights.get_rt_info()["decompression"] = ""  # keep it: decompressed when compiled
            restored = ops.multiply(weights, ops.constant(scale))
            op.input(i).replace_source_output(restored.output(0))
            changed.append(op.get_friendly_name())
    if changed:
        model.validate_nodes_and_infer_types()
    return sorted(set(changed))
