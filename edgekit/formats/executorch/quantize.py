"""ExecuTorch int8: PT2E with ExecuTorch's XNNPACKQuantizer (static, or dynamic for recurrent models)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgekit.formats._util import module_path
from edgekit.formats.base import (
    Int8Options,
    batch_example,
    export_shapes,
)

if TYPE_CHECKING:

    pass

from edgekit.formats.executorch.convert import _capture

METHODS = {
    "default": "int8 per-tensor (histogram observer)",
    "minmax": "int8 per-tensor (min/max observer: ranges cover every calibration value)",
}


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
