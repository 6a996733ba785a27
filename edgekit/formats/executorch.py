"""ExecuTorch (``.pte``): PyTorch's own edge runtime, lowered to the XNNPACK backend.

fp32: ``torch.export`` then ``to_edge_transform_and_lower`` with the XNNPACK partitioner. int8:
PT2E with ExecuTorch's ``XNNPACKQuantizer`` on the shared calibration samples (weights int8
symmetric per-channel, activations int8 per-tensor), lowered the same way; inputs and outputs
stay float32 (the quantize/dequantize at the edges run inside the delegate). Models that static
int8 does not fit (the LSTM) get XNNPACK's dynamic int8: int8 per-channel weights of every linear
layer, the LSTM's gates included (the LSTM is decomposed into linear layers first), activations
quantized per inference.

An op XNNPACK does not take runs on ExecuTorch's portable kernels, which are much slower. Each
artefact's ``details`` (recorded in the manifest) therefore counts the ops lowered to XNNPACK at
export and lists the portable kernel calls read back from the ``.pte`` itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import DataError, ExportError, UsageError
from edgekit.formats._executorch_share import _kernel_calls
from edgekit.formats._util import calibration_batches, check_module_names, module_path
from edgekit.formats.base import (
    DYNAMIC_BATCH_MAX,
    FixedShapeSession,
    Format,
    Int8Options,
    Int8Result,
    Int8Share,
    as_outputs,
    batch_example,
    export_shapes,
    scheme_options,
)
from edgekit.layout import count

if TYPE_CHECKING:
    import numpy as np

    from edgekit.models.spec import LoadedModel

METHODS = {
    "default": "int8 per-tensor (histogram observer)",
    "minmax": "int8 per-tensor (min/max observer: ranges cover every calibration value)",
}
BACKEND = "XnnpackBackend"


class ExecuTorchSession(FixedShapeSession):
    """A ``.pte`` program in ExecuTorch's Python runtime; float32 in, float32 out, batch as exported."""

    runtime = "executorch"
    device = "CPU XNNPACK"
    what = "the ExecuTorch program"

    def __init__(self, path: Path, num_threads: int | None = None):
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        from edgekit.formats._util import dist_version

        if num_threads:  # XNNPACK's thread pool is one per process
            portable_lib._unsafe_reset_threadpool(int(num_threads))
        self._torch = torch
        self.runtime_version = dist_version("executorch") or ""
        self._method = Runtime.get().load_program(Path(path)).load_method("forward")
        meta = self._method.metadata
        # the shapes, or their bounds where the batch is dynamic; inputs are positional (no names)
        self.input_shapes = tuple(tuple(int(d) for d in meta.input_tensor_meta(i).sizes())
                                  for i in range(meta.num_inputs()))
        self.input_shape = self.input_shapes[0]
        self.input_names = tuple(f"input_{i}" for i in range(len(self.input_shapes)))
        self.dynamic_batch = _input_is_dynamic(Path(path))

    def _invoke(self, x):
        xs = x if isinstance(x, tuple) else (x,)
        outputs = self._method.execute([self._torch.from_numpy(a) for a in xs])
        return as_outputs([o.detach().numpy() for o in outputs])


