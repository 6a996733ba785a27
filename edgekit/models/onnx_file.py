"""An ONNX file as the model: ``edgekit export path/to/model.onnx --int8``.

The file is read with ``onnx`` and checked; its float32 inputs give the input specs: fixed
sizes are kept and the one symbolic dimension is the batch (axis 0 when every size is fixed and
the first is 1; ``--input-shape`` pins the sizes of other symbolic dimensions, once per input for
a file with several inputs, whose batch is first in each and whose names are the graph's). The model's
``module`` is the reference, the file run in onnxruntime (``edgekit.models.onnx_reference``), so
every artefact is verified against the user's own file. The ONNX artefact is the file itself
(``copy_onnx``), brought to opset ``QUANT_OPSET`` by onnx's version converter when it is older
(onnxruntime's per-channel int8 needs it; fp32 verification against the original file proves the
converted graph computes the same), OpenVINO converts the file, and the formats that need a
PyTorch model (TFLite, ExecuTorch) are refused before any work (``check_plan``). The manifest
records the file's path and sha256 as the model's weights, its opset and any conversion
(``model.options.onnx.opset``), and the result of its own ``test_data_set_*`` folders
(``edgekit.models.onnx_testdata``); rebuilding a run checks the file is unchanged
(``check_unchanged``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import UsageError
from edgekit.models.spec import InputSpec, LoadedModel, Preprocessing
from edgekit.models.user import _describe, _preprocessing  # one rule for models from files

if TYPE_CHECKING:
    import onnx

RECURRENT_OPS = {"LSTM", "GRU", "RNN"}  # int8 for these is dynamic, as for the zoo's LSTM
LAYOUTS = {2: "NC", 3: "NTC", 4: "NCHW", 5: "NCDHW"}  # as for a user's model from a .py file
# The opset an ONNX file is brought to before it is quantized: per-channel QDQ (the axis attribute
# of QuantizeLinear/DequantizeLinear) needs 13; onnxruntime only relabels an older file as opset
# 11, which leaves an invalid graph ("Unrecognized attribute: axis for operator DequantizeLinear").
QUANT_OPSET = 13


def is_onnx_file(name: str) -> bool:
    """``path/to/model.onnx`` (checked to exist when it is loaded, so a typo gets "not found")."""
    return str(name).lower().endswith(".onnx")


def load_onnx_model(name: str, input_shape: tuple[int, ...] | None = None, batch_axis: int | None = None,
                    *, weights: Path | None = None, model_args: dict | None = None,
                    zoo_options: bool = False) -> LoadedModel:
    """The model an ONNX file holds, with onnxruntime running the file as its reference module."""
    from edgekit.models.onnx_reference import OnnxReference
    from edgekit.runs import manifest as mf

    path = Path(name)
    if zoo_options:
        raise UsageError("--num-classes, --width and --input-size apply to zoo models; an ONNX file takes "
                         "--input-shape")
    if weights is not None:
        raise UsageError(f"{path.name} holds its own weights; --weights applies to PyTorch models")
    if model_args:
        raise UsageError("--model-args applies to a model from a .py file; an ONNX file takes none")
    from edgekit.models.recurrent import recurrent_reason

    graph = read_onnx(path)
    recurrent = [f"{n.name or n.op_type} ({n.op_type})" for n in graph.graph.node
                 if n.op_type in RECURRENT_OPS]
    names = [i.name for i in graph_inputs(graph)]
    several = len(names) > 1
    if several and batch_axis:
        raise UsageError(f"--batch-axis {batch_axis}: {path.name} has {len(names)} inputs; with several "
                         "the batch must be first in each: drop --batch-axis")
    found = [input_shape_of(graph, path, pin, 0 if several else batch_axis, index=i)
             for i, pin in enumerate(_pins(input_shape, names, path))]
    shapes, axis = tuple(f[0] for f in found), found[0][1]
    dynamic = all(f[2] for f in found)  # a batch fixed in any input: one sample at a time
    reference = OnnxReference(path.resolve(), axis, 0, dynamic)
    out_axis, y = _probe(reference, shapes, axis, dynamic, path)
    reference.output_batch_axis = out_axis
    from edgekit.models.describe import guess_task
    task = guess_task(y.shape) or "sequence"  # edgekit.models.describe: (batch, 1) is a binary logit
    layout = LAYOUTS[len(shapes[0])]
    if axis:  # e.g. "TNC": the usual letters with N moved to the batch's place
        rest = layout.replace("N", "")
        layout = rest[:axis] + "N" + rest[axis:]
    first = names[0] if several else "input"  # one input keeps edgekit's name, as a .py model's
    specs = [InputSpec(shape=shapes[0], layout=layout, batch_axis=axis, name=first),
             *(InputSpec(shape=s, layout=LAYOUTS[len(s)], name=n) for s, n in zip(shapes[1:], names[1:]))]
    outputs = [o.name for o in graph.graph.output]
    from edgekit.models.onnx_testdata import check_test_data

    facts = {**_producer(graph), "opset": upgrade_opset(graph)[1]}
    tested = check_test_data(path)
    if tested is not None:
        facts["test_data"] = tested
    return LoadedModel(
        name=str(name), module=reference, task=task, input_spec=specs[0],
        preprocessing=_preprocessing(shapes[0]) if axis == 0 else Preprocessing(kind="none"),
        num_classes=int(y.shape[-1]),
        options={"input_shape": [list(s) for s in shapes] if several else list(shapes[0]),
                 "onnx": facts},
        params=_count_params(graph), macs=None,  # None: the manifest says unknown
        weights={"path": str(path.resolve()), "sha256": mf.sha256_file(path), "format": "onnx"},
        builtin_calibration=None,
        static_int8=not recurrent,
        int8_reason=recurrent_reason(recurrent),
        recurrent=tuple(recurrent),
        output_batch_axis=out_axis,
        extra_inputs=tuple(specs[1:]),
        output_names=tuple(outputs) if len(outputs) > 1 else ("output",),
    )


def _pins(input_shape, names: list[str], path: Path) -> list:
    """``--input-shape`` per input of the file (None where not given): one shape for one input,
    one per input (repeated ``--input-shape``) for several."""
    if input_shape is None:
        return [None] * len(names)
    several = isinstance(input_shape[0], (tuple, list))
    pins = [tuple(s) for s in input_shape] if several else [tuple(input_shape)]
    if len(pins) != len(names):
        raise UsageError(f"{len(pins)} --input-shape for {path.name}, which has {len(names)} inputs "
                         f"({', '.join(names)}): give one --input-shape per input, in that order")
    return pins


def read_onnx(path: Path) -> onnx.ModelProto:
    """The graph (external data not loaded), checked with onnx.checker; one UsageError line otherwise."""
    import onnx

    if not path.is_file():
        raise UsageError(f"ONNX model file {path} not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise UsageError(f"{path} is not a valid ONNX model: {_describe(exc)}") from None
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    missing = sorted({e.value for t in external for e in t.external_data
                      if e.key == "location" and not (path.parent / e.value).is_file()})
    if missing:
        raise UsageError(f"{path} keeps its weights in external data that is missing: {', '.join(missing)} "
                         "(keep those files beside the .onnx file)")
    try:
        onnx.checker.check_model(str(path))  # by path: it checks external data too
    except Exception as exc:  # noqa: BLE001 - ValidationError, or a graph it cannot parse
        raise UsageError(f"{path} is not a valid ONNX model: {_describe(exc)}") from None
    if not graph_inputs(model) or not model.graph.output:
        raise UsageError(f"{path} has no inputs or no outputs; edgekit needs a model that takes and "
                         "gives tensors")
    for inp in graph_inputs(model):
        elem = inp.type.tensor_type.elem_type
        if elem != onnx.TensorProto.FLOAT:
            kind = onnx.TensorProto.DataType.Name(elem).lower() if elem else "not a tensor"
            raise UsageError(f"{path}: input {inp.name!r} is {kind}; edgekit takes ONNX files with float32 "
                             "inputs")
    return model


def graph_inputs(model: onnx.ModelProto) -> list:
    """The graph's real inputs (files from old exporters also list their initializers as inputs)."""
    weights = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in weights]


