"""The TFLite runtime side: the session that runs a ``.tflite`` file (ai-edge-litert, or the older
tflite-runtime), float32 in and out, with int8 inputs quantized and int8 outputs dequantized by each
tensor's own scale and zero point."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import ExportError, MissingDependencyError
from edgekit.formats.base import FixedShapeSession

if TYPE_CHECKING:
    import numpy as np


def _quiet_environment() -> None:
    """Defaults read when the converters load: no C++ info logs, no progress lines on stdout."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")


class TFLiteSession(FixedShapeSession):
    """A ``.tflite`` file in ai-edge-litert (or tflite-runtime); float32 in, float32 out."""

    device = "CPU"
    what = "the TFLite model"

    def __init__(self, path: Path, num_threads: int | None = None):
        interpreter_cls, self.runtime, self.runtime_version = _interpreter()
        self._interp = interpreter_cls(model_path=str(path), num_threads=num_threads)
        self._interp.allocate_tensors()
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ExportError(
                f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                "edgekit runs models with one input and one output"
            )
        self._in, self._out = inputs[0], outputs[0]
        self.input_shape = tuple(int(d) for d in self._in["shape"])
        self.input_dtype = _dtype_name(self._in["dtype"])
        self.output_dtype = _dtype_name(self._out["dtype"])

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        self._interp.set_tensor(self._in["index"], _quantize(x, self._in))
        self._interp.invoke()
        return _dequantize(self._interp.get_tensor(self._out["index"]), self._out)


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
