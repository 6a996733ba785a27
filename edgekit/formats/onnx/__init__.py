"""ONNX: export with torch.onnx (dynamo exporter, ``convert.py``), int8 with onnxruntime.quantization
(``quantize.py``), run in onnxruntime (``runtime.py``)."""

from __future__ import annotations

from pathlib import Path

from edgekit.formats.base import Format, Int8Options, Int8Share


class OnnxFormat(Format):
    name = "onnx"
    extension = ".onnx"
    extra = "onnx"
    requires = (("onnx", "onnx"), ("onnxscript", "onnxscript"), ("onnxruntime", "onnxruntime"))
    tools = ("onnx", "onnxruntime", "onnxscript")
    runtimes = ("onnxruntime",)
    colour = "#1f77b4"
    target_settings = {"providers": ("providers", ["CPUExecutionProvider"])}  # tried in order
    probe = {"onnxruntime": ("onnxruntime", ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"))}
    runtime_labels = {"onnxruntime": "ort"}
    device_packages = ("onnxruntime",)
    takes_onnx = True
    compat = "compat"
    inspect = "inspect"

    @classmethod
    def target_device(cls, settings: dict) -> str | None:
        return settings["providers"][0]

    def remedies(self, model) -> list[Int8Options]:
        """Histogram calibrations instead of MinMax. Both keep every intermediate output of every
        calibration sample in memory until the ranges are computed (memory grows with samples x
        activations), and Entropy then searches thresholds per tensor (slower)."""
        if not model.static_int8:
            return []
        from edgekit.formats.onnx.quantize import CALIBRATIONS

        return [Int8Options(m, note=CALIBRATIONS[m][2]) for m in ("percentile", "entropy")]

    def int8_share(self, path: Path) -> Int8Share:
        from edgekit.formats.onnx.quantize import onnx_int8_share

        return onnx_int8_share(path)