def input_shape_of(model: onnx.ModelProto, path: Path, pinned: tuple[int, ...] | None,
                   batch_axis: int | None, index: int = 0) -> tuple[tuple[int, ...], int, bool]:
    """(the shape of input ``index`` with batch 1, the batch axis, whether the file's batch is symbolic)."""
    inp = graph_inputs(model)[index]
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
            for d in inp.type.tensor_type.shape.dim]
    symbolic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
    shown = ",".join(map(str, dims))
    if len(dims) not in LAYOUTS:
        raise UsageError(f"{path}: input {inp.name!r} ({shown}) has {len(dims)} axes; edgekit takes 2 to 5")
    if batch_axis is not None and batch_axis >= len(dims):
        raise UsageError(f"--batch-axis {batch_axis} is out of range for {path.name}'s input ({shown})")
    if pinned is None:
        if len(symbolic) > 1:
            example = ",".join("1" if i == symbolic[0] else str(d) if isinstance(d, int) else f"<{d}>"
                               for i, d in enumerate(dims))
            named = ", ".join(f"{dims[i]} (axis {i})" for i in symbolic)
            raise UsageError(f"{path.name}: input {inp.name!r} ({shown}) has {len(symbolic)} dynamic "
                             f"dimensions, {named}; only the batch may be dynamic: fix the others with "
                             f"--input-shape, e.g. --input-shape {example}")
        pinned = tuple(1 if not isinstance(d, int) else d for d in dims)
    elif len(pinned) != len(dims) or any(isinstance(d, int) and d != p for d, p in zip(dims, pinned)):
        raise UsageError(f"--input-shape {','.join(map(str, pinned))} does not fit {path.name}'s input "
                         f"{inp.name!r} ({shown})")
    axis = batch_axis if batch_axis is not None else (symbolic[0] if symbolic else 0)
    if pinned[axis] != 1:
        raise UsageError(f"{path.name}'s input ({shown}) has no batch of 1 at axis {axis}; pass "
                         "--batch-axis, or --input-shape with 1 at the batch")
    return tuple(pinned), axis, axis in symbolic


