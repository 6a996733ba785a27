"""OpenVINO fp32: ``openvino.convert_model`` of the PyTorch module or the ONNX file, saved as an IR."""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import require
from edgekit.formats._util import quiet
from edgekit.formats.base import ExportJob, batch_example


def export_fp32(model, path: Path, job: ExportJob) -> Path:
    """``openvino.convert_model`` of the PyTorch module (or of the ONNX file given as the model),
    reshaped to the job's dynamic batch and axes, saved with fp32 weights."""
    ov = require("openvino", "openvino", "openvino")
    import torch

    source = getattr(model.module, "onnx_path", None)  # an ONNX file as the model (models/onnx_file.py)
    if source is not None:
        return _from_onnx(ov, model, source, path, job.dynamic_batch)
    examples = model.example_inputs()
    examples = batch_example(examples) if job.dynamic_batch else examples
    with quiet(), torch.no_grad():
        example = examples if len(examples) > 1 else examples[0]
        ov_model = ov.convert_model(model.module, example_input=example)
        # -1: the dynamic batch (axis 0 of every input)
        ov_model.reshape({i: _partial_shape(ov, e.shape, job.dynamic_batch,
                                            job.dynamic_axes if i == 0 else ())
                          for i, e in enumerate(examples)})
        if model.multi_io:
            _name_ports(ov_model, model)
        ov.save_model(ov_model, str(path), compress_to_fp16=False)
    return path


def _name_ports(ov_model, model) -> None:
    """Name a converted model's ports as the model names them (``InputSpec.name``, ``output_names``)."""
    for port, spec in zip(ov_model.inputs, model.inputs):
        port.get_tensor().set_names({spec.name})
    for port, name in zip(ov_model.outputs, model.output_names):
        port.get_tensor().set_names({name})


def _partial_shape(ov, shape, dynamic_batch: bool, axes) -> object:
    """An input's shape for ``reshape``: -1 for a dynamic batch (axis 0), MIN..MAX for each
    ``--dynamic-axis``."""
    dims = [ov.Dimension(int(d)) for d in shape]
    if dynamic_batch:
        dims[0] = ov.Dimension(-1)
    for a in axes:
        dims[a.axis] = ov.Dimension(a.min, a.max)
    return ov.PartialShape(dims)


def _from_onnx(ov, model, source: Path, path: Path, dynamic_batch: bool) -> Path:
    """The IR of a user's ONNX file, at the model's input shapes; with ``--dynamic-batch`` the batch
    stays dynamic where the file's is (a file exported with batch 1 may hold it in its reshapes)."""
    shapes = {}
    for i, spec in enumerate(model.inputs):
        shapes[i] = list(spec.shape)
        if dynamic_batch and model.module.dynamic_batch:
            shapes[i][spec.batch_axis] = -1
    with quiet():
        ov_model = ov.convert_model(str(source))
        ov_model.reshape(shapes)
        ov.save_model(ov_model, str(path), compress_to_fp16=False)
    return path
