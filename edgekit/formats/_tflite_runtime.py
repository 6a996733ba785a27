"""The TFLite runtime side: the session that runs a ``.tflite`` file (ai-edge-litert, or the older
tflite-runtime), float32 in and out, with int8 inputs quantized and int8 outputs dequantized by each
tensor's own scale and zero point."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import MissingDependencyError
from edgekit.formats.base import FixedShapeSession

if TYPE_CHECKING:
    import numpy as np


def _quiet_environment() -> None:
    """Defaults read when the converters load: no C++ info logs, no progress lines on stdout."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")


class TFLiteSession(FixedShapeSession):
    """A ``.tflite`` file in ai-edge-litert (or tflite-runtime); float32 in, float32 out.

    Several inputs and outputs are matched to the model's order through the file's signature
    (litert-torch names them ``args_0``, ``args_1``... and ``output_0``...; the interpreter's own
    tensor order may differ), each quantized or dequantized with its own scale and zero point."""

    device = "CPU"
    what = "the TFLite model"

    def __init__(self, path: Path, num_threads: int | None = None):
        interpreter_cls, self.runtime, self.runtime_version = _interpreter()
        self._interp = interpreter_cls(model_path=str(path), num_threads=num_threads)
        self._interp.allocate_tensors()
        self.input_details, self.output_details = _ordered_details(self._interp)
        self.input_shapes = tuple(tuple(int(d) for d in t["shape"]) for t in self.input_details)
        self.input_shape = self.input_shapes[0]
        self.input_names = tuple(t["name"] for t in self.input_details)
        self.input_dtype = _dtype_names(self.input_details)
        self.output_dtype = _dtype_names(self.output_details)

    def _invoke(self, x):
        for detail, a in zip(self.input_details, x if isinstance(x, tuple) else (x,)):
            self._interp.set_tensor(detail["index"], _quantize(a, detail))
        self._interp.invoke()
        outputs = tuple(_dequantize(self._interp.get_tensor(d["index"]), d) for d in self.output_details)
        return outputs[0] if len(outputs) == 1 else outputs


def signature_order(names: list[str]) -> list[str]:
    """A signature's input or output names in the model's order: ``args_2`` before ``args_10``."""
    import re

    def key(name: str) -> tuple:
        found = re.search(r"(\d+)$", name)
        return (int(found.group(1)) if found else -1, name)

    return sorted(names, key=key)


def _ordered_details(interp: Any) -> tuple[list[dict], list[dict]]:
    """The input and output tensor details in the model's order: by the signature's names where
    the file has one signature, else the interpreter's order."""
    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    signatures = interp.get_signature_list()
    if len(signatures) != 1 or (len(inputs) == 1 and len(outputs) == 1):
        return inputs, outputs
    key = next(iter(signatures))
    runner = interp.get_signature_runner(key)
    by_index = {d["index"]: d for d in inputs + outputs}
    named_in, named_out = runner.get_input_details(), runner.get_output_details()
    return ([by_index[named_in[n]["index"]] for n in signature_order(list(named_in))],
            [by_index[named_out[n]["index"]] for n in signature_order(list(named_out))])


def _dtype_names(details: list[dict]) -> str:
    """"int8", or e.g. "float32, int8" for tensors of several types (in order of first use)."""
    return ", ".join(dict.fromkeys(_dtype_name(d["dtype"]) for d in details))


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """float32 -> the tensor's dtype with its own scale/zero point (unchanged if not quantized)."""
    import numpy as np

    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.kind == "f" or scale == 0:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(x / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    import numpy as np

    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind == "f" or scale == 0:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def _interpreter() -> tuple[Any, str, str]:
    """The interpreter class, runtime name and runtime version."""
    _quiet_environment()
    for module, package in (
        ("ai_edge_litert.interpreter", "ai-edge-litert"),
        ("tflite_runtime.interpreter", "tflite-runtime"),
    ):
        try:
            interpreter = __import__(module, fromlist=["Interpreter"])
        except ImportError:
            continue
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = ""
        return interpreter.Interpreter, package, version
    raise MissingDependencyError("ai-edge-litert", "tflite")


def _dtype_name(dtype: Any) -> str:
    import numpy as np

    return np.dtype(dtype).name
