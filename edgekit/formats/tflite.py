"""TFLite (LiteRT): export through litert-torch, int8 through its PT2E quantizer, run on ai-edge-litert.

Static int8 is full-integer: weights int8 symmetric per-channel, activations int8 per-tensor, and
the model's own input and output tensors are int8 as well. ``TFLiteSession`` therefore quantizes
inputs and dequantizes outputs with each tensor's own scale and zero point, so callers always
exchange float32 arrays. Models that static int8 does not fit (the LSTM) get dynamic-range int8:
int8 per-channel weights, float32 activations quantized on the fly by the runtime's kernels.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import DataError, ExportError, MissingDependencyError, UsageError
from edgekit.formats._tflite_runtime import TFLiteSession, _interpreter, _quiet_environment, signature_order
from edgekit.formats._util import calibration_batches, check_module_names, module_path
from edgekit.formats.base import Format, Int8Options, Int8Result, Int8Share, scheme_options
from edgekit.layout import count

if TYPE_CHECKING:
    import numpy as np

    from edgekit.models.spec import LoadedModel

CONVERTER = "litert-torch"
TOOL = "litert-torch PT2E"
# Static int8 methods: how activation ranges are found.
METHODS = {
    "default": "int8 per-tensor (histogram observer)",
    "minmax": "int8 per-tensor (min/max observer: ranges cover every calibration value)",
    "aeq": "int8 asymmetric per-tensor (ai-edge-quantizer static_wi8_ai8 recipe on the fp32 flatbuffer)",
}


_quiet_environment()  # before check_available() first imports litert_torch


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
    colour = "#ff7f0e"
    export_cost = 3.5  # resnet50 --int8: 35 s against ONNX's 13 s (issue 13)
    # litert-torch 0.10 accepts dynamic_shapes but lowers each op through JAX, which needs static
    # shapes (a symbolic batch fails at the first reshape; litert-torch PR #1024, issue #870); and a
    # batch-1 flatbuffer's reshapes keep batch 1, so resize_tensor_input cannot change it either.
    fixed_axes_reason = ("litert-torch cannot convert a variable axis (it lowers ops through JAX, which "
                         "needs static shapes): the TFLite artefacts keep the sizes of --input-shape")
    fixed_batch_reason = ("litert-torch cannot convert a dynamic batch (it lowers ops through JAX, "
                          "which needs static shapes): the TFLite artefacts keep batch 1")

    def export_fp32(self, model: LoadedModel, path: Path) -> Path:
        litert_torch = _import_litert_torch()
        with _quiet():
            edge = _convert(litert_torch, model.module.eval(), model.example_inputs())
        return _write(edge, Path(path))

    def export_int8(
        self,
        model: LoadedModel,
        fp32_path: Path,
        calib: np.ndarray,
        path: Path,
        options: Int8Options | None = None,
    ) -> Int8Result:
        """Static full-integer int8 for ``model.static_int8``, dynamic-range int8 otherwise.

        litert-torch quantizes the PyTorch graph, not the flatbuffer, so ``fp32_path`` is read only
        by the "aeq" method (ai-edge-quantizer quantizes the fp32 flatbuffer).
        """
        options = options or Int8Options()
        if options.method not in METHODS:
            raise UsageError(f"unknown TFLite int8 method {options.method!r}; known: {', '.join(METHODS)}")
        check_module_names(model, options.exclude)
        if not model.static_int8:
            return _export_dynamic(model, Path(path), options)
        if options.method == "aeq":
            if options.exclude:
                raise UsageError("the TFLite 'aeq' method cannot keep layers in float; use the PT2E methods")
            return _export_aeq(model, Path(fp32_path), calib, Path(path))
        return _export_static(model, calib, Path(path), options)

    def remedies(self, model: LoadedModel) -> list[Int8Options]:
        """ai-edge-quantizer's static int8 recipe on the fp32 flatbuffer (when it is installed; it
        comes with litert-torch), then the PT2E min/max observer instead of the histogram one."""
        if not model.static_int8:
            return []
        found = [Int8Options("aeq", note=METHODS["aeq"])] if _has_aeq() else []
        return [*found, Int8Options("minmax", note=METHODS["minmax"])]

    def can_exclude(self, options: Int8Options) -> bool:
        return options.method != "aeq"

    def open(self, path: Path, threads: int | None = None) -> TFLiteSession:
        return TFLiteSession(Path(path), num_threads=threads)

    def int8_share(self, path: Path) -> Int8Share:
        from edgekit.formats._tflite_share import tflite_int8_share

        return tflite_int8_share(Path(path))

    def tool_versions(self) -> dict[str, str]:
        versions = super().tool_versions()
        if "ai-edge-litert" in versions:  # tflite-runtime is only the fallback runtime
            versions.pop("tflite-runtime", None)
        return versions


def _export_static(model: LoadedModel, calib: np.ndarray, path: Path, options: Int8Options) -> Int8Result:
    """torch.export -> prepare_pt2e -> calibrate on every sample -> convert_pt2e -> convert."""
    if count(calib) == 0:
        raise DataError("static int8 needs calibration samples, got none")
    samples = calibration_batches(calib, model)
    capture = _quantize_pt2e(model, samples, dynamic=False, path=path, options=options)
    scheme = {
        "type": "static",
        "weights": "int8 symmetric per-channel",
        "activations": METHODS[options.method],
        "io": _io_dtypes(path),
        "calibration_samples": count(calib),
        "tool": TOOL,
        "export": capture,
        **scheme_options(options),
    }
    return Int8Result(path=path, scheme=scheme)


def _export_dynamic(model: LoadedModel, path: Path, options: Int8Options) -> Int8Result:
    """Dynamic-range int8: int8 weights, activations quantized at run time; no calibration."""
    capture = _quantize_pt2e(model, [model.example_inputs()], dynamic=True, path=path, options=options)
    scheme = {
        "type": "dynamic",
        "weights": "int8 symmetric per-channel (linear/conv, incl. LSTM gates)",
        "activations": "float32; quantized to int8 per inference by dynamic-range kernels",
        "io": _io_dtypes(path),
        "calibration_samples": 0,
        "tool": f"{TOOL} (dynamic)",
        "export": capture,
        **scheme_options(options),
    }
    return Int8Result(path=path, scheme=scheme)


def _export_aeq(model: LoadedModel, fp32_path: Path, calib: np.ndarray, path: Path) -> Int8Result:
    """ai-edge-quantizer's static_wi8_ai8 recipe, calibrated on the fp32 flatbuffer's signature."""
    from ai_edge_quantizer import quantizer, recipe

    from edgekit.formats._util import quiet
    from edgekit.runs.manifest import write_atomic

    if count(calib) == 0:
        raise DataError("static int8 needs calibration samples, got none")
    interpreter_cls, _, _ = _interpreter()
    signatures = interpreter_cls(model_path=str(fp32_path)).get_signature_list()
    key = next(iter(signatures))
    names = signature_order(signatures[key]["inputs"])  # the model's inputs in order
    batches = calibration_batches(calib, model, torch_tensors=False)
    data = {key: [dict(zip(names, b)) for b in batches]}
    with quiet(), _quiet():
        q = quantizer.Quantizer(str(fp32_path))
        q.load_quantization_recipe(recipe.static_wi8_ai8())
        result = q.quantize(q.calibrate(data, num_threads=min(os.cpu_count() or 1, 4)))
    write_atomic(path, bytes(result.quantized_model))
    scheme = {
        "type": "static",
        "weights": "int8 symmetric per-channel",
        "activations": METHODS["aeq"],
        "io": _io_dtypes(path),
        "calibration_samples": count(calib),
        "tool": f"ai-edge-quantizer {_version('ai-edge-quantizer')}".strip(),
        **scheme_options(Int8Options("aeq")),
    }
    return Int8Result(path=path, scheme=scheme)


def _quantize_pt2e(model: LoadedModel, samples: Iterable[Any], dynamic: bool, path: Path,
                   options: Int8Options) -> str:
    """Quantize with litert-torch's PT2E quantizer and write ``path``; return the capture mode."""
    litert_torch = _import_litert_torch()
    import torch
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = model.example_inputs()
    quantizer = _quantizer(_config(options.method, dynamic), options.exclude)
    with _quiet(), torch.no_grad():
        graph, capture = _capture(model.module.eval(), example)
        with contextlib.redirect_stdout(io.StringIO()):  # the annotators print() notes
            prepared = prepare_pt2e(graph, quantizer)
        for sample in samples:  # dynamic: weight observers need one pass, activations none
            prepared(*sample)
        quantized = _mark_eval(convert_pt2e(prepared, fold_quantize=False))
        edge = _convert(litert_torch, quantized, example, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    _write(edge, path)
    return capture


def _config(method: str, dynamic: bool) -> Any:
    """litert-torch's symmetric per-channel config; "minmax" swaps the activation observer."""
    import dataclasses

    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e.observer import MinMaxObserver

    config = pq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    if method != "minmax" or dynamic:
        return config
    act = dataclasses.replace(config.input_activation,
                              observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return dataclasses.replace(config, input_activation=act, output_activation=act)


def _quantizer(config: Any, exclude: tuple[str, ...]) -> Any:
    """A PT2EQuantizer that leaves the ops of the ``exclude`` modules (PyTorch module paths) in float.

    litert-torch's own ``set_module_name`` refuses a None config and reads module names from
    ``nn_module_stack`` keys, which torch 2.13 no longer spells as paths; this filter reads the
    paths recorded beside them.

    Limitation: litert-torch converts in the LiteRT converter's STATIC QDQ mode, which quantizes a
    float op whose inputs are dequantized and whose output is quantized again; so a layer excluded
    between two int8 neighbours comes back int8. Exclusion takes effect where a float run reaches
    a float edge (the classifier, the model's ends) or spans the neighbours too.
    """
    from litert_torch.quantize import pt2e_quantizer as pq

    class Quantizer(pq.PT2EQuantizer):
        def _annotate_for_static_quantization_config(self, model):
            return self._annotate_all_static_patterns(model, self.global_config, keep)

        def _annotate_for_dynamic_quantization_config(self, model):
            return self._annotate_all_dynamic_patterns(model, self.global_config, keep)

    def keep(node: Any) -> bool:
        paths = {module_path(p) for p, _ in node.meta.get("nn_module_stack", {}).values()}
        return not any(p == name or p.startswith(f"{name}.") for p in paths for name in exclude)

    return Quantizer().set_global(config)


def _has_aeq() -> bool:
    import importlib.util

    return importlib.util.find_spec("ai_edge_quantizer") is not None


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _capture(module: Any, examples: tuple | Any) -> tuple[Any, str]:
    """Export for PT2E (``module(*examples)``); strict (dynamo) first, because only strict export
    records the ``source_fn_stack`` that litert-torch's annotators need to find cat, add and max-pool."""
    import torch

    examples = examples if isinstance(examples, tuple) else (examples,)  # one tensor: one input
    try:
        graph, capture = torch.export.export(module, examples, strict=True).module(), "strict"
    except Exception:  # noqa: BLE001 - dynamo cannot trace every model; non-strict still works
        graph, capture = torch.export.export(module, examples, strict=False).module(), "non-strict"
    _remove_dropout(graph)
    return graph, f"torch.export {capture}"


def _remove_dropout(graph: Any) -> None:
    """Drop eval-mode dropout nodes (identities).

    litert-torch miscompiles an identity between two differently-quantized tensors: with a
    dropout before GoogLeNet's classifier the int8 output's cosine to PyTorch fell to 0.68.
    """
    import torch

    aten = torch.ops.aten
    targets = {
        aten.dropout.default,
        aten.dropout_.default,
        aten.feature_dropout.default,
        aten.alpha_dropout.default,
        aten.feature_alpha_dropout.default,
    }
    for node in list(graph.graph.nodes):
        train = node.args[2] if len(node.args) > 2 else node.kwargs.get("train", True)
        if node.op == "call_function" and node.target in targets and not train:
            node.replace_all_uses_with(node.args[0])
            graph.graph.erase_node(node)
    graph.graph.lint()
    graph.recompile()


def _convert(litert_torch: Any, module: Any, examples: tuple, **kwargs: Any) -> Any:
    """litert-torch's conversion of ``module(*examples)``: its signature takes the inputs in order."""
    try:
        return litert_torch.convert(module, examples, **kwargs)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportError(f"litert-torch could not convert the model: {type(exc).__name__}: {first}") from exc


def _io_dtypes(path: Path) -> str:
    """What the artefact really takes and gives, e.g. "int8" or "float32 in, int8 out"."""
    session = TFLiteSession(path)
    if session.input_dtype == session.output_dtype:
        return session.input_dtype
    return f"{session.input_dtype} in, {session.output_dtype} out"


def _mark_eval(graph: Any) -> Any:
    """Mark a converted PT2E graph as inference (exported graphs refuse ``.eval()``)."""
    for module in graph.modules():
        module.training = False
    return graph


def _write(edge: Any, path: Path) -> Path:
    """Write the flatbuffer to a temporary name beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        edge.export(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _import_litert_torch() -> Any:
    _quiet_environment()
    try:
        import litert_torch
    except ImportError as exc:
        raise MissingDependencyError(CONVERTER, "tflite") from exc
    return litert_torch


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide the converters' deprecation chatter; errors still propagate."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*were assigned during export.*")
        warnings.filterwarnings("ignore", message=".*is an Enum subclass.*")
        yield
