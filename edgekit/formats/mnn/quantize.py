"""MNN int8: MNN's own offline quantizer (quantized.out, ``_tools.mnnquant``) calibrated on exactly
edgekit's calibration samples, and the int8 share read back from the written file.

The quantizer takes its calibration data as a folder per sample of raw floats (its "sequence"
input type: ``input.json`` with the input's name and shape, ``<input>.txt`` with the values), so
no resize, mean or scale is applied twice. Weights are int8 symmetric per output channel,
activations int8 symmetric per tensor, ranges by the feature method: "ADMM" (the default), "KL" or
"EMA".
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from edgekit.errors import DataError, UsageError
from edgekit.formats.base import Int8Options, Int8Result, Int8Share, scheme_options
from edgekit.formats.mnn.convert import failure, run_tool
from edgekit.layout import count

# default ADMM: on LeNet-5 38 dB SQNR against KL's 11 and EMA's 21; on resnet50 32 dB against
# EMA's -4, and MNN 3.6.1's KL crashes (SIGSEGV after "fake quant weights done") on resnet50
METHODS = {
    "default": ("ADMM", "int8 symmetric per-tensor, ranges by alternating-direction optimisation "
                        "(MNN's ADMM)"),
    "kl": ("KL", "int8 symmetric per-tensor, ranges minimising KL divergence (MNN's KL method)"),
    "ema": ("EMA", "int8 symmetric per-tensor, exponential moving averages of the ranges (MNN's EMA)"),
}


def export_int8(model, fp32_path: Path, calib: np.ndarray, path: Path,
                options: Int8Options | None = None) -> Int8Result:
    from edgekit.formats.mnn.runtime import mnn, quiet_fd1
    from edgekit.runs.manifest import write_atomic

    options = options or Int8Options()
    if options.method not in METHODS:
        raise UsageError(f"unknown MNN int8 method {options.method!r}; known: {', '.join(METHODS)}")
    if not model.static_int8:
        raise UsageError("MNN's int8 quantizer crashes on recurrent layers; export MNN without --int8, "
                         "or int8 to onnx, openvino, tflite or executorch")
    if model.multi_io:
        raise UsageError("MNN's int8 quantizer takes one input; this model has several: export MNN "
                         "without --int8")
    x = np.ascontiguousarray(calib, dtype=np.float32)
    if count(x) == 0:
        raise DataError("static int8 needs calibration samples, got none")
    _, _, expr = mnn()
    with quiet_fd1():
        name = list(expr.get_inputs_and_outputs(expr.load_as_dict(str(fp32_path)))[0])[0]
    method, note = METHODS[options.method]
    with tempfile.TemporaryDirectory(prefix="edgekit-mnnquant-") as tmp:
        work = Path(tmp)
        for i, sample in enumerate(x):  # one folder per sample, raw floats
            folder = work / "calib" / f"{i:06d}"
            folder.mkdir(parents=True)
            shape = [1, *sample.shape]
            (folder / "input.json").write_text(json.dumps({"inputs": [{"name": name, "shape": shape}]}))
            np.savetxt(folder / f"{name}.txt", sample.reshape(1, -1), fmt="%.9g")  # float32 exactly
        config = {"input_type": "sequence", "path": f"{work / 'calib'}/", "used_sample_num": len(x),
                  "feature_quantize_method": method, "weight_quantize_method": "MAX_ABS",
                  "inputs": [{"name": name, "shape": [1, *x.shape[1:]]}]}
        if options.exclude:
            config["skip_quant_op_names"] = list(options.exclude)
        (work / "quant.json").write_text(json.dumps(config))
        out = work / "model.int8.mnn"
        args = [str(Path(fp32_path).resolve()), str(out), str(work / "quant.json")]
        code, log = run_tool("mnnquant", args, cwd=str(work))
        if code != 0 or "Quantize model done!" not in log or not out.is_file() or not out.stat().st_size:
            raise failure("MNN's quantizer could not quantize the model", code, log)
        write_atomic(path, out.read_bytes())  # (its per-tensor scales, model.int8.mnn.json, stay behind)
    used = "EMA" if "use EMA quantize method instead" in log else method  # MNN's choice with BatchNorm left
    scheme = {"type": "static", "weights": "int8 symmetric per-channel (MAX_ABS)",
              "activations": note if used == method else f"{note}; MNN used EMA instead (BatchNorm left)",
              "io": "float32", "calibration_samples": count(x),
              "tool": "MNN offline quantizer (quantized.out)", **scheme_options(options)}
    return Int8Result(path, scheme)


# Ops that compute (their weights are what the share counts) and those MNN runs on int8 data.
COMPUTE_OPS = {"Convolution", "ConvolutionDepthwise", "Deconvolution", "DeconvolutionDepthwise",
               "ConvInt8", "DepthwiseConvInt8", "InnerProduct", "MatMul", "BatchMatMul", "LSTM",
               "RNNSequenceGRU", "LSTMBlockCell", "Conv3D"}
EIGHT_BIT = ("DT_INT8", "DT_UINT8", "DT_QINT8", "DT_QUINT8")
FLOATS = ("DT_FLOAT", "DT_HALF", "DT_BFLOAT16", "DT_DOUBLE")


def mnn_int8_share(path: Path) -> Int8Share:
    """``Int8Share`` of an ``.mnn`` file, from MNNConvert's JSON dump of its flatbuffer: a
    Convolution's ``quanParameter`` holds int8 weights (its ``aMaxOrBits``; type 3 is fp16), its
    ``weight`` float ones, ``symmetricQuan`` with int8 output means it computes on int8 data;
    constant blobs of 2+ dimensions are weights too."""
    with tempfile.TemporaryDirectory(prefix="edgekit-mnnjson-") as tmp:
        out = Path(tmp) / "model.json"
        code, log = run_tool("mnnconvert", ["-f", "MNN", "--modelFile", str(Path(path).resolve()),
                                            "--JsonFile", str(out)], timeout=600, cwd=tmp)
        if not out.is_file() or not out.stat().st_size:
            raise failure(f"MNN could not read back {Path(path).name}", code, log)
        dump = json.loads(out.read_text())
    values = {"int8": 0, "float": 0, "other": 0}
    int8_ops = float_ops = 0
    ops = list(dump.get("oplists") or [])
    for sub in dump.get("subgraphs") or []:  # recurrent layers become While ops with subgraphs
        ops.extend(sub.get("nodes") or [])
    for op in ops:
        kind, main = op.get("type"), op.get("main") or {}
        if op.get("main_type") == "Blob" and kind == "Const":
            dims = main.get("dims") or []
            if len(dims) >= 2:
                dtype = main.get("dataType", "DT_FLOAT")
                kind = "int8" if dtype in EIGHT_BIT else "float" if dtype in FLOATS else "other"
                values[kind] += int(np.prod(dims))
            continue
        if kind not in COMPUTE_OPS:
            continue
        if op.get("main_type") != "Convolution2D":
            float_ops += 1  # MatMul and recurrent ops: MNN's offline quantizer leaves them float
            continue
        common = main.get("common") or {}
        groups = max(int(common.get("group", 1) or 1), 1)
        n = (int(common.get("outputCount", 0)) * int(common.get("inputCount", 0)) // groups
             * int(common.get("kernelX", 1)) * int(common.get("kernelY", 1)))
        q = main.get("quanParameter")
        if q and int(q.get("type", 1)) == 3:  # half floats (--fp16)
            values["float"] += n
        elif q:
            values["int8" if 0 < int(q.get("aMaxOrBits", 8) or 8) <= 8 else "other"] += n
        elif main.get("weight") is not None or main.get("external") is not None:
            values["float"] += len(main["weight"]) if main.get("weight") else n
        full = ((main.get("symmetricQuan") or {}).get("outputDataType") == "DT_INT8"
                or kind in ("ConvInt8", "DepthwiseConvInt8"))
        int8_ops += full
        float_ops += not full
    return Int8Share(int8_values=values["int8"], float_values=values["float"], other_values=values["other"],
                     int8_ops=int8_ops, float_ops=float_ops,
                     read_from="MNN flatbuffer (MNNConvert's JSON dump)")