class ExecuTorchFormat(Format):
    name = "executorch"
    extension = ".pte"
    extra = "executorch"
    requires = (("executorch.exir", "executorch"),)
    tools = ("executorch", "torchao")
    runtimes = ("executorch",)
    colour = "#2ca02c"
    export_cost = 4.0  # resnet50 --int8: 47 s against ONNX's 13 s (issue 13)

    def __init__(self) -> None:
        self._lowered: dict[str, dict] = {}  # sha256 of a written .pte -> what lowering delegated
        # (id of the module, dynamic batch) -> (the fp32 capture as a module, capture mode): static
        # int8 quantizes the very graph fp32 lowered, so one torch.export serves both (issue 13)
        self._captured: dict[tuple[int, bool], tuple[Any, str]] = {}

    def export_fp32(self, model: LoadedModel, path: Path) -> Path:
        try:
            program, capture = _capture(model.module.eval(), model.example_inputs(), self.dynamic_batch,
                                        self.dynamic_axes)
        except Exception as exc:  # noqa: BLE001 - torch.export fixed a --dynamic-axis: keep its size
            if not self.dynamic_axes or "specialized" not in str(exc):
                raise
            names = ", ".join(a.name for a in self.dynamic_axes)
            self.axes_note = (f"torch.export fixes {names} to the size of --input-shape in this model "
                              "(recurrent layers are unrolled step by step): the ExecuTorch artefacts keep "
                              "it")
            self.dynamic_axes = ()
            program, capture = _capture(model.module.eval(), model.example_inputs(), self.dynamic_batch)
        if model.static_int8:  # taken before lowering, which may rewrite the program
            self._captured[(id(model.module), self.dynamic_batch)] = (program.module(), capture)
        self._write(program, Path(path))
        return Path(path)

    def export_int8(self, model: LoadedModel, fp32_path: Path, calib: np.ndarray, path: Path,
                    options: Int8Options | None = None) -> Int8Result:
        options = options or Int8Options()
        if options.method not in METHODS:
            raise UsageError(f"unknown ExecuTorch int8 method {options.method!r}; "
                             f"known: {', '.join(METHODS)}")
        check_module_names(model, options.exclude)
        dynamic = not model.static_int8
        if not dynamic and count(calib) == 0:
            raise DataError("static int8 needs calibration samples, got none")
        example = model.example_inputs()
        samples = [example] if dynamic else calibration_batches(calib, model)
        captured = self._captured.pop((id(model.module), self.dynamic_batch), None)
        program, capture = _quantize(model.module.eval(), example, samples, options, dynamic,
                                     self.dynamic_batch, captured, self.dynamic_axes)
        self._write(program, Path(path))
        if dynamic:
            scheme = {"type": "dynamic",
                      "weights": "int8 symmetric per-channel (every linear, incl. LSTM gates)",
                      "activations": "float32; quantized to int8 per inference by XNNPACK",
                      "calibration_samples": 0}
        else:
            scheme = {"type": "static", "weights": "int8 symmetric per-channel",
                      "activations": METHODS[options.method], "calibration_samples": count(calib)}
        tool = "ExecuTorch XNNPACKQuantizer PT2E" + (" (dynamic)" if dynamic else "")
        scheme.update(io="float32", tool=tool, export=capture, **scheme_options(options))
        return Int8Result(path=Path(path), scheme=scheme)

    def remedies(self, model: LoadedModel) -> list[Int8Options]:
        return [Int8Options("minmax", note=METHODS["minmax"])] if model.static_int8 else []

    def open(self, path: Path, threads: int | None = None) -> ExecuTorchSession:
        return ExecuTorchSession(Path(path), num_threads=threads)

    def int8_share(self, path: Path) -> Int8Share:
        from edgekit.formats._executorch_share import executorch_int8_share

        return executorch_int8_share(Path(path))

    def details(self, path: Path) -> dict:
        """Ops lowered to XNNPACK (from this export) and portable kernel calls (read from the file)."""
        data = Path(path).read_bytes()
        portable, delegate_calls = _kernel_calls(data)
        found = {"backend": BACKEND, "delegate_calls": delegate_calls, "portable_kernels": portable}
        lowered = self._lowered.get(hashlib.sha256(data).hexdigest())
        if lowered:
            found.update(lowered)
            total = lowered["delegated_ops"] + lowered["portable_ops"]
            share = f"{lowered['delegated_share']:.0%} of {total} ops"
        else:
            share = f"{delegate_calls} delegate calls"
        slow = ", ".join(f"{op} x{n}" for op, n in sorted(portable.items())) or "none"
        found["summary"] = f"XNNPACK runs {share}; portable kernels: {slow}"
        if getattr(self, "axes_note", ""):
            found["dynamic_axes"] = self.axes_note
            found["summary"] += f"\n   note: {self.axes_note}"
        return found

    def _write(self, program: Any, path: Path) -> None:
        """Lower ``program`` (an ExportedProgram) to XNNPACK, write ``path``, remember the delegation."""
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        from edgekit.runs.manifest import write_atomic

        try:
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
            _restore_batch_range(edge.exported_program())
            lowered = _delegation(edge.exported_program().graph_module)
            data = edge.to_executorch().buffer
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ExportError(f"ExecuTorch could not lower the model: {type(exc).__name__}: "
                              f"{first[:300]}") from exc
        write_atomic(path, bytes(data))
        self._lowered[hashlib.sha256(data).hexdigest()] = lowered


def _capture(module: Any, examples: tuple, dynamic_batch: bool = False, axes: tuple = ()) -> tuple[Any, str]:
    """torch.export of ``module(*examples)``, strict (dynamo) first and non-strict where dynamo
    cannot trace the model; ``dynamic_batch``: axis 0 of every input a ``Dim`` of 1 to
    ``DYNAMIC_BATCH_MAX`` (traced at ``TRACE_BATCH``)."""
    import torch

    kwargs: dict = {}
    shapes = export_shapes(examples, dynamic_batch, axes, bounded=True)
    if shapes:
        kwargs["dynamic_shapes"] = shapes
    if dynamic_batch:
        examples = batch_example(examples)
    with torch.no_grad():
        try:
            return torch.export.export(module, examples, strict=True, **kwargs), "torch.export strict"
        except Exception:  # noqa: BLE001 - non-strict still works where dynamo gives up
            return torch.export.export(module, examples, strict=False, **kwargs), "torch.export non-strict"


