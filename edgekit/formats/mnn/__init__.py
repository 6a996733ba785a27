"""MNN (Alibaba's mobile inference engine): fp32 converted by MNN's own converter from the model's
ONNX export (``convert.py``), int8 by MNN's offline quantizer on edgekit's calibration samples
(``quantize.py``), run in MNN's Python runtime (``runtime.py``), on this machine and on ARM boards
from the same wheel. Written with ``--to mnn`` (not by default)."""

from __future__ import annotations

from pathlib import Path

from edgekit.formats.base import Format, Int8Options, Int8Share


class MnnFormat(Format):
    name = "mnn"
    extension = ".mnn"
    default = False  # --to mnn
    extra = "mnn"
    requires = (("MNN", "MNN"),)
    tools = ("MNN",)
    runtimes = ("MNN",)
    probe = {"MNN": ("MNN", ("MNN",))}
    runtime_labels = {"MNN": "mnn"}
    device_packages = ("MNN",)
    colour = "#8c564b"
    takes_onnx = True
    export_cost = 1.5  # the ONNX export, then MNN's converter (under a second for resnet50)
    # what a target profile's [mnn] table may set: "low" computes in fp16 where the CPU can
    target_settings = {"precision": ("mnn_precision", "high")}
    fixed_batch_reason = ("MNN stores batch 1 and crashes on a graph that cannot take another, so edgekit "
                          "keeps MNN artefacts at batch 1 (they run larger batches one sample at a time)")
    fixed_axes_reason = ("MNN stores the sizes it was converted at and crashes on a graph that cannot take "
                         "others: the MNN artefacts keep the sizes of --input-shape")

    @classmethod
    def target_device(cls, settings: dict) -> str | None:
        return f"MNN CPU (precision {settings['precision']})"

    def remedies(self, model) -> list[Int8Options]:
        """MNN's other activation-range methods."""
        from edgekit.formats.mnn.quantize import METHODS

        return [Int8Options(m, note=METHODS[m][1]) for m in ("kl", "ema")] if model.static_int8 else []

    def int8_share(self, path: Path) -> Int8Share:
        from edgekit.formats.mnn.quantize import mnn_int8_share

        return mnn_int8_share(Path(path))