def _probe(reference, shapes: tuple[tuple[int, ...], ...], axis: int, dynamic: bool, path: Path):
    """(the first output's batch axis, that output at batch 1 as batch-first numpy): run the file."""
    import numpy as np
    import torch

    from edgekit.layout import find_output_axis

    outputs = []
    for batch in (1, 2) if dynamic else (1,):
        xs = tuple(torch.rand(s[:axis] + (batch,) + s[axis + 1 :]) for s in shapes)
        try:
            y = reference(*xs)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's load and run errors
            got = ", ".join(str(tuple(x.shape)) for x in xs)
            raise UsageError(f"onnxruntime cannot run {path} on input{'s' if len(xs) > 1 else ''} of shape "
                             f"{got}: {_describe(exc)}") from None
        outputs.append([t.numpy() for t in (y if isinstance(y, tuple) else (y,))])
    axes = ([find_output_axis(a.shape, b.shape) for a, b in zip(*outputs)] if dynamic
            else [0] * len(outputs[0]))
    for a, b, found in zip(outputs[0], outputs[-1], axes):
        if found is None:
            raise UsageError(f"{path.name}'s output {tuple(a.shape)} has no batch axis (at batch 2 it is "
                             f"{tuple(b.shape)}); edgekit needs the batch in every output")
    if len(axes) > 1 and any(axes):
        raise UsageError(f"{path.name} has {len(axes)} outputs; with several, edgekit needs the batch first "
                         f"in each (their batch axes are {axes})")
    y = np.moveaxis(outputs[0][0], axes[0], 0)
    if y.ndim not in (2, 3) or y.shape[0] != 1 or any(o.dtype != np.float32 for o in outputs[0]):
        raise UsageError(f"{path.name} returns {y.dtype} {tuple(outputs[0][0].shape)} first; edgekit needs "
                         "float32 outputs, the first of shape (batch, classes) or (batch, time, classes)")
    return axes[0], y


def _count_params(model: onnx.ModelProto) -> int:
    """Elements of the floating-point initializers (weights, biases, norm statistics)."""
    import math

    import onnx

    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
              onnx.TensorProto.BFLOAT16}
    return sum(math.prod(t.dims) for t in model.graph.initializer if t.data_type in floats)


def _producer(model: onnx.ModelProto) -> dict:
    return {"producer": f"{model.producer_name} {model.producer_version}".strip(),
            "ir_version": model.ir_version}


def upgrade_opset(model: onnx.ModelProto) -> tuple[onnx.ModelProto | None, dict]:
    """(the graph at ``QUANT_OPSET`` or None when it needs no conversion or onnx's version converter
    cannot make one, what the manifest records: {"source": 11, "converted_to": 13}, {"source": 18},
    or {"source": 8, "converted_to": None, "why": ...})."""
    import onnx
    from onnx import version_converter

    source = {o.domain or "ai.onnx": o.version for o in model.opset_import}.get("ai.onnx")
    if source is None or source >= QUANT_OPSET:
        return None, {"source": source}
    try:
        converted = version_converter.convert_version(model, QUANT_OPSET)
        onnx.checker.check_model(converted)
    except Exception as exc:  # noqa: BLE001 - the converter's adapters raise RuntimeError, ValidationError
        return None, {"source": source, "converted_to": None, "why": _describe(exc)[:300]}
    return converted, {"source": source, "converted_to": QUANT_OPSET}


def copy_onnx(source: Path, path: Path) -> Path:
    """The ONNX artefact: the file itself (its external data, if any, written inline), brought to
    opset ``QUANT_OPSET`` when it is older and onnx's version converter can (``upgrade_opset``)."""
    import onnx

    from edgekit.runs.manifest import write_atomic

    head = onnx.load(str(source), load_external_data=False)
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in head.graph.initializer)
    model = onnx.load(str(source)) if external else head
    converted = upgrade_opset(model)[0]
    if converted is not None or external:  # one file (up to 2 GB)
        return write_atomic(path, (converted or model).SerializeToString())
    return write_atomic(path, Path(source).read_bytes())


def check_unchanged(path: Path, recorded: dict | None) -> None:
    """Before a run's model is rebuilt: its ONNX file is still there and unchanged."""
    from edgekit.runs import manifest as mf

    if not path.is_file():
        raise UsageError(f"the run's ONNX model file {path} is gone; restore it to use the run")
    sha = (recorded or {}).get("sha256")
    if sha and mf.sha256_file(path) != sha:
        raise UsageError(f"the run's ONNX model file {path} changed since the export (sha256 differs); "
                         "export it again")