def _restore_batch_range(program: Any) -> None:
    """Give the batch symbol back its declared range [1, DYNAMIC_BATCH_MAX] before memory planning.

    Lowering re-runs PyTorch's fake convolution, whose CPU backend choice guards ``batch < 16``
    (torch/_subclasses/fake_impls.py, conv) and so narrows the range: the program would refuse
    batch 16 and more. That guard is about PyTorch's own conv kernels, not XNNPACK's, which take
    any batch (checked at 40 and 64 against PyTorch)."""
    import torch
    from torch.utils._sympy.value_ranges import ValueRanges

    for node in program.graph.nodes:
        val = node.meta.get("val") if node.op == "placeholder" else None
        size = val.shape[0] if isinstance(val, torch.Tensor) and val.dim() else None
        if isinstance(size, torch.SymInt) and size.node.expr.is_symbol:
            size.node.shape_env.var_to_range[size.node.expr] = ValueRanges(1, DYNAMIC_BATCH_MAX)


def _input_is_dynamic(path: Path) -> bool:
    """Whether the ``.pte``'s input has a bounded dynamic shape (the runtime's meta gives only sizes)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    pte = deserialize_pte_binary(Path(path).read_bytes())
    plan = getattr(pte, "program", pte).execution_plan[0]
    tensor = plan.values[plan.inputs[0]].val
    return int(getattr(tensor, "shape_dynamism", 0)) != 0  # 0: STATIC


def _quantize(module: Any, example: Any, samples: list, options: Int8Options, dynamic: bool,
              dynamic_batch: bool = False, captured: tuple[Any, str] | None = None,
              axes: tuple = ()) -> tuple[Any, str]:
    """PT2E: capture (or take fp32's ``captured`` module), prepare, calibrate, convert; the
    quantized ExportedProgram and capture mode."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if captured is not None and not dynamic:
        graph, capture = captured
    else:
        program, capture = _capture(module, example, dynamic_batch, axes)
        if dynamic:  # decompose the LSTM into its linear layers, keeping linear for the quantizer
            table = torch.export.default_decompositions()
            table.pop(torch.ops.aten.linear.default, None)
            program = program.run_decompositions(table)
        graph = program.module()
    quantizer = _quantizer(options, dynamic)
    with torch.no_grad():
        prepared = prepare_pt2e(graph, quantizer)
        for sample in samples:
            prepared(*sample)
        converted = convert_pt2e(prepared)
        shapes = export_shapes(example, dynamic_batch, axes, bounded=True)
        kwargs = {"dynamic_shapes": shapes} if shapes else {}
        traced = batch_example(example) if dynamic_batch else example
        return torch.export.export(converted, traced, strict=False, **kwargs), capture


def _quantizer(options: Int8Options, dynamic: bool) -> Any:
    """XNNPACKQuantizer, symmetric per-channel; "minmax" swaps the activation observer; the
    ``exclude`` modules (PyTorch module paths) are left unannotated, so they stay float."""
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    if options.method == "minmax" and not dynamic:
        from torchao.quantization.pt2e.observer import MinMaxObserver

        act = dataclasses.replace(config.input_activation,
                                  observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    quantizer = XNNPACKQuantizer().set_global(config)
    if options.exclude:
        exclude = tuple(options.exclude)

        def keep(node: Any) -> bool:
            paths = {module_path(p) for p, _ in node.meta.get("nn_module_stack", {}).values()}
            return not any(p == name or p.startswith(f"{name}.") for p in paths for name in exclude)

        quantizer.set_filter_function(keep)
    return quantizer


def _delegation(graph_module: Any) -> dict:
    """Ops the partitioner gave XNNPACK vs ops left to portable kernels (getitem is bookkeeping)."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    table = info.get_operator_delegation_dataframe()
    rows = [r for r in table.to_dict("records") if r["op_type"] not in ("getitem", "Total")]
    delegated = sum(int(r["occurrences_in_delegated_graphs"]) for r in rows)
    portable = sum(int(r["occurrences_in_non_delegated_graphs"]) for r in rows)
    return {
        "delegated_ops": delegated,
        "portable_ops": portable,
        "delegated_share": delegated / (delegated + portable) if delegated + portable else 1.0,
        "delegated_subgraphs": int(info.num_delegated_subgraphs),
    }
