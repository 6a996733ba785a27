"""Per-layer int8 error in ONNX: onnxruntime.quantization.qdq_loss_debug on the pre-processed fp32
graph and the QDQ int8 model (see the package docstring)."""

from __future__ import annotations

import ast
import tempfile
from pathlib import Path

import numpy as np

from edgekit.errors import require
from edgekit.inspect import LayerError, _Stats
from edgekit.inspect.trace import fit_module

ONNX_CHUNK = 8  # samples per collect_activations call: bounds the memory held for activations


def errors(model, fp32_path: Path, int8_path: Path, x: np.ndarray) -> list[LayerError]:
    q = require("onnxruntime.quantization", "onnxruntime", "onnx")
    from onnxruntime.quantization import qdq_loss_debug as dbg

    from edgekit.formats._util import quiet

    onnx = require("onnx", "onnx", "onnx")
    with tempfile.TemporaryDirectory(prefix="edgekit-inspect-") as tmp:
        pre, aug_f, aug_q = (str(Path(tmp) / n) for n in ("pre.onnx", "f.onnx", "q.onnx"))
        with quiet():
            q.quant_pre_process(str(fp32_path), pre, skip_symbolic_shape=True)  # as formats/onnx.py
            dbg.modify_model_output_intermediate_tensors(pre, aug_f)
            dbg.modify_model_output_intermediate_tensors(str(int8_path), aug_q)
        graph, qgraph = onnx.load(pre).graph, onnx.load(str(int8_path)).graph
        layers = _onnx_quantized_nodes(graph, qgraph)
        feed = graph.input[0].name
        stats = {t: _Stats() for t in layers}
        for start in range(0, len(x), ONNX_CHUNK):
            batch = [{feed: x[i : i + 1]} for i in range(start, min(start + ONNX_CHUNK, len(x)))]
            with quiet():
                f_acts = dbg.collect_activations(aug_f, batch)
                q_acts = dbg.collect_activations(aug_q, batch)
            matched = dbg.create_activation_matching(q_acts, f_acts)
            for tensor, st in stats.items():
                post = matched[tensor]["post_qdq"] if tensor in matched else q_acts.get(tensor)
                for ref, out in zip(f_acts.get(tensor, []), post or [], strict=False):
                    st.add(ref, out)
    modules = dict(model.module.named_modules())
    return [stats[t].error(node.name, node.op_type, _onnx_torch_name(node, modules))
            for t, node in layers.items() if stats[t].signal or stats[t].noise]


def _onnx_quantized_nodes(graph, qgraph) -> dict:
    """{output tensor: node of the pre-processed graph} for nodes the int8 graph feeds through
    a DequantizeLinear (the nodes quantize_static quantized)."""
    from onnxruntime.quantization.quant_utils import QUANT_INPUT_SUFFIX

    # Keyed by the int8 node's output: where quantize_static fused a Relu into a Conv, the Conv
    # writes the Relu's output tensor, and the fp32 value to compare with is that tensor.
    dq_outputs = {o for n in qgraph.node if n.op_type == "DequantizeLinear" for o in n.output}
    nodes = {n.name: n for n in graph.node}
    # A graph output is renamed "<name>_QuantizeLinear_Input" before its QDQ pair; match it by <name>.
    return {n.output[0].removesuffix(QUANT_INPUT_SUFFIX): nodes[n.name] for n in qgraph.node
            if n.name in nodes and n.output and n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and set(n.input) & dq_outputs}


def _onnx_torch_name(node, modules: dict) -> str | None:
    """The module the dynamo exporter recorded for a node (its innermost name scope)."""
    meta = {p.key: p.value for p in node.metadata_props}
    try:
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
    except (ValueError, SyntaxError):
        return None
    paths = [s for s in scopes[:-1] if s in modules and s]  # the last scope is the fx node's own name
    return fit_module(paths[-1], node.op_type, modules) if paths else None
