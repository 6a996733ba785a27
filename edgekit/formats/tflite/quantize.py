"""TFLite int8: litert-torch's PT2E quantizer (static full-integer, or dynamic-range for recurrent
models), or ai-edge-quantizer's static recipe on the fp32 flatbuffer ("aeq")."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import DataError, UsageError
from edgekit.formats._util import calibration_batches, check_module_names, module_path
from edgekit.formats.base import Int8Options, Int8Result, scheme_options
from edgekit.formats.tflite.convert import _convert, _import_litert_torch, _quiet, _write
from edgekit.formats.tflite.runtime import interpreter, signature_order
from edgekit.layout import count

if TYPE_CHECKING:
    import numpy as np

    from edgekit.models.spec import LoadedModel


TOOL = "litert-torch PT2E"
# Static int8 methods: how activation ranges are found.
METHODS = {
    "default": "int8 per-tensor (histogram observer)",
    "minmax": "int8 per-tensor (min/max observer: ranges cover every calibration value)",
    "aeq": "int8 asymmetric per-tensor (ai-edge-quantizer static_wi8_ai8 recipe on the fp32 flatbuffer)",
}



def export_int8(model, fp32_path: Path, calib: np.ndarray, path: Path,
                options: Int8Options | None = None) -> Int8Result:
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
    from ai_edge_quantizer import recipe

    from edgekit.runs.manifest import write_atomic

    write_atomic(path, aeq_quantize(model, fp32_path, calib, recipe.static_wi8_ai8()))
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


def aeq_quantize(model: LoadedModel, fp32_path: Path, calib: np.ndarray, quant_recipe: Any) -> bytes:
    """The fp32 flatbuffer quantized by ai-edge-quantizer with ``quant_recipe`` (a recipe list),
    calibrated on ``calib`` through the file's signature; the quantized flatbuffer's bytes."""
    from ai_edge_quantizer import quantizer

    from edgekit.formats._util import quiet

    if count(calib) == 0:
        raise DataError("static int8 needs calibration samples, got none")
    interpreter_cls, _, _ = interpreter()
    signatures = interpreter_cls(model_path=str(fp32_path)).get_signature_list()
    key = next(iter(signatures))
    names = signature_order(signatures[key]["inputs"])  # the model's inputs in order
    batches = calibration_batches(calib, model, torch_tensors=False)
    data = {key: [dict(zip(names, b)) for b in batches]}
    with quiet(), _quiet():
        q = quantizer.Quantizer(str(fp32_path))
        q.load_quantization_recipe(quant_recipe)
        result = q.quantize(q.calibrate(data, num_threads=min(os.cpu_count() or 1, 4)))
    return bytes(result.quantized_model)


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


def _io_dtypes(path: Path) -> str:
    """What the artefact really takes and gives, e.g. "int8" or "float32 in, int8 out"."""
    from edgekit.formats.tflite.runtime import Session

    session = Session({"path": str(path)})
    if session.input_dtype == session.output_dtype:
        return session.input_dtype
    return f"{session.input_dtype} in, {session.output_dtype} out"


def _mark_eval(graph: Any) -> Any:
    """Mark a converted PT2E graph as inference (exported graphs refuse ``.eval()``)."""
    for module in graph.modules():
        module.training = False
    return graph
