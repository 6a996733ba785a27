"""ONNX: export with torch.onnx (dynamo exporter), int8 with onnxruntime.quantization, run in onnxruntime."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgekit.cpu import ort_int8_choice, this_cpu
from edgekit.errors import DataError, ExportError, UsageError, require
from edgekit.formats._util import calibration_batches, quiet
from edgekit.formats.base import (
    Format,
    Int8Options,
    Int8Result,
    Session,
    as_outputs,
    batch_example,
    batch_shapes,
    scheme_options,
    shape_info,
)
from edgekit.layout import count

OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "output"

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


class OnnxSession(Session):
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None, providers: list[str] | None = None):
        ort = require("onnxruntime", "onnxruntime", "onnx")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(path), opts, providers=providers or ["CPUExecutionProvider"]
        )
        self.runtime_version = ort.__version__
        self.device = self.session.get_providers()[0]
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_name = self.input_names[0]

    def run(self, x: np.ndarray | tuple) -> np.ndarray | tuple:
        xs = x if isinstance(x, tuple) else (x,)
        if len(xs) != len(self.input_names):
            raise DataError(f"{len(xs)} input arrays for an ONNX model with inputs "
                            f"{', '.join(self.input_names)}")
        feed = {name: np.ascontiguousarray(a, np.float32) for name, a in zip(self.input_names, xs)}
        return as_outputs(self.session.run(None, feed))

    def input_info(self) -> dict:
        shapes = [[d if isinstance(d, int) else str(d) for d in i.shape] for i in self.session.get_inputs()]
        return shape_info(shapes[0], inputs=list(zip(self.input_names, shapes)))


class OnnxFormat(Format):
    name = "onnx"
    extension = ".onnx"
    extra = "onnx"
    requires = (("onnx", "onnx"), ("onnxscript", "onnxscript"), ("onnxruntime", "onnxruntime"))
    tools = ("onnx", "onnxruntime", "onnxscript")
    runtimes = ("onnxruntime",)
    colour = "#1f77b4"
    target_settings = {"providers": ("providers", ["CPUExecutionProvider"])}  # tried in order

    @classmethod
    def target_device(cls, settings: dict) -> str | None:
        return settings["providers"][0]

    def export_fp32(self, model, path: Path) -> Path:
        import torch

        source = getattr(model.module, "onnx_path", None)  # an ONNX file as the model (models/onnx_file.py)
        if source is not None:
            from edgekit.models.onnx_file import copy_onnx

            return copy_onnx(source, path)
        require("onnxscript", "onnxscript", "onnx")
        # --dynamic-batch: axis 0 of every input and output is the symbolic dimension "batch"
        examples = model.example_inputs()
        dynamic = {"dynamic_shapes": batch_shapes(examples)} if self.dynamic_batch else {}
        examples = batch_example(examples) if self.dynamic_batch else examples
        with quiet(), torch.no_grad():
            torch.onnx.export(
                model.module,
                examples,
                str(path),
                **dynamic,
                input_names=io_names(model)[0],
                output_names=io_names(model)[1],
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        return path

    def export_int8(self, model, fp32_path: Path, calib: np.ndarray, path: Path,
                    options: Int8Options | None = None) -> Int8Result:
        q = require("onnxruntime.quantization", "onnxruntime", "onnx")
        options = options or Int8Options()
        from edgekit.formats._onnx_quant import prepare_for_quantizer, quantizer_errors

        opset = (model.options.get("onnx") or {}).get("opset")  # an ONNX file's (models/onnx_file.py)
        if not model.static_int8:
            with quantizer_errors(fp32_path, opset), quiet():
                q.quantize_dynamic(str(fp32_path), str(path), weight_type=q.QuantType.QInt8,
                                   per_channel=False, nodes_to_exclude=list(options.exclude))
            scheme = {
                "type": "dynamic",
                "weights": "int8 symmetric per-tensor",
                "activations": "fp32, quantized to int8 at run time (dynamic)",
                "io": "float32",
                "tool": "onnxruntime.quantization.quantize_dynamic",
                **scheme_options(options),
            }
            return Int8Result(path, scheme)
        method, extra, activations = _calibration(q, options.method)
        choice = ort_int8_choice(this_cpu())
        act_type = q.QuantType.QUInt8 if choice.activations == "uint8" else q.QuantType.QInt8
        with tempfile.TemporaryDirectory(prefix="edgekit-ort-") as tmp:
            pre = Path(tmp) / "pre.onnx"
            with quiet():
                # shape inference + graph optimisation, as onnxruntime recommends before quantizing
                q.quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            fixes = prepare_for_quantizer(pre)  # files from the wild (formats/_onnx_quant.py)
            _check_node_names(pre, options.exclude)
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

    def remedies(self, model) -> list[Int8Options]:
        """Histogram calibrations instead of MinMax. Both keep every intermediate output of every
        calibration sample in memory until the ranges are computed (memory grows with samples x
        activations), and Entropy then searches thresholds per tensor (slower)."""
        if not model.static_int8:
            return []
        return [Int8Options(m, note=CALIBRATIONS[m][2]) for m in ("percentile", "entropy")]

    def open(self, path: Path, threads: int | None = None) -> Session:
        return OnnxSession(path, threads=threads)


def io_names(model) -> tuple[list[str], list[str]]:
    """The artefact's input and output names: "input"/"output" for one, the model's own for several."""
    inputs = [s.name for s in model.inputs] if len(model.inputs) > 1 else [INPUT_NAME]
    outputs = list(model.output_names) if len(model.output_names) > 1 else [OUTPUT_NAME]
    return inputs, outputs


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
