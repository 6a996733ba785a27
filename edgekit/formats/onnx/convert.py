"""ONNX fp32: torch.onnx's dynamo exporter (or the user's ONNX file, copied)."""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import require
from edgekit.formats._util import quiet
from edgekit.formats.base import ExportJob, batch_example, export_shapes

OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def export_fp32(model, path: Path, job: ExportJob) -> Path:
    """torch.onnx's dynamo exporter at opset ``OPSET`` (an ONNX file given as the model is copied,
    its opset upgraded where needed); the job's dynamic batch and axes become symbolic dimensions."""
    import torch

    source = getattr(model.module, "onnx_path", None)  # an ONNX file as the model (models/onnx_file.py)
    if source is not None:
        from edgekit.models.onnx_file import copy_onnx

        return copy_onnx(source, path)
    require("onnxscript", "onnxscript", "onnx")
    # --dynamic-batch: axis 0 of every input and output is the symbolic dimension "batch"
    examples = model.example_inputs()
    shapes = export_shapes(examples, job.dynamic_batch, job.dynamic_axes)
    dynamic = {"dynamic_shapes": shapes} if shapes else {}
    examples = batch_example(examples) if job.dynamic_batch else examples
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


def io_names(model) -> tuple[list[str], list[str]]:
    """The artefact's input and output names: "input"/"output" for one, the model's own for several."""
    inputs = [s.name for s in model.inputs] if len(model.inputs) > 1 else [INPUT_NAME]
    outputs = list(model.output_names) if len(model.output_names) > 1 else [OUTPUT_NAME]
    return inputs, outputs
