"""ExecuTorch fp32: ``torch.export`` (strict, then non-strict), lowered to XNNPACK."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import ExportError
from edgekit.formats.base import (
    DYNAMIC_BATCH_MAX,
    batch_example,
    export_shapes,
)

if TYPE_CHECKING:

    pass


def lower(program: Any, path: Path) -> tuple[str, dict]:
    """Lower ``program`` (an ExportedProgram) to XNNPACK and write ``path``; (the file's sha256,
    what lowering delegated)."""
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
    return hashlib.sha256(data).hexdigest(), lowered


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
