"""``Int8Share`` of a ``.pte``, read back from the file: its XNNPACK delegates' graphs (decoded with
XNNPACK's own flatbuffer schema and ExecuTorch's flatc) and the program's own constants."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from edgekit.formats.share import Int8Share

# XNNPACK's 8-bit (and 4-bit) data types, its compute nodes (with the input holding the weights),
# and the portable kernels that compute in float what XNNPACK did not take.
XNN_EIGHT_BIT = {"xnn_datatype_qint8", "xnn_datatype_quint8", "xnn_datatype_qcint8", "xnn_datatype_qcint4",
                 "xnn_datatype_qdint8", "xnn_datatype_qbint4", "xnn_datatype_qpint8"}
XNN_COMPUTE = {"XNNFullyConnected": "filter_id", "XNNConv2d": "filter_id", "XNNDepthwiseConv2d": "filter_id",
               "XNNConvTranspose2d": "filter_id", "XNNBatchMatrixMultiply": "input2_id"}
PORTABLE_COMPUTE = ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::convolution",
                    "aten::_convolution", "aten::lstm", "aten::gru", "aten::rnn_tanh", "aten::rnn_relu")
# ExecuTorch's ScalarType values of 8-bit integers (Byte, Char, QInt8, QUInt8) and floats.
ET_EIGHT_BIT, ET_FLOAT = {0, 1, 12, 13}, {5, 6, 7, 15}


def executorch_int8_share(path: Path) -> Int8Share:
    """``Int8Share`` of a ``.pte``, read back from it: the constant tensors of every XNNPACK
    delegate's graph (decoded with XNNPACK's own flatbuffer schema) and of the program itself, and
    the compute nodes (XNNPACK's fully connected / convolution nodes by their filter's type; the
    portable matmul and convolution kernels compute in float)."""
    import numpy as np
    from executorch.exir._serialize._program import deserialize_pte_binary

    data = Path(path).read_bytes()
    pte = deserialize_pte_binary(data)
    program = getattr(pte, "program", pte)
    values = {"int8": 0, "float": 0, "other": 0}
    seen: set = set()  # constants already counted (named keys shared between delegates)
    ops = {"int8": 0, "float": 0}
    for plan in program.execution_plan:
        for delegate in plan.delegates:
            if "xnnpack" not in delegate.id.lower():
                continue
            graph = _xnn_graph(program, delegate)
            _tally_xnn(graph, values, ops, seen)
        for value in plan.values:  # the program's own constants (outside every delegate)
            tensor = value.val
            if type(tensor).__name__ == "Tensor" and tensor.data_buffer_idx > 0 and len(tensor.sizes) >= 2:
                kind = int(tensor.scalar_type)
                group = "int8" if kind in ET_EIGHT_BIT else "float" if kind in ET_FLOAT else "other"
                values[group] += int(np.prod(tensor.sizes))
    portable, _ = _kernel_calls(data)
    ops["float"] += sum(n for op, n in portable.items() if op.split(".")[0] in PORTABLE_COMPUTE)
    return Int8Share(values["int8"], values["float"], values["other"], ops["int8"], ops["float"],
                     "the .pte's XNNPACK graphs and constants")


def _xnn_graph(program: Any, delegate: Any) -> dict:
    """An XNNPACK delegate's graph as JSON (flatc with XNNPACK's schema, both shipped with ExecuTorch)."""
    import importlib.resources
    import subprocess
    import tempfile

    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._flatbuffer import _get_flatc_path

    loc = delegate.processed
    if int(loc.location) == 0:  # INLINE
        payload = bytes(program.backend_delegate_data[loc.index].data)
    else:
        payload = bytes(program.segments[loc.index].data) if hasattr(program.segments[loc.index], "data") \
            else bytes(program.segments[loc.index])
    header = XNNHeader.from_bytes(payload[:XNNHeader.EXPECTED_LENGTH])
    flat = payload[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size]
    schema = importlib.resources.files("executorch.backends.xnnpack.serialization") / "schema.fbs"
    with tempfile.TemporaryDirectory(prefix="edgekit-xnn-") as tmp, \
            importlib.resources.as_file(schema) as fbs:
        blob = Path(tmp) / "graph.bin"
        blob.write_bytes(flat)
        subprocess.run([_get_flatc_path(), "--json", "--strict-json", "--raw-binary", "-o", tmp,
                        str(fbs), "--", str(blob)], check=True, capture_output=True)
        text = (Path(tmp) / "graph.json").read_text()
    return flatc_json(text)


def flatc_json(text: str) -> dict:
    """flatc's JSON, which writes infinite clamp bounds (the output_min_max of an unbounded op) as
    bare inf / -inf (not JSON): those become strings."""
    import json
    import re

    return json.loads(re.sub(r"(?<=[\s:\[,])(-?)(inf|nan)\b", r'"\1\2"', text))


def _tally_xnn(graph: dict, values: dict, ops: dict, seen: set) -> None:
    import numpy as np

    tensors = []
    for v in graph.get("xvalues", []):
        body = v.get("xvalue_union", {})
        tensors.append(body.get("tensor_value", body))
    constants = graph.get("constant_data", [])
    for t in tensors:
        dims, index = t.get("dims", []), t.get("constant_buffer_idx", 0)
        # the same weights used at every step of an unrolled recurrent layer are stored once (one
        # named key in the program's data): count each once
        key = constants[index].get("named_key") if 0 < index < len(constants) else None
        key = key or (id(graph), index)
        if index and len(dims) >= 2 and key not in seen:
            seen.add(key)
            kind = t.get("datatype", "")
            group = ("int8" if kind in XNN_EIGHT_BIT
                     else "float" if kind in ("xnn_datatype_fp32", "xnn_datatype_fp16", "xnn_datatype_bf16",
                                              "xnn_datatype_pfp32") else "other")
            values[group] += int(np.prod(dims))
    for node in graph.get("xnodes", []):
        weight = XNN_COMPUTE.get(node.get("xnode_union_type", ""))
        if weight is None:
            continue
        index = node.get("xnode_union", {}).get(weight)
        kind = tensors[index].get("datatype", "") if index is not None and index < len(tensors) else ""
        ops["int8" if kind in XNN_EIGHT_BIT else "float"] += 1


def _kernel_calls(data: bytes) -> tuple[dict[str, int], int]:
    """({portable operator: calls}, delegate calls) of a ``.pte``'s forward method."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    pte = deserialize_pte_binary(data)
    plan = getattr(pte, "program", pte).execution_plan[0]
    names = [f"{o.name}.{o.overload}" if o.overload else o.name for o in plan.operators]
    calls: collections.Counter = collections.Counter()
    delegates = 0
    for chain in plan.chains:
        for instruction in chain.instructions:
            kind = type(instruction.instr_args).__name__
            if kind == "KernelCall":
                calls[names[instruction.instr_args.op_index]] += 1
            elif kind == "DelegateCall":
                delegates += 1
    return dict(calls), delegates
