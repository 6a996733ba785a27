"""TFLite (LiteRT): export through litert-torch, int8 through its PT2E quantizer, run on ai-edge-litert.

Static int8 is full-integer: weights int8 symmetric per-channel, activations int8 per-tensor, and
the model's own input and output tensors are int8 as well. Its session (``runtime.py``) therefore
quantizes inputs and dequantizes outputs with each tensor's own scale and zero point, so callers
always exchange float32 arrays. Models that static int8 does not fit (the LSTM) get dynamic-range int8:
int8 per-channel weights, float32 activations quantized on the fly by the runtime's kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.formats.base import Format, Int8Options, Int8Share
from edgekit.formats.tflite.convert import CONVERTER
from edgekit.formats.tflite.runtime import quiet_environment

if TYPE_CHECKING:
    from edgekit.models.spec import LoadedModel

quiet_environment()  # before check_available() first imports litert_torch


class TFLiteFormat(Format):
    """TFLite flatbuffers converted by litert-torch; one ``.tflite`` file per artefact."""

    name = "tflite"
    extension = ".tflite"
    extra = "tflite"
    requires = (("litert_torch", CONVERTER),)
    export_last = True  # litert-torch starts JAX threads; NNCF later forks workers (JAX warns: deadlocks)
    # litert-torch converts, torchao runs its PT2E prepare/convert, ai-edge-litert runs
    tools = (CONVERTER, "torchao", "ai-edge-litert", "tflite-runtime")
    runtimes = ("ai-edge-litert", "tflite-runtime")  # tflite-runtime: what many Raspberry Pis run
    probe = {"ai-edge-litert": ("ai_edge_litert", ("ai-edge-litert", "ai-edge-litert-nightly")),
             "tflite-runtime": ("tflite_runtime", ("tflite-runtime", "tflite_runtime")),
             "tflite-micro": ("tflite_micro", ("tflite-micro",))}  # microcontroller targets' (edgekit.mcu)
    runtime_labels = {"ai-edge-litert": "litert", "tflite-runtime": "tflite-rt", "tflite-micro": "tflm"}
    device_packages = ("ai-edge-litert",)
    compat = "compat"
    inspect = "inspect"
    colour = "#ff7f0e"
    export_cost = 3.5  # resnet50 --int8: 35 s against ONNX's 13 s (issue 13)
    # litert-torch 0.10 accepts dynamic_shapes but lowers each op through JAX, which needs static
    # shapes (a symbolic batch fails at the first reshape; litert-torch PR #1024, issue #870); and a
    # batch-1 flatbuffer's reshapes keep batch 1, so resize_tensor_input cannot change it either.
    fixed_axes_reason = ("litert-torch cannot convert a variable axis (it lowers ops through JAX, which "
                         "needs static shapes): the TFLite artefacts keep the sizes of --input-shape")
    fixed_batch_reason = ("litert-torch cannot convert a dynamic batch (it lowers ops through JAX, "
                          "which needs static shapes): the TFLite artefacts keep batch 1")

    def export_fp32(self, model, path):
        """The fp32 flatbuffer; for a microcontroller target rewritten where TFLite Micro's kernels
        need it (a CONCATENATION of more than 10 inputs: ``micro_int8.fit_to_tflm``), so that TFLM
        runs it too, before it is verified."""
        path = super().export_fp32(model, path)
        if self.job.full_integer:
            from edgekit.formats.tflite.micro_int8 import fit_to_tflm
            from edgekit.runs.manifest import write_atomic

            data, rewrites = fit_to_tflm(Path(path).read_bytes())
            if rewrites:
                write_atomic(Path(path), data)
        return path

    def export_int8(self, model, fp32_path, calib, path, options=None):
        """The format's int8 (``quantize.py``), or full-integer int8 when the export's target is a
        microcontroller (``ExportJob.full_integer``: TensorFlow Lite Micro's kernels; ``micro_int8.py``)."""
        if not self.job.full_integer:
            return super().export_int8(model, fp32_path, calib, path, options)
        from edgekit.formats.tflite.micro_int8 import export_full_integer

        result = export_full_integer(model, Path(fp32_path), calib, Path(path), options)
        result.scheme["chosen"] = {"scheme": "full-integer", "why": self.job.full_integer}
        return result

    def remedies(self, model: LoadedModel) -> list[Int8Options]:
        """ai-edge-quantizer's static int8 recipe on the fp32 flatbuffer (when it is installed; it
        comes with litert-torch), then the PT2E min/max observer instead of the histogram one."""
        if not model.static_int8:
            return []
        from edgekit.formats.tflite.quantize import METHODS

        found = [Int8Options("aeq", note=METHODS["aeq"])] if _has_aeq() else []
        return [*found, Int8Options("minmax", note=METHODS["minmax"])]

    def can_exclude(self, options: Int8Options) -> bool:  # full-integer: TFLM has no float kernels
        return options.method != "aeq" and not self.job.full_integer

    def int8_share(self, path: Path) -> Int8Share:
        from edgekit.formats.tflite.share import tflite_int8_share

        return tflite_int8_share(Path(path))

    def tool_versions(self) -> dict[str, str]:
        versions = super().tool_versions()
        if "ai-edge-litert" in versions:  # tflite-runtime is only the fallback runtime
            versions.pop("tflite-runtime", None)
        return versions


def _has_aeq() -> bool:
    import importlib.util

    return importlib.util.find_spec("ai_edge_quantizer") is not None


