"""``Int8Share`` of a ``.tflite`` flatbuffer, read back with the LiteRT schema."""

from __future__ import annotations

from pathlib import Path

from edgekit.formats.share import Int8Share

# Compute ops; one is int8 when its data or weight input is an 8-bit tensor (full-integer, or
# dynamic-range "hybrid" kernels, which quantize the float input on the fly).
COMPUTE_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D", "FULLY_CONNECTED",
               "BATCH_MATMUL", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM",
               "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "LSTM", "RNN", "SVDF"}


def tflite_int8_share(path: Path) -> Int8Share:
    """``Int8Share`` of a ``.tflite`` flatbuffer, read with the LiteRT schema: the type of every
    tensor that holds data (weights), and the input types of its compute ops."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    builtins = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    eight = {"INT8", "UINT8", "INT4"}
    values = {"int8": 0, "float": 0, "other": 0}
    int8_ops = float_ops = 0
    for graph in model.subgraphs or []:
        tensors = graph.tensors or []
        for t in tensors:
            buffer = model.buffers[t.buffer] if t.buffer else None
            has_data = buffer is not None and (
                (buffer.data is not None and len(buffer.data) > 0) or (buffer.size or 0) > 0)
            shape = list(t.shape) if t.shape is not None else []
            name = types.get(t.type, "")
            if has_data and len(shape) >= 2 and name not in ("INT64", "BOOL"):
                group = ("int8" if name in eight
                         else "float" if name.startswith(("FLOAT", "BFLOAT")) else "other")
                values[group] += int(np.prod(shape))
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            name = builtins.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
            if name not in COMPUTE_OPS:
                continue
            ins = [tensors[i] for i in list(op.inputs)[:2] if i >= 0]
            if any(types.get(t.type) in eight for t in ins):
                int8_ops += 1
            else:
                float_ops += 1
    return Int8Share(values["int8"], values["float"], values["other"], int8_ops, float_ops,
                     "TFLite tensors with data and compute operators")
