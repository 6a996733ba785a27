"""OpenVINO IR: openvino.convert_model + save_model (fp32 weights kept, ``convert.py``), int8 with NNCF
(``quantize.py``), run by the OpenVINO runtime (``runtime.py``)."""

from __future__ import annotations

from pathlib import Path

from edgekit.formats.base import Format, Int8Options, Int8Share


class OpenVinoFormat(Format):
    name = "openvino"
    extension = ".xml"
    extra = "openvino"
    requires = (("openvino", "openvino"), ("nncf", "nncf"))
    companions = (".bin",)  # the weights
    files_note = "an OpenVINO IR is the .xml and its .bin"
    tools = ("openvino", "nncf")
    runtimes = ("openvino",)
    colour = "#9467bd"
    target_settings = {"device": ("openvino_device", "CPU")}  # CPU, GPU, NPU, AUTO
    probe = {"openvino": ("openvino", ("openvino",))}
    runtime_labels = {"openvino": "ov"}
    device_packages = ("openvino",)
    takes_onnx = True
    compat = "compat"
    inspect = "inspect"

    @classmethod
    def target_device(cls, settings: dict) -> str | None:
        return f"OpenVINO {settings['device']}"
    validated_methods = ("accuracy_control",)

    def remedies(self, model) -> list[Int8Options]:
        """NNCF's own alternatives, cheapest first: the mixed preset (asymmetric activations), histogram-
        optimised activation ranges, then full bias correction (slower: it runs the model layer by layer).
        SmoothQuant (model_type=TRANSFORMER) is for transformers, which edgekit's models are not."""
        if not model.static_int8:
            return []
        from edgekit.formats.openvino.quantize import NNCF_METHODS

        methods = ("mixed", "histogram", "bias_correction", "accuracy_control")
        return [Int8Options(m, note=NNCF_METHODS[m]) for m in methods]

    def int8_share(self, path: Path) -> Int8Share:
        from edgekit.formats.openvino.quantize import openvino_int8_share

        return openvino_int8_share(path)


